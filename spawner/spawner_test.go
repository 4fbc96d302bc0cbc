//go:build unix

package spawner

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// holdPorts binds n consecutive loopback ports and returns the first; the listeners
// close with the test.
func holdPorts(t *testing.T, n int) int {
	t.Helper()
	for attempt := 0; attempt < 50; attempt++ {
		base := testenv.FreePort(t)
		if base+n > 65535 {
			continue
		}
		var held []net.Listener
		for i := 0; i < n; i++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(base+i)))
			if err != nil {
				break
			}
			held = append(held, l)
		}
		if len(held) == n {
			t.Cleanup(func() {
				for _, l := range held {
					l.Close()
				}
			})
			return base
		}
		for _, l := range held {
			l.Close()
		}
	}
	t.Fatalf("could not hold %d consecutive ports", n)
	return 0
}

func TestFreePortSkipsBusyPortsWithinRange(t *testing.T) {
	base := holdPorts(t, 2) // base and base+1 are busy
	want := base + 2
	if !PortFree("127.0.0.1", want) {
		t.Skipf("port %d is taken by someone else", want)
	}
	got, err := FreePort("127.0.0.1", base, base+5, nil)
	if err != nil || got != want {
		t.Fatalf("FreePort(%d..%d) = %d, %v; want %d (first two held)", base, base+5, got, err, want)
	}
	// skip names ports that are free but promised elsewhere.
	if got, err := FreePort("127.0.0.1", base, base+5, map[int]bool{want: true}); err != nil || got <= want || got > base+5 {
		t.Fatalf("FreePort with %d skipped = %d, %v; want a port in %d..%d", want, got, err, want+1, base+5)
	}
	if _, err := FreePort("127.0.0.1", base+3, base+2, nil); err == nil {
		t.Fatal("an empty range was accepted")
	}
}

func TestFreePortExhaustedRange(t *testing.T) {
	base := holdPorts(t, 3)
	_, err := FreePort("127.0.0.1", base, base+2, nil)
	var se *StartError
	if !errors.Is(err, ErrNoFreePort) || !errors.As(err, &se) {
		t.Fatalf("exhausted range = %v, want a *StartError matching ErrNoFreePort", err)
	}
	if !strings.Contains(err.Error(), "widen the port range") {
		t.Fatalf("error does not name the fix: %v", err)
	}
}

// A squatter on the wildcard address makes the port taken for a wildcard bind too.
func TestPortFreeSeesWildcardSquatter(t *testing.T) {
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	for _, host := range []string{"127.0.0.1", "0.0.0.0"} {
		if PortFree(host, port) {
			t.Errorf("PortFree(%s, %d) = true while 0.0.0.0:%d is held", host, port, port)
		}
	}
}

// startChild starts sh -c script in its own group, tracked like a worker, and waits
// for its first output line (the script prints once its traps are set).
func startChild(t *testing.T, script string) *Process {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = sysProcAttr()
	// Our own pipe, not StdoutPipe: the reap (Wait) would close that one under the read.
	out, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	p := track(cmd, nil, 300*time.Millisecond)
	t.Cleanup(func() {
		select {
		case <-p.Done(): // reaped: the pid may belong to someone else now
		default:
			_ = syscall.Kill(-p.PID, syscall.SIGKILL)
			<-p.Done()
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("child did not get ready: %q, %v", line, err)
	}
	return p
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	p := startChild(t, `trap "" TERM; echo ready; while :; do sleep 1; done`)
	start := time.Now()
	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("stop: %v", err)
	}
	took := time.Since(start)
	if took < p.grace {
		t.Fatalf("a child that ignores SIGTERM stopped in %v, before the %v grace", took, p.grace)
	}
	ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL || p.ExitCode() != -1 {
		t.Fatalf("child ended with %v (exit code %d), want SIGKILL", ws, p.ExitCode())
	}
	if Alive(p.PID, p.CreateTime) {
		t.Fatal("child still alive after Stop")
	}
	t.Logf("SIGTERM ignored: killed after %v (grace %v)", took, p.grace)
}

func TestStopHonouredSIGTERMIsQuick(t *testing.T) {
	p := startChild(t, `trap "exit 0" TERM; echo ready; while :; do sleep 0.05; done`)
	start := time.Now()
	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if took := time.Since(start); took >= p.grace || p.ExitCode() != 0 {
		t.Fatalf("a child honouring SIGTERM took %v, exit %d; want < %v and 0", took, p.ExitCode(), p.grace)
	}
}

// StopPID (adopted workers) escalates the same way and waits for the pid to go.
func TestStopPIDEscalates(t *testing.T) {
	p := startChild(t, `trap "" TERM; echo ready; while :; do sleep 1; done`)
	if err := StopPID(context.Background(), p.PID, p.CreateTime, 200*time.Millisecond); err != nil {
		t.Fatalf("StopPID: %v", err)
	}
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("child not reaped after StopPID")
	}
	if StopPID(context.Background(), p.PID, p.CreateTime, time.Second) != nil {
		t.Fatal("StopPID of a gone process should be a no-op")
	}
	// A reused pid (other start time) is never signalled.
	q := startChild(t, `echo ready; while :; do sleep 1; done`)
	if err := StopPID(context.Background(), q.PID, q.CreateTime+1, time.Second); err != nil || !Alive(q.PID, q.CreateTime) {
		t.Fatalf("StopPID with a wrong start time touched the process: %v", err)
	}
}

