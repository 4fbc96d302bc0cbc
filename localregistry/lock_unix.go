//go:build unix

package localregistry

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// ErrLocked means another process held the registry lock for longer than lockWait.
var ErrLocked = errors.New("local registry is locked by another Beekeeper process: wait for it or stop it")

// lockWait bounds how long a transaction waits for another process's transaction.
// Transactions are short (read, edit, write), so a longer wait means a stuck process.
const lockWait = 5 * time.Second

// lockFile takes an exclusive flock on path, polling until wait has passed.
func lockFile(path string, wait time.Duration) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open registry lock: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock registry: %w", err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w (%s)", ErrLocked, path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
