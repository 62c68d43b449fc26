// Package redisstore is the [jobs.Store] in Redis (REDIS_URL), for several
// API replicas sharing their jobs.
//
// # Layout
//
// A job is a hash ({prefix}job:{id}); idempotency keys are strings
// ({prefix}idem:{key} → id); the outbox and the start-by index are sorted
// sets scored by Unix microseconds. Final jobs and their keys get PEXPIRE
// TTL. See [RedisStore] for the key list.
//
// # Atomicity
//
// Create, MarkPublished, Apply, Cancel, Delete and ExpireQueued are each one
// Lua script (EVALSHA): one round trip, atomic across replicas, so they
// cannot break "the first final state wins". The scripts mirror the Go
// reference in package jobs ([jobs.ApplyEvent], [jobs.ReplayOutcome],
// [jobs.Visible]); the contract suite (jobstest) runs against both stores.
// They touch keys they derive from the prefix, so a single Redis (or
// Sentinel) is needed, not Cluster. Redis persistence (AOF/RDB) is the
// operator's choice; without it a Redis restart loses the jobs.
//
// # Waiting across replicas
//
// Every path to a final state, and Delete, PUBLISHes the job id on one
// channel ({prefix}finished) inside the same script as the write. Every
// RedisStore holds one subscription to it and fans notices out to its local
// waiters, so a Wait wakes on whichever replica consumed the result. When
// go-redis reconnects the subscription, notices sent meanwhile are lost, so
// every local waiter re-reads.
package redisstore
