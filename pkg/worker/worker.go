// Package worker is warren's predictor worker: it loads the model versions of its
// model repository, consumes each one's request queue (warren.req.<model>.v<n>) and,
// where the version's JobConcurrency is above zero, its job queue
// (warren.job.<model>.v<n>), runs the model and replies, announces what it serves
// to the API replicas, and serves the seed lab's Service B endpoints (GET /,
// /health, /ready, POST /predict) and /metrics on its own HTTP port.
//
// Requests and jobs go through one handler per model version: decode the v2
// request, validate it against the version's metadata, Predict (span "predict
// <model>"), select the outputs, encode the v2 response. Its errors carry the
// reason of the error reply: bad_input (the input, or a remote server's 4xx),
// timeout (the model gave up), model_error (anything else); a request whose
// deadline passed is not answered.
//
// A version with MaxBatchSize above 1 computes in batches (package batch): its
// handlers hand their request to the version's batcher (one for requests, one for
// jobs) and wait for their own answer, so the consumer still replies and acks each
// message on its own. A request dropped by the batcher because its deadline passed
// while it waited is answered with a timeout. The drain flushes the batchers'
// waiting batches at once.
//
// Workers are stateless: any number may run against the same queues, and the
// number running per model sets that model's throughput.
//
// # Lifecycle
//
// [Worker.Run] serves HTTP at once (liveness), then loads every model version
// concurrently and runs one warm-up inference on each. A backend that is unavailable
// (model.ErrUnavailable, such as a remote model server that is down) and a failed
// warm-up are retried with backoff (Config.LoadRetry, doubling up to 30s); any other
// load failure ends Run with an error wrapping [ErrModel] (cmd/worker exits 2). Each
// version's queues are consumed as soon as that version is warm, so a model that
// cannot load yet does not keep the others unserved; once every version is, the
// worker becomes Ready ([Worker.Ready] closed) and announces "ready". GET /ready
// lists each version's status (loading, warming, ready, failed, with the problem)
// and answers 200 only while the worker is ready and its consumer connected, else
// 503.
//
// It drains when its context ends or [Worker.Stop] is called, or at once when the
// HTTP server fails: consumers stop taking work and finish what they hold (within
// DrainTimeout), the announcer says "leaving", the HTTP server stops, the models are
// closed — in that order, last opened first closed.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-farm/warren/internal/lifecycle"
	"github.com/warren-farm/warren/pkg/batch"
	"github.com/warren-farm/warren/pkg/httperr"
	"github.com/warren-farm/warren/pkg/metrics"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/oip"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/tracing"
)

// Defaults of [Config].
const (
	DefaultAnnounceInterval = 10 * time.Second
	DefaultLoadRetry        = time.Second
	maxLoadRetry            = 30 * time.Second
	warmupTimeout           = 30 * time.Second
	// maxBatchSlots bounds MaxBatchSize × concurrency: the prefetch count is 16 bits.
	maxBatchSlots = 65535
)

// ErrModel wraps a model that cannot be loaded (not merely unavailable now): the
// process should exit with a configuration error.
var ErrModel = errors.New("model cannot be loaded")

// ModelSpec is one model version the worker serves.
type ModelSpec struct {
	Route queue.Route
	// Concurrency is the number of the version's requests computed at once; zero
	// means queue.DefaultConcurrency.
	Concurrency int
	// Prefetch is the unacked requests the broker may push for the version; zero
	// means Concurrency.
	Prefetch int
	// JobConcurrency is the number of its jobs run at once; zero turns its job path
	// off on this worker.
	JobConcurrency int
	// MaxBatchSize is the largest batch of requests one Predict call gets; above 1
	// the version's requests and jobs go through a dynamic batcher (package
	// batch), with MaxBatchSize × Concurrency handler slots and prefetch per path.
	MaxBatchSize int
	// MaxBatchDelay is how long a batch may wait to fill after its first request
	// arrived (batching only); zero sends whatever is already waiting at once.
	MaxBatchDelay time.Duration
	// Load builds the predictor. An error wrapping model.ErrUnavailable is retried
	// with backoff; any other fails the worker.
	Load func(ctx context.Context) (model.Predictor, error)
}

