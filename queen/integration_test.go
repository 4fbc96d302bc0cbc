package queen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// workerProc is one real `beekeeper worker` process on the test model.
type workerProc struct {
	*testenv.Process
	id   string
	port int
}

// startWorker starts a real worker and waits for its /health to answer 200.
func startWorker(t testing.TB, extra ...string) *workerProc {
	t.Helper()
	p := testenv.StartWorker(t, append([]string{"--spawned-by", "gui"}, extra...)...)
	return &workerProc{Process: p, id: wire.WorkerID(wire.DefaultWorkerType, wire.DefaultHost, p.Port), port: p.Port}
}

func (p *workerProc) url() string { return p.URL }

// kill ends the worker with SIGKILL: a crash, so it cannot say goodbye to the Queen.
func (p *workerProc) kill() {
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.Exited()
}

// runQueen serves a real-clock Queen on addr until the returned stop is called.
func runQueen(t testing.TB, addr string, interval time.Duration) (*Queen, string, func()) {
	t.Helper()
	q, err := New(Config{Addr: addr, HeartbeatInterval: interval, Retention: time.Hour, Dial: new(testenv.LoopbackDialer).DialContext,
		Capabilities: FetchConfig{Backoff: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	// A restarted Queen rebinds the port its predecessor just released.
	waitFor(t, 5*time.Second, "listening on "+addr, func() bool {
		ln, err = net.Listen("tcp", addr)
		return err == nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- q.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-served; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return q, "http://" + ln.Addr().String(), stop
}

func waitState(t testing.TB, q *Queen, id string, want wire.WorkerState, timeout time.Duration) wire.Worker {
	t.Helper()
	var wk wire.Worker
	waitFor(t, timeout, fmt.Sprintf("%s to be %s", id, want), func() bool {
		var ok bool
		wk, ok = q.Worker(id)
		return ok && wk.State == want
	})
	return wk
}

// streamCompletion sends a streamed plain completion and returns the text, the serving
// worker and the number of content chunks.
func streamCompletion(t testing.TB, base, prompt string, maxTokens int) (text, worker string, chunks int) {
	t.Helper()
	body := fmt.Sprintf(`{"model":"stories260K","prompt":%q,"max_tokens":%d,"temperature":0,"stream":true}`, prompt, maxTokens)
	resp, err := http.Post(base+wire.PathCompletions, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		t.Fatalf("completion: %d %s", resp.StatusCode, b.String())
	}
	sc := bufio.NewScanner(resp.Body)
	done := false
	var sb strings.Builder
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == wire.SSEDone {
			done = true
			break
		}
		var c wire.Completion
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("chunk %q: %v", data, err)
		}
		for _, ch := range c.Choices {
			if ch.Text != "" {
				sb.WriteString(ch.Text)
				chunks++
			}
		}
	}
	if !done {
		t.Fatalf("stream ended without [DONE] (%v)", sc.Err())
	}
	return sb.String(), resp.Header.Get(HeaderWorker), chunks
}

// TestIntegrationLifecycle runs the whole contract against a real worker process:
// register -> capabilities -> online -> routed chat -> Queen restarted -> 404 ->
// self-registration -> online -> worker killed -> stale -> offline.
func TestIntegrationLifecycle(t *testing.T) {
	t.Setenv("BEEKEEPER_HOME", t.TempDir())
	const interval = 200 * time.Millisecond
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	q1, queenURL, stopQ1 := runQueen(t, addr, interval)
	w := startWorker(t)

	// The spawner registers the worker; the Queen fetches its capabilities, handing it
	// queen_url, so the worker adopts the Queen and heartbeats.
	a := do(t, "POST", queenURL+wire.PathRegisterWorker, "", regReq(w.id, w.port))
	if a.status != 200 {
		t.Fatalf("register: %d %s", a.status, a.body)
	}
	wk := waitState(t, q1, w.id, wire.StateOnline, 10*time.Second)
	waitFor(t, 5*time.Second, "capabilities", func() bool {
		wk, _ = q1.Worker(w.id)
		return wk.Capabilities != nil
	})
	if wk.Capabilities.QueenURL != queenURL || wk.Capabilities.Model != "stories260K" || wk.Capabilities.ContextLength <= 0 {
		t.Fatalf("capabilities %+v", wk.Capabilities)
	}

	models := decode[wire.ModelList](t, do(t, "GET", queenURL+wire.PathModels, "", nil))
	if len(models.Data) != 1 || models.Data[0].ID != "stories260K" {
		t.Fatalf("models %+v", models)
	}
	text, served, chunks := streamCompletion(t, queenURL, "Once upon a time", 24)
	if served != w.id || chunks < 2 || !strings.Contains(strings.ToLower(text), "lily") {
		t.Fatalf("routed completion by %q in %d chunks: %q", served, chunks, text)
	}
	direct, _, _ := streamCompletion(t, w.url(), "Once upon a time", 24)
	if direct != text {
		t.Fatalf("gateway changed the answer:\nrouted %q\ndirect %q", text, direct)
	}

	// Queen restart: a new Queen on the same port knows nothing; the worker's next
	// heartbeat gets 404 unknown_worker and it registers itself again.
	stopQ1()
	q2, _, _ := runQueen(t, addr, interval)
	wk = waitState(t, q2, w.id, wire.StateOnline, 10*time.Second)
	if wk.Port != w.port || wk.Model != "stories260K" {
		t.Fatalf("self-registered record %+v", wk)
	}
	if n := q2.metricValue(t, "beekeeper_queen_heartbeats_total", "unknown"); n < 1 {
		t.Fatalf("the new Queen answered %v heartbeats with unknown_worker, want at least 1", n)
	}
	if _, served, _ := streamCompletion(t, queenURL, "Once upon a time", 8); served != w.id {
		t.Fatalf("after the restart, served by %q", served)
	}

	// A crash: silence turns the worker stale after 3 intervals, offline after 6.
	w.kill()
	killed := time.Now()
	waitState(t, q2, w.id, wire.StateStale, 10*time.Second)
	if d := time.Since(killed); d < 2*interval {
		t.Fatalf("stale after only %v", d)
	}
	waitState(t, q2, w.id, wire.StateOffline, 10*time.Second)
	a = do(t, "POST", queenURL+wire.PathCompletions, "", `{"model":"stories260K","prompt":"x"}`)
	if a.status != http.StatusServiceUnavailable {
		t.Fatalf("with the only worker offline: %d %s, want 503", a.status, a.body)
	}
}

// TestIntegrationFailover kills one of two workers: requests keep succeeding (the
// unreachable one is marked and the request retried on the other) without waiting for
// the kill to show in heartbeats.
func TestIntegrationFailover(t *testing.T) {
	t.Setenv("BEEKEEPER_HOME", t.TempDir())
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	// A long interval: the dead worker stays "online" for the whole test.
	q, queenURL, _ := runQueen(t, addr, time.Minute)
	w1, w2 := startWorker(t), startWorker(t)
	for _, w := range []*workerProc{w1, w2} {
		if a := do(t, "POST", queenURL+wire.PathRegisterWorker, "", regReq(w.id, w.port)); a.status != 200 {
			t.Fatalf("register: %d %s", a.status, a.body)
		}
		waitState(t, q, w.id, wire.StateOnline, 10*time.Second)
	}
	w1.kill()
	// Ties between idle workers go either way, so keep asking until w1 has been tried.
	marked := false
	for i := 0; !marked && i < 50; i++ {
		if _, served, _ := streamCompletion(t, queenURL, "Once upon a time", 4); served != w2.id {
			t.Fatalf("request %d served by %q, want %s", i, served, w2.id)
		}
		q.reg.mu.Lock()
		marked = !q.reg.workers[w1.id].failedAt.IsZero()
		q.reg.mu.Unlock()
	}
	if wk, _ := q.Worker(w1.id); wk.State != wire.StateOnline {
		t.Fatalf("w1 state %s: the test needs it still online by heartbeat", wk.State)
	}
	if !marked {
		t.Fatal("the unreachable worker was not marked")
	}
}

// TestIntegrationStoppingWorkerHandsOff stops one of two workers while the Queen still
// lists it online (its goodbye to the Queen is held up): the stopping worker answers 503
// "shutting down" to what reaches it, and the gateway must send those requests to the
// other worker rather than pass the 503 on (an idle TTL ending as a request arrives).
func TestIntegrationStoppingWorkerHandsOff(t *testing.T) {
	t.Setenv("BEEKEEPER_HOME", t.TempDir())
	q, queenURL, _ := runQueen(t, fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), time.Minute)
	target, err := url.Parse(queenURL)
	if err != nil {
		t.Fatal(err)
	}
	// w1 reaches the Queen through a proxy that holds its deregistration: the worker
	// gives up its goodbye after a second, and refuses requests with 503 meanwhile.
	fwd := httputil.NewSingleHostReverseProxy(target)
	slowLeave := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			time.Sleep(2 * time.Second)
		}
		fwd.ServeHTTP(w, r)
	}))
	t.Cleanup(slowLeave.Close)
	w1 := startWorker(t, "--queen-url", slowLeave.URL)
	w2 := startWorker(t)
	if a := do(t, "POST", queenURL+wire.PathRegisterWorker, "", regReq(w2.id, w2.port)); a.status != 200 {
		t.Fatalf("register: %d %s", a.status, a.body)
	}
	waitState(t, q, w1.id, wire.StateOnline, 10*time.Second)
	waitState(t, q, w2.id, wire.StateOnline, 10*time.Second)

	if err := w1.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	body := `{"model":"stories260K","prompt":"Once","max_tokens":2,"temperature":0}`
	waitFor(t, 5*time.Second, "w1 to refuse as it stops", func() bool {
		resp, err := http.Post(w1.url()+wire.PathCompletions, "application/json", strings.NewReader(body))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	// Ties between idle workers go to the one the registry lists first, most often w1
	// (registered first): eight requests all missing it is rarer still.
	for i := range 8 {
		resp, err := http.Post(queenURL+wire.PathCompletions, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get(HeaderWorker) != w2.id {
			t.Fatalf("request %d: %d from %q: %s", i, resp.StatusCode, resp.Header.Get(HeaderWorker), b)
		}
	}
	if wk, _ := q.Worker(w1.id); wk.State != wire.StateOnline {
		t.Fatalf("w1 state %s: the test needs it still listed online", wk.State)
	}
}

// TestIntegrationClientDisconnectCancelsUpstream drops a streamed completion routed
// through the Queen after a few events: the worker must see its client gone and stop
// generating long before the 2000 tokens asked for.
func TestIntegrationClientDisconnectCancelsUpstream(t *testing.T) {
	t.Setenv("BEEKEEPER_HOME", t.TempDir())
	q, queenURL, _ := runQueen(t, fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), time.Minute)
	w := startWorker(t)
	if a := do(t, "POST", queenURL+wire.PathRegisterWorker, "", regReq(w.id, w.port)); a.status != 200 {
		t.Fatalf("register: %d %s", a.status, a.body)
	}
	waitState(t, q, w.id, wire.StateOnline, 10*time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := `{"model":"stories260K","prompt":"Once upon a time","max_tokens":2000,"temperature":0,"ignore_eos":true,"stream":true}`
	req, _ := http.NewRequestWithContext(ctx, "POST", queenURL+wire.PathCompletions, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(resp.Body)
	for range 6 {
		if _, err := rd.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	resp.Body.Close()

	var line string
	waitFor(t, 10*time.Second, "the worker to log its client gone", func() bool {
		out := w.Output()
		i := strings.Index(out, "client gone")
		if i < 0 {
			return false
		}
		line, _, _ = strings.Cut(out[i:], "\n")
		return true
	})
	var n int
	i := strings.Index(line, "completion_tokens=")
	if i < 0 {
		t.Fatalf("no token count in %q", line)
	}
	if _, err := fmt.Sscanf(line[i:], "completion_tokens=%d", &n); err != nil || n >= 1000 {
		t.Fatalf("generation went on after the client left (%d tokens): %s", n, line)
	}
	waitFor(t, 5*time.Second, "the routed request to be released", func() bool {
		q.reg.mu.Lock()
		defer q.reg.mu.Unlock()
		return q.reg.workers[w.id].inflight == 0
	})
}

// TestQueenCommandShutsDownOnSIGTERM runs the real `beekeeper queen` command: it serves,
// requires its token, and exits 0 promptly on SIGTERM while an event stream is open.
func TestQueenCommandShutsDownOnSIGTERM(t *testing.T) {
	t.Setenv("BEEKEEPER_HOME", t.TempDir())
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	t.Setenv("BEEKEEPER_QUEEN_TOKEN", "s3cret") // the child inherits it
	queen := testenv.StartProcess(t, "queen", "--addr", addr, "--heartbeat-interval", "1s")
	base := "http://" + addr
	waitFor(t, 10*time.Second, "the queen's /health", func() bool {
		resp, err := http.Get(base + wire.PathHealth)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if a := do(t, "GET", base+wire.PathWorkers, "", nil); a.status != http.StatusUnauthorized {
		t.Fatalf("without the token: %d", a.status)
	}
	req, _ := http.NewRequest("GET", base+wire.PathEvents, nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("event stream: %v %v", resp, err)
	}
	defer resp.Body.Close()

	start := time.Now()
	queen.Signal(syscall.SIGTERM)
	if code := queen.Wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("shutdown took %v with an open event stream", d)
	}
}
