package queen

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

const benchWorkers = 10_000

// loadResult is what one closed-loop load run measured.
type loadResult struct {
	elapsed   time.Duration
	latencies []time.Duration
}

func (r loadResult) perSecond() float64 {
	return float64(len(r.latencies)) / r.elapsed.Seconds()
}

func (r loadResult) p99() time.Duration {
	s := slices.Clone(r.latencies)
	slices.Sort(s)
	return s[len(s)*99/100]
}

// postLoad sends n POSTs from conc keep-alive clients, body i going to url.
func postLoad(tb testing.TB, url string, bodies [][]byte, n, conc int) loadResult {
	tb.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, Proxy: nil}}
	defer client.CloseIdleConnections()
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				resp, err := client.Post(url, "application/json", bytes.NewReader(bodies[i%len(bodies)]))
				if err != nil {
					failed.Store(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Store(fmt.Errorf("status %d", resp.StatusCode))
					return
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		tb.Fatalf("load: %v", err)
	}
	return loadResult{elapsed: time.Since(start), latencies: lat}
}

// registerMany puts n workers into q's registry directly (their capabilities fetch is
// not the subject here) and gives each a heartbeat so it is online.
func registerMany(tb testing.TB, q *Queen, n int) [][]byte {
	tb.Helper()
	hbs := make([][]byte, n)
	for i := range n {
		id := fmt.Sprintf("worker-llm-10.0.%d.%d-%d", i/250, i%250, 8080+i%100)
		req := regReq(id, 8080+i%100)
		req.Hostname = fmt.Sprintf("10.0.%d.%d", i/250, i%250)
		if _, err := q.reg.register(req, "http://127.0.0.1:7833"); err != nil {
			tb.Fatal(err)
		}
		q.reg.heartbeat(wire.Heartbeat{WorkerID: id, Status: wire.StatusReady})
		hbs[i] = fmt.Appendf(nil, `{"worker_id":%q,"status":"ready","active_requests":0,"queued_requests":0,"slots":1}`, id)
	}
	return hbs
}

// BenchmarkHeartbeat measures heartbeat handling over loopback HTTP with 10,000
// registered workers, against a bare net/http handler that only reads the body and
// answers 200, in the same run. b.N is the number of heartbeats sent to each.
func BenchmarkHeartbeat(b *testing.B) {
	q, err := New(Config{Dial: new(testenv.LoopbackDialer).DialContext})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	hbs := registerMany(b, q, benchWorkers)
	queenSrv := httptest.NewServer(q.Handler())
	defer queenSrv.Close()
	bareSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	}))
	defer bareSrv.Close()

	const conc = 8
	n := max(b.N, 1000)
	// Warm both paths' connections before timing.
	postLoad(b, queenSrv.URL+wire.PathHeartbeat, hbs, 200, conc)
	postLoad(b, bareSrv.URL, hbs, 200, conc)
	b.ResetTimer()
	bare := postLoad(b, bareSrv.URL, hbs, n, conc)
	queen := postLoad(b, queenSrv.URL+wire.PathHeartbeat, hbs, n, conc)
	b.StopTimer()

	b.ReportMetric(queen.perSecond(), "queen_hb/s")
	b.ReportMetric(bare.perSecond(), "bare_req/s")
	b.ReportMetric(queen.perSecond()/bare.perSecond(), "ratio")
	b.ReportMetric(float64(queen.p99().Microseconds())/1000, "queen_p99_ms")
	b.ReportMetric(float64(bare.p99().Microseconds())/1000, "bare_p99_ms")
}

