package queen

import (
	"bytes"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
)

// BenchmarkMetricsLibraries compares the two maintained libraries the Queen could write
// /metrics with, on the Queen's own families: VictoriaMetrics/metrics as the Queen uses
// it (newMetrics), and prometheus/client_golang set up the same way (its own registry,
// with its Go and process collectors). "observe" is one routed request counted on an
// existing series plus its duration; "scrape" one text exposition of everything. The
// binary and per-worker memory figures are in docs/queen.md#metrics.
func BenchmarkMetricsLibraries(b *testing.B) {
	models := []string{"stories260K", "stories15M", "unknown"}
	codes := []string{"200", "404", "503", "unreachable"}

	b.Run("victoriametrics", func(b *testing.B) {
		m := newMetrics()
		m.registerStates(newRegistry(time.Now, testInterval, time.Minute, DefaultMaxWorkers))
		for _, c := range []*counterVec{m.registrations, m.heartbeats, m.capFetches, m.spawnOrders} {
			c.WithLabelValues("ok").Inc()
		}
		for _, model := range models {
			for _, code := range codes {
				m.routed.WithLabelValues(model, code).Inc()
			}
			m.routeSeconds.WithLabelValues(model).Observe(0.3)
		}
		b.Run("observe", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.routed.WithLabelValues("stories260K", "200").Inc()
				m.routeSeconds.WithLabelValues("stories260K").Observe(0.3)
			}
		})
		b.Run("scrape", func(b *testing.B) {
			var buf bytes.Buffer
			b.ReportAllocs()
			for b.Loop() {
				buf.Reset()
				m.write(&buf)
			}
			b.ReportMetric(float64(buf.Len()), "bytes/scrape")
		})
	})

	b.Run("client_golang", func(b *testing.B) {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		routed := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "beekeeper_queen_routed_requests_total",
			Help: "Requests routed by the gateway, by model and HTTP status (or unreachable)."}, []string{"model", "code"})
		seconds := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "beekeeper_queen_routed_request_duration_seconds",
			Help: "Duration of routed requests.", Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10)}, []string{"model"})
		workers := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "beekeeper_queen_workers",
			Help: "Workers known to the Queen, by state."}, []string{"state"})
		reg.MustRegister(routed, seconds, workers)
		for _, name := range []string{"registrations", "heartbeats", "capabilities_fetches", "spawn_orders"} {
			c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "beekeeper_queen_" + name + "_total", Help: name}, []string{"result"})
			reg.MustRegister(c)
			c.WithLabelValues("ok").Inc()
		}
		for _, s := range []string{"registered", "online", "stale", "offline"} {
			workers.WithLabelValues(s).Set(0)
		}
		for _, model := range models {
			for _, code := range codes {
				routed.WithLabelValues(model, code).Inc()
			}
			seconds.WithLabelValues(model).Observe(0.3)
		}
		b.Run("observe", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				routed.WithLabelValues("stories260K", "200").Inc()
				seconds.WithLabelValues("stories260K").Observe(0.3)
			}
		})
		b.Run("scrape", func(b *testing.B) {
			var buf bytes.Buffer
			b.ReportAllocs()
			for b.Loop() {
				buf.Reset()
				mfs, err := reg.Gather()
				if err != nil {
					b.Fatal(err)
				}
				enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
				for _, mf := range mfs {
					if err := enc.Encode(mf); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(buf.Len()), "bytes/scrape")
		})
	})
}
