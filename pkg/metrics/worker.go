package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-farm/warren/pkg/queue"
)

// WorkerSource is what the worker metrics read at scrape time (the worker's
// consumers).
type WorkerSource interface {
	// Routes are the model versions the worker serves.
	Routes() []queue.Route
	// Sync returns route r's sync counters, in-flight requests and handler slots.
	Sync(r queue.Route) (queue.ConsumerStats, int, int)
	// Jobs returns route r's job counters, running jobs and job slots; ok is false
	// when the job path is off.
	Jobs(r queue.Route) (st queue.JobConsumerStats, inflight, slots int, ok bool)
	// Connected, Draining and Sessions describe the sync consumer.
	Connected() bool
	Draining() bool
	Sessions() uint64
}

// Worker holds a worker process's metrics.
type Worker struct {
	vhost      string
	processing *prometheus.HistogramVec
	model      *prometheus.HistogramVec
	batchSize  *prometheus.HistogramVec
	fillWait   *prometheus.HistogramVec
	expired    *prometheus.CounterVec
	byQueue    sync.Map // queue → prometheus.Observer of processing
}

// BatchSizeBuckets are powers of two up to the largest max_batch_size.
var BatchSizeBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}

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

// NewWorker registers the worker metrics on reg; src is read at scrape time.
func NewWorker(reg prometheus.Registerer, vhost string, src WorkerSource) *Worker {
	w := &Worker{
		vhost: vhost,
		processing: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "worker_processing_duration_seconds", Buckets: LatencyBuckets,
			Help: "Requests and jobs a handler ran: from a handler taking the message to the handler returning.",
		}, routeLabels),
		model: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "worker_model_duration_seconds", Buckets: LatencyBuckets,
			Help: "Time inside the model's Predict call.",
		}, []string{"vhost", "model", "version"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "worker_batch_size", Buckets: BatchSizeBuckets,
			Help: "Requests in each batch a dynamic batcher sent to the model (expired ones dropped).",
		}, routeLabels),
		fillWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "worker_batch_fill_wait_seconds", Buckets: LatencyBuckets,
			Help: "How long each batch's first request waited for the batch to go to the model.",
		}, routeLabels),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "worker_batch_expired_total",
			Help: "Requests a dynamic batcher dropped, unanswered by the model, because their deadline passed before their batch went.",
		}, routeLabels),
	}
	consumed := desc("worker_messages_consumed_total", "Deliveries taken by a handler.", vhost, true)
	handled := desc("worker_messages_handled_total", "Deliveries by outcome.", vhost, true, "outcome")
	redelivered := desc("worker_redeliveries_total", "Deliveries the broker flagged redelivered.", vhost, true)
	inflight := desc("worker_in_flight", "Requests being handled.", vhost, true)
	slots := desc("worker_concurrency", "Handler slots of this worker for the model version (its concurrency).", vhost, true)
	jconsumed := desc("worker_jobs_consumed_total", "Job deliveries taken by a handler.", vhost, true)
	jhandled := desc("worker_jobs_handled_total", "Job deliveries by outcome.", vhost, true, "outcome")
	jinflight := desc("worker_jobs_in_flight", "Jobs running.", vhost, true)
	jslots := desc("worker_job_concurrency", "Job slots of this worker for the model version.", vhost, true)
	draining := desc("worker_draining", "1 while the worker drains after SIGTERM.", vhost, false)
	connected := desc("broker_connected", "1 while the AMQP session is up.", vhost, false)
	reconnects := desc("broker_reconnects_total", "AMQP sessions established after the first.", vhost, false)
	fc := &funcCollector{descs: []*prometheus.Desc{consumed, handled, redelivered, inflight, slots, jconsumed, jhandled, jinflight, jslots, draining, connected, reconnects},
		collect: func(ch chan<- prometheus.Metric) {
			for _, r := range src.Routes() {
				lv := []string{vhost, r.RequestQueue(), r.Model, r.Version}
				s, n, c := src.Sync(r)
				ch <- prometheus.MustNewConstMetric(consumed, prometheus.CounterValue, float64(s.Received), lv...)
				for _, o := range outcomes {
					ch <- prometheus.MustNewConstMetric(handled, prometheus.CounterValue, float64(o.get(&s)), append(lv, o.name)...)
				}
				ch <- prometheus.MustNewConstMetric(redelivered, prometheus.CounterValue, float64(s.Redelivered), lv...)
				ch <- prometheus.MustNewConstMetric(inflight, prometheus.GaugeValue, float64(n), lv...)
				ch <- prometheus.MustNewConstMetric(slots, prometheus.GaugeValue, float64(c), lv...)
				js, jn, jc, ok := src.Jobs(r)
				if !ok {
					continue
				}
				jl := []string{vhost, r.JobQueue(), r.Model, r.Version}
				ch <- prometheus.MustNewConstMetric(jconsumed, prometheus.CounterValue, float64(js.Received), jl...)
				for _, o := range jobOutcomes {
					ch <- prometheus.MustNewConstMetric(jhandled, prometheus.CounterValue, float64(o.get(&js)), append(jl, o.name)...)
				}
				ch <- prometheus.MustNewConstMetric(jinflight, prometheus.GaugeValue, float64(jn), jl...)
				ch <- prometheus.MustNewConstMetric(jslots, prometheus.GaugeValue, float64(jc), jl...)
			}
			ch <- prometheus.MustNewConstMetric(draining, prometheus.GaugeValue, b2f(src.Draining()))
			ch <- prometheus.MustNewConstMetric(connected, prometheus.GaugeValue, b2f(src.Connected()))
			ch <- prometheus.MustNewConstMetric(reconnects, prometheus.CounterValue, float64(max(src.Sessions(), 1)-1))
		}}
	reg.MustRegister(w.processing, w.model, w.batchSize, w.fillWait, w.expired, fc)
	return w
}

