package queen

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

func TestHealthAnswersWithoutToken(t *testing.T) {
	_, srv, _ := newTestQueen(t, Config{Token: "s3cret"})
	a := do(t, "GET", srv.URL+wire.PathHealth, "", nil)
	if a.status != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", a.status, a.body)
	}
	h := decode[wire.QueenHealth](t, a)
	if h.Status != "ok" || h.Version != wire.Version {
		t.Fatalf("health %+v", h)
	}
}

func TestTokenRequiredOnEveryEndpointButHealth(t *testing.T) {
	_, srv, _ := newTestQueen(t, Config{Token: "s3cret"})
	endpoints := []struct{ method, path string }{
		{"POST", wire.PathRegisterWorker},
		{"POST", wire.PathHeartbeat},
		{"GET", wire.PathWorkers},
		{"GET", wire.PathWorkers + "/x"},
		{"DELETE", wire.PathWorkers + "/x"},
		{"GET", wire.PathEvents},
		{"GET", wire.PathModels},
		{"POST", wire.PathHives},
		{"GET", wire.PathHives},
		{"POST", wire.PathChat},
		{"POST", wire.PathCompletions},
		{"GET", wire.PathMetrics},
	}
	for _, ep := range endpoints {
		for _, tok := range []string{"", "wrong"} {
			t.Run(fmt.Sprintf("%s %s token=%q", ep.method, ep.path, tok), func(t *testing.T) {
				a := do(t, ep.method, srv.URL+ep.path, tok, nil)
				if a.status != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401", a.status)
				}
				if e := a.apiError(t); e.Detail.Code != wire.CodeUnauthorized {
					t.Fatalf("code %q, want %q", e.Detail.Code, wire.CodeUnauthorized)
				}
			})
		}
	}
	if a := do(t, "GET", srv.URL+wire.PathWorkers, "s3cret", nil); a.status != http.StatusOK {
		t.Fatalf("with the token: status %d, want 200", a.status)
	}
}

