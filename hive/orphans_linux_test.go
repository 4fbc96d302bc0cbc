//go:build linux

package hive

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/spawner"
)

// These tests find worker processes the way an observer would, without the hive's own
// marker: a worker's stdout is its log file, <state>/logs/<id>.log.

type runningWorker struct {
	pid int
	id  string
}

// workersUnder lists the running (not zombie) processes whose stdout is a log file in
// state's logs folder: the workers of that state folder, recorded or not.
func workersUnder(t *testing.T, state string) []runningWorker {
	t.Helper()
	logs := filepath.Join(state, "logs") + string(os.PathSeparator)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []runningWorker
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/1", pid))
		if err != nil || !strings.HasPrefix(target, logs) || !strings.HasSuffix(target, ".log") {
			continue
		}
		if !spawner.Alive(pid, 0) {
			continue
		}
		out = append(out, runningWorker{pid: pid, id: strings.TrimSuffix(filepath.Base(target), ".log")})
	}
	return out
}

// killWorkersUnder SIGKILLs every worker of state: a failed test must not leak them.
func killWorkersUnder(t *testing.T, state string) {
	for _, w := range workersUnder(t, state) {
		_ = syscall.Kill(w.pid, syscall.SIGKILL)
	}
}

// childOf returns a child pid of ppid, or 0.
func childOf(ppid int) int {
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(ppid) {
			return pid
		}
	}
	return 0
}

// spawnCommand is `beekeeper spawn` on the test model with BEEKEEPER_HOME=home.
func spawnCommand(t *testing.T, home string, extra ...string) *exec.Cmd {
	args := append([]string{"spawn", "--model", testenv.Model(t), "--threads", "1", "--ctx-size", "256"}, extra...)
	cmd := exec.Command(testenv.Binary(t), args...)
	cmd.Env = append(os.Environ(), "BEEKEEPER_HOME="+home)
	return cmd
}

// A `beekeeper spawn` killed (SIGKILL) during a start used to leave a worker that runs
// with no entry (the entry was claimed only after the process started): nobody could see,
// sync or stop it. Each kill here lands at another moment: after fixed delays, and the
// instant the worker process appears. The next hive must record every worker left running,
// bring it to ready, and stop it.
func TestKilledSpawnLeavesNoUnrecordedWorker(t *testing.T) {
	home := t.TempDir()
	state := filepath.Join(home, "state")
	t.Cleanup(func() { killWorkersUnder(t, state) })
	killAfter := func(wait func(cmd *exec.Cmd)) {
		cmd := spawnCommand(t, home)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wait(cmd)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	for _, d := range []time.Duration{10, 20, 40, 60, 80, 100, 150, 200} {
		killAfter(func(*exec.Cmd) { time.Sleep(d * time.Millisecond) })
	}
	for range 6 { // the moment the worker exists: between its start and its record
		killAfter(func(cmd *exec.Cmd) {
			deadline := time.Now().Add(10 * time.Second)
			for childOf(cmd.Process.Pid) == 0 && time.Now().Before(deadline) {
			}
		})
	}
	running := workersUnder(t, state)
	if len(running) == 0 {
		t.Fatal("no kill left a worker running: the test proves nothing")
	}
	t.Logf("%d workers left running by 14 killed spawns", len(running))

	h := openHive(t, state, "")
	t.Cleanup(func() { h.Close(false) })
	for _, w := range running {
		e, ok := h.Get(w.id)
		if !ok || e.PID != w.pid || !e.State.Live() {
			t.Errorf("worker %s (pid %d) runs, but the reopened hive records %+v (found %v)", w.id, w.pid, e, ok)
		}
	}
	if t.Failed() {
		return
	}
	for _, w := range running {
		// Killed while loading, nobody was left to see it serve: the hive does.
		waitEntry(t, h, w.id, 15*time.Second, func(e Entry) bool { return e.State == StateReady })
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		if err := h.Stop(ctx, w.id); err != nil {
			t.Errorf("stop %s: %v", w.id, err)
		}
		cancel()
		if spawner.Alive(w.pid, 0) {
			t.Errorf("stop %s returned, but pid %d still runs", w.id, w.pid)
		}
	}
	for _, e := range h.List() {
		if e.State.Live() {
			t.Errorf("after stopping every worker, %s is still %s (pid %d): a stale claim?", e.ID, e.State, e.PID)
		}
	}
}

// Ten `beekeeper spawn` at once on automatic ports used to pick the same free ports
// (each process probed on its own) and four failed with "port already in use".
func TestConcurrentSpawnCommandsGetDistinctPorts(t *testing.T) {
	home := t.TempDir()
	state := filepath.Join(home, "state")
	t.Cleanup(func() { killWorkersUnder(t, state) })
	testenv.Model(t) // checked once here, not in the goroutines
	testenv.Binary(t)
	const n = 10
	outs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := spawnCommand(t, home)
			var out []byte
			out, errs[i] = cmd.CombinedOutput()
			outs[i] = string(out)
		}()
	}
	wg.Wait()
	ports := map[int]string{}
	for i := range n {
		if errs[i] != nil {
			t.Errorf("spawn %d failed (%v):\n%s", i, errs[i], outs[i])
			continue
		}
		// The last line: "<id>\tport <n>\t<url>\tqueen <state>".
		lines := strings.Split(strings.TrimSpace(outs[i]), "\n")
		fields := strings.Split(lines[len(lines)-1], "\t")
		var port int
		if len(fields) < 2 {
			t.Errorf("spawn %d printed %q", i, outs[i])
			continue
		}
		if _, err := fmt.Sscanf(fields[1], "port %d", &port); err != nil {
			t.Errorf("spawn %d printed %q", i, outs[i])
			continue
		}
		if other, dup := ports[port]; dup {
			t.Errorf("two spawns got port %d: %s and %s", port, other, fields[0])
		}
		ports[port] = fields[0]
	}
	h := openHive(t, state, "")
	t.Cleanup(func() { h.Close(true) })
	live := 0
	for _, e := range h.List() {
		if e.State == StateReady && spawner.Alive(e.PID, e.ProcessStart) {
			live++
		}
	}
	if live != len(ports) || len(running(t, state)) != len(ports) {
		t.Errorf("%d ready entries and %d running workers for %d successful spawns", live, len(running(t, state)), len(ports))
	}
}

