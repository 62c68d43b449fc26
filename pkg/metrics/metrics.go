// Package metrics defines warren's Prometheus metrics: the API's ([NewAPI]), the
// worker's ([NewWorker]) and the HTTP metrics both serve ([NewHTTP]). Every
// collector is registered on a registry passed in by the caller ([NewRegistry]
// makes one with the Go and process collectors and warren_build_info), never the
// global one.
//
// # Labels
//
// Every series about a model version carries vhost, queue, model and version (one
// route: a model version and its queue). vhost and queue have the values RabbitMQ's
// prometheus plugin uses, so farm series join the broker's per-queue series
// (rabbitmq_detailed_queue_*{vhost,queue}); queue is the version's request queue
// (warren.req.<model>.v<n>), or its job queue (warren.job.<model>.v<n>) for the
// worker's job series and for job runs in warren_worker_processing_duration_seconds.
// Not per route: warren_worker_model_duration_seconds is labelled vhost, model and
// version only; the API's job counters (submitted, finished by status,
// dead-lettered) and the connection series carry vhost alone. Models come
// from the workers' repositories (announced, bounded by the API's catalog), never
// from request paths; HTTP series are labelled by route template, with unmatched
// paths and unusual methods collapsed.
//
// # Zeros
//
// A route's series are created when the process learns the route ([API.Route],
// [Worker.Route]), with every bounded label value (each call reason, each outcome)
// at zero, so a dashboard panel shows 0 instead of "no data" before the first
// event.
//
// # Cost
//
// Counters that the queue package already keeps (sessions, replies, per-outcome
// handling counts) are not duplicated on the hot path: they are read from its
// Stats at scrape time. Histograms are observed directly; a route's observers are
// resolved once, so the request path looks up no labels.
package metrics

import (
	"net/http"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every warren metric.
const Namespace = "warren"

// routeLabels are the labels of every per-model-version series: the vhost and
// queue (the same values as RabbitMQ's prometheus plugin, so farm series join the
// broker's per-queue series) and the model and version. Models come from the
// workers' repositories (announced, bounded by the API's catalog), never from
// request paths.
var routeLabels = []string{"vhost", "queue", "model", "version"}

// Latency buckets, in seconds: sub-millisecond broker round trips up to the longest
// allowed request timeout.
var (
	LatencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	// ConfirmBuckets are finer: a publisher confirm takes well under a millisecond here.
	ConfirmBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}
)

// NewRegistry returns a registry with the Go runtime and process collectors and
// warren_build_info{version, goversion, role}.
func NewRegistry(role, version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if version == "" {
		version = "dev"
	}
	bi := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help:        "Always 1; labels say which build and role this process is.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version(), "role": role},
	})
	bi.Set(1)
	reg.MustRegister(bi)
	return reg
}

// Handler serves reg in the Prometheus text or OpenMetrics format.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true})
}

// funcCollector exports values read at scrape time (counters and gauges kept by other
// packages as atomics), so the hot path pays nothing for them.
type funcCollector struct {
	descs   []*prometheus.Desc
	collect func(ch chan<- prometheus.Metric)
}

func (f *funcCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range f.descs {
		ch <- d
	}
}

func (f *funcCollector) Collect(ch chan<- prometheus.Metric) { f.collect(ch) }

// desc describes a series exported at scrape time: per route when route is set
// (labels vhost, queue, model, version, then variable), else with a constant vhost.
func desc(name, help string, vhost string, route bool, variable ...string) *prometheus.Desc {
	if route {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, append(routeLabels[:4:4], variable...), nil)
	}
	return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, variable, prometheus.Labels{"vhost": vhost})
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