// JobsConfig configures the job path (see queue.JobConsumerConfig).
type JobsConfig struct {
	MaxAttempts                   int
	RetryBackoff, RetryBackoffMax time.Duration
	RunTimeout                    time.Duration
}

// Config configures a worker process.
type Config struct {
	// AMQP says how to reach the broker (URL, heartbeat, backoff). Each connection
	// gets its own connection name.
	AMQP queue.DialConfig
	// WorkerID is echoed in every reply and announcement; required.
	WorkerID string
	// Models are the model versions served; at least one.
	Models []ModelSpec
	// DrainTimeout bounds how long in-flight work may run after a stop; zero means
	// queue.DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Jobs configures the job path of every model with a JobConcurrency.
	Jobs JobsConfig
	// AnnounceInterval is how often the worker announces its models; zero means
	// DefaultAnnounceInterval.
	AnnounceInterval time.Duration
	// BodyLimit caps POST /predict bodies; zero means httperr.DefaultBodyLimit.
	BodyLimit int64
	// Limits bound the inference requests the worker decodes.
	Limits oip.Limits
	// LoadRetry is the first delay before loading an unavailable model again; it
	// doubles up to 30s. Zero means DefaultLoadRetry.
	LoadRetry time.Duration
	// Registry receives the worker's metrics, served on GET /metrics; nil means a new
	// registry of its own (metrics.NewRegistry).
	Registry *prometheus.Registry
	// Tracing, if enabled, continues the caller's trace from the message headers with
	// queue-wait, process and model spans; nil disables.
	Tracing *tracing.Tracing
	// Logger; nil discards.
	Logger *slog.Logger
}

// served is one model version at run time.
type served struct {
	spec    ModelSpec
	pred    model.Predictor // set once loaded, before ready
	md      model.Metadata
	modelMx prometheus.Observer
	// concurrency and jobConcurrency are the Predict calls at once on each path.
	concurrency, jobConcurrency int
	// batchers are set once the model is warm, before its queues are consumed, when
	// MaxBatchSize > 1: one per path, so each keeps its own compute slots.
	syncBatch, jobBatch atomic.Pointer[batch.Batcher]
	warmup              time.Duration // the warm-up inference's time: the batchers' first compute estimate
	mu                  sync.Mutex
	status              string // "loading", "warming", "ready", "failed"
	problem             string
}

func (s *served) set(status, problem string) {
	s.mu.Lock()
	s.status, s.problem = status, problem
	s.mu.Unlock()
}

func (s *served) get() (string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status, s.problem
}

// Worker ties the consumers, the models, the announcer and an HTTP server together.
type Worker struct {
	lifecycle.Lifecycle
	cfg       Config
	log       *slog.Logger
	models    []*served
	byRoute   map[queue.Route]*served
	consumer  *queue.Consumer
	jobs      *queue.JobConsumer // nil when no model runs jobs here
	announcer *queue.Announcer
	metrics   *metrics.Worker
	echo      *echo.Echo
	vhost     string
}