func TestRegisterRejectsBadInput(t *testing.T) {
	q, srv, _ := newTestQueen(t, Config{})
	caps := newCapsResponder(t, capsOK)
	// One valid worker first, so "unchanged" means more than "still empty".
	if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("worker-llm-1", caps.port())); a.status != 200 {
		t.Fatalf("seed registration: %d %s", a.status, a.body)
	}
	waitFor(t, 5*time.Second, "the seed's capabilities", func() bool {
		wk, _ := q.Worker("worker-llm-1")
		return wk.Capabilities != nil
	})
	valid := `"worker_id":"worker-llm-2","hostname":"127.0.0.1","port":8081,"worker_type":"llm","model":"m","spawned_by":"gui"`
	cases := []struct {
		name   string
		body   string
		status int
		code   string
		param  string
	}{
		{"empty body", ``, 400, wire.CodeInvalidJSON, ""},
		{"malformed", `{"worker_id":`, 400, wire.CodeInvalidJSON, ""},
		{"not an object", `[1,2]`, 400, wire.CodeInvalidJSON, ""},
		{"null", `null`, 400, wire.CodeInvalidJSON, ""},
		{"trailing data", `{` + valid + `} {}`, 400, wire.CodeInvalidJSON, ""},
		{"unknown field", `{` + valid + `,"color":"red"}`, 400, wire.CodeInvalidField, "color"},
		{"field in wrong case", `{"Worker_ID":"x","hostname":"h","port":1,"worker_type":"llm","model":"m"}`, 400, wire.CodeInvalidField, "Worker_ID"},
		{"port is a string", `{"worker_id":"w","hostname":"h","port":"80","worker_type":"llm","model":"m"}`, 400, wire.CodeInvalidField, "port"},
		{"missing worker_id", `{"hostname":"h","port":1,"worker_type":"llm","model":"m"}`, 400, wire.CodeInvalidField, "worker_id"},
		{"missing hostname", `{"worker_id":"w","port":1,"worker_type":"llm","model":"m"}`, 400, wire.CodeInvalidField, "hostname"},
		{"missing port", `{"worker_id":"w","hostname":"h","worker_type":"llm","model":"m"}`, 400, wire.CodeInvalidField, "port"},
		{"missing worker_type", `{"worker_id":"w","hostname":"h","port":1,"model":"m"}`, 400, wire.CodeInvalidField, "worker_type"},
		{"missing model", `{"worker_id":"w","hostname":"h","port":1,"worker_type":"llm"}`, 400, wire.CodeInvalidField, "model"},
		{"port 0", `{"worker_id":"w","hostname":"h","port":0,"worker_type":"llm","model":"m"}`, 400, wire.CodeInvalidField, "port"},
		{"port 65536", `{"worker_id":"w","hostname":"h","port":65536,"worker_type":"llm","model":"m"}`, 400, wire.CodeInvalidField, "port"},
		{"negative port", `{"worker_id":"w","hostname":"h","port":-1,"worker_type":"llm","model":"m"}`, 400, wire.CodeInvalidField, "port"},
		{"id of 129 characters", `{"worker_id":"` + strings.Repeat("a", 129) + `","hostname":"h","port":1,"worker_type":"llm","model":"m"}`, 400, wire.CodeInvalidField, "worker_id"},
		{"id with a slash", `{"worker_id":"a/b","hostname":"h","port":1,"worker_type":"llm","model":"m"}`, 400, wire.CodeInvalidField, "worker_id"},
		{"id with a space", `{"worker_id":"a b","hostname":"h","port":1,"worker_type":"llm","model":"m"}`, 400, wire.CodeInvalidField, "worker_id"},
		{"hostname with scheme", `{"worker_id":"w","hostname":"http://h","port":1,"worker_type":"llm","model":"m"}`, 400, wire.CodeInvalidField, "hostname"},
		{"hostname with port", `{"worker_id":"w","hostname":"h:80","port":1,"worker_type":"llm","model":"m"}`, 400, wire.CodeInvalidField, "hostname"},
		{"hostname with path", `{"worker_id":"w","hostname":"h/evil","port":1,"worker_type":"llm","model":"m"}`, 400, wire.CodeInvalidField, "hostname"},
		{"worker_type with space", `{"worker_id":"w","hostname":"h","port":1,"worker_type":"l m","model":"m"}`, 400, wire.CodeInvalidField, "worker_type"},
		{"model with control char", `{"worker_id":"w","hostname":"h","port":1,"worker_type":"llm","model":"a\u0000b"}`, 400, wire.CodeInvalidField, "model"},
		{"body over 64 KiB", `{"worker_id":"w","hostname":"h","port":1,"worker_type":"llm","model":"` + strings.Repeat("m", wire.MaxRegistrationBody) + `"}`, 413, wire.CodeBodyTooLarge, ""},
	}
	before := q.Workers()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", tc.body)
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
			if after := q.Workers(); !reflect.DeepEqual(before, after) {
				t.Fatalf("registry changed by a rejected registration:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
}

func TestRegisterAcceptsIPv6AndNames(t *testing.T) {
	// The Queen fetches each registered worker's capabilities: the guard dialer keeps
	// the fetches of gpu-box.lan and 10.0.0.7 on this machine (refused, no DNS lookup).
	guard := new(testenv.LoopbackDialer)
	q, srv, _ := newTestQueen(t, Config{Capabilities: FetchConfig{Attempts: 1, Timeout: 50 * time.Millisecond}, Dial: guard.DialContext})
	for _, host := range []string{"::1", "localhost", "gpu-box.lan", "10.0.0.7"} {
		r := regReq("w-"+strings.NewReplacer(":", "x", ".", "x").Replace(host), 9)
		r.Hostname = host
		r.SpawnedBy = "" // optional
		if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", r); a.status != 200 {
			t.Fatalf("%s: status %d: %s", host, a.status, a.body)
		}
	}
	if wk, _ := q.Worker("w-xx1"); wk.URL != "http://[::1]:9" {
		t.Fatalf("IPv6 URL %q, want http://[::1]:9", wk.URL)
	}
	want := []string{"10.0.0.7:9", "gpu-box.lan:9"}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := guard.Refused()
		slices.Sort(got)
		if slices.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guard refused %v, want exactly %v: a fetch went elsewhere or never happened", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRegisterIsIdempotentAndConflictsOnLiveHolder(t *testing.T) {
	q, srv, clock := newTestQueen(t, Config{})
	caps := newCapsResponder(t, capsOK)
	req := regReq("worker-llm-8080", caps.port())
	for i := range 3 {
		a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", req)
		if a.status != 200 {
			t.Fatalf("registration %d: %d %s", i, a.status, a.body)
		}
		res := decode[wire.RegisterResponse](t, a)
		if res.WorkerID != req.WorkerID || res.State != wire.StateRegistered || res.HeartbeatIntervalMS != testInterval.Milliseconds() {
			t.Fatalf("answer %+v", res)
		}
	}
	if n := len(q.Workers()); n != 1 {
		t.Fatalf("%d workers after 3 identical registrations, want 1", n)
	}

	other := req
	other.Port = req.Port + 1
	a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", other)
	if a.status != http.StatusConflict || a.apiError(t).Detail.Code != wire.CodeWorkerConflict {
		t.Fatalf("live id from another port: %d %s, want 409 %s", a.status, a.body, wire.CodeWorkerConflict)
	}
	if wk, _ := q.Worker(req.WorkerID); wk.Port != req.Port {
		t.Fatalf("conflict changed the record: port %d", wk.Port)
	}

	// Once the holder has gone offline, the id may be taken over.
	clock.Advance(wire.OfflineAfter * testInterval)
	q.reg.sweep()
	if wk, _ := q.Worker(req.WorkerID); wk.State != wire.StateOffline {
		t.Fatalf("state %s, want offline", wk.State)
	}
	if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", other); a.status != 200 {
		t.Fatalf("taking over an offline id: %d %s", a.status, a.body)
	}
	if wk, _ := q.Worker(req.WorkerID); wk.Port != other.Port || wk.State != wire.StateRegistered {
		t.Fatalf("after take-over: %+v", wk)
	}
}

