package spawner

import (
	"context"
	"time"

	"github.com/shirou/gopsutil/v4/process"
)

// StopPID stops a worker we did not start (adopted after an app restart), identified by
// pid and process start time so a reused pid is never signalled.
func StopPID(ctx context.Context, pid int, createTime int64, grace time.Duration) error {
	if !Alive(pid, createTime) {
		return nil
	}
	return stopAdopted(ctx, pid, createTime, grace)
}

// Alive reports whether pid runs and started at createTime (ms), i.e. is the same
// process and not a reused pid. A zombie counts as gone.
func Alive(pid int, createTime int64) bool {
	if pid <= 0 {
		return false
	}
	p, err := process.NewProcess(int32(pid))
	if err != nil {
		return false
	}
	ct, err := p.CreateTime()
	if err != nil || (createTime != 0 && ct != createTime) {
		return false
	}
	// Windows has no zombies (and gopsutil no Status there): an exited process is
	// not found above.
	if st, err := p.Status(); err == nil && len(st) > 0 && st[0] == process.Zombie {
		return false
	}
	return true
}

// CreateTime is the start time (ms since the epoch) of pid.
func CreateTime(pid int) (int64, error) {
	p, err := process.NewProcess(int32(pid))
	if err != nil {
		return 0, err
	}
	return p.CreateTime()
}

// waitExit waits up to d for done to close, or, with no done (an adopted worker), for
// gone to hold (polled). It reports false when d passes or ctx ends first.
func waitExit(ctx context.Context, d time.Duration, done <-chan struct{}, gone func() bool) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if done == nil && gone() {
			return true
		}
		select {
		case <-done:
			return true
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// exited reports whether done (nil for an adopted worker) is already closed.
func exited(done <-chan struct{}) bool {
	if done == nil {
		return false
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}
