// Package api is warren's HTTP front door: POST /process turns a request into a
// queue message for the predictor workers and answers with their reply; GET /,
// /health, /ready, /openapi.json and /docs complete the surface.
//
// # Status contract
//
// One function, [statusFor], maps every failure to a status and a reason:
//
//	200  answered
//	413  body over BodyLimit                              {"detail"}
//	422  missing/wrong-typed field, malformed JSON        {"detail":[{loc,msg,type}]}
//	502  model failed / worker panicked                   {"detail","reason":"model_error"}
//	503  no_workers, queue_full, broker_unavailable,      {"detail","reason"} + Retry-After
//	     draining
//	504  the deadline passed                              {"detail","reason":"timeout"}
//
// 429 is kept free for per-client rate limits.
package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/warren-farm/warren/pkg/apidoc"
	"github.com/warren-farm/warren/pkg/capacity"
	"github.com/warren-farm/warren/pkg/httperr"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/metrics"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/tracing"
)

// Config configures the API process.
type Config struct {
	// Queue configures the RPC client (URL, connection name, request queue).
	Queue queue.ClientConfig
	// ManagementURL is the RabbitMQ management API used to apply the request-queue
	// policy; empty skips the policy (the queue is unbounded).
	ManagementURL string
	// QueueMaxLength bounds the request queue's ready messages; 0 removes the bound.
	QueueMaxLength int
	// RequestTimeout is the default deadline of a /process call; zero means 10s.
	RequestTimeout time.Duration
	// MaxRequestTimeout caps X-Request-Timeout; zero means 60s.
	MaxRequestTimeout time.Duration
	// BodyLimit caps request bodies; zero means 1 MiB.
	BodyLimit int64
	// DrainTimeout bounds the wait for in-flight calls on shutdown; zero means 20s.
	DrainTimeout time.Duration
	// Registry receives the API's metrics, served on GET /metrics; nil means a new
	// registry of its own (metrics.NewRegistry).
	Registry *prometheus.Registry
	// Capacity configures the workers-needed estimate (GET /capacity and the
	// warren_workers_needed gauge). ManagementURL, Vhost and Queue are filled in from
	// this Config; the rest (targets, window) may be set.
	Capacity capacity.Config
	// Jobs configures the async job endpoints (POST /jobs, GET and DELETE
	// /jobs/{id}, Prefer: respond-async on /process); without a Store they are off.
	Jobs JobsConfig
	// Tracing, if enabled, traces each request (HTTP span, publish span) and passes
	// the W3C trace context to the worker in the message headers; nil disables.
	Tracing *tracing.Tracing
	// Logger; nil discards.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.MaxRequestTimeout == 0 {
		c.MaxRequestTimeout = 60 * time.Second
	}
	if c.BodyLimit == 0 {
		c.BodyLimit = 1 << 20
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 20 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = metrics.NewRegistry("api", "")
	}
	if c.Jobs.MaxWait == 0 {
		c.Jobs.MaxWait = 60 * time.Second
	}
	if c.Jobs.RecoverAfter == 0 {
		c.Jobs.RecoverAfter = 30 * time.Second
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.RequestTimeout < 0 || c.MaxRequestTimeout < c.RequestTimeout {
		errs = append(errs, errors.New("api: need 0 < RequestTimeout <= MaxRequestTimeout"))
	}
	if c.Jobs.MaxWait < 0 || c.Jobs.StartTimeout < 0 || c.Jobs.RecoverAfter < 0 {
		errs = append(errs, errors.New("api: job durations must not be negative"))
	}
	if c.BodyLimit < 0 || c.DrainTimeout < 0 || c.QueueMaxLength < 0 {
		errs = append(errs, errors.New("api: BodyLimit, DrainTimeout and QueueMaxLength must not be negative"))
	}
	return errors.Join(errs...)
}

// Server is the API.
type Server struct {
	cfg     Config
	log     *slog.Logger
	client  *queue.Client
	echo    *echo.Echo
	metrics *metrics.API
	est     *capacity.Estimator
	store   jobs.Store            // nil: no job endpoints
	results *queue.ResultConsumer // nil without a store

	draining atomic.Bool
	mu       sync.Mutex
	inflight int
	idle     chan struct{}   // closed when draining and inflight reaches 0
	stopping context.Context // done when draining starts: long polls answer at once
	stop     context.CancelFunc
}

