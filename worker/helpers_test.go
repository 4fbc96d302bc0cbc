package worker_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proc is a real `beekeeper worker` process.
type proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	url    string
	port   int
	out    *lockedBuffer
	exited chan struct{}
	code   int
}

// startProc starts `beekeeper worker` with args and returns without waiting for health.
func startProc(t testing.TB, args ...string) *proc {
	t.Helper()
	t.Setenv("BEEKEEPER_HOME", t.TempDir())
	p := &proc{t: t, out: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(testenv.Binary(t), append([]string{"worker"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	go func() {
		defer close(p.exited)
		err := p.cmd.Wait()
		var exitErr *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &exitErr):
			p.code = exitErr.ExitCode()
		default:
			p.code = -1
		}
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("worker output:\n%s", p.out.String())
		}
	})
	return p
}

// startWorker starts a worker on the test model at a free port and waits for /health 200.
func startWorker(t testing.TB, extra ...string) *proc {
	t.Helper()
	port := testenv.FreePort(t)
	args := append([]string{"--model", testenv.Model(t), "--port", strconv.Itoa(port), "--threads", "1"}, extra...)
	p := startProc(t, args...)
	p.port = port
	p.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	p.waitHealthy(30 * time.Second)
	return p
}

func (p *proc) waitHealthy(timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			p.t.Fatalf("worker exited with code %d before it was healthy:\n%s", p.code, p.out.String())
		default:
		}
		resp, err := http.Get(p.url + wire.PathHealth)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(5 * time.Millisecond) // poll interval, not synchronisation
	}
	p.t.Fatalf("worker not healthy within %s", timeout)
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.code
	case <-time.After(timeout):
		p.t.Fatalf("worker still running after %s", timeout)
		return -1
	}
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal: %v", err)
	}
}

// waitLog waits until the worker's output contains s.
func (p *proc) waitLog(s string, timeout time.Duration) string {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if out := p.out.String(); strings.Contains(out, s) {
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.t.Fatalf("worker output never contained %q:\n%s", s, p.out.String())
	return ""
}

// post sends body as JSON and returns the status and answer body.
func post(t testing.TB, url string, body any, header ...string) (int, []byte) {
	t.Helper()
	status, data, err := tryPost(url, body, header...)
	if err != nil {
		t.Fatal(err)
	}
	return status, data
}

// tryPost is post for goroutines other than the test's: it returns the error.
func tryPost(url string, body any, header ...string) (int, []byte, error) {
	var r io.Reader
	switch b := body.(type) {
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		data, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, r)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("read answer of %s: %w", url, err)
	}
	return resp.StatusCode, data, nil
}

// sseEvents splits an SSE body into its data payloads, failing on any line that is not
// "data: ..." followed by a blank line.
func sseEvents(t testing.TB, body []byte) []string {
	t.Helper()
	var events []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	expectBlank := false
	for sc.Scan() {
		line := sc.Text()
		if expectBlank {
			if line != "" {
				t.Fatalf("want a blank line after each event, got %q", line)
			}
			expectBlank = false
			continue
		}
		payload, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("want a \"data: \" line, got %q", line)
		}
		events = append(events, payload)
		expectBlank = true
	}
	return events
}

func ptr[T any](v T) *T { return &v }

func decode[T any](t testing.TB, data []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, data, err)
	}
	return v
}

func wantError(t testing.TB, status int, body []byte, wantStatus int, wantCode string) wire.ErrorDetail {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status %d, want %d: %s", status, wantStatus, body)
	}
	e := decode[wire.ErrorBody](t, body)
	if e.Error.Message == "" || e.Error.Type == "" || (wantCode != "" && e.Error.Code != wantCode) {
		t.Fatalf("want an OpenAI-shaped error with code %q, got %s", wantCode, body)
	}
	return e.Error
}
