package queen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// Helpers of the spawn-order tests.

func postOrder(t testing.TB, srv *httptest.Server, req wire.SpawnOrderRequest) wire.SpawnOrder {
	t.Helper()
	a := do(t, "POST", srv.URL+wire.PathSpawnOrders, "", req)
	if a.status != http.StatusAccepted {
		t.Fatalf("post order: %d %s", a.status, a.body)
	}
	return decode[wire.SpawnOrder](t, a)
}

func claimOrder(t testing.TB, srv *httptest.Server, id, hive string) answer {
	t.Helper()
	return do(t, "POST", srv.URL+wire.PathSpawnOrders+"/"+id+"/claim", "", wire.SpawnClaim{Hive: hive})
}

func reportOrder(t testing.TB, srv *httptest.Server, id string, res wire.SpawnResult) answer {
	t.Helper()
	return do(t, "POST", srv.URL+wire.PathSpawnOrders+"/"+id+"/result", "", res)
}

func getOrder(t testing.TB, srv *httptest.Server, id string) wire.SpawnOrder {
	t.Helper()
	a := do(t, "GET", srv.URL+wire.PathSpawnOrders+"/"+id, "", nil)
	if a.status != http.StatusOK {
		t.Fatalf("get order %s: %d %s", id, a.status, a.body)
	}
	return decode[wire.SpawnOrder](t, a)
}

func listOrders(t testing.TB, srv *httptest.Server, query string) []wire.SpawnOrder {
	t.Helper()
	a := do(t, "GET", srv.URL+wire.PathSpawnOrders+query, "", nil)
	if a.status != http.StatusOK {
		t.Fatalf("list orders %s: %d %s", query, a.status, a.body)
	}
	return decode[wire.SpawnOrderList](t, a).Orders
}

// wantConflict checks a 409 with the given code.
func wantConflict(t testing.TB, a answer, code, what string) {
	t.Helper()
	if a.status != http.StatusConflict || a.apiError(t).Detail.Code != code {
		t.Fatalf("%s: %d %s, want 409 %s", what, a.status, a.body, code)
	}
}

func orderIDs(orders []wire.SpawnOrder) []string {
	ids := make([]string, len(orders))
	for i, o := range orders {
		ids[i] = o.OrderID
	}
	return ids
}

// pollResult is what a long-poll started by startPoll got.
type pollResult struct {
	status int
	orders []wire.SpawnOrder
	err    error
	at     time.Time
}

// startPoll runs GET /v1/spawn-orders?query in the background under ctx.
func startPoll(ctx context.Context, srv *httptest.Server, query string) <-chan pollResult {
	ch := make(chan pollResult, 1)
	go func() {
		var res pollResult
		defer func() { res.at = time.Now(); ch <- res }()
		req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+wire.PathSpawnOrders+query, nil)
		if err != nil {
			res.err = err
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			res.err = err
			return
		}
		defer resp.Body.Close()
		res.status = resp.StatusCode
		var list wire.SpawnOrderList
		res.err = json.NewDecoder(resp.Body).Decode(&list)
		res.orders = list.Orders
	}()
	return ch
}

// waitPolling waits until n long-polls wait at the Queen.
func waitPolling(t testing.TB, q *Queen, n int64) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("%d long-polls waiting", n), func() bool { return q.orders.waiting.Load() == n })
}

