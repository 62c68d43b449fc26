package bench

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// spans returns n finished span snapshots of service.
func spans(service string, n int) []sdktrace.ReadOnlySpan {
	res := resource.NewSchemaless(attribute.String("service.name", service))
	stubs := make(tracetest.SpanStubs, n)
	for i := range stubs {
		var tid trace.TraceID
		var sid trace.SpanID
		tid[0], sid[0] = byte(i+1), byte(i+1)
		stubs[i] = tracetest.SpanStub{
			Name:        "span",
			SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}),
			StartTime:   time.Now(), EndTime: time.Now(),
			Resource: res,
		}
	}
	return stubs.Snapshots()
}

// The exporter the binaries use accepts the sink's empty 200 (no error), with
// and without gzip, and the sink counts the spans by service.
func TestOTLPSinkAcceptsTheExporter(t *testing.T) {
	sink, err := StartOTLPSink()
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ctx := context.Background()
	for _, gz := range []bool{false, true} {
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(sink.URL + "/v1/traces")}
		if gz {
			opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
		}
		exp, err := otlptracehttp.New(ctx, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if err := exp.ExportSpans(ctx, spans("svc-a", 3)); err != nil {
			t.Errorf("gzip %v: export: %v", gz, err)
		}
		if err := exp.ExportSpans(ctx, spans("svc-b", 2)); err != nil {
			t.Errorf("gzip %v: export: %v", gz, err)
		}
		if err := exp.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}
	st := sink.Stats()
	if st.Requests != 4 || st.Spans != 10 || st.Bad != 0 || st.Bytes == 0 {
		t.Errorf("stats %+v, want 4 requests, 10 spans", st)
	}
	if st.ByService["svc-a"] != 6 || st.ByService["svc-b"] != 4 {
		t.Errorf("by service %v", st.ByService)
	}

	// Through a tracer provider with a batcher, as in the binaries.
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(sink.URL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "svc-c"))))
	for range 700 { // more than one batch of 512
		_, s := tp.Tracer("t").Start(ctx, "x")
		s.End()
	}
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if st := sink.Stats(); st.ByService["svc-c"] != 700 || st.Bad != 0 {
		t.Errorf("after the provider: %+v", st)
	}

	res, err := http.Get(sink.URL + "/v1/metrics")
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusNotFound || sink.Stats().Bad != 1 {
		t.Errorf("GET /v1/metrics: %s, bad %d", res.Status, sink.Stats().Bad)
	}
	res, err = http.Post(sink.URL+"/v1/traces", "application/x-protobuf", strings.NewReader("\x0a\xff"))
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("truncated body: %s", res.Status)
	}
}

func TestCountSpans(t *testing.T) {
	kv := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{
		{
			Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("host.name", "h"), kv("service.name", "warren-api")}},
			ScopeSpans: []*tracepb.ScopeSpans{
				{Spans: []*tracepb.Span{{Name: "a"}, {Name: "b"}}},
				{Spans: []*tracepb.Span{{Name: "c"}}},
			},
		},
		{
			Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("service.name", "warren-worker")}},
			ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{Name: "d"}, {Name: "e"}, {Name: "f"}, {Name: "g"}}}},
		},
		{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{Name: "h"}}}}},
	}}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]int64{}
	n, err := countSpans(b, by)
	if err != nil || n != 8 {
		t.Fatalf("countSpans = %d, %v; want 8", n, err)
	}
	if by["warren-api"] != 3 || by["warren-worker"] != 4 || by[""] != 1 {
		t.Errorf("by service %v", by)
	}
	if n, err := countSpans(nil, nil); n != 0 || err != nil {
		t.Errorf("empty request: %d, %v", n, err)
	}
	if _, err := countSpans(b[:len(b)-3], nil); err == nil {
		t.Error("truncated request accepted")
	}
}
