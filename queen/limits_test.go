package queen

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// TestGatewayMetricsNeverLabelUnknownModels guards /metrics against label series minted
// by clients: a model no worker serves is counted as "unknown", and a huge name is
// never echoed whole (answers, logs).
func TestGatewayMetricsNeverLabelUnknownModels(t *testing.T) {
	var logs testenv.SyncBuffer
	q, srv, _ := newTestQueen(t, Config{
		Capabilities: FetchConfig{Attempts: 1, Timeout: 50 * time.Millisecond},
		Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
	})
	huge := strings.Repeat("m", 100_000)
	for i := range 20 {
		a := do(t, "POST", srv.URL+wire.PathChat, "", fmt.Sprintf(`{"model":"client-made-%d"}`, i))
		if a.status != http.StatusNotFound {
			t.Fatalf("%d %s, want 404", a.status, a.body)
		}
	}
	a := do(t, "POST", srv.URL+wire.PathChat, "", `{"model":"`+huge+`"}`)
	if a.status != http.StatusNotFound || len(a.body) > 2*maxModelLen+512 {
		t.Fatalf("huge model name: %d with a %d-byte answer, want 404 with the name clipped", a.status, len(a.body))
	}
	// A model the registry knows is still labelled by name.
	do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w1", 9))
	if a := do(t, "POST", srv.URL+wire.PathChat, "", `{"model":"stories260K"}`); a.status != http.StatusServiceUnavailable {
		t.Fatalf("%d %s, want 503", a.status, a.body)
	}
	q.reg.heartbeat(wire.Heartbeat{WorkerID: "w1", Status: wire.StatusReady})
	do(t, "POST", srv.URL+wire.PathChat, "", `{"model":"stories260K"}`) // unreachable: 502, logged

	body := string(do(t, "GET", srv.URL+wire.PathMetrics, "", nil).body)
	for _, want := range []string{
		`beekeeper_queen_routed_requests_total{code="404",model="unknown"} 21`,
		`beekeeper_queen_routed_requests_total{code="503",model="stories260K"} 1`,
		`beekeeper_queen_routed_requests_total{code="unreachable",model="stories260K"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "client-made") || strings.Contains(body, "mmmm") {
		t.Error("/metrics carries a model name no worker serves")
	}
	if strings.Contains(logs.String(), strings.Repeat("m", maxModelLen+1)) {
		t.Error("the log repeats an unclipped model name")
	}
}

// TestRegisterRefusesNewWorkersBeyondMaxWorkers guards the registry against a
// registration flood: new ids beyond the cap are refused, known ids always re-register.
func TestRegisterRefusesNewWorkersBeyondMaxWorkers(t *testing.T) {
	q, srv, clock := newTestQueen(t, Config{MaxWorkers: 2, Capabilities: FetchConfig{Attempts: 1, Timeout: 50 * time.Millisecond}})
	for _, id := range []string{"w1", "w2"} {
		if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq(id, 9)); a.status != 200 {
			t.Fatalf("%s: %d %s", id, a.status, a.body)
		}
	}
	a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w3", 9))
	if a.status != http.StatusServiceUnavailable || a.apiError(t).Detail.Code != wire.CodeBusy ||
		!strings.Contains(a.apiError(t).Detail.Message, "2 workers") {
		t.Fatalf("third worker: %d %s, want 503 %s naming the limit of 2", a.status, a.body, wire.CodeBusy)
	}
	if _, ok := q.Worker("w3"); ok {
		t.Fatal("a refused worker was stored")
	}
	if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w1", 9)); a.status != 200 {
		t.Fatalf("re-registering a known id at the cap: %d %s", a.status, a.body)
	}
	// A dead holder's id is still known: taking it over does not grow the registry.
	clock.Advance(wire.OfflineAfter * testInterval)
	q.reg.sweep()
	if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w2", 10)); a.status != 200 {
		t.Fatalf("taking over an offline id at the cap: %d %s", a.status, a.body)
	}
	do(t, "DELETE", srv.URL+wire.PathWorkers+"/w1", "", nil)
	if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w3", 9)); a.status != 200 {
		t.Fatalf("after a deregistration freed a place: %d %s", a.status, a.body)
	}
}

// TestCapabilitiesFetchQueueIsBounded guards against one goroutine per registration:
// fetches run on at most Concurrency goroutines, at most Queue wait, the rest are
// dropped, and a dropped worker still goes online with its first heartbeat.
func TestCapabilitiesFetchQueueIsBounded(t *testing.T) {
	q, srv, _ := newTestQueen(t, Config{Capabilities: FetchConfig{Concurrency: 2, Queue: 2}})
	caps, release := newHeldCapsResponder(t)
	register := func(id string) {
		t.Helper()
		if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq(id, caps.port())); a.status != 200 {
			t.Fatalf("%s: %d %s", id, a.status, a.body)
		}
	}
	// Two fetches take the two pool goroutines, two wait in the queue, two are dropped.
	register("w1")
	waitFor(t, 5*time.Second, "the first fetch", func() bool { return caps.hitCount() == 1 })
	register("w2")
	waitFor(t, 5*time.Second, "the second fetch", func() bool { return caps.hitCount() == 2 })
	for _, id := range []string{"w3", "w4", "w5", "w6"} {
		register(id)
	}
	if n := q.metricValue(t, "beekeeper_queen_capabilities_fetches_total", "dropped"); n != 2 {
		t.Fatalf("%v fetches dropped, want 2", n)
	}
	do(t, "POST", srv.URL+wire.PathHeartbeat, "", `{"worker_id":"w5","status":"ready"}`)
	if wk, _ := q.Worker("w5"); wk.State != wire.StateOnline {
		t.Fatalf("w5 after its heartbeat: %s, want online", wk.State)
	}
	close(release)
	waitFor(t, 5*time.Second, "the queued fetches", func() bool {
		return q.metricValue(t, "beekeeper_queen_capabilities_fetches_total", "ok") == 4
	})
	// A dropped fetch does not wedge the worker: its next registration fetches again.
	register("w6")
	waitFor(t, 5*time.Second, "w6's fetch after re-registering", func() bool {
		wk, _ := q.Worker("w6")
		return wk.Capabilities != nil
	})
	if caps.hitCount() != 5 {
		t.Fatalf("%d fetches, want 5", caps.hitCount())
	}
}

// TestFetchBelongsToItsRecord guards the one-fetch-per-record rule: after DELETE and
// re-registration, the old record's fetch ends instead of fetching the new record too.
func TestFetchBelongsToItsRecord(t *testing.T) {
	q, srv, _ := newTestQueen(t, Config{})
	old, release := newHeldCapsResponder(t)
	fresh := newCapsResponder(t, capsOK)
	do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w1", old.port()))
	waitFor(t, 5*time.Second, "the old record's fetch", func() bool { return old.hitCount() == 1 })
	if a := do(t, "DELETE", srv.URL+wire.PathWorkers+"/w1", "", nil); a.status != 200 {
		t.Fatalf("delete: %d %s", a.status, a.body)
	}
	do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w1", fresh.port()))
	waitFor(t, 5*time.Second, "the new record's capabilities", func() bool {
		wk, _ := q.Worker("w1")
		return wk.Capabilities != nil
	})
	close(release)
	waitFor(t, 5*time.Second, "every fetch to end", func() bool { return q.caps.idle() })
	if n := fresh.hitCount(); n != 1 {
		t.Fatalf("the new record was fetched %d times, want once (the old fetch followed it)", n)
	}
}

// TestReRegisterAnswersRegisteredWhileOnline guards docs/protocol.md §2: the registration
// answer says "registered", while an online worker stays online in the registry.
func TestReRegisterAnswersRegisteredWhileOnline(t *testing.T) {
	_, srv, _ := newTestQueen(t, Config{Capabilities: FetchConfig{Attempts: 1, Timeout: 50 * time.Millisecond}})
	do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w1", 9))
	do(t, "POST", srv.URL+wire.PathHeartbeat, "", `{"worker_id":"w1","status":"ready"}`)
	res := decode[wire.RegisterResponse](t, do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w1", 9)))
	if res.State != wire.StateRegistered {
		t.Fatalf("answer state %q, want %q", res.State, wire.StateRegistered)
	}
	wk := decode[wire.Worker](t, do(t, "GET", srv.URL+wire.PathWorkers+"/w1", "", nil))
	if wk.State != wire.StateOnline {
		t.Fatalf("worker state %q after re-registering, want online", wk.State)
	}
}
