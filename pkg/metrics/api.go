package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-farm/warren/pkg/queue"
)

// RPC outcome reasons: the status contract's reasons plus ok and client_closed.
const (
	ReasonOK                = "ok"
	ReasonNoWorkers         = "no_workers"
	ReasonQueueFull         = "queue_full"
	ReasonBrokerUnavailable = "broker_unavailable"
	ReasonDraining          = "draining"
	ReasonTimeout           = "timeout"
	ReasonModelError        = "model_error"
	ReasonClientClosed      = "client_closed"
)

// Reasons lists every value of warren_rpc_requests_total's reason label.
var Reasons = []string{ReasonOK, ReasonNoWorkers, ReasonQueueFull, ReasonBrokerUnavailable,
	ReasonDraining, ReasonTimeout, ReasonModelError, ReasonClientClosed}

// Stage label values of warren_rpc_stage_duration_seconds.
const (
	StageQueueWait    = "queue_wait"
	StageCompute      = "compute"
	StageReplyTransit = "reply_transit"
)

// ClientSource is what the API metrics read at scrape time (a *queue.Client).
type ClientSource interface {
	State() queue.State
	Stats() queue.ClientStats
}

// API holds the API process's farm metrics.
type API struct {
	jobSubmitted, jobDead            prometheus.Counter
	jobFinished                      map[string]prometheus.Counter
	rpc                              map[string]prometheus.Counter
	duration, confirm                prometheus.Observer
	queueWait, compute, replyTransit prometheus.Observer
	slots                            prometheus.Gauge
}

// JobStatuses are the final job states counted by warren_jobs_finished_total.
var JobStatuses = []string{"succeeded", "failed", "expired", "cancelled"}

// NewAPI registers the API metrics on reg: l names the sync request queue, jl the
// job queue. client is read at scrape time; workersNeeded, if not nil, backs the
// warren_workers_needed gauge.
func NewAPI(reg prometheus.Registerer, l, jl Labels, client ClientSource, workersNeeded func() float64) *API {
	cl := prometheus.Labels{"vhost": l.Vhost, "queue": l.Queue}
	jcl := prometheus.Labels{"vhost": jl.Vhost, "queue": jl.Queue}
	jobSubmitted := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "jobs_submitted_total", ConstLabels: jcl,
		Help: "Jobs stored and confirmed by the broker (202 answers, hand-offs included).",
	})
	jobFinished := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "jobs_finished_total", ConstLabels: jcl,
		Help: "Jobs that reached a final state, as applied by this API replica.",
	}, []string{"status"})
	jobDead := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "jobs_dead_lettered_total", ConstLabels: jcl,
		Help: "Job messages the broker dead-lettered (over the delivery limit, or unreadable).",
	})
	rpc := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "rpc_requests_total", ConstLabels: cl,
		Help: "Calls that tried the farm, by outcome (the status contract's reason, ok, or client_closed).",
	}, []string{"reason"})
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "rpc_duration_seconds", ConstLabels: cl, Buckets: LatencyBuckets,
		Help: "End-to-end time of calls that were published: publish to reply, error or deadline.",
	})
	stages := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "rpc_stage_duration_seconds", ConstLabels: cl, Buckets: LatencyBuckets,
		Help: "Answered calls split into queue_wait (publish to a worker taking it), compute (in the worker) and reply_transit (the rest). Queue wait and reply transit shift by the clock skew between API and worker hosts; their sum is exact.",
	}, []string{"stage"})
	confirm := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "publish_confirm_duration_seconds", ConstLabels: cl, Buckets: ConfirmBuckets,
		Help: "Publish to broker confirm (ack or nack) of request messages.",
	})
	slots := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "worker_slots", ConstLabels: cl,
		Help: "Handler slots per worker (CONCURRENCY) as last reported in a reply; 0 until the first reply.",
	})
	a := &API{
		jobSubmitted: jobSubmitted, jobDead: jobDead, jobFinished: map[string]prometheus.Counter{},
		rpc: map[string]prometheus.Counter{}, duration: duration, confirm: confirm, slots: slots,
		queueWait: stages.WithLabelValues(StageQueueWait), compute: stages.WithLabelValues(StageCompute),
		replyTransit: stages.WithLabelValues(StageReplyTransit),
	}
	for _, r := range Reasons {
		a.rpc[r] = rpc.WithLabelValues(r)
	}
	for _, st := range JobStatuses {
		a.jobFinished[st] = jobFinished.WithLabelValues(st)
	}

	unknown := desc("replies_unknown_total", "Replies that matched no waiting call (late or duplicate).", nil, l, true)
	consumers := desc("queue_consumers", "Consumers on the request queue as the API last saw them (0 while unknown).", nil, l, true)
	connected := desc("broker_connected", "1 while the AMQP session is up.", nil, l, false)
	reconnects := desc("broker_reconnects_total", "AMQP sessions established after the first.", nil, l, false)
	blocked := desc("broker_blocked", "1 while the broker blocks publishers (memory or disk alarm).", nil, l, false)
	fc := &funcCollector{descs: []*prometheus.Desc{unknown, consumers, connected, reconnects, blocked},
		collect: func(ch chan<- prometheus.Metric) {
			st, stats := client.State(), client.Stats()
			ch <- prometheus.MustNewConstMetric(unknown, prometheus.CounterValue, float64(stats.UnknownReplies))
			ch <- prometheus.MustNewConstMetric(consumers, prometheus.GaugeValue, float64(max(st.Workers, 0)))
			ch <- prometheus.MustNewConstMetric(connected, prometheus.GaugeValue, b2f(st.Connected))
			ch <- prometheus.MustNewConstMetric(reconnects, prometheus.CounterValue, float64(max(stats.Sessions, 1)-1))
			ch <- prometheus.MustNewConstMetric(blocked, prometheus.GaugeValue, b2f(st.Blocked))
		}}
	reg.MustRegister(rpc, duration, stages, confirm, slots, fc, jobSubmitted, jobFinished, jobDead)
	if workersNeeded != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "workers_needed", ConstLabels: cl,
			Help: "Workers the current demand needs (see the README's formula).",
		}, workersNeeded))
	}
	return a
}

// Call counts one call by reason; published says whether it reached the broker, in
// which case its duration is observed too.
func (a *API) Call(reason string, d time.Duration, published bool) {
	c, ok := a.rpc[reason]
	if !ok {
		c = a.rpc[ReasonModelError]
	}
	c.Inc()
	if published {
		a.duration.Observe(d.Seconds())
	}
}

// Reply observes an answered call's stages and the answering worker's slots.
func (a *API) Reply(t queue.Timing) {
	if qw, comp, rt, ok := t.Stages(); ok {
		a.queueWait.Observe(qw.Seconds())
		a.compute.Observe(comp.Seconds())
		a.replyTransit.Observe(rt.Seconds())
	}
	if t.Slots > 0 {
		a.slots.Set(float64(t.Slots))
	}
}

// Confirm observes one publish → confirm latency (a queue.ClientConfig.OnConfirm).
func (a *API) Confirm(d time.Duration) { a.confirm.Observe(d.Seconds()) }

// JobSubmitted counts one job stored and confirmed.
func (a *API) JobSubmitted() { a.jobSubmitted.Inc() }

// JobFinished counts one job reaching a final status.
func (a *API) JobFinished(status string) {
	if c, ok := a.jobFinished[status]; ok {
		c.Inc()
	}
}

// JobDeadLettered counts one dead-lettered job message.
func (a *API) JobDeadLettered() { a.jobDead.Inc() }
