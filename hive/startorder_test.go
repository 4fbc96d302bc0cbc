package hive

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/spawner"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// docs/protocol.md §4.1: Queen, then app, then workers.
func TestStartOrderQueenThenAppThenWorkers(t *testing.T) {
	q := startQueen(t)
	h := openHive(t, t.TempDir(), q.URL())
	t.Cleanup(func() { h.Close(true) })
	start := time.Now()
	a, b := spawn(t, h), spawn(t, h)
	took := waitQueenView(t, q.URL(), ids(a, b), testHeartbeat+time.Second)
	t.Logf("two workers spawned in %v, all online %v later", time.Since(start)-took, took)
	waitEntry(t, h, a.ID, time.Second, func(e Entry) bool { return e.Sync == SyncOnline })
}

// docs/protocol.md §4.2: app and workers first, Queen later (the seed's Flow 1).
func TestStartOrderWorkersThenQueen(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	h := openHive(t, t.TempDir(), "http://"+addr)
	t.Cleanup(func() { h.Close(true) })
	a, b := spawn(t, h), spawn(t, h)
	for _, e := range []Entry{a, b} {
		if e.Sync != SyncPending {
			t.Fatalf("%s sync = %s with the Queen down, want pending", e.ID, e.Sync)
		}
	}
	q := startQueenAt(t, addr)
	took := waitQueenView(t, q.URL(), ids(a, b), time.Second)
	t.Logf("Queen started after the workers: all online in %v", took)
}

// docs/protocol.md §4.3: the Queen restarts while workers run.
func TestStartOrderQueenRestarts(t *testing.T) {
	q := startQueen(t)
	h := openHive(t, t.TempDir(), q.URL())
	t.Cleanup(func() { h.Close(true) })
	a, b := spawn(t, h), spawn(t, h)
	waitQueenView(t, q.URL(), ids(a, b), 2*time.Second)
	q.stop()
	q2 := startQueenAt(t, q.addr)
	took := waitQueenView(t, q2.URL(), ids(a, b), testHeartbeat+time.Second)
	t.Logf("Queen restarted: all online again in %v (heartbeat %v)", took, testHeartbeat)
}

// docs/protocol.md §4.4: the app restarts while workers run; the new hive re-adopts them.
func TestStartOrderAppRestarts(t *testing.T) {
	q := startQueen(t)
	state := t.TempDir()
	h := openHive(t, state, q.URL())
	a, b := spawn(t, h), spawn(t, h)
	waitQueenView(t, q.URL(), ids(a, b), 2*time.Second)
	if err := h.Close(false); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	h2 := openHive(t, state, q.URL())
	t.Cleanup(func() { h2.Close(true) })
	for _, e := range []Entry{a, b} {
		got, ok := h2.Get(e.ID)
		if !ok || got.State != StateReady || got.PID != e.PID {
			t.Fatalf("after reopen %s = %+v, want ready with pid %d", e.ID, got, e.PID)
		}
	}
	if n := len(h2.List()); n != 2 {
		t.Fatalf("registry holds %d entries after reopen, want 2", n)
	}
	took := waitQueenView(t, q.URL(), ids(a, b), time.Second)
	t.Logf("app reopened and adopted 2 workers; Queen view intact %v after reopen", took+time.Since(start)-took)
	// An adopted worker is stopped by pid (we are not its parent).
	if err := h2.Stop(context.Background(), a.ID); err != nil {
		t.Fatal(err)
	}
	if spawner.Alive(a.PID, a.ProcessStart) {
		t.Fatalf("adopted worker %d still runs after Stop", a.PID)
	}
	waitQueenView(t, q.URL(), ids(b), time.Second)
}

