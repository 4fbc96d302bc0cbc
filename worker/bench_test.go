package worker_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/llamaruntime"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// benchTokens is the generation length of the speed benchmark (both sides).
const benchTokens = 256

// reference is the plain in-process llama.cpp decode loop the worker is measured against:
// same libraries, model, threads (1), context (2048) and token count; greedy, EOS ignored.
type reference struct {
	model llama.Model
	vocab llama.Vocab
	lctx  llama.Context
	mem   llama.Memory
}

func newReference(b *testing.B) *reference {
	b.Helper()
	if _, err := llamaruntime.Load(""); err != nil {
		b.Fatal(err)
	}
	mp := llama.ModelDefaultParams()
	mp.SetCPUOnly()
	model, err := llama.ModelLoadFromFile(testenv.Model(b), mp)
	if err != nil {
		b.Fatal(err)
	}
	cp := llama.ContextDefaultParams()
	cp.NCtx, cp.NBatch, cp.NUbatch, cp.NSeqMax = 2048, 512, 512, 1
	cp.NThreads, cp.NThreadsBatch = 1, 1
	cp.NoPerf = 1
	lctx, err := llama.InitFromModel(model, cp)
	if err != nil {
		b.Fatal(err)
	}
	if err := llama.Warmup(lctx, model); err != nil {
		b.Fatal(err)
	}
	mem, err := llama.GetMemory(lctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { llama.Free(lctx); llama.ModelFree(model) })
	return &reference{model: model, vocab: llama.ModelGetVocab(model), lctx: lctx, mem: mem}
}

// run generates n tokens and returns the time to the first token and to the last.
func (r *reference) run(prompt string, n int) (ttft, total time.Duration) {
	_ = llama.MemoryClear(r.mem, true)
	smpl := llama.SamplerChainInit(llama.SamplerChainDefaultParams())
	llama.SamplerChainAdd(smpl, llama.SamplerInitGreedy())
	defer llama.SamplerFree(smpl)
	buf := make([]byte, 256)
	one := []llama.Token{0}

	start := time.Now()
	tokens := llama.Tokenize(r.vocab, prompt, true, false)
	_, _ = llama.Decode(r.lctx, llama.BatchGetOne(tokens))
	for i := 0; i < n; i++ {
		tok := llama.SamplerSample(smpl, r.lctx, -1)
		_ = llama.TokenToPiece(r.vocab, tok, buf, 0, false)
		if i == 0 {
			ttft = time.Since(start)
		}
		if i < n-1 {
			one[0] = tok
			_, _ = llama.Decode(r.lctx, llama.BatchGetOne(one))
		}
	}
	return ttft, time.Since(start)
}

