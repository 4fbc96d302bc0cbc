package worker_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/beekeeper-hive/beekeeper/internal/synthmodel"
	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/llamaruntime"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// The engine benchmarks run on a synthetic llama of realistic shape (272M parameters,
// Q8_0, random weights, the test model's tokenizer), where a token costs what it costs
// in a real model of that size, and compare the worker with a plain in-process llama.cpp
// loop on the same libraries, model file, threads and context layout in the same run.
const (
	engineParallel = 8
	engineCtx      = 2048 // per sequence
	engineTokens   = 64   // generated per stream
)

// synthModel returns the 272M synthetic model, generated once into the user's cache.
func synthModel(b *testing.B) string {
	b.Helper()
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	path, err := synthmodel.Cached(filepath.Join(dir, "beekeeper", "synth"), synthmodel.M272, testenv.Model(b))
	if err != nil {
		b.Fatalf("synthetic model: %v", err)
	}
	return path
}

// startEngineWorker starts a worker on model with --parallel engineParallel and the
// default threads (the machine's physical cores, as the reference uses).
func startEngineWorker(b *testing.B, model string, extra ...string) *testenv.Process {
	b.Helper()
	port := testenv.FreePort(b)
	args := append([]string{"worker", "--model", model, "--port", strconv.Itoa(port),
		"--parallel", strconv.Itoa(engineParallel), "--ctx-size", strconv.Itoa(engineCtx)}, extra...)
	p := testenv.StartProcess(b, args...)
	p.Port, p.URL = port, fmt.Sprintf("http://127.0.0.1:%d", port)
	p.WaitHealthy(120 * time.Second)
	return p
}

// batchReference is the in-process loop: one context with engineParallel sequences, as
// the worker's, decoding n sequences in one batch per step, greedy.
type batchReference struct {
	model llama.Model
	vocab llama.Vocab
	lctx  llama.Context
	mem   llama.Memory
	batch llama.Batch
}

func newBatchReference(b *testing.B, path string) *batchReference {
	b.Helper()
	if _, err := llamaruntime.Load(""); err != nil {
		b.Fatal(err)
	}
	mp := llama.ModelDefaultParams()
	mp.SetCPUOnly()
	model, err := llama.ModelLoadFromFile(path, mp)
	if err != nil {
		b.Fatal(err)
	}
	threads := llama.Threads()
	cp := llama.ContextDefaultParams()
	cp.NCtx, cp.NBatch, cp.NUbatch = engineCtx*engineParallel, 512, 512
	cp.NSeqMax, cp.KVUnified = engineParallel, 0
	cp.NThreads, cp.NThreadsBatch = threads, threads
	cp.NoPerf = 1
	lctx, err := llama.InitFromModel(model, cp)
	if err != nil {
		b.Fatal(err)
	}
	// The persistent thread pool the worker's engine (and llama-server) uses, so the
	// ratio measures serving, not thread management.
	params := llama.ThreadpoolParamsDefault(threads)
	pool, err := llama.ThreadpoolNew(&params)
	if err != nil {
		b.Fatal(err)
	}
	llama.AttachThreadpool(lctx, uintptr(pool), uintptr(pool))
	if err := llama.Warmup(lctx, model); err != nil {
		b.Fatal(err)
	}
	mem, _ := llama.GetMemory(lctx)
	r := &batchReference{model: model, vocab: llama.ModelGetVocab(model), lctx: lctx, mem: mem,
		batch: llama.BatchInit(512, 0, 1)}
	b.Cleanup(func() {
		_ = llama.BatchFree(r.batch)
		llama.Free(lctx)
		llama.ThreadpoolFree(pool)
		llama.ModelFree(model)
	})
	return r
}