// BenchmarkRegister measures registration throughput, each registration followed by
// its capabilities fetch against a local responder; it ends when every fetch is stored.
func BenchmarkRegister(b *testing.B) {
	q, err := New(Config{Dial: new(testenv.LoopbackDialer).DialContext})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	p := newCapsResponder(b, capsOK).port()
	srv := httptest.NewServer(q.Handler())
	defer srv.Close()

	n := max(b.N, 500)
	bodies := make([][]byte, n)
	for i := range n {
		bodies[i] = fmt.Appendf(nil, `{"worker_id":"w-%d","hostname":"127.0.0.1","port":%d,"worker_type":"llm","model":"m","spawned_by":"gui"}`, i, p)
	}
	b.ResetTimer()
	start := time.Now()
	reg := postLoad(b, srv.URL+wire.PathRegisterWorker, bodies, n, 8)
	deadline := time.Now().Add(time.Minute)
	for q.metricValue(b, "beekeeper_queen_capabilities_fetches_total", "ok") < float64(n) {
		if time.Now().After(deadline) {
			b.Fatal("capabilities fetches did not finish within a minute")
		}
		time.Sleep(time.Millisecond) // polling, not synchronisation
	}
	all := time.Since(start)
	b.StopTimer()
	b.ReportMetric(reg.perSecond(), "registrations/s")
	b.ReportMetric(float64(n)/all.Seconds(), "with_caps/s")
	b.ReportMetric(float64(reg.p99().Microseconds())/1000, "p99_ms")
}

// BenchmarkMemory reports the resident memory of a Queen holding 10,000 workers, each
// registered over HTTP with its capabilities stored and heartbeating.
func BenchmarkMemory(b *testing.B) {
	for range b.N {
		runtime.GC()
		before := rssMB(b)
		q, err := New(Config{Dial: new(testenv.LoopbackDialer).DialContext})
		if err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewServer(q.Handler())
		hbs := registerMany(b, q, benchWorkers)
		q.reg.mu.Lock()
		for _, rec := range q.reg.workers {
			rec.w.Capabilities = &wire.Capabilities{WorkerID: rec.w.WorkerID, WorkerType: "llm", Model: "stories260K",
				ModelPath: "/home/user/.local/share/beekeeper/models/stories260K.gguf", Backend: "cpu", Device: "CPU",
				ContextLength: 2048, Parallel: 1, Version: wire.Version, StartedAt: time.Now(), QueenURL: "http://127.0.0.1:7833"}
		}
		q.reg.mu.Unlock()
		postLoad(b, srv.URL+wire.PathHeartbeat, hbs, benchWorkers, 8)
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		after := rssMB(b)
		b.ReportMetric(after, "process_rss_MB")
		b.ReportMetric(after-before, "rss_growth_MB")
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap_inuse_MB")
		if len(q.Workers()) != benchWorkers {
			b.Fatalf("%d workers", len(q.Workers()))
		}
		srv.Close()
		q.Close()
	}
}

// rssMB reads this process's resident set size from /proc (Linux).
func rssMB(tb testing.TB) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skipf("no /proc: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if f, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(f), "kB")), 64)
			return kb / 1024
		}
	}
	tb.Skip("VmRSS not found")
	return 0
}

// BenchmarkRoutingOverhead streams completions from a real worker directly and through
// the Queen's gateway, alternating so both see the same machine load, and reports
// tokens per second of each and their ratio. Each iteration is one completion each way.
func BenchmarkRoutingOverhead(b *testing.B) {
	b.Setenv("BEEKEEPER_HOME", b.TempDir())
	q, queenURL, _ := runQueen(b, fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b)), time.Second)
	w := startWorker(b)
	if a := do(b, "POST", queenURL+wire.PathRegisterWorker, "", regReq(w.id, w.port)); a.status != 200 {
		b.Fatalf("register: %d %s", a.status, a.body)
	}
	waitState(b, q, w.id, wire.StateOnline, 10*time.Second)
	const maxTokens = 256
	streamCompletion(b, w.url(), "Once upon a time", 16) // warm both paths
	streamCompletion(b, queenURL, "Once upon a time", 16)

	var direct, gateway time.Duration
	var directTok, gatewayTok int
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		_, _, n := streamCompletion(b, w.url(), "Once upon a time", maxTokens)
		direct += time.Since(t0)
		directTok += n
		t0 = time.Now()
		_, _, n = streamCompletion(b, queenURL, "Once upon a time", maxTokens)
		gateway += time.Since(t0)
		gatewayTok += n
	}
	b.StopTimer()
	d := float64(directTok) / direct.Seconds()
	g := float64(gatewayTok) / gateway.Seconds()
	b.ReportMetric(d, "direct_tok/s")
	b.ReportMetric(g, "gateway_tok/s")
	b.ReportMetric(g/d, "ratio")
}
