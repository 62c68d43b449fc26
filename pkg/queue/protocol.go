package queue

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// DefaultQueue is the sync request queue.
const DefaultQueue = "warren.requests"

// SchemaVersion is the message-schema version this build speaks. It travels in the
// HeaderSchema header of requests and replies. A worker answers a request whose major
// version it does not know with an error reply instead of guessing, so API and workers
// can be rolled out independently as long as the major version is unchanged.
const SchemaVersion = 1

// Message headers. Every request carries all of them; replies carry HeaderSchema,
// HeaderStatus and HeaderWorker.
const (
	HeaderSchema    = "x-warren-schema"      // int: SchemaVersion
	HeaderDeadline  = "x-warren-deadline-ms" // int64: absolute deadline, Unix milliseconds
	HeaderRequestID = "x-request-id"         // string: the HTTP request id
	HeaderStatus    = "x-warren-status"      // reply: "ok" or "error"
	HeaderWorker    = "x-warren-worker"      // reply: worker id
	HeaderReason    = "x-warren-reason"      // error reply: "model_error" or "bad_message"

	// Timing headers, for the latency split into stages (see [Timing]). Each is
	// optional: a peer that does not send them just gives no stage data.
	HeaderPublishedUs = "x-warren-published-us" // request: API clock at publish, Unix µs
	HeaderReceivedUs  = "x-warren-received-us"  // reply: worker clock when a handler took the request, Unix µs
	HeaderComputeUs   = "x-warren-compute-us"   // reply: time the handler spent, µs (one clock: skew-free)
	HeaderSlots       = "x-warren-slots"        // reply: the worker's handler slots (CONCURRENCY)
)

// Reply statuses and error reasons.
const (
	StatusOK          = "ok"
	StatusError       = "error"
	ReasonModelError  = "model_error"
	ReasonBadMessage  = "bad_message"
	contentTypeJSON   = "application/json"
	requestType       = "warren.predict.v1"
	replyType         = "warren.prediction.v1"
	directReplyPrefix = "amq.rabbitmq.reply-to"
)

// Errors returned by [Client.Call]. The API maps each to one status and reason.
var (
	// ErrNoWorkers: no consumer on the request queue (or the queue does not exist).
	ErrNoWorkers = errors.New("no worker is consuming the request queue")
	// ErrQueueFull: the broker nacked the publish because the queue is at its bound.
	ErrQueueFull = errors.New("request queue is full")
	// ErrBrokerUnavailable: not connected, connection lost mid-call, or the broker
	// blocked publishers (memory or disk alarm).
	ErrBrokerUnavailable = errors.New("broker unavailable")
	// ErrUnconfirmed: a job was published but its confirm never came (the
	// connection was lost or the caller gave up): it may or may not be queued.
	ErrUnconfirmed = errors.New("publish not confirmed")
	// ErrClosed: the client was stopped.
	ErrClosed = errors.New("queue client closed")
)

// RemoteError is a worker's error reply: the model failed, the worker panicked, or
// the worker could not decode the request.
type RemoteError struct {
	Reason  string // ReasonModelError or ReasonBadMessage
	Message string
	Worker  string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("worker %s: %s: %s", e.Worker, e.Reason, e.Message)
}

// unavailable wraps ErrBrokerUnavailable with a cause for the detail message.
func unavailable(why string) error { return fmt.Errorf("%w: %s", ErrBrokerUnavailable, why) }

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
