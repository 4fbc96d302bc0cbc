package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// Process is a real beekeeper child process whose output the test can read. It is killed
// when the test ends (if still running), and its output is logged when the test failed.
type Process struct {
	tb     testing.TB
	Cmd    *exec.Cmd
	Port   int    // the worker's port (StartWorker only)
	URL    string // the worker's base URL (StartWorker only)
	out    SyncBuffer
	exited chan struct{}
	code   int
}

// SyncBuffer collects output that goroutines (or a child process) write while the test
// reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *SyncBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *SyncBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// StartProcess runs `beekeeper ARGS...` (the built binary) and returns at once.
func StartProcess(tb testing.TB, args ...string) *Process {
	tb.Helper()
	p := &Process{tb: tb, exited: make(chan struct{})}
	p.Cmd = exec.Command(Binary(tb), args...)
	p.Cmd.Stdout, p.Cmd.Stderr = &p.out, &p.out
	if err := p.Cmd.Start(); err != nil {
		tb.Fatalf("testenv: start beekeeper %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		defer close(p.exited)
		err := p.Cmd.Wait()
		var exitErr *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &exitErr):
			p.code = exitErr.ExitCode()
		default:
			p.code = -1
		}
	}()
	tb.Cleanup(func() {
		_ = p.Cmd.Process.Kill()
		<-p.exited
		if tb.Failed() {
			tb.Logf("output of beekeeper %s:\n%s", strings.Join(args, " "), p.out.String())
		}
	})
	return p
}

// StartWorker runs `beekeeper worker` on the test model at a free port (one thread; extra
// flags are appended) and waits until /health answers 200.
func StartWorker(tb testing.TB, extra ...string) *Process {
	tb.Helper()
	port := FreePort(tb)
	args := append([]string{"worker", "--model", Model(tb), "--port", strconv.Itoa(port), "--threads", "1"}, extra...)
	p := StartProcess(tb, args...)
	p.Port = port
	p.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
	p.WaitHealthy(30 * time.Second)
	return p
}

// Output is everything the process wrote so far.
func (p *Process) Output() string { return p.out.String() }

// Exited is closed once the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// WaitHealthy polls the worker's /health until 200, failing fast if it exits.
func (p *Process) WaitHealthy(timeout time.Duration) {
	p.tb.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			p.tb.Fatalf("testenv: worker exited with code %d before it was healthy:\n%s", p.code, p.Output())
		default:
		}
		if resp, err := client.Get(p.URL + wire.PathHealth); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(5 * time.Millisecond) // poll interval, not synchronisation
	}
	p.tb.Fatalf("testenv: worker not healthy within %s:\n%s", timeout, p.Output())
}

// Wait waits for the process to exit and returns its exit code.
func (p *Process) Wait(timeout time.Duration) int {
	p.tb.Helper()
	select {
	case <-p.exited:
		return p.code
	case <-time.After(timeout):
		p.tb.Fatalf("testenv: process still running after %s", timeout)
		return -1
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) {
	p.tb.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		p.tb.Fatalf("testenv: signal: %v", err)
	}
}

// Stop sends SIGTERM and waits for the exit (killing it after timeout); it returns the
// exit code.
func (p *Process) Stop(timeout time.Duration) int {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		_ = p.Cmd.Process.Kill()
		<-p.exited
	}
	return p.code
}

// WaitOutput waits until the output contains s and returns the output.
func (p *Process) WaitOutput(s string, timeout time.Duration) string {
	p.tb.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if out := p.Output(); strings.Contains(out, s) {
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.tb.Fatalf("testenv: output never contained %q:\n%s", s, p.Output())
	return ""
}

// WaitFor polls cond until it holds, failing the test after timeout with what it waited
// for. The poll interval is not synchronisation: cond is the condition itself.
func WaitFor(tb testing.TB, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
