package queue

import (
	"context"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/warren-farm/warren/pkg/tracing"
)

// startPublishSpan starts the producer span "publish <queue>" and writes its W3C
// trace context into the message headers, so the consumer's spans continue the
// trace. The returned func ends the span with the publish's (or the call's) outcome.
// tr must be enabled.
func startPublishSpan(ctx context.Context, tr *tracing.Tracing, q string, headers amqp.Table, attrs ...attribute.KeyValue) (context.Context, func(error)) {
	ctx, span := tr.StartPublish(ctx, q, attrs...)
	h := Headers{}
	tr.Inject(ctx, h)
	for k, v := range h {
		headers[k] = v
	}
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}