// requestOnce sends one completion request and returns the time to the first text event
// (streamed; for a whole answer: to the answer) and to the end of the answer.
func requestOnce(b *testing.B, url string, body []byte, stream bool) (ttft, total time.Duration) {
	start := time.Now()
	resp, err := http.Post(url+wire.PathCompletions, "application/json", bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if !stream {
		if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d, read: %v", resp.StatusCode, err)
		}
		total = time.Since(start)
		return total, total
	}
	rd := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := rd.ReadSlice('\n')
		if err != nil {
			b.Fatalf("stream ended early: %v", err)
		}
		if ttft == 0 && bytes.Contains(line, []byte(`"text":"`)) && !bytes.Contains(line, []byte(`"text":""`)) {
			ttft = time.Since(start)
		}
		if bytes.HasPrefix(line, []byte("data: [DONE]")) {
			total = time.Since(start)
			_, _ = io.Copy(io.Discard, rd) // to EOF, so the connection is reused
			return ttft, total
		}
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkStreamVsInProcess measures the worker against the in-process loop in the same
// run: each round runs a streaming request, a whole (non-streaming) request and the
// in-process loop, and reports the median speed ratios and the TTFT difference. The whole
// answer's ratio isolates the cost of delivering every token as its own event.
func BenchmarkStreamVsInProcess(b *testing.B) {
	w := testenv.StartWorker(b, "--threads", "1", "--ctx-size", "2048")
	ref := newReference(b)
	body := func(stream bool) []byte {
		data, _ := json.Marshal(map[string]any{"prompt": storyPrompt, "max_tokens": benchTokens,
			"temperature": 0, "ignore_eos": true, "stream": stream})
		return data
	}
	streamBody, wholeBody := body(true), body(false)
	// One untimed round each: connections, caches and pages warm.
	requestOnce(b, w.URL, streamBody, true)
	requestOnce(b, w.URL, wholeBody, false)
	ref.run(storyPrompt, benchTokens)

	// Rounds compared within themselves and summarised by medians: load from other
	// processes on the machine shifts all sides of a round alike, and a disturbed round
	// moves a median by one place at most. The order rotates, so no side always inherits
	// another's warm caches.
	var sTTFT, sTotal, wTotal, rTTFT, rTotal, sRatios, wRatios, extras []time.Duration
	ratio := func(ref, worker time.Duration) time.Duration { // as a Duration, to reuse median
		return time.Duration(float64(ref) / float64(worker) * 1e6)
	}
	round := 0
	b.ResetTimer()
	for b.Loop() {
		var st1, st2, wt, rt1, rt2 time.Duration
		for i := range 3 {
			switch (round + i) % 3 {
			case 0:
				st1, st2 = requestOnce(b, w.URL, streamBody, true)
			case 1:
				_, wt = requestOnce(b, w.URL, wholeBody, false)
			case 2:
				rt1, rt2 = ref.run(storyPrompt, benchTokens)
			}
		}
		round++
		sTTFT, sTotal, wTotal = append(sTTFT, st1), append(sTotal, st2), append(wTotal, wt)
		rTTFT, rTotal = append(rTTFT, rt1), append(rTotal, rt2)
		// speed ratio = worker tok/s over in-process tok/s = in-process time over worker time
		sRatios, wRatios = append(sRatios, ratio(rt2, st2)), append(wRatios, ratio(rt2, wt))
		extras = append(extras, st1-rt1)
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	tokPerSec := func(d time.Duration) float64 { return float64(benchTokens) / d.Seconds() }
	b.ReportMetric(tokPerSec(median(sTotal)), "worker_tok/s")
	b.ReportMetric(tokPerSec(median(wTotal)), "whole_tok/s")
	b.ReportMetric(tokPerSec(median(rTotal)), "inproc_tok/s")
	b.ReportMetric(float64(median(sRatios))/1e6, "speed_ratio")
	b.ReportMetric(float64(median(wRatios))/1e6, "whole_speed_ratio")
	b.ReportMetric(ms(median(sTTFT)), "worker_ttft_ms")
	b.ReportMetric(ms(median(rTTFT)), "inproc_ttft_ms")
	b.ReportMetric(ms(median(extras)), "ttft_extra_ms")
}

// BenchmarkStartToHealth measures process start to the first /health 200 (median).
func BenchmarkStartToHealth(b *testing.B) {
	bin, model := testenv.Binary(b), testenv.Model(b)
	b.Setenv("BEEKEEPER_HOME", b.TempDir())
	var took []time.Duration
	client := &http.Client{Timeout: time.Second}
	for b.Loop() {
		port := testenv.FreePort(b)
		url := fmt.Sprintf("http://127.0.0.1:%d%s", port, wire.PathHealth)
		cmd := exec.Command(bin, "worker", "--model", model, "--port", strconv.Itoa(port), "--threads", "1")
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		deadline := start.Add(20 * time.Second)
		for {
			resp, err := client.Get(url)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				b.Fatal("no /health 200 within 20 s")
			}
			time.Sleep(500 * time.Microsecond) // poll interval
		}
		took = append(took, time.Since(start))
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	b.ReportMetric(float64(median(took).Microseconds())/1000, "start_to_health_ms")
}

// BenchmarkRSS measures the worker's resident memory beyond the model file's size, after
// it has served a generation.
func BenchmarkRSS(b *testing.B) {
	w := testenv.StartWorker(b, "--threads", "1")
	body, _ := json.Marshal(map[string]any{"prompt": storyPrompt, "max_tokens": benchTokens,
		"temperature": 0, "ignore_eos": true, "stream": true})
	requestOnce(b, w.URL, body, true)
	fi, err := os.Stat(testenv.Model(b))
	if err != nil {
		b.Fatal(err)
	}
	var st procStatus
	for b.Loop() {
		st = readStatus(b, w.Cmd.Process.Pid)
	}
	mb := func(kb int64) float64 { return float64(kb) / 1024 }
	b.ReportMetric(mb(st["VmRSS"]), "rss_MB")
	b.ReportMetric(float64(fi.Size())/(1<<20), "model_MB")
	b.ReportMetric(mb(st["VmRSS"]-fi.Size()>>10), "rss_beyond_model_MB")
	// The split: private memory (Go and C heaps, KV cache) versus clean file pages (the
	// beekeeper binary, llama.cpp libraries, the mapped model) that the OS shares and
	// can drop.
	b.ReportMetric(mb(st["RssAnon"]), "rss_anon_MB")
	b.ReportMetric(mb(st["RssFile"]), "rss_file_MB")
}

// procStatus holds the kB figures of /proc/PID/status.
type procStatus map[string]int64

func readStatus(b *testing.B, pid int) procStatus {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	st := procStatus{}
	for _, line := range strings.Split(string(data), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok || !strings.HasSuffix(val, "kB") {
			continue
		}
		if kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(val, "kB")), 10, 64); err == nil {
			st[key] = kb
		}
	}
	if st["VmRSS"] == 0 {
		b.Fatal("no VmRSS in /proc status")
	}
	return st
}
