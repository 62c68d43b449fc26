package api

import (
	"context"
	"crypto/rand"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-farm/warren/internal/lifecycle"
	"github.com/warren-farm/warren/pkg/apidoc"
	"github.com/warren-farm/warren/pkg/auth"
	"github.com/warren-farm/warren/pkg/catalog"
	"github.com/warren-farm/warren/pkg/httperr"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/metrics"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/reason"
)

// The narrow interfaces the handlers use, defined where they are used (a fake of
// each makes the handlers unit-testable).

// Caller makes one call to a model version (the queue client).
type Caller interface {
	Call(ctx context.Context, req queue.Request) (*queue.Reply, error)
}

// Catalog knows the farm's models (pkg/catalog): Resolve finds a named version
// (or the default rule's), Pick the version a call that names none goes to (the
// model's traffic settings, with header reading the call's request headers).
type Catalog interface {
	Resolve(name, version string) (catalog.Version, error)
	Pick(name string, header func(string) string) (catalog.Version, error)
	Models() []catalog.Model
}

// Jobs is the job service (pkg/jobs).
type Jobs interface {
	Submit(ctx context.Context, sub jobs.Submission) (*jobs.Job, bool, error)
	Get(ctx context.Context, id string) (*jobs.Job, error)
	Wait(ctx context.Context, id string, timeout time.Duration) (*jobs.Job, error)
	Cancel(ctx context.Context, id string) (*jobs.Job, error)
}

// Capacity takes the observations of the workers-needed estimate and serves it.
type Capacity interface {
	ObserveService(r queue.Route, compute time.Duration, slots int)
	ObserveTurnedAway(r queue.Route)
	Handler() http.Handler
}

// handlers is everything the HTTP handlers use.
type handlers struct {
	cfg      Config
	calls    Caller
	catalog  Catalog
	traffic  TrafficAdmin
	jobs     Jobs
	capacity Capacity
	metrics  *metrics.API
	auth     *auth.Authenticator
	registry *prometheus.Registry
	// state is the server's lifecycle state; enter/leave count calls for the drain.
	state        func() lifecycle.State
	enter        func() bool
	leave        func()
	stopping     <-chan struct{} // closed when a stop begins: long polls answer at once
	broker       func() (connected bool)
	jobsProblem  func() string
	instrumented bool
}

func (s *Server) handlers() *handlers {
	return &handlers{
		cfg: s.cfg, calls: s.client, catalog: s.catalog, traffic: s.catalog, jobs: s.jobs, capacity: s.capacity, metrics: s.metrics,
		auth: s.cfg.Auth, registry: s.cfg.Registry, state: s.State, enter: s.enter, leave: s.leave, stopping: s.Stopping(),
		broker: func() bool { return s.client.State().Connected },
		jobsProblem: func() string {
			st := s.publisher.State()
			switch {
			case !st.Connected:
				return "the job publisher is not connected to the broker"
			case st.Problem != "":
				return st.Problem
			}
			return ""
		},
		instrumented: true,
	}
}

// newRouter registers every route.
func newRouter(h *handlers) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = httperr.Handler(h.cfg.Logger)
	if h.cfg.Tracing.Enabled() {
		e.Use(h.cfg.Tracing.Middleware())
	}
	e.Use(requestID)
	if h.auth == nil {
		h.auth = h.cfg.Auth
	}
	if h.auth != nil {
		e.Use(h.authenticate)
	}
	e.GET("/", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"service": "Service A - Input Logger", "status": "running"})
	})
	e.GET("/health", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"service": "Service A", "status": "healthy"})
	})
	e.GET("/ready", h.ready)
	e.POST("/process", h.process)
	e.POST("/jobs", h.postJob)
	e.GET("/jobs/:id", h.getJob)
	e.DELETE("/jobs/:id", h.deleteJob)
	h.v2Routes(e)
	h.trafficRoutes(e)
	e.GET("/metrics", echo.WrapHandler(metrics.Handler(h.registry)))
	e.GET("/capacity", echo.WrapHandler(h.capacity.Handler()))
	e.HEAD("/capacity", echo.WrapHandler(h.capacity.Handler()))
	apidoc.Register(e)
	if h.instrumented {
		metrics.NewHTTP(h.registry).Instrument(e)
	}
	return e
}

// readyBody is GET /ready.
type readyBody struct {
	Status string `json:"status"` // starting, ready, draining
	Broker string `json:"broker"` // up, down
	// Workers is the default model's live workers (the lab's "can /process be
	// answered"); Models lists every known model version.
	Workers int           `json:"workers"`
	Models  []modelHealth `json:"models"`
	Jobs    jobsHealth    `json:"jobs"`
}

type modelHealth struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Workers int    `json:"workers"`
}

