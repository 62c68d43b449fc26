// Package jobs stores warren's asynchronous jobs (POST /jobs, GET
// /jobs/{id}?wait=…, DELETE /jobs/{id}): the job records, their idempotency
// keys, the publish outbox, and long-poll waiting. Two implementations of one
// [Store] interface pass one contract test suite:
//
//   - [BoltStore] (OpenBolt): an embedded, persistent bbolt file under
//     DATA_DIR, for a single API instance. The default.
//   - [RedisStore] (OpenRedis): Redis at REDIS_URL, for several API replicas.
//
// Workers never touch the store: they publish [Event]s (running, final) on a
// durable results queue that the API replicas consume and hand to
// [Store.Apply].
//
// # A job's life
//
//  1. Create stores the job queued and not Published (with its idempotency
//     key, atomically). Then the API publishes it with a broker confirm,
//     calls MarkPublished, and answers 202. If the publish fails, the API
//     Deletes the job (frees its key) and answers an error.
//  2. On start and periodically, the API republishes Unpublished jobs older
//     than a grace period (the outbox: a crash between Create and the
//     confirm), then MarkPublished each.
//  3. A worker reports running (attempt n) and then a final state. Apply is
//     idempotent and order-tolerant: the first final state wins, a late or
//     duplicate event changes nothing (changed=false). A running or final
//     event also marks the job Published (a worker got it).
//  4. Cancel turns a queued job cancelled; a running or final one is a
//     conflict. ExpireQueued (a reaper loop) turns queued jobs past their
//     StartBy expired.
//  5. A finished job stays readable for the TTL (JOB_TTL, default 24h), then
//     Get says ErrNotFound and the store deletes it (BoltStore's janitor,
//     Redis key expiry) with its idempotency key. Unfinished jobs never
//     expire by TTL.
//
// # Idempotency keys
//
// Create with an IdempotencyKey that belongs to a visible job writes nothing
// and returns that job with: ErrKeyMismatch if its BodyHash differs (HTTP
// 422); ErrInProgress if it is neither Published nor final yet (409, retry
// later); otherwise a nil error (a replay: 200 with the original job). Keys
// are global to a store; the API may scope them (per client) by prefixing.
//
// # Waiting
//
// Wait subscribes to finalisation notices before its first read, then
// re-reads on each notice: no polling. Every path to a final state (Apply,
// Cancel, ExpireQueued) and Delete sends a notice. BoltStore notifies
// in-process after the commit. RedisStore PUBLISHes the job id on one
// channel ({prefix}finished) inside the same Lua script as the write; every
// RedisStore holds one subscription to it and fans notices out to its local
// waiters, so a Wait wakes on whichever replica consumed the result. When
// go-redis reconnects the subscription, notices sent meanwhile are lost, so
// every local waiter re-reads.
//
// # BoltStore
//
// One file, buckets: jobs (id → JSON record), idem (key → id), and three
// small index buckets whose keys are an 8-byte big-endian Unix-nanosecond
// time followed by the id: unpublished (created_at; not Published and not
// final), start_by (queued jobs with a StartBy) and finished (finished_at;
// for the janitor). Unpublished, ExpireQueued and the janitor walk only
// these, never all jobs. Every write goes through DB.Batch, so concurrent
// requests share one transaction and its fsyncs (BoltConfig.BatchDelay,
// 500µs by default, instead of bbolt's 10ms: see BenchmarkCreatePublish);
// domain outcomes (not found, conflict) are returned through variables, not
// as errors, which would make bbolt re-run the whole batch.
//
// # RedisStore
//
// A job is a hash ({prefix}job:{id}); idempotency keys are strings
// ({prefix}idem:{key} → id); the outbox and the start-by index are sorted
// sets scored by Unix microseconds. Create, MarkPublished, Apply, Cancel,
// Delete and ExpireQueued are each one Lua script (EVALSHA): one round trip,
// atomic across replicas. Final jobs and their keys get PEXPIRE TTL. Needs a
// single Redis (or Sentinel), not Cluster: the scripts touch keys they
// derive from the prefix. Redis persistence (AOF/RDB) is the operator's
// choice; without it a Redis restart loses the jobs.
//
// # Clocks
//
// Both stores take an injectable clock (Now in their config) that stamps
// CreatedAt, cancellation and TTL ages; the tests move it instead of
// sleeping. Event times (At) are the worker's.
package jobs
