// Package api is warren's HTTP front door, and only that: it turns HTTP calls into
// calls to the farm (pkg/queue), job submissions (pkg/jobs) and catalog lookups
// (pkg/catalog), and maps their errors to the status contract (pkg/reason).
//
// # Surface
//
//	POST /process                    the seed lab's contract, unchanged, on DEFAULT_MODEL
//	GET  /v2, GET|HEAD /v2/health/{live,ready}           Open Inference Protocol (v2)
//	GET  /v2/models/{name}[/versions/{v}]                metadata
//	GET|HEAD /v2/models/{name}[/versions/{v}]/ready      readiness
//	POST /v2/models/{name}[/versions/{v}]/infer          inference
//	GET|PUT|DELETE /v2/models/{name}/traffic             where unversioned calls go
//	                                 (weights, sticky header, default version; PUT
//	                                 and DELETE as ADMIN_API allows)
//	GET  /v2/models, /models         every model with versions, readiness, live workers
//	POST /jobs                       a job: the lab's {"data"} for DEFAULT_MODEL, or a v2
//	                                 request with "model" (and "version")
//	GET|DELETE /jobs/{id}            read (?wait= long-polls), cancel
//	GET  /, /health, /ready, /metrics, /openapi.json, /docs
//	GET|HEAD /capacity[?model=&version=]                 workers needed (pkg/capacity)
//
// A v2 request is resolved against the catalog (404 for a model or version no
// worker announced; without a version, the model's traffic settings pick one) and
// validated against that version's metadata (400 naming the tensor) before anything
// is published; the body then goes to the worker as it
// came. /process encodes the lab's body as a v2 request and the answer back. With
// Prefer: respond-async, /process and v2 infer hand the call off as a job: the
// call's own answer if the job finishes within Prefer: wait, else 202 with the job.
//
// # Status contract
//
// One function, [statusFor], maps every failure of the farm and the job service to
// a status and a [reason.Reason]:
//
//	200  answered
//	400  the input does not fit the model (v2: before publishing; /process: a
//	     worker's bad_input)                                reason bad_input
//	404  unknown model, version or job                     reason not_found
//	409  idempotency key in progress, job not cancellable  in_progress, not_cancellable
//	401  no credential, or a refused one (auth on)         reason unauthorized, + WWW-Authenticate
//	403  the admin API refuses this client (ADMIN_API, or
//	     not an admin); the caller may not call the model   reason forbidden
//	413  body over BodyLimit                               reason too_large
//	422  missing/wrong-typed field, malformed JSON (the lab's shape; v2 says 400);
//	     an Idempotency-Key reused with another body       idempotency_key_reused
//	502  model failed / worker panicked                    reason model_error
//	503  no_workers, queue_full, broker_unavailable,       + Retry-After
//	     draining, not_ready, store_unavailable, jobs_unavailable
//	504  the deadline passed, or the model gave up         reason timeout
//
// 429 auth_limited answers an address with too many failed authentications
// (pkg/auth); other 429s are for per-client rate limits. client_closed (a client that went
// away) is counted in the metrics, never sent. /process and /jobs bodies are
// {"detail", "reason"}; /v2 bodies are {"error", "reason"}.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-farm/warren/internal/lifecycle"
	"github.com/warren-farm/warren/pkg/auth"
	"github.com/warren-farm/warren/pkg/capacity"
	"github.com/warren-farm/warren/pkg/catalog"
	"github.com/warren-farm/warren/pkg/httperr"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/metrics"
	"github.com/warren-farm/warren/pkg/oip"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/tracing"
)

// Defaults of [Config].
const (
	DefaultRequestTimeout    = 10 * time.Second
	DefaultMaxRequestTimeout = 60 * time.Second
	DefaultModel             = "seed"
	DefaultMaxWait           = 60 * time.Second
)