type jobsHealth struct {
	Status  string `json:"status"` // ok, degraded
	Problem string `json:"problem,omitempty"`
}

// ready is GET /ready: 200 once the broker was reached and until a drain starts.
// A broker outage after start keeps the API in the load balancer: clients get JSON
// 503s rather than connection resets. Jobs that cannot be published degrade only
// the job endpoints; they show here without failing the probe.
func (h *handlers) ready(c echo.Context) error {
	b := readyBody{Status: "ready", Broker: "down", Models: []modelHealth{}, Jobs: jobsHealth{Status: "ok"}}
	if h.broker() {
		b.Broker = "up"
	}
	if v, err := h.catalog.Resolve(h.cfg.DefaultModel, ""); err == nil {
		b.Workers = max(v.Live, 0)
	}
	for _, m := range h.catalog.Models() {
		for _, v := range m.Versions {
			b.Models = append(b.Models, modelHealth{Name: m.Name, Version: v.Route.Version, Workers: max(v.Live, 0)})
		}
	}
	if p := h.jobsProblem(); p != "" {
		b.Jobs = jobsHealth{Status: "degraded", Problem: p}
	}
	switch st := h.state(); {
	case st >= lifecycle.Draining:
		b.Status = "draining"
	case st < lifecycle.Ready:
		b.Status = "starting"
	default:
		return c.JSON(http.StatusOK, b)
	}
	return c.JSON(http.StatusServiceUnavailable, b)
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

// timeout resolves a call's deadline from X-Request-Timeout: a Go duration ("2.5s",
// "500ms") or plain seconds ("3", "0.5"). Values above MaxRequestTimeout are
// clamped to it; zero, negative, infinite or unparsable values are refused.
func (h *handlers) timeout(v string, ve *httperr.ValidationError) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return h.cfg.RequestTimeout
	}
	d, ok := parseSeconds(v, h.cfg.MaxRequestTimeout)
	if !ok || d <= 0 {
		ve.Add("value_error", "X-Request-Timeout must be a positive duration such as 2.5s or 500ms, or seconds such as 3", v, "header", "X-Request-Timeout")
		return 0
	}
	return d
}

// callOptions are a call's headers: its deadline, and whether the client prefers a
// job (Prefer: respond-async) and how long it would wait for one.
type callOptions struct {
	timeout time.Duration
	async   bool
	wait    time.Duration
}

func (h *handlers) callOptions(req *http.Request, ve *httperr.ValidationError) callOptions {
	o := callOptions{timeout: h.timeout(req.Header.Get("X-Request-Timeout"), ve)}
	var wait string
	o.async, wait = preferAsync(req.Header.Values("Prefer"))
	if o.async { // RFC 7240: a preference that is not applied is ignored
		o.wait = h.waitParam(wait, ve, "header", "Prefer")
	}
	return o
}

// waitParam parses a wait: seconds ("30", "2.5") or a Go duration ("30s"), capped at
// MaxWait. Empty means 0.
func (h *handlers) waitParam(v string, ve *httperr.ValidationError, loc ...any) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	d, ok := parseSeconds(v, h.cfg.Jobs.MaxWait)
	if !ok || d < 0 {
		ve.Add("value_error", "wait must be a non-negative number of seconds (30) or a duration (30s)", v, loc...)
		return 0
	}
	return d
}

// parseSeconds parses seconds ("30", "2.5") or a Go duration ("30s"), capped at
// limit before any conversion can overflow. ok is false if v is neither, or is NaN
// or infinite.
func parseSeconds(v string, limit time.Duration) (time.Duration, bool) {
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(secs) || math.IsInf(secs, 0) {
			return 0, false
		}
		if secs >= limit.Seconds() {
			return limit, true
		}
		return time.Duration(secs * float64(time.Second)), true
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, false
	}
	return min(d, limit), true
}

// preferAsync parses an RFC 7240 Prefer header: whether respond-async is asked for
// and the wait preference (seconds).
func preferAsync(h []string) (async bool, wait string) {
	for _, line := range h {
		for _, p := range strings.Split(line, ",") {
			p = strings.TrimSpace(p)
			name, val, _ := strings.Cut(p, "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "respond-async":
				async = true
			case "wait":
				wait = strings.Trim(strings.TrimSpace(val), `"`)
			}
		}
	}
	return async, wait
}

// requestIDOf is the request id the requestID middleware set.
func requestIDOf(c echo.Context) string { return c.Response().Header().Get(echo.HeaderXRequestID) }

// contextUntil is parent, also cancelled when stop closes.
func contextUntil(parent context.Context, stop <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// draining is the answer to a call that arrives once a drain started.
func draining() error {
	return httperr.Of(reason.Draining, "Model service is unavailable: this API instance is shutting down; retry", nil)
}
