package worker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

const storyPrompt = "Once upon a time"

// TestAPI drives one real worker through the whole OpenAI-compatible surface.
func TestAPI(t *testing.T) {
	w := testenv.StartWorker(t)

	t.Run("health and models", func(t *testing.T) {
		resp, err := http.Get(w.URL + wire.PathHealth)
		if err != nil {
			t.Fatal(err)
		}
		var h wire.Health
		_ = json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		if resp.StatusCode != 200 || h.Status != wire.HealthOK {
			t.Fatalf("health %d %+v", resp.StatusCode, h)
		}
		resp, err = http.Get(w.URL + wire.PathModels)
		if err != nil {
			t.Fatal(err)
		}
		var list wire.ModelList
		_ = json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		if len(list.Data) != 1 || list.Data[0].ID != "stories260K" || list.Object != "list" {
			t.Fatalf("models: %+v", list)
		}
	})

	t.Run("capabilities", func(t *testing.T) {
		resp, err := http.Get(w.URL + wire.PathCapabilities)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var c wire.Capabilities
		if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
			t.Fatal(err)
		}
		want := wire.WorkerID("llm", "127.0.0.1", w.Port)
		if c.WorkerID != want || c.Model != "stories260K" || c.ContextLength != 2048 || c.Parallel != 1 ||
			c.Backend != "llama.cpp" || c.Version != wire.Version || c.StartedAt.IsZero() || c.QueenURL != "" {
			t.Fatalf("capabilities %+v (want id %s)", c, want)
		}
	})

	t.Run("chat stream format line by line", func(t *testing.T) {
		status, body := post(t, w.URL+wire.PathChat, map[string]any{
			"model": "stories260K", "messages": []wire.ChatMessage{{Role: "user", Content: "Tell me a story."}},
			"stream": true, "stream_options": map[string]bool{"include_usage": true}, "max_tokens": 12,
			"temperature": 0, "ignore_eos": true,
		})
		if status != 200 {
			t.Fatalf("status %d: %s", status, body)
		}
		events := sseEvents(t, body)
		if len(events) < 4 || events[len(events)-1] != wire.SSEDone {
			t.Fatalf("want role, content..., finish, usage, [DONE]; got %q", events)
		}
		chunks := make([]wire.ChatCompletionChunk, len(events)-1)
		for i, ev := range events[:len(events)-1] {
			chunks[i] = decode[wire.ChatCompletionChunk](t, []byte(ev))
			if chunks[i].Object != "chat.completion.chunk" || chunks[i].ID != chunks[0].ID || chunks[i].Model != "stories260K" {
				t.Fatalf("chunk %d: %s", i, ev)
			}
		}
		if d := chunks[0].Choices[0].Delta; d.Role != "assistant" || d.Content != "" {
			t.Fatalf("first chunk must name the role: %s", events[0])
		}
		var text strings.Builder
		for _, c := range chunks[1 : len(chunks)-2] {
			if len(c.Choices) != 1 || c.Choices[0].FinishReason != nil || c.Usage != nil {
				t.Fatalf("content chunk: %+v", c)
			}
			text.WriteString(c.Choices[0].Delta.Content)
		}
		fin := chunks[len(chunks)-2]
		if len(fin.Choices) != 1 || fin.Choices[0].FinishReason == nil || *fin.Choices[0].FinishReason != wire.FinishLength {
			t.Fatalf("finish chunk: %s", events[len(events)-3])
		}
		usage := chunks[len(chunks)-1]
		if len(usage.Choices) != 0 || usage.Usage == nil || usage.Usage.CompletionTokens != 12 ||
			usage.Usage.PromptTokens == 0 || usage.Usage.TotalTokens != usage.Usage.PromptTokens+12 {
			t.Fatalf("usage chunk: %s", events[len(events)-2])
		}
		if text.Len() == 0 {
			t.Fatal("no content streamed")
		}
	})

	t.Run("non-streaming chat", func(t *testing.T) {
		status, body := post(t, w.URL+wire.PathChat, map[string]any{
			"messages":   []wire.ChatMessage{{Role: "system", Content: "You tell stories."}, {Role: "user", Content: "Tell me a story."}},
			"max_tokens": 20, "temperature": 0,
		})
		if status != 200 {
			t.Fatalf("status %d: %s", status, body)
		}
		c := decode[wire.ChatCompletion](t, body)
		if c.Object != "chat.completion" || len(c.Choices) != 1 || c.Choices[0].Message.Role != "assistant" ||
			c.Choices[0].Message.Content == "" || c.Usage == nil || c.Usage.CompletionTokens == 0 {
			t.Fatalf("chat completion: %s", body)
		}
		if strings.Contains(c.Choices[0].Message.Content, "User:") {
			t.Fatalf("the fallback template's stop string leaked: %q", c.Choices[0].Message.Content)
		}
	})

	greedy := func(t *testing.T, extra map[string]any) (string, string) {
		t.Helper()
		req := map[string]any{"prompt": storyPrompt, "max_tokens": 80, "temperature": 0}
		for k, v := range extra {
			req[k] = v
		}
		status, body := post(t, w.URL+wire.PathCompletions, req)
		if status != 200 {
			t.Fatalf("status %d: %s", status, body)
		}
		c := decode[wire.Completion](t, body)
		if c.Object != "text_completion" || len(c.Choices) != 1 || c.Choices[0].FinishReason == nil {
			t.Fatalf("completion: %s", body)
		}
		return c.Choices[0].Text, *c.Choices[0].FinishReason
	}

	t.Run("completions: greedy is deterministic, stream equals whole", func(t *testing.T) {
		a, _ := greedy(t, nil)
		b, _ := greedy(t, nil)
		if a != b || !strings.Contains(a, "Lily") {
			t.Fatalf("greedy runs differ or are not the known story:\n%q\n%q", a, b)
		}
		status, body := post(t, w.URL+wire.PathCompletions, map[string]any{"prompt": storyPrompt, "max_tokens": 80, "temperature": 0, "stream": true})
		if status != 200 {
			t.Fatalf("status %d: %s", status, body)
		}
		events := sseEvents(t, body)
		var streamed strings.Builder
		for _, ev := range events[:len(events)-1] {
			c := decode[wire.Completion](t, []byte(ev))
			if c.Object != "text_completion" {
				t.Fatalf("chunk: %s", ev)
			}
			for _, ch := range c.Choices {
				streamed.WriteString(ch.Text)
			}
		}
		if events[len(events)-1] != wire.SSEDone || streamed.String() != a {
			t.Fatalf("streamed %q, whole %q", streamed.String(), a)
		}
	})

	t.Run("same seed gives the same text", func(t *testing.T) {
		sampled := map[string]any{"temperature": 1.0, "top_k": 40, "top_p": 0.9, "seed": 42, "ignore_eos": true}
		a, _ := greedy(t, sampled)
		b, _ := greedy(t, sampled)
		sampled["seed"] = 4242
		c, _ := greedy(t, sampled)
		if a != b {
			t.Fatalf("seed 42 twice gave\n%q\n%q", a, b)
		}
		if a == c {
			t.Fatalf("seeds 42 and 4242 gave the same 80 tokens: %q", a)
		}
	})

	t.Run("stop strings cut the text", func(t *testing.T) {
		full, _ := greedy(t, nil)
		i := strings.Index(full, "Lily")
		if i <= 0 {
			t.Fatalf("no Lily in %q", full)
		}
		got, reason := greedy(t, map[string]any{"stop": []string{"zzz", "Lily"}})
		if got != full[:i] || reason != wire.FinishStop {
			t.Fatalf("with stop Lily: %q (%s), want %q", got, reason, full[:i])
		}
	})

	t.Run("max_tokens gives finish_reason length", func(t *testing.T) {
		status, body := post(t, w.URL+wire.PathCompletions, map[string]any{"prompt": storyPrompt, "max_tokens": 7, "temperature": 0})
		c := decode[wire.Completion](t, body)
		if status != 200 || *c.Choices[0].FinishReason != wire.FinishLength || c.Usage.CompletionTokens != 7 {
			t.Fatalf("status %d: %s", status, body)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		long := strings.Repeat("the cat sat on the mat. ", 600)
		cases := []struct {
			name   string
			path   string
			body   any
			status int
			code   string
			detail string
		}{
			{"malformed JSON", wire.PathChat, `{"messages": [`, 400, wire.CodeInvalidJSON, ""},
			{"wrong JSON types", wire.PathChat, `{"messages": "hi"}`, 400, wire.CodeInvalidJSON, ""},
			{"unknown model", wire.PathChat, map[string]any{"model": "gpt-9", "messages": []wire.ChatMessage{{Role: "user", Content: "hi"}}}, 404, wire.CodeModelNotFound, "stories260K"},
			{"empty messages", wire.PathChat, map[string]any{"messages": []wire.ChatMessage{}}, 400, wire.CodeInvalidField, "messages"},
			{"empty prompt", wire.PathCompletions, map[string]any{"prompt": ""}, 400, wire.CodeInvalidField, "prompt"},
			{"prompt longer than the context", wire.PathCompletions, map[string]any{"prompt": long}, 400, wire.CodeContextExceeded, "2048"},
			{"max_tokens zero", wire.PathCompletions, map[string]any{"prompt": "a", "max_tokens": 0}, 400, wire.CodeInvalidField, "max_tokens"},
			{"max_tokens beyond the context", wire.PathCompletions, map[string]any{"prompt": "a", "max_tokens": 100000}, 400, wire.CodeInvalidField, "1..2048"},
			{"temperature out of range", wire.PathChat, map[string]any{"messages": []wire.ChatMessage{{Role: "user", Content: "hi"}}, "temperature": 7}, 400, wire.CodeInvalidField, "temperature"},
			{"body too large", wire.PathCompletions, `{"prompt":"` + strings.Repeat("a", 5<<20) + `"}`, 413, wire.CodeBodyTooLarge, ""},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				status, body := post(t, w.URL+tc.path, tc.body)
				e := wantError(t, status, body, tc.status, tc.code)
				if !strings.Contains(e.Message, tc.detail) {
					t.Fatalf("message %q does not mention %q", e.Message, tc.detail)
				}
			})
		}
		_, body := post(t, w.URL+wire.PathCompletions, map[string]any{"prompt": long})
		if detail := decode[wire.ErrorBody](t, body).Error; !strings.Contains(detail.Message, "tokens but the context holds 2048") ||
			detail.ContextLength != 2048 || detail.PromptTokens < 2048 {
			t.Fatalf("the context error must give both numbers, in the message and the fields: %+v", detail)
		}
		// The worker still serves.
		if text, _ := greedy(t, nil); text == "" {
			t.Fatal("no answer after bad input")
		}
	})
}

