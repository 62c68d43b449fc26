package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/reason"
)

// Stage label values of warren_rpc_stage_duration_seconds.
const (
	StageQueueWait    = "queue_wait"
	StageCompute      = "compute"
	StageReplyTransit = "reply_transit"
)

// APISource is what the API metrics read at scrape time.
type APISource interface {
	// Routes are the model versions the API knows (its catalog).
	Routes() []queue.Route
	// Workers is a route's live consumer count, -1 while unknown.
	Workers(queue.Route) int
	// WorkersNeeded is a route's workers-needed estimate and whether there is one.
	WorkersNeeded(queue.Route) (int, bool)
	// Client is the sync client's state and counters.
	Client() (queue.State, queue.ClientStats)
}

// API holds the API process's farm metrics.
type API struct {
	vhost                 string
	rpc                   *prometheus.CounterVec
	duration, confirm     *prometheus.HistogramVec
	stages                *prometheus.HistogramVec
	slots                 *prometheus.GaugeVec
	jobSubmitted, jobDead prometheus.Counter
	jobFinished           map[jobs.Status]prometheus.Counter
	mu                    sync.Mutex
	routes                sync.Map // queue.Route → *Route
}

// Route holds one model version's call metrics, resolved once so the request path
// looks up no labels.
type Route struct {
	rpc                              [reason.ClientClosed + 1]prometheus.Counter // by reason.Reason (the Calls subset)
	duration, confirm                prometheus.Observer
	queueWait, compute, replyTransit prometheus.Observer
	slots                            prometheus.Gauge
}

// NewAPI registers the API metrics on reg; src is read at scrape time.
func NewAPI(reg prometheus.Registerer, vhost string, src APISource) *API {
	a := &API{
		vhost: vhost,
		rpc: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "rpc_requests_total",
			Help: "Calls to a model version, by outcome (the status contract's reason, ok, or client_closed).",
		}, append(routeLabels[:4:4], "reason")),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "rpc_duration_seconds", Buckets: LatencyBuckets,
			Help: "End-to-end time of calls that were published: publish to reply, error or deadline.",
		}, routeLabels),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "rpc_stage_duration_seconds", Buckets: LatencyBuckets,
			Help: "Answered calls split into queue_wait (publish to a worker taking it), compute (in the worker) and reply_transit (the rest). Queue wait and reply transit shift by the clock skew between API and worker hosts; their sum is exact.",
		}, append(routeLabels[:4:4], "stage")),
		confirm: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "publish_confirm_duration_seconds", Buckets: ConfirmBuckets,
			Help: "Publish to broker confirm (ack or nack) of request messages.",
		}, routeLabels),
		slots: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "worker_slots",
			Help: "Handler slots per worker for the model version (its concurrency) as last reported in a reply; 0 until the first reply.",
		}, routeLabels),
		jobSubmitted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "jobs_submitted_total", ConstLabels: prometheus.Labels{"vhost": vhost},
			Help: "Jobs stored and confirmed by the broker (202 answers, hand-offs included).",
		}),
		jobDead: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "jobs_dead_lettered_total", ConstLabels: prometheus.Labels{"vhost": vhost},
			Help: "Job messages the broker dead-lettered (over the delivery limit, or unreadable).",
		}),
		jobFinished: map[jobs.Status]prometheus.Counter{},
	}
	finished := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "jobs_finished_total", ConstLabels: prometheus.Labels{"vhost": vhost},
		Help: "Jobs that reached a final state, as applied by this API replica.",
	}, []string{"status"})
	for _, st := range []jobs.Status{jobs.Succeeded, jobs.Failed, jobs.Expired, jobs.Cancelled} {
		a.jobFinished[st] = finished.WithLabelValues(string(st))
	}

	consumers := desc("queue_consumers", "Consumers on the model version's request queue as the API last saw them (0 while unknown).", vhost, true)
	needed := desc("workers_needed", "Workers the model version's current demand needs (see docs/observability.md for the formula).", vhost, true)
	unknown := desc("replies_unknown_total", "Replies that matched no waiting call (late or duplicate).", vhost, false)
	connected := desc("broker_connected", "1 while the AMQP session is up.", vhost, false)
	reconnects := desc("broker_reconnects_total", "AMQP sessions established after the first.", vhost, false)
	blocked := desc("broker_blocked", "1 while the broker blocks publishers (memory or disk alarm).", vhost, false)
	fc := &funcCollector{descs: []*prometheus.Desc{consumers, needed, unknown, connected, reconnects, blocked},
		collect: func(ch chan<- prometheus.Metric) {
			for _, r := range src.Routes() {
				lv := []string{vhost, r.RequestQueue(), r.Model, r.Version}
				ch <- prometheus.MustNewConstMetric(consumers, prometheus.GaugeValue, float64(max(src.Workers(r), 0)), lv...)
				if n, ok := src.WorkersNeeded(r); ok {
					ch <- prometheus.MustNewConstMetric(needed, prometheus.GaugeValue, float64(n), lv...)
				}
			}
			st, stats := src.Client()
			ch <- prometheus.MustNewConstMetric(unknown, prometheus.CounterValue, float64(stats.UnknownReplies))
			ch <- prometheus.MustNewConstMetric(connected, prometheus.GaugeValue, b2f(st.Connected))
			ch <- prometheus.MustNewConstMetric(reconnects, prometheus.CounterValue, float64(max(stats.Sessions, 1)-1))
			ch <- prometheus.MustNewConstMetric(blocked, prometheus.GaugeValue, b2f(st.Blocked))
		}}
	reg.MustRegister(a.rpc, a.duration, a.stages, a.confirm, a.slots, fc, a.jobSubmitted, finished, a.jobDead)
	return a
}

