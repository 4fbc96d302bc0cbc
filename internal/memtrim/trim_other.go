//go:build !linux || !cgo

package memtrim

// trimC has nothing to do where the C allocator returns memory by itself or is not
// glibc's.
func trimC() {}
