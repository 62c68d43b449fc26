package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-farm/warren/pkg/queue"
)

// ConsumerSource is what the worker metrics read at scrape time (a *queue.Consumer).
type ConsumerSource interface {
	Stats() queue.ConsumerStats
	InFlight() int
	Connected() bool
	Draining() bool
	Concurrency() int
}

// Worker holds a worker process's metrics.
type Worker struct {
	processing, model prometheus.Observer
}

// Outcome label values of warren_worker_messages_handled_total, each read from the
// matching queue.ConsumerStats counter.
var outcomes = []struct {
	name string
	get  func(*queue.ConsumerStats) uint64
}{
	{"ok", func(s *queue.ConsumerStats) uint64 { return s.OK }},
	{"error", func(s *queue.ConsumerStats) uint64 { return s.Failed }},
	{"expired", func(s *queue.ConsumerStats) uint64 { return s.Expired }},
	{"timed_out", func(s *queue.ConsumerStats) uint64 { return s.TimedOut }},
	{"orphaned", func(s *queue.ConsumerStats) uint64 { return s.Orphaned }},
	{"replayed", func(s *queue.ConsumerStats) uint64 { return s.Replayed }},
	{"rejected", func(s *queue.ConsumerStats) uint64 { return s.Rejected }},
	{"requeued", func(s *queue.ConsumerStats) uint64 { return s.Requeued }},
	{"reply_failed", func(s *queue.ConsumerStats) uint64 { return s.ReplyFailed }},
}

// NewWorker registers the worker metrics on reg; c is read at scrape time.
func NewWorker(reg prometheus.Registerer, l Labels, c ConsumerSource) *Worker {
	cl := prometheus.Labels{"vhost": l.Vhost, "queue": l.Queue}
	processing := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "worker_processing_duration_seconds", ConstLabels: cl, Buckets: LatencyBuckets,
		Help: "Requests the model ran for: a handler taking the delivery to its reply published and acked.",
	})
	model := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "worker_model_duration_seconds", ConstLabels: cl, Buckets: LatencyBuckets,
		Help: "Time inside the model's Predict call.",
	})

	consumed := desc("worker_messages_consumed_total", "Deliveries taken by a handler.", nil, l, true)
	handled := desc("worker_messages_handled_total", "Deliveries by outcome.", []string{"outcome"}, l, true)
	redelivered := desc("worker_redeliveries_total", "Deliveries the broker flagged redelivered.", nil, l, true)
	inflight := desc("worker_in_flight", "Requests being handled.", nil, l, true)
	slots := desc("worker_concurrency", "Handler slots of this worker (CONCURRENCY).", nil, l, true)
	draining := desc("worker_draining", "1 while the worker drains after SIGTERM.", nil, l, false)
	connected := desc("broker_connected", "1 while the AMQP session is up.", nil, l, false)
	reconnects := desc("broker_reconnects_total", "AMQP sessions established after the first.", nil, l, false)
	fc := &funcCollector{descs: []*prometheus.Desc{consumed, handled, redelivered, inflight, slots, draining, connected, reconnects},
		collect: func(ch chan<- prometheus.Metric) {
			s := c.Stats()
			ch <- prometheus.MustNewConstMetric(consumed, prometheus.CounterValue, float64(s.Received))
			for _, o := range outcomes {
				ch <- prometheus.MustNewConstMetric(handled, prometheus.CounterValue, float64(o.get(&s)), o.name)
			}
			ch <- prometheus.MustNewConstMetric(redelivered, prometheus.CounterValue, float64(s.Redelivered))
			ch <- prometheus.MustNewConstMetric(inflight, prometheus.GaugeValue, float64(c.InFlight()))
			ch <- prometheus.MustNewConstMetric(slots, prometheus.GaugeValue, float64(c.Concurrency()))
			ch <- prometheus.MustNewConstMetric(draining, prometheus.GaugeValue, b2f(c.Draining()))
			ch <- prometheus.MustNewConstMetric(connected, prometheus.GaugeValue, b2f(c.Connected()))
			ch <- prometheus.MustNewConstMetric(reconnects, prometheus.CounterValue, float64(max(s.Sessions, 1)-1))
		}}
	reg.MustRegister(processing, model, fc)
	return &Worker{processing: processing, model: model}
}

// Processed observes a request's processing time (a queue.ConsumerConfig.OnProcessed).
func (w *Worker) Processed(d time.Duration) { w.processing.Observe(d.Seconds()) }

// Model observes one model call.
func (w *Worker) Model(d time.Duration) { w.model.Observe(d.Seconds()) }

// JobSource is what the job metrics read at scrape time (a *queue.JobConsumer).
type JobSource interface {
	Stats() queue.JobConsumerStats
	InFlight() int
	Concurrency() int
}

var jobOutcomes = []struct {
	name string
	get  func(*queue.JobConsumerStats) uint64
}{
	{"succeeded", func(s *queue.JobConsumerStats) uint64 { return s.Succeeded }},
	{"failed", func(s *queue.JobConsumerStats) uint64 { return s.Failed }},
	{"retried", func(s *queue.JobConsumerStats) uint64 { return s.Retried }},
	{"expired", func(s *queue.JobConsumerStats) uint64 { return s.Expired }},
	{"cancelled", func(s *queue.JobConsumerStats) uint64 { return s.Cancelled }},
	{"rejected", func(s *queue.JobConsumerStats) uint64 { return s.Rejected }},
	{"requeued", func(s *queue.JobConsumerStats) uint64 { return s.Requeued }},
}

// NewWorkerJobs registers the job consumer's metrics on reg (l names the job queue).
func NewWorkerJobs(reg prometheus.Registerer, l Labels, c JobSource) {
	consumed := desc("worker_jobs_consumed_total", "Job deliveries taken by a handler.", nil, l, true)
	handled := desc("worker_jobs_handled_total", "Job deliveries by outcome.", []string{"outcome"}, l, true)
	inflight := desc("worker_jobs_in_flight", "Jobs running.", nil, l, true)
	slots := desc("worker_job_concurrency", "Job slots of this worker (JOB_CONCURRENCY).", nil, l, true)
	reg.MustRegister(&funcCollector{descs: []*prometheus.Desc{consumed, handled, inflight, slots},
		collect: func(ch chan<- prometheus.Metric) {
			s := c.Stats()
			ch <- prometheus.MustNewConstMetric(consumed, prometheus.CounterValue, float64(s.Received))
			for _, o := range jobOutcomes {
				ch <- prometheus.MustNewConstMetric(handled, prometheus.CounterValue, float64(o.get(&s)), o.name)
			}
			ch <- prometheus.MustNewConstMetric(inflight, prometheus.GaugeValue, float64(c.InFlight()))
			ch <- prometheus.MustNewConstMetric(slots, prometheus.GaugeValue, float64(c.Concurrency()))
		}})
}
