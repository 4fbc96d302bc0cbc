package queen

import (
	"bytes"
	"maps"
	"math"
	"net/http"
	"os"
	"runtime"
	runtimemetrics "runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// The Queen writes /metrics itself in the Prometheus text exposition format 0.0.4: a few
// counters and one histogram do not need a client library, and every worker process maps
// the whole binary, so one that pulls in protobuf and procfs costs each worker memory.

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

// metrics is the Queen's /metrics surface. Each Queen has its own, so two Queens in one
// process (the app and a test) never collide.
type metrics struct {
	registrations *counterVec
	heartbeats    *counterVec
	capFetches    *counterVec
	routed        *counterVec
	routeSeconds  *histogramVec
	spawnOrders   *counterVec

	states *registry // workers by state, counted at scrape time; set before serving
}

func newMetrics() *metrics {
	return &metrics{
		registrations: newCounterVec("beekeeper_queen_registrations_total",
			"Worker registrations, by result (ok, rejected).", "result"),
		heartbeats: newCounterVec("beekeeper_queen_heartbeats_total",
			"Worker heartbeats, by result (ok, unknown).", "result"),
		capFetches: newCounterVec("beekeeper_queen_capabilities_fetches_total",
			"Capabilities fetches after registration, by result (ok, failed).", "result"),
		routed: newCounterVec("beekeeper_queen_routed_requests_total",
			"Requests routed by the gateway, by model and HTTP status (or unreachable).", "model", "code"),
		routeSeconds: newHistogramVec("beekeeper_queen_routed_request_duration_seconds",
			"Duration of routed requests, from arrival to the end of the streamed answer.",
			exponentialBuckets(0.005, 2.5, 10), "model"),
		spawnOrders: newCounterVec("beekeeper_queen_spawn_orders_total",
			"Spawn order events, by result (created, taken, done, failed, cancelled, expired).", "result"),
	}
}

// registerStates exposes the registry's workers by state, counted at scrape time.
func (m *metrics) registerStates(r *registry) { m.states = r }

func (m *metrics) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var b bytes.Buffer
		m.write(&b)
		w.Header().Set("Content-Type", metricsContentType)
		w.Write(b.Bytes()) // an error means the scraper left: nobody to tell
	})
}

// family is one metric family of a scrape: its HELP and TYPE lines, then samples.
type family struct {
	name, help, typ string
	samples         func(b *bytes.Buffer)
}

// write renders every family, sorted by name.
func (m *metrics) write(b *bytes.Buffer) {
	fams := []family{
		m.registrations.family(), m.heartbeats.family(), m.capFetches.family(),
		m.routed.family(), m.routeSeconds.family(), m.spawnOrders.family(),
	}
	if m.states != nil {
		fams = append(fams, stateFamily(m.states))
	}
	fams = appendProcessFamilies(fams)
	fams = appendGoFamilies(fams)
	slices.SortFunc(fams, func(a, b family) int { return strings.Compare(a.name, b.name) })
	for _, f := range fams {
		start := b.Len()
		b.WriteString("# HELP ")
		b.WriteString(f.name)
		b.WriteByte(' ')
		helpEscaper.WriteString(b, f.help)
		b.WriteString("\n# TYPE ")
		b.WriteString(f.name)
		b.WriteByte(' ')
		b.WriteString(f.typ)
		b.WriteByte('\n')
		head := b.Len()
		if f.samples(b); b.Len() == head {
			b.Truncate(start) // no series yet: the family is left out, as client libraries do
		}
	}
}

func stateFamily(r *registry) family {
	return family{name: "beekeeper_queen_workers", help: "Workers known to the Queen, by state.", typ: "gauge",
		samples: func(b *bytes.Buffer) {
			counts := r.countByState()
			for _, s := range slices.Sorted(maps.Keys(counts)) {
				b.WriteString(`beekeeper_queen_workers{state="`)
				labelEscaper.WriteString(b, string(s))
				b.WriteString(`"} `)
				b.Write(strconv.AppendInt(b.AvailableBuffer(), int64(counts[s]), 10))
				b.WriteByte('\n')
			}
		}}
}

// valueFamily is a family of one unlabelled sample.
func valueFamily(name, help, typ string, v float64) family {
	return family{name: name, help: help, typ: typ, samples: func(b *bytes.Buffer) {
		b.WriteString(name)
		b.WriteByte(' ')
		writeFloat(b, v)
		b.WriteByte('\n')
	}}
}

// labelKey holds a series' label values in declaration order; a fixed array, so a lookup
// allocates nothing.
type labelKey [maxLabels]string

const maxLabels = 2

// desc names a labelled family and the order its labels are written in (by name).
type desc struct {
	name, help string
	labels     []string // as WithLabelValues takes them
	order      []int    // indexes into labels, sorted by label name
}

func newDesc(name, help string, labels []string) desc {
	if len(labels) > maxLabels {
		panic("metrics: " + name + " has more than " + strconv.Itoa(maxLabels) + " labels")
	}
	order := make([]int, len(labels))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(labels[a], labels[b]) })
	return desc{name: name, help: help, labels: labels, order: order}
}

