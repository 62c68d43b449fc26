package jobs

import (
	"encoding/json"
	"time"
)

// Status is the state of a job. A job starts [Queued], may become [Running],
// and ends in exactly one final status ([Status.Final]); a final status never
// changes again.
type Status string

// The statuses of a job.
const (
	// Queued: stored (and, once Published, on the broker), not started yet.
	Queued Status = "queued"
	// Running: a worker announced that it started an attempt.
	Running Status = "running"
	// Succeeded: final; Result holds the worker's answer.
	Succeeded Status = "succeeded"
	// Failed: final; Error says why.
	Failed Status = "failed"
	// Expired: final; the job was not started (or finished) before its
	// deadline, either noticed by a worker or by [Store.ExpireQueued].
	Expired Status = "expired"
	// Cancelled: final; cancelled by the client while still queued.
	Cancelled Status = "cancelled"
)

// FinalStatuses are the four final statuses, e.g. to pre-create the label
// values of a "jobs finished by status" metric. Do not modify.
var FinalStatuses = []Status{Succeeded, Failed, Expired, Cancelled}

// Final reports whether s is a final status (succeeded, failed, expired or
// cancelled): the job will not change any more and expires JOB_TTL after it
// finished.
func (s Status) Final() bool {
	switch s {
	case Succeeded, Failed, Expired, Cancelled:
		return true
	}
	return false
}

// Valid reports whether s is one of the six statuses.
func (s Status) Valid() bool { return s == Queued || s == Running || s.Final() }

// Reason is the machine-readable cause in an [Error]. The constants are the
// documented vocabulary; the type accepts any string, because workers of
// another version may report reasons this one does not know (they are
// stored and shown as they are).
type Reason string

// The reasons warren reports.
const (
	// ReasonModelError: the model failed on the input (after the retries).
	ReasonModelError Reason = "model_error"
	// ReasonBadMessage: the job message could not be read (corrupt, wrong
	// schema); retrying cannot help.
	ReasonBadMessage Reason = "bad_message"
	// ReasonBadInput: the model rejected the input as invalid (e.g. a tensor
	// of the wrong shape); retrying cannot help.
	ReasonBadInput Reason = "bad_input"
	// ReasonAttemptsExhausted: delivered more often than JOB_MAX_ATTEMPTS
	// (crashed, drained or timed-out workers, or model errors).
	ReasonAttemptsExhausted Reason = "attempts_exhausted"
	// ReasonDeliveryLimit: the broker dead-lettered the job message (over
	// its delivery limit, or rejected as unreadable).
	ReasonDeliveryLimit Reason = "delivery_limit"
	// ReasonRunTimeout: the model ran longer than JOB_RUN_TIMEOUT.
	ReasonRunTimeout Reason = "run_timeout"
	// ReasonExpired: not started before its start-by time
	// (JOB_START_TIMEOUT).
	ReasonExpired Reason = "expired"
	// ReasonTimeout: the model, or a remote service it called, timed out.
	ReasonTimeout Reason = "timeout"
)

// Reasons lists the documented reasons, e.g. to pre-create metric label
// values. Do not modify.
var Reasons = []Reason{
	ReasonModelError, ReasonBadMessage, ReasonBadInput, ReasonAttemptsExhausted,
	ReasonDeliveryLimit, ReasonRunTimeout, ReasonExpired, ReasonTimeout,
}

// Known reports whether r is one of [Reasons]. An unknown reason is still
// valid (see [Reason]); Known lets a caller bound, e.g., metric labels.
func (r Reason) Known() bool {
	for _, k := range Reasons {
		if r == k {
			return true
		}
	}
	return false
}

// Error is why a job failed or expired. Its JSON is part of both the job
// clients read and the [Event] workers publish.
type Error struct {
	Reason  Reason `json:"reason"`
	Message string `json:"message"`
}

// Job is a stored asynchronous job. The JSON-tagged fields are the ones a
// client sees; the others are internal bookkeeping (json:"-"), read and
// written through the [Store] only.
//
// Times are returned in UTC. A Job returned by a Store is a copy: changing it
// changes nothing stored.
type Job struct {
	ID     string `json:"id"`
	Status Status `json:"status"`
	// Model is the model the job runs; Version its version, "" for the
	// model's default. Omitted from the JSON when empty.
	Model      string          `json:"model,omitempty"`
	Version    string          `json:"model_version,omitempty"`
	CreatedAt  time.Time       `json:"created_at"`
	StartedAt  *time.Time      `json:"started_at"`  // nil until the first running event
	FinishedAt *time.Time      `json:"finished_at"` // nil until final
	Attempts   int             `json:"attempts"`    // highest attempt number seen in an event
	Result     json.RawMessage `json:"result,omitempty"`
	Error      *Error          `json:"error,omitempty"`

	// RequestID is the request id of the submission (logs, tracing).
	RequestID string `json:"-"`
	// Input is the message body to publish (and republish on recovery).
	Input []byte `json:"-"`
	// IdempotencyKey is the client's Idempotency-Key, "" if none. Keys are
	// global to the store: scope them (e.g. prefix a tenant) before Create
	// if clients must not share them.
	IdempotencyKey string `json:"-"`
	// BodyHash identifies the submitted body; two submissions with the same
	// key are "the same" when their BodyHash is equal.
	BodyHash string `json:"-"`
	// Published: the broker confirmed the publish (outbox), or a worker has
	// already reported on the job.
	Published bool `json:"-"`
	// StartBy: a job still queued at this time is expired by
	// [Store.ExpireQueued]. Zero means never.
	StartBy time.Time `json:"-"`
	// Worker is the worker of the latest event that named one.
	Worker string `json:"-"`
	// Owner is who submitted the job ("key:<name>" or "jwt:<subject>", from
	// pkg/auth), "" when authentication was off. The API shows a job only to
	// its owner and to admins.
	Owner string `json:"-"`
	// Format is how the API renders the job (its result above all): one of
	// [FormatV2] and [FormatProcess]. "" for jobs stored before formats
	// existed, which were all FormatProcess.
	Format string `json:"-"`
}

// Job formats (Job.Format): which API a job was submitted through, and so
// how the API renders it.
const (
	// FormatV2: submitted through the v2 (Open Inference Protocol) API.
	FormatV2 = "v2"
	// FormatProcess: POST /jobs {"data": …} or a /process hand-off.
	FormatProcess = "process"
)
