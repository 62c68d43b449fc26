// Package tracing carries W3C trace context through warren — HTTP request → AMQP
// headers → worker → reply — and records OpenTelemetry spans for the API request,
// the publish, the time a request waited in the queue and the model call.
//
// # Enabled or not
//
// [New] builds a [Tracing] from a [Config]. Tracing is on when Config names an
// OTLP endpoint (cmd/* copies OTEL_EXPORTER_OTLP_ENDPOINT into it) or an in-process
// exporter (tests). Otherwise it is off, and off means off: the middleware is the
// next handler itself, the span helpers return the context they were given and a
// no-op span without allocating, and nothing is read from or written to headers —
// not even an incoming traceparent is forwarded. A nil *Tracing behaves the same, so
// a component may hold one without checking.
//
// # Spans
//
// One request makes one trace:
//
//	POST /v2/models/{name}/infer     server    API      [Tracing.Middleware]
//	└─ publish warren.req.seed.v1    producer  API      pkg/queue's client ([Tracing.StartPublish], [Tracing.Inject])
//	   ├─ queue wait                 internal  worker   pkg/queue's Trace middleware ([Tracing.Extract], [Tracing.RecordQueueWait])
//	   └─ process warren.req.seed.v1 consumer  worker   pkg/queue's Trace middleware ([Tracing.StartProcess])
//	      └─ predict seed            internal  worker   pkg/worker ([Tracing.StartModel])
//
// A job's spans are the same, named after its job queue (publish and process
// warren.job.<model>.v<n>). The API and the worker are separate processes with
// separate providers; the trace id travels in the message's "traceparent" (and
// "tracestate") header. Everything about messages is done in pkg/queue: the HTTP
// layer and the worker never touch message headers.
//
// # Environment
//
// This package never reads the environment; cmd/* does and fills [Config]. The
// OpenTelemetry SDK underneath does read the standard variables this package has no
// field for — OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION, _CERTIFICATE and
// their _TRACES_ twins for the exporter, OTEL_RESOURCE_ATTRIBUTES and
// OTEL_SERVICE_NAME for the resource — but only once tracing is enabled, and a
// [Config] field always wins over its variable.
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of the spans this package starts.
const ScopeName = "github.com/warren-farm/warren/pkg/tracing"

// OTLP protocols accepted in [Config.Protocol]: the values of
// OTEL_EXPORTER_OTLP_PROTOCOL that the Go SDK implements.
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// Config configures [New]. The zero value disables tracing.
type Config struct {
	// ServiceName and ServiceVersion become the resource's service.name and
	// service.version; empty leaves the SDK's default (OTEL_SERVICE_NAME, or
	// "unknown_service:<executable>").
	ServiceName, ServiceVersion string

	// Endpoint is OTEL_EXPORTER_OTLP_ENDPOINT: the collector's base URL, with scheme
	// (http:// for plain text, https:// for TLS), e.g. "http://otel-collector:4318".
	// For http/protobuf, "/v1/traces" is appended as the specification says. Empty
	// (with TracesEndpoint and Exporter empty too) disables tracing.
	Endpoint string
	// TracesEndpoint is OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: the full traces URL,
	// used as is. When set it wins over Endpoint, and alone enables tracing.
	TracesEndpoint string
	// Protocol is OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf" (empty means this,
	// the specification's default) or "grpc". "http/json" is not implemented by the
	// Go SDK and is refused.
	Protocol string

	// Exporter, when set, receives every span synchronously as it ends, and takes
	// precedence over the endpoints. For tests: tracetest.NewInMemoryExporter().
	Exporter sdktrace.SpanExporter

	// SampleRatio is the fraction of new traces recorded, in (0, 1]; zero means 1
	// (every trace). A request that arrives with a traceparent follows its caller's
	// sampling decision instead.
	SampleRatio float64

	// Logger receives export failures (the collector is down or refuses spans);
	// nil discards them. Failures never reach the request path.
	Logger *slog.Logger
}

// Tracing is the tracing of one process: a tracer provider, the W3C trace-context
// propagator and the helpers warren's packages call. Its methods are safe for
// concurrent use, and every method works on a nil *Tracing (as disabled).
type Tracing struct {
	provider *sdktrace.TracerProvider // nil when disabled
	tracer   trace.Tracer             // scope ScopeName
	prop     propagation.TextMapPropagator
}

