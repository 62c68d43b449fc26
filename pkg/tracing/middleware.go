package tracing

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// UnmatchedRoute names requests that matched no route, in place of the route
// template, so unknown paths cannot multiply span names.
const UnmatchedRoute = "unmatched"

// Middleware returns Echo middleware that records each request as a server span
// named "<METHOD> <route template>" (e.g. "POST /process", "GET unmatched"),
// continuing the caller's trace when the request carries a W3C traceparent. The
// span is in c.Request().Context() for the handlers, with http.request.method,
// http.route, url.path and http.response.status_code; a 5xx marks it as an error.
//
// Install it with e.Use (it needs the route, known after routing) and before other
// middleware, so their work is inside the span. A handler's error is rendered by
// the HTTP error handler here, to learn the status, and then returned unchanged;
// Echo's handler and httperr's skip a response already written.
//
// Disabled, it returns next itself: no work at all per request.
func (t *Tracing) Middleware() echo.MiddlewareFunc {
	if !t.Enabled() {
		return func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			ctx := t.prop.Extract(req.Context(), propagation.HeaderCarrier(req.Header))

			method, methodAttr := httpMethod(req.Method)
			route := c.Path() // empty when no route matched
			attrs := []attribute.KeyValue{methodAttr, semconv.URLPath(req.URL.Path), semconv.URLScheme(scheme(req))}
			name := method + " " + route
			if route == "" {
				name = method + " " + UnmatchedRoute
			} else {
				attrs = append(attrs, semconv.HTTPRoute(route))
			}
			ctx, span := t.tracer.Start(ctx, name,
				trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
			defer span.End()
			c.SetRequest(req.WithContext(ctx))

			err := next(c)
			if err != nil && !c.Response().Committed {
				c.Error(err)
			}
			status := c.Response().Status
			span.SetAttributes(semconv.HTTPResponseStatusCode(status))
			if status >= http.StatusInternalServerError {
				span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
				desc := http.StatusText(status)
				if err != nil {
					desc = err.Error()
				}
				span.SetStatus(codes.Error, desc)
			}
			return err
		}
	}
}

// httpMethod returns the method for the span name and its attribute; methods
// outside the standard set become "HTTP" and "_OTHER", as the HTTP semantic
// conventions ask, so a client cannot invent span names.
func httpMethod(m string) (string, attribute.KeyValue) {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m, semconv.HTTPRequestMethodKey.String(m)
	}
	return "HTTP", semconv.HTTPRequestMethodOther
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}
