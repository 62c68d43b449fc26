package tracing

import (
	"context"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// AMQPCarrier adapts AMQP message headers to [propagation.TextMapCarrier], so the
// W3C "traceparent" and "tracestate" travel as message headers. Get reads string
// and []byte values (other AMQP clients may send byte arrays); Set stores strings.
type AMQPCarrier amqp.Table

var _ propagation.TextMapCarrier = AMQPCarrier(nil)

// Get returns the value of key as a string, or "" when it is absent or not text.
func (c AMQPCarrier) Get(key string) string {
	switch v := c[key].(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

// Set stores value under key. c must not be nil.
func (c AMQPCarrier) Set(key, value string) { c[key] = value }

// Keys returns the header names, in no particular order.
func (c AMQPCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Inject writes the trace context of ctx's span into headers (a request's or a
// reply's). It writes nothing when disabled, when ctx has no span, or when headers
// is nil.
func (t *Tracing) Inject(ctx context.Context, headers amqp.Table) {
	if !t.Enabled() || headers == nil {
		return
	}
	t.prop.Inject(ctx, AMQPCarrier(headers))
}

// Extract returns ctx carrying the remote span context found in headers, to parent
// the spans started from it. Disabled, or without a valid traceparent, it returns
// ctx unchanged.
func (t *Tracing) Extract(ctx context.Context, headers amqp.Table) context.Context {
	if !t.Enabled() {
		return ctx
	}
	return t.prop.Extract(ctx, AMQPCarrier(headers))
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
