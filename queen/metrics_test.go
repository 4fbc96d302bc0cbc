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

	"github.com/beekeeper-hive/beekeeper/wire"
)

// expoSample is one sample line of a scrape.
type expoSample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseExposition checks a scrape against the text exposition format 0.0.4 as the Queen
// writes it, line by line, and returns its samples. It fails t on the first violation.
func parseExposition(t testing.TB, text string) []expoSample {
	t.Helper()
	samples, err := checkExposition(text)
	if err != nil {
		t.Fatalf("%v\n--- scrape ---\n%s", err, text)
	}
	return samples
}

// checkExposition is parseExposition's checker, safe off the test goroutine. It holds
// the output to the rules Prometheus relies on: HELP then TYPE once per family, families
// sorted by name, every sample named by the preceding TYPE, labels sorted by name (le
// last), series sorted and unique, valid escapes, and per histogram series ascending
// le bounds, non-decreasing cumulative buckets, a +Inf bucket equal to _count, and a _sum.
func checkExposition(text string) ([]expoSample, error) {
	if !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("the scrape does not end with a newline")
	}
	var (
		out      []expoSample
		fam, typ string // the current family
		help     string // the name of the last HELP line, until its TYPE
		families = map[string]bool{}
		lastKey  string // the current family's last series (its label values but le)
		seen     bool   // the current family has a series
		hist     *histCheck
	)
	endSeries := func() error {
		if hist != nil {
			if err := hist.done(); err != nil {
				return err
			}
			hist = nil
		}
		return nil
	}
	for n, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		fail := func(format string, args ...any) ([]expoSample, error) {
			return nil, fmt.Errorf("line %d %q: %s", n+1, line, fmt.Sprintf(format, args...))
		}
		switch {
		case strings.HasPrefix(line, "# HELP "):
			name, text, ok := strings.Cut(strings.TrimPrefix(line, "# HELP "), " ")
			if !ok || !validMetricName(name) || help != "" {
				return fail("a HELP line needs a valid name, text, and a TYPE line after it")
			}
			if err := checkEscapes(text, false); err != nil {
				return fail("%v", err)
			}
			help = name
		case strings.HasPrefix(line, "# TYPE "):
			name, kind, _ := strings.Cut(strings.TrimPrefix(line, "# TYPE "), " ")
			if name != help {
				return fail("TYPE does not follow its family's HELP line")
			}
			if !slices.Contains([]string{"counter", "gauge", "histogram", "summary", "untyped"}, kind) {
				return fail("unknown type %q", kind)
			}
			if families[name] {
				return fail("family %s declared twice", name)
			}
			if fam != "" && name < fam {
				return fail("family %s after %s: families are not sorted by name", name, fam)
			}
			if err := endSeries(); err != nil {
				return fail("%v", err)
			}
			families[name], fam, typ, help, seen = true, name, kind, "", false
		case strings.HasPrefix(line, "#") || line == "":
			return fail("the Queen writes no comments or blank lines")
		default:
			if help != "" || fam == "" {
				return fail("a sample before its family's TYPE line")
			}
			s, err := parseSampleLine(line)
			if err != nil {
				return fail("%v", err)
			}
			suffix, ok := strings.CutPrefix(s.name, fam)
			if !ok || (typ == "histogram") != (suffix != "") ||
				(suffix != "" && suffix != "_bucket" && suffix != "_sum" && suffix != "_count") {
				return fail("sample %s does not belong to %s family %s", s.name, typ, fam)
			}
			names := slices.Sorted(func(yield func(string) bool) {
				for k := range s.labels {
					if k != "le" && !yield(k) {
						return
					}
				}
			})
			var key strings.Builder
			for _, k := range names {
				fmt.Fprintf(&key, "%s\x00", s.labels[k])
			}
			if _, hasLE := s.labels["le"]; hasLE != (suffix == "_bucket") || !slices.Equal(s.order, append(names, sliceIf(hasLE, "le")...)) {
				return fail("labels %v are not sorted by name with le on buckets only, last", s.order)
			}
			if k := key.String(); hist == nil || hist.key != k { // a new series
				if seen && k <= lastKey {
					return fail("series out of order or repeated")
				}
				if err := endSeries(); err != nil {
					return fail("%v", err)
				}
				lastKey, seen = k, true
				if typ == "histogram" {
					hist = &histCheck{key: k}
				}
			}
			if hist != nil {
				if err := hist.add(suffix, s); err != nil {
					return fail("%v", err)
				}
			}
			out = append(out, expoSample{name: s.name, labels: s.labels, value: s.value})
		}
	}
	if help != "" {
		return nil, fmt.Errorf("HELP %s without a TYPE line", help)
	}
	if err := endSeries(); err != nil {
		return nil, err
	}
	return out, nil
}

func sliceIf(ok bool, s string) []string {
	if ok {
		return []string{s}
	}
	return nil
}

