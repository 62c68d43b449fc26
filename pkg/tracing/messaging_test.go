package tracing

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestTraceCrossesTheQueue follows one request through two processes, each with
// its own provider and exporter as in production: an HTTP request carrying a
// traceparent reaches the API, whose publish span is injected into the message
// headers; the worker extracts them and records queue wait, process and model
// spans, which must all carry the HTTP caller's trace id; the reply carries the
// worker's context back.
func TestTraceCrossesTheQueue(t *testing.T) {
	api, apiSpans := newEnabled(t)
	worker, workerSpans := newEnabled(t)
	const queue = "warren.requests"
	published := time.Date(2030, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	received := published.Add(1500 * time.Millisecond)

	// The "wire": the request message's headers, as the API's queue client builds them.
	headers := map[string]string{"x-request-id": "r-1"}
	var reply map[string]string

	runWorker := func(h map[string]string) map[string]string {
		ctx := worker.Extract(context.Background(), h)
		worker.RecordQueueWait(ctx, published, received)
		ctx, process := worker.StartProcess(ctx, queue)
		defer process.End()
		_, model := worker.StartModel(ctx, "seed-animals")
		model.End()
		out := map[string]string{}
		worker.Inject(ctx, out)
		return out
	}

	e := echo.New()
	e.Use(api.Middleware())
	e.POST("/process", func(c echo.Context) error {
		ctx, pub := api.StartPublish(c.Request().Context(), queue)
		api.Inject(ctx, headers)
		pub.End()
		reply = runWorker(headers)
		if got := trace.SpanContextFromContext(api.Extract(context.Background(), reply)); got.TraceID() != trace.SpanContextFromContext(ctx).TraceID() {
			t.Errorf("reply carries trace %s, want the request's", got.TraceID())
		}
		return c.NoContent(http.StatusOK)
	})
	req := httptest.NewRequest("POST", "/process", nil)
	req.Header.Set("traceparent", callerSampled)
	e.ServeHTTP(httptest.NewRecorder(), req)

	if headers["x-request-id"] != "r-1" {
		t.Errorf("Inject disturbed other headers: %v", headers)
	}
	if headers["traceparent"] == "" {
		t.Fatalf("no traceparent string header after Inject: %v", headers)
	}

	byName := map[string]tracetest.SpanStub{}
	for _, s := range append(apiSpans.GetSpans(), workerSpans.GetSpans()...) {
		byName[s.Name] = s
	}
	want := []struct {
		name string
		kind trace.SpanKind
	}{
		{"POST /process", trace.SpanKindServer},
		{"publish " + queue, trace.SpanKindProducer},
		{"queue wait", trace.SpanKindInternal},
		{"process " + queue, trace.SpanKindConsumer},
		{"predict seed-animals", trace.SpanKindInternal},
	}
	if len(byName) != len(want) {
		t.Fatalf("got spans %v, want %d", slices.Collect(maps.Keys(byName)), len(want))
	}
	caller := mustTraceID(t, callerTraceID)
	for _, w := range want {
		s, ok := byName[w.name]
		if !ok {
			t.Fatalf("no span %q", w.name)
		}
		if s.SpanContext.TraceID() != caller {
			t.Errorf("%q: trace id %s, want the HTTP caller's %s", w.name, s.SpanContext.TraceID(), caller)
		}
		if s.SpanKind != w.kind {
			t.Errorf("%q: kind %v, want %v", w.name, s.SpanKind, w.kind)
		}
	}
	parentOf := func(child, parent string) {
		t.Helper()
		if got, want := byName[child].Parent.SpanID(), byName[parent].SpanContext.SpanID(); got != want {
			t.Errorf("%q: parent %s, want %q (%s)", child, got, parent, want)
		}
	}
	parentOf("publish "+queue, "POST /process")
	parentOf("queue wait", "publish "+queue)
	parentOf("process "+queue, "publish "+queue)
	parentOf("predict seed-animals", "process "+queue)
	if !byName["process "+queue].Parent.IsRemote() {
		t.Error("process span's parent is not remote: the context did not come from the headers")
	}

	wait := byName["queue wait"]
	if !wait.StartTime.Equal(published) || !wait.EndTime.Equal(received) {
		t.Errorf("queue wait %v → %v, want %v → %v", wait.StartTime, wait.EndTime, published, received)
	}
	pub := attrs(byName["publish "+queue].Snapshot())
	if pub["messaging.system"].AsString() != "rabbitmq" || pub["messaging.destination.name"].AsString() != queue {
		t.Errorf("publish attributes %v", pub)
	}
	if m := attrs(byName["predict seed-animals"].Snapshot()); m["warren.model.name"].AsString() != "seed-animals" {
		t.Errorf("model attributes %v", m)
	}
	if len(reply) == 0 {
		t.Error("worker injected nothing into the reply headers")
	}
}

func TestRecordQueueWaitEdges(t *testing.T) {
	tr, exp := newEnabled(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tr.RecordQueueWait(context.Background(), time.Time{}, now)
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("zero publishedAt recorded %d spans, want none", n)
	}
	tr.RecordQueueWait(context.Background(), now.Add(time.Second), now) // clock skew
	spans := exp.GetSpans()
	if len(spans) != 1 || !spans[0].StartTime.Equal(now) || !spans[0].EndTime.Equal(now) {
		t.Fatalf("skewed wait: %+v, want one zero-length span at %v", spans, now)
	}
}

// TestDisabledDoesNothing: disabled (or nil) tracing records nothing, reads and
// writes no headers, leaves contexts untouched and does not allocate.
func TestDisabledDoesNothing(t *testing.T) {
	// A context that already carries a valid, sampled span context.
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: mustTraceID(t, callerTraceID), SpanID: mustSpanID(t, callerSpanID), TraceFlags: trace.FlagsSampled,
	})
	parent := trace.ContextWithSpanContext(context.Background(), sc)

	for name, tr := range map[string]*Tracing{"disabled": mustDisabled(t), "nil": nil} {
		t.Run(name, func(t *testing.T) {
			h := map[string]string{}
			tr.Inject(parent, h)
			if len(h) != 0 {
				t.Errorf("Inject wrote %v", h)
			}
			if ctx := tr.Extract(context.Background(), map[string]string{"traceparent": callerSampled}); trace.SpanContextFromContext(ctx).IsValid() {
				t.Error("Extract read a traceparent")
			}
			tr.Propagator().Inject(parent, propagation.MapCarrier(h))
			if len(h) != 0 {
				t.Errorf("Propagator().Inject wrote %v", h)
			}
			for _, start := range []func(context.Context) (context.Context, trace.Span){
				func(ctx context.Context) (context.Context, trace.Span) { return tr.StartPublish(ctx, "q") },
				func(ctx context.Context) (context.Context, trace.Span) { return tr.StartProcess(ctx, "q") },
				func(ctx context.Context) (context.Context, trace.Span) { return tr.StartModel(ctx, "m") },
				func(ctx context.Context) (context.Context, trace.Span) { return tr.Tracer("x").Start(ctx, "s") },
			} {
				_, span := start(parent)
				if span.IsRecording() {
					t.Error("span is recording")
				}
				span.End()
			}
			if tr.Enabled() {
				t.Error("Enabled")
			}
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Error(err)
			}

			allocs := testing.AllocsPerRun(100, func() {
				ctx, pub := tr.StartPublish(parent, "q")
				tr.Inject(ctx, h)
				pub.End()
				ctx = tr.Extract(parent, h)
				tr.RecordQueueWait(ctx, time.Unix(1, 0), time.Unix(2, 0))
				ctx, proc := tr.StartProcess(ctx, "q")
				_, model := tr.StartModel(ctx, "m")
				model.End()
				proc.End()
				if ctx != parent {
					t.Fatal("a helper replaced the context")
				}
			})
			if allocs != 0 {
				t.Errorf("disabled helpers allocate %v times per request, want 0", allocs)
			}
		})
	}
}

func TestInjectExtractPlainHeaders(t *testing.T) {
	tr, _ := newEnabled(t)
	h := map[string]string{"traceparent": callerSampled, "tracestate": "vendor=1"}
	sc := trace.SpanContextFromContext(tr.Extract(context.Background(), h))
	if !sc.IsValid() || !sc.IsRemote() || sc.TraceID() != mustTraceID(t, callerTraceID) || sc.SpanID() != mustSpanID(t, callerSpanID) {
		t.Fatalf("extracted %v", sc)
	}
	if sc.TraceState().Get("vendor") != "1" {
		t.Errorf("tracestate lost: %v", sc.TraceState())
	}
	out := map[string]string{}
	tr.Inject(trace.ContextWithSpanContext(context.Background(), sc), out)
	if out["traceparent"] != callerSampled {
		t.Errorf("injected %v", out)
	}
	tr.Inject(trace.ContextWithSpanContext(context.Background(), sc), nil) // must not panic
}