func TestSpawnOrderCreateListGetCancel(t *testing.T) {
	q, srv, clock := newTestQueen(t, Config{})
	a := postOrder(t, srv, wire.SpawnOrderRequest{Model: "stories260K"})
	if !strings.HasPrefix(a.OrderID, "order-") || len(a.OrderID) < len("order-")+12 || !validOrderID(a.OrderID) {
		t.Fatalf("order id %q: want order- and 12+ URL-safe characters", a.OrderID)
	}
	if a.State != wire.OrderPending || a.WorkerType != wire.DefaultWorkerType || a.Model != "stories260K" ||
		!a.CreatedAt.Equal(clock.Now()) || !a.UpdatedAt.Equal(clock.Now()) {
		t.Fatalf("new order %+v", a)
	}
	clock.Advance(time.Second)
	b := postOrder(t, srv, wire.SpawnOrderRequest{Model: "tiny model v2", WorkerType: "embed", Hive: "hive-x", CtxSize: 4096})
	if b.Hive != "hive-x" || b.CtxSize != 4096 || b.WorkerType != "embed" {
		t.Fatalf("second order %+v", b)
	}
	if got := getOrder(t, srv, a.OrderID); got != a {
		t.Fatalf("get: %+v, want %+v", got, a)
	}
	if got := orderIDs(listOrders(t, srv, "")); strings.Join(got, ",") != a.OrderID+","+b.OrderID {
		t.Fatalf("list %v, want [%s %s] (by created_at)", got, a.OrderID, b.OrderID)
	}
	if got := listOrders(t, srv, "?state=taken"); len(got) != 0 {
		t.Fatalf("state=taken: %v", got)
	}

	// Cancel: a pending order ends (failed, "cancelled"); again is fine; then it is
	// neither claimable nor listed as pending.
	for i := range 2 {
		ans := do(t, "DELETE", srv.URL+wire.PathSpawnOrders+"/"+a.OrderID, "", nil)
		if ans.status != http.StatusOK {
			t.Fatalf("cancel %d: %d %s", i, ans.status, ans.body)
		}
		if o := decode[wire.SpawnOrder](t, ans); o.State != wire.OrderFailed || o.Error != cancelledError {
			t.Fatalf("cancelled order %+v", o)
		}
	}
	wantConflict(t, claimOrder(t, srv, a.OrderID, "hive-x"), wire.CodeOrderEnded, "claiming a cancelled order")
	if got := orderIDs(listOrders(t, srv, "?state=pending")); len(got) != 1 || got[0] != b.OrderID {
		t.Fatalf("pending after the cancel: %v", got)
	}
	if got := orderIDs(listOrders(t, srv, "?state=failed")); len(got) != 1 || got[0] != a.OrderID {
		t.Fatalf("failed after the cancel: %v", got)
	}

	// A taken order cannot be cancelled; a done one neither.
	if ans := claimOrder(t, srv, b.OrderID, "hive-x"); ans.status != http.StatusOK {
		t.Fatalf("claim: %d %s", ans.status, ans.body)
	}
	wantConflict(t, do(t, "DELETE", srv.URL+wire.PathSpawnOrders+"/"+b.OrderID, "", nil), wire.CodeOrderTaken, "cancelling a taken order")
	if ans := reportOrder(t, srv, b.OrderID, wire.SpawnResult{Hive: "hive-x", WorkerID: "worker-embed-8080"}); ans.status != http.StatusOK {
		t.Fatalf("report: %d %s", ans.status, ans.body)
	}
	wantConflict(t, do(t, "DELETE", srv.URL+wire.PathSpawnOrders+"/"+b.OrderID, "", nil), wire.CodeOrderEnded, "cancelling a done order")

	// Unknown ids are 404 everywhere.
	for _, ans := range []answer{
		do(t, "GET", srv.URL+wire.PathSpawnOrders+"/order-nope", "", nil),
		do(t, "DELETE", srv.URL+wire.PathSpawnOrders+"/order-nope", "", nil),
		claimOrder(t, srv, "order-nope", "hive-x"),
		reportOrder(t, srv, "order-nope", wire.SpawnResult{Hive: "hive-x", WorkerID: "w"}),
	} {
		if ans.status != http.StatusNotFound || ans.apiError(t).Detail.Code != codeUnknownOrder {
			t.Fatalf("unknown order: %d %s, want 404 %s", ans.status, ans.body, codeUnknownOrder)
		}
	}

	// Ended orders stay for Retention, then go.
	clock.Advance(q.cfg.Retention - time.Millisecond)
	q.orders.sweep()
	if got := listOrders(t, srv, ""); len(got) != 2 {
		t.Fatalf("within retention: %d orders, want 2", len(got))
	}
	clock.Advance(time.Millisecond)
	q.orders.sweep()
	if got := listOrders(t, srv, ""); len(got) != 0 {
		t.Fatalf("after retention: %v, want none", orderIDs(got))
	}

	for result, want := range map[string]float64{
		resultCreated: 2, resultTaken: 1, resultDone: 1, resultCancelled: 1, resultFailed: 0, resultExpired: 0,
	} {
		if got := q.metricValue(t, "beekeeper_queen_spawn_orders_total", result); got != want {
			t.Errorf("beekeeper_queen_spawn_orders_total{result=%q} = %v, want %v", result, got, want)
		}
	}
}

