package ratelimit

import (
	"context"
	"sync"
	"time"
)

// DefaultMaxCallers bounds the callers a [Local] limiter remembers.
const DefaultMaxCallers = 100_000

// LocalConfig configures [NewLocal].
type LocalConfig struct {
	// MaxCallers bounds the callers remembered; 0 means DefaultMaxCallers. When
	// full, idle callers (bucket full again, no live lease) are forgotten first,
	// which loses nothing; if none is idle, callers without leases are forgotten
	// at random (each then starts with a full bucket: a rate limit briefly
	// looser, never a lost lease). Callers holding live leases are never
	// forgotten, so they alone may take the count past the bound (at most one
	// caller per call in flight or job not final).
	MaxCallers int
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Local is the [Limiter] of one API instance: in memory, bounded.
type Local struct {
	mu      sync.Mutex
	max     int
	now     func() time.Time
	callers map[string]*localCaller
	leases  map[string]string // lease id → caller
}

type localCaller struct {
	tat    time.Time
	leases map[string]time.Time // id → expiry
}

var _ Limiter = (*Local)(nil)

// NewLocal returns an in-memory limiter.
func NewLocal(cfg LocalConfig) *Local {
	if cfg.MaxCallers <= 0 {
		cfg.MaxCallers = DefaultMaxCallers
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Local{max: cfg.MaxCallers, now: cfg.Now, callers: map[string]*localCaller{}, leases: map[string]string{}}
}

// Allow implements [Limiter].
func (lo *Local) Allow(_ context.Context, caller string, l Limits) (Decision, error) {
	if !l.RateLimited() {
		return Decision{Allowed: true}, nil
	}
	lo.mu.Lock()
	defer lo.mu.Unlock()
	now := lo.now()
	c := lo.caller(caller, now)
	d, tat := gcra(c.tat, now, l)
	c.tat = tat
	return d, nil
}

// Acquire implements [Limiter].
func (lo *Local) Acquire(_ context.Context, caller, id string, l Limits, ttl time.Duration) (Lease, error) {
	if !l.Quota() {
		return Lease{Acquired: true}, nil
	}
	lo.mu.Lock()
	defer lo.mu.Unlock()
	now := lo.now()
	c := lo.caller(caller, now)
	lo.expire(c, now)
	if _, held := c.leases[id]; !held && len(c.leases) >= l.Concurrency {
		return Lease{Limit: l.Concurrency, InUse: len(c.leases)}, nil
	}
	if c.leases == nil {
		c.leases = map[string]time.Time{}
	}
	c.leases[id] = now.Add(ttl)
	lo.leases[id] = caller
	return Lease{Acquired: true, Limit: l.Concurrency, InUse: len(c.leases)}, nil
}

// Release implements [Limiter].
func (lo *Local) Release(_ context.Context, id string) error {
	lo.mu.Lock()
	defer lo.mu.Unlock()
	name, ok := lo.leases[id]
	if !ok {
		return nil
	}
	delete(lo.leases, id)
	if c := lo.callers[name]; c != nil {
		delete(c.leases, id)
	}
	return nil
}

// Close implements [Limiter]; a Local holds nothing to release.
func (lo *Local) Close() error { return nil }

// Callers is how many callers the limiter remembers now.
func (lo *Local) Callers() int {
	lo.mu.Lock()
	defer lo.mu.Unlock()
	return len(lo.callers)
}

// caller returns caller's state, making room for it if it is new. lo.mu is held.
func (lo *Local) caller(name string, now time.Time) *localCaller {
	if c := lo.callers[name]; c != nil {
		return c
	}
	if len(lo.callers) >= lo.max {
		lo.evict(now)
	}
	c := &localCaller{}
	lo.callers[name] = c
	return c
}

// evict makes room for at least a tenth of the bound: first the idle callers,
// then (an attack with many identities) callers without live leases, at random
// (map order). lo.mu is held.
func (lo *Local) evict(now time.Time) {
	for name, c := range lo.callers {
		lo.expire(c, now)
		if len(c.leases) == 0 && !c.tat.After(now) {
			delete(lo.callers, name)
		}
	}
	target := lo.max - max(lo.max/10, 1)
	for name, c := range lo.callers {
		if len(lo.callers) <= target {
			return
		}
		if len(c.leases) == 0 {
			delete(lo.callers, name)
		}
	}
}

// expire drops c's leases past their expiry. lo.mu is held.
func (lo *Local) expire(c *localCaller, now time.Time) {
	for id, exp := range c.leases {
		if !now.Before(exp) {
			delete(c.leases, id)
			delete(lo.leases, id)
		}
	}
}
