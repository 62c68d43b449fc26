package api

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/warren-farm/warren/pkg/auth"
	"github.com/warren-farm/warren/pkg/httperr"
	"github.com/warren-farm/warren/pkg/metrics"
	"github.com/warren-farm/warren/pkg/ratelimit"
	"github.com/warren-farm/warren/pkg/reason"
)

// DefaultQuotaLeaseTTL is the default of [Config.QuotaLeaseTTL].
const DefaultQuotaLeaseTTL = 2 * time.Hour

// Requester is who made a request, as far as limits go, and its limits.
type Requester struct {
	// Name identifies the caller across requests (and replicas): the key of its
	// rate limit and concurrency quota.
	Name   string
	Limits ratelimit.Limits
}

// Identify names the caller of a request and its limits. It must not fail: a
// request it cannot place gets a name of its own making (ByAddress: the
// address).
type Identify func(r *http.Request) Requester

// ByAddress identifies callers by the address of the connection (not a proxy's
// forwarding header, which a client could forge), every caller with limits l.
// Behind a reverse proxy every client is the proxy: one caller. It is the
// identity when authentication is off.
func ByAddress(l ratelimit.Limits) Identify {
	return func(r *http.Request) Requester {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		return Requester{Name: "addr:" + host, Limits: l}
	}
}

// ByPrincipal identifies callers by who authenticated (auth.FromContext: an API
// key's name or a token's subject, as a job's owner is named), with the limits
// of the key (or the token's role) field by field where it sets them and
// defaults elsewhere: a key with `limits: {rate: 50}` gets rate 50 and the
// default burst and concurrency. A request without a principal (authentication
// did not run) is placed by its address with the defaults, as ByAddress does.
func ByPrincipal(defaults ratelimit.Limits) Identify {
	byAddr := ByAddress(defaults)
	return func(r *http.Request) Requester {
		p, ok := auth.FromContext(r.Context())
		if !ok || p.Owner() == "" {
			return byAddr(r)
		}
		l := defaults
		if p.Limits.Rate > 0 {
			l.Rate = p.Limits.Rate
		}
		if p.Limits.Burst > 0 {
			l.Burst = p.Limits.Burst
		}
		if p.Limits.Concurrency > 0 {
			l.Concurrency = p.Limits.Concurrency
		}
		return Requester{Name: p.Owner(), Limits: l}
	}
}

// limiter applies the per-caller limits: the rate limit in a middleware on the
// calling routes, the concurrency quota (hold) where a call starts or a job is
// submitted.
//
// When the limiter cannot decide (Redis down or slow), the request goes through
// unlimited (fail-open): the limits protect the farm from one greedy caller, and
// refusing everyone because Redis is away would be the larger outage. For a
// second after such a failure the limiter is not asked at all, so a dead Redis
// costs one timeout a second, not one per request.
type limiter struct {
	lim       ratelimit.Limiter
	identify  Identify
	leaseTTL  time.Duration
	metrics   *metrics.Limits
	log       *slog.Logger
	downUntil atomic.Int64 // unix nanos: skip the limiter until then
	now       func() time.Time
}

// callerKey is the echo.Context key of the request's Requester.
const callerKey = "warren.caller"

// skipFor is how long the limiter is not asked after a failure.
const skipFor = time.Second

func (l *limiter) down() bool { return l.now().UnixNano() < l.downUntil.Load() }

// failed records a limiter failure: the request goes on unlimited.
func (l *limiter) failed(err error, what string) {
	l.metrics.Unavailable()
	if l.downUntil.Swap(l.now().Add(skipFor).UnixNano()) < l.now().UnixNano() {
		l.log.Warn("the rate limiter cannot decide; requests go through unlimited until it answers", "op", what, "err", err)
	}
}

// middleware applies the caller's rate limit and announces its policy
// (RateLimit-Policy, RateLimit) on every answer of the route.
func (l *limiter) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		caller := l.identify(c.Request())
		if caller.Limits.Off() {
			return next(c)
		}
		c.Set(callerKey, caller)
		hdr := c.Response().Header()
		hdr.Set("RateLimit-Policy", ratelimit.PolicyHeader(caller.Limits))
		if !caller.Limits.RateLimited() || l.down() {
			return next(c)
		}
		d, err := l.lim.Allow(c.Request().Context(), caller.Name, caller.Limits)
		if err != nil {
			l.failed(err, "rate")
			return next(c)
		}
		hdr.Set("RateLimit", ratelimit.RateHeader(d))
		if !d.Allowed {
			l.metrics.Limited(reason.RateLimited.String(), caller.Name)
			e := httperr.Of(reason.RateLimited, "Too many requests: this caller is over its rate limit; retry after Retry-After seconds", nil)
			e.RetryAfter = max(1, ratelimit.Seconds(d.RetryAfter))
			return e
		}
		return next(c)
	}
}

// hold takes a slot of the caller's concurrency quota for lease id, for at most
// ttl, and returns its release. No caller (limits off), no quota, or a limiter
// that cannot decide: nothing is held and release does nothing. A caller at its
// quota gets 429 quota_exceeded.
func (l *limiter) hold(c echo.Context, id string, ttl time.Duration) (release func(), err error) {
	nop := func() {}
	caller, ok := c.Get(callerKey).(Requester)
	if l == nil || !ok || !caller.Limits.Quota() || l.down() {
		return nop, nil
	}
	ls, err := l.lim.Acquire(c.Request().Context(), caller.Name, id, caller.Limits, ttl)
	if err != nil {
		l.failed(err, "acquire")
		return nop, nil
	}
	hdr := c.Response().Header()
	v := ratelimit.ConcurrencyHeader(ls)
	if prev := hdr.Get("RateLimit"); prev != "" {
		v = prev + ", " + v
	}
	hdr.Set("RateLimit", v)
	if !ls.Acquired {
		l.metrics.Limited(reason.QuotaExceeded.String(), caller.Name)
		e := httperr.Of(reason.QuotaExceeded, "Too many requests: this caller already has its quota of calls in flight and jobs not finished; retry when one ends", nil)
		return nop, e
	}
	return func() { l.release(id) }, nil
}

// release gives lease id back (a call's end, a job's final state), detached
// from any request. A failure is logged: the lease then expires.
func (l *limiter) release(id string) {
	if l == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := l.lim.Release(ctx, id); err != nil {
		l.log.Debug("quota lease not released; it expires", "lease", id, "err", err)
	}
}

// holdCall holds a slot for a sync call with this timeout: the lease outlives
// the call's deadline a little, in case this process dies before releasing it.
func (l *limiter) holdCall(c echo.Context, timeout time.Duration) (func(), error) {
	if l == nil {
		return func() {}, nil
	}
	return l.hold(c, "call:"+rand.Text(), timeout+30*time.Second)
}

// holdJob holds a slot in the name of job id until its final state (OnFinal
// releases it) or leaseTTL.
func (l *limiter) holdJob(c echo.Context, id string) (func(), error) {
	if l == nil {
		return func() {}, nil
	}
	return l.hold(c, id, l.leaseTTL)
}
