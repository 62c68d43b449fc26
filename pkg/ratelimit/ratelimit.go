// Package ratelimit keeps one caller from filling the shared queues and starving
// the others: a rate limit (requests per second with a burst, GCRA) and a
// concurrency quota (calls in flight plus jobs not yet final), per caller.
//
// Two [Limiter]s implement it: [Local], in this process's memory (one API
// instance), and redislimit.Redis, shared by every API replica that points at the same
// Redis (one Lua script per decision, so replicas cannot race). Who the caller is
// and what its limits are is the caller's business (pkg/api names it); this
// package only counts.
//
// # GCRA
//
// A caller with rate r and burst b has an emission interval T = 1/r and a
// tolerance τ = b·T. Its state is one instant, the theoretical arrival time TAT.
// A request at now is allowed when max(TAT, now) + T − τ ≤ now, and then TAT
// becomes max(TAT, now) + T. That is a token bucket of b tokens refilled at r per
// second, kept as one number: b requests may come at once, then r per second.
//
// # Concurrency leases
//
// A slot of the concurrency quota is a lease: an id (a call's, or a job's), its
// caller and an expiry. Acquire takes one if the caller holds fewer than its
// limit; Release gives it back by id alone, so that whoever sees a job reach its
// final state (any replica) can release it. A lease that is never released (a
// replica crashed mid-call, a job's final event was lost) expires, so the quota
// cannot leak forever.
package ratelimit

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

// Limits are one caller's limits. Zero values mean unlimited.
type Limits struct {
	// Rate is the sustained rate in requests per second; 0 means no rate limit.
	Rate float64
	// Burst is how many requests may come at once; 0 (or less) means
	// max(1, ceil(Rate)), a second's worth.
	Burst int
	// Concurrency is how many sync calls in flight plus jobs not yet final the
	// caller may have; 0 means no quota.
	Concurrency int
}

// RateLimited reports whether a rate limit applies.
func (l Limits) RateLimited() bool {
	return l.Rate > 0 && !math.IsInf(l.Rate, 1) && !math.IsNaN(l.Rate)
}

// Quota reports whether a concurrency quota applies.
func (l Limits) Quota() bool { return l.Concurrency > 0 }

// Off reports whether no limit applies at all.
func (l Limits) Off() bool { return !l.RateLimited() && !l.Quota() }

// BurstOf is l's effective burst.
func BurstOf(l Limits) int { return l.burst() }

// Interval is l's emission interval T = 1/Rate.
func Interval(l Limits) time.Duration { return l.interval() }

// burst is the effective burst.
func (l Limits) burst() int {
	if l.Burst > 0 {
		return l.Burst
	}
	return max(1, int(math.Ceil(l.Rate)))
}

// interval is the emission interval T.
func (l Limits) interval() time.Duration {
	return time.Duration(float64(time.Second) / l.Rate)
}

// Window is the time an empty bucket takes to fill up again (τ = b·T): the w of
// RateLimit-Policy.
func (l Limits) Window() time.Duration { return time.Duration(l.burst()) * l.interval() }

// Decision is the answer of [Limiter.Allow].
type Decision struct {
	// Allowed says whether the request may go on.
	Allowed bool
	// Limit is the burst (the quota of RateLimit-Policy).
	Limit int
	// Remaining is how many more requests may come at once now.
	Remaining int
	// RetryAfter is, for a refused request, when the next one would be allowed.
	RetryAfter time.Duration
	// Reset is when the bucket is full again (Remaining back to Limit).
	Reset time.Duration
}

// Lease is the answer of [Limiter.Acquire].
type Lease struct {
	// Acquired says whether the caller got a slot.
	Acquired bool
	// Limit is the caller's concurrency quota.
	Limit int
	// InUse is the slots the caller holds now (with this one, if acquired).
	InUse int
}

