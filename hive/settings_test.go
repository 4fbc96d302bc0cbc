package hive

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
)

// SetPortRange refuses unusable ranges (keeping the old one) and moves the next spawn.
func TestSetPortRange(t *testing.T) {
	h := openHive(t, t.TempDir(), "")
	t.Cleanup(func() { h.Close(true) })
	oldMin, oldMax := h.PortRange()
	for _, bad := range [][2]int{{-1, 10}, {9000, 8999}, {0, 9000}, {60000, 70000}} {
		if err := h.SetPortRange(bad[0], bad[1]); !errors.Is(err, ErrBadPortRange) {
			t.Errorf("SetPortRange(%d, %d) = %v, want ErrBadPortRange", bad[0], bad[1], err)
		}
	}
	if min, max := h.PortRange(); min != oldMin || max != oldMax {
		t.Fatalf("a refused range changed the range to %d..%d", min, max)
	}
	if err := h.SetPortRange(0, 0); err != nil {
		t.Fatal(err)
	}
	if min, max := h.PortRange(); min != 8080 || max != 8200 {
		t.Fatalf("SetPortRange(0, 0) gave %d..%d, want the defaults", min, max)
	}

	// A one-port range: the next spawn lands exactly there.
	port := testenv.FreePort(t)
	if err := h.SetPortRange(port, port); err != nil {
		t.Fatal(err)
	}
	e := spawn(t, h)
	if e.Port != port {
		t.Fatalf("spawned on %d, want the only port of the new range %d", e.Port, port)
	}

	// A range whose only port is held: ErrNoFreePort, and the running worker is untouched.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bp := busy.Addr().(*net.TCPAddr).Port
	if err := h.SetPortRange(bp, bp); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := h.Spawn(ctx, SpawnRequest{ModelPath: testenv.Model(t)}, nil); !errors.Is(err, ErrNoFreePort) {
		t.Fatalf("spawn in a taken range = %v, want ErrNoFreePort", err)
	}
	if got, _ := h.Get(e.ID); got.State != StateReady {
		t.Fatalf("the earlier worker is %s after the range moved, want ready", got.State)
	}
}

// SetLlamaLib validates the folder and is what the next spawn hands its worker: a
// folder that disappears after the setting fails that spawn with ErrRuntimeMissing.
func TestSetLlamaLib(t *testing.T) {
	h := openHive(t, t.TempDir(), "")
	t.Cleanup(func() { h.Close(true) })

	empty := t.TempDir()
	if err := h.SetLlamaLib(empty); !errors.Is(err, ErrRuntimeMissing) {
		t.Fatalf("SetLlamaLib(empty folder) = %v, want ErrRuntimeMissing", err)
	}
	if h.LlamaLib() != "" {
		t.Fatalf("a refused folder was kept: %q", h.LlamaLib())
	}

	// A link to the installed runtime, so the test can make it vanish.
	lib := filepath.Join(t.TempDir(), "llama")
	if err := os.Symlink(testenv.Runtime(t), lib); err != nil {
		t.Fatal(err)
	}
	if err := h.SetLlamaLib(lib); err != nil {
		t.Fatal(err)
	}
	e := spawn(t, h)
	head, err := h.LogTail(e.ID, 0)
	if err != nil || len(head) == 0 || !strings.Contains(head[0], "--llama-lib "+lib) {
		t.Fatalf("the worker was not started with --llama-lib %s; log starts %q (err %v)", lib, head, err)
	}

	if err := os.Remove(lib); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = h.Spawn(ctx, SpawnRequest{ModelPath: testenv.Model(t)}, nil)
	var se *StartError
	if !errors.Is(err, ErrRuntimeMissing) || !errors.As(err, &se) || len(se.LastLines) == 0 {
		t.Fatalf("spawn with a vanished runtime folder = %v, want ErrRuntimeMissing with log lines", err)
	}

	if err := h.SetLlamaLib(""); err != nil {
		t.Fatal(err)
	}
	spawn(t, h) // back to the worker's own lookup
}

// Settings change while spawns run: the race detector checks the locking, and every
// spawn lands in one of the ranges that were set.
func TestSettingsChangeDuringSpawns(t *testing.T) {
	h := openHive(t, t.TempDir(), "")
	t.Cleanup(func() { h.Close(true) })
	min, max := portRange(t)
	ranges := [][2]int{{min, min + 20}, {min + 10, max}}
	rt := testenv.Runtime(t)
	if err := h.SetPortRange(min, max); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r := ranges[i%2]
			if err := h.SetPortRange(r[0], r[1]); err != nil {
				t.Error(err)
				return
			}
			if err := h.SetLlamaLib([]string{"", rt}[i%2]); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(time.Millisecond) // pacing only: keep the writer from hogging a core
		}
	}()
	var got []Entry
	for i := 0; i < 2; i++ {
		got = append(got, spawn(t, h))
	}
	close(stop)
	wg.Wait()
	for _, e := range got {
		if e.Port < min || e.Port > max {
			t.Fatalf("worker on port %d, outside every range set (%d..%d)", e.Port, min, max)
		}
	}
	if got[0].Port == got[1].Port {
		t.Fatalf("both workers on port %d", got[0].Port)
	}
}

// Two hives on one registry (the app and a second app): a stop asked by either is
// "exited", never "crashed", whichever hive notices the exit first, and the parent's
// reap records the exit code even when the other hive recorded the exit first.
func TestTwoHivesAgreeOnStop(t *testing.T) {
	state := t.TempDir()
	parent := openHive(t, state, "")
	t.Cleanup(func() { parent.Close(true) })
	other := openHive(t, state, "")
	t.Cleanup(func() { other.Close(false) })
	// Stops by the parent, by the other hive, and by a third instance (a `beekeeper stop`
	// that recorded "stopping" and SIGKILLed: exit code -1, so only the shared state says
	// it was asked).
	for i, stopper := range []*Hive{parent, other, nil} {
		e := spawn(t, parent)
		waitEntry(t, other, e.ID, 2*time.Second, func(x Entry) bool { return x.State == StateReady })
		if stopper == nil {
			if _, err := parent.reg.Modify(e.ID, func(x *Entry) { x.State = StateStopping }); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Kill(e.PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := stopper.Stop(ctx, e.ID)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, h := range []*Hive{parent, other} {
			got := waitEntry(t, h, e.ID, 2*time.Second, func(x Entry) bool { return x.ExitCode != nil })
			if got.State != StateExited {
				t.Fatalf("stop %d: %s is %s (%s), want exited", i, e.ID, got.State, got.ExitReason)
			}
		}
	}
}

// docs/protocol.md §4.3 twice over: the Queen restarts twice in quick succession.
func TestQueenRestartsTwiceQuickly(t *testing.T) {
	q := startQueen(t)
	h := openHive(t, t.TempDir(), q.URL())
	t.Cleanup(func() { h.Close(true) })
	a, b := spawn(t, h), spawn(t, h)
	waitQueenView(t, q.URL(), ids(a, b), 2*time.Second)
	q.stop()
	q2 := startQueenAt(t, q.addr)
	q2.stop()
	q3 := startQueenAt(t, q.addr)
	took := waitQueenView(t, q3.URL(), ids(a, b), testHeartbeat+time.Second)
	for _, e := range []Entry{a, b} {
		waitEntry(t, h, e.ID, time.Second, func(x Entry) bool { return x.Sync == SyncOnline })
	}
	t.Logf("Queen restarted twice: all online again in %v (heartbeat %v)", took, testHeartbeat)
}
