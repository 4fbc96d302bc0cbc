package hive

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/queenclient"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// slowBinary is the beekeeper binary behind a wrapper that sleeps secs first: a worker
// that takes that long to load.
func slowBinary(t *testing.T, secs string) string {
	slow := filepath.Join(t.TempDir(), "slow-beekeeper")
	script := "#!/bin/sh\nsleep " + secs + "\nexec " + testenv.Binary(t) + " \"$@\"\n"
	if err := os.WriteFile(slow, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return slow
}

// openOrderHiveWith is openOrderHive with the test model and another worker binary.
func openOrderHiveWith(t *testing.T, queenURL, id, bin string) *Hive {
	min, max := portRange(t)
	model := testenv.Model(t)
	h, err := Open(Options{
		StateDir: t.TempDir(), PortMin: min, PortMax: max,
		WorkerBinary: bin, QueenURL: queenURL, SyncInterval: time.Second, HiveID: id,
		ResolveModel: func(name string) (string, bool) { return model, name == wire.ModelName(model) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(true) })
	return h
}

// Hive A loses the Queen (a network cut longer than the lease) while its worker loads;
// hive B takes the order and serves it. A's report fails until the network is back;
// then the Queen refuses it, and A stops its worker: one order, one worker.
func TestOrderNetworkCutDuringLoadLeavesOneWorker(t *testing.T) {
	q, c := startOrderQueen(t, time.Second)
	target, _ := url.Parse(q.URL())
	var down atomic.Bool
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			hj, _ := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			conn.Close()
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { proxy.CloseClientConnections(); proxy.Close() })

	a := openOrderHiveWith(t, proxy.URL, "hive-a", slowBinary(t, "4"))
	o := order(t, c, "")
	testenv.WaitFor(t, "hive-a to take the order", 5*time.Second, func() bool {
		g, _ := c.SpawnOrder(context.Background(), o.OrderID)
		return g.State == wire.OrderTaken && g.TakenBy == "hive-a"
	})
	down.Store(true) // partition hive-a (and its worker) from the Queen
	b := openOrderHiveWith(t, q.URL(), "hive-b", testenv.Binary(t))
	done := waitOrdersDone(t, c, []string{o.OrderID}, 15*time.Second)[0]
	t.Logf("order done by %s worker %s", done.TakenBy, done.WorkerID)
	testenv.WaitFor(t, "hive-a's worker to come up", 20*time.Second, func() bool {
		for _, e := range a.List() {
			if e.State == StateReady {
				return true
			}
		}
		return false
	})
	time.Sleep(4 * time.Second) // A's RegisterNow (3 s) and its report have failed by now
	down.Store(false)
	back := time.Now()
	deadline := back.Add(10 * time.Second)
	for liveWorkers(a, b) != 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := liveWorkers(a, b); n != 1 {
		t.Fatalf("one order, %d live workers 10 s after the network came back (a: %v, b: %v)", n, liveIDs(a), liveIDs(b))
	}
	t.Logf("the duplicate was stopped %v after the network came back", time.Since(back))
	time.Sleep(time.Second)
	if n := liveWorkers(b); n != 1 {
		t.Fatalf("the order's own worker (hive-b) is gone: b has %v", liveIDs(b))
	}
}

func liveIDs(h *Hive) []string {
	var out []string
	for _, e := range h.List() {
		if e.State.Live() {
			out = append(out, e.ID+"/"+string(e.State))
		}
	}
	return out
}

// A hive closed with stopWorkers while it loads an order's worker leaves the order to
// lapse back to pending for another hive; it does not report it failed.
func TestOrderCloseMidLoadLeavesTheOrderForAnotherHive(t *testing.T) {
	q, c := startOrderQueen(t, time.Second)
	a := openOrderHiveWith(t, q.URL(), "hive-a", slowBinary(t, "3"))
	o := order(t, c, "")
	testenv.WaitFor(t, "hive-a to take the order", 5*time.Second, func() bool {
		g, _ := c.SpawnOrder(context.Background(), o.OrderID)
		return g.State == wire.OrderTaken && len(a.List()) == 1
	})
	a.Close(true)
	time.Sleep(2 * time.Second)
	g, _ := c.SpawnOrder(context.Background(), o.OrderID)
	if g.State == wire.OrderFailed {
		t.Fatalf("closing the hive failed the order: %q", g.Error)
	}
	if g.State != wire.OrderPending && g.State != wire.OrderTaken {
		t.Fatalf("order %s after its hive closed mid-load, want pending (or still taken)", g.State)
	}
}

// A Queen restarted on the same address counts its versions from 0 again: the hive's
// poll must not wait for a version it will not reach soon.
func TestOrderQueenRestartDoesNotStallThePoll(t *testing.T) {
	q1, c := startOrderQueen(t, 30*time.Second)
	addr := q1.addr
	openOrderHive(t, q1.URL(), "hive-a", true)
	for range 5 { // bump the old Queen's version past what the new one will reach
		if _, err := c.OrderSpawn(context.Background(), wire.SpawnOrderRequest{Model: "nope"}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	q1.stop()
	q2 := startQueenAt(t, addr)
	defer q2.stop()
	time.Sleep(4 * time.Second) // the hive's retries reach the new Queen and it long-polls there
	c2, _ := queenclient.New(q2.URL(), "", queenclient.Options{})
	start := time.Now()
	o := order(t, c2, "")
	waitOrdersDone(t, c2, []string{o.OrderID}, 40*time.Second)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("an order at the restarted Queen took %v to be served (stale since)", d)
	}
}