var (
	noopProvider   = noop.NewTracerProvider()
	noopPropagator = propagation.NewCompositeTextMapPropagator()
)

// New builds the process's tracing from cfg. With tracing disabled (see [Config])
// it returns a Tracing whose methods do nothing, and never fails. With an endpoint
// it validates cfg and sets up an OTLP exporter behind a batching span processor;
// nothing is dialled yet, so an unreachable collector is not an error here (its
// failures go to cfg.Logger later). The caller must call [Tracing.Shutdown].
func New(ctx context.Context, cfg Config) (*Tracing, error) {
	if cfg.Exporter == nil && cfg.Endpoint == "" && cfg.TracesEndpoint == "" {
		return &Tracing{}, nil
	}
	ratio := cfg.SampleRatio
	if ratio == 0 {
		ratio = 1
	}
	if !(ratio > 0 && ratio <= 1) { // also refuses NaN
		return nil, fmt.Errorf("tracing: SampleRatio %v is not in (0, 1]", cfg.SampleRatio)
	}
	res, err := newResource(cfg)
	if err != nil {
		return nil, err
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	}
	if cfg.Exporter != nil {
		opts = append(opts, sdktrace.WithSyncer(cfg.Exporter))
	} else {
		exp, err := newExporter(ctx, cfg)
		if err != nil {
			return nil, err
		}
		log := cfg.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		opts = append(opts, sdktrace.WithBatcher(loggingExporter{exp, log}))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	return &Tracing{provider: tp, tracer: tp.Tracer(ScopeName), prop: propagation.TraceContext{}}, nil
}

// Enabled reports whether spans are recorded and exported.
func (t *Tracing) Enabled() bool { return t != nil && t.provider != nil }

// Tracer returns a tracer for instrumentation scope name (by convention the
// instrumenting package's import path), for spans the helpers here do not cover.
// Disabled, it is a no-op tracer.
func (t *Tracing) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	if !t.Enabled() {
		return noopProvider.Tracer(name, opts...)
	}
	return t.provider.Tracer(name, opts...)
}

// Propagator returns the W3C trace-context propagator, or a propagator that
// neither reads nor writes anything when disabled.
func (t *Tracing) Propagator() propagation.TextMapPropagator {
	if !t.Enabled() {
		return noopPropagator
	}
	return t.prop
}

// Shutdown exports the spans still buffered and stops the provider; spans ended
// afterwards are dropped. It returns when done or when ctx ends (pass a timeout: an
// unreachable collector otherwise holds it up to the exporter's retry limit). Later
// calls return nil at once.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

func newResource(cfg Config) (*resource.Resource, error) {
	var attrs []attribute.KeyValue
	if cfg.ServiceName != "" {
		attrs = append(attrs, semconv.ServiceName(cfg.ServiceName))
	}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, semconv.ServiceVersion(cfg.ServiceVersion))
	}
	// Schemaless: merging never conflicts with the default resource's schema URL.
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attrs...))
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	return res, nil
}

// newExporter builds the OTLP exporter. The SDK's "an invalid URL keeps the
// default" would silently send to localhost, so URLs are checked here.
func newExporter(ctx context.Context, cfg Config) (sdktrace.SpanExporter, error) {
	base, full := cfg.Endpoint, cfg.TracesEndpoint
	for _, u := range []string{base, full} {
		if u == "" {
			continue
		}
		if err := checkURL(u); err != nil {
			return nil, err
		}
	}
	switch cfg.Protocol {
	case "", ProtocolHTTP:
		if full == "" {
			full = strings.TrimRight(base, "/") + "/v1/traces"
		}
		return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(full))
	case ProtocolGRPC:
		if full == "" {
			full = base
		}
		return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(full))
	default:
		return nil, fmt.Errorf("tracing: OTLP protocol %q is not supported (use %q or %q)", cfg.Protocol, ProtocolHTTP, ProtocolGRPC)
	}
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("tracing: OTLP endpoint %q must be an http:// or https:// URL with a host", s)
	}
	return nil
}

// loggingExporter logs export failures itself instead of handing them to the
// OpenTelemetry global error handler (which prints through the standard library's
// log package, outside the process's structured logs).
type loggingExporter struct {
	sdktrace.SpanExporter
	log *slog.Logger
}

func (e loggingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if err := e.SpanExporter.ExportSpans(ctx, spans); err != nil {
		e.log.Warn("trace export failed", "spans", len(spans), "err", err)
	}
	return nil
}
