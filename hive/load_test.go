package hive

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/queen"
	"github.com/beekeeper-hive/beekeeper/queenclient"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// Load on request (issue 12): real Queen, real hives, real workers.

// startLoadQueen is a real mini Queen that reaches only loopback.
func startLoadQueen(t testing.TB, loadTimeout time.Duration) (*testQueen, *queenclient.Client) {
	t.Helper()
	qn, err := queen.New(queen.Config{
		HeartbeatInterval: testHeartbeat, LoadTimeout: loadTimeout,
		Dial: (&testenv.LoopbackDialer{}).DialContext,
	})
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

// modelCopy copies the test model to dir/name.gguf: a model of that name.
func modelCopy(t testing.TB, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(testenv.Model(t))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".gguf")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// openModelHive is a hive named id that can start the given model files.
func openModelHive(t testing.TB, queenURL, id string, paths ...string) *Hive {
	t.Helper()
	return openModelHiveTTL(t, queenURL, id, 0, paths...)
}

// openModelHiveTTL is openModelHive whose order workers stop after ttl idle.
func openModelHiveTTL(t testing.TB, queenURL, id string, ttl time.Duration, paths ...string) *Hive {
	t.Helper()
	min, max := portRange(t)
	h, err := Open(Options{
		StateDir: t.TempDir(), PortMin: min, PortMax: max,
		WorkerBinary: testenv.Binary(t), QueenURL: queenURL, SyncInterval: time.Second,
		HiveID: id, OrderTTL: ttl,
		ResolveModel: func(name string) (string, bool) {
			for _, p := range paths {
				if wire.ModelName(p) == name {
					return p, true
				}
			}
			return "", false
		},
		ListModels: func() []string { return paths },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(true) })
	return h
}

// waitHiveReports waits until the Queen holds a report from each hive.
func waitHiveReports(t testing.TB, c *queenclient.Client, hives ...string) {
	t.Helper()
	testenv.WaitFor(t, "hive reports at the Queen", 10*time.Second, func() bool {
		got, err := c.Hives(context.Background())
		if err != nil {
			return false
		}
		seen := map[string]bool{}
		for _, h := range got {
			seen[h.Hive] = true
		}
		for _, h := range hives {
			if !seen[h] {
				return false
			}
		}
		return true
	})
}

// answer is one gateway answer as a test sees it.
type answer struct {
	status int
	worker string
	body   string
	at     time.Time // when the body ended
	err    error
	// retryAfter is the Retry-After header, if any.
	retryAfter string
}

func complete(queenURL, model string, stream bool) answer {
	body, _ := json.Marshal(map[string]any{"model": model, "prompt": "Once upon a time", "max_tokens": 8, "stream": stream})
	resp, err := http.Post(queenURL+wire.PathCompletions, "application/json", strings.NewReader(string(body)))
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, worker: resp.Header.Get(queen.HeaderWorker), body: string(b), at: time.Now(), err: err,
		retryAfter: resp.Header.Get("Retry-After")}
}

func hiveHas(h *Hive, workerID string) bool {
	for _, e := range h.List() {
		if e.ID == workerID && e.State.Live() {
			return true
		}
	}
	return false
}