// histCheck follows one histogram series: its buckets, then _sum and _count.
type histCheck struct {
	key            string
	le, cum        float64
	buckets        int
	inf            float64
	hasInf, hasSum bool
	count          float64
	hasCount       bool
}

func (h *histCheck) add(suffix string, s parsedLine) error {
	switch {
	case suffix == "_bucket" && !h.hasInf && !h.hasSum && !h.hasCount:
		le, err := strconv.ParseFloat(s.labels["le"], 64)
		if err != nil {
			return fmt.Errorf("le %q: %v", s.labels["le"], err)
		}
		if h.buckets > 0 && (le <= h.le || s.value < h.cum) {
			return fmt.Errorf("bucket le=%v count %v after le=%v count %v: bounds must ascend and counts not decrease", le, s.value, h.le, h.cum)
		}
		h.le, h.cum = le, s.value
		h.buckets++
		if math.IsInf(le, 1) {
			h.hasInf, h.inf = true, s.value
		}
	case suffix == "_sum" && h.hasInf && !h.hasSum:
		h.hasSum = true
	case suffix == "_count" && h.hasSum && !h.hasCount:
		h.hasCount, h.count = true, s.value
	default:
		return fmt.Errorf("%s out of place: a series is its buckets up to +Inf, then _sum, then _count", s.name)
	}
	return nil
}

func (h *histCheck) done() error {
	if !h.hasCount {
		return fmt.Errorf("a histogram series lacks its +Inf bucket, _sum or _count")
	}
	if h.inf != h.count {
		return fmt.Errorf("+Inf bucket %v != _count %v", h.inf, h.count)
	}
	return nil
}

type parsedLine struct {
	name   string
	labels map[string]string
	order  []string // label names as written
	value  float64
}

// parseSampleLine parses `name{label="value",...} value`.
func parseSampleLine(line string) (parsedLine, error) {
	p := parsedLine{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return p, fmt.Errorf("no value")
	}
	p.name = line[:i]
	if !validMetricName(p.name) {
		return p, fmt.Errorf("invalid metric name %q", p.name)
	}
	rest := line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			eq := strings.Index(rest, `="`)
			if eq < 0 {
				return p, fmt.Errorf("a label without =\"")
			}
			name := rest[:eq]
			if !validLabelName(name) {
				return p, fmt.Errorf("invalid label name %q", name)
			}
			if _, dup := p.labels[name]; dup {
				return p, fmt.Errorf("label %s twice", name)
			}
			rest = rest[eq+2:]
			var val strings.Builder
			j := 0
			for ; j < len(rest) && rest[j] != '"'; j++ {
				if rest[j] != '\\' {
					val.WriteByte(rest[j])
					continue
				}
				j++
				if j == len(rest) {
					return p, fmt.Errorf("a label value ends in a backslash")
				}
				switch rest[j] {
				case '\\', '"':
					val.WriteByte(rest[j])
				case 'n':
					val.WriteByte('\n')
				default:
					return p, fmt.Errorf("invalid escape \\%c", rest[j])
				}
			}
			if j == len(rest) {
				return p, fmt.Errorf("an unterminated label value")
			}
			p.labels[name] = val.String()
			p.order = append(p.order, name)
			rest = rest[j+1:]
			if strings.HasPrefix(rest, ",") {
				rest = rest[1:]
				continue
			}
			if !strings.HasPrefix(rest, "}") {
				return p, fmt.Errorf("labels not closed by }")
			}
			rest = rest[1:]
			break
		}
	}
	value, ok := strings.CutPrefix(rest, " ")
	if !ok || strings.Contains(value, " ") {
		return p, fmt.Errorf("want one space, then the value (and no timestamp)")
	}
	v, err := strconv.ParseFloat(value, 64)
	if err != nil {
		return p, fmt.Errorf("value: %v", err)
	}
	p.value = v
	return p, nil
}

func validMetricName(s string) bool {
	return s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '_' || r == ':' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) < 0 && (s[0] < '0' || s[0] > '9')
}

func validLabelName(s string) bool {
	return validMetricName(s) && !strings.Contains(s, ":")
}

// checkEscapes allows only the format's escapes: \\ and \n, plus \" in label values.
func checkEscapes(s string, label bool) error {
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			continue
		}
		i++
		if i == len(s) || !(s[i] == '\\' || s[i] == 'n' || label && s[i] == '"') {
			return fmt.Errorf("invalid escape in %q", s)
		}
	}
	return nil
}

