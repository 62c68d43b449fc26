// Package reason is the vocabulary of warren's status contract: why a call was
// answered as it was. Every error body the API writes carries one of these (as
// "reason"), each maps to exactly one HTTP status, the metrics label calls by them,
// and the OpenAPI document lists the same values (a test checks it). A Reason is a
// small integer type: a reason the contract does not know is a compile error, not a
// string that silently becomes "model_error".
package reason

// Reason is why a request was answered as it was.
type Reason uint8

// The reasons. The first group is the outcome of a call to the farm (the label of
// warren_rpc_requests_total); the second, other answers of the API.
const (
	OK                Reason = iota // answered
	NoWorkers                       // 503: no worker consumes the model version's queue
	QueueFull                       // 503: the model version's queue is at its bound
	BrokerUnavailable               // 503: broker down, connection lost, publishers blocked
	Draining                        // 503: this API instance is shutting down
	Timeout                         // 504: the deadline passed, or the model gave up
	ModelError                      // 502: the model failed (or the worker could not read the message)
	BadInput                        // 400: the input does not fit the model
	ClientClosed                    // 499: the client went away (never sent; metrics only)

	NotFound             // 404: unknown model, version or job
	Invalid              // 400/422: a malformed request
	TooLarge             // 413: body over the limit
	StoreUnavailable     // 503: the job store is unavailable
	JobsUnavailable      // 503: jobs cannot be published (the job topology is broken)
	IdempotencyKeyReused // 422: an Idempotency-Key sent again with another body
	InProgress           // 409: the first submission with this key is not confirmed yet
	NotCancellable       // 409: only a queued job can be cancelled
	NotReady             // 503: the model cannot answer this endpoint now (DEFAULT_MODEL not seed-shaped, a worker's model still loading)
	Forbidden            // 403: the admin API does not take calls from this client (ADMIN_API), or the caller may not call this model or admin endpoint
	Unauthorized         // 401: no credential, or one that is not accepted (with WWW-Authenticate)
	AuthLimited          // 429: too many failed authentications from this client address lately
	count
)

var names = [count]string{
	OK: "ok", NoWorkers: "no_workers", QueueFull: "queue_full", BrokerUnavailable: "broker_unavailable",
	Draining: "draining", Timeout: "timeout", ModelError: "model_error", BadInput: "bad_input",
	ClientClosed: "client_closed", NotFound: "not_found", Invalid: "invalid", TooLarge: "too_large",
	StoreUnavailable: "store_unavailable", JobsUnavailable: "jobs_unavailable",
	IdempotencyKeyReused: "idempotency_key_reused", InProgress: "in_progress",
	NotCancellable: "not_cancellable", NotReady: "not_ready", Forbidden: "forbidden",
	Unauthorized: "unauthorized", AuthLimited: "auth_limited",
}

var statuses = [count]int{
	OK: 200, NoWorkers: 503, QueueFull: 503, BrokerUnavailable: 503, Draining: 503, Timeout: 504,
	ModelError: 502, BadInput: 400, ClientClosed: 499, NotFound: 404, Invalid: 422, TooLarge: 413,
	StoreUnavailable: 503, JobsUnavailable: 503, IdempotencyKeyReused: 422, InProgress: 409,
	NotCancellable: 409, NotReady: 503, Forbidden: 403, Unauthorized: 401, AuthLimited: 429,
}

// retryAfter is the Retry-After (seconds) of the reasons that are worth retrying.
var retryAfter = [count]int{
	NoWorkers: 5, QueueFull: 1, BrokerUnavailable: 5, Draining: 2, StoreUnavailable: 2,
	JobsUnavailable: 5, InProgress: 1, NotReady: 5, AuthLimited: 1,
}

// String is the reason as it appears in bodies and labels ("no_workers").
func (r Reason) String() string {
	if r < count {
		return names[r]
	}
	return "unknown"
}

// Status is the HTTP status of the reason.
func (r Reason) Status() int {
	if r < count {
		return statuses[r]
	}
	return 500
}

// RetryAfter is the Retry-After header value in seconds, 0 for none.
func (r Reason) RetryAfter() int {
	if r < count {
		return retryAfter[r]
	}
	return 0
}

// MarshalText writes the name, so a Reason is a JSON string.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// All lists every reason, in order.
func All() []Reason {
	out := make([]Reason, count)
	for i := range out {
		out[i] = Reason(i)
	}
	return out
}

// Calls lists the outcomes of a call to the farm: the values of the reason label
// of warren_rpc_requests_total.
func Calls() []Reason {
	return []Reason{OK, NoWorkers, QueueFull, BrokerUnavailable, Draining, Timeout, ModelError, BadInput, ClientClosed}
}
