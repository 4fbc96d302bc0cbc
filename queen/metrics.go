package queen

import (
	"bytes"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	vmetrics "github.com/VictoriaMetrics/metrics"
)

// /metrics is written by VictoriaMetrics/metrics. Every worker process maps the whole
// binary, and prometheus/client_golang (protobuf, procfs, the init of its default
// registry) measured ≈ 1.1 MB of private memory per worker plus 3.45 MB of binary; this
// library is within the noise of hand-written code (docs/queen.md#metrics).

// metricsContentType is the text exposition format's media type.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// maxSeries bounds the series of one labelled family. The label rules keep well below it
// (fixed results, the models the registry knows, HTTP status codes); past it, new label
// combinations are counted together in one more series whose every label is
// overflowLabel, so a scrape never grows without bound whatever the callers pass.
const (
	maxSeries     = 10_000
	overflowLabel = "overflow"
)

// metrics is the Queen's /metrics surface. Each Queen has its own set, so two Queens in
// one process (the app and a test) never collide; the Go and process families are the
// process's.
type metrics struct {
	set *vmetrics.Set

	registrations *counterVec
	heartbeats    *counterVec
	capFetches    *counterVec
	routed        *counterVec
	routeSeconds  *histogramVec
	spawnOrders   *counterVec
}

func newMetrics() *metrics {
	vmetrics.ExposeMetadata(true) // TYPE lines: Prometheus types the families without guessing
	set := vmetrics.NewSet()
	return &metrics{
		set:           set,
		registrations: newCounterVec(set, "beekeeper_queen_registrations_total", "result"),
		heartbeats:    newCounterVec(set, "beekeeper_queen_heartbeats_total", "result"),
		capFetches:    newCounterVec(set, "beekeeper_queen_capabilities_fetches_total", "result"),
		routed:        newCounterVec(set, "beekeeper_queen_routed_requests_total", "model", "code"),
		routeSeconds: newHistogramVec(set, "beekeeper_queen_routed_request_duration_seconds",
			vmetrics.ExponentialBuckets(0.005, 2.5, 10), "model"),
		spawnOrders: newCounterVec(set, "beekeeper_queen_spawn_orders_total", "result"),
	}
}

// registerStates exposes the registry's workers by state, counted at scrape time in one
// pass over the registry.
func (m *metrics) registerStates(r *registry) {
	const name = "beekeeper_queen_workers"
	m.set.RegisterMetricsWriter(func(w io.Writer) {
		counts := r.countByState()
		var b []byte
		for _, s := range slices.Sorted(maps.Keys(counts)) {
			b = append(b, name+`{state="`...)
			b = append(b, labelEscaper.Replace(string(s))...)
			b = append(b, `"} `...)
			b = strconv.AppendInt(b, int64(counts[s]), 10)
			b = append(b, '\n')
		}
		vmetrics.WriteMetadataIfNeeded(w, name, "gauge")
		w.Write(b)
	})
}

func (m *metrics) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var b bytes.Buffer
		m.write(&b)
		w.Header().Set("Content-Type", metricsContentType)
		w.Write(b.Bytes()) // an error means the scraper left: nobody to tell
	})
}

// write renders the Queen's families, then the process's Go and process families.
func (m *metrics) write(b *bytes.Buffer) {
	m.set.WritePrometheus(b)
	vmetrics.WriteProcessMetrics(b)
	vmetrics.WriteFDMetrics(b)
}

// labelKey holds a series' label values in declaration order; a fixed array, so a lookup
// allocates nothing.
type labelKey [maxLabels]string

const maxLabels = 2

// vec is a labelled family: the library takes a series by its full name
// (`name{a="x",b="y"}`), which vec builds once per label combination and caches.
type vec[T any] struct {
	set    *vmetrics.Set
	name   string
	labels []string // as WithLabelValues takes them
	order  []int    // indexes into labels, sorted by label name: the written order
	create func(set *vmetrics.Set, series string) T

	mu     sync.RWMutex
	series map[labelKey]T
}

func newVec[T any](set *vmetrics.Set, name string, labels []string, create func(*vmetrics.Set, string) T) *vec[T] {
	if len(labels) > maxLabels {
		panic("metrics: " + name + " has more than " + strconv.Itoa(maxLabels) + " labels")
	}
	order := make([]int, len(labels))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(labels[a], labels[b]) })
	return &vec[T]{set: set, name: name, labels: labels, order: order, create: create, series: map[labelKey]T{}}
}

func (v *vec[T]) with(values []string) T {
	if len(values) != len(v.labels) {
		panic("metrics: " + v.name + " takes " + strconv.Itoa(len(v.labels)) + " label values, got " + strconv.Itoa(len(values)))
	}
	var k labelKey
	for i, s := range values {
		if !utf8.ValidString(s) {
			s = strings.ToValidUTF8(s, "\uFFFD") // the format is UTF-8; never write a scrape Prometheus rejects
		}
		k[i] = s
	}
	v.mu.RLock()
	s, ok := v.series[k]
	v.mu.RUnlock()
	if ok {
		return s
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := v.series[k]; ok {
		return s
	}
	if len(v.series) >= maxSeries {
		for i := range v.labels {
			k[i] = overflowLabel
		}
		if s, ok := v.series[k]; ok {
			return s
		}
	}
	b := []byte(v.name)
	for j, i := range v.order {
		if j == 0 {
			b = append(b, '{')
		} else {
			b = append(b, ',')
		}
		b = append(b, v.labels[i]...)
		b = append(b, `="`...)
		b = append(b, labelEscaper.Replace(k[i])...)
		b = append(b, '"')
	}
	if len(v.order) > 0 {
		b = append(b, '}')
	}
	s = v.create(v.set, string(b))
	v.series[k] = s
	return s
}

// labelEscaper escapes a label value as the text format asks.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// counterVec is a labelled counter family.
type counterVec struct{ v *vec[*vmetrics.Counter] }

func newCounterVec(set *vmetrics.Set, name string, labels ...string) *counterVec {
	return &counterVec{newVec(set, name, labels, (*vmetrics.Set).NewCounter)}
}

// WithLabelValues returns the counter of these label values (in declaration order),
// creating it at zero.
func (c *counterVec) WithLabelValues(values ...string) *vmetrics.Counter { return c.v.with(values) }

// histogramVec is a labelled histogram family with fixed buckets (le labels).
type histogramVec struct{ v *vec[histogram] }

// histogram is one series of a histogramVec.
type histogram struct{ h *vmetrics.PrometheusHistogram }

// Observe records one value (the library drops negative values and NaN).
func (h histogram) Observe(v float64) { h.h.Update(v) }

func newHistogramVec(set *vmetrics.Set, name string, buckets []float64, labels ...string) *histogramVec {
	return &histogramVec{newVec(set, name, labels, func(set *vmetrics.Set, series string) histogram {
		return histogram{set.NewPrometheusHistogramExt(series, buckets)}
	})}
}

// WithLabelValues returns the histogram of these label values (in declaration order),
// creating it empty.
func (h *histogramVec) WithLabelValues(values ...string) histogram { return h.v.with(values) }
