// Package jobs stores warren's asynchronous jobs (POST /jobs, GET
// /jobs/{id}?wait=…, DELETE /jobs/{id}): the job records, their idempotency
// keys, the publish outbox, and long-poll waiting. It imports the standard
// library only. Two implementations of one [Store] interface, in
// sub-packages, pass one contract test suite (package jobstest):
//
//   - boltstore.OpenBolt: an embedded, persistent bbolt file under DATA_DIR,
//     for a single API instance. The default.
//   - redisstore.OpenRedis: Redis at REDIS_URL, for several API replicas.
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
// every local waiter re-reads. Both use a [Notifier].
//
// # Clocks
//
// Both stores take an injectable clock (Now in their config) that stamps
// CreatedAt, cancellation and TTL ages; the tests move it instead of
// sleeping. Event times (At) are the worker's.
package jobs