func TestRegisterFetchesCapabilitiesWithQueenURL(t *testing.T) {
	q, srv, _ := newTestQueen(t, Config{Token: "tok"})
	var gotAuth string
	caps := newCapsResponder(t, func(w http.ResponseWriter, r *http.Request, hit int) {
		gotAuth = r.Header.Get("Authorization")
		capsOK(w, r, hit)
	})
	if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "tok", regReq("w1", caps.port())); a.status != 200 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	waitFor(t, 5*time.Second, "capabilities stored", func() bool {
		wk, _ := q.Worker("w1")
		return wk.Capabilities != nil
	})
	wk, _ := q.Worker("w1")
	if wk.Capabilities.QueenURL != srv.URL || wk.Capabilities.ContextLength != 2048 {
		t.Fatalf("capabilities %+v; want queen_url %s", wk.Capabilities, srv.URL)
	}
	caps.mu.Lock()
	defer caps.mu.Unlock()
	// The hand-over is a POST (a GET changes nothing at a worker: issue 15 item 4).
	if want := "POST " + wire.PathAdopt + "?"; caps.query[0] != want {
		t.Fatalf("fetched %q, want %q", caps.query[0], want)
	}
	if gotAuth != "Bearer tok" {
		t.Fatalf("capabilities fetch presented %q, want the Queen's token", gotAuth)
	}
}

