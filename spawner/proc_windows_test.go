//go:build windows

package spawner

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// These tests run on Windows, and under Wine in CI (internal/wintest cross-compiles
// them). The test binary re-runs itself as the child: SPAWNER_TEST_CHILD says what to be.
const envChild = "SPAWNER_TEST_CHILD"

func TestMain(m *testing.M) {
	RunHelper(os.Args[1:]) // a stop runs the child's binary, this one, as its helper
	switch os.Getenv(envChild) {
	case "":
		os.Exit(m.Run())
	case "interruptible": // a worker: exits 0 on CTRL_BREAK (os.Interrupt)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt)
		fmt.Println("ready")
		select {
		case <-sig:
			os.Exit(0)
		case <-time.After(time.Minute):
			os.Exit(3)
		}
	case "parent": // starts a grandchild, writes its pid to argv[1], then waits
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), envChild+"=sleep")
		if err := cmd.Start(); err != nil {
			os.Exit(4)
		}
		_ = os.WriteFile(os.Args[1], []byte(strconv.Itoa(cmd.Process.Pid)), 0o600)
		time.Sleep(time.Minute)
		os.Exit(3)
	case "sleep":
		time.Sleep(time.Minute)
		os.Exit(3)
	}
	os.Exit(5)
}

// startTestChild starts the test binary as a child of kind, as launch starts a worker:
// its own process group and console, in a Job Object.
func startTestChild(t *testing.T, kind string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envChild+"="+kind)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g, err := newGroup(cmd)
	if err != nil {
		t.Fatalf("job object: %v", err)
	}
	p := track(cmd, g, 500*time.Millisecond)
	t.Cleanup(func() {
		_ = p.Stop(context.Background())
		<-p.Done()
	})
	return p
}

// waitGone waits until pid (started at ct) is gone.
func waitGone(t *testing.T, pid int, ct int64, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for Alive(pid, ct) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still runs", what, pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStopEndsTheWholeJob: a stop ends the worker and whatever it started, through the
// Job Object (the CTRL_BREAK first, where the console delivers it).
func TestStopEndsTheWholeJob(t *testing.T) {
	// Not t.TempDir: Wine 8 fails the removal Go 1.26's RemoveAll makes (POSIX-semantics
	// delete, "Invalid function"), which would fail the test after it passed.
	dir, err := os.MkdirTemp("", "spawner-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	pidFile := filepath.Join(dir, "grandchild.pid")
	p := startTestChild(t, "parent", pidFile)
	var grandchild int
	for deadline := time.Now().Add(20 * time.Second); grandchild == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the child never started its own child")
		}
		b, _ := os.ReadFile(pidFile)
		grandchild, _ = strconv.Atoi(string(b))
	}
	gct, err := CreateTime(grandchild)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("stop: %v", err)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the stopped child was not reaped")
	}
	waitGone(t, grandchild, gct, "the child's own child, in the same job")
	t.Logf("child exit code %d", p.ExitCode())
}

// TestStopBreaksBeforeTerminating: a child that honours CTRL_BREAK exits 0 within the
// grace period. Where the console cannot deliver the signal (Wine 8) the stop still
// ends it, by TerminateJobObject (exit code 1): the test says which happened.
func TestStopBreaksBeforeTerminating(t *testing.T) {
	p := startTestChild(t, "interruptible")
	time.Sleep(300 * time.Millisecond) // its signal handler is set by then
	start := time.Now()
	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("stop: %v", err)
	}
	switch code := p.ExitCode(); code {
	case 0:
		t.Logf("CTRL_BREAK delivered: exit 0 after %v", time.Since(start))
	case 1:
		t.Logf("CTRL_BREAK not delivered here: TerminateJobObject after %v", time.Since(start))
	default:
		t.Fatalf("exit code %d, want 0 (CTRL_BREAK) or 1 (TerminateJobObject)", code)
	}
}

// TestStopPIDOfAnAdoptedWorker: a worker another process started is stopped by pid and
// start time; a wrong start time (a reused pid) leaves the process alone.
func TestStopPIDOfAnAdoptedWorker(t *testing.T) {
	p := startTestChild(t, "sleep")
	if err := StopPID(context.Background(), p.PID, p.CreateTime+1, time.Second); err != nil || !Alive(p.PID, p.CreateTime) {
		t.Fatalf("StopPID with a wrong start time touched the process: %v", err)
	}
	if err := StopPID(context.Background(), p.PID, p.CreateTime, 200*time.Millisecond); err != nil {
		t.Fatalf("StopPID: %v", err)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("not reaped after StopPID")
	}
	if err := StopPID(context.Background(), p.PID, p.CreateTime, time.Second); err != nil {
		t.Fatalf("StopPID of a gone process: %v", err)
	}
}

// TestWatchExitOnWindows: the watch fires when the process ends, at once for a wrong
// start time, and never after Close.
func TestWatchExitOnWindows(t *testing.T) {
	p := startTestChild(t, "sleep")
	w, ok := WatchExit(p.PID, p.CreateTime)
	if !ok {
		t.Fatal("WatchExit cannot open our own child")
	}
	defer w.Close()
	if reused, _ := WatchExit(p.PID, p.CreateTime+1); reused == nil {
		t.Fatal("no watch for a reused pid")
	} else {
		select {
		case <-reused.Exited:
		default:
			t.Fatal("a watch on a reused pid did not report the exit at once")
		}
	}
	closed, _ := WatchExit(p.PID, p.CreateTime)
	closed.Close()
	select {
	case <-w.Exited:
		t.Fatal("Exited fired while the process runs")
	case <-time.After(200 * time.Millisecond):
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Exited:
	case <-time.After(10 * time.Second):
		t.Fatal("Exited did not fire within 10 s of the kill")
	}
	select {
	case <-closed.Exited:
		t.Fatal("a closed watch reported the exit")
	default:
	}
}
