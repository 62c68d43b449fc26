//go:build porting

package e2e

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/api"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/tracing"
	"github.com/warren-farm/warren/pkg/worker"
)

// TestTraceReachesTheWorker sends a request carrying a W3C traceparent through a real
// broker and checks that the worker's spans (queue wait, process, model) belong to
// the caller's trace, parented through the API's HTTP and publish spans. API and
// worker have tracer providers of their own, as two processes would; the only link
// between them is the message headers.
func TestTraceReachesTheWorker(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	vh := testbroker.NewVhost(t)
	apiSpans, workerSpans := tracetest.NewInMemoryExporter(), tracetest.NewInMemoryExporter()
	ctx := context.Background()
	atr, err := tracing.New(ctx, tracing.Config{ServiceName: "warren-api", Exporter: apiSpans})
	if err != nil {
		t.Fatal(err)
	}
	wtr, err := tracing.New(ctx, tracing.Config{ServiceName: "warren-worker", Exporter: workerSpans})
	if err != nil {
		t.Fatal(err)
	}
	defer atr.Shutdown(ctx)
	defer wtr.Shutdown(ctx)

	p := runInProcess(t, vh, api.Config{Tracing: atr},
		worker.Config{Tracing: wtr, Queue: queue.ConsumerConfig{WorkerID: "traced-1"}}, model.NewSeed(model.SeedConfig{}))
	base, stop := p.base, p.stop
	defer stop()

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	r := doChecked(t, newFarmSpec(t), "POST", base+"/process", `{"data":"trace me"}`,
		"traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if r.Status != 200 {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}

	byName := func(spans tracetest.SpanStubs) map[string]tracetest.SpanStub {
		m := map[string]tracetest.SpanStub{}
		for _, s := range spans {
			m[s.Name] = s
		}
		return m
	}
	// The HTTP span ends when the middleware returns, which can be just after the
	// client read the response.
	as := byName(apiSpans.GetSpans())
	for end := time.Now().Add(2 * time.Second); len(as) < 2 && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
		as = byName(apiSpans.GetSpans())
	}
	httpSpan, ok := as["POST /process"]
	if !ok {
		t.Fatalf("no API HTTP span; API spans: %v", keys(as))
	}
	pub, ok := as["publish "+queue.DefaultQueue]
	if !ok {
		t.Fatalf("no publish span; API spans: %v", keys(as))
	}
	if got := httpSpan.SpanContext.TraceID().String(); got != traceID {
		t.Fatalf("HTTP span trace id %s, want the caller's %s", got, traceID)
	}
	if pub.Parent.SpanID() != httpSpan.SpanContext.SpanID() {
		t.Errorf("publish span's parent is not the HTTP span")
	}

	// The worker exports its spans when they end, which is before the reply.
	ws := byName(workerSpans.GetSpans())
	for _, name := range []string{"queue wait", "process " + queue.DefaultQueue, "predict seed-animals"} {
		s, ok := ws[name]
		if !ok {
			t.Fatalf("no worker span %q; worker spans: %v", name, keys(ws))
		}
		if got := s.SpanContext.TraceID().String(); got != traceID {
			t.Errorf("worker span %q has trace id %s, want %s", name, got, traceID)
		}
	}
	if ws["process "+queue.DefaultQueue].Parent.SpanID() != pub.SpanContext.SpanID() {
		t.Errorf("the worker's process span is not a child of the API's publish span")
	}
	if ws["predict seed-animals"].Parent.SpanID() != ws["process "+queue.DefaultQueue].SpanContext.SpanID() {
		t.Errorf("the model span is not a child of the process span")
	}
	if k := ws["process "+queue.DefaultQueue].SpanKind; k != trace.SpanKindConsumer {
		t.Errorf("process span kind %v", k)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