func running(t *testing.T, state string) []runningWorker { return workersUnder(t, state) }

// A registry file set aside as corrupt used to leave the registry empty while its workers
// ran on: `stop` called them unknown, and with duplicate ids it said "stopped" and left
// one running. Each variant leaves two running workers that the reopened hive must know
// (ready, same pid) and stop.
func TestCorruptRegistryIsRebuiltFromRunningWorkers(t *testing.T) {
	state := t.TempDir()
	t.Cleanup(func() { killWorkersUnder(t, state) })
	type doc = map[string]any
	// edit decodes the good file, lets fn change it, and encodes it again.
	edit := func(fn func(d doc, es []any)) func([]byte) []byte {
		return func(good []byte) []byte {
			var d doc
			if err := json.Unmarshal(good, &d); err != nil {
				panic(err)
			}
			es, _ := d["entries"].([]any)
			fn(d, es)
			b, _ := json.Marshal(d)
			return b
		}
	}
	live := func(es []any) []map[string]any {
		var out []map[string]any
		for _, e := range es {
			if m := e.(map[string]any); m["state"] == string(StateReady) {
				out = append(out, m)
			}
		}
		return out
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 700)
	for i := range garbage {
		garbage[i] = byte(rnd.IntN(256))
	}
	variants := []struct {
		name    string
		corrupt func(good []byte) []byte // nil: remove the file
	}{
		{"empty", func([]byte) []byte { return nil }},
		{"truncated", func(g []byte) []byte { return g[:len(g)/2] }},
		{"garbage", func([]byte) []byte { return garbage }},
		{"nul bytes", func([]byte) []byte { return make([]byte, 512) }},
		{"not json", func([]byte) []byte { return []byte("registry\n") }},
		{"json null", func([]byte) []byte { return []byte("null") }},
		{"json array", func([]byte) []byte { return []byte("[]") }},
		{"no schema", edit(func(d doc, _ []any) { delete(d, "schema") })},
		{"schema a string", edit(func(d doc, _ []any) { d["schema"] = "1" })},
		{"entries an object", edit(func(d doc, _ []any) { d["entries"] = doc{"a": 1} })},
		{"pid a string", edit(func(_ doc, es []any) { live(es)[0]["pid"] = "12x" })},
		{"duplicate ids", edit(func(d doc, es []any) {
			for _, m := range live(es) {
				dup := map[string]any{}
				for k, v := range m {
					dup[k] = v
				}
				dup["pid"] = 999999 // a process that does not run
				es = append(es, dup)
			}
			d["entries"] = es
		})},
		{"id missing", edit(func(_ doc, es []any) { delete(live(es)[0], "id") })},
		{"unknown state", edit(func(_ doc, es []any) { live(es)[0]["state"] = "zombie" })},
		{"trailing garbage", func(g []byte) []byte { return append(append([]byte{}, g...), "}{\x00oops"...) }},
		{"entries emptied", edit(func(d doc, _ []any) { d["entries"] = []any{} })},
		{"wrong pid", edit(func(_ doc, es []any) { live(es)[0]["pid"] = 999999 })},
		{"file removed", nil},
		// The file says the first worker ended while it runs. exited is final, so the
		// hive makes it true: it stops that worker at open.
		{"says exited", edit(func(_ doc, es []any) { live(es)[0]["state"] = string(StateExited) })},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			h := openHive(t, state, "")
			a, b := spawn(t, h), spawn(t, h)
			if err := h.Close(false); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(state, "registry.json")
			if v.corrupt == nil {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			} else {
				good, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, v.corrupt(good), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			h2 := openHive(t, state, "")
			defer h2.Close(false)
			workers := []Entry{a, b}
			if v.name == "says exited" {
				if spawner.Alive(a.PID, a.ProcessStart) {
					t.Errorf("%s runs while its entry says exited", a.ID)
				}
				workers = workers[1:]
			}
			for _, e := range workers {
				got, ok := h2.Get(e.ID)
				if !ok || got.PID != e.PID || !got.State.Live() {
					t.Errorf("%s runs (pid %d) but the reopened hive records %+v (found %v)", e.ID, e.PID, got, ok)
					continue
				}
				waitEntry(t, h2, e.ID, 10*time.Second, func(x Entry) bool { return x.State == StateReady })
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				if err := h2.Stop(ctx, e.ID); err != nil {
					t.Errorf("stop %s: %v", e.ID, err)
				}
				cancel()
			}
			for _, e := range []Entry{a, b} {
				if spawner.Alive(e.PID, e.ProcessStart) {
					t.Errorf("%s (pid %d) still runs after stop", e.ID, e.PID)
					_ = syscall.Kill(e.PID, syscall.SIGKILL)
				}
			}
		})
	}
}

