//go:build !unix

package workerkey

// processGone cannot tell here: files are kept (a stale one is only litter; a live
// worker rewrites its own at start).
func processGone(int) bool { return false }
