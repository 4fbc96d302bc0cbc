//go:build windows

package spawner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/shirou/gopsutil/v4/process"
	"golang.org/x/sys/windows"
)

// sysProcAttr starts the worker as the leader of a new process group, so CTRL_BREAK can
// be sent to it alone, on a console of its own with no window: closing the terminal or
// quitting the app that started it (its console's CTRL_CLOSE) does not end it, and a
// desktop app's workers open no console windows.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{CreationFlags: windows.CREATE_NEW_PROCESS_GROUP | windows.CREATE_NO_WINDOW}
}

// group is the worker's Job Object: one per start, so a stop ends whatever the worker
// started too. Without KILL_ON_JOB_CLOSE: the worker outlives the handle (and the app).
type group struct {
	mu  sync.Mutex
	job windows.Handle // 0 once released
}

// newGroup puts the started worker in a new Job Object. The worker is assigned just
// after it starts (Go starts no process suspended); a worker starts no children of its
// own before it has loaded llama.cpp, so none escapes the job.
func newGroup(cmd *exec.Cmd) (*group, error) {
	job, err := windows.CreateJobObject(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("create job object: %w", err)
	}
	// Our own handle on cmd.Process keeps the pid from being reused until the reap.
	h, err := windows.OpenProcess(windows.PROCESS_SET_QUOTA|windows.PROCESS_TERMINATE, false, uint32(cmd.Process.Pid))
	if err != nil {
		windows.CloseHandle(job)
		return nil, fmt.Errorf("open worker process: %w", err)
	}
	defer windows.CloseHandle(h)
	if err := windows.AssignProcessToJobObject(job, h); err != nil {
		windows.CloseHandle(job)
		return nil, fmt.Errorf("assign worker to job object: %w", err)
	}
	return &group{job: job}, nil
}

// terminate ends every process in the job; false when there is no job (any more).
func (g *group) terminate() bool {
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.job != 0 && windows.TerminateJobObject(g.job, 1) == nil
}

// release closes the job's handle once the worker is reaped.
func (g *group) release() {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.job != 0 {
		windows.CloseHandle(g.job)
		g.job = 0
	}
}

// stop stops a worker this process started: CTRL_BREAK, grace, then TerminateJobObject
// (TerminateProcess where it runs outside a job).
func (p *Process) stop(ctx context.Context) error {
	return stopConsole(ctx, p.cmd.Path, p.PID, p.grace, p.done, nil, func() error {
		if p.group.terminate() {
			return nil
		}
		return p.cmd.Process.Kill()
	})
}

// stopAdopted stops a worker another process started: its Job Object cannot be opened
// (a job has no name), so the kill is TerminateProcess on a handle taken while pid is
// still the process that started at createTime.
func stopAdopted(ctx context.Context, pid int, createTime int64, grace time.Duration) error {
	gone := func() bool { return !Alive(pid, createTime) }
	exe := ""
	if p, err := process.NewProcess(int32(pid)); err == nil {
		exe, _ = p.Exe() // a worker is a beekeeper binary: it is the helper too
	}
	return stopConsole(ctx, exe, pid, grace, nil, gone, func() error {
		h, err := windows.OpenProcess(windows.PROCESS_TERMINATE|windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
		if errors.Is(err, windows.ERROR_INVALID_PARAMETER) {
			return nil // no such process: gone already
		}
		if err != nil {
			return fmt.Errorf("open worker process %d (another user's? stop it as that user): %w", pid, err)
		}
		defer windows.CloseHandle(h)
		if !Alive(pid, createTime) { // the handle pins the pid: checked, it cannot change
			return nil
		}
		return windows.TerminateProcess(h, 1)
	})
}

// stopConsole sends CTRL_BREAK to the worker's process group (Go delivers it to the
// worker as os.Interrupt) through the helper (see RunHelper), waits up to grace, then
// kills it and waits. When the signal cannot be delivered the kill comes at once.
func stopConsole(ctx context.Context, helper string, pid int, grace time.Duration, done <-chan struct{}, gone func() bool, kill func() error) error {
	if exited(done) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err // given up before it began: send nothing, the worker keeps running
	}
	if helper != "" && ctrlBreak(ctx, helper, pid) == nil && waitExit(ctx, grace, done, gone) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := kill(); err != nil && !exited(done) {
		return fmt.Errorf("terminate worker %d: %w", pid, err)
	}
	if waitExit(ctx, 5*time.Second, done, gone) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("worker %d did not exit after TerminateJobObject: end it in Task Manager", pid)
}

// ctrlBreak runs binary as the helper that delivers CTRL_BREAK to pid's console. The
// helper starts detached, with no console, so it can attach to the worker's; a process
// can only signal processes on its own console, and ours is not the worker's.
func ctrlBreak(ctx context.Context, binary string, pid int) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, helperArg, strconv.Itoa(pid))
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: windows.DETACHED_PROCESS | windows.CREATE_NEW_PROCESS_GROUP}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ctrl-break helper: %w: %s", err, out)
	}
	return nil
}

var (
	kernel32          = windows.NewLazySystemDLL("kernel32.dll")
	procAttachConsole = kernel32.NewProc("AttachConsole")
	procFreeConsole   = kernel32.NewProc("FreeConsole")
)

// runHelper is the helper's whole run: attach to the worker's console and send
// CTRL_BREAK to its process group (the worker leads it: CREATE_NEW_PROCESS_GROUP). The
// helper leads a group of its own, so the event does not reach it.
func runHelper(pidArg string) int {
	pid, err := strconv.ParseUint(pidArg, 10, 32)
	if err != nil {
		return 2
	}
	_, _, _ = procFreeConsole.Call()
	if r, _, err := procAttachConsole.Call(uintptr(pid)); r == 0 {
		fmt.Fprintf(os.Stderr, "attach to the console of process %d: %v\n", pid, err)
		return 1
	}
	if err := windows.GenerateConsoleCtrlEvent(windows.CTRL_BREAK_EVENT, uint32(pid)); err != nil {
		fmt.Fprintf(os.Stderr, "send CTRL_BREAK to process group %d: %v\n", pid, err)
		return 1
	}
	return 0
}