// readRegistryState is the state registry.json on disk gives id ("" when absent).
func readRegistryState(t *testing.T, state, id string) State {
	t.Helper()
	f, err := os.Open(filepath.Join(state, "registry.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var doc struct {
		Entries []Entry `json:"entries"`
	}
	if err := json.NewDecoder(bufio.NewReader(f)).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	for _, e := range doc.Entries {
		if e.ID == id {
			return e.State
		}
	}
	return ""
}

// On a full disk `stop` used to say "stopped" while the registry still said ready: the
// failed write was dropped. A write that fails is the caller's error, and the hive never
// shows a state the file does not hold.
func TestStopOnFullDiskReportsTheFailure(t *testing.T) {
	state := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", state).CombinedOutput(); err != nil {
		t.Skipf("a full disk needs a small tmpfs, and mounting one failed (root only): %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", state).Run() })
	h := openHive(t, state, "")
	t.Cleanup(func() { h.Close(true) })
	e := spawn(t, h)

	filler := filepath.Join(state, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			break // ENOSPC: the disk is full
		}
	}
	f.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = h.Stop(ctx, e.ID)
	if err == nil {
		t.Fatalf("stop on a full disk reported success; the registry file says %q", readRegistryState(t, state, e.ID))
	}
	t.Logf("stop on a full disk: %v", err)
	onDisk := readRegistryState(t, state, e.ID)
	if got, _ := h.Get(e.ID); got.State != onDisk {
		t.Fatalf("the hive says %q while the registry file says %q", got.State, onDisk)
	}

	// Space again: the hive records what happened, on disk too.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if spawner.Alive(e.PID, e.ProcessStart) {
		if err := h.Stop(ctx, e.ID); err != nil {
			t.Fatalf("stop with space again: %v", err)
		}
	}
	waitEntry(t, h, e.ID, 5*time.Second, func(x Entry) bool { return x.State == StateExited })
	if s := readRegistryState(t, state, e.ID); s != StateExited {
		t.Fatalf("the registry file says %q, want exited", s)
	}
}