func TestSpawnOrderRejectsBadInput(t *testing.T) {
	q, srv, _ := newTestQueen(t, Config{})
	o := postOrder(t, srv, wire.SpawnOrderRequest{Model: "m"})
	base := srv.URL + wire.PathSpawnOrders
	claim := base + "/" + o.OrderID + "/claim"
	result := base + "/" + o.OrderID + "/result"
	cases := []struct {
		name, method, url, body string
		status                  int
		code, param             string
	}{
		{"empty body", "POST", base, ``, 400, wire.CodeInvalidJSON, ""},
		{"malformed", "POST", base, `{"model":`, 400, wire.CodeInvalidJSON, ""},
		{"null", "POST", base, `null`, 400, wire.CodeInvalidJSON, ""},
		{"not an object", "POST", base, `["m"]`, 400, wire.CodeInvalidJSON, ""},
		{"trailing data", "POST", base, `{"model":"m"} {}`, 400, wire.CodeInvalidJSON, ""},
		{"unknown field", "POST", base, `{"model":"m","gpu":true}`, 400, wire.CodeInvalidField, "gpu"},
		{"missing model", "POST", base, `{"worker_type":"llm"}`, 400, wire.CodeInvalidField, "model"},
		{"model with control char", "POST", base, `{"model":"a\u0007b"}`, 400, wire.CodeInvalidField, "model"},
		{"model of 257 bytes", "POST", base, `{"model":"` + strings.Repeat("m", maxModelLen+1) + `"}`, 400, wire.CodeInvalidField, "model"},
		{"model is a number", "POST", base, `{"model":7}`, 400, wire.CodeInvalidField, "model"},
		{"worker_type with space", "POST", base, `{"model":"m","worker_type":"l m"}`, 400, wire.CodeInvalidField, "worker_type"},
		{"hive with slash", "POST", base, `{"model":"m","hive":"a/b"}`, 400, wire.CodeInvalidField, "hive"},
		{"hive of 129 characters", "POST", base, `{"model":"m","hive":"` + strings.Repeat("h", 129) + `"}`, 400, wire.CodeInvalidField, "hive"},
		{"negative ctx_size", "POST", base, `{"model":"m","ctx_size":-1}`, 400, wire.CodeInvalidField, "ctx_size"},
		{"ctx_size over 1<<20", "POST", base, `{"model":"m","ctx_size":1048577}`, 400, wire.CodeInvalidField, "ctx_size"},
		{"body over 64 KiB", "POST", base, `{"model":"` + strings.Repeat("m", wire.MaxRegistrationBody) + `"}`, 413, wire.CodeBodyTooLarge, ""},
		{"claim without hive", "POST", claim, `{}`, 400, wire.CodeInvalidField, "hive"},
		{"claim with a bad hive", "POST", claim, `{"hive":"a b"}`, 400, wire.CodeInvalidField, "hive"},
		{"claim with an unknown field", "POST", claim, `{"hive":"h","lease":5}`, 400, wire.CodeInvalidField, "lease"},
		{"result without hive", "POST", result, `{"worker_id":"w"}`, 400, wire.CodeInvalidField, "hive"},
		{"result with neither", "POST", result, `{"hive":"h"}`, 400, wire.CodeInvalidField, "worker_id"},
		{"result with both", "POST", result, `{"hive":"h","worker_id":"w","error":"e"}`, 400, wire.CodeInvalidField, "error"},
		{"result with a bad worker_id", "POST", result, `{"hive":"h","worker_id":"a/b"}`, 400, wire.CodeInvalidField, "worker_id"},
		{"list with a bad state", "GET", base + "?state=lost", ``, 400, wire.CodeInvalidField, "state"},
		{"list with a bad hive", "GET", base + "?hive=a%20b", ``, 400, wire.CodeInvalidField, "hive"},
		{"list with an empty hive", "GET", base + "?hive=", ``, 400, wire.CodeInvalidField, "hive"},
		{"list with hive and state=done", "GET", base + "?hive=h&state=done", ``, 400, wire.CodeInvalidField, "state"},
		{"list with a bad wait", "GET", base + "?wait=soon", ``, 400, wire.CodeInvalidField, "wait"},
		{"list with a negative wait", "GET", base + "?wait=-1s", ``, 400, wire.CodeInvalidField, "wait"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.method == "POST" {
				body = tc.body
			}
			a := do(t, tc.method, tc.url, "", body)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.body)
			}
			e := a.apiError(t)
			if e.Detail.Code != tc.code || e.Detail.Param != tc.param {
				t.Fatalf("code %q param %q, want %q %q (%s)", e.Detail.Code, e.Detail.Param, tc.code, tc.param, e.Detail.Message)
			}
			if tc.param != "" && !strings.Contains(e.Detail.Message, tc.param) {
				t.Fatalf("message %q does not name the field %q", e.Detail.Message, tc.param)
			}
		})
	}
	// Nothing of that changed the book.
	if got := listOrders(t, srv, ""); len(got) != 1 || got[0] != o {
		t.Fatalf("book changed by rejected requests: %+v", got)
	}
	// What wire.ModelName can produce is a valid model: spaces, dots, non-ASCII.
	for _, path := range []string{"/m/stories260K.gguf", "/m/Llama 3.2 1B Instruct-Q4_K_M.gguf", "/m/模型.GGUF"} {
		postOrder(t, srv, wire.SpawnOrderRequest{Model: wire.ModelName(path)})
	}
	// A registration's spawn_order_id is checked like an id.
	r := regReq("w1", 9)
	r.SpawnOrderID = "order/../x"
	if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", r); a.status != 400 || a.apiError(t).Detail.Param != "spawn_order_id" {
		t.Fatalf("registration with a bad spawn_order_id: %d %s", a.status, a.body)
	}
	if len(q.Workers()) != 0 {
		t.Fatal("a rejected registration was stored")
	}
}

