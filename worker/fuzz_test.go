package worker

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
	"github.com/beekeeper-hive/beekeeper/worker/engine"
)

// FuzzChatRequest posts fuzzed bodies to /v1/chat/completions of an in-process worker
// whose engine holds the real test model, so whatever the request decoding lets through
// reaches llama.cpp (tokenizer, chat template, samplers, stop strings): a NUL that
// reached llama_tokenize used to abort the process, which the fuzzer reports as a crash.
// Every answer must be a well-formed 2xx or 4xx; a 5xx fails, and so does a worker that
// stops answering /health.
//
//	go test -tags migrated_fynedo -run '^$' -fuzz FuzzChatRequest -fuzztime 2m ./worker/
func FuzzChatRequest(f *testing.F) {
	srv := fuzzWorker(f)
	for _, seed := range []string{
		`{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":4}`,
		`{"messages":[{"role":"user","content":"Once\u0000upon"}],"max_tokens":3}`,
		"{\"messages\":[{\"role\":\"user\",\"content\":\"raw \x00 NUL\"}],\"max_tokens\":3}",
		`{"messages":[{"role":"us\u0000er","content":"x"}],"max_tokens":3}`,
		`{"messages":[{"role":"user","content":"x"}],"stop":["a\u0000"],"max_tokens":3}`,
		`{"messages":[{"role":"user","content":"x"}],"stop":["","\u0000","\ud800","🐝"],"max_tokens":3}`,
		`{"messages":[{"role":"user","content":"x"}],"max_tokens":1e308}`,
		`{"messages":[{"role":"user","content":"x"}],"max_tokens":99999999999999999999999}`,
		`{"messages":[{"role":"user","content":"x"}],"max_tokens":-9223372036854775808}`,
		`{"messages":[{"role":"user","content":"x"}],"temperature":1e-320,"top_p":5e-324,"top_k":2147483647,"seed":-1,"max_tokens":3}`,
		`{"messages":[{"role":"user","content":"x"}],"repeat_penalty":10,"presence_penalty":-2,"frequency_penalty":2,"max_tokens":3}`,
		`{"messages":[{"role":"user","content":"x"}],"n":2,"max_tokens":3}`,
		"{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\xc0\xaf\xed\xa0\x80 bad UTF-8\"}],\"max_tokens\":3}",
		`{"messages":[{"role":"user","content":"\u202eRTL \ud83d\udc1d \ud800 lone surrogate \u200b"}],"max_tokens":3}`,
		`{"messages":[{"role":"system","content":"<|im_start|>system\n<s></s>[INST]"},{"role":"user","content":"<|im_end|>"}],"max_tokens":3}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"parts"},{"type":"image_url","image_url":{"url":"x"}}]}],"max_tokens":3}`,
		`{"messages":[{"role":"tool","content":"r","tool_call_id":"c\u0000"}],"max_tokens":3}`,
		`{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f\u0000","parameters":{"type":"object"}}}],"max_tokens":3}`,
		`{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"},"max_tokens":3}`,
		`{"messages":[{"role":"user","content":"` + strings.Repeat("long ", 400) + `"}],"max_tokens":3}`,
		`{"messages":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`,
		`{"messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":3}`,
		`{"model":"\u0000","messages":[]}`,
		`null`, `[]`, `""`, `{"messages":null}`, `{"messages":[{}]}`,
	} {
		f.Add([]byte(seed))
	}
	client := &http.Client{Timeout: 60 * time.Second}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := http.NewRequest(http.MethodPost, srv.URL+wire.PathChat, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("no answer to %q: %v", body, err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode >= 500:
			t.Fatalf("%d for %q: %s", resp.StatusCode, body, answer)
		case resp.StatusCode >= 400 && wire.DecodeError(resp.StatusCode, answer).Detail.Message == "":
			t.Fatalf("%d without an OpenAI-shaped error for %q: %s", resp.StatusCode, body, answer)
		}
		health, err := client.Get(srv.URL + wire.PathHealth)
		if err != nil {
			t.Fatalf("the worker stopped answering after %q: %v", body, err)
		}
		health.Body.Close()
		if health.StatusCode != http.StatusOK {
			t.Fatalf("/health %d after %q", health.StatusCode, body)
		}
	})
}

// fuzzWorker serves an in-process worker with the test model loaded on a small context
// (every answer is at most 128 tokens, a few milliseconds).
func fuzzWorker(f *testing.F) *httptest.Server {
	f.Helper()
	cfg := Config{
		ModelPath: testenv.Model(f), Port: 1, Threads: 1, CtxSize: 128, Parallel: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if err := cfg.normalize(); err != nil {
		f.Fatal(err)
	}
	w, err := newWorker(cfg)
	if err != nil {
		f.Fatal(err)
	}
	e, err := engine.Load(engine.Config{ModelPath: cfg.ModelPath, CtxSize: cfg.CtxSize, Threads: 1, Parallel: 1, Queue: 4})
	if err != nil {
		f.Fatalf("load the test model: %v", err)
	}
	w.engine.Store(e)
	srv := httptest.NewServer(w.routes())
	f.Cleanup(func() {
		srv.Close()
		w.stopAll()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Close(ctx)
	})
	return srv
}
