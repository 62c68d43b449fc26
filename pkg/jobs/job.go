package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// Job is a stored asynchronous job. The JSON-tagged fields are the ones a
// client sees; the others are internal bookkeeping (json:"-"), read and
// written through the [Store] only.
//
// Times are returned in UTC. A Job returned by a Store is a copy: changing it
// changes nothing stored.
type Job struct {
	ID         string          `json:"id"`
	Status     Status          `json:"status"`
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
}

// Error is why a job failed or expired.
type Error struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// EventType is the kind of a worker [Event].
type EventType string

// The event types.
const (
	// EventRunning: a worker started an attempt.
	EventRunning EventType = "running"
	// EventFinal: a worker finished the job (succeeded, failed or expired).
	EventFinal EventType = "final"
)

// Event is what a worker publishes on the results queue about a job and what
// the API applies with [Store.Apply]. It is JSON on the wire.
type Event struct {
	JobID string    `json:"job_id"`
	Type  EventType `json:"type"`
	// Status of a final event: succeeded, failed or expired. Empty for running.
	Status Status `json:"status,omitempty"`
	// At is when it happened (the worker's clock); zero means "when applied".
	At time.Time `json:"at"`
	// Attempt is the attempt number (1 for the first delivery).
	Attempt int             `json:"attempt"`
	Worker  string          `json:"worker,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
}

// Validate reports an event that can never apply (a poison message), wrapping
// [ErrInvalidEvent].
func (ev Event) Validate() error {
	switch {
	case ev.JobID == "":
		return fmt.Errorf("%w: empty job id", ErrInvalidEvent)
	case ev.Attempt < 0:
		return fmt.Errorf("%w: negative attempt %d", ErrInvalidEvent, ev.Attempt)
	case len(ev.Result) > 0 && !json.Valid(ev.Result):
		return fmt.Errorf("%w: result is not valid JSON", ErrInvalidEvent)
	}
	switch ev.Type {
	case EventRunning:
		if ev.Status != "" && ev.Status != Running {
			return fmt.Errorf("%w: running event with status %q", ErrInvalidEvent, ev.Status)
		}
	case EventFinal:
		if ev.Status != Succeeded && ev.Status != Failed && ev.Status != Expired {
			return fmt.Errorf("%w: final event with status %q (want succeeded, failed or expired)", ErrInvalidEvent, ev.Status)
		}
	default:
		return fmt.Errorf("%w: unknown type %q", ErrInvalidEvent, ev.Type)
	}
	return nil
}

// Errors returned by a [Store]. Test with errors.Is: they may be wrapped.
var (
	// ErrNotFound: no such job, or it finished more than the TTL ago.
	ErrNotFound = errors.New("jobs: job not found")
	// ErrConflict: the job is not in a state that allows the operation
	// (cancel of a running or final job), or Create of an id that exists.
	ErrConflict = errors.New("jobs: conflict with the job's state")
	// ErrKeyMismatch: the idempotency key was used before with another body.
	ErrKeyMismatch = errors.New("jobs: idempotency key reused with a different body")
	// ErrInProgress: the idempotency key's first submission is not published
	// yet (and not final): the client should retry later.
	ErrInProgress = errors.New("jobs: idempotency key's first submission still in progress")
	// ErrInvalidEvent: an event that can never apply (see [Event.Validate]);
	// the caller should drop it.
	ErrInvalidEvent = errors.New("jobs: invalid event")
	// ErrInvalidJob: Create was given a job without an id.
	ErrInvalidJob = errors.New("jobs: invalid job")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("jobs: store closed")
)

// Store keeps jobs. Implementations (boltstore.BoltStore, redisstore.RedisStore)
// are safe for concurrent use, and every method behaves the same in both: the
// contract suite in package jobstest runs against each.
type Store interface {
	// Create stores j as a new job: status queued, Published false,
	// CreatedAt now if zero (Create sets these fields of j). It fails with
	// ErrInvalidJob for an empty id and ErrConflict if the id exists.
	//
	// With j.IdempotencyKey set it is atomic with the key: if the key
	// belongs to a job that is still visible, nothing is written and that
	// job is returned with ErrKeyMismatch (different BodyHash), ErrInProgress
	// (same body, not Published and not final) or a nil error (a replay).
	// existing is nil when j was created.
	Create(ctx context.Context, j *Job) (existing *Job, err error)
	// Get returns the job, or ErrNotFound (also for a job that finished more
	// than the TTL ago).
	Get(ctx context.Context, id string) (*Job, error)
	// MarkPublished records that the broker confirmed the job's publish; it
	// is idempotent. ErrNotFound for an unknown id.
	MarkPublished(ctx context.Context, id string) error
	// Unpublished returns up to limit jobs created before createdBefore whose
	// publish was never confirmed and that are not final, oldest first: the
	// outbox to republish on start (then MarkPublished each).
	Unpublished(ctx context.Context, createdBefore time.Time, limit int) ([]*Job, error)
	// Apply applies a worker event idempotently and returns the job after it
	// and whether the event changed it:
	//   - running: queued|running → running; StartedAt set once (the first
	//     wins); Attempts = max(Attempts, ev.Attempt); Worker = ev.Worker for
	//     the latest attempt; marks the job Published; ignored when final.
	//   - final: the first final wins (Status, FinishedAt = ev.At, Result,
	//     Error, Attempts = max, Published); later finals change nothing.
	// An invalid event → ErrInvalidEvent; an unknown job → ErrNotFound (the
	// caller acks and drops it in both cases).
	Apply(ctx context.Context, ev Event) (j *Job, changed bool, err error)
	// Cancel makes a queued job cancelled (final, FinishedAt now) and
	// returns it; a running or final job is left alone and returned with
	// ErrConflict. ErrNotFound for an unknown id.
	Cancel(ctx context.Context, id string) (*Job, error)
	// Delete removes the job whatever its state, with its index entries and
	// its idempotency key (if the key still names it), and wakes its Waits
	// (which then return ErrNotFound). Meant for a job whose publish was not
	// confirmed and whose client was told so: the job must not run later
	// (the outbox forgets it) and the client may retry with the same key.
	// Events for it later are ErrNotFound. ErrNotFound for an unknown id.
	Delete(ctx context.Context, id string) error
	// ExpireQueued makes up to limit queued jobs whose StartBy is at or
	// before now expired (final, FinishedAt now, Error reason "expired") and
	// returns their ids. Meant for a reaper loop; safe on several replicas.
	ExpireQueued(ctx context.Context, now time.Time, limit int) ([]string, error)
	// Wait returns the job once it is final, when timeout passes, or when
	// ctx ends, whichever is first, without polling: it wakes on
	// finalisation notices (from any replica for Redis) and re-reads.
	// On timeout it returns the job as it is then, with a nil error. When
	// ctx ends it returns the last state read and ctx's error. ErrNotFound
	// at once for an unknown id. A timeout <= 0 is a Get.
	Wait(ctx context.Context, id string, timeout time.Duration) (*Job, error)
	// Close stops the store's goroutines, wakes every Wait (which then
	// return ErrClosed) and releases the database. Idempotent.
	Close() error
}

// DefaultTTL is how long a finished job stays readable when the configured
// TTL is zero (JOB_TTL's default).
const DefaultTTL = 24 * time.Hour