func TestSpawnOrderClaimRaceHasOneWinner(t *testing.T) {
	q, srv, _ := newTestQueen(t, Config{})
	for i := range 50 {
		o := postOrder(t, srv, wire.SpawnOrderRequest{Model: "m"})
		start := make(chan struct{})
		answers := make([]answer, 2)
		var wg sync.WaitGroup
		for h := range answers {
			wg.Go(func() {
				<-start
				answers[h] = claimOrder(t, srv, o.OrderID, fmt.Sprintf("hive-%d", h))
			})
		}
		close(start)
		wg.Wait()
		winners := 0
		for h, a := range answers {
			switch a.status {
			case http.StatusOK:
				winners++
				if got := decode[wire.SpawnOrder](t, a); got.TakenBy != fmt.Sprintf("hive-%d", h) || got.State != wire.OrderTaken {
					t.Fatalf("round %d: winner's answer %+v", i, got)
				}
			default:
				wantConflict(t, a, wire.CodeOrderTaken, fmt.Sprintf("round %d: the loser", i))
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d winners, want exactly 1", i, winners)
		}
	}
	if got := q.metricValue(t, "beekeeper_queen_spawn_orders_total", resultTaken); got != 50 {
		t.Fatalf("taken counted %v times, want 50", got)
	}
}

func TestSpawnOrderLeaseExpiresBackToPending(t *testing.T) {
	q, srv, clock := newTestQueen(t, Config{OrderLease: 30 * time.Second})
	o := postOrder(t, srv, wire.SpawnOrderRequest{Model: "m"})
	if a := claimOrder(t, srv, o.OrderID, "hive-a"); a.status != http.StatusOK {
		t.Fatalf("claim: %d %s", a.status, a.body)
	}
	wantConflict(t, claimOrder(t, srv, o.OrderID, "hive-b"), wire.CodeOrderTaken, "claim of a held order")

	// Renewing keeps it: 20 s, renew, 20 s more is past the first lease but not the second.
	clock.Advance(20 * time.Second)
	if a := claimOrder(t, srv, o.OrderID, "hive-a"); a.status != http.StatusOK {
		t.Fatalf("renewal: %d %s", a.status, a.body)
	}
	clock.Advance(20 * time.Second)
	q.orders.sweep()
	if got := getOrder(t, srv, o.OrderID); got.State != wire.OrderTaken || got.TakenBy != "hive-a" {
		t.Fatalf("renewed order after 40 s: %+v", got)
	}

	// Not renewed for the lease: back to pending, nobody holds it.
	clock.Advance(10 * time.Second)
	q.orders.sweep()
	got := getOrder(t, srv, o.OrderID)
	if got.State != wire.OrderPending || got.TakenBy != "" || !got.UpdatedAt.Equal(clock.Now()) {
		t.Fatalf("expired order: %+v", got)
	}
	if ids := orderIDs(listOrders(t, srv, "?hive=hive-b")); len(ids) != 1 {
		t.Fatalf("hive-b does not see the expired order: %v", ids)
	}
	// Another hive takes it; the first one's late claim and report are refused.
	if a := claimOrder(t, srv, o.OrderID, "hive-b"); a.status != http.StatusOK {
		t.Fatalf("claim by hive-b after expiry: %d %s", a.status, a.body)
	}
	wantConflict(t, claimOrder(t, srv, o.OrderID, "hive-a"), wire.CodeOrderTaken, "hive-a's late renewal")
	wantConflict(t, reportOrder(t, srv, o.OrderID, wire.SpawnResult{Hive: "hive-a", Error: "boom"}), wire.CodeOrderTaken, "hive-a's late report")
	if got := q.metricValue(t, "beekeeper_queen_spawn_orders_total", resultExpired); got != 1 {
		t.Fatalf("expired counted %v times, want 1", got)
	}
}

// A hive whose lease ran out but whose worker runs may still report it done.
func TestSpawnOrderLapsedHiveMayReportItsWorker(t *testing.T) {
	q, srv, clock := newTestQueen(t, Config{OrderLease: time.Second})
	o := postOrder(t, srv, wire.SpawnOrderRequest{Model: "m"})
	claimOrder(t, srv, o.OrderID, "hive-a")
	clock.Advance(time.Second)
	q.orders.sweep()
	wantConflict(t, reportOrder(t, srv, o.OrderID, wire.SpawnResult{Hive: "hive-a", Error: "boom"}), wire.CodeOrderTaken, "a failure from a hive that no longer holds it")
	a := reportOrder(t, srv, o.OrderID, wire.SpawnResult{Hive: "hive-a", WorkerID: "worker-llm-8080"})
	if got := decode[wire.SpawnOrder](t, a); a.status != 200 || got.State != wire.OrderDone || got.TakenBy != "hive-a" {
		t.Fatalf("late success report: %d %s", a.status, a.body)
	}
}

// Expiry must not hand out an order whose worker already registered: that would spawn
// a second worker.
func TestSpawnOrderDoesNotExpireWhenAWorkerCarriesIt(t *testing.T) {
	q, srv, clock := newTestQueen(t, Config{OrderLease: time.Second})
	o := postOrder(t, srv, wire.SpawnOrderRequest{Model: "m"})
	claimOrder(t, srv, o.OrderID, "hive-a")
	// The registry holds the worker but the order book has not heard (the window
	// between the two in a registration): the sweep must find it.
	r := regReq("worker-llm-8080", 9)
	r.SpawnOrderID = o.OrderID
	if _, err := q.reg.register(r, ""); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	q.orders.sweep()
	got := getOrder(t, srv, o.OrderID)
	if got.State != wire.OrderDone || got.WorkerID != "worker-llm-8080" || got.TakenBy != "hive-a" {
		t.Fatalf("after the lease with a registered worker: %+v, want done by worker-llm-8080", got)
	}
	if got := q.metricValue(t, "beekeeper_queen_spawn_orders_total", resultExpired); got != 0 {
		t.Fatalf("expired counted %v times, want 0", got)
	}
}

func TestSpawnOrderRegistrationCompletesIt(t *testing.T) {
	q, srv, clock := newTestQueen(t, Config{OrderLease: time.Second})
	caps := newCapsResponder(t, capsOK)
	taken := postOrder(t, srv, wire.SpawnOrderRequest{Model: "stories260K"})
	pending := postOrder(t, srv, wire.SpawnOrderRequest{Model: "stories260K"})
	claimOrder(t, srv, taken.OrderID, "hive-a")

	// The hive spawned the worker and died before it could report: the worker's own
	// registration completes the order.
	r := regReq("worker-llm-8080", caps.port())
	r.SpawnedBy = "hive-a"
	r.SpawnOrderID = taken.OrderID
	if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", r); a.status != 200 {
		t.Fatalf("registration: %d %s", a.status, a.body)
	}
	got := getOrder(t, srv, taken.OrderID)
	if got.State != wire.OrderDone || got.WorkerID != r.WorkerID || got.TakenBy != "hive-a" || got.Error != "" {
		t.Fatalf("taken order after its worker registered: %+v", got)
	}
	clock.Advance(time.Minute)
	q.orders.sweep()
	if got := getOrder(t, srv, taken.OrderID); got.State != wire.OrderDone {
		t.Fatalf("done order changed by the sweep: %+v", got)
	}

	// A pending order completes too; its taker is the worker's spawner.
	r2 := regReq("worker-llm-8081", caps.port())
	r2.SpawnedBy = "hive-b"
	r2.SpawnOrderID = pending.OrderID
	if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", r2); a.status != 200 {
		t.Fatalf("registration: %d %s", a.status, a.body)
	}
	if got := getOrder(t, srv, pending.OrderID); got.State != wire.OrderDone || got.WorkerID != r2.WorkerID || got.TakenBy != "hive-b" {
		t.Fatalf("pending order after its worker registered: %+v", got)
	}

	// Re-registration, or another worker naming an ended order, changes nothing; an
	// unknown order id is no error (a restarted Queen forgot it).
	r3 := regReq("worker-llm-8082", caps.port())
	r3.SpawnOrderID = taken.OrderID
	r4 := regReq("worker-llm-8083", caps.port())
	r4.SpawnOrderID = "order-forgotten"
	for _, req := range []wire.RegisterRequest{r, r3, r4} {
		if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", req); a.status != 200 {
			t.Fatalf("registration of %s: %d %s", req.WorkerID, a.status, a.body)
		}
	}
	if got := getOrder(t, srv, taken.OrderID); got.WorkerID != r.WorkerID {
		t.Fatalf("another worker took over a done order: %+v", got)
	}
	if _, ok := q.orders.get("order-forgotten"); ok {
		t.Fatal("a registration created an order")
	}
}

