package hive

import (
	"context"
	"net"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/queen"
	"github.com/beekeeper-hive/beekeeper/queenclient"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// startOrderQueen is a real mini Queen with a short order lease, so a test can watch an
// abandoned order come back.
func startOrderQueen(t testing.TB, lease time.Duration) (*testQueen, *queenclient.Client) {
	t.Helper()
	qn, err := queen.New(queen.Config{HeartbeatInterval: testHeartbeat, OrderLease: lease})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = qn.Serve(ctx, ln) }()
	q := &testQueen{addr: ln.Addr().String(), stop: func() { cancel(); <-done }}
	t.Cleanup(q.stop)
	c, err := queenclient.New(q.URL(), "", queenclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return q, c
}

// openOrderHive is a hive named id that serves spawn orders; has says whether it has the
// test model.
func openOrderHive(t testing.TB, queenURL, id string, has bool) *Hive {
	t.Helper()
	min, max := portRange(t)
	model := testenv.Model(t)
	h, err := Open(Options{
		StateDir: t.TempDir(), PortMin: min, PortMax: max,
		WorkerBinary: testenv.Binary(t), QueenURL: queenURL, SyncInterval: time.Second,
		HiveID: id,
		ResolveModel: func(name string) (string, bool) {
			return model, has && name == wire.ModelName(model)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(true) })
	return h
}

func order(t testing.TB, c *queenclient.Client, hive string) wire.SpawnOrder {
	t.Helper()
	o, err := c.OrderSpawn(context.Background(), wire.SpawnOrderRequest{Model: wire.ModelName(testenv.Model(t)), Hive: hive})
	if err != nil {
		t.Fatalf("order: %v", err)
	}
	return o
}

// waitOrdersDone waits until every order is done and returns them.
func waitOrdersDone(t testing.TB, c *queenclient.Client, ids []string, within time.Duration) []wire.SpawnOrder {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var out []wire.SpawnOrder
		for _, id := range ids {
			o, err := c.SpawnOrder(context.Background(), id)
			if err != nil {
				t.Fatalf("order %s: %v", id, err)
			}
			if o.State == wire.OrderFailed {
				t.Fatalf("order %s failed on %s: %s", id, o.TakenBy, o.Error)
			}
			out = append(out, o)
		}
		all := true
		for _, o := range out {
			all = all && o.State == wire.OrderDone
		}
		if all {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("orders not all done within %v: %+v", within, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// docs/protocol.md §4.7: a hive spawns a worker on the Queen's request. Two hives have the model
// and race for three orders; a third does not have it. Every order ends with its own
// worker, online at the Queen, and no order gets two.
func TestStartOrderQueenOrdersWorkers(t *testing.T) {
	q, c := startOrderQueen(t, 30*time.Second)
	a := openOrderHive(t, q.URL(), "hive-a", true)
	b := openOrderHive(t, q.URL(), "hive-b", true)
	none := openOrderHive(t, q.URL(), "hive-none", false)

	start := time.Now()
	var orderIDs []string
	for range 3 {
		orderIDs = append(orderIDs, order(t, c, "").OrderID)
	}
	done := waitOrdersDone(t, c, orderIDs, 30*time.Second)
	t.Logf("3 orders done in %v", time.Since(start))

	var workers []string
	for _, o := range done {
		if o.TakenBy != "hive-a" && o.TakenBy != "hive-b" {
			t.Errorf("order %s taken by %q", o.OrderID, o.TakenBy)
		}
		workers = append(workers, o.WorkerID)
	}
	sort.Strings(workers)
	// One worker per order, each once, and nothing else running anywhere.
	var local []string
	for _, h := range []*Hive{a, b, none} {
		for _, e := range h.List() {
			if e.State.Live() {
				local = append(local, e.ID)
				if e.SpawnOrder == "" {
					t.Errorf("worker %s on %s does not record its order", e.ID, h.opts.HiveID)
				}
			}
		}
	}
	sort.Strings(local)
	if strings.Join(local, ",") != strings.Join(workers, ",") || len(local) != 3 {
		t.Fatalf("live workers %v, want exactly the orders' %v", local, workers)
	}
	if n := len(none.List()); n != 0 {
		t.Fatalf("the hive without the model started %d workers", n)
	}
	waitQueenView(t, q.URL(), workers, 2*time.Second)
}

// An order for one hive is only ever served there; the others never take it.
func TestOrderForOneHive(t *testing.T) {
	q, c := startOrderQueen(t, 30*time.Second)
	a := openOrderHive(t, q.URL(), "hive-a", true)
	b := openOrderHive(t, q.URL(), "hive-b", true)
	o := order(t, c, "hive-b")
	got := waitOrdersDone(t, c, []string{o.OrderID}, 30*time.Second)[0]
	if got.TakenBy != "hive-b" {
		t.Fatalf("an order for hive-b was taken by %s", got.TakenBy)
	}
	if len(a.List()) != 0 || len(b.List()) != 1 {
		t.Fatalf("hive-a has %d workers, hive-b %d; want 0 and 1", len(a.List()), len(b.List()))
	}
}

// The Queen first, the order, and the hive only later: the order waits for it.
func TestOrderWaitsForAHive(t *testing.T) {
	q, c := startOrderQueen(t, 30*time.Second)
	o := order(t, c, "")
	time.Sleep(300 * time.Millisecond)
	if got, _ := c.SpawnOrder(context.Background(), o.OrderID); got.State != wire.OrderPending {
		t.Fatalf("with no hive the order is %s, want pending", got.State)
	}
	openOrderHive(t, q.URL(), "hive-late", true)
	start := time.Now()
	waitOrdersDone(t, c, []string{o.OrderID}, 30*time.Second)
	t.Logf("a hive that came later served the order in %v", time.Since(start))
}

// A hive that takes an order, starts the worker and is gone before it reports: the
// worker's registration completes the order, and no other hive starts a second worker
// when the lease runs out.
func TestOrderCompletedByRegistrationWhenTheHiveVanishes(t *testing.T) {
	lease := time.Second
	q, c := startOrderQueen(t, lease)
	o := order(t, c, "")
	// The vanishing hive: it claims as hive-gone and spawns for the order, but serves no
	// orders itself and never reports.
	gone := openHive(t, t.TempDir(), q.URL())
	t.Cleanup(func() { gone.Close(true) })
	if _, err := c.ClaimSpawnOrder(context.Background(), o.OrderID, wire.SpawnClaim{Hive: "hive-gone"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := gone.Spawn(ctx, SpawnRequest{ModelPath: testenv.Model(t), RegisterWithQueen: true, SpawnOrder: o.OrderID}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := waitOrdersDone(t, c, []string{o.OrderID}, 5*time.Second)[0]
	if got.WorkerID != e.ID {
		t.Fatalf("order done with worker %q, want %s", got.WorkerID, e.ID)
	}
	// Another hive with the model, well past the lease: it must not start a second one.
	other := openOrderHive(t, q.URL(), "hive-other", true)
	time.Sleep(3 * lease)
	if n := len(other.List()); n != 0 {
		t.Fatalf("another hive started %d workers for an order already served", n)
	}
	waitQueenView(t, q.URL(), []string{e.ID}, 2*time.Second)
}

// A hive that took an order and died before starting anything: once its lease runs out
// the order goes back to pending and another hive serves it.
func TestOrderLeaseRunsOutAndAnotherHiveServes(t *testing.T) {
	lease := time.Second
	q, c := startOrderQueen(t, lease)
	o := order(t, c, "")
	if _, err := c.ClaimSpawnOrder(context.Background(), o.OrderID, wire.SpawnClaim{Hive: "hive-dead"}); err != nil {
		t.Fatal(err)
	}
	openOrderHive(t, q.URL(), "hive-alive", true)
	got := waitOrdersDone(t, c, []string{o.OrderID}, 30*time.Second)[0]
	if got.TakenBy != "hive-alive" {
		t.Fatalf("order taken by %s, want hive-alive", got.TakenBy)
	}
}

// A pending order for a model no hive has must not make the hives poll in a loop: the
// long-poll waits for a change after what the hive has seen.
func TestOrderNobodyCanServeDoesNotSpinTheHives(t *testing.T) {
	q, c := startOrderQueen(t, 30*time.Second)
	if _, err := c.OrderSpawn(context.Background(), wire.SpawnOrderRequest{Model: "no-such-model"}); err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int64
	min, max := portRange(t)
	h, err := Open(Options{
		StateDir: t.TempDir(), PortMin: min, PortMax: max,
		WorkerBinary: testenv.Binary(t), QueenURL: q.URL(), SyncInterval: time.Second,
		HiveID:       "hive-x",
		ResolveModel: func(string) (string, bool) { asked.Add(1); return "", false },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(true)
	time.Sleep(time.Second)
	if n := asked.Load(); n < 1 || n > 2 {
		t.Fatalf("the hive looked at the unservable order %d times in 1 s, want once", n)
	}
	// A new order still wakes it at once.
	before := asked.Load()
	if _, err := c.OrderSpawn(context.Background(), wire.SpawnOrderRequest{Model: "another"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the hive to look at the new order", 2*time.Second, func() bool { return asked.Load() > before })
}

// Two hives under one name (the app and `beekeeper hive` on one machine, or cloned
// machines): their claim tokens differ, so one order still gets one worker.
func TestOrderTwoHivesWithOneName(t *testing.T) {
	q, c := startOrderQueen(t, 30*time.Second)
	a := openOrderHive(t, q.URL(), "hive-same", true)
	b := openOrderHive(t, q.URL(), "hive-same", true)
	var orderIDs []string
	for range 3 {
		orderIDs = append(orderIDs, order(t, c, "").OrderID)
	}
	waitOrdersDone(t, c, orderIDs, 30*time.Second)
	time.Sleep(500 * time.Millisecond) // a second start would show by now
	if n := liveWorkers(a, b); n != 3 {
		t.Fatalf("3 orders, %d live workers", n)
	}
}

// A worker that loads for longer than the Queen's lease: the hive renews at a third of
// the lease the Queen names, so no other hive takes the order meanwhile.
func TestOrderLoadLongerThanTheLease(t *testing.T) {
	q, c := startOrderQueen(t, 500*time.Millisecond)
	slow := slowBinary(t, "1.5")
	a := openOrderHiveWith(t, q.URL(), "hive-a", slow)
	b := openOrderHiveWith(t, q.URL(), "hive-b", slow)
	o := order(t, c, "")
	waitOrdersDone(t, c, []string{o.OrderID}, 30*time.Second)
	time.Sleep(2 * time.Second) // a second start, had the lease lapsed, would be up by now
	if n := liveWorkers(a, b); n != 1 {
		t.Fatalf("one order, %d live workers", n)
	}
}

func liveWorkers(hs ...*Hive) int {
	n := 0
	for _, h := range hs {
		for _, e := range h.List() {
			if e.State.Live() {
				n++
			}
		}
	}
	return n
}
