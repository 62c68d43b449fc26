// Package worker is warren's predictor worker: it consumes the sync request queue,
// runs the model and replies, and serves the seed lab's Service B endpoints
// (GET /, /health, /ready and POST /predict) on its own HTTP port.
//
// Workers are stateless: any number may run against the same queue, and the number
// running sets the farm's throughput.
package worker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/warren-farm/warren/pkg/httperr"
	"github.com/warren-farm/warren/pkg/metrics"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/tracing"
)

// Config configures a worker process.
type Config struct {
	// Queue configures the consumer (URL, concurrency, prefetch, drain timeout, id).
	Queue queue.ConsumerConfig
	// Jobs configures the job consumer: its own connection, prefetch and handlers
	// (Concurrency), so queued jobs never slow /process down. URL, WorkerID, Logger
	// and DrainTimeout default to Queue's. Concurrency 0 turns the job path off.
	Jobs queue.JobConsumerConfig
	// BodyLimit caps POST /predict bodies; zero means 1 MiB.
	BodyLimit int64
	// Registry receives the worker's metrics, served on GET /metrics; nil means a new
	// registry of its own (metrics.NewRegistry).
	Registry *prometheus.Registry
	// Tracing, if enabled, continues the caller's trace from the message headers with
	// queue-wait, process and model spans; nil disables.
	Tracing *tracing.Tracing
	// Logger; nil discards.
	Logger *slog.Logger
}

// Answer is the worker's answer to one input: the seed lab's prediction and
// message, plus what identifies it. It is /process's model_prediction and
// /predict's body.
type Answer struct {
	model.Output
	RequestID   string     `json:"request_id"`
	Model       model.Info `json:"model"`
	WorkerID    string     `json:"worker_id"`
	InputSHA256 string     `json:"input_sha256"`
}

// Worker ties a consumer, a model and an HTTP server together.
type Worker struct {
	cfg      Config
	log      *slog.Logger
	model    model.Predictor
	consumer *queue.Consumer
	jobs     *queue.JobConsumer // nil when the job path is off
	metrics  *metrics.Worker
	// httpMetrics is built once: Handler may be called more than once.
	httpMetrics *metrics.HTTP
}

// New validates cfg and builds a worker around p.
func New(cfg Config, p model.Predictor) (*Worker, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BodyLimit == 0 {
		cfg.BodyLimit = 1 << 20
	}
	if p == nil {
		return nil, errors.New("worker: nil model")
	}
	if cfg.Registry == nil {
		cfg.Registry = metrics.NewRegistry("worker", "")
	}
	vhost, err := queue.Vhost(cfg.Queue.URL)
	if err != nil {
		return nil, fmt.Errorf("worker: AMQP URL: %w", err)
	}
	cfg.Queue.Logger = cfg.Logger
	w := &Worker{cfg: cfg, log: cfg.Logger, model: p}
	w.metrics = metrics.NewWorker(cfg.Registry, metrics.Labels{Vhost: vhost, Queue: w.queueName()}, consumerRef{w})
	w.httpMetrics = metrics.NewHTTP(cfg.Registry)
	cfg.Queue.OnProcessed = w.metrics.Processed
	if w.consumer, err = queue.NewConsumer(cfg.Queue, w.handle); err != nil {
		return nil, err
	}
	if cfg.Jobs.Concurrency > 0 {
		jc := cfg.Jobs
		if jc.URL == "" {
			jc.URL = cfg.Queue.URL
		}
		if jc.WorkerID == "" {
			jc.WorkerID = cfg.Queue.WorkerID
		}
		if jc.DrainTimeout == 0 {
			jc.DrainTimeout = cfg.Queue.DrainTimeout
		}
		jc.Logger = cfg.Logger
		if w.jobs, err = queue.NewJobConsumer(jc, w.handle); err != nil {
			return nil, err
		}
		metrics.NewWorkerJobs(cfg.Registry, metrics.Labels{Vhost: vhost, Queue: jc.Names.Queue()}, w.jobs)
	}
	return w, nil
}

// consumerRef reads the consumer at scrape time (the consumer is built after the
// metrics, which it reports to).
type consumerRef struct{ w *Worker }

func (r consumerRef) Stats() queue.ConsumerStats { return r.w.consumer.Stats() }
func (r consumerRef) InFlight() int              { return r.w.consumer.InFlight() }
func (r consumerRef) Connected() bool            { return r.w.consumer.Connected() }
func (r consumerRef) Draining() bool             { return r.w.consumer.Draining() }
func (r consumerRef) Concurrency() int           { return r.w.consumer.Concurrency() }

// Consumer exposes the queue consumer (state and counters).
func (w *Worker) Consumer() *queue.Consumer { return w.consumer }