// An order placed again under its id after a restart of the Queen forgot it (the
// client's retry) is done at once when the worker started for it the first time has
// registered here since, carrying the id: a hive taking it again would start a second
// worker for one order. A worker no longer live does not count.
func TestSpawnOrderPlacedAgainFindsItsWorker(t *testing.T) {
	q, srv, clock := newTestQueen(t, Config{})
	caps := newCapsResponder(t, capsOK)
	r := regReq("worker-llm-8081", caps.port())
	r.SpawnedBy = "hive-c"
	r.SpawnOrderID = "client-order-27" // unknown here: this Queen restarted since
	if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", r); a.status != 200 {
		t.Fatalf("registration: %d %s", a.status, a.body)
	}
	got := postOrder(t, srv, wire.SpawnOrderRequest{OrderID: "client-order-27", Model: "stories260K"})
	if got.State != wire.OrderDone || got.WorkerID != r.WorkerID || got.TakenBy != "hive-c" {
		t.Fatalf("order placed again: %+v, want done by %s (hive-c)", got, r.WorkerID)
	}
	if open := listOrders(t, srv, "?state=pending"); len(open) != 0 {
		t.Fatalf("pending orders offered to hives: %v", orderIDs(open))
	}

	// A worker of another model carrying the id does not serve the order.
	other := regReq("worker-llm-8083", caps.port())
	other.SpawnOrderID = "client-order-29"
	if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", other); a.status != 200 {
		t.Fatalf("registration: %d %s", a.status, a.body)
	}
	if got := postOrder(t, srv, wire.SpawnOrderRequest{OrderID: "client-order-29", Model: "another-model"}); got.State != wire.OrderPending {
		t.Fatalf("order for another model: %+v, want pending", got)
	}

	// Nor does one gone stale (silent for three intervals: no longer live).
	gone := regReq("worker-llm-8082", caps.port())
	gone.SpawnOrderID = "client-order-28"
	if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", gone); a.status != 200 {
		t.Fatalf("registration: %d %s", a.status, a.body)
	}
	clock.Advance(wire.StaleAfter * testInterval)
	q.reg.sweep()
	if w, _ := q.reg.get(gone.WorkerID); w.State != wire.StateStale {
		t.Fatalf("worker after three silent intervals: %s, want stale", w.State)
	}
	if got := postOrder(t, srv, wire.SpawnOrderRequest{OrderID: "client-order-28", Model: "stories260K"}); got.State != wire.OrderPending {
		t.Fatalf("order carried by a stale worker: %+v, want pending", got)
	}
}