// series is one label combination of a vec: its rendered labels and its value.
type series[T any] struct {
	sortKey labelKey // values in written (label-name) order
	labels  string   // `a="x",b="y"`, escaped
	v       *T
}

// vec is a family's series by label values, created on first use and never removed.
type vec[T any] struct {
	desc
	make func() *T

	mu     sync.RWMutex
	series map[labelKey]*series[T]
}

func (v *vec[T]) with(values []string) *T {
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
	s := v.series[k]
	v.mu.RUnlock()
	if s != nil {
		return s.v
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if s := v.series[k]; s != nil {
		return s.v
	}
	if len(v.series) >= maxSeries {
		for i := range v.labels {
			k[i] = overflowLabel
		}
		if s := v.series[k]; s != nil {
			return s.v
		}
	}
	s = &series[T]{v: v.make()}
	var lb strings.Builder
	for j, i := range v.order {
		s.sortKey[j] = k[i]
		if j > 0 {
			lb.WriteByte(',')
		}
		lb.WriteString(v.labels[i])
		lb.WriteString(`="`)
		lb.WriteString(labelEscaper.Replace(k[i]))
		lb.WriteByte('"')
	}
	s.labels = lb.String()
	v.series[k] = s
	return s.v
}

// sorted returns the series, sorted by label values in written order.
func (v *vec[T]) sorted() []*series[T] {
	v.mu.RLock()
	out := make([]*series[T], 0, len(v.series))
	for _, s := range v.series {
		out = append(out, s)
	}
	v.mu.RUnlock()
	slices.SortFunc(out, func(a, b *series[T]) int {
		for i := range a.sortKey {
			if c := strings.Compare(a.sortKey[i], b.sortKey[i]); c != 0 {
				return c
			}
		}
		return 0
	})
	return out
}

// counter is a monotonically increasing count.
type counter struct{ n atomic.Uint64 }

// Inc adds one.
func (c *counter) Inc() { c.n.Add(1) }

type counterVec struct{ vec[counter] }

func newCounterVec(name, help string, labels ...string) *counterVec {
	return &counterVec{vec[counter]{
		desc:   newDesc(name, help, labels),
		make:   func() *counter { return new(counter) },
		series: make(map[labelKey]*series[counter]),
	}}
}

// WithLabelValues returns the counter of these label values (in declaration order),
// creating it at zero.
func (v *counterVec) WithLabelValues(values ...string) *counter { return v.with(values) }

func (v *counterVec) family() family {
	return family{name: v.name, help: v.help, typ: "counter", samples: func(b *bytes.Buffer) {
		for _, s := range v.sorted() {
			writeSample(b, v.name, s.labels, "", "")
			b.Write(strconv.AppendUint(b.AvailableBuffer(), s.v.n.Load(), 10))
			b.WriteByte('\n')
		}
	}}
}

// histogram counts observations into buckets by upper bound, plus their sum.
type histogram struct {
	upper  []float64       // shared by the vec, ascending
	counts []atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sum    atomic.Uint64   // float64 bits
}

// Observe records one value.
func (h *histogram) Observe(v float64) {
	i, _ := slices.BinarySearch(h.upper, v) // the first bucket with v <= le; NaN lands in +Inf
	h.counts[i].Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

type histogramVec struct {
	vec[histogram]
	les []string // the upper bounds as written
}

func newHistogramVec(name, help string, buckets []float64, labels ...string) *histogramVec {
	if !slices.IsSorted(buckets) {
		panic("metrics: " + name + " buckets are not ascending")
	}
	les := make([]string, len(buckets)+1)
	for i, u := range buckets {
		var b bytes.Buffer
		writeFloat(&b, u)
		les[i] = b.String()
	}
	les[len(buckets)] = "+Inf"
	return &histogramVec{
		vec: vec[histogram]{
			desc: newDesc(name, help, labels),
			make: func() *histogram {
				return &histogram{upper: buckets, counts: make([]atomic.Uint64, len(buckets)+1)}
			},
			series: make(map[labelKey]*series[histogram]),
		},
		les: les,
	}
}

// WithLabelValues returns the histogram of these label values (in declaration order),
// creating it empty.
func (v *histogramVec) WithLabelValues(values ...string) *histogram { return v.with(values) }

// family writes cumulative buckets; _count is the +Inf bucket of the same read, so the
// two agree even while observations land.
func (v *histogramVec) family() family {
	return family{name: v.name, help: v.help, typ: "histogram", samples: func(b *bytes.Buffer) {
		for _, s := range v.sorted() {
			var cum uint64
			for i := range s.v.counts {
				cum += s.v.counts[i].Load()
				writeSample(b, v.name, s.labels, "_bucket", v.les[i])
				b.Write(strconv.AppendUint(b.AvailableBuffer(), cum, 10))
				b.WriteByte('\n')
			}
			writeSample(b, v.name, s.labels, "_sum", "")
			writeFloat(b, math.Float64frombits(s.v.sum.Load()))
			b.WriteByte('\n')
			writeSample(b, v.name, s.labels, "_count", "")
			b.Write(strconv.AppendUint(b.AvailableBuffer(), cum, 10))
			b.WriteByte('\n')
		}
	}}
}

// exponentialBuckets returns n upper bounds from start, each factor times the last.
func exponentialBuckets(start, factor float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = start
		start *= factor
	}
	return out
}

// writeSample writes a sample's name and labels up to the space before its value.
func writeSample(b *bytes.Buffer, name, labels, suffix, le string) {
	b.WriteString(name)
	b.WriteString(suffix)
	if labels != "" || le != "" {
		b.WriteByte('{')
		b.WriteString(labels)
		if le != "" {
			if labels != "" {
				b.WriteByte(',')
			}
			b.WriteString(`le="`)
			b.WriteString(le)
			b.WriteByte('"')
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
}

func writeFloat(b *bytes.Buffer, f float64) {
	switch {
	case math.IsNaN(f):
		b.WriteString("NaN")
	case math.IsInf(f, 1):
		b.WriteString("+Inf")
	case math.IsInf(f, -1):
		b.WriteString("-Inf")
	default:
		b.Write(strconv.AppendFloat(b.AvailableBuffer(), f, 'g', -1, 64))
	}
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

// The process gauges come from /proc; where there is none, they are left out.

const clockTicks = 100 // USER_HZ: /proc's unit for CPU times, 100 on every Linux ABI

// processStart is the process's start time in Unix seconds, read once.
var processStart = sync.OnceValues(func() (float64, bool) {
	st, ok := readProcStat()
	if !ok {
		return 0, false
	}
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(data)) {
		if v, found := strings.CutPrefix(line, "btime "); found {
			btime, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, false
			}
			return btime + st.startTicks/clockTicks, true
		}
	}
	return 0, false
})

type procStat struct {
	cpuTicks, startTicks, vsize, rssPages float64
}

// readProcStat reads /proc/self/stat (proc(5)): utime, stime, starttime, vsize, rss.
func readProcStat() (procStat, bool) {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return procStat{}, false
	}
	// The command name is in parentheses and may hold spaces: fields count from the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(string(data[i+1:])) // f[0] is field 3, state
	if len(f) < 22 {
		return procStat{}, false
	}
	num := func(field int) float64 {
		v, _ := strconv.ParseFloat(f[field-3], 64)
		return v
	}
	return procStat{
		cpuTicks:   num(14) + num(15),
		startTicks: num(22),
		vsize:      num(23),
		rssPages:   num(24),
	}, true
}

func appendProcessFamilies(fams []family) []family {
	if st, ok := readProcStat(); ok {
		fams = append(fams,
			valueFamily("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter", st.cpuTicks/clockTicks),
			valueFamily("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", st.rssPages*float64(os.Getpagesize())),
			valueFamily("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", st.vsize))
	}
	if start, ok := processStart(); ok {
		fams = append(fams, valueFamily("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "gauge", start))
	}
	if d, err := os.Open("/proc/self/fd"); err == nil {
		names, err := d.Readdirnames(-1)
		d.Close()
		if err == nil {
			fams = append(fams, valueFamily("process_open_fds", "Number of open file descriptors.", "gauge", float64(len(names))))
		}
	}
	if data, err := os.ReadFile("/proc/self/limits"); err == nil {
		for line := range strings.Lines(string(data)) {
			if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					if n, err := strconv.ParseFloat(f[0], 64); err == nil { // "unlimited" is left out
						fams = append(fams, valueFamily("process_max_fds", "Maximum number of open file descriptors.", "gauge", n))
					}
				}
			}
		}
	}
	return fams
}

// goGauges are the runtime/metrics samples exposed under client_golang's names.
var goGauges = []struct{ name, help, sample string }{
	{"go_goroutines", "Number of goroutines that currently exist.", "/sched/goroutines:goroutines"},
	{"go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and currently in use. Equals to /memory/classes/heap/objects:bytes.", "/memory/classes/heap/objects:bytes"},
	{"go_memstats_sys_bytes", "Number of bytes obtained from system. Equals to /memory/classes/total:bytes.", "/memory/classes/total:bytes"},
	{"go_sched_gomaxprocs_threads", "The current runtime.GOMAXPROCS setting. Sourced from /sched/gomaxprocs:threads.", "/sched/gomaxprocs:threads"},
}

func appendGoFamilies(fams []family) []family {
	samples := make([]runtimemetrics.Sample, len(goGauges))
	for i, g := range goGauges {
		samples[i].Name = g.sample
	}
	runtimemetrics.Read(samples)
	for i, g := range goGauges {
		var v float64
		switch samples[i].Value.Kind() {
		case runtimemetrics.KindUint64:
			v = float64(samples[i].Value.Uint64())
		case runtimemetrics.KindFloat64:
			v = samples[i].Value.Float64()
		default:
			continue // not in this runtime
		}
		fams = append(fams, valueFamily(g.name, g.help, "gauge", v))
	}
	return append(fams, family{name: "go_info", help: "Information about the Go environment.", typ: "gauge",
		samples: func(b *bytes.Buffer) {
			b.WriteString(`go_info{version="`)
			labelEscaper.WriteString(b, runtime.Version())
			b.WriteString("\"} 1\n")
		}})
}
