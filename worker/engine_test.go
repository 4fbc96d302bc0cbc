package worker_test

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// chat sends a greedy chat request and returns the answer and its usage.
func chat(t *testing.T, url string, msgs []wire.ChatMessage, maxTokens int) (string, wire.Usage) {
	t.Helper()
	status, body := post(t, url+wire.PathChat, map[string]any{"messages": msgs, "max_tokens": maxTokens,
		"temperature": 0, "ignore_eos": true})
	if status != 200 {
		t.Fatalf("chat: %d %s", status, body)
	}
	c := decode[wire.ChatCompletion](t, body)
	if c.Usage == nil {
		t.Fatalf("no usage: %s", body)
	}
	return c.Choices[0].Message.Content, *c.Usage
}

// TestPromptCacheReusesHistory: the next turn of a chat reads only what is new (usage
// says how many prompt tokens came from the cache), and the answer is exactly the one a
// worker with an empty cache gives.
func TestPromptCacheReusesHistory(t *testing.T) {
	w := testenv.StartWorker(t, "--parallel", "2")
	msgs := []wire.ChatMessage{{Role: "system", Content: "You tell short stories."},
		{Role: "user", Content: "Tell me about a little dog who found a red ball in the park."}}
	answer, u1 := chat(t, w.URL, msgs, 24)
	if d := u1.PromptTokensDetails; d == nil || d.CachedTokens != 0 {
		t.Fatalf("first turn: cached %+v, want 0", d)
	}
	msgs = append(msgs, wire.ChatMessage{Role: "assistant", Content: answer},
		wire.ChatMessage{Role: "user", Content: "What did the dog do next?"})
	got, u2 := chat(t, w.URL, msgs, 24)
	cached := u2.PromptTokensDetails.CachedTokens
	if cached < u1.PromptTokens || cached >= u2.PromptTokens {
		t.Fatalf("second turn: %d of %d prompt tokens cached, want at least the first turn's %d", cached, u2.PromptTokens, u1.PromptTokens)
	}
	// The same conversation on a fresh worker: nothing cached, the same answer.
	fresh := testenv.StartWorker(t)
	want, u3 := chat(t, fresh.URL, msgs, 24)
	if u3.PromptTokensDetails.CachedTokens != 0 || got != want {
		t.Fatalf("cached answer %q, fresh answer %q (fresh cached %d)", got, want, u3.PromptTokensDetails.CachedTokens)
	}
	t.Logf("turn 2: %d of %d prompt tokens from the cache", cached, u2.PromptTokens)
}

// TestBatchedSequencesKeepTheirOwnSamplers: requests decoded in one batch keep their own
// settings: a greedy request gets its solo text while others sample at temperature 1
// with their own seeds, and a long prompt read in several chunks alongside them gets
// its solo text too.
func TestBatchedSequencesKeepTheirOwnSamplers(t *testing.T) {
	w := testenv.StartWorker(t, "--parallel", "4")
	greedy := map[string]any{"prompt": storyPrompt, "max_tokens": 200, "temperature": 0, "ignore_eos": true}
	long := map[string]any{"prompt": strings.Repeat("The cat sat on the mat. ", 120), "max_tokens": 40, "temperature": 0, "ignore_eos": true}
	text := func(req map[string]any) string {
		status, body := post(t, w.URL+wire.PathCompletions, req)
		if status != 200 {
			t.Fatalf("%d %s", status, body)
		}
		return decode[wire.Completion](t, body).Choices[0].Text
	}
	wantGreedy, wantLong := text(greedy), text(long)

	var wg sync.WaitGroup
	results := make([]string, 4)
	reqs := []map[string]any{greedy, long,
		{"prompt": storyPrompt, "max_tokens": 200, "temperature": 1, "seed": 1, "ignore_eos": true},
		{"prompt": storyPrompt, "max_tokens": 200, "temperature": 1, "seed": 2, "ignore_eos": true, "frequency_penalty": 0.5}}
	for i, req := range reqs {
		wg.Go(func() {
			status, body, err := tryPost(w.URL+wire.PathCompletions, req)
			if err == nil && status == 200 {
				var c wire.Completion
				if json.Unmarshal(body, &c) == nil && len(c.Choices) == 1 {
					results[i] = c.Choices[0].Text
				}
			}
		})
	}
	wg.Wait()
	if results[0] != wantGreedy {
		t.Fatalf("greedy in a batch: %q, alone %q", results[0], wantGreedy)
	}
	if results[1] != wantLong {
		t.Fatalf("long prompt in a batch: %q, alone %q", results[1], wantLong)
	}
	if results[2] == "" || results[3] == "" || results[2] == results[3] {
		t.Fatalf("sampled answers with seeds 1 and 2: %q and %q, want two different texts", results[2], results[3])
	}
}