// Limiter counts requests and concurrency leases per caller. Its methods are safe
// for concurrent use. An error means the limiter could not decide (its store is
// unreachable); the caller chooses what to do then (pkg/api lets the request
// through: see docs/api.md).
type Limiter interface {
	// Allow takes one request from caller's rate limit l. With no rate limit it
	// allows without counting.
	Allow(ctx context.Context, caller string, l Limits) (Decision, error)
	// Acquire takes a concurrency slot for lease id (unique: a call's random id
	// or a job id) if caller holds fewer than l.Concurrency live leases. The lease
	// expires after ttl unless released. With no quota it grants without
	// counting. Acquiring an id the caller already holds renews it.
	Acquire(ctx context.Context, caller, id string, l Limits, ttl time.Duration) (Lease, error)
	// Release gives lease id back. Releasing an unknown or expired id is not an
	// error (a job's final state may be seen twice, or after the lease expired).
	Release(ctx context.Context, id string) error
	// Close releases the limiter's resources.
	Close() error
}

// ErrUnavailable wraps a failure of a limiter's store.
var ErrUnavailable = errors.New("ratelimit: limiter unavailable")

// gcra applies one request at now to a bucket whose TAT is tat (zero: never
// used). It returns the decision and the new TAT (unchanged when refused).
func gcra(tat, now time.Time, l Limits) (Decision, time.Time) {
	t := l.interval()
	b := l.burst()
	tau := time.Duration(b) * t
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(t)
	allowAt := next.Add(-tau)
	if now.Before(allowAt) {
		return Decision{Limit: b, Remaining: 0, RetryAfter: allowAt.Sub(now), Reset: tat.Sub(now)}, tat
	}
	return Decision{Allowed: true, Limit: b, Remaining: remaining(now.Sub(allowAt), t, b), Reset: next.Sub(now)}, next
}

// remaining is how many more requests fit in slack (whole intervals), within [0, b].
func remaining(slack, t time.Duration, b int) int {
	n := int(slack / t)
	return min(max(n, 0), b)
}

// Seconds rounds d up to whole seconds (the delay-seconds of Retry-After and of
// RateLimit's t), at least 1 when d > 0.
func Seconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int((d + time.Second - 1) / time.Second)
}

// The policy names of the RateLimit and RateLimit-Policy header fields.
const (
	PolicyRate        = "rate"
	PolicyConcurrency = "concurrency"
)

// PolicyHeader is the RateLimit-Policy field for l
// (draft-ietf-httpapi-ratelimit-headers): a structured-field list with the rate
// policy ("rate";q=burst;w=window seconds) and the concurrency quota
// ("concurrency";q=N;qu="concurrent-requests"); "" when l limits nothing.
func PolicyHeader(l Limits) string {
	var parts []string
	if l.RateLimited() {
		parts = append(parts, `"`+PolicyRate+`";q=`+strconv.Itoa(l.burst())+";w="+strconv.Itoa(max(1, Seconds(l.Window()))))
	}
	if l.Quota() {
		parts = append(parts, `"`+PolicyConcurrency+`";q=`+strconv.Itoa(l.Concurrency)+`;qu="concurrent-requests"`)
	}
	return strings.Join(parts, ", ")
}

// RateHeader is the RateLimit field for the rate policy after d: the remaining
// quota r and t, the seconds until it is full again (for a refused request, until
// the next one is allowed).
func RateHeader(d Decision) string {
	t := d.Reset
	if !d.Allowed {
		t = d.RetryAfter
	}
	return `"` + PolicyRate + `";r=` + strconv.Itoa(d.Remaining) + ";t=" + strconv.Itoa(Seconds(t))
}

// ConcurrencyHeader is the RateLimit field for the concurrency quota after lease
// l: the slots left.
func ConcurrencyHeader(l Lease) string {
	return `"` + PolicyConcurrency + `";r=` + strconv.Itoa(max(l.Limit-l.InUse, 0))
}
