// Package boltstore is the embedded, persistent [jobs.Store]: one bbolt file
// under DATA_DIR, for a single API instance (warren's default).
//
// # Layout
//
// One file, buckets: jobs (id → JSON record), idem (key → id), and three
// small index buckets whose keys are an 8-byte big-endian Unix-nanosecond
// time followed by the id: unpublished (created_at; not Published and not
// final), start_by (queued jobs with a StartBy) and finished (finished_at;
// for the janitor). Unpublished, ExpireQueued and the janitor walk only
// these, never all jobs. The kv bucket holds the PutMeta entries; the meta
// bucket the schema version.
//
// # Writes
//
// Every write goes through DB.Batch, so concurrent requests share one
// transaction and its fsyncs (BoltConfig.BatchDelay, 500µs by default,
// instead of bbolt's 10ms: see BenchmarkCreatePublish); domain outcomes (not
// found, conflict) are returned through variables, not as errors, which
// would make bbolt re-run the whole batch.
//
// # Waiting and expiry
//
// Wait is woken in-process after the commit ([jobs.Notifier]). A janitor
// goroutine deletes finished jobs past the TTL, with their idempotency keys,
// until Close.
package boltstore