// docs/protocol.md §4.5: a worker crashes; another is stopped from the app.
func TestStartOrderWorkerCrashesAndStops(t *testing.T) {
	q := startQueen(t)
	h := openHive(t, t.TempDir(), q.URL())
	t.Cleanup(func() { h.Close(true) })
	a, b, c := spawn(t, h), spawn(t, h), spawn(t, h)
	waitQueenView(t, q.URL(), ids(a, b, c), 2*time.Second)

	start := time.Now()
	if err := syscall.Kill(a.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	crashed := waitEntry(t, h, a.ID, time.Second, func(e Entry) bool { return e.State == StateCrashed })
	t.Logf("crash noticed in %v (exit code %v, %s)", time.Since(start), deref(crashed.ExitCode), crashed.ExitReason)

	if err := h.Stop(context.Background(), b.ID); err != nil {
		t.Fatal(err)
	}
	stopped, _ := h.Get(b.ID)
	if stopped.State != StateExited {
		t.Fatalf("stopped worker state = %s, want exited", stopped.State)
	}
	took := waitQueenView(t, q.URL(), ids(c), testHeartbeat+time.Second)
	t.Logf("Queen dropped the crashed and the stopped worker in %v", took)
	if spawner.Alive(b.PID, b.ProcessStart) {
		t.Fatal("stopped worker still runs")
	}
}

func deref(p *int) any {
	if p == nil {
		return "unknown"
	}
	return *p
}

// docs/protocol.md §4.6: the user points the app at another Queen while workers run.
func TestStartOrderSwitchQueen(t *testing.T) {
	q1, q2 := startQueen(t), startQueen(t)
	h := openHive(t, t.TempDir(), q1.URL())
	t.Cleanup(func() { h.Close(true) })
	a, b := spawn(t, h), spawn(t, h)
	waitQueenView(t, q1.URL(), ids(a, b), 2*time.Second)
	if err := h.SetQueen(q2.URL(), ""); err != nil {
		t.Fatal(err)
	}
	took := waitQueenView(t, q2.URL(), ids(a, b), time.Second)
	t.Logf("switched Queen: all online at the new one in %v", took)
	waitQueenView(t, q1.URL(), nil, 3*time.Second)
}

// A Queen that is down for the whole test: the worker serves, the entry stays pending,
// nothing blocks.
func TestQueenDownWholeTime(t *testing.T) {
	dead := "http://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	h := openHive(t, t.TempDir(), dead)
	t.Cleanup(func() { h.Close(true) })
	start := time.Now()
	e := spawn(t, h)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("spawn took %v with the Queen down", d)
	}
	if e.Sync != SyncPending || e.State != StateReady {
		t.Fatalf("entry = %s/%s, want ready/pending", e.State, e.Sync)
	}
	resp, err := http.Get(e.URL() + "/v1/models")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("worker does not serve without a Queen: %v %v", resp, err)
	}
	resp.Body.Close()
	if st := h.QueenStatus(); st.URL != dead {
		t.Fatalf("queen status %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Stop(ctx, e.ID); err != nil {
		t.Fatalf("stop with the Queen down: %v", err)
	}
	waitEntry(t, h, e.ID, time.Second, func(e Entry) bool { return e.State == StateExited })
}

// Ports held by other listeners are skipped.
func TestPortSquatting(t *testing.T) {
	state := t.TempDir()
	h := openHive(t, state, "")
	t.Cleanup(func() { h.Close(true) })
	for p := h.opts.PortMin; p < h.opts.PortMin+3; p++ {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Skipf("port %d not available for squatting: %v", p, err)
		}
		t.Cleanup(func() { l.Close() })
	}
	e := spawn(t, h)
	// The first port after the squatted ones, unless another process on the machine took
	// it meanwhile (other test packages run alongside): never a squatted one.
	if e.Port < h.opts.PortMin+3 || e.Port > h.opts.PortMax {
		t.Fatalf("worker got port %d, want the first free one after the squatted %d..%d", e.Port, h.opts.PortMin, h.opts.PortMin+2)
	}
	_, err := h.Spawn(context.Background(), SpawnRequest{ModelPath: testenv.Model(t), Port: h.opts.PortMin}, nil)
	if !errors.Is(err, ErrPortTaken) {
		t.Fatalf("explicit squatted port: err = %v, want ErrPortTaken", err)
	}
}

// Bad input gets a typed error naming the fix.
func TestSpawnNotAGGUF(t *testing.T) {
	h := openHive(t, t.TempDir(), "")
	t.Cleanup(func() { h.Close(true) })
	bad := filepath.Join(t.TempDir(), "notes.gguf")
	os.WriteFile(bad, []byte("hello"), 0o600)
	_, err := h.Spawn(context.Background(), SpawnRequest{ModelPath: bad}, nil)
	var se *StartError
	if !errors.Is(err, ErrModelLoad) || !errors.As(err, &se) {
		t.Fatalf("err = %v, want ErrModelLoad as *StartError", err)
	}
	if len(h.List()) != 0 {
		t.Fatalf("failed spawn left entries: %+v", h.List())
	}
}

