//go:build unix

package spawner

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/shirou/gopsutil/v4/process"
)

// sysProcAttr puts the worker in its own process group, so a stop reaches everything it
// started and a Ctrl-C in the app's terminal does not. No Pdeathsig: workers outlive the app.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// stopGroup sends SIGTERM to the group led by pid, waits up to grace for done (our child)
// or for the pid to go (poll, for an adopted worker), then SIGKILLs the group and waits.
func stopGroup(ctx context.Context, pid int, grace time.Duration, done <-chan struct{}, gone func() bool) error {
	if done == nil && gone == nil {
		return errors.New("stopGroup: nothing to wait on")
	}
	wait := func(d time.Duration) bool {
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
	if done != nil {
		select {
		case <-done:
			return nil
		default:
		}
	}
	if err := ctx.Err(); err != nil {
		return err // given up before it began: send nothing, the worker keeps running
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	if wait(grace) {
		return nil
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL) // in case it left its group
	if wait(5 * time.Second) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("worker did not exit after SIGKILL")
}

// StopPID stops a worker we did not start (adopted after an app restart), identified by
// pid and process start time so a reused pid is never signalled.
func StopPID(ctx context.Context, pid int, createTime int64, grace time.Duration) error {
	if !Alive(pid, createTime) {
		return nil
	}
	return stopGroup(ctx, pid, grace, nil, func() bool { return !Alive(pid, createTime) })
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
