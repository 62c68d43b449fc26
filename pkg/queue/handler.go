package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/warren-farm/warren/pkg/tracing"
)

// Message is a request (or a job) as a handler sees it.
type Message struct {
	// Route is the model version whose queue the message came from.
	Route Route
	// Queue is the queue it came from.
	Queue         string
	RequestID     string
	CorrelationID string
	// JobID is set for jobs (and is then also the CorrelationID).
	JobID string
	// Attempt is a job's attempt number (1 for the first delivery); 0 for requests.
	Attempt int
	// Deadline is the request's deadline, or a job's run timeout from now.
	Deadline    time.Time
	Redelivered bool
	Body        []byte
	// Headers are the message's string headers (trace context, among others).
	Headers Headers
	// PublishedAt is the publisher's clock at publish (zero if it did not say);
	// ReceivedAt is this worker's clock when a handler took the message.
	PublishedAt, ReceivedAt time.Time
}

// Handler computes the reply body for a message. ctx carries the message's deadline.
// A returned error becomes an error reply (never a requeue): its reason is the one
// of a [*ReasonError] in the chain, [ReasonBadMessage] for a [*BadMessageError],
// else [ReasonModelError]. Two errors are not answered: [ErrExpired], and a
// context.DeadlineExceeded once the deadline has passed (the caller already gave
// up); the message is acked and counted.
type Handler func(ctx context.Context, m *Message) ([]byte, error)

// Middleware wraps a Handler with a cross-cutting concern (watermill's router
// middleware is the model). [Chain] applies a list of them.
type Middleware func(Handler) Handler

// Chain wraps h with mw, the first outermost: Chain(h, a, b) runs a, then b, then h.
func Chain(h Handler, mw ...Middleware) Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// BadMessageError marks a message the handler could not decode; it is answered with
// ReasonBadMessage.
type BadMessageError struct{ Err error }

func (e *BadMessageError) Error() string { return "bad message: " + e.Err.Error() }
func (e *BadMessageError) Unwrap() error { return e.Err }

// ReasonError gives a handler's error the reason its error reply carries (one of
// the Reason* values).
type ReasonError struct {
	Reason string
	Err    error
}

func (e *ReasonError) Error() string { return e.Err.Error() }
func (e *ReasonError) Unwrap() error { return e.Err }

// Outcome is what became of a message a handler ran for.
type Outcome uint8

// The outcomes a handler's result maps to.
const (
	OutcomeOK       Outcome = iota // answered with a result
	OutcomeError                   // answered with an error reply
	OutcomeExpired                 // not started: the deadline had passed (ErrExpired)
	OutcomeTimedOut                // the deadline passed while computing; not answered
)

var outcomeNames = [...]string{"ok", "error", "expired", "timed_out"}

func (o Outcome) String() string { return outcomeNames[o] }

// Classify maps a handler's result to its outcome and, for OutcomeError, the reply's
// reason. deadline is the message's; now is when the handler returned.
func Classify(err error, deadline, now time.Time) (Outcome, string) {
	var re *ReasonError
	var bm *BadMessageError
	switch {
	case err == nil:
		return OutcomeOK, ""
	case errors.Is(err, ErrExpired):
		return OutcomeExpired, ""
	case errors.Is(err, context.DeadlineExceeded) && !now.Before(deadline):
		return OutcomeTimedOut, ""
	case errors.As(err, &re):
		return OutcomeError, re.Reason
	case errors.As(err, &bm):
		return OutcomeError, ReasonBadMessage
	}
	return OutcomeError, ReasonModelError
}

// Recover turns a handler's panic into an error (answered as a model error), logged
// with its stack.
func Recover(log *slog.Logger) Middleware {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) (body []byte, err error) {
			defer func() {
				if r := recover(); r != nil {
					log.Error("handler panicked", "panic", r, "stack", string(debug.Stack()),
						"request_id", m.RequestID, "correlation_id", m.CorrelationID, "queue", m.Queue)
					body, err = nil, fmt.Errorf("worker panicked: %v", r)
				}
			}()
			return next(ctx, m)
		}
	}
}

// CheckDeadline skips a message whose deadline passed before a handler took it
// (the broker does not expire messages a worker has already prefetched): it returns
// [ErrExpired] without calling next. Otherwise next runs with ctx bounded by the
// deadline.
func CheckDeadline() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) ([]byte, error) {
			if !time.Now().Before(m.Deadline) {
				return nil, ErrExpired
			}
			ctx, cancel := context.WithDeadline(ctx, m.Deadline)
			defer cancel()
			return next(ctx, m)
		}
	}
}

// Observe calls fn after each message with its outcome and the time the handler
// took (from a handler taking it to the handler returning). fn runs on the handler
// goroutine and must be cheap.
func Observe(fn func(m *Message, o Outcome, d time.Duration)) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) ([]byte, error) {
			body, err := next(ctx, m)
			now := time.Now()
			o, _ := Classify(err, m.Deadline, now)
			fn(m, o, now.Sub(m.ReceivedAt))
			return body, err
		}
	}
}

// Trace continues the publisher's trace from the message's W3C trace-context
// headers: it records the time the message waited in the queue ("queue wait") and
// runs next inside a consumer span "process <queue>". Disabled tracing (nil, or no
// exporter) makes it a no-op that returns next itself.
func Trace(tr *tracing.Tracing) Middleware {
	if !tr.Enabled() {
		return func(next Handler) Handler { return next }
	}
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) ([]byte, error) {
			ctx = tr.Extract(ctx, m.Headers)
			tr.RecordQueueWait(ctx, m.PublishedAt, m.ReceivedAt)
			attrs := []attribute.KeyValue{attribute.String("warren.request_id", m.RequestID),
				attribute.String("warren.model.name", m.Route.Model), attribute.String("warren.model.version", m.Route.Version)}
			if m.JobID != "" {
				attrs = append(attrs, attribute.String("warren.job_id", m.JobID), attribute.Int("warren.job.attempt", m.Attempt))
			}
			ctx, span := tr.StartProcess(ctx, m.Queue, attrs...)
			defer span.End()
			body, err := next(ctx, m)
			if o, _ := Classify(err, m.Deadline, time.Now()); o != OutcomeOK {
				span.SetStatus(codes.Error, o.String())
				if err != nil {
					span.RecordError(err)
				}
			}
			return body, err
		}
	}
}
