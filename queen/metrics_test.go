package queen

import (
	"bytes"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// expoSample is one sample line of a scrape.
type expoSample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseExposition parses a scrape with Prometheus's own text parser and returns its
// samples. It fails t on the first violation.
func parseExposition(t testing.TB, text string) []expoSample {
	t.Helper()
	samples, err := checkExposition(text)
	if err != nil {
		t.Fatalf("%v\n--- scrape ---\n%s", err, text)
	}
	return samples
}

// checkExposition is parseExposition's checker, safe off the test goroutine. Beyond
// what expfmt's parser rejects (syntax, escapes, a family split or typed twice), it
// holds every family to a TYPE line, every series to appearing once, and every
// histogram to ascending bounds, non-decreasing cumulative counts and a +Inf bucket
// equal to its count (a torn read shows as a mismatch).
func checkExposition(text string) ([]expoSample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("expfmt: %w", err)
	}
	if err := checkGrouped(text, fams); err != nil {
		return nil, err
	}
	var out []expoSample
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range fams {
			if !yield(k) {
				return
			}
		}
	}) {
		mf := fams[name]
		if !strings.Contains(text, "# TYPE "+name+" ") {
			return nil, fmt.Errorf("family %s has no TYPE line", name)
		}
		seen := map[string]bool{}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			var sig strings.Builder
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
				fmt.Fprintf(&sig, "%s=%q,", lp.GetName(), lp.GetValue())
			}
			if seen[sig.String()] {
				return nil, fmt.Errorf("%s{%s} appears twice", name, sig.String())
			}
			seen[sig.String()] = true
			with := func(k, v string) map[string]string {
				l := make(map[string]string, len(labels)+1)
				for a, b := range labels {
					l[a] = b
				}
				l[k] = v
				return l
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out = append(out, expoSample{name, labels, m.GetCounter().GetValue()})
			case dto.MetricType_GAUGE:
				out = append(out, expoSample{name, labels, m.GetGauge().GetValue()})
			case dto.MetricType_UNTYPED:
				out = append(out, expoSample{name, labels, m.GetUntyped().GetValue()})
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					out = append(out, expoSample{name, with("quantile", formatLE(q.GetQuantile())), q.GetValue()})
				}
				out = append(out, expoSample{name + "_sum", labels, s.GetSampleSum()},
					expoSample{name + "_count", labels, float64(s.GetSampleCount())})
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				prevLE, prevCount := math.Inf(-1), uint64(0)
				for _, b := range h.GetBucket() {
					if b.GetUpperBound() <= prevLE || b.GetCumulativeCount() < prevCount {
						return nil, fmt.Errorf("%s{%s}: bucket le=%v count %d after le=%v count %d: bounds must ascend and counts not decrease",
							name, sig.String(), b.GetUpperBound(), b.GetCumulativeCount(), prevLE, prevCount)
					}
					prevLE, prevCount = b.GetUpperBound(), b.GetCumulativeCount()
					out = append(out, expoSample{name + "_bucket", with("le", formatLE(b.GetUpperBound())), float64(b.GetCumulativeCount())})
				}
				// The library's Go runtime histograms have no _sum or _count (the runtime
				// keeps no exact sum); Prometheus takes their buckets alone.
				if !math.IsInf(prevLE, 1) || (h.SampleCount != nil && prevCount != h.GetSampleCount()) {
					return nil, fmt.Errorf("%s{%s}: the +Inf bucket (le=%v, %d) must end the buckets and equal _count %d",
						name, sig.String(), prevLE, prevCount, h.GetSampleCount())
				}
				out = append(out, expoSample{name + "_sum", labels, h.GetSampleSum()},
					expoSample{name + "_count", labels, float64(h.GetSampleCount())})
			default:
				return nil, fmt.Errorf("family %s has type %v", name, mf.GetType())
			}
		}
	}
	return out, nil
}

