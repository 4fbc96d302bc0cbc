//go:build unix

package workerkey

import (
	"errors"
	"syscall"
)

// processGone reports whether no process has this id (signal 0 checks without sending).
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
