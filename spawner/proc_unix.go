//go:build unix

package spawner

import (
	"context"
	"errors"
	"os/exec"
	"syscall"
	"time"
)

// sysProcAttr puts the worker in its own process group, so a stop reaches everything it
// started and a Ctrl-C in the app's terminal does not. No Pdeathsig: workers outlive the app.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// group is what a stop needs beyond the pid: on Unix the process group is the pid.
type group struct{}

// newGroup is the started worker's group: its own process group, set at start.
func newGroup(*exec.Cmd) (*group, error) { return nil, nil }

// release frees what the group holds once the worker is reaped: nothing on Unix.
func (*group) release() {}

// stop stops a worker this process started.
func (p *Process) stop(ctx context.Context) error {
	return stopGroup(ctx, p.PID, p.grace, p.done, nil)
}

func stopAdopted(ctx context.Context, pid int, createTime int64, grace time.Duration) error {
	return stopGroup(ctx, pid, grace, nil, func() bool { return !Alive(pid, createTime) })
}

// stopGroup sends SIGTERM to the group led by pid, waits up to grace for done (our child)
// or for the pid to go (poll, for an adopted worker), then SIGKILLs the group and waits.
func stopGroup(ctx context.Context, pid int, grace time.Duration, done <-chan struct{}, gone func() bool) error {
	if done == nil && gone == nil {
		return errors.New("stopGroup: nothing to wait on")
	}
	if exited(done) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err // given up before it began: send nothing, the worker keeps running
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	if waitExit(ctx, grace, done, gone) {
		return nil
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL) // in case it left its group
	if waitExit(ctx, 5*time.Second, done, gone) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("worker did not exit after SIGKILL")
}
