//go:build windows

package spawner

import (
	"errors"
	"sync/atomic"

	"golang.org/x/sys/windows"
)

// WatchExit watches a process we did not start (an adopted worker) for its exit: one
// goroutine waits on its process handle and on an event that Close sets. ok is false
// when the process cannot be opened for waiting (another user's); poll Alive instead.
func WatchExit(pid int, createTime int64) (w *ExitWatch, ok bool) {
	h, err := windows.OpenProcess(windows.SYNCHRONIZE|windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if errors.Is(err, windows.ERROR_INVALID_PARAMETER) { // no such process
		return goneWatch(), true
	}
	if err != nil {
		return nil, false
	}
	// The handle names whichever process had pid when it was opened, and pins that pid;
	// that pid still being the process we mean rules out a reused pid.
	if !Alive(pid, createTime) {
		windows.CloseHandle(h)
		return goneWatch(), true
	}
	stop, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		windows.CloseHandle(h)
		return nil, false
	}
	exited := make(chan struct{})
	finished := make(chan struct{})
	var closing atomic.Bool
	go func() {
		defer close(finished)
		// A failed wait can no longer tell: report "may have exited", so the owner
		// checks (and keeps checking) Alive.
		ev, err := windows.WaitForMultipleObjects([]windows.Handle{h, stop}, false, windows.INFINITE)
		if (err != nil || ev == windows.WAIT_OBJECT_0) && !closing.Load() {
			close(exited)
		}
	}()
	return &ExitWatch{Exited: exited, closeFn: func() {
		closing.Store(true)
		_ = windows.SetEvent(stop)
		<-finished // the handles are closed only once nothing waits on them
		windows.CloseHandle(stop)
		windows.CloseHandle(h)
	}}, true
}
