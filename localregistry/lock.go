package localregistry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gofrs/flock"
)

// ErrLocked means another process held the registry lock for longer than lockWait.
var ErrLocked = errors.New("local registry is locked by another Beekeeper process: wait for it or stop it")

// lockWait bounds how long a transaction waits for another process's transaction.
// Transactions are short (read, edit, write), so a longer wait means a stuck process.
const lockWait = 5 * time.Second

// lockFile takes an exclusive lock on path (flock on Unix, LockFileEx on Windows),
// polling until wait has passed. The lock belongs to the open file, so two Registries on
// one folder in one process exclude each other as two processes do.
func lockFile(path string, wait time.Duration) (func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	l := flock.New(path, flock.SetPermissions(0o600))
	ok, err := l.TryLockContext(ctx, 5*time.Millisecond)
	switch {
	case ok:
		return func() { _ = l.Close() }, nil // Close unlocks and closes the file
	case errors.Is(err, context.DeadlineExceeded):
		return nil, fmt.Errorf("%w (%s)", ErrLocked, path)
	case err != nil:
		return nil, fmt.Errorf("lock registry (check the permissions of %s): %w", path, err)
	}
	return nil, fmt.Errorf("%w (%s)", ErrLocked, path)
}