// The app process is SIGKILLed while its workers run; a new hive re-adopts them.
func TestAdoptAfterAppSIGKILL(t *testing.T) {
	q := startQueen(t)
	state := t.TempDir()
	min, max := portRange(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperApp$")
	cmd.Env = append(os.Environ(), "BEEKEEPER_HELPER_APP=1",
		"HELPER_STATE="+state, "HELPER_QUEEN="+q.URL(), "HELPER_BIN="+testenv.Binary(t),
		"HELPER_MODEL="+testenv.Model(t),
		"HELPER_PORTS="+strconv.Itoa(min)+"-"+strconv.Itoa(max))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	n, _ := out.Read(buf) // the helper prints its two ids once both serve
	if n == 0 {
		cmd.Process.Kill()
		t.Fatal("helper app printed nothing")
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	h := openHive(t, state, q.URL())
	t.Cleanup(func() { h.Close(true) })
	live := h.List()
	if len(live) != 2 {
		t.Fatalf("registry after app SIGKILL holds %d entries, want 2: %+v", len(live), live)
	}
	for _, e := range live {
		if e.State != StateReady {
			t.Fatalf("%s not re-adopted: %s (%s)", e.ID, e.State, e.ExitReason)
		}
	}
	took := waitQueenView(t, q.URL(), ids(live...), time.Second)
	t.Logf("workers survived the app's SIGKILL; re-adopted, Queen view in %v", took)
}

// TestHelperApp is the "app" process of TestAdoptAfterAppSIGKILL (re-executed test binary).
func TestHelperApp(t *testing.T) {
	if os.Getenv("BEEKEEPER_HELPER_APP") != "1" {
		t.Skip("helper process only")
	}
	var min, max int
	_, _ = fmtSscanf(os.Getenv("HELPER_PORTS"), &min, &max)
	h, err := Open(Options{StateDir: os.Getenv("HELPER_STATE"), PortMin: min, PortMax: max,
		WorkerBinary: os.Getenv("HELPER_BIN"), QueenURL: os.Getenv("HELPER_QUEEN")})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := h.Spawn(context.Background(), SpawnRequest{ModelPath: os.Getenv("HELPER_MODEL")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	os.Stdout.WriteString("ready\n")
	select {} // wait for SIGKILL
}

// A model named by a relative path is recorded, and served, by its absolute path: the
// registry outlives the folder the command was run from.
func TestSpawnRecordsAbsoluteModelPath(t *testing.T) {
	h := openHive(t, t.TempDir(), "")
	t.Cleanup(func() { h.Close(true) })
	wd, _ := os.Getwd()
	rel, err := filepath.Rel(wd, testenv.Model(t))
	if err != nil || filepath.IsAbs(rel) {
		t.Fatalf("no relative path to the model: %q %v", rel, err)
	}
	e, err := h.Spawn(context.Background(), SpawnRequest{ModelPath: rel}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.ModelPath != testenv.Model(t) {
		t.Fatalf("recorded model path %q, want %q", e.ModelPath, testenv.Model(t))
	}
	resp, err := http.Get(e.URL() + wire.PathCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var caps wire.Capabilities
	if err := json.NewDecoder(resp.Body).Decode(&caps); err != nil || caps.ModelPath != testenv.Model(t) {
		t.Fatalf("worker serves model_path %q (%v), want %q", caps.ModelPath, err, testenv.Model(t))
	}
}

// The app opens its hive before it knows its Queen, so a reopened hive may hold no token
// while its workers were spawned with one (--api-token): they answer /capabilities 401.
// Such a worker is ours (same pid, same start time, healthy) and must be adopted, never
// stopped.
func TestReopenWithoutTokenAdoptsTokenWorkers(t *testing.T) {
	state := t.TempDir()
	min, max := portRange(t)
	h, err := Open(Options{StateDir: state, PortMin: min, PortMax: max, WorkerBinary: testenv.Binary(t),
		QueenURL: "http://127.0.0.1:1", QueenToken: "s3cret", SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	e := spawn(t, h)
	if err := h.Close(false); err != nil {
		t.Fatal(err)
	}
	h2 := openHive(t, state, "")
	t.Cleanup(func() { h2.Close(true) })
	got, ok := h2.Get(e.ID)
	if !ok || got.State != StateReady || got.PID != e.PID {
		t.Fatalf("after reopening without the token %s = %+v, want ready with pid %d", e.ID, got, e.PID)
	}
	if !spawner.Alive(e.PID, e.ProcessStart) {
		t.Fatal("the reopened hive stopped a healthy worker spawned with another token")
	}
}
