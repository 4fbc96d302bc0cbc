package queen

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// fakeClock is the injected clock of the state-machine tests: time moves only when the
// test says so.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const testInterval = time.Second

// newTestQueen serves a Queen on an httptest server with a fake clock. Liveness advances
// only when the test calls q.reg.sweep().
func newTestQueen(t testing.TB, cfg Config) (*Queen, *httptest.Server, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	if cfg.Now == nil {
		cfg.Now = clock.Now
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = testInterval
	}
	if cfg.Capabilities.Backoff == 0 {
		cfg.Capabilities.Backoff = 5 * time.Millisecond
	}
	if cfg.Dial == nil { // no test reaches beyond this machine
		cfg.Dial = new(testenv.LoopbackDialer).DialContext
	}
	q, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(q.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(q.Close) // runs first: ends event streams so srv.Close does not wait on them
	return q, srv, clock
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) apiError(t testing.TB) *wire.APIError {
	t.Helper()
	return wire.DecodeError(a.status, a.body)
}

func do(t testing.TB, method, url, token string, body any) answer {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", wire.BearerPrefix+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: data}
}

func decode[T any](t testing.TB, a answer) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(a.body, &v); err != nil {
		t.Fatalf("decoding %s: %v", a.body, err)
	}
	return v
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

func regReq(id string, port int) wire.RegisterRequest {
	return wire.RegisterRequest{
		WorkerID: id, Hostname: "127.0.0.1", Port: port,
		WorkerType: "llm", Model: "stories260K", SpawnedBy: "gui",
	}
}

// capsResponder is a local /capabilities responder for registration tests. It is not a
// worker: it only answers the one request the Queen makes after a registration.
type capsResponder struct {
	srv   *httptest.Server
	mu    sync.Mutex
	hits  int
	query []string
}

func newCapsResponder(t testing.TB, handler func(w http.ResponseWriter, r *http.Request, hit int)) *capsResponder {
	t.Helper()
	c := &capsResponder{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.hits++
		hit := c.hits
		c.query = append(c.query, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
		c.mu.Unlock()
		handler(w, r, hit)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *capsResponder) port() int {
	return c.srv.Listener.Addr().(*net.TCPAddr).Port
}

func (c *capsResponder) hitCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits
}

// capsOK answers as a worker does: POST /adopt names the Queen it now follows, GET
// /capabilities changes nothing.
func capsOK(w http.ResponseWriter, r *http.Request, _ int) {
	var adopt wire.AdoptRequest
	if r.Method == http.MethodPost && r.URL.Path == wire.PathAdopt {
		_ = json.NewDecoder(r.Body).Decode(&adopt)
	}
	wire.WriteJSON(w, http.StatusOK, wire.Capabilities{
		WorkerID: "w", WorkerType: "llm", Model: "stories260K", ContextLength: 2048,
		Parallel: 1, Version: wire.Version, QueenURL: adopt.QueenURL,
	})
}

// metricValue reads a counter of the Queen's own metrics by its one label's value.
func (q *Queen) metricValue(t testing.TB, name, label string) float64 {
	t.Helper()
	var b bytes.Buffer
	q.metrics.write(&b)
	for _, s := range parseExposition(t, b.String()) {
		if s.name == name && slices.Contains(slices.Collect(maps.Values(s.labels)), label) {
			return s.value
		}
	}
	return 0
}

// newHeldCapsResponder answers capabilities only once release is closed (or the fetch
// gives up), so a test can act while a fetch is in flight.
func newHeldCapsResponder(t testing.TB) (caps *capsResponder, release chan struct{}) {
	release = make(chan struct{})
	caps = newCapsResponder(t, func(w http.ResponseWriter, r *http.Request, hit int) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		capsOK(w, r, hit)
	})
	return caps, release
}