// run reads prompt into nSeq sequences and generates n tokens in each, one batch per
// step; it returns the time to the first token and the total.
func (r *batchReference) run(prompt string, nSeq, n int) (ttft, total time.Duration) {
	_ = llama.MemoryClear(r.mem, true)
	smpls := make([]llama.Sampler, nSeq)
	for i := range smpls {
		smpls[i] = llama.SamplerChainInit(llama.SamplerChainDefaultParams())
		llama.SamplerChainAdd(smpls[i], llama.SamplerInitGreedy())
	}
	defer func() {
		for _, s := range smpls {
			llama.SamplerFree(s)
		}
	}()
	buf := make([]byte, 256)
	start := time.Now()
	tokens := llama.Tokenize(r.vocab, prompt, true, false)
	idx := make([]int32, nSeq)
	_ = r.batch.Clear()
	for s := range nSeq {
		for i, t := range tokens {
			_ = r.batch.Add(t, llama.Pos(i), []llama.SeqId{llama.SeqId(s)}, i == len(tokens)-1)
		}
		idx[s] = r.batch.NTokens - 1
	}
	_, _ = llama.Decode(r.lctx, r.batch)
	next := make([]llama.Token, nSeq)
	for step := range n {
		for s := range nSeq {
			next[s] = llama.SamplerSample(smpls[s], r.lctx, idx[s])
			_ = llama.TokenToPiece(r.vocab, next[s], buf, 0, false)
		}
		if step == 0 {
			ttft = time.Since(start)
		}
		if step == n-1 {
			break
		}
		_ = r.batch.Clear()
		for s := range nSeq {
			_ = r.batch.Add(next[s], llama.Pos(len(tokens)+step), []llama.SeqId{llama.SeqId(s)}, true)
			idx[s] = int32(s)
		}
		_, _ = llama.Decode(r.lctx, r.batch)
	}
	return ttft, time.Since(start)
}

func completionBody(prompt string, n int) []byte {
	data, _ := json.Marshal(map[string]any{"prompt": prompt, "max_tokens": n,
		"temperature": 0, "ignore_eos": true, "stream": true})
	return data
}

// BenchmarkEngineSingleStream: one stream through a worker started with --parallel 8,
// against the loop decoding one sequence. Goal: speed ratio ≥ 0.95.
func BenchmarkEngineSingleStream(b *testing.B) {
	model := synthModel(b)
	w := startEngineWorker(b, model)
	ref := newBatchReference(b, model)
	body := completionBody(storyPrompt, engineTokens)
	requestOnce(b, w.URL, body, true) // warm
	ref.run(storyPrompt, 1, engineTokens)
	var ratios, wTotal, rTotal []time.Duration
	round := 0
	for b.Loop() {
		var wt, rt time.Duration
		for i := range 2 {
			if (round+i)%2 == 0 {
				_, wt = requestOnce(b, w.URL, body, true)
			} else {
				_, rt = ref.run(storyPrompt, 1, engineTokens)
			}
		}
		round++
		wTotal, rTotal = append(wTotal, wt), append(rTotal, rt)
		ratios = append(ratios, time.Duration(float64(rt)/float64(wt)*1e6))
	}
	tps := func(d time.Duration) float64 { return engineTokens / d.Seconds() }
	b.ReportMetric(tps(median(wTotal)), "worker_tok/s")
	b.ReportMetric(tps(median(rTotal)), "inproc_tok/s")
	b.ReportMetric(float64(median(ratios))/1e6, "speed_ratio")
}

// BenchmarkEngineConcurrent8: 8 concurrent streams, summed tok/s, against the loop
// decoding 8 sequences in one batch. Goal: ratio ≥ 0.85.
func BenchmarkEngineConcurrent8(b *testing.B) {
	model := synthModel(b)
	w := startEngineWorker(b, model)
	ref := newBatchReference(b, model)
	body := completionBody(storyPrompt, engineTokens)
	streams := func() time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		for range engineParallel {
			wg.Go(func() { requestOnce(b, w.URL, body, true) })
		}
		wg.Wait()
		return time.Since(start)
	}
	streams() // warm
	ref.run(storyPrompt, engineParallel, engineTokens)
	var ratios, wTotal, rTotal []time.Duration
	round := 0
	for b.Loop() {
		var wt, rt time.Duration
		for i := range 2 {
			if (round+i)%2 == 0 {
				wt = streams()
			} else {
				_, rt = ref.run(storyPrompt, engineParallel, engineTokens)
			}
		}
		round++
		wTotal, rTotal = append(wTotal, wt), append(rTotal, rt)
		ratios = append(ratios, time.Duration(float64(rt)/float64(wt)*1e6))
	}
	tps := func(d time.Duration) float64 { return engineParallel * engineTokens / d.Seconds() }
	b.ReportMetric(tps(median(wTotal)), "worker_tok/s")
	b.ReportMetric(tps(median(rTotal)), "inproc_tok/s")
	b.ReportMetric(float64(median(ratios))/1e6, "speed_ratio")
}