func TestSpawnOrderResultIsIdempotent(t *testing.T) {
	_, srv, _ := newTestQueen(t, Config{})
	o := postOrder(t, srv, wire.SpawnOrderRequest{Model: "m"})
	wantConflict(t, reportOrder(t, srv, o.OrderID, wire.SpawnResult{Hive: "hive-a", Error: "boom"}), wire.CodeOrderTaken, "a failure for an order nobody holds")
	claimOrder(t, srv, o.OrderID, "hive-a")
	wantConflict(t, reportOrder(t, srv, o.OrderID, wire.SpawnResult{Hive: "hive-b", WorkerID: "w"}), wire.CodeOrderTaken, "a report by a hive that does not hold it")
	done := wire.SpawnResult{Hive: "hive-a", WorkerID: "worker-llm-8080"}
	var first wire.SpawnOrder
	for i := range 3 {
		a := reportOrder(t, srv, o.OrderID, done)
		if a.status != http.StatusOK {
			t.Fatalf("report %d: %d %s", i, a.status, a.body)
		}
		got := decode[wire.SpawnOrder](t, a)
		if i == 0 {
			first = got
		}
		if got != first || got.State != wire.OrderDone || got.WorkerID != done.WorkerID {
			t.Fatalf("report %d: %+v (first %+v)", i, got, first)
		}
	}
	wantConflict(t, reportOrder(t, srv, o.OrderID, wire.SpawnResult{Hive: "hive-a", WorkerID: "worker-llm-8081"}), wire.CodeOrderEnded, "another worker for a done order")
	wantConflict(t, reportOrder(t, srv, o.OrderID, wire.SpawnResult{Hive: "hive-a", Error: "late"}), wire.CodeOrderEnded, "a failure for a done order")
	wantConflict(t, claimOrder(t, srv, o.OrderID, "hive-a"), wire.CodeOrderEnded, "a renewal of a done order")

	// A failure, reported twice.
	f := postOrder(t, srv, wire.SpawnOrderRequest{Model: "m"})
	claimOrder(t, srv, f.OrderID, "hive-a")
	long := strings.Repeat("é", maxOrderError) // cut on a character boundary
	for i := range 2 {
		a := reportOrder(t, srv, f.OrderID, wire.SpawnResult{Hive: "hive-a", Error: long})
		got := decode[wire.SpawnOrder](t, a)
		if a.status != http.StatusOK || got.State != wire.OrderFailed || len(got.Error) > maxOrderError || !strings.HasPrefix(long, got.Error) {
			t.Fatalf("failure report %d: %d %+v", i, a.status, got)
		}
	}
	wantConflict(t, reportOrder(t, srv, f.OrderID, wire.SpawnResult{Hive: "hive-a", WorkerID: "w"}), wire.CodeOrderEnded, "a worker for a failed order")
}