func TestRegisterUsesAdvertiseURL(t *testing.T) {
	q, srv, _ := newTestQueen(t, Config{AdvertiseURL: "http://queen.example:7833/"})
	caps := newCapsResponder(t, capsOK)
	do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w1", caps.port()))
	waitFor(t, 5*time.Second, "capabilities stored", func() bool {
		wk, _ := q.Worker("w1")
		return wk.Capabilities != nil
	})
	if wk, _ := q.Worker("w1"); wk.Capabilities.QueenURL != "http://queen.example:7833" {
		t.Fatalf("queen_url handed out %q, want the advertised URL", wk.Capabilities.QueenURL)
	}
}

func TestCapabilitiesFetchRetriesWithBackoff(t *testing.T) {
	q, srv, _ := newTestQueen(t, Config{})
	caps := newCapsResponder(t, func(w http.ResponseWriter, r *http.Request, hit int) {
		if hit < 3 {
			wire.WriteError(w, wire.NewError(http.StatusServiceUnavailable, wire.CodeLoading, "loading"))
			return
		}
		capsOK(w, r, hit)
	})
	do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w1", caps.port()))
	waitFor(t, 5*time.Second, "capabilities after retries", func() bool {
		wk, _ := q.Worker("w1")
		return wk.Capabilities != nil
	})
	if n := caps.hitCount(); n != 3 {
		t.Fatalf("%d fetches, want 3 (two failures, one success)", n)
	}
}

