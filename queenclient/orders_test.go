package queenclient

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/queen"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// newQueen serves a real Queen on an httptest server and returns a client for it whose
// per-request timeout is short, so a long-poll that used it would be cut.
func newQueen(t *testing.T, token string) *Client {
	t.Helper()
	q, err := queen.New(queen.Config{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(q.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(q.Close) // runs first: ends long-polls so srv.Close does not wait on them
	c, err := New(srv.URL, token, Options{Timeout: 300 * time.Millisecond, RetryWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantCode(t *testing.T, err error, status int, code, what string) {
	t.Helper()
	var apiErr *wire.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != status || apiErr.Detail.Code != code {
		t.Fatalf("%s: %v, want %d %s", what, err, status, code)
	}
}

func TestSpawnOrderMethods(t *testing.T) {
	c := newQueen(t, "tok")
	ctx := t.Context()

	o, err := c.OrderSpawn(ctx, wire.SpawnOrderRequest{Model: "stories260K", CtxSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	if o.OrderID == "" || o.State != wire.OrderPending || o.WorkerType != wire.DefaultWorkerType || o.CtxSize != 512 {
		t.Fatalf("posted order %+v", o)
	}
	targeted, err := c.OrderSpawn(ctx, wire.SpawnOrderRequest{Model: "m", Hive: "hive-b"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.OrderSpawn(ctx, wire.SpawnOrderRequest{})
	wantCode(t, err, 400, wire.CodeInvalidField, "an order without a model")

	if got, err := c.SpawnOrder(ctx, o.OrderID); err != nil || got != o {
		t.Fatalf("get: %+v %v, want %+v", got, err, o)
	}
	if _, err := c.SpawnOrder(ctx, "order-unknown"); !IsNotFound(err) {
		t.Fatalf("get unknown: %v", err)
	}

	all, err := c.SpawnOrders(ctx, "", "", 0)
	if err != nil || len(all) != 2 || all[0].OrderID != o.OrderID || all[1].OrderID != targeted.OrderID {
		t.Fatalf("list all: %+v %v", all, err)
	}
	forA, err := c.SpawnOrders(ctx, wire.OrderPending, "hive-a", 0)
	if err != nil || len(forA) != 1 || forA[0].OrderID != o.OrderID {
		t.Fatalf("pending for hive-a: %+v %v", forA, err)
	}
	if _, err := c.SpawnOrders(ctx, "lost", "", 0); err == nil {
		t.Fatal("a bad state filter was accepted")
	}

	// Claim: the first hive wins, renews; the other gets order_taken.
	if got, err := c.ClaimSpawnOrder(ctx, o.OrderID, wire.SpawnClaim{Hive: "hive-a"}); err != nil || got.State != wire.OrderTaken || got.TakenBy != "hive-a" {
		t.Fatalf("claim: %+v %v", got, err)
	}
	if _, err := c.ClaimSpawnOrder(ctx, o.OrderID, wire.SpawnClaim{Hive: "hive-a"}); err != nil {
		t.Fatalf("renewal: %v", err)
	}
	_, err = c.ClaimSpawnOrder(ctx, o.OrderID, wire.SpawnClaim{Hive: "hive-b"})
	wantCode(t, err, http.StatusConflict, wire.CodeOrderTaken, "claim of a taken order")
	_, err = c.ClaimSpawnOrder(ctx, targeted.OrderID, wire.SpawnClaim{Hive: "hive-a"})
	wantCode(t, err, http.StatusConflict, wire.CodeOrderTaken, "claim of another hive's order")
	err = c.CancelSpawnOrder(ctx, o.OrderID)
	wantCode(t, err, http.StatusConflict, wire.CodeOrderTaken, "cancel of a taken order")
	_, err = c.ReportSpawnOrder(ctx, o.OrderID, wire.SpawnResult{Hive: "hive-b", WorkerID: "worker-llm-8080", Error: ""})
	wantCode(t, err, http.StatusConflict, wire.CodeOrderTaken, "report by a hive that does not hold it")

	// Report: done, again (idempotent), then order_ended for anything else.
	for range 2 {
		got, err := c.ReportSpawnOrder(ctx, o.OrderID, wire.SpawnResult{Hive: "hive-a", WorkerID: "worker-llm-8080", Error: "ignored"})
		if err != nil || got.State != wire.OrderDone || got.WorkerID != "worker-llm-8080" || got.Error != "" {
			t.Fatalf("report: %+v %v", got, err)
		}
	}
	_, err = c.ClaimSpawnOrder(ctx, o.OrderID, wire.SpawnClaim{Hive: "hive-a"})
	wantCode(t, err, http.StatusConflict, wire.CodeOrderEnded, "claim of a done order")
	_, err = c.ReportSpawnOrder(ctx, o.OrderID, wire.SpawnResult{Hive: "hive-a", WorkerID: "", Error: "too late"})
	wantCode(t, err, http.StatusConflict, wire.CodeOrderEnded, "failure for a done order")

	// A failure report.
	if _, err := c.ClaimSpawnOrder(ctx, targeted.OrderID, wire.SpawnClaim{Hive: "hive-b"}); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ReportSpawnOrder(ctx, targeted.OrderID, wire.SpawnResult{Hive: "hive-b", WorkerID: "", Error: "model file missing"}); err != nil || got.State != wire.OrderFailed || got.Error != "model file missing" {
		t.Fatalf("failure report: %+v %v", got, err)
	}
	failed, err := c.SpawnOrders(ctx, wire.OrderFailed, "", 0)
	if err != nil || len(failed) != 1 || failed[0].OrderID != targeted.OrderID {
		t.Fatalf("failed orders: %+v %v", failed, err)
	}

	// Cancel a pending order; again is fine; an ended one is order_ended.
	p, err := c.OrderSpawn(ctx, wire.SpawnOrderRequest{Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := c.CancelSpawnOrder(ctx, p.OrderID); err != nil {
			t.Fatalf("cancel: %v", err)
		}
	}
	if got, _ := c.SpawnOrder(ctx, p.OrderID); got.State != wire.OrderFailed {
		t.Fatalf("cancelled order %+v", got)
	}
	err = c.CancelSpawnOrder(ctx, o.OrderID)
	wantCode(t, err, http.StatusConflict, wire.CodeOrderEnded, "cancel of a done order")
	if err := c.CancelSpawnOrder(ctx, "order-unknown"); !IsNotFound(err) {
		t.Fatalf("cancel unknown: %v", err)
	}

	// The token is sent on every call, the long-poll's too.
	bad, _ := New(c.URL(), "wrong", Options{Retries: -1})
	_, err = bad.SpawnOrders(ctx, "", "", 0)
	wantCode(t, err, http.StatusUnauthorized, wire.CodeUnauthorized, "list with a wrong token")
	_, err = bad.SpawnOrders(ctx, "", "hive-a", time.Second)
	wantCode(t, err, http.StatusUnauthorized, wire.CodeUnauthorized, "long-poll with a wrong token")
}

// The long-poll outlives the client's per-request timeout (300 ms here) and answers as
// soon as an order comes.
func TestSpawnOrdersLongPoll(t *testing.T) {
	c := newQueen(t, "")
	ctx := t.Context()

	start := time.Now()
	got, err := c.SpawnOrders(ctx, wire.OrderPending, "hive-a", time.Second)
	if took := time.Since(start); err != nil || len(got) != 0 || took < time.Second || took > 5*time.Second {
		t.Fatalf("empty long-poll of 1 s: %+v %v after %v", got, err, took)
	}

	type polled struct {
		orders []wire.SpawnOrder
		err    error
		at     time.Time
	}
	done := make(chan polled, 1)
	go func() {
		orders, err := c.SpawnOrders(ctx, "", "hive-a", 20*time.Second)
		done <- polled{orders, err, time.Now()}
	}()
	time.Sleep(100 * time.Millisecond) // let the poll reach the Queen; it answers either way
	created := time.Now()
	o, err := c.OrderSpawn(ctx, wire.SpawnOrderRequest{Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-done:
		if p.err != nil || len(p.orders) != 1 || p.orders[0].OrderID != o.OrderID {
			t.Fatalf("long-poll: %+v %v", p.orders, p.err)
		}
		if took := p.at.Sub(created); took > time.Second {
			t.Fatalf("long-poll answered %v after the order", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long-poll did not answer")
	}

	// The caller's context ends a long-poll at once.
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = c.SpawnOrders(cctx, wire.OrderDone, "", 20*time.Second) // none is done
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("cancelled long-poll: %v after %v", err, time.Since(start))
	}
}

// A retried order (same id, same order) is the same order; the same id for another
// order is refused.
func TestOrderSpawnIsIdempotentByID(t *testing.T) {
	c := newQueen(t, "")
	req := wire.SpawnOrderRequest{OrderID: wire.NewOrderID(), Model: "stories260K"}
	a, err := c.OrderSpawn(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.OrderSpawn(context.Background(), req)
	if err != nil || b.OrderID != a.OrderID || a.OrderID != req.OrderID {
		t.Fatalf("retry: %+v, %v; first %+v", b, err, a)
	}
	all, err := c.SpawnOrders(context.Background(), "", "", 0)
	if err != nil || len(all) != 1 {
		t.Fatalf("the Queen holds %d orders after a retry (%v), want 1", len(all), err)
	}
	req.Model = "other"
	_, err = c.OrderSpawn(context.Background(), req)
	var apiErr *wire.APIError
	if !errors.As(err, &apiErr) || apiErr.Detail.Code != wire.CodeOrderConflict {
		t.Fatalf("same id, other order: %v, want %s", err, wire.CodeOrderConflict)
	}
}

// Two hives under one name hold apart by their claim tokens; the lease comes with the
// claim; a poll with since waits for a change.
func TestClaimTokensAndPollSince(t *testing.T) {
	c := newQueen(t, "")
	ctx := context.Background()
	o, err := c.OrderSpawn(ctx, wire.SpawnOrderRequest{Model: "stories260K"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.ClaimSpawnOrder(ctx, o.OrderID, wire.SpawnClaim{Hive: "hive-same", Token: "one"})
	if err != nil || got.LeaseMS <= 0 {
		t.Fatalf("claim: %+v, %v; want a lease", got, err)
	}
	_, err = c.ClaimSpawnOrder(ctx, o.OrderID, wire.SpawnClaim{Hive: "hive-same", Token: "two"})
	wantCode(t, err, http.StatusConflict, wire.CodeOrderTaken, "a claim under the same name with another token")
	_, err = c.ReportSpawnOrder(ctx, o.OrderID, wire.SpawnResult{Hive: "hive-same", Token: "two", Error: "nope"})
	wantCode(t, err, http.StatusConflict, wire.CodeOrderTaken, "a report under the same name with another token")
	if _, err := c.ClaimSpawnOrder(ctx, o.OrderID, wire.SpawnClaim{Hive: "hive-same", Token: "one"}); err != nil {
		t.Fatalf("the holder's renewal: %v", err)
	}

	list, err := c.WaitSpawnOrders(ctx, "hive-other", 0, time.Second)
	if err != nil || list.Version == 0 {
		t.Fatalf("first poll: %+v, %v", list, err)
	}
	start := time.Now()
	again, err := c.WaitSpawnOrders(ctx, "hive-other", list.Version, 300*time.Millisecond)
	if err != nil || time.Since(start) < 250*time.Millisecond || again.Version != list.Version {
		t.Fatalf("a poll since the current version answered after %v with %+v, %v; want it to wait", time.Since(start), again, err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		_, _ = c.OrderSpawn(ctx, wire.SpawnOrderRequest{Model: "other"})
	}()
	start = time.Now()
	woke, err := c.WaitSpawnOrders(ctx, "hive-other", list.Version, 5*time.Second)
	if err != nil || woke.Version <= list.Version || len(woke.Orders) != 1 || time.Since(start) > 2*time.Second {
		t.Fatalf("a new order woke the poll after %v with %+v, %v", time.Since(start), woke, err)
	}
}
