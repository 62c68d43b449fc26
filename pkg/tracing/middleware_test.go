package tracing

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const (
	callerTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpanID  = "00f067aa0ba902b7"
	callerSampled = "00-" + callerTraceID + "-" + callerSpanID + "-01"
	callerDropped = "00-" + callerTraceID + "-" + callerSpanID + "-00"
)

// newEnabled returns tracing that exports synchronously into an in-memory exporter.
func newEnabled(t testing.TB) (*Tracing, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tr, err := New(context.Background(), Config{ServiceName: "warren-test", Exporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	return tr, exp
}

// newEcho serves a few routes behind mw; each handler stores the span context it
// saw in *seen.
func newEcho(mw echo.MiddlewareFunc, seen *trace.SpanContext) *echo.Echo {
	e := echo.New()
	e.Use(mw)
	record := func(c echo.Context) { *seen = trace.SpanContextFromContext(c.Request().Context()) }
	e.POST("/process", func(c echo.Context) error {
		record(c)
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/items/:id", func(c echo.Context) error {
		record(c)
		return c.NoContent(http.StatusNoContent)
	})
	e.POST("/fail", func(c echo.Context) error {
		record(c)
		return echo.NewHTTPError(http.StatusServiceUnavailable, "no workers")
	})
	return e
}

func mustTraceID(t *testing.T, s string) trace.TraceID {
	t.Helper()
	id, err := trace.TraceIDFromHex(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func mustSpanID(t *testing.T, s string) trace.SpanID {
	t.Helper()
	id, err := trace.SpanIDFromHex(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestMiddleware(t *testing.T) {
	tests := []struct {
		name        string
		method      string
		target      string
		traceparent string
		wantStatus  int
		wantSpan    string // "" means no span exported
		wantRoute   string // "" means no http.route attribute
		wantError   bool
		wantParent  bool // continues the caller's trace
		noHandler   bool // Echo answers itself (404, 405)
	}{
		{name: "continues the caller's trace", method: "POST", target: "/process", traceparent: callerSampled,
			wantStatus: 200, wantSpan: "POST /process", wantRoute: "/process", wantParent: true},
		{name: "route template, not the path", method: "GET", target: "/items/42", traceparent: callerSampled,
			wantStatus: 204, wantSpan: "GET /items/:id", wantRoute: "/items/:id", wantParent: true},
		{name: "new trace without traceparent", method: "POST", target: "/process",
			wantStatus: 200, wantSpan: "POST /process", wantRoute: "/process"},
		{name: "5xx is an error and the status is rendered once", method: "POST", target: "/fail", traceparent: callerSampled,
			wantStatus: 503, wantSpan: "POST /fail", wantRoute: "/fail", wantError: true, wantParent: true},
		{name: "unmatched path", method: "GET", target: "/no/such/path",
			wantStatus: 404, wantSpan: "GET unmatched", noHandler: true},
		{name: "unknown method", method: "FROB", target: "/process",
			wantStatus: 405, wantSpan: "HTTP /process", wantRoute: "/process", noHandler: true},
		{name: "caller's unsampled decision is kept", method: "POST", target: "/process", traceparent: callerDropped,
			wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, exp := newEnabled(t)
			var seen trace.SpanContext
			e := newEcho(tr.Middleware(), &seen)

			req := httptest.NewRequest(tt.method, tt.target, nil)
			if tt.traceparent != "" {
				req.Header.Set("traceparent", tt.traceparent)
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)

			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %q)", rec.Code, tt.wantStatus, rec.Body)
			}
			spans := exp.GetSpans().Snapshots()
			if tt.wantSpan == "" {
				if len(spans) != 0 {
					t.Fatalf("exported %d spans, want none", len(spans))
				}
				if !seen.IsValid() || seen.TraceID() != mustTraceID(t, callerTraceID) {
					t.Fatalf("handler saw %v, want the caller's trace id (forwarded, not recorded)", seen)
				}
				return
			}
			if len(spans) != 1 {
				t.Fatalf("exported %d spans, want 1", len(spans))
			}
			s := spans[0]
			if s.Name() != tt.wantSpan || s.SpanKind() != trace.SpanKindServer {
				t.Errorf("span %q kind %v, want %q server", s.Name(), s.SpanKind(), tt.wantSpan)
			}
			a := attrs(s)
			if got := a["http.response.status_code"].AsInt64(); got != int64(tt.wantStatus) {
				t.Errorf("http.response.status_code = %d, want %d", got, tt.wantStatus)
			}
			if got := a["http.route"].AsString(); got != tt.wantRoute {
				t.Errorf("http.route = %q, want %q", got, tt.wantRoute)
			}
			if got := a["url.path"].AsString(); got != req.URL.Path {
				t.Errorf("url.path = %q, want %q", got, req.URL.Path)
			}
			if got := s.Status().Code == codes.Error; got != tt.wantError {
				t.Errorf("error status = %v, want %v (%+v)", got, tt.wantError, s.Status())
			}
			if !tt.noHandler && !seen.Equal(s.SpanContext()) {
				t.Errorf("handler saw span %v, want the server span %v", seen, s.SpanContext())
			}
			if tt.wantParent {
				if s.SpanContext().TraceID() != mustTraceID(t, callerTraceID) {
					t.Errorf("trace id %s, want the caller's %s", s.SpanContext().TraceID(), callerTraceID)
				}
				if p := s.Parent(); p.SpanID() != mustSpanID(t, callerSpanID) || !p.IsRemote() {
					t.Errorf("parent %v, want the caller's remote span %s", p, callerSpanID)
				}
			} else if s.Parent().IsValid() || !s.SpanContext().IsValid() {
				t.Errorf("want a new root span, got parent %v span %v", s.Parent(), s.SpanContext())
			}
		})
	}
}

func TestMiddlewareDisabledPassesThrough(t *testing.T) {
	for _, tr := range []*Tracing{mustDisabled(t), nil} {
		var seen trace.SpanContext
		e := newEcho(tr.Middleware(), &seen)
		req := httptest.NewRequest("POST", "/process", nil)
		req.Header.Set("traceparent", callerSampled)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d, want 200", rec.Code)
		}
		if seen.IsValid() {
			t.Fatalf("disabled middleware put a span context in the request: %v", seen)
		}
	}
}

// TestMiddlewareDisabledCostsNothing: disabled, the middleware is the next handler
// itself, so a request does no extra work at all.
func TestMiddlewareDisabledCostsNothing(t *testing.T) {
	next := func(c echo.Context) error { return nil }
	for _, tr := range []*Tracing{mustDisabled(t), nil} {
		got := tr.Middleware()(next)
		if reflect.ValueOf(got).Pointer() != reflect.ValueOf(next).Pointer() {
			t.Fatal("disabled middleware wraps the handler")
		}
	}
	tr, _ := newEnabled(t)
	if reflect.ValueOf(tr.Middleware()(next)).Pointer() == reflect.ValueOf(next).Pointer() {
		t.Fatal("enabled middleware does not wrap the handler: the check above proves nothing")
	}
}

func mustDisabled(t testing.TB) *Tracing {
	t.Helper()
	tr, err := New(context.Background(), Config{ServiceName: "warren-test"})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Enabled() {
		t.Fatal("tracing enabled without an endpoint or exporter")
	}
	return tr
}

// discardWriter is an http.ResponseWriter that keeps nothing, for allocation
// counts and benchmarks.
type discardWriter struct{ header http.Header }

func (w discardWriter) Header() http.Header         { return w.header }
func (w discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w discardWriter) WriteHeader(int)             {}

// discardExporter drops spans: the benchmark measures recording, not storage.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

func benchmarkMiddleware(b *testing.B, mw echo.MiddlewareFunc) {
	var seen trace.SpanContext
	e := newEcho(mw, &seen)
	req := httptest.NewRequest("POST", "/process", nil)
	req.Header.Set("traceparent", callerSampled)
	w := discardWriter{header: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		e.ServeHTTP(w, req)
	}
}

// BenchmarkMiddlewareNone is the baseline: the same Echo without the middleware.
func BenchmarkMiddlewareNone(b *testing.B) {
	benchmarkMiddleware(b, func(next echo.HandlerFunc) echo.HandlerFunc { return next })
}

func BenchmarkMiddlewareDisabled(b *testing.B) {
	benchmarkMiddleware(b, mustDisabled(b).Middleware())
}

func BenchmarkMiddlewareEnabled(b *testing.B) {
	tr, err := New(context.Background(), Config{Exporter: discardExporter{}})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = tr.Shutdown(context.Background()) }()
	benchmarkMiddleware(b, tr.Middleware())
}