func TestSpawnOrderTargetedAtAHive(t *testing.T) {
	q, srv, _ := newTestQueen(t, Config{})
	o := postOrder(t, srv, wire.SpawnOrderRequest{Model: "m", Hive: "hive-a"})
	if ids := orderIDs(listOrders(t, srv, "?hive=hive-b")); len(ids) != 0 {
		t.Fatalf("hive-b sees an order for hive-a: %v", ids)
	}
	if ids := orderIDs(listOrders(t, srv, "?hive=hive-a&state=pending")); len(ids) != 1 {
		t.Fatalf("hive-a does not see its order: %v", ids)
	}
	// hive-b's long-poll is not woken by it.
	poll := startPoll(t.Context(), srv, "?hive=hive-b&wait=300ms")
	if res := <-poll; res.err != nil || res.status != 200 || len(res.orders) != 0 {
		t.Fatalf("hive-b's long-poll: %+v", res)
	}
	wantConflict(t, claimOrder(t, srv, o.OrderID, "hive-b"), wire.CodeOrderTaken, "hive-b claiming hive-a's order")
	wantConflict(t, reportOrder(t, srv, o.OrderID, wire.SpawnResult{Hive: "hive-b", WorkerID: "w"}), wire.CodeOrderTaken, "hive-b reporting hive-a's order")
	if a := claimOrder(t, srv, o.OrderID, "hive-a"); a.status != 200 {
		t.Fatalf("hive-a's claim: %d %s", a.status, a.body)
	}
	if got, _ := q.orders.get(o.OrderID); got.TakenBy != "hive-a" {
		t.Fatalf("order %+v", got)
	}
}

