package worker_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// scrapeMetrics reads a worker's /metrics and parses it with Prometheus's own text parser.
func scrapeMetrics(t testing.TB, url string, header ...string) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+wire.PathMetrics, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("/metrics Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	for name := range fams {
		if !strings.Contains(string(body), "# TYPE "+name+" ") {
			t.Errorf("/metrics: family %s has no TYPE line", name)
		}
	}
	return fams
}

// metric returns the series of family name whose labels include these pairs.
func metric(t testing.TB, fams map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	t.Helper()
	mf := fams[name]
	for _, m := range mf.GetMetric() {
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
			}
			match = match && found
		}
		if match {
			return m
		}
	}
	t.Fatalf("/metrics has no %s%v", name, labels)
	return nil
}

// value reads a counter's or gauge's value.
func value(t testing.TB, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	m := metric(t, fams, name, labels...)
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// TestMetrics drives a real worker and reads what its /metrics says of it: tokens,
// latencies, requests by endpoint and status, slots and KV cache.
func TestMetrics(t *testing.T) {
	w := testenv.StartWorker(t, "--ctx-size", "4096")
	const streamed, whole = 16, 8
	if status, body := post(t, w.URL+wire.PathCompletions, `{"prompt":"Once upon a time","max_tokens":16,"temperature":0,"ignore_eos":true,"stream":true}`); status != 200 || !strings.Contains(string(body), "[DONE]") {
		t.Fatalf("stream: %d %s", status, body)
	}
	if status, body := post(t, w.URL+wire.PathCompletions, `{"prompt":"Once upon a time","max_tokens":8,"temperature":0,"ignore_eos":true}`); status != 200 {
		t.Fatalf("completion: %d %s", status, body)
	}
	if status, _ := post(t, w.URL+wire.PathCompletions, `{"prompt":"x","temperature":7}`); status != http.StatusBadRequest {
		t.Fatalf("bad temperature: %d, want 400", status)
	}
	if resp, err := http.Get(w.URL + "/no/such/path"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown path: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	fams := scrapeMetrics(t, w.URL)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"beekeeper_worker_tokens_generated_total", nil, streamed + whole},
		{"beekeeper_worker_requests_total", []string{"endpoint", wire.PathCompletions, "code", "200"}, 2},
		{"beekeeper_worker_requests_total", []string{"endpoint", wire.PathCompletions, "code", "400"}, 1},
		{"beekeeper_worker_requests_total", []string{"endpoint", "other", "code", "404"}, 1},
		{"beekeeper_worker_slots", nil, 1},
		{"beekeeper_worker_slots_busy", nil, 0},
		{"beekeeper_worker_requests_queued", nil, 0},
		{"beekeeper_worker_kv_cache_capacity_tokens", nil, 4096},
	} {
		if got := value(t, fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := value(t, fams, "beekeeper_worker_requests_total", "endpoint", wire.PathHealth, "code", "200"); got < 1 {
		t.Errorf("/health answers counted: %v, want ≥ 1 (the test waited on it)", got)
	}
	prompt, cached := value(t, fams, "beekeeper_worker_prompt_tokens_total"), value(t, fams, "beekeeper_worker_prompt_tokens_cached_total")
	if prompt < 2*5 || cached > prompt-2 { // two prompts of 5 tokens; each decodes at least its last one
		t.Errorf("prompt tokens %v, cached %v", prompt, cached)
	}
	kv := value(t, fams, "beekeeper_worker_kv_cache_tokens")
	if kv <= 0 || kv > 4096 || value(t, fams, "beekeeper_worker_kv_cache_usage_ratio") != kv/4096 {
		t.Errorf("KV cache: %v tokens, ratio %v", kv, value(t, fams, "beekeeper_worker_kv_cache_usage_ratio"))
	}

	// One first token per generation; every later token (each its own piece here: no
	// stop strings) one per-token latency. The test model takes well under a second.
	ttft := metric(t, fams, "beekeeper_worker_time_to_first_token_seconds").GetHistogram()
	perToken := metric(t, fams, "beekeeper_worker_time_per_token_seconds").GetHistogram()
	if ttft.GetSampleCount() != 2 || !(ttft.GetSampleSum() > 0 && ttft.GetSampleSum() < 10) {
		t.Errorf("time to first token: %d observations, sum %v s; want 2, > 0", ttft.GetSampleCount(), ttft.GetSampleSum())
	}
	if n := perToken.GetSampleCount(); n < 2 || n > streamed+whole-2 || !(perToken.GetSampleSum() > 0) {
		t.Errorf("per-token latency: %d observations, sum %v s; want 2..%d", n, perToken.GetSampleSum(), streamed+whole-2)
	}
	if _, err := os.Stat("/proc/self/stat"); err == nil {
		if v := value(t, fams, "process_resident_memory_bytes"); v <= 0 {
			t.Errorf("process_resident_memory_bytes = %v", v)
		}
	}
}

// TestMetricsShowsBusySlotsAndQueue scrapes while one stream holds the only slot and
// two more wait for it.
func TestMetricsShowsBusySlotsAndQueue(t *testing.T) {
	w := testenv.StartWorker(t, "--parallel", "1", "--ctx-size", "4096")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := `{"prompt":"Once upon a time","max_tokens":4000,"temperature":0,"ignore_eos":true,"stream":true}`
	started := make(chan struct{}, 3)
	for range 3 {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, w.URL+wire.PathCompletions, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return // cancelled at the end
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "data: ") {
					started <- struct{}{}
					break
				}
			}
			_, _ = io.Copy(io.Discard, resp.Body)
		}()
	}
	<-started
	testenv.WaitFor(t, "one slot busy and a request queued", 10*time.Second, func() bool {
		fams := scrapeMetrics(t, w.URL)
		return value(t, fams, "beekeeper_worker_slots_busy") == 1 && value(t, fams, "beekeeper_worker_requests_queued") >= 1
	})
	cancel() // the clients leave: the worker drops their requests
	testenv.WaitFor(t, "the slot free and the queue empty", 10*time.Second, func() bool {
		fams := scrapeMetrics(t, w.URL)
		return value(t, fams, "beekeeper_worker_slots_busy") == 0 && value(t, fams, "beekeeper_worker_requests_queued") == 0
	})
}

// TestMetricsNeedsTheToken: /metrics is guarded like every endpoint but /health (the
// token, Host and Origin checks); a refused scrape is counted too.
func TestMetricsNeedsTheToken(t *testing.T) {
	w := testenv.StartWorker(t, "--api-token", "s3cret")
	resp, err := http.Get(w.URL + wire.PathMetrics)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/metrics without the token: %d, want 401", resp.StatusCode)
	}
	status, body := browserRequest(t, "GET", w.URL+wire.PathMetrics, "rebind.attacker.example", "", "", "")
	if status != http.StatusForbidden || !strings.Contains(body, "--allowed-hosts") {
		t.Fatalf("/metrics with a rebound Host: %d %s, want 403", status, body)
	}
	fams := scrapeMetrics(t, w.URL, "Authorization", "Bearer s3cret")
	if got := value(t, fams, "beekeeper_worker_requests_total", "endpoint", wire.PathMetrics, "code", "401"); got != 1 {
		t.Errorf("refused scrapes counted: %v, want 1", got)
	}
}
