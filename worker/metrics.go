package worker

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	vmetrics "github.com/VictoriaMetrics/metrics"

	"github.com/beekeeper-hive/beekeeper/wire"
	"github.com/beekeeper-hive/beekeeper/worker/engine"
)

// metricsContentType is the Prometheus text exposition format's media type.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// otherEndpoint labels requests for paths the worker does not serve, so clients cannot
// mint series.
const otherEndpoint = "other"

// Buckets of the latency histograms, in seconds: a first token comes after the prompt is
// read (milliseconds for the test model, seconds for a long prompt on a large one); a
// next token from one decode step (0.25 ms for the test model, 10–200 ms for real ones).
var (
	ttftBuckets     = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	perTokenBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
)

// workerMetrics is the worker's GET /metrics, like llama-server's: tokens, latencies and
// requests observed as answers are written; slots, queue and KV cache read from the
// engine at scrape time.
type workerMetrics struct {
	set       *vmetrics.Set
	generated *vmetrics.Counter
	ttft      *vmetrics.PrometheusHistogram
	perToken  *vmetrics.PrometheusHistogram

	mu       sync.Mutex
	requests map[requestKey]*vmetrics.Counter
}

type requestKey struct {
	endpoint string
	code     int
}

func newWorkerMetrics(e func() *engine.Engine) *workerMetrics {
	vmetrics.ExposeMetadata(true) // TYPE lines: Prometheus types the families without guessing
	set := vmetrics.NewSet()
	m := &workerMetrics{
		set:       set,
		generated: set.NewCounter("beekeeper_worker_tokens_generated_total"),
		ttft:      set.NewPrometheusHistogramExt("beekeeper_worker_time_to_first_token_seconds", ttftBuckets),
		perToken:  set.NewPrometheusHistogramExt("beekeeper_worker_time_per_token_seconds", perTokenBuckets),
		requests:  map[requestKey]*vmetrics.Counter{},
	}
	set.RegisterMetricsWriter(func(w io.Writer) {
		if e := e(); e != nil {
			writeEngineMetrics(w, e)
		}
	})
	return m
}

// writeEngineMetrics writes the engine's load and KV cache, one snapshot per scrape (the
// figures heartbeats send the Queen).
func writeEngineMetrics(w io.Writer, e *engine.Engine) {
	st := e.Stats()
	vmetrics.WriteCounterUint64(w, "beekeeper_worker_prompt_tokens_total", uint64(st.PromptTokens))
	vmetrics.WriteCounterUint64(w, "beekeeper_worker_prompt_tokens_cached_total", uint64(st.CachedPromptTokens))
	vmetrics.WriteGaugeUint64(w, "beekeeper_worker_slots", uint64(e.Parallel()))
	vmetrics.WriteGaugeUint64(w, "beekeeper_worker_slots_busy", uint64(st.Active))
	vmetrics.WriteGaugeUint64(w, "beekeeper_worker_requests_queued", uint64(st.Queued))
	vmetrics.WriteGaugeUint64(w, "beekeeper_worker_kv_cache_tokens", uint64(st.KVTokens))
	vmetrics.WriteGaugeUint64(w, "beekeeper_worker_kv_cache_capacity_tokens", uint64(st.KVCapacity))
	vmetrics.WriteGaugeUint64(w, "beekeeper_worker_kv_cache_bytes", uint64(st.KVBytes))
	if st.KVCapacity > 0 {
		vmetrics.WriteGaugeFloat64(w, "beekeeper_worker_kv_cache_usage_ratio", float64(st.KVTokens)/float64(st.KVCapacity))
	}
}

// handle serves GET /metrics: the worker's families, then the process's Go and process
// families.
func (m *workerMetrics) handle(rw http.ResponseWriter, _ *http.Request) error {
	var b bytes.Buffer
	m.set.WritePrometheus(&b)
	vmetrics.WriteProcessMetrics(&b)
	vmetrics.WriteFDMetrics(&b)
	rw.Header().Set("Content-Type", metricsContentType)
	_, _ = rw.Write(b.Bytes()) // an error means the scraper left: nobody to tell
	return nil
}

// request counts one answered request by endpoint (the route's path) and status.
func (m *workerMetrics) request(endpoint string, code int) {
	k := requestKey{endpoint, code}
	m.mu.Lock()
	c := m.requests[k]
	if c == nil {
		c = m.set.NewCounter(`beekeeper_worker_requests_total{code="` + strconv.Itoa(code) + `",endpoint="` + endpoint + `"}`)
		m.requests[k] = c
	}
	m.mu.Unlock()
	c.Inc()
}

// statusOf is the status handle answers an error with (as wire.WriteError does).
func statusOf(err error) int {
	var apiErr *wire.APIError
	switch {
	case err == nil:
		return http.StatusOK
	case errors.As(err, &apiErr):
		return apiErr.Status
	default:
		return http.StatusInternalServerError
	}
}

// tokenClock times one generation's tokens as the engine hands them over: the first
// from the request's start, each next one from the one before. It runs on the
// scheduler's goroutine and allocates nothing per token.
type tokenClock struct {
	m           *workerMetrics
	start, last time.Time
}

func (m *workerMetrics) clock(start time.Time) *tokenClock { return &tokenClock{m: m, start: start} }

// tick records a token's arrival.
func (c *tokenClock) tick() {
	now := time.Now()
	if c.last.IsZero() {
		c.m.ttft.Update(now.Sub(c.start).Seconds())
	} else {
		c.m.perToken.Update(now.Sub(c.last).Seconds())
	}
	c.last = now
}

// done counts the generation's tokens, whatever its outcome.
func (c *tokenClock) done(res engine.Result) {
	if res.CompletionTokens > 0 {
		c.m.generated.Add(res.CompletionTokens)
	}
}