// TestExpositionCheckerRejects keeps the checker the other tests rely on honest.
func TestExpositionCheckerRejects(t *testing.T) {
	const h = "# HELP h x\n# TYPE h histogram\n"
	for _, tc := range []struct{ name, text string }{
		{"no TYPE", "# HELP c x\nc 1\n"},
		{"undeclared name", "# HELP c x\n# TYPE c counter\nd 1\n"},
		{"families unsorted", "# HELP d x\n# TYPE d counter\nd 1\n# HELP c x\n# TYPE c counter\nc 1\n"},
		{"series unsorted", "# HELP c x\n# TYPE c counter\nc{a=\"y\"} 1\nc{a=\"x\"} 1\n"},
		{"series repeated", "# HELP c x\n# TYPE c counter\nc{a=\"x\"} 1\nc{a=\"x\"} 1\n"},
		{"labels unsorted", "# HELP c x\n# TYPE c counter\nc{b=\"x\",a=\"y\"} 1\n"},
		{"bad escape", "# HELP c x\n# TYPE c counter\nc{a=\"\\t\"} 1\n"},
		{"unterminated", "# HELP c x\n# TYPE c counter\nc{a=\"x} 1\n"},
		{"bad value", "# HELP c x\n# TYPE c counter\nc one\n"},
		{"timestamp", "# HELP c x\n# TYPE c counter\nc 1 1700000000\n"},
		{"bucket decreases", h + "h_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"},
		{"+Inf != count", h + "h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n"},
		{"no +Inf", h + "h_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n"},
		{"le not last", h + "h_bucket{le=\"+Inf\",m=\"a\"} 1\nh_sum{m=\"a\"} 1\nh_count{m=\"a\"} 1\n"},
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

	for _, want := range []string{
		`beekeeper_queen_routed_requests_total{code="200",model="alpha"} 1`,
		`beekeeper_queen_routed_requests_total{code="404",model="unknown"} 1`,
		`beekeeper_queen_workers{state="registered"} 1`,
		// le is inclusive: an observation equal to a bound counts in its bucket.
		`beekeeper_queen_routed_request_duration_seconds_bucket{model="mid",le="0.005"} 2`,
		`beekeeper_queen_routed_request_duration_seconds_bucket{model="mid",le="0.48828125"} 3`,
		`beekeeper_queen_routed_request_duration_seconds_bucket{model="mid",le="19.073486328125"} 4`,
		`beekeeper_queen_routed_request_duration_seconds_bucket{model="mid",le="+Inf"} 5`,
		`beekeeper_queen_routed_request_duration_seconds_sum{model="mid"} ` + strconv.FormatFloat(0.001+0.005+0.3+2+1e6, 'g', -1, 64),
		`beekeeper_queen_routed_request_duration_seconds_count{model="mid"} 5`,
		`go_info{version="` + strings.ReplaceAll(runtime.Version(), `"`, `\"`) + `"} 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("the scrape lacks %q", want)
		}
	}
	// The families a Prometheus user expects of any process, where the platform has them.
	want := []string{"go_goroutines", "go_memstats_heap_alloc_bytes"}
	if _, err := os.Stat("/proc/self/stat"); err == nil {
		want = append(want, "process_cpu_seconds_total", "process_open_fds",
			"process_resident_memory_bytes", "process_start_time_seconds")
	}
	for _, name := range want {
		i := slices.IndexFunc(samples, func(s expoSample) bool { return s.name == name })
		if i < 0 {
			t.Errorf("the scrape lacks %s", name)
			continue
		}
		if v := samples[i].value; !(v > 0) {
			t.Errorf("%s = %v, want > 0", name, v)
		}
	}
	if i := slices.IndexFunc(samples, func(s expoSample) bool { return s.name == "process_start_time_seconds" }); i >= 0 {
		if d := time.Since(time.Unix(int64(samples[i].value), 0)); d < 0 || d > 24*time.Hour {
			t.Errorf("process_start_time_seconds is %v ago", d)
		}
	}
	// The buckets are 0.005 × 2.5^i, ten of them.
	var les []string
	for _, s := range samples {
		if s.name == "beekeeper_queen_routed_request_duration_seconds_bucket" && s.labels["model"] == "alpha" {
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
	body := scrape(t, m)
	for _, want := range []string{
		`beekeeper_queen_routed_requests_total{code="200",model="a\"b\\c\nd"} 1`,
		`beekeeper_queen_routed_request_duration_seconds_count{model="a\"b\\c\nd"} 1`,
		`beekeeper_queen_capabilities_fetches_total{result="bad` + "\uFFFD" + `utf8"} 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("the scrape lacks %q", want)
		}
	}
	var found bool
	for _, s := range parseExposition(t, body) {
		if s.name == "beekeeper_queen_routed_requests_total" {
			found = s.labels["model"] == raw
		}
	}
	if !found {
		t.Errorf("the escaped label does not parse back to %q", raw)
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
		for _, s := range samples {
			if s.name == name && (len(labels) == 0 || s.labels[labels[0]] == labels[1]) {
				return s.value
			}
		}
		t.Fatalf("no %s %v", name, labels)
		return 0
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
