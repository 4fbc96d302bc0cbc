//go:build linux

package spawner

import (
	"errors"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// WatchExit watches a process we did not start (an adopted worker) for its exit, through
// a pidfd on the runtime's poller: no polling, no thread. ok is false where the kernel
// has no pidfd (Linux < 5.10); poll Alive instead.
func WatchExit(pid int, createTime int64) (w *ExitWatch, ok bool) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.ESRCH) {
		return goneWatch(), true
	}
	if err != nil {
		return nil, false
	}
	// The pidfd names whichever process had pid when it was opened; that pid still
	// being the process we mean, afterwards, rules out a reused pid.
	if !Alive(pid, createTime) {
		unix.Close(fd)
		return goneWatch(), true
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, false
	}
	exited := make(chan struct{})
	var closing atomic.Bool
	w = &ExitWatch{Exited: exited, closeFn: func() { closing.Store(true); f.Close() }}
	go func() {
		// Read waits for the pidfd to be readable, which it becomes when the process
		// ends; it fails instead when Close closes the file. Any other failure means
		// the watch can no longer tell: report "may have exited", so the owner checks
		// (and keeps checking) Alive, as it would without a pidfd.
		err := rc.Read(func(fd uintptr) bool {
			ready := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(ready, 0)
			return err == nil && n > 0
		})
		if err == nil || !closing.Load() {
			close(exited)
		}
	}()
	return w, true
}