// BenchmarkEngineFollowUpTTFT: a chat with a ≈1,000-token history; the time to the first
// token of the next turn (history + the answer + one new message) against the first
// turn's, which reads the whole history. Goal: ratio ≤ 0.10. Also reports prompt tokens/s
// of the first turn.
func BenchmarkEngineFollowUpTTFT(b *testing.B) {
	model := synthModel(b)
	w := startEngineWorker(b, model)
	var history []wire.ChatMessage
	for i := 0; len(history) < 40; i++ {
		history = append(history,
			wire.ChatMessage{Role: "user", Content: fmt.Sprintf("Tell me part %d of the story about the little dog.", i)},
			wire.ChatMessage{Role: "assistant", Content: "Once upon a time there was a little dog named Max who loved to run."})
	}
	ask := func(msgs []wire.ChatMessage) (ttft time.Duration, answer string, usage wire.Usage) {
		data, _ := json.Marshal(map[string]any{"messages": msgs, "max_tokens": 8, "temperature": 0,
			"ignore_eos": true, "stream": true, "stream_options": map[string]bool{"include_usage": true}})
		start := time.Now()
		status, body, err := tryPostStream(w.URL+wire.PathChat, data, func() {
			if ttft == 0 {
				ttft = time.Since(start)
			}
		})
		if err != nil || status != 200 {
			b.Fatalf("chat: %d %v %s", status, err, body)
		}
		for _, ev := range sseEvents(b, body) {
			if ev == wire.SSEDone {
				continue
			}
			var c wire.ChatCompletionChunk
			_ = json.Unmarshal([]byte(ev), &c)
			for _, ch := range c.Choices {
				answer += ch.Delta.Content
			}
			if c.Usage != nil {
				usage = *c.Usage
			}
		}
		return ttft, answer, usage
	}
	var ratios, firsts, follows []time.Duration
	var promptTPS []float64
	var cachedShare float64
	round := 0
	for b.Loop() {
		// A new history each round, so the first turn finds nothing cached.
		msgs := append([]wire.ChatMessage{{Role: "system", Content: fmt.Sprintf("Round %d.", round)}}, history...)
		msgs = append(msgs, wire.ChatMessage{Role: "user", Content: "What happened next?"})
		t1, answer, u1 := ask(msgs)
		msgs = append(msgs, wire.ChatMessage{Role: "assistant", Content: answer},
			wire.ChatMessage{Role: "user", Content: "And then?"})
		t2, _, u2 := ask(msgs)
		round++
		firsts, follows = append(firsts, t1), append(follows, t2)
		ratios = append(ratios, time.Duration(float64(t2)/float64(t1)*1e6))
		promptTPS = append(promptTPS, float64(u1.PromptTokens)/t1.Seconds())
		if u2.PromptTokensDetails != nil && u2.PromptTokens > 0 {
			cachedShare = float64(u2.PromptTokensDetails.CachedTokens) / float64(u2.PromptTokens)
		}
		if round == 1 {
			b.Logf("first turn %d prompt tokens, follow-up %d (%v cached)", u1.PromptTokens, u2.PromptTokens, u2.PromptTokensDetails)
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(median(firsts)), "first_ttft_ms")
	b.ReportMetric(ms(median(follows)), "followup_ttft_ms")
	b.ReportMetric(float64(median(ratios))/1e6, "ttft_ratio")
	b.ReportMetric(medianFloat(promptTPS), "prompt_tok/s")
	b.ReportMetric(cachedShare, "cached_share")
}

func medianFloat(v []float64) float64 {
	s := append([]float64(nil), v...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[len(s)/2]
}

// tryPostStream posts a JSON body and reads the answer, calling first when the first
// text delta arrives.
func tryPostStream(url string, body []byte, first func()) (int, []byte, error) {
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var all []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if strings.Contains(string(chunk), `"content":"`) && !strings.Contains(string(chunk), `"content":""`) {
				first()
			}
			all = append(all, chunk...)
		}
		if err != nil {
			break
		}
	}
	return resp.StatusCode, all, nil
}
