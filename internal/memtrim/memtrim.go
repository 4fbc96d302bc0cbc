// Package memtrim hands an idle process's freed memory back to the operating system.
package memtrim

import "runtime/debug"

// Now returns the Go heap's free pages and, where the C allocator keeps freed memory
// of its own (glibc: the GL driver's first-frame buffers and text textures), those too.
// It runs a full collection: call it off the UI thread, after a burst of work.
func Now() {
	debug.FreeOSMemory()
	trimC()
}
