// Package redislimit is the [ratelimit.Limiter] that API replicas share through
// Redis. It is a package of its own so that code which only names limits does
// not link a Redis client.
package redislimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warren-farm/warren/pkg/jobs/redisstore"
	"github.com/warren-farm/warren/pkg/ratelimit"
	"github.com/warren-farm/warren/pkg/tlsconfig"
)

// Config configures [New]. URL is required.
type Config struct {
	// URL of the Redis server (REDIS_URL), as go-redis ParseURL reads it.
	URL string
	// Prefix of every key ("" means "warren:"); replicas sharing limits use the
	// same one. Keys: {prefix}rl:rate:{caller} (the TAT, expiring when the
	// bucket is full again), {prefix}rl:conc:{caller} (a sorted set of lease ids
	// by expiry), {prefix}rl:lease:{id} (the lease's caller).
	Prefix string
	// TLS is the CA, client certificate and server name of a rediss:// URL
	// (REDIS_CA_FILE, REDIS_CERT_FILE, REDIS_KEY_FILE), as the job store's.
	TLS tlsconfig.Client
	// Timeout bounds each decision's round trip; 0 means 500ms. A decision that
	// takes longer is an error (ratelimit.ErrUnavailable), not a wait.
	Timeout time.Duration
}

// Redis is the [ratelimit.Limiter] shared by every API replica using the same Redis and
// prefix. Each decision is one Lua script (EVALSHA, loaded again by go-redis if
// Redis forgot it), run atomically, on Redis' own clock (TIME), so that the
// replicas' clocks do not matter.
type Redis struct {
	rdb     *redis.Client
	prefix  string
	timeout time.Duration
}

var _ ratelimit.Limiter = (*Redis)(nil)

// New returns a limiter on the Redis at cfg.URL. It does not connect: a
// Redis that is down makes decisions fail (ratelimit.ErrUnavailable), not New.
func New(cfg Config) (*Redis, error) {
	if cfg.URL == "" {
		return nil, errors.New("redislimit: Config.URL is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "warren:"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 500 * time.Millisecond
	}
	opt, err := redisstore.Options(cfg.URL, cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("redislimit: %w", err)
	}
	// A limiter that cannot answer fast is worse than none: no retries, and
	// short dials, so that a dead Redis costs a request little.
	opt.MaxRetries = -1
	if opt.DialTimeout == 0 || opt.DialTimeout > cfg.Timeout {
		opt.DialTimeout = cfg.Timeout
	}
	return &Redis{rdb: redis.NewClient(opt), prefix: cfg.Prefix + "rl:", timeout: cfg.Timeout}, nil
}

// gcraScript applies one request. KEYS[1] the caller's TAT key. ARGV: the
// emission interval T and the tolerance τ (both µs). Returns {allowed,
// remaining, retry_after µs, reset µs}.
var gcraScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local nxt = tat + T
local allow_at = nxt - tau
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', math.max(1, math.ceil((nxt - now) / 1000)))
return {1, math.floor((now - allow_at) / T), 0, nxt - now}
`)

// acquireScript takes a lease. KEYS[1] the caller's lease set, KEYS[2] the
// lease's caller key. ARGV: id, limit, ttl (µs), caller. Returns {acquired,
// in_use}.
var acquireScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not held and n >= tonumber(ARGV[2]) then
  return {0, n}
end
local exp = now + tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], exp, ARGV[1])
if not held then n = n + 1 end
local ttl = math.max(1, math.ceil(tonumber(ARGV[3]) / 1000))
redis.call('SET', KEYS[2], ARGV[4], 'PX', ttl)
local max = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], math.ceil(tonumber(max[2]) / 1000) + 1)
return {1, n}
`)

// releaseScript gives a lease back. KEYS[1] the lease's caller key; ARGV[1]
// the lease id, ARGV[2] the prefix of lease sets.
var releaseScript = redis.NewScript(`
local caller = redis.call('GET', KEYS[1])
if not caller then return 0 end
redis.call('DEL', KEYS[1])
return redis.call('ZREM', ARGV[2] .. caller, ARGV[1])
`)

func (r *Redis) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

// Allow implements [ratelimit.Limiter].
func (r *Redis) Allow(ctx context.Context, caller string, l ratelimit.Limits) (ratelimit.Decision, error) {
	if !l.RateLimited() {
		return ratelimit.Decision{Allowed: true}, nil
	}
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	t := ratelimit.Interval(l)
	tau := time.Duration(ratelimit.BurstOf(l)) * t
	res, err := gcraScript.Run(ctx, r.rdb, []string{r.prefix + "rate:" + caller},
		max(t.Microseconds(), 1), max(tau.Microseconds(), 1)).Int64Slice()
	if err != nil || len(res) != 4 {
		return ratelimit.Decision{}, fmt.Errorf("%w: rate of %q: %v", ratelimit.ErrUnavailable, caller, err)
	}
	return ratelimit.Decision{Allowed: res[0] == 1, Limit: ratelimit.BurstOf(l), Remaining: min(int(res[1]), ratelimit.BurstOf(l)),
		RetryAfter: time.Duration(res[2]) * time.Microsecond, Reset: time.Duration(res[3]) * time.Microsecond}, nil
}

// Acquire implements [ratelimit.Limiter].
func (r *Redis) Acquire(ctx context.Context, caller, id string, l ratelimit.Limits, ttl time.Duration) (ratelimit.Lease, error) {
	if !l.Quota() {
		return ratelimit.Lease{Acquired: true}, nil
	}
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	res, err := acquireScript.Run(ctx, r.rdb, []string{r.prefix + "conc:" + caller, r.prefix + "lease:" + id},
		id, l.Concurrency, max(ttl.Microseconds(), 1000), caller).Int64Slice()
	if err != nil || len(res) != 2 {
		return ratelimit.Lease{}, fmt.Errorf("%w: lease of %q: %v", ratelimit.ErrUnavailable, caller, err)
	}
	return ratelimit.Lease{Acquired: res[0] == 1, Limit: l.Concurrency, InUse: int(res[1])}, nil
}

// Release implements [ratelimit.Limiter].
func (r *Redis) Release(ctx context.Context, id string) error {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	if err := releaseScript.Run(ctx, r.rdb, []string{r.prefix + "lease:" + id}, id, r.prefix+"conc:").Err(); err != nil {
		return fmt.Errorf("%w: release %s: %v", ratelimit.ErrUnavailable, strconv.Quote(id), err)
	}
	return nil
}

// Close closes the connections to Redis.
func (r *Redis) Close() error { return r.rdb.Close() }