// Run serves HTTP on ln and consumes until ctx is cancelled, then drains (see
// [queue.Consumer.Run]) and stops the HTTP server. It returns after everything it
// started has stopped.
func (w *Worker) Run(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: w.Handler(), ReadHeaderTimeout: 10 * time.Second}
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Serve(ln) }()
	w.log.Info("worker listening", "addr", ln.Addr().String(),
		"model", w.model.Info().Name, "model_version", w.model.Info().Version)

	var jobsDone chan struct{}
	if w.jobs != nil {
		jobsDone = make(chan struct{})
		go func() { defer close(jobsDone); _ = w.jobs.Run(ctx) }()
	}
	err := w.consumer.Run(ctx) // returns after the drain
	if jobsDone != nil {
		<-jobsDone
		w.log.Info("job consumer drained", "stats", fmt.Sprintf("%+v", w.jobs.Stats()))
	}
	w.log.Info("worker drained", "stats", fmt.Sprintf("%+v", w.consumer.Stats()))
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if herr := <-httpDone; herr != nil && !errors.Is(herr, http.ErrServerClosed) {
		return errors.Join(err, herr)
	}
	return err
}

// handle answers one queued request.
func (w *Worker) handle(ctx context.Context, m *queue.Message) ([]byte, error) {
	var rb model.RequestMessage
	if err := json.Unmarshal(m.Body, &rb); err != nil {
		return nil, &queue.BadMessageError{Err: fmt.Errorf("decode request body: %w", err)}
	}
	if tr := w.cfg.Tracing; tr.Enabled() {
		ctx = tr.Extract(ctx, m.Headers)
		tr.RecordQueueWait(ctx, m.PublishedAt, m.ReceivedAt)
		var span trace.Span
		ctx, span = tr.StartProcess(ctx, w.queueName(), attribute.String("warren.request_id", m.RequestID))
		defer span.End()
	}
	return w.predict(ctx, m.RequestID, rb.Data)
}

func (w *Worker) queueName() string {
	if w.cfg.Queue.Queue == "" {
		return queue.DefaultQueue
	}
	return w.cfg.Queue.Queue
}

// predict is the one model code path behind the queue and POST /predict.
func (w *Worker) predict(ctx context.Context, requestID, data string) ([]byte, error) {
	var span trace.Span
	if tr := w.cfg.Tracing; tr.Enabled() {
		ctx, span = tr.StartModel(ctx, w.model.Info().Name)
		defer span.End()
	}
	start := time.Now()
	out, err := w.model.Predict(ctx, []model.Input{{RequestID: requestID, Data: data}})
	w.metrics.Model(time.Since(start))
	if err != nil {
		if span != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		return nil, err
	}
	if len(out) != 1 {
		return nil, fmt.Errorf("model returned %d outputs for 1 input", len(out))
	}
	sum := sha256.Sum256([]byte(data))
	return json.Marshal(Answer{
		Output:      out[0],
		RequestID:   requestID,
		Model:       w.model.Info(),
		WorkerID:    w.cfg.Queue.WorkerID,
		InputSHA256: hex.EncodeToString(sum[:]),
	})
}

// Handler returns the worker's HTTP routes.
func (w *Worker) Handler() http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = httperr.Handler(w.log)
	e.GET("/", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"service": "Service B - ML Prediction", "status": "running"})
	})
	e.GET("/health", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"service": "Service B", "status": "healthy"})
	})
	e.GET("/ready", w.ready)
	e.POST("/predict", w.predictHTTP)
	e.GET("/metrics", echo.WrapHandler(metrics.Handler(w.cfg.Registry)))
	w.httpMetrics.Instrument(e)
	return e
}

func (w *Worker) ready(c echo.Context) error {
	body := map[string]any{"broker": "down", "in_flight": w.consumer.InFlight(), "stats": w.consumer.Stats()}
	if w.jobs != nil {
		body["jobs"] = map[string]any{"consuming": w.jobs.Connected(), "in_flight": w.jobs.InFlight(), "stats": w.jobs.Stats()}
	}
	if w.consumer.Connected() {
		body["broker"] = "up"
	}
	switch {
	case w.consumer.Draining():
		body["status"] = "draining"
		return c.JSON(http.StatusServiceUnavailable, body)
	case !w.consumer.Connected():
		body["status"] = "not_consuming"
		return c.JSON(http.StatusServiceUnavailable, body)
	}
	body["status"] = "ready"
	return c.JSON(http.StatusOK, body)
}

// predictHTTP is the seed's POST /predict {"input": str}.
func (w *Worker) predictHTTP(c echo.Context) error {
	b, err := httperr.ReadBody(c.Request(), w.cfg.BodyLimit)
	if err != nil {
		return err
	}
	obj, err := httperr.Object(b)
	if err != nil {
		return err
	}
	ve := &httperr.ValidationError{}
	input, _ := httperr.String(obj, "input", ve)
	if err := ve.OrNil(); err != nil {
		return err
	}
	rid := c.Request().Header.Get(echo.HeaderXRequestID)
	if rid == "" {
		rid = rand.Text()
	}
	c.Response().Header().Set(echo.HeaderXRequestID, rid)
	out, err := w.predict(c.Request().Context(), rid, input)
	if err != nil {
		return &httperr.Error{Status: http.StatusInternalServerError, Detail: "model error: " + err.Error(), Reason: queue.ReasonModelError, Err: err}
	}
	return c.JSONBlob(http.StatusOK, out)
}