// openStream opens a streaming completion and returns its line reader.
func openStream(t *testing.T, ctx context.Context, url string, body map[string]any) (*http.Response, *bufio.Reader) {
	t.Helper()
	data, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("stream status %d", resp.StatusCode)
	}
	return resp, bufio.NewReader(resp.Body)
}

// longGeneration runs until the context is nearly full: seconds of work for a ghost.
var longGeneration = map[string]any{"prompt": storyPrompt, "max_tokens": 2000, "temperature": 0, "ignore_eos": true, "stream": true}

func TestDisconnectCancelsGeneration(t *testing.T) {
	w := testenv.StartWorker(t)
	ctx, cancel := context.WithCancel(context.Background())
	resp, rd := openStream(t, ctx, w.URL+wire.PathCompletions, longGeneration)
	for i := 0; i < 6; i++ { // a few events: the generation runs
		if _, err := rd.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	resp.Body.Close()

	out := w.WaitOutput("client gone", 10*time.Second)
	line := out[strings.Index(out, "client gone"):]
	line = line[:strings.IndexByte(line, '\n')]
	var n int
	if _, err := fmt.Sscanf(line[strings.Index(line, "completion_tokens="):], "completion_tokens=%d", &n); err != nil || n >= 1000 {
		t.Fatalf("generation went on after the disconnect (%d tokens): %s", n, line)
	}
	// The one slot is free again: the next request does not wait behind a ghost.
	start := time.Now()
	status, body := post(t, w.URL+wire.PathCompletions, map[string]any{"prompt": storyPrompt, "max_tokens": 5})
	if status != 200 {
		t.Fatalf("next request: %d %s", status, body)
	}
	t.Logf("cancelled after %d tokens; next request served in %s", n, time.Since(start))
}

func TestBusyBeyondSlots(t *testing.T) {
	w := testenv.StartWorker(t, "--parallel", "1", "--queue", "1")
	const clients = 6
	var wg sync.WaitGroup
	statuses := make([]int, clients)
	bodies := make([]string, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := map[string]any{"prompt": storyPrompt, "max_tokens": 1500, "temperature": 0, "ignore_eos": true, "stream": true}
			status, body, err := tryPost(w.URL+wire.PathCompletions, req)
			if err != nil {
				body = []byte(err.Error())
			}
			statuses[i], bodies[i] = status, string(body)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("requests beyond the slots hung")
	}
	served, refused := 0, 0
	for i, s := range statuses {
		switch s {
		case 200:
			served++
			if !strings.HasSuffix(bodies[i], "data: [DONE]\n\n") {
				t.Fatalf("served stream did not end with [DONE]: ...%s", bodies[i][max(0, len(bodies[i])-200):])
			}
		case http.StatusTooManyRequests:
			refused++
			wantError(t, s, []byte(bodies[i]), http.StatusTooManyRequests, wire.CodeBusy)
		default:
			t.Fatalf("status %d: %s", s, bodies[i])
		}
	}
	if served < 1 || refused < 1 {
		t.Fatalf("served %d, refused %d: want both with 1 slot + 1 queue place for %d clients", served, refused, clients)
	}
	t.Logf("served %d, refused %d", served, refused)
}

func TestSIGTERMDuringStream(t *testing.T) {
	w := testenv.StartWorker(t)
	resp, rd := openStream(t, context.Background(), w.URL+wire.PathCompletions, longGeneration)
	defer resp.Body.Close()
	for i := 0; i < 6; i++ {
		if _, err := rd.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	sent := time.Now()
	w.Signal(syscall.SIGTERM)

	var last, finish string
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			break
		}
		if line = strings.TrimSpace(line); line != "" {
			last = line
			if strings.Contains(line, `"finish_reason":"`) {
				finish = line
			}
		}
	}
	if last != "data: "+wire.SSEDone || finish == "" {
		t.Fatalf("stream did not end cleanly: finish %q, last %q", finish, last)
	}
	if code := w.Wait(5 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	t.Logf("exited %s after SIGTERM", time.Since(sent))
}

// TestSIGTERMRefusesNewRequests guards "SIGTERM = stop accepting" (docs/protocol.md §1): while
// the worker says goodbye to its Queen the listener is still open, and a request arriving
// then must get a 503 JSON error (or a refused connection), never a 200 with no tokens;
// the stream in flight still ends with [DONE].
func TestSIGTERMRefusesNewRequests(t *testing.T) {
	q := newQueenPeer(t, "")
	leaving := make(chan struct{})
	// The goodbye hangs until the worker gives up on it: the window stays open.
	q.onDelete = func(r *http.Request) { close(leaving); <-r.Context().Done() }
	w := testenv.StartWorker(t, "--queen-url", q.url())
	testenv.WaitFor(t, "a heartbeat", 10*time.Second, func() bool { _, beats := q.snapshot(); return beats >= 1 })

	resp, rd := openStream(t, context.Background(), w.URL+wire.PathCompletions, longGeneration)
	defer resp.Body.Close()
	for i := 0; i < 6; i++ {
		if _, err := rd.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	w.Signal(syscall.SIGTERM)
	select {
	case <-leaving: // generations are stopped; the listener is not closed yet
	case <-time.After(10 * time.Second):
		t.Fatal("the worker never said goodbye to its Queen")
	}

	for _, tc := range []struct {
		path string
		body map[string]any
	}{
		{wire.PathCompletions, map[string]any{"prompt": storyPrompt, "max_tokens": 5}},
		{wire.PathChat, map[string]any{"messages": []map[string]string{{"role": "user", "content": "Hi"}}, "max_tokens": 5, "stream": true}},
	} {
		status, body, err := tryPost(w.URL+tc.path, tc.body)
		if err != nil {
			t.Logf("%s: %v (the listener is closed: fine)", tc.path, err)
			continue
		}
		wantError(t, status, body, http.StatusServiceUnavailable, wire.CodeBusy)
	}

	var last string
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			break
		}
		if line = strings.TrimSpace(line); line != "" {
			last = line
		}
	}
	if last != "data: "+wire.SSEDone {
		t.Fatalf("the stream in flight did not end with [DONE]: last %q", last)
	}
	if code := w.Wait(5 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}

func TestAPIToken(t *testing.T) {
	w := testenv.StartWorker(t, "--api-token", "s3cret")
	get := func(path string, header ...string) int {
		req, _ := http.NewRequest(http.MethodGet, w.URL+path, nil)
		if len(header) > 0 {
			req.Header.Set("Authorization", header[0])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := get(wire.PathHealth); s != 200 {
		t.Fatalf("/health without token: %d, want 200", s)
	}
	for _, path := range []string{wire.PathModels, wire.PathCapabilities} {
		if s := get(path); s != 401 {
			t.Fatalf("%s without token: %d", path, s)
		}
		if s := get(path, "Bearer wrong"); s != 401 {
			t.Fatalf("%s with a wrong token: %d", path, s)
		}
		if s := get(path, "Bearer s3cret"); s != 200 {
			t.Fatalf("%s with the token: %d", path, s)
		}
	}
	status, body := post(t, w.URL+wire.PathCompletions, map[string]any{"prompt": "a", "max_tokens": 2})
	wantError(t, status, body, 401, wire.CodeUnauthorized)
	if status, body := post(t, w.URL+wire.PathCompletions, map[string]any{"prompt": "a", "max_tokens": 2}, "Authorization", "Bearer s3cret"); status != 200 {
		t.Fatalf("with token: %d %s", status, body)
	}
}

// TestStartupFailures checks each start-up failure's exit code and one-line reason.
func TestStartupFailures(t *testing.T) {
	model := testenv.Model(t)
	dir := t.TempDir()
	notGGUF := filepath.Join(dir, "notes.gguf")
	if err := os.WriteFile(notGGUF, []byte("hello, I am text"), 0o644); err != nil {
		t.Fatal(err)
	}
	emptyLib := filepath.Join(dir, "lib")
	if err := os.Mkdir(emptyLib, 0o755); err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)
	free := func() string { return strconv.Itoa(testenv.FreePort(t)) }

	cases := []struct {
		name string
		args []string
		code int
		says string
	}{
		{"no model flag", []string{"--port", free()}, wire.ExitBadArgs, "--model is required"},
		{"bad port", []string{"--model", model, "--port", "70000"}, wire.ExitBadArgs, "outside 1..65535"},
		{"unknown flag", []string{"--model", model, "--port", free(), "--bogus"}, wire.ExitBadArgs, "bogus"},
		{"port in use", []string{"--model", model, "--port", takenPort}, wire.ExitPortInUse, "port already in use"},
		{"model missing", []string{"--model", filepath.Join(dir, "nope.gguf"), "--port", free()}, wire.ExitModelLoad, "no such file"},
		{"not GGUF", []string{"--model", notGGUF, "--port", free()}, wire.ExitModelLoad, "not a GGUF file"},
		{"runtime missing", []string{"--model", model, "--port", free(), "--llama-lib", emptyLib}, wire.ExitRuntimeMissing, "beekeeper runtime install"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := testenv.StartProcess(t, append([]string{"worker"}, tc.args...)...)
			if code := p.Wait(10 * time.Second); code != tc.code {
				t.Fatalf("exit code %d, want %d (%s):\n%s", code, tc.code, wire.ExitReason(tc.code), p.Output())
			}
			if out := p.Output(); !strings.Contains(out, tc.says) {
				t.Fatalf("output does not say %q:\n%s", tc.says, out)
			}
		})
	}
}

// TestParallelSlotsDoNotInterfere: with two slots, two greedy requests run at once and
// each gets exactly the text it gets alone.
func TestParallelSlotsDoNotInterfere(t *testing.T) {
	w := testenv.StartWorker(t, "--parallel", "2")
	req := map[string]any{"prompt": storyPrompt, "max_tokens": 300, "temperature": 0, "ignore_eos": true}
	_, alone := post(t, w.URL+wire.PathCompletions, req)
	want := decode[wire.Completion](t, alone).Choices[0].Text
	var wg sync.WaitGroup
	bodies := make([][]byte, 2)
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body, err := tryPost(w.URL+wire.PathCompletions, req)
			if err == nil && status == 200 {
				bodies[i] = body
			}
		}()
	}
	wg.Wait()
	for i, body := range bodies {
		if body == nil {
			t.Fatalf("request %d in parallel failed", i)
		}
		if got := decode[wire.Completion](t, body).Choices[0].Text; got != want {
			t.Fatalf("request %d in parallel got %q, alone %q", i, got, want)
		}
	}
}