// Config configures the API process.
type Config struct {
	// AMQP says how to reach the broker. Each connection (calls, job publishing,
	// results, model announcements) gets its own connection name.
	AMQP queue.DialConfig
	// ManagementURL is the RabbitMQ management API used to apply the request-queue
	// policy and read queue statistics for the capacity estimate; empty skips both.
	ManagementURL string
	// QueueMaxLength bounds every request queue's ready messages; 0 removes the bound.
	QueueMaxLength int
	// RequestTimeout is the default deadline of a call; zero means
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// MaxRequestTimeout caps X-Request-Timeout; zero means DefaultMaxRequestTimeout.
	MaxRequestTimeout time.Duration
	// BodyLimit caps request bodies; zero means httperr.DefaultBodyLimit.
	BodyLimit int64
	// Limits bound the inference requests the API decodes.
	Limits oip.Limits
	// DefaultModel is the model POST /process and POST /jobs {"data"} call; empty
	// means DefaultModel ("seed").
	DefaultModel string
	// DrainTimeout bounds the wait for in-flight calls on shutdown; zero means
	// queue.DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Registry receives the API's metrics, served on GET /metrics; nil means a new
	// registry of its own (metrics.NewRegistry).
	Registry *prometheus.Registry
	// Capacity configures the workers-needed estimate (GET /capacity and the
	// warren_workers_needed gauge). ManagementURL and Vhost are filled in from this
	// Config; the rest (targets, window) may be set.
	Capacity capacity.Config
	// Jobs configures the job endpoints. The Store is required: the server owns it
	// from New on (New closes it if it fails) and closes it when it stops. It also
	// keeps the model catalog.
	Jobs JobsConfig
	// AdminAPI says who may change the routing of unversioned calls (PUT and
	// DELETE /v2/models/{name}/traffic): AdminOff, AdminLoopback (clients on this
	// host, not through a proxy) or AdminOn. Empty means AdminLoopback. With Auth
	// enabled, the caller must be an admin besides; without, do not expose these
	// calls.
	AdminAPI string
	// TrafficRefresh is how often the traffic settings are re-read from the job
	// store (other replicas' changes); zero means catalog.DefaultTrafficRefresh.
	TrafficRefresh time.Duration
	// Auth says who is calling (pkg/auth); its metrics join Registry, and Run
	// follows its keys file. Nil means no authentication (every caller
	// anonymous).
	Auth *auth.Authenticator
	// Tracing, if enabled, traces each request and passes the W3C trace context to
	// the workers; nil disables.
	Tracing *tracing.Tracing
	// Logger; nil discards.
	Logger *slog.Logger
}

// JobsConfig configures the async job endpoints.
type JobsConfig struct {
	Store jobs.Store
	// MaxWait caps ?wait= and Prefer: wait=; zero means DefaultMaxWait.
	MaxWait time.Duration
	// StartTimeout: a job not started this long after submission expires; zero
	// means never.
	StartTimeout time.Duration
	// RecoverAfter: a stored job whose publish was never confirmed is republished
	// once it is this old; zero means the service's default (30s).
	RecoverAfter time.Duration
}

func (c *Config) setDefaults() {
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.MaxRequestTimeout == 0 {
		c.MaxRequestTimeout = DefaultMaxRequestTimeout
	}
	if c.BodyLimit == 0 {
		c.BodyLimit = httperr.DefaultBodyLimit
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = queue.DefaultDrainTimeout
	}
	if c.DefaultModel == "" {
		c.DefaultModel = DefaultModel
	}
	if c.AdminAPI == "" {
		c.AdminAPI = AdminLoopback
	}
	if c.TrafficRefresh == 0 {
		c.TrafficRefresh = catalog.DefaultTrafficRefresh
	}
	if c.Jobs.MaxWait == 0 {
		c.Jobs.MaxWait = DefaultMaxWait
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = metrics.NewRegistry("api", "")
	}
	if c.Auth == nil {
		c.Auth, _ = auth.New(context.Background(), auth.Config{}) // nothing configured: cannot fail
	}
	c.AMQP.Logger = c.Logger
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
	if !slices.Contains(AdminModes, c.AdminAPI) {
		errs = append(errs, fmt.Errorf("api: AdminAPI %q: want one of %v", c.AdminAPI, AdminModes))
	}
	if c.TrafficRefresh < 0 {
		errs = append(errs, errors.New("api: TrafficRefresh must not be negative"))
	}
	if !queue.ValidModelName(c.DefaultModel) {
		errs = append(errs, fmt.Errorf("api: DefaultModel %q is not a valid model name", c.DefaultModel))
	}
	if c.Jobs.Store == nil {
		errs = append(errs, errors.New("api: Jobs.Store is required"))
	}
	return errors.Join(errs...)
}

// Server is the API.
type Server struct {
	lifecycle.Lifecycle
	cfg       Config
	log       *slog.Logger
	vhost     string
	client    *queue.Client
	publisher *queue.JobPublisher
	results   *queue.ResultConsumer
	watcher   *queue.Watcher
	catalog   *catalog.Catalog
	capacity  *capacity.Farm
	jobs      *jobs.Service
	metrics   *metrics.API
	echo      *echo.Echo

	mu       sync.Mutex
	inflight int
	idle     chan struct{} // closed when draining and inflight reaches 0
}