// The Queen token used to be passed as --api-token, readable by every local user in the
// worker's command line (ps). It goes through the environment; the log and the registry
// never hold it.
func TestWorkerTokenNeverOnTheCommandLine(t *testing.T) {
	const token = "tok-7f3a9c-secret"
	state := t.TempDir()
	min, max := portRange(t)
	h, err := Open(Options{StateDir: state, PortMin: min, PortMax: max, WorkerBinary: testenv.Binary(t),
		QueenURL: "http://127.0.0.1:1", QueenToken: token, SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(true) })
	e := spawn(t, h)
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", e.PID))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cmdline), token) {
		t.Errorf("the token is in the worker's command line: %q", strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	if out, err := exec.Command("ps", "-o", "args=", "-p", strconv.Itoa(e.PID)).Output(); err == nil && strings.Contains(string(out), token) {
		t.Errorf("ps shows the token: %s", out)
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", e.PID))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains("\x00"+string(environ)+"\x00", "\x00BEEKEEPER_API_TOKEN="+token+"\x00") {
		t.Errorf("the worker's environment lacks BEEKEEPER_API_TOKEN")
	}
	for _, p := range []string{filepath.Join(state, "registry.json"), e.LogFile} {
		if b, err := os.ReadFile(p); err != nil || strings.Contains(string(b), token) {
			t.Errorf("%s holds the token (read error %v)", p, err)
		}
	}
}

// A FIFO named .gguf used to hang `beekeeper spawn` for good. It is refused at once, and
// nothing is claimed for it.
func TestSpawnRefusesAFIFOModelAndRecordsNothing(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "pipe.gguf")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	h := openHive(t, t.TempDir(), "")
	t.Cleanup(func() { h.Close(true) })
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := h.Spawn(ctx, SpawnRequest{ModelPath: fifo}, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrModelLoad) {
			t.Fatalf("spawn on a FIFO = %v, want ErrModelLoad", err)
		}
	case <-time.After(3 * time.Second):
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		<-done
		t.Fatal("spawn on a FIFO hung")
	}
	if es := h.List(); len(es) != 0 {
		t.Fatalf("a refused model left entries: %+v", es)
	}
}

// A running app must not wait for its next start to see a worker that no entry records
// (a `beekeeper spawn` killed between starting and recording it): its tick looks for
// them. The worker here is started by a bare spawner, with the hive's marker and no entry.
func TestRunningHiveAdoptsAnUnrecordedWorker(t *testing.T) {
	state := t.TempDir()
	h := openHive(t, state, "")
	t.Cleanup(func() { h.Close(true) })
	sp, err := spawner.New(spawner.Config{Binary: testenv.Binary(t), LogDir: logDir(state), HiveDir: state})
	if err != nil {
		t.Fatal(err)
	}
	min, max := h.PortRange()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := sp.Start(ctx, spawner.Spec{ModelPath: testenv.Model(t), PortMin: min, PortMax: max, Threads: 1, CtxSize: 256}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	start := time.Now()
	e := waitEntry(t, h, p.ID, unrecordedEvery+5*time.Second, func(e Entry) bool { return e.PID == p.PID && e.State == StateReady })
	t.Logf("the running hive recorded %s (pid %d) as ready %v after it started", e.ID, e.PID, time.Since(start).Round(time.Millisecond))
	if e.Port != p.Port || e.ModelPath != testenv.Model(t) || e.LogFile != p.LogFile {
		t.Fatalf("adopted entry %+v does not describe the worker (port %d, log %s)", e, p.Port, p.LogFile)
	}
	if err := h.Stop(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("stop of the adopted worker returned, but it still runs")
	}
}