// New validates cfg and builds the server. Nothing connects until Run.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Queue.Logger = cfg.Logger
	vhost, err := queue.Vhost(cfg.Queue.URL)
	if err != nil {
		return nil, fmt.Errorf("api: AMQP URL: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, idle: make(chan struct{}), store: cfg.Jobs.Store}
	s.stopping, s.stop = context.WithCancel(context.Background())
	cc := cfg.Capacity
	cc.ManagementURL, cc.Vhost, cc.Queue, cc.Logger = cfg.ManagementURL, vhost, s.queueName(), cfg.Logger
	if s.est, err = capacity.New(cc); err != nil {
		return nil, err
	}
	s.metrics = metrics.NewAPI(cfg.Registry, metrics.Labels{Vhost: vhost, Queue: s.queueName()},
		metrics.Labels{Vhost: vhost, Queue: cfg.Jobs.Names.Queue()}, clientRef{s},
		func() float64 { return float64(s.est.Snapshot().WorkersNeeded) })
	cfg.Queue.OnConfirm = s.metrics.Confirm
	cfg.Queue.Jobs = cfg.Jobs.Names
	if s.client, err = queue.NewClient(cfg.Queue); err != nil {
		return nil, err
	}
	if s.store != nil {
		rc := queue.ResultConsumerConfig{DialConfig: cfg.Queue.DialConfig, Names: cfg.Jobs.Names}
		rc.Name = ""
		if s.results, err = queue.NewResultConsumer(rc, s.applyUpdate, s.applyDead); err != nil {
			return nil, err
		}
	}
	s.echo = s.routes()
	return s, nil
}

// Client exposes the queue client (state and counters).
func (s *Server) Client() *queue.Client { return s.client }

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler { return s.echo }

// Run serves on ln until ctx is cancelled, then drains: /ready turns 503, new calls
// get 503 draining, calls in flight finish (each up to its deadline, all within
// DrainTimeout), then the HTTP server and the broker connection close. Run returns
// after every goroutine it started has stopped.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	qctx, qcancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = s.client.Run(qctx) }()
	if s.cfg.ManagementURL != "" {
		vhost, _ := queue.Vhost(s.cfg.Queue.URL)
		wg.Add(1)
		go func() {
			defer wg.Done()
			queue.KeepPolicy(qctx, queue.PolicyConfig{
				ManagementURL: s.cfg.ManagementURL, Vhost: vhost,
				Queue: s.queueName(), MaxLength: s.cfg.QueueMaxLength,
			}, s.log)
		}()
	} else {
		s.log.Warn("MANAGEMENT_URL is empty: the request queue bound is not applied")
	}

	wg.Add(1)
	go func() { defer wg.Done(); s.est.Run(qctx) }()
	if s.store != nil {
		started := time.Now()
		wg.Add(2)
		go func() { defer wg.Done(); _ = s.results.Run(qctx) }()
		go func() { defer wg.Done(); s.maintainJobs(qctx, started) }()
	}

	srv := &http.Server{Handler: s.echo, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Serve(ln) }()
	s.log.Info("api listening", "addr", ln.Addr().String())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-httpDone:
		httpDone <- serveErr
	}
	s.drain()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = srv.Shutdown(sctx)
	cancel()
	if err := <-httpDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
		serveErr = err
	}
	qcancel()
	wg.Wait()
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			s.log.Warn("closing the job store", "err", err)
		}
	}
	s.log.Info("api stopped", "stats", fmt.Sprintf("%+v", s.client.Stats()))
	return serveErr
}

func (s *Server) drain() {
	s.mu.Lock()
	s.draining.Store(true)
	s.stop()
	if s.inflight == 0 {
		close(s.idle)
	}
	n := s.inflight
	s.mu.Unlock()
	s.log.Info("draining", "in_flight", n)
	t := time.NewTimer(s.cfg.DrainTimeout)
	defer t.Stop()
	select {
	case <-s.idle:
	case <-t.C:
		s.log.Warn("drain timeout with calls in flight")
	}
}