// TestUnknownPathAndWrongMethodAreJSONErrors guards docs/protocol.md §1's OpenAI-shaped errors
// beyond the routes: an unknown path is a JSON 404, a known path with the wrong method a
// JSON 405 naming the right one in Allow (not the mux's plain text).
func TestUnknownPathAndWrongMethodAreJSONErrors(t *testing.T) {
	w := testenv.StartWorker(t)
	cases := []struct {
		method, path string
		status       int
		allow        string
	}{
		{http.MethodGet, "/v1/nope", http.StatusNotFound, ""},
		{http.MethodPost, "/nope", http.StatusNotFound, ""},
		{http.MethodGet, wire.PathChat, http.StatusMethodNotAllowed, "POST"},
		{http.MethodPost, wire.PathHealth, http.StatusMethodNotAllowed, "GET, HEAD"},
		{http.MethodDelete, wire.PathModels, http.StatusMethodNotAllowed, "GET, HEAD"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, w.URL+tc.path, strings.NewReader("{}"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("Content-Type %q: %s", ct, body)
			}
			wantError(t, resp.StatusCode, body, tc.status, "")
			if got := resp.Header.Get("Allow"); got != tc.allow {
				t.Fatalf("Allow %q, want %q", got, tc.allow)
			}
		})
	}
}
