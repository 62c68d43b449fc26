package jobs

import (
	"context"
	"errors"
	"time"
)

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
	// ErrInvalidMetaKey: PutMeta was given an empty key or one longer than
	// MaxMetaKeyLen bytes.
	ErrInvalidMetaKey = errors.New("jobs: invalid meta key")
	// ErrInvalidCursor: DeadLetters was given a page token it did not make.
	ErrInvalidCursor = errors.New("jobs: invalid page token")
)

// MaxMetaKeyLen is the longest key [Store.PutMeta] accepts, in bytes.
const MaxMetaKeyLen = 512

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

	// PutMeta stores value under key, replacing the value it had. Meta is a
	// small key-value area beside the jobs, shared like them by every
	// replica: the API keeps its model catalog there, so that it knows the
	// models after a restart with no worker connected. Keys are 1 to
	// MaxMetaKeyLen bytes of any value (ErrInvalidMetaKey otherwise); values
	// may be empty. Entries have no TTL: the store never deletes them.
	PutMeta(ctx context.Context, key string, value []byte) error
	// ListMeta returns every meta entry whose key starts with prefix ("" for
	// all), as copies; an empty value is an empty, non-nil slice. It reads
	// all of them at once: meta is meant for up to some thousands of small
	// entries.
	ListMeta(ctx context.Context, prefix string) (map[string][]byte, error)

	// DeadLetters returns up to limit dead letters (see IsDeadLetter),
	// ordered by FinishedAt then id, starting after the page token after
	// ("" for the first page; DeadCursor of the last job of a page for the
	// next). A dead letter stays listed until it is replayed, deleted or
	// past the TTL. An invalid token wraps ErrInvalidCursor.
	DeadLetters(ctx context.Context, after string, limit int) ([]*Job, error)
	// CountDeadLetters returns how many dead letters are visible now.
	CountDeadLetters(ctx context.Context) (int, error)
	// Replay makes dead letter id queued again, atomically (PrepareReplay:
	// its run goes to History, StartBy becomes startBy, not Published, so
	// the outbox publishes it if the caller does not) and returns it. The
	// id, input and idempotency key stay; a job that is not a dead letter
	// is returned with ErrConflict and left alone. ErrNotFound for an
	// unknown id.
	Replay(ctx context.Context, id string, startBy time.Time) (*Job, error)

	// Close stops the store's goroutines, wakes every Wait (which then
	// return ErrClosed) and releases the database. Idempotent.
	Close() error
}

// DefaultTTL is how long a finished job stays readable when the configured
// TTL is zero (JOB_TTL's default).
const DefaultTTL = 24 * time.Hour
