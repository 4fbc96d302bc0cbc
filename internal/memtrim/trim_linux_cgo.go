//go:build linux && cgo

package memtrim

// #include <malloc.h>
import "C"

// trimC asks glibc (the C library of the Linux systems we build for) to return the
// free memory in its heap and arenas: without it a process that once drew many frames
// keeps their buffers for ever.
func trimC() { C.malloc_trim(0) }
