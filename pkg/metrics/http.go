package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Unmatched is the route label of every request that matched no route, so random
// paths cannot grow the number of series.
const Unmatched = "unmatched"

// HTTP holds the HTTP server metrics both binaries export.
type HTTP struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight prometheus.Gauge
	routes   map[string]bool // path template of every registered route
}

// NewHTTP registers the HTTP metrics on reg.
func NewHTTP(reg prometheus.Registerer) *HTTP {
	h := &HTTP{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "http_requests_total",
			Help: "HTTP requests by route template, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "http_request_duration_seconds",
			Help: "HTTP request latency by route template and method.", Buckets: LatencyBuckets,
		}, []string{"route", "method"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "http_requests_in_flight",
			Help: "HTTP requests being served.",
		}),
		routes: map[string]bool{},
	}
	reg.MustRegister(h.requests, h.duration, h.inflight)
	return h
}

// Instrument installs the middleware on e and creates the series of every route e
// has now (call it after the routes are registered): each route's latency histogram
// and its 200 count at zero.
func (h *HTTP) Instrument(e *echo.Echo) {
	for _, r := range e.Routes() {
		if r.Method == echo.RouteNotFound || r.Method == "echo_route_any" {
			continue
		}
		h.routes[r.Path] = true
		h.duration.WithLabelValues(r.Path, r.Method)
		h.requests.WithLabelValues(r.Path, r.Method, "200")
	}
	h.duration.WithLabelValues(Unmatched, http.MethodGet)
	h.requests.WithLabelValues(Unmatched, http.MethodGet, "404")
	e.Use(h.middleware)
}

func (h *HTTP) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		h.inflight.Inc()
		defer h.inflight.Dec()
		if err := next(c); err != nil {
			// Render the error now so the status code is known (what Echo's own
			// logging middleware does); Echo skips a committed response.
			c.Error(err)
		}
		// Both labels stay bounded: a path no route matched collapses to Unmatched
		// and an unusual method to "other" (a known path with a wrong method keeps
		// its route, answered 405).
		method, route := c.Request().Method, c.Path()
		if !h.routes[route] {
			route = Unmatched
		}
		if !knownMethod(method) {
			method = "other"
		}
		h.requests.WithLabelValues(route, method, strconv.Itoa(c.Response().Status)).Inc()
		h.duration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
		return nil
	}
}

func knownMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return true
	}
	return false
}
