package queen

import (
	"context"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// TestLivenessStateMachine walks a worker through every state with the injected clock.
func TestLivenessStateMachine(t *testing.T) {
	clock := newFakeClock()
	const retention = time.Minute
	r := newRegistry(clock.Now, testInterval, retention, DefaultMaxWorkers)
	_, events, cancel := r.subscribe()
	defer cancel()

	state := func() wire.WorkerState {
		w, ok := r.get("w1")
		if !ok {
			return "removed"
		}
		return w.State
	}
	step := func(name string, advance time.Duration, heartbeat bool, want wire.WorkerState) {
		t.Helper()
		clock.Advance(advance)
		if heartbeat {
			if err := r.heartbeat(wire.Heartbeat{WorkerID: "w1", Status: wire.StatusReady}); err != nil {
				t.Fatalf("%s: heartbeat refused: %v", name, err)
			}
		}
		r.sweep()
		if got := state(); got != want {
			t.Fatalf("%s: state %s, want %s", name, got, want)
		}
	}

	if _, err := r.register(regReq("w1", 9), ""); err != nil {
		t.Fatal(err)
	}
	step("just registered", 0, false, wire.StateRegistered)
	step("first heartbeat", time.Second, true, wire.StateOnline)
	step("2.9 intervals silent", 2900*time.Millisecond, false, wire.StateOnline)
	step("3 intervals silent", 100*time.Millisecond, false, wire.StateStale)
	step("heartbeat revives stale", 0, true, wire.StateOnline)
	step("6 intervals silent", wire.OfflineAfter*testInterval, false, wire.StateOffline)
	step("heartbeat revives offline", 0, true, wire.StateOnline)
	step("offline again", wire.OfflineAfter*testInterval, false, wire.StateOffline)
	step("within retention", retention-time.Millisecond, false, wire.StateOffline)
	step("retention over", time.Millisecond, false, "removed")
	if r.heartbeat(wire.Heartbeat{WorkerID: "w1"}) == nil {
		t.Fatal("a removed worker's heartbeat was accepted; it must get unknown_worker and re-register")
	}

	var got []string
	for len(events) > 0 {
		ev := <-events
		got = append(got, ev.Type)
	}
	want := []string{"registered", "online", "stale", "online", "offline", "online", "offline", "removed"}
	if len(got) != len(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events %v, want %v", got, want)
		}
	}
}

// TestSilentRegistrationGoesStale guards against a registration that never heartbeats
// staying "registered" (and blocking its id) forever.
func TestSilentRegistrationGoesStale(t *testing.T) {
	clock := newFakeClock()
	r := newRegistry(clock.Now, testInterval, time.Minute, DefaultMaxWorkers)
	r.register(regReq("w1", 9), "")
	clock.Advance(wire.StaleAfter * testInterval)
	r.sweep()
	if w, _ := r.get("w1"); w.State != wire.StateStale {
		t.Fatalf("state %s, want stale", w.State)
	}
}

// TestReRegistrationKeepsOnlineWorkerRoutable guards the idempotent path: a spawner's
// periodic re-registration must not take an online worker out of routing.
func TestReRegistrationKeepsOnlineWorkerRoutable(t *testing.T) {
	clock := newFakeClock()
	r := newRegistry(clock.Now, testInterval, time.Minute, DefaultMaxWorkers)
	r.register(regReq("w1", 9), "")
	r.heartbeat(wire.Heartbeat{WorkerID: "w1", Status: wire.StatusReady})
	res, err := r.register(regReq("w1", 9), "")
	if err != nil || res.worker.State != wire.StateOnline {
		t.Fatalf("re-registration: %+v %v, want online", res.worker, err)
	}
}

// TestSweeperRunsUntilContextEnds checks the one sweeper goroutine Serve owns advances
// liveness on the real clock and exits with its context.
func TestSweeperRunsUntilContextEnds(t *testing.T) {
	q, err := New(Config{HeartbeatInterval: 10 * time.Millisecond, Retention: time.Hour, Dial: new(testenv.LoopbackDialer).DialContext})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.reg.register(regReq("w1", 9), ""); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.sweepLoop(ctx)
	}()
	waitFor(t, 5*time.Second, "offline", func() bool {
		w, _ := q.Worker("w1")
		return w.State == wire.StateOffline
	})
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("sweeper did not exit with its context")
	}
}
