package queen

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics is the Queen's Prometheus surface, on its own registry so two Queens in one
// process (the app and a test) never collide.
type metrics struct {
	reg           *prometheus.Registry
	registrations *prometheus.CounterVec
	heartbeats    *prometheus.CounterVec
	capFetches    *prometheus.CounterVec
	routed        *prometheus.CounterVec
	routeSeconds  *prometheus.HistogramVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "beekeeper_queen_registrations_total",
			Help: "Worker registrations, by result (ok, rejected).",
		}, []string{"result"}),
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "beekeeper_queen_heartbeats_total",
			Help: "Worker heartbeats, by result (ok, unknown).",
		}, []string{"result"}),
		capFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "beekeeper_queen_capabilities_fetches_total",
			Help: "Capabilities fetches after registration, by result (ok, failed).",
		}, []string{"result"}),
		routed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "beekeeper_queen_routed_requests_total",
			Help: "Requests routed by the gateway, by model and HTTP status (or unreachable).",
		}, []string{"model", "code"}),
		routeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "beekeeper_queen_routed_request_duration_seconds",
			Help:    "Duration of routed requests, from arrival to the end of the streamed answer.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}, []string{"model"}),
	}
	m.reg.MustRegister(m.registrations, m.heartbeats, m.capFetches, m.routed, m.routeSeconds,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// registerStates exposes the registry's workers by state, counted at scrape time.
func (m *metrics) registerStates(r *registry) {
	m.reg.MustRegister(&stateCollector{r: r, desc: prometheus.NewDesc(
		"beekeeper_queen_workers", "Workers known to the Queen, by state.", []string{"state"}, nil)})
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

type stateCollector struct {
	r    *registry
	desc *prometheus.Desc
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	for state, n := range c.r.countByState() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), string(state))
	}
}
