package chat

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/queen"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// startWorker runs a real `beekeeper worker` on the test model and returns its target.
func startWorker(t *testing.T) Target {
	t.Helper()
	t.Setenv("BEEKEEPER_HOME", t.TempDir())
	w := testenv.StartWorker(t)
	t.Cleanup(func() { w.Stop(10 * time.Second) })
	model := testenv.Model(t)
	return Target{Kind: TargetWorker, BaseURL: w.URL, Model: wire.ModelName(model), WorkerID: wire.WorkerID("llm", "127.0.0.1", w.Port), ModelPath: model}
}

func user(s string) []wire.ChatMessage { return []wire.ChatMessage{{Role: "user", Content: s}} }

func TestStreamFromRealWorker(t *testing.T) {
	target := startWorker(t)
	c := NewClient(nil)
	var pieces []string
	res, err := c.Stream(context.Background(), target, user("Once upon a time"), Params{Temperature: 0, TopP: 1, MaxTokens: 32},
		func(s string) { pieces = append(pieces, s) })
	if err != nil {
		t.Fatal(err)
	}
	if len(pieces) < 2 || strings.Join(pieces, "") != res.Text || res.Text == "" {
		t.Fatalf("streamed %d pieces %q, result %q", len(pieces), pieces, res.Text)
	}
	m := res.Metrics
	if res.FinishReason != wire.FinishLength || m.CompletionTokens != 32 || m.PromptTokens == 0 {
		t.Fatalf("finish %q, metrics %+v; want length after 32 tokens with usage", res.FinishReason, m)
	}
	if m.TimeToFirstToken <= 0 || m.TokensPerSecond <= 0 || m.Duration < m.TimeToFirstToken {
		t.Fatalf("metrics %+v", m)
	}

	models, err := c.Probe(context.Background(), target.BaseURL, "", 2*time.Second)
	if err != nil || len(models) != 1 || models[0] != target.Model {
		t.Fatalf("Probe = %v, %v", models, err)
	}
}

func TestStopCancelsAndWorkerServesNext(t *testing.T) {
	target := startWorker(t)
	c := NewClient(nil)
	ctx, stop := context.WithCancel(context.Background())
	var n int
	// No max_tokens: the worker would write until its 2048-token context is full.
	_, err := c.Stream(ctx, target, user("Once upon a time"), Params{Temperature: 0, TopP: 1}, func(string) {
		if n++; n == 3 {
			stop()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Stream after Stop = %v, want context.Canceled", err)
	}
	// The worker has one slot: if it were still generating, this would wait or get 429.
	start := time.Now()
	ctx2, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := c.Stream(ctx2, target, user("Once upon a time"), Params{Temperature: 0, TopP: 1, MaxTokens: 4}, func(string) {})
	if err != nil {
		t.Fatalf("next request after Stop: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second || res.Metrics.CompletionTokens != 4 {
		t.Fatalf("next request took %s for %d tokens: the stopped one kept the worker busy", took, res.Metrics.CompletionTokens)
	}
}

func TestContextExceededIsTyped(t *testing.T) {
	target := startWorker(t)
	long := strings.Repeat("Once upon a time there was a little girl named Lily. ", 400) // > 2048 tokens
	_, err := NewClient(nil).Stream(context.Background(), target, user(long), DefaultParams(), func(string) {})
	var ce *ContextExceededError
	if !errors.As(err, &ce) {
		t.Fatalf("over-long prompt gave %v, want *ContextExceededError", err)
	}
	// The worker's context is the model's 2048 tokens; the prompt is well beyond it.
	if ce.ContextLength != 2048 || ce.PromptTokens <= 2048 || ce.Over() != ce.PromptTokens-2048 {
		t.Fatalf("context exceeded with prompt %d, context %d, over %d: want the worker's figures", ce.PromptTokens, ce.ContextLength, ce.Over())
	}
	kind, msg := Explain(err, target)
	want := fmt.Sprintf("%d tokens longer than the model's context of 2048 tokens", ce.Over())
	if kind != ErrContextExceeded || !strings.Contains(msg, want) || !strings.Contains(msg, "new chat") {
		t.Fatalf("Explain = %s, %q; want context_exceeded saying %q and the new-chat way out", kind, msg, want)
	}
}

func TestExplainContextExceededSaysByHowMuch(t *testing.T) {
	decode := func(e *wire.APIError) error { return classify(e) }
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"over by 52", decode(wire.ContextExceeded(2100, 2048)), "52 tokens longer than the model's context of 2048 tokens"},
		{"exactly full", decode(wire.ContextExceeded(2048, 2048)), "fills the model's whole context of 2048 tokens"},
		{"figures unknown", decode(wire.NewError(400, wire.CodeContextExceeded, "too long")), "longer than the model's context (too long)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kind, msg := Explain(tc.err, Target{Kind: TargetWorker})
			if kind != ErrContextExceeded || !strings.Contains(msg, tc.want) || !strings.Contains(msg, "new chat") {
				t.Fatalf("Explain = %s, %q; want context_exceeded with %q", kind, msg, tc.want)
			}
		})
	}
}

