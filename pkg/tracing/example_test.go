package tracing_test

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/warren-farm/warren/pkg/tracing"
)

// The API publishes with the trace context in the message headers; the worker
// continues the same trace from them.
func Example() {
	ctx := context.Background()
	exp := tracetest.NewInMemoryExporter() // production: Config{Endpoint: os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")} in cmd/
	tr, err := tracing.New(ctx, tracing.Config{ServiceName: "example", Exporter: exp})
	if err != nil {
		panic(err)
	}
	defer func() { _ = tr.Shutdown(ctx) }()

	// API side (inside the handler, ctx comes from c.Request().Context()).
	headers := map[string]string{}
	pctx, publish := tr.StartPublish(ctx, "warren.requests")
	tr.Inject(pctx, headers)
	publishedAt := time.Now()
	publish.End()

	// Worker side.
	wctx := tr.Extract(context.Background(), headers)
	tr.RecordQueueWait(wctx, publishedAt, time.Now())
	wctx, process := tr.StartProcess(wctx, "warren.requests")
	_, model := tr.StartModel(wctx, "seed-animals")
	model.End()
	process.End()

	spans := exp.GetSpans()
	for _, s := range spans {
		fmt.Println(s.Name, s.SpanContext.TraceID() == spans[0].SpanContext.TraceID())
	}
	// Output:
	// publish warren.requests true
	// queue wait true
	// predict seed-animals true
	// process warren.requests true
}