func TestCapabilitiesFetchRefusesRedirectAndHugeAnswers(t *testing.T) {
	q, srv, _ := newTestQueen(t, Config{Capabilities: FetchConfig{Attempts: 2}})
	elsewhere := newCapsResponder(t, capsOK)
	redirect := newCapsResponder(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		http.Redirect(w, r, elsewhere.srv.URL+"/capabilities", http.StatusFound)
	})
	huge := newCapsResponder(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"worker_id":"w","model":"%s"}`, strings.Repeat("x", wire.MaxCapabilitiesBody))
	})
	do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("redirect", redirect.port()))
	do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("huge", huge.port()))
	waitFor(t, 5*time.Second, "both fetches to give up", func() bool {
		return q.metricValue(t, "beekeeper_queen_capabilities_fetches_total", "failed") == 2
	})
	for _, id := range []string{"redirect", "huge"} {
		if wk, _ := q.Worker(id); wk.Capabilities != nil {
			t.Fatalf("%s: capabilities stored from a refused answer: %+v", id, wk.Capabilities)
		}
	}
	if elsewhere.hitCount() != 0 {
		t.Fatal("the redirect was followed")
	}
	if huge.hitCount() != 2 {
		t.Fatalf("huge answer fetched %d times, want 2 attempts", huge.hitCount())
	}
}

func TestRegisterNeverWaitsOnSlowCapabilities(t *testing.T) {
	q, srv, _ := newTestQueen(t, Config{})
	caps, release := newHeldCapsResponder(t)
	// The responder holds the fetch until release is closed, so an answer here proves
	// the registration did not wait for it.
	a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w1", caps.port()))
	if a.status != 200 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	waitFor(t, 5*time.Second, "the fetch to start", func() bool { return caps.hitCount() == 1 })
	if wk, _ := q.Worker("w1"); wk.Capabilities != nil {
		t.Fatal("capabilities stored before the responder answered")
	}
	close(release)
	waitFor(t, 5*time.Second, "capabilities stored", func() bool {
		wk, _ := q.Worker("w1")
		return wk.Capabilities != nil
	})
}

func TestHeartbeat(t *testing.T) {
	q, srv, _ := newTestQueen(t, Config{Capabilities: FetchConfig{Attempts: 1, Timeout: 50 * time.Millisecond}})
	do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w1", 9))
	cases := []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"unknown id", `{"worker_id":"nobody","status":"ready"}`, 404, wire.CodeUnknownWorker},
		{"bad status", `{"worker_id":"w1","status":"sleepy"}`, 400, wire.CodeInvalidField},
		{"missing id", `{"status":"ready"}`, 400, wire.CodeInvalidField},
		{"malformed", `{"worker_id":`, 400, wire.CodeInvalidJSON},
		{"negative load", `{"worker_id":"w1","status":"busy","active_requests":-1}`, 400, wire.CodeInvalidField},
		{"too large", `{"worker_id":"w1","x":"` + strings.Repeat("x", wire.MaxRegistrationBody) + `"}`, 413, wire.CodeBodyTooLarge},
		{"ok", `{"worker_id":"w1","status":"busy","active_requests":2,"extra_figure":7}`, 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, "POST", srv.URL+wire.PathHeartbeat, "", tc.body)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.body)
			}
			if tc.code != "" {
				if e := a.apiError(t); e.Detail.Code != tc.code {
					t.Fatalf("code %q, want %q", e.Detail.Code, tc.code)
				}
				return
			}
			if res := decode[wire.HeartbeatResponse](t, a); res.HeartbeatIntervalMS != testInterval.Milliseconds() {
				t.Fatalf("interval %d ms", res.HeartbeatIntervalMS)
			}
		})
	}
	wk, _ := q.Worker("w1")
	if wk.State != wire.StateOnline || wk.Status != wire.StatusBusy || wk.ActiveRequests != 2 || wk.LastHeartbeatAt == nil {
		t.Fatalf("after heartbeat: %+v", wk)
	}
}

func TestWorkersEndpoints(t *testing.T) {
	_, srv, _ := newTestQueen(t, Config{Capabilities: FetchConfig{Attempts: 1, Timeout: 50 * time.Millisecond}})
	do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w2", 9))
	do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w1", 8))

	list := decode[wire.WorkerList](t, do(t, "GET", srv.URL+wire.PathWorkers, "", nil))
	if len(list.Workers) != 2 || list.Workers[0].WorkerID != "w1" || list.Workers[1].URL != "http://127.0.0.1:9" {
		t.Fatalf("list %+v", list)
	}
	// The JSON carries every field the contract names.
	var raw struct {
		Workers []map[string]json.RawMessage `json:"workers"`
	}
	json.Unmarshal(do(t, "GET", srv.URL+wire.PathWorkers, "", nil).body, &raw)
	for _, f := range []string{"worker_id", "hostname", "port", "url", "worker_type", "model", "spawned_by", "state", "registered_at", "last_heartbeat_at"} {
		if _, ok := raw.Workers[0][f]; !ok {
			t.Errorf("worker JSON lacks %q", f)
		}
	}

	cases := []struct {
		name, method, path string
		status             int
	}{
		{"get known", "GET", "/w1", 200},
		{"get unknown", "GET", "/nobody", 404},
		{"delete unknown", "DELETE", "/nobody", 404},
		{"delete known", "DELETE", "/w1", 200},
		{"get deleted", "GET", "/w1", 404},
		{"delete twice", "DELETE", "/w1", 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, tc.method, srv.URL+wire.PathWorkers+tc.path, "", nil)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.body)
			}
			if tc.status == 404 && a.apiError(t).Detail.Code != wire.CodeUnknownWorker {
				t.Fatalf("404 without unknown_worker: %s", a.body)
			}
		})
	}
}

func TestUnknownEndpointIsJSON404(t *testing.T) {
	_, srv, _ := newTestQueen(t, Config{})
	a := do(t, "GET", srv.URL+"/v1/nothing", "", nil)
	if a.status != 404 || !strings.Contains(a.header.Get("Content-Type"), "json") {
		t.Fatalf("%d %s", a.status, a.body)
	}
}

func TestGatewayErrors(t *testing.T) {
	q, srv, _ := newTestQueen(t, Config{Capabilities: FetchConfig{Attempts: 1, Timeout: 50 * time.Millisecond}})
	do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w1", 9)) // registered, never online

	cases := []struct {
		name   string
		path   string
		body   string
		status int
		code   string
	}{
		{"malformed", wire.PathChat, `{"model":`, 400, wire.CodeInvalidJSON},
		{"missing model", wire.PathChat, `{"messages":[]}`, 400, wire.CodeInvalidField},
		{"model nobody serves", wire.PathChat, `{"model":"gpt-9"}`, 404, wire.CodeModelNotFound},
		{"none online", wire.PathChat, `{"model":"stories260K"}`, 503, wire.CodeNoWorkerOnline},
		{"none online, completions", wire.PathCompletions, `{"model":"stories260K","prompt":"x"}`, 503, wire.CodeNoWorkerOnline},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, "POST", srv.URL+tc.path, "", tc.body)
			if a.status != tc.status || a.apiError(t).Detail.Code != tc.code {
				t.Fatalf("%d %s, want %d %s", a.status, a.body, tc.status, tc.code)
			}
		})
	}
	models := decode[wire.ModelList](t, do(t, "GET", srv.URL+wire.PathModels, "", nil))
	if models.Object != "list" || len(models.Data) != 0 {
		t.Fatalf("models with no worker online: %+v", models)
	}
	q.reg.heartbeat(wire.Heartbeat{WorkerID: "w1", Status: wire.StatusReady})
	models = decode[wire.ModelList](t, do(t, "GET", srv.URL+wire.PathModels, "", nil))
	if len(models.Data) != 1 || models.Data[0].ID != "stories260K" || models.Data[0].Object != "model" {
		t.Fatalf("models with w1 online: %+v", models)
	}
	// w1 is "online" at a port nothing listens on: the gateway cannot reach it.
	a := do(t, "POST", srv.URL+wire.PathChat, "", `{"model":"stories260K"}`)
	if a.status != http.StatusBadGateway {
		t.Fatalf("unreachable worker: %d %s, want 502", a.status, a.body)
	}
	if q.reg.workers["w1"].failedAt.IsZero() {
		t.Fatal("unreachable worker was not marked")
	}
}

func TestPickLeastBusySkipsMarkedAndExcluded(t *testing.T) {
	clock := newFakeClock()
	r := newRegistry(clock.Now, testInterval, time.Minute, DefaultMaxWorkers)
	for i, id := range []string{"a", "b", "c"} {
		if _, err := r.register(regReq(id, 9000+i), ""); err != nil {
			t.Fatal(err)
		}
		r.heartbeat(wire.Heartbeat{WorkerID: id, Status: wire.StatusReady})
	}
	r.workers["a"].inflight = 2
	r.workers["b"].w.ActiveRequests = 1
	r.workers["c"].inflight = 1
	r.workers["c"].failedAt = clock.Now()

	tgt, err := r.pick("stories260K", nil)
	if err != nil || tgt.id != "b" {
		t.Fatalf("pick %v %v, want b (least busy, not marked)", tgt, err)
	}
	// b now has 1 in flight, like its heartbeat said: the larger of the two counts.
	if tgt, _ := r.pick("stories260K", []string{"b"}); tgt.id != "a" {
		t.Fatalf("excluding b: %v, want a (c is marked)", tgt)
	}
	r.heartbeat(wire.Heartbeat{WorkerID: "c", Status: wire.StatusReady})
	if tgt, _ := r.pick("stories260K", []string{"b"}); tgt.id != "c" {
		t.Fatalf("after c's heartbeat cleared the mark: %v, want c", tgt)
	}
	r.release("c", false)
	r.release("c", false)
	if r.workers["c"].inflight != 0 {
		t.Fatalf("inflight %d after release", r.workers["c"].inflight)
	}
}

func TestMetrics(t *testing.T) {
	_, srv, _ := newTestQueen(t, Config{Capabilities: FetchConfig{Attempts: 1, Timeout: 50 * time.Millisecond}})
	do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w1", 9))
	do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w2", 8))
	do(t, "POST", srv.URL+wire.PathRegisterWorker, "", `{}`)
	do(t, "POST", srv.URL+wire.PathHeartbeat, "", `{"worker_id":"w1","status":"ready"}`)
	do(t, "POST", srv.URL+wire.PathChat, "", `{"model":"nope"}`)
	a := do(t, "GET", srv.URL+wire.PathMetrics, "", nil)
	if a.status != 200 {
		t.Fatalf("%d", a.status)
	}
	for _, line := range []string{
		`beekeeper_queen_workers{state="online"} 1`,
		`beekeeper_queen_workers{state="registered"} 1`,
		`beekeeper_queen_workers{state="stale"} 0`,
		`beekeeper_queen_registrations_total{result="ok"} 2`,
		`beekeeper_queen_registrations_total{result="rejected"} 1`,
		`beekeeper_queen_heartbeats_total{result="ok"} 1`,
		`beekeeper_queen_routed_requests_total{code="404",model="unknown"} 1`,
	} {
		if !strings.Contains(string(a.body), line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
}

// readEvents reads SSE events from an open /v1/events stream.
func readEvents(t *testing.T, sc *bufio.Scanner, n int) []wire.Event {
	t.Helper()
	var out []wire.Event
	var typ string
	for len(out) < n && sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			typ = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			var ev wire.Event
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev); err != nil {
				t.Fatalf("event data %q: %v", line, err)
			}
			if ev.Type != typ {
				t.Fatalf("event: line %q disagrees with data type %q", typ, ev.Type)
			}
			out = append(out, ev)
		}
	}
	if len(out) < n {
		t.Fatalf("stream ended after %d events, want %d: %v", len(out), n, sc.Err())
	}
	return out
}

func TestEventsStartWithSnapshotThenFollowChanges(t *testing.T) {
	q, srv, clock := newTestQueen(t, Config{Capabilities: FetchConfig{Attempts: 1, Timeout: 50 * time.Millisecond}})
	do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w1", 9))
	waitFor(t, 5*time.Second, "the failed fetch to finish", func() bool {
		return q.metricValue(t, "beekeeper_queen_capabilities_fetches_total", "failed") == 1
	})

	resp, err := http.Get(srv.URL + wire.PathEvents)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	if ev := readEvents(t, sc, 1)[0]; ev.Type != wire.EventSnapshot || ev.Worker.WorkerID != "w1" {
		t.Fatalf("first event %+v, want a snapshot of w1", ev)
	}

	do(t, "POST", srv.URL+wire.PathHeartbeat, "", `{"worker_id":"w1","status":"ready"}`)
	clock.Advance(wire.StaleAfter * testInterval)
	q.reg.sweep()
	clock.Advance((wire.OfflineAfter - wire.StaleAfter) * testInterval)
	q.reg.sweep()
	do(t, "DELETE", srv.URL+wire.PathWorkers+"/w1", "", nil)

	var got []string
	for _, ev := range readEvents(t, sc, 4) {
		got = append(got, ev.Type+":"+string(ev.Worker.State))
	}
	want := []string{"online:online", "stale:stale", "offline:offline", "removed:offline"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

func TestSlowSubscriberIsDroppedNotBlocking(t *testing.T) {
	q, _, _ := newTestQueen(t, Config{Capabilities: FetchConfig{Attempts: 1, Timeout: 10 * time.Millisecond}})
	_, events, cancel := q.Subscribe()
	defer cancel()
	// Never read: far more changes than the buffer holds must not block the registry.
	for i := range eventBuffer + 10 {
		q.reg.register(regReq(fmt.Sprintf("w%d", i), 9), "")
	}
	n := 0
	for range events { // drains the buffer, then sees the channel closed
		n++
	}
	if n != eventBuffer {
		t.Fatalf("received %d events before the drop, want %d", n, eventBuffer)
	}
}