// checkGrouped holds the scrape to the format's rule that a family's lines come as one
// group, which the parser does not check.
func checkGrouped(text string, fams map[string]*dto.MetricFamily) error {
	done := map[string]bool{}
	current := ""
	for line := range strings.Lines(text) {
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		if _, ok := fams[name]; !ok {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok && fams[base] != nil {
					name = base
				}
			}
		}
		if name == current {
			continue
		}
		if done[name] {
			return fmt.Errorf("family %s comes in two groups", name)
		}
		done[current], current = true, name
	}
	return nil
}

// formatLE writes a bound as the text format does.
func formatLE(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// TestExpositionCheckerRejects keeps the checker the other tests rely on honest.
func TestExpositionCheckerRejects(t *testing.T) {
	const h = "# TYPE h histogram\n"
	for _, tc := range []struct{ name, text string }{
		{"no TYPE", "c 1\n"},
		{"typed twice", "# TYPE c counter\nc 1\n# TYPE c counter\nc 2\n"},
		{"family split", "# TYPE c counter\nc{a=\"x\"} 1\n# TYPE d counter\nd 1\nc{a=\"y\"} 1\n"},
		{"series repeated", "# TYPE c counter\nc{a=\"x\"} 1\nc{a=\"x\"} 1\n"},
		{"bad escape", "# TYPE c counter\nc{a=\"\\t\"} 1\n"},
		{"unterminated", "# TYPE c counter\nc{a=\"x} 1\n"},
		{"bad value", "# TYPE c counter\nc one\n"},
		{"bucket decreases", h + "h_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"},
		{"+Inf != count", h + "h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n"},
		{"no +Inf", h + "h_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n"},
	} {
		if _, err := checkExposition(tc.text); err == nil {
			t.Errorf("%s: accepted %q", tc.name, tc.text)
		}
	}
	ok := h + "h_bucket{m=\"a\",le=\"1\"} 1\nh_bucket{m=\"a\",le=\"+Inf\"} 2\nh_sum{m=\"a\"} 3\nh_count{m=\"a\"} 2\n"
	if _, err := checkExposition(ok); err != nil {
		t.Errorf("rejected a valid histogram: %v", err)
	}
}

func scrape(t testing.TB, m *metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.handler().ServeHTTP(rec, httptest.NewRequest("GET", wire.PathMetrics, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	return rec.Body.String()
}

// find returns the value of the sample with this name and these labels (a subset).
func find(samples []expoSample, name string, labels ...string) (float64, bool) {
	for _, s := range samples {
		if s.name != name {
			continue
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			match = match && s.labels[labels[i]] == labels[i+1]
		}
		if match {
			return s.value, true
		}
	}
	return 0, false
}

func TestMetricsScrapeFollowsTheTextFormat(t *testing.T) {
	q, srv, _ := newTestQueen(t, Config{Capabilities: FetchConfig{Attempts: 1, Timeout: 50 * time.Millisecond}})
	do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w1", 9))
	do(t, "POST", srv.URL+wire.PathChat, "", `{"model":"nope"}`)
	for _, model := range []string{"zeta", "alpha", "mid"} {
		for _, code := range []string{"500", "200", "unreachable"} {
			q.metrics.routed.WithLabelValues(model, code).Inc()
		}
		for _, s := range []float64{0.001, 0.005, 0.3, 2, 1e6} {
			q.metrics.routeSeconds.WithLabelValues(model).Observe(s)
		}
	}
	body := scrape(t, q.metrics)
	samples := parseExposition(t, body)

	// The lines exactly as a reader of the scrape sees them: labels sorted by name, le last.
	for _, want := range []string{
		`# TYPE beekeeper_queen_routed_requests_total counter`,
		`# TYPE beekeeper_queen_routed_request_duration_seconds histogram`,
		`# TYPE beekeeper_queen_workers gauge`,
		`beekeeper_queen_routed_requests_total{code="200",model="alpha"} 1`,
		`beekeeper_queen_routed_requests_total{code="404",model="unknown"} 1`,
		`beekeeper_queen_workers{state="registered"} 1`,
		`beekeeper_queen_workers{state="stale"} 0`,
		`beekeeper_queen_routed_request_duration_seconds_bucket{model="mid",le="0.005"} 2`,
		`go_info{version="` + runtime.Version() + `"} 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("the scrape lacks %q", want)
		}
	}
	// le is inclusive: an observation equal to a bound counts in its bucket.
	const hist = "beekeeper_queen_routed_request_duration_seconds"
	for _, c := range []struct {
		name, le string
		want     float64
	}{
		{hist + "_bucket", "0.005", 2},
		{hist + "_bucket", "0.48828125", 3},
		{hist + "_bucket", "19.073486328125", 4},
		{hist + "_bucket", "+Inf", 5},
		{hist + "_count", "", 5},
		{hist + "_sum", "", 0.001 + 0.005 + 0.3 + 2 + 1e6},
	} {
		labels := []string{"model", "mid"}
		if c.le != "" {
			labels = append(labels, "le", c.le)
		}
		if v, ok := find(samples, c.name, labels...); !ok || v != c.want {
			t.Errorf("%s %v = %v (found %v), want %v", c.name, labels, v, ok, c.want)
		}
	}
	// The families a Prometheus user expects of any process, where the platform has them.
	want := []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "go_memstats_sys_bytes"}
	if _, err := os.Stat("/proc/self/stat"); err == nil {
		want = append(want, "process_cpu_seconds_total", "process_open_fds", "process_max_fds",
			"process_resident_memory_bytes", "process_virtual_memory_bytes", "process_start_time_seconds")
	}
	for _, name := range want {
		if v, ok := find(samples, name); !ok || !(v > 0) {
			t.Errorf("%s = %v (found %v), want > 0", name, v, ok)
		}
	}
	if v, ok := find(samples, "process_start_time_seconds"); ok {
		if d := time.Since(time.Unix(int64(v), 0)); d < -time.Second || d > 24*time.Hour {
			t.Errorf("process_start_time_seconds is %v ago", d)
		}
	}
	// The buckets are 0.005 × 2.5^i, ten of them.
	var les []string
	for _, s := range samples {
		if s.name == hist+"_bucket" && s.labels["model"] == "alpha" {
			les = append(les, s.labels["le"])
		}
	}
	if wantLEs := []string{"0.005", "0.0125", "0.03125", "0.078125", "0.1953125", "0.48828125",
		"1.220703125", "3.0517578125", "7.62939453125", "19.073486328125", "+Inf"}; !slices.Equal(les, wantLEs) {
		t.Errorf("buckets %v, want %v", les, wantLEs)
	}
}

func TestMetricsEscapesLabelValues(t *testing.T) {
	m := newMetrics()
	raw := "a\"b\\c\nd"
	m.routed.WithLabelValues(raw, "200").Inc()
	m.routeSeconds.WithLabelValues(raw).Observe(1)
	m.capFetches.WithLabelValues("bad\xffutf8").Inc()
	samples := parseExposition(t, scrape(t, m))
	for _, c := range []struct{ name, label, value string }{
		{"beekeeper_queen_routed_requests_total", "model", raw},
		{"beekeeper_queen_routed_request_duration_seconds_count", "model", raw},
		{"beekeeper_queen_capabilities_fetches_total", "result", "bad\uFFFDutf8"},
	} {
		if v, ok := find(samples, c.name, c.label, c.value); !ok || v != 1 {
			t.Errorf("%s{%s=%q} = %v (found %v), want 1", c.name, c.label, c.value, v, ok)
		}
	}
}

// TestMetricsCountEveryConcurrentUpdate guards the counters and the histogram against
// lost updates, and scrapes taken meanwhile against torn histograms (+Inf != _count).
func TestMetricsCountEveryConcurrentUpdate(t *testing.T) {
	const goroutines, perG = 8, 2000
	m := newMetrics()
	m.registerStates(newRegistry(time.Now, testInterval, time.Minute, DefaultMaxWorkers))
	var wg, scrapers sync.WaitGroup
	stop := make(chan struct{})
	scrapers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			var b bytes.Buffer
			m.write(&b)
			if _, err := checkExposition(b.String()); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for g := range goroutines {
		wg.Go(func() {
			model := []string{"a", "b"}[g%2] // half the goroutines share each series
			for i := range perG {
				m.routed.WithLabelValues(model, "200").Inc()
				m.heartbeats.WithLabelValues("ok").Inc()
				m.routeSeconds.WithLabelValues(model).Observe(float64(i%4) * 0.25) // 0, .25, .5, .75: sums exact
			}
		})
	}
	wg.Wait()
	close(stop)
	scrapers.Wait()

	samples := parseExposition(t, scrape(t, m))
	value := func(name string, labels ...string) float64 {
		v, ok := find(samples, name, labels...)
		if !ok {
			t.Fatalf("no %s %v", name, labels)
		}
		return v
	}
	const n = goroutines * perG
	if v := value("beekeeper_queen_heartbeats_total"); v != n {
		t.Errorf("heartbeats %v, want %d", v, n)
	}
	for _, model := range []string{"a", "b"} {
		if v := value("beekeeper_queen_routed_requests_total", "model", model); v != n/2 {
			t.Errorf("routed %s: %v, want %d", model, v, n/2)
		}
		if v := value("beekeeper_queen_routed_request_duration_seconds_count", "model", model); v != n/2 {
			t.Errorf("observations %s: %v, want %d", model, v, n/2)
		}
		if v, want := value("beekeeper_queen_routed_request_duration_seconds_sum", "model", model), float64(n/2)*1.5/4; v != want {
			t.Errorf("sum %s: %v, want %v", model, v, want)
		}
	}
}

// TestMetricsSeriesAreBounded guards the scrape's size: past maxSeries label
// combinations, new ones fold into one overflow series.
func TestMetricsSeriesAreBounded(t *testing.T) {
	m := newMetrics()
	for i := range maxSeries + 50 {
		m.routed.WithLabelValues("model-"+strconv.Itoa(i), "200").Inc()
	}
	m.routed.WithLabelValues("model-0", "200").Inc() // an existing series still counts as itself
	var series int
	for _, s := range parseExposition(t, scrape(t, m)) {
		if s.name != "beekeeper_queen_routed_requests_total" {
			continue
		}
		series++
		switch s.labels["model"] {
		case overflowLabel:
			if s.value != 50 || s.labels["code"] != overflowLabel {
				t.Errorf("overflow series %v = %v, want 50", s.labels, s.value)
			}
		case "model-0":
			if s.value != 2 {
				t.Errorf("model-0 = %v, want 2", s.value)
			}
		}
	}
	if series != maxSeries+1 {
		t.Errorf("%d series, want %d and one overflow series", series, maxSeries)
	}
}

// TestMetricsObserveAllocatesNothing guards the hot path: counting a routed request and
// its duration on an existing series allocates nothing.
func TestMetricsObserveAllocatesNothing(t *testing.T) {
	m := newMetrics()
	m.routed.WithLabelValues("stories260K", "200").Inc()
	m.routeSeconds.WithLabelValues("stories260K").Observe(0.3)
	if n := testing.AllocsPerRun(100, func() {
		m.routed.WithLabelValues("stories260K", "200").Inc()
		m.routeSeconds.WithLabelValues("stories260K").Observe(0.3)
	}); n != 0 {
		t.Errorf("%v allocations per observation, want 0", n)
	}
}

// BenchmarkMetricsScrape scrapes a Queen holding 10,000 workers and a few routed series.
func BenchmarkMetricsScrape(b *testing.B) {
	q, _, _ := newTestQueen(b, Config{})
	for i := range 10_000 {
		if _, err := q.reg.register(regReq(fmt.Sprintf("w%05d", i), 10_000+i), ""); err != nil {
			b.Fatal(err)
		}
	}
	for _, model := range []string{"stories260K", "stories15M", "unknown"} {
		for _, code := range []string{"200", "404", "503", "unreachable"} {
			q.metrics.routed.WithLabelValues(model, code).Inc()
		}
		q.metrics.routeSeconds.WithLabelValues(model).Observe(0.3)
	}
	h := q.metrics.handler()
	req := httptest.NewRequest("GET", wire.PathMetrics, nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}