// Route returns the metrics of model version r, creating its series (every call
// reason at zero) the first time.
func (a *API) Route(r queue.Route) *Route {
	if m, ok := a.routes.Load(r); ok {
		return m.(*Route)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if m, ok := a.routes.Load(r); ok {
		return m.(*Route)
	}
	lv := []string{a.vhost, r.RequestQueue(), r.Model, r.Version}
	m := &Route{
		duration:     a.duration.WithLabelValues(lv...),
		confirm:      a.confirm.WithLabelValues(lv...),
		queueWait:    a.stages.WithLabelValues(append(lv, StageQueueWait)...),
		compute:      a.stages.WithLabelValues(append(lv, StageCompute)...),
		replyTransit: a.stages.WithLabelValues(append(lv, StageReplyTransit)...),
		slots:        a.slots.WithLabelValues(lv...),
	}
	for _, rs := range reason.Calls() {
		m.rpc[rs] = a.rpc.WithLabelValues(append(lv, rs.String())...)
	}
	a.routes.Store(r, m)
	return m
}

// Call counts one call by reason (one of reason.Calls); published says whether it
// reached the broker, in which case its duration is observed too.
func (m *Route) Call(r reason.Reason, d time.Duration, published bool) {
	if c := m.rpc[r]; c != nil {
		c.Inc()
	}
	if published {
		m.duration.Observe(d.Seconds())
	}
}

// Reply observes an answered call's stages and the answering worker's slots.
func (m *Route) Reply(t queue.Timing) {
	if qw, comp, rt, ok := t.Stages(); ok {
		m.queueWait.Observe(qw.Seconds())
		m.compute.Observe(comp.Seconds())
		m.replyTransit.Observe(rt.Seconds())
	}
	if t.Slots > 0 {
		m.slots.Set(float64(t.Slots))
	}
}

// Confirm observes one publish → confirm latency.
func (m *Route) Confirm(d time.Duration) { m.confirm.Observe(d.Seconds()) }

// Submitted counts one job stored and confirmed (jobs.Observer).
func (a *API) Submitted() { a.jobSubmitted.Inc() }

// Finished counts one job reaching a final status (jobs.Observer).
func (a *API) Finished(s jobs.Status) {
	if c, ok := a.jobFinished[s]; ok {
		c.Inc()
	}
}

// DeadLettered counts one dead-lettered job message (jobs.Observer).
func (a *API) DeadLettered() { a.jobDead.Inc() }

// RegisterDeadLetters registers warren_jobs_dead_letters{vhost}: the dead
// letters waiting for an operator (replay or discard), read from the job
// store at scrape time by count. A failed count leaves the series out of that
// scrape rather than report a wrong number. Every replica reports the same
// shared number: aggregate with max, not sum.
func RegisterDeadLetters(reg prometheus.Registerer, vhost string, count func() (int, error)) {
	d := desc("jobs_dead_letters", "Dead-lettered jobs waiting for an operator (GET /admin/deadletters): failed with delivery_limit or attempts_exhausted, not replayed or discarded, within JOB_TTL.", vhost, false)
	reg.MustRegister(&funcCollector{descs: []*prometheus.Desc{d}, collect: func(ch chan<- prometheus.Metric) {
		if n, err := count(); err == nil {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(n))
		}
	}})
}
