package tracing

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Inject writes the trace context of ctx's span (W3C "traceparent" and
// "tracestate") into message headers. It writes nothing when disabled, when ctx has
// no span, or when headers is nil.
func (t *Tracing) Inject(ctx context.Context, headers map[string]string) {
	if !t.Enabled() || headers == nil {
		return
	}
	t.prop.Inject(ctx, propagation.MapCarrier(headers))
}

// Extract returns ctx carrying the remote span context found in headers, to parent
// the spans started from it. Disabled, or without a valid traceparent, it returns
// ctx unchanged.
func (t *Tracing) Extract(ctx context.Context, headers map[string]string) context.Context {
	if !t.Enabled() {
		return ctx
	}
	return t.prop.Extract(ctx, propagation.MapCarrier(headers))
}

// StartPublish starts the producer span "publish <queue>" around sending a request
// to queue. Inject the returned context into the message headers, so the worker's
// spans become its children, and End the span once the publish is confirmed (or
// the reply arrived, if it is to cover the whole call). attrs are added to the span,
// e.g. semconv.MessagingMessageID(requestID).
//
// Disabled, it returns ctx and a no-op span, without allocating.
func (t *Tracing) StartPublish(ctx context.Context, queue string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !t.Enabled() {
		return ctx, noop.Span{}
	}
	return t.tracer.Start(ctx, "publish "+queue,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(messagingAttrs(queue, semconv.MessagingOperationTypeSend, "publish")...),
		trace.WithAttributes(attrs...))
}

// StartProcess starts the consumer span "process <queue>" around handling one
// delivery from queue. Pass the context returned by [Tracing.Extract] on the
// delivery's headers: the span then continues the API's trace. End it after the
// reply is sent.
//
// Disabled, it returns ctx and a no-op span, without allocating.
func (t *Tracing) StartProcess(ctx context.Context, queue string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !t.Enabled() {
		return ctx, noop.Span{}
	}
	return t.tracer.Start(ctx, "process "+queue,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(messagingAttrs(queue, semconv.MessagingOperationTypeProcess, "process")...),
		trace.WithAttributes(attrs...))
}

// RecordQueueWait records the finished span "queue wait", from publishedAt (when the
// API published the request) to receivedAt (when the worker took it), as a child
// of ctx's span. Call it with the context returned by [Tracing.Extract], so the
// wait sits between the publish and the process spans. The AMQP timestamp property
// has one-second resolution: take publishedAt from a finer header. A publishedAt
// after receivedAt (clock skew between hosts) is recorded as a zero wait; a zero
// publishedAt records nothing.
func (t *Tracing) RecordQueueWait(ctx context.Context, publishedAt, receivedAt time.Time) {
	if !t.Enabled() || publishedAt.IsZero() {
		return
	}
	if publishedAt.After(receivedAt) {
		publishedAt = receivedAt
	}
	_, span := t.tracer.Start(ctx, "queue wait", trace.WithTimestamp(publishedAt))
	span.End(trace.WithTimestamp(receivedAt))
}

// StartModel starts the span "predict <model>" around the model call; model is
// the model's name (one per worker, so span names stay few). End it when the model
// returns, after recording a failure with span.RecordError and span.SetStatus.
//
// Disabled, it returns ctx and a no-op span, without allocating.
func (t *Tracing) StartModel(ctx context.Context, model string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !t.Enabled() {
		return ctx, noop.Span{}
	}
	return t.tracer.Start(ctx, "predict "+model,
		trace.WithAttributes(attribute.String("warren.model.name", model)),
		trace.WithAttributes(attrs...))
}

func messagingAttrs(queue string, op attribute.KeyValue, name string) []attribute.KeyValue {
	return []attribute.KeyValue{
		semconv.MessagingSystemRabbitMQ,
		semconv.MessagingDestinationName(queue),
		semconv.MessagingRabbitMQDestinationRoutingKey(queue), // default exchange: key = queue
		op,
		semconv.MessagingOperationName(name),
	}
}