// New validates cfg and builds the worker. It opens nothing: connections, models
// and the listener are Run's.
func New(cfg Config) (*Worker, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BodyLimit == 0 {
		cfg.BodyLimit = httperr.DefaultBodyLimit
	}
	if cfg.AnnounceInterval == 0 {
		cfg.AnnounceInterval = DefaultAnnounceInterval
	}
	if cfg.LoadRetry == 0 {
		cfg.LoadRetry = DefaultLoadRetry
	}
	if cfg.Registry == nil {
		cfg.Registry = metrics.NewRegistry("worker", "")
	}
	cfg.AMQP.Logger = cfg.Logger
	var errs []error
	if len(cfg.Models) == 0 {
		errs = append(errs, errors.New("worker: no models to serve"))
	}
	if cfg.WorkerID == "" {
		errs = append(errs, errors.New("worker: WorkerID is required"))
	}
	if cfg.BodyLimit < 0 || cfg.AnnounceInterval < 0 || cfg.LoadRetry < 0 {
		errs = append(errs, errors.New("worker: BodyLimit, AnnounceInterval and LoadRetry must not be negative"))
	}
	vhost, err := queue.Vhost(cfg.AMQP.URL)
	if err != nil {
		errs = append(errs, fmt.Errorf("worker: AMQP URL: %w", err))
	}
	w := &Worker{cfg: cfg, log: cfg.Logger, byRoute: map[queue.Route]*served{}, vhost: vhost}
	w.Init(cfg.Logger)
	w.metrics = metrics.NewWorker(cfg.Registry, vhost, source{w})
	var routes, jobRoutes []queue.RouteConfig
	for _, spec := range cfg.Models {
		if spec.Load == nil {
			errs = append(errs, fmt.Errorf("worker: model %s: nil Load", spec.Route))
			continue
		}
		s := &served{spec: spec, status: "loading", modelMx: w.metrics.ModelObserver(spec.Route),
			concurrency: spec.Concurrency, jobConcurrency: spec.JobConcurrency}
		if s.concurrency == 0 {
			s.concurrency = queue.DefaultConcurrency
		}
		if spec.MaxBatchSize < 0 || spec.MaxBatchDelay < 0 {
			errs = append(errs, fmt.Errorf("worker: model %s: MaxBatchSize and MaxBatchDelay must not be negative", spec.Route))
			continue
		}
		// A batching model takes MaxBatchSize × concurrency messages at once, and
		// AMQP's prefetch count is 16 bits.
		if n := spec.MaxBatchSize * max(s.concurrency, spec.JobConcurrency); spec.MaxBatchSize > 1 && n > maxBatchSlots {
			errs = append(errs, fmt.Errorf("worker: model %s: max_batch_size %d × concurrency %d = %d messages in flight, more than %d (AMQP's prefetch limit): lower one of them",
				spec.Route, spec.MaxBatchSize, max(s.concurrency, spec.JobConcurrency), n, maxBatchSlots))
			continue
		}
		if _, dup := w.byRoute[spec.Route]; dup {
			errs = append(errs, fmt.Errorf("worker: model %s given twice", spec.Route))
			continue
		}
		w.models = append(w.models, s)
		w.byRoute[spec.Route] = s
		w.metrics.Route(spec.Route)
		// A batching model needs a handler slot (and a prefetched message) for every
		// item of every batch it may compute at once: the handlers wait in the batcher.
		slots, prefetch, jobSlots := spec.Concurrency, spec.Prefetch, spec.JobConcurrency
		if spec.MaxBatchSize > 1 {
			slots, jobSlots = s.concurrency*spec.MaxBatchSize, s.jobConcurrency*spec.MaxBatchSize
			prefetch = max(prefetch, slots)
		}
		routes = append(routes, queue.RouteConfig{Route: spec.Route, Handler: w.handler(s, &s.syncBatch), Concurrency: slots,
			Prefetch: prefetch, Disabled: true})
		if spec.JobConcurrency > 0 {
			jobRoutes = append(jobRoutes, queue.RouteConfig{Route: spec.Route, Handler: w.handler(s, &s.jobBatch), Concurrency: jobSlots,
				Disabled: true})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	mw := queue.Standard(cfg.Logger, cfg.Tracing, func(m *queue.Message, _ queue.Outcome, d time.Duration) { w.metrics.Processed(m, d) })
	if w.consumer, err = queue.NewConsumer(queue.ConsumerConfig{DialConfig: cfg.AMQP, WorkerID: cfg.WorkerID,
		Routes: routes, Middleware: mw, DrainTimeout: cfg.DrainTimeout}); err != nil {
		return nil, err
	}
	if len(jobRoutes) > 0 {
		jc := queue.JobConsumerConfig{DialConfig: cfg.AMQP, WorkerID: cfg.WorkerID, Routes: jobRoutes, Middleware: mw,
			MaxAttempts: cfg.Jobs.MaxAttempts, RetryBackoff: cfg.Jobs.RetryBackoff, RetryBackoffMax: cfg.Jobs.RetryBackoffMax,
			RunTimeout: cfg.Jobs.RunTimeout, DrainTimeout: cfg.DrainTimeout}
		if w.jobs, err = queue.NewJobConsumer(jc); err != nil {
			return nil, err
		}
	}
	if w.announcer, err = queue.NewAnnouncer(queue.AnnouncerConfig{DialConfig: cfg.AMQP, Interval: cfg.AnnounceInterval}, w.announcement); err != nil {
		return nil, err
	}
	w.echo = w.routes()
	return w, nil
}

// Consumer exposes the sync consumer (state and counters).
func (w *Worker) Consumer() *queue.Consumer { return w.consumer }

// JobConsumer exposes the job consumer, nil when no model runs jobs here.
func (w *Worker) JobConsumer() *queue.JobConsumer { return w.jobs }

// Handler returns the worker's HTTP routes.
func (w *Worker) Handler() http.Handler { return w.echo }

// Run serves HTTP on ln, loads and warms the models, consumes until ctx ends, Stop
// is called or the HTTP server fails, then drains (see the package doc). It returns
// after everything it started has stopped; the error is the HTTP server's, a
// model's that cannot be loaded (wrapping ErrModel), or a teardown step's.
func (w *Worker) Run(ctx context.Context, ln net.Listener) (err error) {
	if !w.Start() {
		return errors.New("worker: already run or stopped")
	}
	defer func() { w.Finish(err) }()
	w.OnStop("models", w.closeModels)

	srv := &http.Server{Handler: w.echo, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	httpErr := make(chan error, 1)
	go func() { httpErr <- srv.Serve(ln) }()
	w.OnStop("http server", func(ctx context.Context) error {
		_ = srv.Shutdown(ctx)
		if err := <-httpErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	w.log.Info("worker listening", "addr", ln.Addr().String(), "models", len(w.models))

	actx, astop := context.WithCancel(context.Background())
	adone := make(chan struct{})
	go func() { defer close(adone); _ = w.announcer.Run(actx) }()
	w.OnStop("announcer", func(context.Context) error { astop(); <-adone; return nil })

	// Stop asked, ctx ended, or the HTTP server failed.
	stop, cancelStop := context.WithCancel(ctx)
	defer cancelStop()
	failed := make(chan error, 1)
	go func() {
		select {
		case e := <-httpErr:
			httpErr <- e // for the "http server" step
			if !errors.Is(e, http.ErrServerClosed) {
				failed <- fmt.Errorf("http server: %w", e)
			}
			cancelStop()
		case <-w.Stopping():
			cancelStop()
		case <-stop.Done():
		}
	}()

	// Consume at once; each model's queues are subscribed as soon as that model is
	// warm, so one model that cannot load yet (a remote server down) does not keep
	// the others unserved. The worker is ready once every model is.
	cctx, cstop := context.WithCancel(context.Background())
	var cwg sync.WaitGroup
	cwg.Add(1)
	go func() { defer cwg.Done(); _ = w.consumer.Run(cctx) }()
	if w.jobs != nil {
		cwg.Add(1)
		go func() { defer cwg.Done(); _ = w.jobs.Run(cctx) }()
	}
	w.OnStop("consumers", func(ctx context.Context) error {
		w.flushBatchers() // nothing more is coming: partial batches go now
		cstop()
		cwg.Wait() // the drain, bounded by DrainTimeout
		w.closeBatchers(ctx)
		w.log.Info("worker drained", "stats", fmt.Sprintf("%+v", w.consumer.Stats()))
		return nil
	})
	if err := w.loadAll(stop); err != nil && stop.Err() == nil {
		return w.finishRun(err)
	}
	if stop.Err() == nil {
		w.Set(lifecycle.Ready)
		w.announcer.Announce()
		w.log.Info("worker ready", "models", len(w.models))
		<-stop.Done()
	}
	select {
	case e := <-failed:
		return w.finishRun(e)
	default:
		return w.finishRun(nil)
	}
}

// finishRun drains and tears down, returning err joined with teardown failures.
func (w *Worker) finishRun(err error) error {
	w.Set(lifecycle.Draining)
	w.announcer.Announce()
	ctx, cancel := context.WithTimeout(context.Background(), w.consumerDrain()+10*time.Second)
	defer cancel()
	return errors.Join(err, w.Teardown(ctx))
}

func (w *Worker) consumerDrain() time.Duration {
	if w.cfg.DrainTimeout > 0 {
		return w.cfg.DrainTimeout
	}
	return queue.DefaultDrainTimeout
}

// loadAll loads and warms every model, concurrently, and enables each one's queues
// as soon as it is warm; unavailable backends are retried until ctx ends. A
// permanent failure stops the other loads and is returned.
func (w *Worker) loadAll(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(w.models))
	var wg sync.WaitGroup
	for i, s := range w.models {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = w.load(ctx, s); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// load loads one model and runs a warm-up inference, retrying unavailability and a
// failing warm-up with capped backoff.
func (w *Worker) load(ctx context.Context, s *served) error {
	log := w.log.With("model", s.spec.Route.Model, "version", s.spec.Route.Version)
	delay := w.cfg.LoadRetry
	for {
		err := w.loadOnce(ctx, s)
		if err == nil {
			w.startBatchers(s)
			s.set("ready", "")
			w.consumer.Enable(s.spec.Route)
			if w.jobs != nil {
				w.jobs.Enable(s.spec.Route)
			}
			log.Info("model loaded and warmed up", "platform", s.md.Platform)
			w.announcer.Announce()
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, model.ErrUnavailable) && !errors.Is(err, errWarmup) {
			s.set("failed", err.Error())
			return fmt.Errorf("%w: %s: %w", ErrModel, s.spec.Route, err)
		}
		s.set("loading", err.Error())
		log.Warn("model not ready; retrying", "err", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(delay*2, maxLoadRetry)
	}
}

var errWarmup = errors.New("warm-up inference failed")

func (w *Worker) loadOnce(ctx context.Context, s *served) error {
	if s.pred == nil {
		p, err := s.spec.Load(ctx)
		if err != nil {
			return err
		}
		md := p.Metadata()
		md.Name, md.Versions = s.spec.Route.Model, []string{s.spec.Route.Version}
		s.md = md
		s.pred = p
	}
	s.set("warming", "")
	wctx, cancel := context.WithTimeout(ctx, warmupTimeout)
	defer cancel()
	req := model.WarmupRequest(&s.md)
	start := time.Now()
	resps, err := s.pred.Predict(wctx, []*model.Request{req})
	s.warmup = time.Since(start)
	if err == nil {
		err = model.CheckResponses([]*model.Request{req}, resps)
	}
	if err == nil && resps[0].Err != nil {
		err = resps[0].Err
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errWarmup, err)
	}
	return nil
}

// closeModels closes every loaded model that holds resources.
func (w *Worker) closeModels(context.Context) error {
	var errs []error
	for _, s := range w.models {
		if c, ok := s.pred.(interface{ Close() error }); ok && s.pred != nil {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s.spec.Route, err))
			}
		}
	}
	return errors.Join(errs...)
}

// announcement is what the announcer publishes.
func (w *Worker) announcement() queue.Announcement {
	an := queue.Announcement{Worker: w.cfg.WorkerID}
	switch w.State() {
	case lifecycle.Ready:
		an.State = queue.StateReady
	case lifecycle.Draining, lifecycle.Stopped:
		an.State = queue.StateLeaving
	default:
		an.State = queue.StateStarting
	}
	for _, s := range w.models {
		status, _ := s.get()
		if status != "ready" && status != "warming" {
			continue // metadata not known yet
		}
		md, _ := httperr.Marshal(s.md)
		an.Models = append(an.Models, queue.ModelAnnouncement{
			Name: s.spec.Route.Model, Version: s.spec.Route.Version, Metadata: md,
			Ready: status == "ready" && w.State() == lifecycle.Ready, MaxBatchSize: s.spec.MaxBatchSize,
			Concurrency: s.concurrency, JobConcurrency: s.spec.JobConcurrency,
		})
	}
	return an
}

// source feeds the worker metrics at scrape time.
type source struct{ w *Worker }

func (s source) Routes() []queue.Route {
	out := make([]queue.Route, len(s.w.models))
	for i, m := range s.w.models {
		out[i] = m.spec.Route
	}
	return out
}

func (s source) Sync(r queue.Route) (queue.ConsumerStats, int, int) {
	c := s.w.consumer
	return c.RouteStats(r), c.InFlightOf(r), c.Concurrency(r)
}

func (s source) Jobs(r queue.Route) (queue.JobConsumerStats, int, int, bool) {
	j := s.w.jobs
	if j == nil || j.Concurrency(r) == 0 {
		return queue.JobConsumerStats{}, 0, 0, false
	}
	return j.RouteStats(r), j.InFlightOf(r), j.Concurrency(r), true
}

func (s source) Connected() bool  { return s.w.consumer.Connected() }
func (s source) Draining() bool   { return s.w.State() >= lifecycle.Draining }
func (s source) Sessions() uint64 { return s.w.consumer.Sessions() }
