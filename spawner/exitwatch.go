package spawner

import "sync"

// ExitWatch tells when one process has exited (see WatchExit).
type ExitWatch struct {
	// Exited is closed when the process may have exited: it has, or the watch failed
	// and can no longer tell (then check Alive, as without a watch). After Close it is
	// never closed.
	Exited <-chan struct{}

	closeFn   func()
	closeOnce sync.Once
}

// Close ends the watch and releases what it holds; safe to call more than once.
func (w *ExitWatch) Close() {
	if w.closeFn != nil {
		w.closeOnce.Do(w.closeFn)
	}
}

// goneWatch is the watch of a process that has already gone.
func goneWatch() *ExitWatch {
	exited := make(chan struct{})
	close(exited)
	return &ExitWatch{Exited: exited}
}