func ordersFor(t testing.TB, c *queenclient.Client, model string) []wire.SpawnOrder {
	t.Helper()
	all, err := c.SpawnOrders(context.Background(), "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []wire.SpawnOrder
	for _, o := range all {
		if o.Model == model {
			out = append(out, o)
		}
	}
	return out
}

// Two hives with different models: a request for each model loads it on the hive that
// has it (one plain, one streamed: the streamed one gets ": loading" first).
func TestLoadOnRequestPicksTheHiveWithTheModel(t *testing.T) {
	q, c := startLoadQueen(t, 0)
	a := openModelHive(t, q.URL(), "hive-a", modelCopy(t, t.TempDir(), "alpha"))
	b := openModelHive(t, q.URL(), "hive-b", modelCopy(t, t.TempDir(), "beta"))
	waitHiveReports(t, c, "hive-a", "hive-b")

	start := time.Now()
	ans := complete(q.URL(), "alpha", false)
	if ans.err != nil || ans.status != http.StatusOK {
		t.Fatalf("alpha: %d %v %s", ans.status, ans.err, ans.body)
	}
	t.Logf("alpha: loaded and answered in %v by %s", time.Since(start).Round(time.Millisecond), ans.worker)
	if !hiveHas(a, ans.worker) || hiveHas(b, ans.worker) {
		t.Fatalf("alpha served by %s, not a worker of hive-a", ans.worker)
	}

	start = time.Now()
	ans = complete(q.URL(), "beta", true)
	if ans.err != nil || ans.status != http.StatusOK {
		t.Fatalf("beta: %d %v %s", ans.status, ans.err, ans.body)
	}
	t.Logf("beta (streamed): loaded and answered in %v", time.Since(start).Round(time.Millisecond))
	if !strings.HasPrefix(ans.body, ": loading\n\n") || !strings.Contains(ans.body, "data: [DONE]") {
		t.Fatalf("streamed answer: want ': loading' first and [DONE] last, got %q", ans.body)
	}
	bw := b.List()
	if len(bw) != 1 || !bw[0].State.Live() || len(a.List()) != 1 {
		t.Fatalf("want one worker on each hive: a=%v b=%v", a.List(), bw)
	}
	// Loaded now: the next request is routed at once, no new order.
	if ans := complete(q.URL(), "beta", false); ans.status != http.StatusOK {
		t.Fatalf("beta again: %d %s", ans.status, ans.body)
	}
	if n := len(ordersFor(t, c, "beta")); n != 1 {
		t.Fatalf("beta: %d orders, want 1", n)
	}
}

// Ten concurrent requests for an unloaded model place one order, and all are answered.
func TestLoadOnRequestTenRequestsOneOrder(t *testing.T) {
	q, c := startLoadQueen(t, 0)
	h := openModelHive(t, q.URL(), "hive-a", modelCopy(t, t.TempDir(), "alpha"))
	waitHiveReports(t, c, "hive-a")

	var wg sync.WaitGroup
	answers := make([]answer, 10)
	start := time.Now()
	for i := range answers {
		wg.Go(func() { answers[i] = complete(q.URL(), "alpha", i%2 == 0) })
	}
	wg.Wait()
	t.Logf("10 requests answered in %v", time.Since(start).Round(time.Millisecond))
	for i, ans := range answers {
		if ans.err != nil || ans.status != http.StatusOK || !strings.Contains(ans.body, "text") {
			t.Errorf("request %d: %d %v %q", i, ans.status, ans.err, ans.body)
		}
	}
	if os := ordersFor(t, c, "alpha"); len(os) != 1 {
		t.Fatalf("%d orders for alpha, want 1: %+v", len(os), os)
	}
	if n := len(h.List()); n != 1 {
		t.Fatalf("%d workers, want 1", n)
	}
}

// A bad GGUF named like a good model: the held requests get the worker's error (not a
// timeout) within a second of the crash.
func TestLoadOnRequestCrashAnswersWaitingClients(t *testing.T) {
	q, c := startLoadQueen(t, time.Minute)
	bad := filepath.Join(t.TempDir(), "alpha.gguf")
	if err := os.WriteFile(bad, []byte("GGUF this is not a model at all, just bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := openModelHive(t, q.URL(), "hive-a", bad)
	waitHiveReports(t, c, "hive-a")

	crashed := make(chan time.Time, 1)
	events, unsub := h.Subscribe()
	defer unsub()
	go func() { // ends when unsub closes events
		for ev := range events {
			// A start that fails drops its entry: that is the crash as the hive sees it.
			if ev.Entry.ID != "" && (ev.Kind == EventRemoved || ev.Entry.State == StateCrashed || ev.Entry.State == StateExited) {
				select {
				case crashed <- time.Now():
				default:
				}
			}
		}
	}()

	var wg sync.WaitGroup
	answers := make([]answer, 4)
	for i := range answers {
		wg.Go(func() { answers[i] = complete(q.URL(), "alpha", i%2 == 0) })
	}
	wg.Wait()
	var crashAt time.Time
	select {
	case crashAt = <-crashed:
	case <-time.After(5 * time.Second):
		t.Fatalf("the worker never crashed: %+v", ordersFor(t, c, "alpha"))
	}
	for i, ans := range answers {
		if ans.err != nil {
			t.Fatalf("request %d: %v", i, ans.err)
		}
		stream := i%2 == 0
		if stream && (ans.status != http.StatusOK || !strings.Contains(ans.body, `"code":"model_load_failed"`)) ||
			!stream && (ans.status != http.StatusBadGateway || !strings.Contains(ans.body, `"code":"model_load_failed"`)) {
			t.Fatalf("request %d (stream %v): want model_load_failed, got %d %q", i, stream, ans.status, ans.body)
		}
		if d := ans.at.Sub(crashAt); d > time.Second {
			t.Fatalf("request %d answered %v after the crash, want < 1s", i, d)
		}
		t.Logf("request %d answered %v after the crash: %.200s", i, ans.at.Sub(crashAt).Round(time.Millisecond), ans.body)
	}
	if os := ordersFor(t, c, "alpha"); len(os) != 1 || os[0].State != wire.OrderFailed {
		t.Fatalf("want one failed order, got %+v", os)
	}
}

// GET /v1/models at the Queen lists loadable and loaded models with their status, and
// the openai-go SDK lists them and calls one that is not loaded (loaded on request,
// streamed and not).
func TestModelsListLoadableAndLoadedWithTheSDK(t *testing.T) {
	q, c := startLoadQueen(t, 0)
	openModelHive(t, q.URL(), "hive-a", modelCopy(t, t.TempDir(), "alpha"))
	openModelHive(t, q.URL(), "hive-b", modelCopy(t, t.TempDir(), "beta"))
	waitHiveReports(t, c, "hive-a", "hive-b")
	if ans := complete(q.URL(), "beta", false); ans.status != http.StatusOK {
		t.Fatalf("beta: %d %s", ans.status, ans.body)
	}

	client := openai.NewClient(option.WithBaseURL(q.URL()+"/v1"), option.WithAPIKey("unused"),
		option.WithMaxRetries(0), option.WithRequestTimeout(60*time.Second))
	ctx := context.Background()
	page, err := client.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range page.Data {
		var extra struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal([]byte(m.RawJSON()), &extra); err != nil {
			t.Fatal(err)
		}
		got[m.ID] = extra.Status + "/" + string(m.OwnedBy)
	}
	want := map[string]string{"alpha": wire.ModelLoadable + "/hive-a", "beta": wire.ModelLoaded + "/beekeeper"}
	if len(got) != len(want) || got["alpha"] != want["alpha"] || got["beta"] != want["beta"] {
		t.Fatalf("models: got %v, want %v", got, want)
	}

	res, err := client.Completions.New(ctx, openai.CompletionNewParams{
		Model:     openai.CompletionNewParamsModel("alpha"),
		Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
		MaxTokens: openai.Int(8),
	})
	if err != nil || len(res.Choices) == 0 || res.Choices[0].Text == "" {
		t.Fatalf("alpha through the SDK: %v %+v", err, res)
	}
	stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model:     "alpha",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Tell a story.")},
		MaxTokens: openai.Int(8),
	})
	var text strings.Builder
	for stream.Next() {
		if ch := stream.Current().Choices; len(ch) > 0 {
			text.WriteString(ch[0].Delta.Content)
		}
	}
	if err := stream.Err(); err != nil || text.Len() == 0 {
		t.Fatalf("alpha streamed through the SDK: %v %q", err, text.String())
	}
	page, err = client.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range page.Data {
		if !strings.Contains(m.RawJSON(), `"status":"loaded"`) {
			t.Fatalf("after the calls every model is loaded: %s", m.RawJSON())
		}
	}
}

// A streamed request for a model that cannot load gets the error through the SDK.
func TestLoadFailureReachesTheSDKStream(t *testing.T) {
	q, c := startLoadQueen(t, 0)
	bad := filepath.Join(t.TempDir(), "alpha.gguf")
	if err := os.WriteFile(bad, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	openModelHive(t, q.URL(), "hive-a", bad)
	waitHiveReports(t, c, "hive-a")
	client := openai.NewClient(option.WithBaseURL(q.URL()+"/v1"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	stream := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model: "alpha", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	for stream.Next() {
	}
	if err := stream.Err(); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Fatalf("want the load's error from the stream, got %v", err)
	}
}

// TTL: a worker idle past its TTL is stopped and forgotten by the Queen, and the next
// request for its model loads it again (a second order) and is answered.
func TestLoadOnRequestAgainAfterTTL(t *testing.T) {
	q, c := startLoadQueen(t, 60*time.Second)
	dir := t.TempDir()
	h := openModelHiveTTL(t, q.URL(), "hive-ttl", 1500*time.Millisecond, modelCopy(t, dir, "ttl-model"))
	waitHiveReports(t, c, "hive-ttl")

	first := complete(q.URL(), "ttl-model", false)
	if first.err != nil || first.status != http.StatusOK {
		t.Fatalf("first request: %d %v %s", first.status, first.err, first.body)
	}
	testenv.WaitFor(t, "the idle worker stopped and forgotten", 20*time.Second, func() bool {
		if hiveHas(h, first.worker) {
			return false
		}
		ws, err := c.List(context.Background())
		if err != nil {
			return false
		}
		for _, w := range ws {
			if w.WorkerID == first.worker && (w.State == wire.StateOnline || w.State == wire.StateRegistered) {
				return false
			}
		}
		return true
	})

	start := time.Now()
	again := complete(q.URL(), "ttl-model", false)
	if again.err != nil || again.status != http.StatusOK {
		t.Fatalf("request after the TTL: %d %v %s (after %v)", again.status, again.err, again.body, time.Since(start))
	}
	if n := len(ordersFor(t, c, "ttl-model")); n != 2 {
		t.Errorf("%d spawn orders for the model, want 2 (one per load)", n)
	}
	t.Logf("loaded again and answered in %v by %s", time.Since(start), again.worker)
}

// Requests spaced around the idle TTL meet the worker as it stops: each is answered,
// by the worker or by a load placed again, never left waiting for the stopped one
// (which a re-registration by the hive, or a finished order, could make look coming).
func TestLoadOnRequestAcrossTheTTL(t *testing.T) {
	q, c := startLoadQueen(t, 10*time.Second)
	const ttl = time.Second
	h := openModelHiveTTL(t, q.URL(), "hive-ttl", ttl, modelCopy(t, t.TempDir(), "ttl-model"))
	waitHiveReports(t, c, "hive-ttl")
	for i := range 8 {
		start := time.Now()
		a := complete(q.URL(), "ttl-model", i%2 == 1)
		if a.err != nil || a.status != http.StatusOK || strings.Contains(a.body, `"error"`) {
			ws, _ := c.List(context.Background())
			t.Logf("queen: %+v", ws)
			t.Logf("hive: %+v", h.List())
			t.Fatalf("request %d: %d %v %s after %v", i, a.status, a.err, a.body, time.Since(start))
		}
		t.Logf("request %d answered in %v by %s", i, time.Since(start), a.worker)
		time.Sleep(ttl - 100*time.Millisecond + time.Duration(i)*60*time.Millisecond)
	}
}

// A restarted Queen hears the hives' reports (their models) before the workers still
// running have re-registered: a request for a served model then must wait for its
// worker, not order a second one.
func TestLoadAfterAQueenRestartUsesTheRunningWorker(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	start := func() (*testQueen, *queenclient.Client) {
		qn, err := queen.New(queen.Config{Addr: addr, HeartbeatInterval: testHeartbeat, Dial: (&testenv.LoopbackDialer{}).DialContext})
		if err != nil {
			t.Fatal(err)
		}
		var ln net.Listener
		testenv.WaitFor(t, "the Queen's port free again", 5*time.Second, func() bool {
			ln, err = net.Listen("tcp", addr)
			return err == nil
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = qn.Serve(ctx, ln) }()
		q := &testQueen{addr: addr, stop: func() { cancel(); <-done }}
		c, err := queenclient.New(q.URL(), "", queenclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return q, c
	}
	q, c := start()
	h := openModelHive(t, q.URL(), "hive-r", modelCopy(t, t.TempDir(), "restart-model"))
	waitHiveReports(t, c, "hive-r")
	first := complete(q.URL(), "restart-model", false)
	if first.status != http.StatusOK {
		t.Fatalf("first request: %d %s", first.status, first.body)
	}

	q.stop()
	q, c = start()
	t.Cleanup(q.stop)
	waitHiveReports(t, c, "hive-r") // the models are known again; the worker may not be
	again := complete(q.URL(), "restart-model", false)
	if again.status != http.StatusOK || again.worker != first.worker {
		t.Fatalf("after the restart: %d by %q (%s), want the running worker %s", again.status, again.worker, again.body, first.worker)
	}
	if n := len(ordersFor(t, c, "restart-model")); n != 0 {
		t.Fatalf("the restarted Queen placed %d orders for a model a running worker serves", n)
	}
	if live := 0; true {
		for _, e := range h.List() {
			if e.State.Live() {
				live++
			}
		}
		if live != 1 {
			t.Fatalf("%d live workers on the hive, want 1", live)
		}
	}
}