func TestSpawnOrderLongPoll(t *testing.T) {
	t.Run("wakes on a new order", func(t *testing.T) {
		q, srv, _ := newTestQueen(t, Config{})
		poll := startPoll(t.Context(), srv, "?hive=hive-a&wait=20s")
		waitPolling(t, q, 1)
		created := time.Now()
		o := postOrder(t, srv, wire.SpawnOrderRequest{Model: "m"})
		res := <-poll
		took := res.at.Sub(created)
		t.Logf("long-poll answered %v after the order was created", took)
		if res.err != nil || res.status != 200 || len(res.orders) != 1 || res.orders[0].OrderID != o.OrderID {
			t.Fatalf("long-poll: %+v", res)
		}
		if took > time.Second {
			t.Fatalf("long-poll answered %v after the order, want well under 1 s", took)
		}
	})
	t.Run("answers at once when something matches", func(t *testing.T) {
		_, srv, _ := newTestQueen(t, Config{})
		postOrder(t, srv, wire.SpawnOrderRequest{Model: "m"})
		start := time.Now()
		res := <-startPoll(t.Context(), srv, "?state=pending&wait=20s")
		if res.err != nil || len(res.orders) != 1 || time.Since(start) > time.Second {
			t.Fatalf("long-poll with a match waited %v: %+v", time.Since(start), res)
		}
	})
	t.Run("wakes when an order comes back to pending", func(t *testing.T) {
		q, srv, clock := newTestQueen(t, Config{OrderLease: time.Second})
		o := postOrder(t, srv, wire.SpawnOrderRequest{Model: "m"})
		claimOrder(t, srv, o.OrderID, "hive-a")
		poll := startPoll(t.Context(), srv, "?hive=hive-b&wait=20s")
		waitPolling(t, q, 1)
		clock.Advance(time.Second)
		q.orders.sweep()
		select {
		case res := <-poll:
			if res.err != nil || len(res.orders) != 1 || res.orders[0].OrderID != o.OrderID {
				t.Fatalf("long-poll: %+v", res)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the long-poll did not wake when the order came back")
		}
	})
	t.Run("ignores changes that do not match", func(t *testing.T) {
		q, srv, _ := newTestQueen(t, Config{})
		poll := startPoll(t.Context(), srv, "?state=done&wait=20s")
		waitPolling(t, q, 1)
		o := postOrder(t, srv, wire.SpawnOrderRequest{Model: "m"})
		claimOrder(t, srv, o.OrderID, "hive-a")
		select {
		case res := <-poll:
			t.Fatalf("woke for no done order: %+v", res)
		default:
		}
		waitPolling(t, q, 1) // still waiting after two wake-ups
		reportOrder(t, srv, o.OrderID, wire.SpawnResult{Hive: "hive-a", WorkerID: "w"})
		if res := <-poll; res.err != nil || len(res.orders) != 1 || res.orders[0].State != wire.OrderDone {
			t.Fatalf("long-poll: %+v", res)
		}
	})
	t.Run("empty after wait", func(t *testing.T) {
		_, srv, _ := newTestQueen(t, Config{})
		start := time.Now()
		res := <-startPoll(t.Context(), srv, "?hive=hive-a&wait=200ms")
		took := res.at.Sub(start)
		if res.err != nil || res.status != 200 || res.orders == nil || len(res.orders) != 0 {
			t.Fatalf("long-poll: %+v (want an empty list, not null)", res)
		}
		if took < 200*time.Millisecond || took > 3*time.Second {
			t.Fatalf("long-poll of 200ms answered after %v", took)
		}
	})
	t.Run("ends at once when the client goes", func(t *testing.T) {
		q, srv, _ := newTestQueen(t, Config{})
		ctx, cancel := context.WithCancel(t.Context())
		poll := startPoll(ctx, srv, "?wait=20s")
		waitPolling(t, q, 1)
		start := time.Now()
		cancel()
		if res := <-poll; !errors.Is(res.err, context.Canceled) {
			t.Fatalf("client side: %+v", res)
		}
		waitPolling(t, q, 0)
		if took := time.Since(start); took > time.Second {
			t.Fatalf("the Queen kept a gone client's long-poll %v", took)
		}
	})
	t.Run("ends when the Queen closes", func(t *testing.T) {
		q, srv, _ := newTestQueen(t, Config{})
		poll := startPoll(t.Context(), srv, "?wait=20s")
		waitPolling(t, q, 1)
		q.Close()
		select {
		case res := <-poll:
			if res.err != nil || res.status != 200 || len(res.orders) != 0 {
				t.Fatalf("long-poll at close: %+v", res)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the long-poll outlived the Queen")
		}
	})
}

func TestSpawnOrderLimit(t *testing.T) {
	q, srv, _ := newTestQueen(t, Config{MaxOrders: 2})
	a := postOrder(t, srv, wire.SpawnOrderRequest{Model: "m"})
	postOrder(t, srv, wire.SpawnOrderRequest{Model: "m"})
	ans := do(t, "POST", srv.URL+wire.PathSpawnOrders, "", wire.SpawnOrderRequest{Model: "m"})
	if ans.status != http.StatusServiceUnavailable || ans.apiError(t).Detail.Code != wire.CodeBusy {
		t.Fatalf("order beyond MaxOrders: %d %s, want 503 %s", ans.status, ans.body, wire.CodeBusy)
	}
	// Ended orders do not count, and cancelling over and over never piles up more
	// than MaxOrders ended ones.
	do(t, "DELETE", srv.URL+wire.PathSpawnOrders+"/"+a.OrderID, "", nil)
	for range 10 {
		o := postOrder(t, srv, wire.SpawnOrderRequest{Model: "m"})
		do(t, "DELETE", srv.URL+wire.PathSpawnOrders+"/"+o.OrderID, "", nil)
	}
	if n := len(listOrders(t, srv, "")); n > 2*q.cfg.MaxOrders {
		t.Fatalf("%d orders held, want at most %d", n, 2*q.cfg.MaxOrders)
	}
	if n := len(listOrders(t, srv, "?state=pending")); n != 1 {
		t.Fatalf("%d pending, want 1", n)
	}
}

func TestSpawnOrderEndpointsNeedTheToken(t *testing.T) {
	_, srv, _ := newTestQueen(t, Config{Token: "s3cret"})
	endpoints := []struct{ method, path string }{
		{"POST", wire.PathSpawnOrders},
		{"GET", wire.PathSpawnOrders},
		{"GET", wire.PathSpawnOrders + "?wait=10s"},
		{"GET", wire.PathSpawnOrders + "/order-x"},
		{"DELETE", wire.PathSpawnOrders + "/order-x"},
		{"POST", wire.PathSpawnOrders + "/order-x/claim"},
		{"POST", wire.PathSpawnOrders + "/order-x/result"},
	}
	for _, ep := range endpoints {
		for _, tok := range []string{"", "wrong"} {
			a := do(t, ep.method, srv.URL+ep.path, tok, nil)
			if a.status != http.StatusUnauthorized || a.apiError(t).Detail.Code != wire.CodeUnauthorized {
				t.Fatalf("%s %s token=%q: %d %s, want 401", ep.method, ep.path, tok, a.status, a.body)
			}
		}
	}
	a := do(t, "POST", srv.URL+wire.PathSpawnOrders, "s3cret", wire.SpawnOrderRequest{Model: "m"})
	if a.status != http.StatusAccepted {
		t.Fatalf("with the token: %d %s", a.status, a.body)
	}
}

func TestNewRejectsBadOrderConfig(t *testing.T) {
	for _, cfg := range []Config{{OrderLease: -time.Second}, {MaxOrders: -1}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted it", cfg)
		}
	}
	q, err := New(Config{Dial: new(testenv.LoopbackDialer).DialContext})
	if err != nil {
		t.Fatal(err)
	}
	if q.cfg.OrderLease != DefaultOrderLease || q.cfg.MaxOrders != DefaultMaxOrders {
		t.Fatalf("defaults: lease %v, max %d", q.cfg.OrderLease, q.cfg.MaxOrders)
	}
}