// Processed observes the time a handler took for one message of queue q (a
// queue.Observe callback's duration).
func (w *Worker) Processed(m *queue.Message, d time.Duration) {
	o, ok := w.byQueue.Load(m.Queue)
	if !ok {
		o, _ = w.byQueue.LoadOrStore(m.Queue, w.processing.WithLabelValues(w.vhost, m.Queue, m.Route.Model, m.Route.Version))
	}
	o.(prometheus.Observer).Observe(d.Seconds())
}

// ModelObserver returns the observer of model version r's Predict calls, resolved
// once.
func (w *Worker) ModelObserver(r queue.Route) prometheus.Observer {
	return w.model.WithLabelValues(w.vhost, r.Model, r.Version)
}

// Route creates model version r's histogram series at zero (call once per route at
// start). The batch series exist for every model, batching or not, so that a
// dashboard's query has a series for each (a model that does not batch never
// drops an expired request there).
func (w *Worker) Route(r queue.Route) {
	w.processing.WithLabelValues(w.vhost, r.RequestQueue(), r.Model, r.Version)
	w.model.WithLabelValues(w.vhost, r.Model, r.Version)
	w.Batches(r.RequestQueue(), r)
}

// BatchObserver receives one batcher's measurements (it implements batch.Observer).
type BatchObserver struct {
	size, wait, model prometheus.Observer
	expired           prometheus.Counter
}

// Batch observes a batch's size and fill wait.
func (o *BatchObserver) Batch(n int, fillWait time.Duration) {
	o.size.Observe(float64(n))
	o.wait.Observe(fillWait.Seconds())
}

// Expired counts requests dropped as expired.
func (o *BatchObserver) Expired(n int) { o.expired.Add(float64(n)) }

// Compute observes a batch's Predict time (worker_model_duration_seconds).
func (o *BatchObserver) Compute(d time.Duration) { o.model.Observe(d.Seconds()) }

// Batches returns the observer of model version r's batcher on queue q (its
// request queue or its job queue), creating its series at zero.
func (w *Worker) Batches(q string, r queue.Route) *BatchObserver {
	return &BatchObserver{size: w.batchSize.WithLabelValues(w.vhost, q, r.Model, r.Version),
		wait: w.fillWait.WithLabelValues(w.vhost, q, r.Model, r.Version), model: w.ModelObserver(r),
		expired: w.expired.WithLabelValues(w.vhost, q, r.Model, r.Version)}
}