// enter registers an in-flight call; it fails once draining started.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return false
	}
	s.inflight++
	return true
}

func (s *Server) leave() {
	s.mu.Lock()
	s.inflight--
	if s.inflight == 0 && s.draining.Load() {
		close(s.idle)
	}
	s.mu.Unlock()
}

func (s *Server) queueName() string {
	if s.cfg.Queue.Queue == "" {
		return queue.DefaultQueue
	}
	return s.cfg.Queue.Queue
}

// clientRef reads the client at scrape time (the client is built after the metrics,
// which it reports to).
type clientRef struct{ s *Server }

func (r clientRef) State() queue.State       { return r.s.client.State() }
func (r clientRef) Stats() queue.ClientStats { return r.s.client.Stats() }

func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = httperr.Handler(s.log)
	if s.cfg.Tracing.Enabled() {
		e.Use(s.cfg.Tracing.Middleware())
	}
	e.Use(requestID)
	httpMetrics := metrics.NewHTTP(s.cfg.Registry)
	e.GET("/", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"service": "Service A - Input Logger", "status": "running"})
	})
	e.GET("/health", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"service": "Service A", "status": "healthy"})
	})
	e.GET("/ready", s.ready)
	e.POST("/process", s.process)
	if s.store != nil {
		e.POST("/jobs", s.postJob)
		e.GET("/jobs/:id", s.getJob)
		e.DELETE("/jobs/:id", s.deleteJob)
	}
	e.GET("/metrics", echo.WrapHandler(metrics.Handler(s.cfg.Registry)))
	e.GET("/capacity", echo.WrapHandler(s.est.Handler()))
	apidoc.Register(e)
	httpMetrics.Instrument(e)
	return e
}

type readyBody struct {
	Status  string `json:"status"`
	Broker  string `json:"broker"`
	Workers int    `json:"workers"`
}

func (s *Server) ready(c echo.Context) error {
	st := s.client.State()
	b := readyBody{Status: "ready", Broker: "down", Workers: max(st.Workers, 0)}
	if st.Connected {
		b.Broker = "up"
	}
	switch {
	case s.draining.Load():
		b.Status = "draining"
		return c.JSON(http.StatusServiceUnavailable, b)
	case !st.EverConnected:
		b.Status = "starting"
		return c.JSON(http.StatusServiceUnavailable, b)
	}
	// A broker outage after start keeps the API in the load balancer: clients get
	// JSON 503s from /process rather than connection resets.
	return c.JSON(http.StatusOK, b)
}

const loggedOK = `{"status":"Input logged successfully"}`

func (s *Server) process(c echo.Context) error {
	req := c.Request()
	rid := c.Response().Header().Get(echo.HeaderXRequestID)
	ve := &httperr.ValidationError{}
	in, err := s.readInput(c, ve)
	if err != nil {
		return err
	}
	data, forward := in.data, in.forward
	timeout := s.timeout(req.Header.Get("X-Request-Timeout"), ve)
	if async, wait := preferAsync(req.Header.Values("Prefer")); async && forward && s.store != nil {
		return s.processAsync(c, data, wait, ve)
	}
	if err := ve.OrNil(); err != nil {
		return err
	}
	if s.log.Enabled(req.Context(), slog.LevelDebug) {
		// Inputs may be private: their size and a hash, never the text.
		sum := sha256.Sum256([]byte(data))
		s.log.Debug("received input", "request_id", rid, "bytes", len(data),
			"input_sha256", hex.EncodeToString(sum[:8]), "forward_to_model", forward)
	}
	if !forward {
		return c.JSONBlob(http.StatusOK, []byte(loggedOK))
	}
	if !s.enter() {
		s.metrics.Call(metrics.ReasonDraining, 0, false)
		return statusFor(errDraining)
	}
	defer s.leave()

	payload, _ := jsonMarshal(model.RequestMessage{Data: data})
	start := time.Now()
	qreq := queue.Request{RequestID: rid, Body: payload, Deadline: start.Add(timeout)}
	ctx := req.Context()
	if tr := s.cfg.Tracing; tr.Enabled() {
		var span trace.Span
		ctx, span = tr.StartPublish(ctx, s.queueName(), attribute.String("warren.request_id", rid))
		defer span.End()
		qreq.Headers = amqp.Table{}
		tr.Inject(ctx, qreq.Headers)
	}
	reply, err := s.client.Call(ctx, qreq)
	if err != nil {
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			span.SetStatus(codes.Error, err.Error())
		}
		herr := statusFor(err)
		reason := reasonOf(herr)
		s.metrics.Call(reason, time.Since(start), published(err))
		if reason == metrics.ReasonNoWorkers {
			s.est.ObserveTurnedAway()
		}
		return herr
	}
	s.metrics.Call(metrics.ReasonOK, time.Since(start), true)
	s.metrics.Reply(reply.Timing)
	if _, compute, _, ok := reply.Timing.Stages(); ok {
		s.est.ObserveService(compute, reply.Timing.Slots)
	}
	return c.JSONBlob(http.StatusOK, processBody(reply.Body))
}