func TestUnreachableWorkerIsTyped(t *testing.T) {
	port := testenv.FreePort(t) // nobody listens
	target := Target{Kind: TargetWorker, BaseURL: fmt.Sprintf("http://127.0.0.1:%d", port), Model: "m", WorkerID: "worker-llm-1"}
	_, err := NewClient(nil).Stream(context.Background(), target, user("hi"), DefaultParams(), func(string) {})
	var ue *UnreachableError
	if !errors.As(err, &ue) || ue.During != "connect" {
		t.Fatalf("dead worker gave %v, want *UnreachableError at connect", err)
	}
	target.Kind = TargetQueen
	_, err = NewClient(nil).Stream(context.Background(), target, user("hi"), DefaultParams(), func(string) {})
	if !errors.As(err, &ue) || !strings.Contains(ue.Error(), "Queen") {
		t.Fatalf("dead Queen gave %v", err)
	}
}

func TestStoreRoundTrip(t *testing.T) {
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := NewConversation()
	a.SystemPrompt = "Be brief."
	a.Target = Target{Kind: TargetWorker, BaseURL: "http://127.0.0.1:1", Model: "stories260K", Token: "secret"}
	a.Messages = append(a.Messages, Message{Role: "user", Content: "Once upon a time"},
		Message{Role: "assistant", Content: "Lily", Metrics: &Metrics{CompletionTokens: 1, TokensPerSecond: 10}, AnsweredBy: "llm-127.0.0.1-8080"})
	a.AutoTitle()
	if err := s.Save(a); err != nil {
		t.Fatal(err)
	}
	b := NewConversation()
	b.ID = b.ID[:len(b.ID)-8] + "00000000"
	if err := s.Save(b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir(), "20000101-000000-deadbeef.json"), []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}

	list, bad := s.List()
	if len(list) != 2 || len(bad) != 1 {
		t.Fatalf("List = %+v, damaged %v; want 2 chats and 1 damaged", list, bad)
	}
	if list[0].ID != b.ID || list[1].Title != "Once upon a time" {
		t.Fatalf("List order/titles %+v", list)
	}
	got, err := s.Load(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Target.Token != "" {
		t.Fatal("a token was written to disk")
	}
	w := got.WireMessages()
	if len(w) != 3 || w[0].Role != "system" || w[2].Content != "Lily" || got.Messages[1].Metrics.CompletionTokens != 1 {
		t.Fatalf("reloaded chat %+v", got)
	}
	if got.Messages[1].AnsweredBy != "llm-127.0.0.1-8080" || got.Messages[0].AnsweredBy != "" {
		t.Fatalf("who answered did not survive the round trip: %+v", got.Messages)
	}
	if err := s.Delete(a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load after Delete = %v", err)
	}
	if _, err := s.Load("../../etc/passwd"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("path in id: %v", err)
	}
}

func TestThrottleCoalescesInOrder(t *testing.T) {
	var mu sync.Mutex
	var got strings.Builder
	flushes := 0
	th := NewThrottle(20*time.Millisecond, func(s string) {
		mu.Lock()
		got.WriteString(s)
		flushes++
		mu.Unlock()
	})
	var want strings.Builder
	start := time.Now()
	for i := 0; i < 2000; i++ { // ~2,000 tokens/s for ~100 ms
		piece := fmt.Sprintf("%d ", i)
		want.WriteString(piece)
		th.Add(piece)
		if i%20 == 0 {
			time.Sleep(time.Millisecond) // pace like a stream; not synchronisation
		}
	}
	th.Close()
	th.Add("late")
	elapsed := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	if got.String() != want.String() {
		t.Fatal("throttled text lost or reordered pieces")
	}
	if limit := int(elapsed/(20*time.Millisecond)) + 2; flushes > limit {
		t.Fatalf("%d flushes in %s, want at most %d", flushes, elapsed, limit)
	}
}

// TestStreamNamesTheRoutedWorker: the Queen's gateway names the worker it routed to in a
// header, or, for a request it held while the model loaded, in an SSE comment; the
// result carries it either way, and a worker's own answer names none.
func TestStreamNamesTheRoutedWorker(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		switch r.URL.Query().Get("how") {
		case "header":
			w.Header().Set(queen.HeaderWorker, "llm-a")
		case "comment":
			fmt.Fprint(w, ": loading\n\n: worker llm-b\n\n")
		}
		fmt.Fprint(w, `data: {"choices":[{"index":0,"delta":{"content":"Lily"}}]}`+"\n\n")
		fmt.Fprint(w, `data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\n")
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	defer srv.Close()
	tg := Target{Kind: TargetQueen, BaseURL: srv.URL, Model: "m"}
	for how, want := range map[string]string{"header": "llm-a", "comment": "llm-b", "none": ""} {
		c := NewClient(&http.Client{Transport: rewrite{how: how}})
		res, err := c.Stream(context.Background(), tg, user("Once"), DefaultParams(), func(string) {})
		if err != nil || res.Text != "Lily" || res.Worker != want {
			t.Errorf("%s: %q by %q, %v; want Lily by %q", how, res.Text, res.Worker, err, want)
		}
	}
}

// rewrite adds ?how= to every request, telling the test server how to name the worker.
type rewrite struct{ how string }

func (r rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.URL.RawQuery = "how=" + r.how
	return http.DefaultTransport.RoundTrip(req)
}
