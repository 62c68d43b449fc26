// Package jobs is warren's asynchronous-job domain (POST /jobs, GET
// /jobs/{id}?wait=…, DELETE /jobs/{id}, and the hand-offs of POST /process
// and the v2 API's infer with Prefer: respond-async): the vocabulary that the
// API, the broker code and the workers share, the job record and its [Store],
// and the [Service] that runs a job's life between the HTTP layer, the store
// and the broker. It imports the standard library only, so pkg/queue and the
// worker can use its types.
//
// A job names the model and version it runs ([Job].Model, [Job].Version) and
// how the API renders it ([Job].Format: [FormatV2] or [FormatProcess]). The
// [Publisher] (pkg/queue's JobPublisher) puts it on that model version's own
// job queue, so only workers that serve the model run it.
//
// # Layout
//
//   - jobs (this package): [Status], [Reason], [Error], [Event] (the wire
//     message workers publish on the results queue), [Job], the [Store]
//     interface and its errors, the [Service] with its [Publisher], and
//     the rules every Store shares ([ApplyEvent], [Visible],
//     [ReplayOutcome], [PrepareCreate], [Notifier]: for Store
//     implementations only).
//   - jobs/boltstore: an embedded, persistent bbolt file under DATA_DIR,
//     for a single API instance. The default.
//   - jobs/redisstore: Redis at REDIS_URL, for several API replicas.
//   - jobs/jobstest: the Store contract suite (jobstest.Run), which both
//     backends pass, and helpers for their tests.
//   - jobs/redisstore/redistest: finds the tests' Redis and gives each test
//     a key prefix of its own.
//
// # A job's life
//
// The [Service] drives it; the numbers are the [Store] calls.
//
//  1. [Service.Submit]: Create stores the job queued and not Published
//     (with its idempotency key, atomically). Then the Service publishes it
//     with a broker confirm, calls MarkPublished, and the API answers 202.
//     If the broker refuses, the Service Deletes the job (frees its key) and
//     the API answers an error. If the broker does not answer, the job is
//     kept unpublished for step 2 ([ErrUnconfirmed]).
//  2. [Service.Run] (the outbox): on start and periodically, it
//     republishes Unpublished jobs older than a grace period (an
//     unconfirmed publish, or a crash between Create and the confirm), then
//     MarkPublished each.
//  3. A worker reports running (attempt n) and then a final state, as
//     [Event] messages on the results queue, which [Service.Apply] applies
//     (Apply). Applying is idempotent and order-tolerant: the first final
//     state wins, a late or duplicate event changes nothing
//     (changed=false). A running or final event also marks the job
//     Published (a worker got it). A message the broker dead-letters
//     becomes a failed job through [Service.ApplyDead].
//  4. [Service.Cancel] (Cancel) turns a queued job cancelled and tells the
//     workers; a running or final one is a conflict. Run's reaper
//     (ExpireQueued) turns queued jobs past their StartBy expired.
//  5. A finished job stays readable for the TTL (JOB_TTL, default 24h), then
//     Get says ErrNotFound and the store deletes it (bbolt's janitor, Redis
//     key expiry) with its idempotency key. Unfinished jobs never expire by
//     TTL.
//
// # Idempotency keys
//
// Create with an IdempotencyKey that belongs to a visible job writes nothing
// and returns that job with: ErrKeyMismatch if its BodyHash differs (HTTP
// 422); ErrInProgress if it is neither Published nor final yet (409, retry
// later); otherwise a nil error (a replay: 200 with the original job). The
// Service's BodyHash covers the input and the model, version and format, so
// reusing a key for another model is a mismatch. Keys are global to a
// store; the API may scope them (per client) by prefixing.
//
// # Errors
//
// Outcomes about a job ([ErrNotFound], [ErrConflict], [ErrKeyMismatch],
// [ErrInProgress]) are returned as they are, for the HTTP layer to map. A
// failure of the store itself reaches the Service's callers wrapped in
// [ErrStoreUnavailable]; a Publisher's error other than [ErrUnconfirmed]
// is returned by Submit unchanged (queue full, broker unavailable, …).
//
// # Waiting
//
// Wait subscribes to finalisation notices before its first read, then
// re-reads on each notice: no polling. Every path to a final state (Apply,
// Cancel, ExpireQueued) and Delete sends a notice. The bbolt store notifies
// in-process after the commit; the Redis store PUBLISHes the job id from the
// script that wrote it and every replica fans the notices out to its own
// waiters, so a Wait wakes on whichever replica consumed the result. Both
// use a [Notifier].
//
// # Meta
//
// Beside the jobs, a Store keeps a small key-value area without TTL
// ([Store.PutMeta], [Store.ListMeta]), shared like the jobs by every
// replica. The API keeps its model catalog there, so that after a restart
// with no worker connected a known model answers 503 (not 404) and jobs for
// it can still be queued.
//
// # Clocks
//
// Both stores take an injectable clock (Now in their config) that stamps
// CreatedAt, cancellation and TTL ages; the contract tests move it instead
// of sleeping. The Service uses time.Now; its timing tests run under
// testing/synctest. Event times (At) are the worker's.
package jobs