// timeout resolves the per-request deadline from X-Request-Timeout: a Go duration
// ("2.5s", "500ms") or plain seconds ("3", "0.5"). Values above MaxRequestTimeout are
// clamped to it.
func (s *Server) timeout(h string, ve *httperr.ValidationError) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return s.cfg.RequestTimeout
	}
	d, ok := parseSeconds(h, s.cfg.MaxRequestTimeout)
	if !ok || d <= 0 {
		ve.Add("value_error", "X-Request-Timeout must be a positive duration such as 2.5s or 500ms, or seconds such as 3", h, "header", "X-Request-Timeout")
		return 0
	}
	return d
}

var errDraining = errors.New("draining")

// reasonOf is the metrics reason of statusFor's answer.
func reasonOf(err error) string {
	var he *httperr.Error
	switch {
	case !errors.As(err, &he):
		return metrics.ReasonModelError
	case he.Status == 499:
		return metrics.ReasonClientClosed
	case he.Reason == "":
		return metrics.ReasonModelError
	}
	return he.Reason
}

// published reports whether a failed call reached the broker (its duration then
// says something about the farm).
func published(err error) bool {
	var re *queue.RemoteError
	return errors.As(err, &re) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// statusFor is the one place that maps a failed call to the status contract.
func statusFor(err error) error {
	var re *queue.RemoteError
	switch {
	case errors.Is(err, errDraining):
		return &httperr.Error{Status: 503, Reason: "draining", RetryAfter: 2, Err: err,
			Detail: "Model service is unavailable: this API instance is shutting down; retry"}
	case errors.Is(err, queue.ErrNoWorkers):
		return &httperr.Error{Status: 503, Reason: "no_workers", RetryAfter: 5, Err: err,
			Detail: "Model service is unavailable: no predictor worker is running"}
	case errors.Is(err, queue.ErrQueueFull):
		return &httperr.Error{Status: 503, Reason: "queue_full", RetryAfter: 1, Err: err,
			Detail: "Model service is unavailable: the request queue is full"}
	case errors.Is(err, queue.ErrBrokerUnavailable), errors.Is(err, queue.ErrClosed):
		return &httperr.Error{Status: 503, Reason: "broker_unavailable", RetryAfter: 5, Err: err,
			Detail: "Model service is unavailable: " + strings.TrimPrefix(err.Error(), queue.ErrBrokerUnavailable.Error()+": ")}
	case errors.Is(err, context.DeadlineExceeded):
		return &httperr.Error{Status: 504, Reason: "timeout", Err: err,
			Detail: "The model did not answer before the request's deadline"}
	case errors.As(err, &re):
		return &httperr.Error{Status: 502, Reason: "model_error", Err: err,
			Detail: "Model error: " + re.Message}
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer.
		return &httperr.Error{Status: 499, Detail: "client closed request", Err: err}
	}
	return err
}

// requestID honours a client's X-Request-ID (at most 128 characters of
// [A-Za-z0-9._:@/+=-]) and otherwise generates one, like Heroku's router: an invalid
// id is replaced, not rejected. The id is returned in the response header.
func requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(echo.HeaderXRequestID)
		if !validRequestID(id) {
			id = rand.Text()
		}
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		return next(c)
	}
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		switch {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		case strings.IndexByte("._:@/+=-", b) >= 0:
		default:
			return false
		}
	}
	return true
}