// New validates cfg and builds the server. Nothing connects until Run. From here on
// the server owns cfg.Jobs.Store: it is closed by Stop or when Run returns, and by
// New itself when New fails.
func New(cfg Config) (_ *Server, err error) {
	if cfg.Jobs.Store != nil {
		defer func() {
			if err != nil {
				_ = cfg.Jobs.Store.Close()
			}
		}()
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	vhost, err := queue.Vhost(cfg.AMQP.URL)
	if err != nil {
		return nil, fmt.Errorf("api: AMQP URL: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, vhost: vhost, idle: make(chan struct{})}
	s.Init(cfg.Logger)
	s.OnStop("job store", func(context.Context) error { return cfg.Jobs.Store.Close() })

	cc := cfg.Capacity
	cc.ManagementURL, cc.Vhost, cc.Logger = cfg.ManagementURL, vhost, cfg.Logger
	if s.capacity, err = capacity.New(cc); err != nil {
		return nil, err
	}
	s.metrics = metrics.NewAPI(cfg.Registry, vhost, metricsSource{s})
	if err := registerAll(cfg.Registry, cfg.Auth.Collectors()); err != nil {
		return nil, err
	}
	if s.client, err = queue.NewClient(queue.ClientConfig{DialConfig: cfg.AMQP, Tracing: cfg.Tracing,
		OnConfirm: func(r queue.Route, d time.Duration) { s.metrics.Route(r).Confirm(d) }}); err != nil {
		return nil, err
	}
	if s.catalog, err = catalog.New(catalog.Config{Workers: s.client.Workers, Store: cfg.Jobs.Store, Logger: cfg.Logger,
		OnNew: s.track}); err != nil {
		return nil, err
	}
	if s.publisher, err = queue.NewJobPublisher(queue.JobPublisherConfig{DialConfig: cfg.AMQP, Tracing: cfg.Tracing}); err != nil {
		return nil, err
	}
	if s.jobs, err = jobs.NewService(jobs.ServiceConfig{Store: cfg.Jobs.Store, Publisher: s.publisher,
		StartTimeout: cfg.Jobs.StartTimeout, RecoverAfter: cfg.Jobs.RecoverAfter, DeliveryLimit: queue.JobDeliveryLimit,
		Observer: s.metrics, Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	if s.results, err = queue.NewResultConsumer(queue.ResultConsumerConfig{DialConfig: cfg.AMQP, DrainTimeout: 5 * time.Second},
		s.jobs.Apply, s.jobs.ApplyDead); err != nil {
		return nil, err
	}
	if s.watcher, err = queue.NewWatcher(queue.WatcherConfig{DialConfig: cfg.AMQP}, s.catalog.Apply); err != nil {
		return nil, err
	}
	s.echo = newRouter(s.handlers())
	return s, nil
}

// registerAll registers the collectors, naming the first that does not register.
func registerAll(reg *prometheus.Registry, cs []prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("api: metrics: %w", err)
		}
	}
	return nil
}

// track starts following a model version the catalog saw for the first time.
func (s *Server) track(r queue.Route) {
	s.client.Watch(r)
	s.publisher.Track(r)
	s.capacity.Track(r)
	s.metrics.Route(r)
}

// Client exposes the sync client (state and counters).
func (s *Server) Client() *queue.Client { return s.client }

// Catalog exposes the model catalog.
func (s *Server) Catalog() *catalog.Catalog { return s.catalog }

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler { return s.echo }

// Run serves on ln until ctx is cancelled or Stop is called, then drains: /ready
// turns 503, new calls get 503 draining, calls in flight finish (each up to its
// deadline, all within DrainTimeout), then the HTTP server, the broker connections
// and the job store close, last opened first. Run returns after every goroutine it
// started has stopped.
func (s *Server) Run(ctx context.Context, ln net.Listener) (err error) {
	if !s.Start() {
		return errors.New("api: already run or stopped")
	}
	defer func() { s.Finish(err) }()
	if err := s.catalog.Load(ctx); err != nil {
		s.log.Warn("model catalog not loaded from the store; models are known once workers announce them", "err", err)
	}
	for _, r := range s.catalog.Routes() {
		s.track(r)
	}

	bg := func(name string, run func(context.Context)) {
		cctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); run(cctx) }()
		s.OnStop(name, func(context.Context) error { cancel(); <-done; return nil })
	}
	bg("capacity estimate", func(ctx context.Context) { s.capacity.Run(ctx) })
	bg("sync client", func(ctx context.Context) { _ = s.client.Run(ctx) })
	bg("job publisher", func(ctx context.Context) { _ = s.publisher.Run(ctx) })
	bg("job results", func(ctx context.Context) { _ = s.results.Run(ctx) })
	bg("job service", func(ctx context.Context) { _ = s.jobs.Run(ctx) })
	bg("model announcements", func(ctx context.Context) { _ = s.watcher.Run(ctx) })
	bg("keys file", s.cfg.Auth.Run)
	bg("traffic settings", func(ctx context.Context) { s.catalog.FollowTraffic(ctx, s.cfg.TrafficRefresh) })
	if s.cfg.ManagementURL != "" {
		bg("queue policy", func(ctx context.Context) {
			queue.KeepPolicy(ctx, queue.PolicyConfig{ManagementURL: s.cfg.ManagementURL, Vhost: s.vhost,
				MaxLength: s.cfg.QueueMaxLength}, s.log)
		})
	} else {
		s.log.Warn("MANAGEMENT_URL is empty: the request queues' bound is not applied and /capacity has no broker data")
	}

	srv := &http.Server{Handler: s.echo, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	httpErr := make(chan error, 1)
	go func() { httpErr <- srv.Serve(ln) }()
	s.OnStop("http server", func(ctx context.Context) error {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		if err := <-httpErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	s.log.Info("api listening", "addr", ln.Addr().String(), "default_model", s.cfg.DefaultModel, "admin_api", s.cfg.AdminAPI,
		"auth", s.cfg.Auth.Enabled())
	if !s.cfg.Auth.Enabled() && s.cfg.Auth.Mode() == auth.ModeNone {
		s.log.Warn("AUTH=none: authentication is off; anyone who reaches this API may call every model and read every job")
	}
	if s.cfg.AdminAPI == AdminOn && !s.cfg.Auth.Enabled() {
		s.log.Warn("ADMIN_API=on: anyone who reaches this API can change where calls go (PUT/DELETE /v2/models/{name}/traffic); there is no authentication")
	}
	go s.markReady(ctx)

	var serveErr error
	select {
	case <-ctx.Done():
		// A cancelled context (SIGTERM in the binary) is a stop like Stop: long
		// polls, which watch Stopping, answer at once.
		s.RequestStop()
	case <-s.Stopping():
	case e := <-httpErr:
		httpErr <- e
		if !errors.Is(e, http.ErrServerClosed) {
			serveErr = fmt.Errorf("http server: %w", e)
		}
	}
	s.drain()
	tctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout+10*time.Second)
	defer cancel()
	err = errors.Join(serveErr, s.Teardown(tctx))
	s.log.Info("api stopped", "stats", fmt.Sprintf("%+v", s.client.Stats()))
	return err
}

// markReady moves to Ready once the sync client first connected.
func (s *Server) markReady(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !s.client.State().EverConnected {
		select {
		case <-ctx.Done():
			return
		case <-s.Stopping():
			return
		case <-t.C:
		}
	}
	s.Set(lifecycle.Ready)
}

// drain stops new calls and waits (within DrainTimeout) for those in flight.
func (s *Server) drain() {
	s.mu.Lock()
	s.Set(lifecycle.Draining)
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
	if s.State() >= lifecycle.Draining {
		return false
	}
	s.inflight++
	return true
}

func (s *Server) leave() {
	s.mu.Lock()
	s.inflight--
	if s.inflight == 0 && s.State() >= lifecycle.Draining {
		close(s.idle)
	}
	s.mu.Unlock()
}

// metricsSource feeds the API metrics at scrape time.
type metricsSource struct{ s *Server }

func (m metricsSource) Routes() []queue.Route     { return m.s.catalog.Routes() }
func (m metricsSource) Workers(r queue.Route) int { return m.s.client.Workers(r) }
func (m metricsSource) Client() (queue.State, queue.ClientStats) {
	return m.s.client.State(), m.s.client.Stats()
}
func (m metricsSource) WorkersNeeded(r queue.Route) (int, bool) {
	snap, ok := m.s.capacity.Snapshot(r)
	return snap.WorkersNeeded, ok
}