func TestCrashDetectionGivesExitCode(t *testing.T) {
	p := startChild(t, `echo ready; read -r _ || exit 7`) // exits 7 when stdin closes: now
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("exit not detected")
	}
	if p.ExitCode() != 7 {
		t.Fatalf("exit code %d, want 7", p.ExitCode())
	}
	k := startChild(t, `echo ready; while :; do sleep 1; done`)
	_ = syscall.Kill(k.PID, syscall.SIGKILL)
	<-k.Done()
	if k.ExitCode() != -1 {
		t.Fatalf("exit code after SIGKILL %d, want -1", k.ExitCode())
	}
}

func TestTrimLogKeepsTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.log")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := 0; i < 5000; i++ {
		fmt.Fprintf(f, "line %05d of the worker log\n", i)
	}
	const max = 16 << 10
	if err := TrimLog(path, max); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if int64(len(b)) > max/2+64 {
		t.Fatalf("trimmed log is %d bytes, want about %d", len(b), max/2)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if lines[0] != "=== log trimmed ===" || !strings.HasPrefix(lines[1], "line ") || lines[len(lines)-1] != "line 04999 of the worker log" {
		t.Fatalf("trimmed log does not keep whole tail lines: first %q %q, last %q", lines[0], lines[1], lines[len(lines)-1])
	}
	// The writer's O_APPEND descriptor goes on at the new end.
	fmt.Fprintf(f, "after the trim\n")
	tail, err := Tail(path, 2)
	if err != nil || len(tail) != 2 || tail[0] != "line 04999 of the worker log" || tail[1] != "after the trim" {
		t.Fatalf("tail after the trim = %q, %v", tail, err)
	}
	if err := TrimLog(path, max); err != nil { // under the bound: untouched
		t.Fatal(err)
	}
	if b2, _ := os.ReadFile(path); len(b2) != len(b)+len("after the trim\n") {
		t.Fatal("a log under the bound was trimmed")
	}
}

func TestTailBeyondWindow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.log")
	var b strings.Builder
	for i := 0; b.Len() < 3*tailWindow; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	all := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	got, err := Tail(path, 3)
	if err != nil || strings.Join(got, ",") != strings.Join(all[len(all)-3:], ",") {
		t.Fatalf("Tail 3 = %q, %v", got, err)
	}
	got, _ = Tail(path, 0) // all within the window, starting on a whole line
	if len(got) == 0 || !strings.HasPrefix(got[0], "line ") || got[len(got)-1] != all[len(all)-1] {
		t.Fatalf("Tail 0 = %d lines starting %q", len(got), got[0])
	}
}

// A real worker that cannot find its runtime fails the start typed, with its exit code
// and log lines.
func TestStartFailureIsTyped(t *testing.T) {
	sp, err := New(Config{Binary: testenv.Binary(t), LogDir: t.TempDir(), LlamaLib: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	held := holdPorts(t, 1) // the range starts on a held port
	_, err = sp.Start(context.Background(), Spec{ModelPath: testenv.Model(t), PortMin: held, PortMax: held + 20}, nil)
	var se *StartError
	if !errors.Is(err, ErrRuntimeMissing) || !errors.As(err, &se) || se.ExitCode != wire.ExitRuntimeMissing || len(se.LastLines) == 0 {
		t.Fatalf("start with an empty runtime folder = %v", err)
	}
	if se.Port == held {
		t.Fatalf("started on the held port %d", se.Port)
	}
	notGGUF := filepath.Join(t.TempDir(), "x.gguf")
	_ = os.WriteFile(notGGUF, []byte("not a model"), 0o600)
	if _, err := sp.Start(context.Background(), Spec{ModelPath: notGGUF}, nil); !errors.Is(err, ErrModelLoad) {
		t.Fatalf("start on a non-GGUF file = %v, want ErrModelLoad", err)
	}
	if err := ValidateLlamaLib(t.TempDir()); !errors.Is(err, ErrRuntimeMissing) {
		t.Fatalf("ValidateLlamaLib(empty) = %v", err)
	}
	if err := ValidateLlamaLib(testenv.Runtime(t)); err != nil {
		t.Fatalf("ValidateLlamaLib(installed runtime) = %v", err)
	}
}
