package hive

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/process"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/spawner"
)

// runningChildren are the pids of this test process's children that still run.
func runningChildren(t *testing.T) []int {
	t.Helper()
	me, err := process.NewProcess(int32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	kids, _ := me.Children() // an error means none
	var out []int
	for _, k := range kids {
		if spawner.Alive(int(k.Pid), 0) {
			out = append(out, int(k.Pid))
		}
	}
	return out
}

// assertEveryWorkerRecorded fails when a worker process runs without a live registry
// entry holding its pid: such a worker is invisible, never synced, never stopped.
func assertEveryWorkerRecorded(t *testing.T, h *Hive, pids []int) {
	t.Helper()
	recorded := map[int]bool{}
	for _, e := range h.List() {
		if e.State.Live() {
			recorded[e.PID] = true
		}
	}
	for _, pid := range pids {
		if !recorded[pid] && spawner.Alive(pid, 0) {
			_ = syscall.Kill(pid, syscall.SIGKILL) // do not leak it past the test
			t.Errorf("worker pid %d runs without a registry entry; entries: %+v", pid, h.List())
		}
	}
}

// Two spawns on one port (so one worker id) used to both record "starting"; the loser's
// cleanup deleted the winner's entry, and the winner kept running unrecorded.
func TestConcurrentSpawnsOfOneIDLeaveNoUnrecordedWorker(t *testing.T) {
	h := openHive(t, t.TempDir(), "")
	t.Cleanup(func() { h.Close(true) })
	min, _ := h.PortRange()
	for round := 0; round < 4; round++ {
		var mu sync.Mutex
		var pids []int
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_, errs[i] = h.Spawn(ctx, SpawnRequest{ModelPath: testenv.Model(t), Port: min, CtxSize: 256, Threads: 1},
					func(p SpawnProgress) {
						if p.Phase == PhaseStarting {
							mu.Lock()
							pids = append(pids, p.PID)
							mu.Unlock()
						}
					})
			}()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, ErrPortTaken):
				t.Errorf("round %d: losing spawn failed with %v, want ErrPortTaken", round, err)
			}
		}
		if ok != 1 {
			t.Errorf("round %d: %d spawns succeeded, want 1 (errors %v)", round, ok, errs)
		}
		assertEveryWorkerRecorded(t, h, append(pids, runningChildren(t)...))
		for _, e := range h.List() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			if err := h.Stop(ctx, e.ID); err != nil {
				t.Error(err)
			}
			cancel()
			_ = h.Remove(e.ID)
		}
		if t.Failed() {
			return
		}
	}
}

// Two Restarts of one worker at once: the reviewer's reproduction of the same race.
func TestConcurrentRestartsLeaveNoUnrecordedWorker(t *testing.T) {
	h := openHive(t, t.TempDir(), "")
	t.Cleanup(func() { h.Close(true) })
	id := spawn(t, h).ID
	for round := 0; round < 4; round++ {
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_, _ = h.Restart(ctx, id) // one may lose with ErrPortTaken; that is fine
			}()
		}
		wg.Wait()
		assertEveryWorkerRecorded(t, h, runningChildren(t))
		if t.Failed() {
			return
		}
	}
}

// A Stop that fails (here: its ctx is over before it begins) used to leave the worker
// marked "stopping" for good, so Stop stayed disabled and a later crash was recorded as
// a clean exit.
func TestFailedStopLeavesWorkerLiveAndCrashRecorded(t *testing.T) {
	h := openHive(t, t.TempDir(), "")
	t.Cleanup(func() { h.Close(true) })
	e := spawn(t, h)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.Stop(ctx, e.ID); err == nil {
		t.Fatal("Stop with a cancelled ctx succeeded")
	}
	if got, _ := h.Get(e.ID); got.State != StateReady {
		t.Fatalf("after a failed stop the worker is %q, want %q", got.State, StateReady)
	}
	if err := syscall.Kill(e.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitEntry(t, h, e.ID, 10*time.Second, func(x Entry) bool { return !x.State.Live() })
	if got, _ := h.Get(e.ID); got.State != StateCrashed {
		t.Fatalf("a kill after a failed stop was recorded %q, want %q", got.State, StateCrashed)
	}
}