// TestCapabilitiesReportLoadAndKVCache: /capabilities says how busy the worker is and
// how much of its KV cache is held.
func TestCapabilitiesReportLoadAndKVCache(t *testing.T) {
	w := testenv.StartWorker(t, "--parallel", "3", "--ctx-size", "512")
	post(t, w.URL+wire.PathCompletions, map[string]any{"prompt": storyPrompt, "max_tokens": 10, "temperature": 0, "ignore_eos": true})
	resp, err := http.Get(w.URL + wire.PathCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c wire.Capabilities
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	l := c.Load
	if l == nil || l.Slots != 3 || l.SlotsBusy != 0 || l.KVCacheCapacity != 3*512 || l.KVCacheBytes <= 0 ||
		l.KVCacheTokens < 10 || l.PromptTokens < 5 || c.Device != "cpu" || c.Runtime != "cpu" || c.GPULayers != 0 {
		t.Fatalf("capabilities %+v load %+v", c, l)
	}
}

// TestSamplingFieldsAreChecked: penalties outside their ranges are refused by name.
func TestSamplingFieldsAreChecked(t *testing.T) {
	w := testenv.StartWorker(t)
	for field, v := range map[string]float64{"presence_penalty": 3, "frequency_penalty": -2.5, "repeat_penalty": -1} {
		status, body := post(t, w.URL+wire.PathCompletions, map[string]any{"prompt": storyPrompt, field: v})
		if d := wantError(t, status, body, http.StatusBadRequest, wire.CodeInvalidField); !strings.Contains(d.Message, field) {
			t.Fatalf("%s: %q does not name the field", field, d.Message)
		}
	}
}

// TestVulkanOffload runs a worker with every layer offloaded to a Vulkan device: on a
// machine without a GPU, Mesa's software device (llvmpipe), which llama.cpp's Vulkan
// backend takes when GGML_VK_VISIBLE_DEVICES=0 is set. It is the real offload path (load,
// offload, generate) and must give the CPU's text at temperature 0. scripts/setup.sh
// installs both the Vulkan runtime and Mesa; under CI a missing one fails the test.
func TestVulkanOffload(t *testing.T) {
	bin := testenv.Binary(t)
	out, err := exec.Command(bin, "runtime", "where", "--backend", "vulkan").Output()
	vk := strings.TrimSpace(string(out))
	_, mesaErr := os.Stat("/usr/share/vulkan/icd.d/lvp_icd.x86_64.json")
	if err != nil || mesaErr != nil {
		msg := "the Vulkan runtime or Mesa's software device is missing: run `beekeeper runtime install --backend vulkan` and `apt-get install mesa-vulkan-drivers libvulkan1`"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cpu := testenv.StartWorker(t)
	port := testenv.FreePort(t)
	cmd := []string{"worker", "--model", testenv.Model(t), "--port", strconv.Itoa(port), "--threads", "1",
		"--llama-lib", vk, "--gpu-layers", "all"}
	t.Setenv("GGML_VK_VISIBLE_DEVICES", "0")
	gpu := testenv.StartProcess(t, cmd...)
	gpu.URL = "http://127.0.0.1:" + strconv.Itoa(port)
	gpu.WaitHealthy(3 * time.Minute) // llvmpipe compiles the shaders first
	ready := gpu.WaitOutput("msg=ready", 10*time.Second)
	if !strings.Contains(ready, "runtime=vulkan") || !strings.Contains(ready, "Vulkan0") || strings.Contains(ready, "gpu_layers=0") {
		t.Fatalf("the worker did not offload to the Vulkan device: %s", ready)
	}
	req := map[string]any{"prompt": storyPrompt, "max_tokens": 24, "temperature": 0}
	texts := make([]string, 2)
	for i, url := range []string{cpu.URL, gpu.URL} {
		status, body := post(t, url+wire.PathCompletions, req)
		if status != 200 {
			t.Fatalf("%s: %d %s", url, status, body)
		}
		texts[i] = decode[wire.Completion](t, body).Choices[0].Text
	}
	if texts[0] != texts[1] || texts[0] == "" {
		t.Fatalf("Vulkan gave %q, the CPU %q", texts[1], texts[0])
	}
	resp, err := http.Get(gpu.URL + wire.PathCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c wire.Capabilities
	_ = json.NewDecoder(resp.Body).Decode(&c)
	if c.Runtime != "vulkan" || c.GPULayers == 0 || c.DeviceMemory == nil || c.DeviceMemory.TotalBytes == 0 {
		t.Fatalf("capabilities of the offloading worker: %+v", c)
	}
}

// TestPenaltiesChangeTheAnswer: the penalties reach llama.cpp with their meaning (the
// sampler is bound with llama.cpp's own prototype): a strong repeat penalty changes a
// greedy answer, a repeat penalty of 1 (off) does not.
func TestPenaltiesChangeTheAnswer(t *testing.T) {
	w := testenv.StartWorker(t)
	text := func(extra map[string]any) string {
		req := map[string]any{"prompt": storyPrompt, "max_tokens": 60, "temperature": 0, "ignore_eos": true}
		for k, v := range extra {
			req[k] = v
		}
		status, body := post(t, w.URL+wire.PathCompletions, req)
		if status != 200 {
			t.Fatalf("%d %s", status, body)
		}
		return decode[wire.Completion](t, body).Choices[0].Text
	}
	plain := text(nil)
	if off := text(map[string]any{"repeat_penalty": 1}); off != plain {
		t.Fatalf("repeat_penalty 1 changed the answer: %q vs %q", off, plain)
	}
	if strong := text(map[string]any{"repeat_penalty": 5}); strong == plain {
		t.Fatalf("repeat_penalty 5 left the answer as it was: %q", plain)
	}
	if freq := text(map[string]any{"frequency_penalty": 2}); freq == plain {
		t.Fatalf("frequency_penalty 2 left the answer as it was: %q", plain)
	}
}

// TestIdleTTLStopsTheWorker: with --ttl the worker stops by itself (exit 0, the Queen
// told) once it has served nothing for that long, and never in the middle of a request
// that outlasts the TTL.
func TestIdleTTLStopsTheWorker(t *testing.T) {
	w := testenv.StartWorker(t, "--ttl", "400ms")
	// A stream longer than the TTL is served whole.
	status, body := post(t, w.URL+wire.PathCompletions, map[string]any{"prompt": storyPrompt, "max_tokens": 1800,
		"temperature": 0, "ignore_eos": true, "stream": true})
	if status != 200 || !strings.HasSuffix(string(body), "data: [DONE]\n\n") {
		t.Fatalf("a request longer than the TTL: %d, ends %q", status, body[max(0, len(body)-40):])
	}
	start := time.Now()
	if code := w.Wait(10 * time.Second); code != 0 {
		t.Fatalf("the idle worker exited with %d, want 0", code)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("the worker stopped %v after its last request, before its 400 ms TTL", took)
	}
	w.WaitOutput("idle for the TTL", time.Second)
}
