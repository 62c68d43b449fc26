package queue

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// SchemaVersion is the message-schema version this build speaks. It travels in the
// HeaderSchema header of requests and replies. A worker answers a request whose
// schema it does not know with an error reply instead of guessing, so API and
// workers can be rolled out independently as long as the version is unchanged.
// Version 2: bodies are Open Inference Protocol (v2) requests and responses, one
// queue per model version.
const SchemaVersion = 2

// Message headers. A sync request carries HeaderSchema, HeaderDeadline and
// HeaderPublishedUs (its request id is the AMQP message id); a job also carries
// its id, request id, model, version and attempt. Replies carry HeaderSchema,
// HeaderStatus and HeaderWorker, and the timing headers.
const (
	HeaderSchema    = "x-warren-schema"      // int: SchemaVersion
	HeaderDeadline  = "x-warren-deadline-ms" // int64: absolute deadline, Unix milliseconds
	HeaderRequestID = "x-request-id"         // string: the HTTP request id, when the message id is not it (jobs, raw clients)
	HeaderModel     = "x-warren-model"       // string: the route's model (informational; jobs only)
	HeaderVersion   = "x-warren-version"     // string: the route's version (informational; jobs only)
	HeaderStatus    = "x-warren-status"      // reply: "ok" or "error"
	HeaderWorker    = "x-warren-worker"      // reply: worker id
	HeaderReason    = "x-warren-reason"      // error reply: one of the Reason* values

	// Timing headers, for the latency split into stages (see [Timing]). Each is
	// optional: a peer that does not send them just gives no stage data.
	HeaderPublishedUs = "x-warren-published-us" // request: API clock at publish, Unix µs
	HeaderReceivedUs  = "x-warren-received-us"  // reply: worker clock when a handler took the request, Unix µs
	HeaderComputeUs   = "x-warren-compute-us"   // reply: time the handler spent, µs (one clock: skew-free)
	HeaderSlots       = "x-warren-slots"        // reply: the route's handler slots on that worker
)

// Reply statuses and error-reply reasons: the worker-to-API vocabulary. The API maps
// each reason to one HTTP status.
const (
	StatusOK    = "ok"
	StatusError = "error"

	ReasonModelError = "model_error" // the model failed (502)
	ReasonBadMessage = "bad_message" // the worker could not read the message (502)
	ReasonBadInput   = "bad_input"   // the input does not fit the model (400)
	ReasonTimeout    = "timeout"     // the model gave up before the deadline (504)

	contentTypeJSON   = "application/json"
	requestType       = "warren.infer.v2"
	replyType         = "warren.inference.v2"
	directReplyPrefix = "amq.rabbitmq.reply-to"
)

// Errors returned by [Client.Call] and [JobPublisher.PublishJob]. The API maps each
// to one status and reason.
var (
	// ErrNoWorkers: no consumer on the route's request queue (or the queue does not
	// exist).
	ErrNoWorkers = errors.New("no worker is consuming the request queue")
	// ErrQueueFull: the broker nacked the publish because the queue is at its bound.
	ErrQueueFull = errors.New("queue is full")
	// ErrBrokerUnavailable: not connected, connection lost mid-call, or the broker
	// blocked publishers (memory or disk alarm).
	ErrBrokerUnavailable = errors.New("broker unavailable")
	// ErrJobTopology: the job path's queues cannot be declared (a queue declared with
	// other arguments, quorum queues unavailable): jobs cannot be published, while
	// sync calls are unaffected.
	ErrJobTopology = errors.New("job topology unavailable")
	// ErrClosed: the client was stopped.
	ErrClosed = errors.New("queue client closed")
	// ErrExpired: a handler middleware ([CheckDeadline]) found the request's deadline
	// already passed when it was taken from the buffer: it is acked, not answered.
	ErrExpired = errors.New("request expired before it was started")
)

// RemoteError is a worker's error reply: the model failed, the input did not fit,
// the worker panicked, or the worker could not decode the request.
type RemoteError struct {
	Reason  string // one of the Reason* values
	Message string
	Worker  string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("worker %s: %s: %s", e.Worker, e.Reason, e.Message)
}

// unavailable wraps ErrBrokerUnavailable with a cause for the detail message.
func unavailable(why string) error { return fmt.Errorf("%w: %s", ErrBrokerUnavailable, why) }

// Headers are the string-valued message headers a handler sees and a publisher may
// add (W3C trace context, among others). The AMQP header table stays inside this
// package.
type Headers map[string]string

// textHeaders copies the string (and byte-string) values of an AMQP table.
func textHeaders(t amqp.Table) Headers {
	h := make(Headers, len(t))
	for k, v := range t {
		switch s := v.(type) {
		case string:
			h[k] = s
		case []byte:
			h[k] = string(s)
		}
	}
	return h
}

func headerInt64(t amqp.Table, key string) (int64, bool) {
	switch v := t[key].(type) {
	case int64:
		return v, true
	case int32:
		return int64(v), true
	case int16:
		return int64(v), true
	case int8:
		return int64(v), true
	case int:
		return int64(v), true
	case uint8:
		return int64(v), true
	case uint16:
		return int64(v), true
	case uint32:
		return int64(v), true
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil
	}
	return 0, false
}

func headerString(t amqp.Table, key string) string {
	switch v := t[key].(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

// expirationFor renders the remaining time as an AMQP per-message expiration (ms,
// at least 1).
func expirationFor(deadline, now time.Time) string {
	ms := deadline.Sub(now).Milliseconds()
	if ms < 1 {
		ms = 1
	}
	return strconv.FormatInt(ms, 10)
}

// checkSchema reads the schema header of a delivery.
func checkSchema(t amqp.Table) error {
	v, ok := headerInt64(t, HeaderSchema)
	if !ok {
		return fmt.Errorf("missing %s header", HeaderSchema)
	}
	if v != SchemaVersion {
		return fmt.Errorf("unsupported message schema %d (this worker speaks %d)", v, SchemaVersion)
	}
	return nil
}
