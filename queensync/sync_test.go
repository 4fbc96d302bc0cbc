package queensync

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/localregistry"
	"github.com/beekeeper-hive/beekeeper/queen"
	"github.com/beekeeper-hive/beekeeper/queenclient"
	"github.com/beekeeper-hive/beekeeper/wire"
)

const heartbeat = 300 * time.Millisecond

// queenAt serves a real in-process mini Queen on addr; wrap, when set, sits in front of
// its handler (to block or count calls). stop ends it; it also ends with the test.
func queenAt(t *testing.T, addr string, wrap func(http.Handler) http.Handler) (url string, stop func()) {
	t.Helper()
	return queenWith(t, queen.Config{Addr: addr, HeartbeatInterval: heartbeat}, wrap)
}

// queenWith is queenAt with a whole Queen configuration.
func queenWith(t *testing.T, cfg queen.Config, wrap func(http.Handler) http.Handler) (url string, stop func()) {
	t.Helper()
	addr := cfg.Addr
	qn, err := queen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = qn.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
			_ = srv.Close()
			qn.Close()
			<-done
		})
	}
	t.Cleanup(stop)
	return "http://" + ln.Addr().String(), stop
}

func freeAddr(t *testing.T) string { return "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) }

// readyWorker starts a real worker and records it in reg as a ready, pending entry, the
// way the hive does after a spawn.
func readyWorker(t *testing.T, reg *localregistry.Registry) (localregistry.Entry, *testenv.Process) {
	t.Helper()
	p := testenv.StartWorker(t)
	e := localregistry.Entry{
		ID: wire.WorkerID(wire.DefaultWorkerType, wire.DefaultHost, p.Port), PID: p.Cmd.Process.Pid,
		Port: p.Port, BindHost: wire.DefaultHost, AdvertiseHost: wire.DefaultHost,
		Model: wire.ModelName(testenv.Model(t)), ModelPath: testenv.Model(t),
		WorkerType: wire.DefaultWorkerType, SpawnedBy: wire.SpawnedByGUI,
		StartedAt: time.Now().UTC(), State: localregistry.StateReady, Sync: localregistry.SyncPending,
	}
	if err := reg.Put(e); err != nil {
		t.Fatal(err)
	}
	return e, p
}

func openRegistry(t *testing.T, dir string) *localregistry.Registry {
	t.Helper()
	reg, err := localregistry.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// run starts s.Run until the test ends.
func run(t *testing.T, s *Syncer) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func listed(t *testing.T, url string) map[string]wire.Worker {
	t.Helper()
	c, err := queenclient.New(url, "", queenclient.Options{Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ws, err := c.List(ctx)
	if err != nil {
		return nil
	}
	out := map[string]wire.Worker{}
	for _, w := range ws {
		out[w.WorkerID] = w
	}
	return out
}

// poll waits until cond holds, failing the test with what after within.
func poll(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func onlineAt(t *testing.T, url string, ids ...string) func() bool {
	return func() bool {
		ws := listed(t, url)
		if len(ws) != len(ids) {
			return false
		}
		for _, id := range ids {
			if ws[id].State != wire.StateOnline {
				return false
			}
		}
		return true
	}
}

func syncIs(reg *localregistry.Registry, id string, st localregistry.SyncState) func() bool {
	return func() bool { e, _ := reg.Get(id); return e.Sync == st }
}

// Pending entries are registered as soon as a Queen appears at the configured URL.
func TestPendingRegisteredWhenQueenAppears(t *testing.T) {
	reg := openRegistry(t, t.TempDir())
	e, _ := readyWorker(t, reg)
	addr := freeAddr(t)
	s := New(Config{Registry: reg, Interval: time.Hour, Retry: 50 * time.Millisecond})
	if err := s.SetQueen("http://"+addr, ""); err != nil {
		t.Fatal(err)
	}
	run(t, s)
	poll(t, 2*time.Second, "Queen reported unreachable", func() bool {
		st := s.Status()
		return !st.Reachable && st.LastError != "" && st.Pending == 1
	})
	if got, _ := reg.Get(e.ID); got.Sync != localregistry.SyncPending {
		t.Fatalf("sync with no Queen = %s, want pending", got.Sync)
	}
	url, _ := queenAt(t, addr, nil)
	took := poll(t, heartbeat+time.Second, "worker online at the new Queen", onlineAt(t, url, e.ID))
	poll(t, time.Second, "entry marked online", syncIs(reg, e.ID, localregistry.SyncOnline))
	t.Logf("Queen appeared: worker online there %v later (heartbeat %v)", took, heartbeat)
}

// An entry that stops (the worker was SIGKILLed, so it cannot say goodbye itself) is
// deregistered by the sync.
func TestStoppedEntryDeregistered(t *testing.T) {
	reg := openRegistry(t, t.TempDir())
	url, _ := queenAt(t, freeAddr(t), nil)
	a, pa := readyWorker(t, reg)
	b, _ := readyWorker(t, reg)
	s := New(Config{Registry: reg, Interval: time.Hour})
	if err := s.SetQueen(url, ""); err != nil {
		t.Fatal(err)
	}
	run(t, s)
	poll(t, heartbeat+time.Second, "both online", onlineAt(t, url, a.ID, b.ID))

	pa.Signal(syscall.SIGKILL)
	pa.Wait(5 * time.Second)
	code := -1
	if _, err := reg.Modify(a.ID, func(e *localregistry.Entry) { e.State, e.ExitCode = localregistry.StateCrashed, &code }); err != nil {
		t.Fatal(err)
	}
	s.Trigger()
	took := poll(t, time.Second, "only b left at the Queen", onlineAt(t, url, b.ID))
	poll(t, time.Second, "a's sync off", syncIs(reg, a.ID, localregistry.SyncOff))
	t.Logf("crashed worker deregistered in %v", took)
}

// SetQueen registers every live worker at the new Queen and leaves the old one.
func TestSetQueenMovesEverything(t *testing.T) {
	reg := openRegistry(t, t.TempDir())
	oldURL, _ := queenAt(t, freeAddr(t), nil)
	newURL, _ := queenAt(t, freeAddr(t), nil)
	a, _ := readyWorker(t, reg)
	b, _ := readyWorker(t, reg)
	s := New(Config{Registry: reg, Interval: time.Hour})
	if err := s.SetQueen(oldURL, ""); err != nil {
		t.Fatal(err)
	}
	run(t, s)
	poll(t, heartbeat+time.Second, "both online at the old Queen", onlineAt(t, oldURL, a.ID, b.ID))

	start := time.Now()
	if err := s.SetQueen(newURL, ""); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Second, "both registered at the new Queen", func() bool { return len(listed(t, newURL)) == 2 })
	registered := time.Since(start)
	poll(t, heartbeat+time.Second, "both online at the new Queen", onlineAt(t, newURL, a.ID, b.ID))
	poll(t, time.Second, "old Queen emptied", func() bool { return len(listed(t, oldURL)) == 0 })
	// The sync records the outcome once its whole pass is done, which may be after the
	// workers already moved: the registry converges, it is not updated in lockstep.
	for _, id := range []string{a.ID, b.ID} {
		poll(t, time.Second, id+" records the new Queen", func() bool { e, _ := reg.Get(id); return e.QueenURL == newURL })
	}
	t.Logf("SetQueen: registered at the new Queen in %v, old Queen emptied", registered)
}

// gate blocks the Queen's GET /v1/workers until released, so a test can act while a
// sync is in the middle of a network call.
type gate struct {
	entered chan struct{}
	release chan struct{}
	lists   atomic.Int32
}

func newGate() *gate { return &gate{entered: make(chan struct{}, 1), release: make(chan struct{})} }

func (g *gate) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == wire.PathWorkers {
			g.lists.Add(1)
			select {
			case g.entered <- struct{}{}:
			default:
			}
			select {
			case <-g.release:
			case <-r.Context().Done():
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// While a sync waits on the Queen, the registry stays writable (its lock is not held
// across network calls), and a worker stopped meanwhile is not left registered: the
// stop deregisters it first, so the sync's late registration must be withdrawn.
func TestWorkerStoppedDuringSync(t *testing.T) {
	reg := openRegistry(t, t.TempDir())
	g := newGate()
	url, _ := queenAt(t, freeAddr(t), g.wrap)
	a, pa := readyWorker(t, reg)
	b, _ := readyWorker(t, reg)
	s := New(Config{Registry: reg, Interval: time.Hour})
	if err := s.SetQueen(url, ""); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); s.SyncFull(context.Background()) }()
	select {
	case <-g.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("sync never asked the Queen for its list")
	}

	// The sync is inside its network call: the registry must not be locked.
	edited := make(chan error, 1)
	go func() {
		_, err := reg.Modify(b.ID, func(e *localregistry.Entry) { e.Threads = 3 })
		edited <- err
	}()
	select {
	case err := <-edited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		close(g.release)
		t.Fatal("registry edit blocked while the sync waited on the Queen")
	}

	// Stop a the way the hive does: kill, record, deregister (it is not registered yet).
	pa.Signal(syscall.SIGKILL)
	pa.Wait(5 * time.Second)
	if _, err := reg.Modify(a.ID, func(e *localregistry.Entry) { e.State = localregistry.StateExited }); err != nil {
		t.Fatal(err)
	}
	if err := s.DeregisterAt(context.Background(), url, a); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	<-done

	ws := listed(t, url)
	if _, ok := ws[a.ID]; ok {
		t.Fatalf("stopped worker %s left registered at the Queen by a sync that started before the stop", a.ID)
	}
	if _, ok := ws[b.ID]; !ok {
		t.Fatalf("live worker %s not registered: %v", b.ID, ws)
	}
	if e, _ := reg.Get(b.ID); e.Threads != 3 || e.Sync == localregistry.SyncPending {
		t.Fatalf("b lost the edit made during the sync or was not recorded: %+v", e)
	}
	if e, _ := reg.Get(a.ID); e.State != localregistry.StateExited {
		t.Fatalf("the sync overwrote a's state: %s", e.State)
	}
}

// Two hives on one registry file (the app and a second app) sync at once against one
// Queen: each worker is registered, turns online, and then stays online: no repeated
// registrations, no state flapping, in the Queen or in the registry.
func TestTwoSyncersOneRegistry(t *testing.T) {
	dir := t.TempDir()
	reg1, reg2 := openRegistry(t, dir), openRegistry(t, dir)
	var registrations, lists atomic.Int32
	count := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case wire.PathRegisterWorker:
				registrations.Add(1)
			case wire.PathWorkers:
				lists.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	}
	url, _ := queenAt(t, freeAddr(t), count)
	a, _ := readyWorker(t, reg1)
	b, _ := readyWorker(t, reg1)
	if err := reg2.Reload(); err != nil {
		t.Fatal(err)
	}
	var syncers []*Syncer
	for _, reg := range []*localregistry.Registry{reg1, reg2} {
		s := New(Config{Registry: reg, Interval: 50 * time.Millisecond})
		if err := s.SetQueen(url, ""); err != nil {
			t.Fatal(err)
		}
		syncers = append(syncers, s)
	}
	for _, s := range syncers {
		run(t, s)
	}
	poll(t, heartbeat+time.Second, "both online", onlineAt(t, url, a.ID, b.ID))
	poll(t, time.Second, "both entries online", func() bool {
		_ = reg1.Reload()
		return syncIs(reg1, a.ID, localregistry.SyncOnline)() && syncIs(reg1, b.ID, localregistry.SyncOnline)()
	})
	// Both may register a worker once in their first rounds (each saw the Queen lack it):
	// idempotent, and the Queen keeps it online. Count from a few rounds later.
	rounds := lists.Load()
	poll(t, 2*time.Second, "four more sync rounds", func() bool { return lists.Load() >= rounds+4 })
	afterOnline := registrations.Load()

	// Watch both sides for several sync rounds of both syncers and many heartbeats.
	qc, _ := queenclient.New(url, "", queenclient.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := qc.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	changes, unsub := reg1.Subscribe()
	defer unsub()
	deadline := time.After(4 * heartbeat)
	reload := time.NewTicker(20 * time.Millisecond) // pick up reg2's writes
	defer reload.Stop()
	var flaps []string
watch:
	for {
		select {
		case ev := <-events:
			if ev.Type != wire.EventSnapshot && ev.Type != wire.EventUpdated && ev.Type != wire.EventOnline {
				flaps = append(flaps, fmt.Sprintf("queen %s %s", ev.Type, ev.Worker.WorkerID))
			}
		case c := <-changes:
			if c.Entry.Sync != localregistry.SyncOnline || c.Entry.State != localregistry.StateReady {
				flaps = append(flaps, fmt.Sprintf("registry %s %s/%s", c.Entry.ID, c.Entry.State, c.Entry.Sync))
			}
		case <-reload.C:
			_ = reg1.Reload()
		case <-deadline:
			break watch
		}
	}
	if len(flaps) > 0 {
		t.Fatalf("states flapped after convergence: %v", flaps)
	}
	if n := registrations.Load(); n != afterOnline {
		t.Fatalf("%d more registrations after both were online", n-afterOnline)
	}
	if n := len(listed(t, url)); n != 2 {
		t.Fatalf("Queen lists %d workers, want 2", n)
	}
	t.Logf("two syncers, one registry: %d registrations in all for 2 workers", afterOnline)
}

// A new Queen that cannot fetch the worker's capabilities never hands it its URL; the
// sync does, so the worker heartbeats to the new Queen (online there) and leaves the old
// one, instead of being re-registered by its own heartbeats at the Queen it left.
func TestSetQueenSteersWorkerTheQueenCannotReach(t *testing.T) {
	reg := openRegistry(t, t.TempDir())
	oldURL, _ := queenAt(t, freeAddr(t), nil)
	blind := queen.Config{Addr: freeAddr(t), HeartbeatInterval: heartbeat,
		Capabilities: queen.FetchConfig{Timeout: time.Nanosecond, Attempts: 1}}
	newURL, _ := queenWith(t, blind, nil)
	a, _ := readyWorker(t, reg)
	s := New(Config{Registry: reg, Interval: time.Hour})
	if err := s.SetQueen(oldURL, ""); err != nil {
		t.Fatal(err)
	}
	run(t, s)
	poll(t, heartbeat+time.Second, "online at the old Queen", onlineAt(t, oldURL, a.ID))

	if err := s.SetQueen(newURL, ""); err != nil {
		t.Fatal(err)
	}
	took := poll(t, heartbeat+2*time.Second, "online at the new Queen", onlineAt(t, newURL, a.ID))
	// The old Queen was told the worker left; its heartbeats must not bring it back.
	poll(t, time.Second, "old Queen emptied", func() bool { return len(listed(t, oldURL)) == 0 })
	deadline := time.Now().Add(3 * heartbeat)
	for time.Now().Before(deadline) {
		if n := len(listed(t, oldURL)); n != 0 {
			t.Fatalf("the worker came back at the old Queen (%d listed)", n)
		}
		time.Sleep(heartbeat / 3)
	}
	t.Logf("worker online at a Queen that cannot reach it in %v", took)
}

// Leaving a Queen and coming back to it (Queen mode Off, then the same embedded Queen)
// must not have the workers deregistered from it by the clean-up of the Queen we "left".
func TestLeaveAndReturnToSameQueenKeepsWorkers(t *testing.T) {
	reg := openRegistry(t, t.TempDir())
	var deletes atomic.Int32
	countDeletes := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodDelete {
				deletes.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	}
	url, _ := queenAt(t, freeAddr(t), countDeletes)
	a, _ := readyWorker(t, reg)
	s := New(Config{Registry: reg, Interval: time.Hour})
	if err := s.SetQueen(url, ""); err != nil {
		t.Fatal(err)
	}
	run(t, s)
	poll(t, heartbeat+time.Second, "online at the Queen", onlineAt(t, url, a.ID))
	if err := s.SetQueen("", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.SetQueen(url, ""); err != nil {
		t.Fatal(err)
	}
	s.Trigger()
	time.Sleep(3 * heartbeat) // a window for a wrong deregistration to arrive, not synchronisation
	if n := deletes.Load(); n != 0 {
		t.Fatalf("the Queen the app came back to got %d deregistrations", n)
	}
	if _, ok := listed(t, url)[a.ID]; !ok {
		t.Fatal("the worker is not listed at the Queen the app came back to")
	}
}
