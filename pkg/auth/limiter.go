package auth

import (
	"math"
	"sync"
	"time"
)

// Defaults of [FailureConfig].
const (
	DefaultFailureBurst   = 20
	DefaultFailureRefill  = time.Second
	DefaultFailureClients = 10000
)

// FailureConfig configures a [FailureLimiter].
type FailureConfig struct {
	// Burst is how many failed attempts a client address may make at once;
	// zero means DefaultFailureBurst.
	Burst int
	// Refill is how often one more attempt is allowed back; zero means
	// DefaultFailureRefill.
	Refill time.Duration
	// MaxClients bounds the addresses tracked (the memory an attacker with many
	// addresses can make it use); zero means DefaultFailureClients.
	MaxClients int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// FailureLimiter limits failed authentication attempts per client address: a
// token bucket per address that only failures drain. An address whose bucket is
// empty is refused (429) before its credential is even checked, so guessing keys
// costs the guesser time, not the API work.
type FailureLimiter struct {
	cfg FailureConfig
	mu  sync.Mutex
	m   map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// NewFailureLimiter returns a limiter.
func NewFailureLimiter(cfg FailureConfig) *FailureLimiter {
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultFailureBurst
	}
	if cfg.Refill <= 0 {
		cfg.Refill = DefaultFailureRefill
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = DefaultFailureClients
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &FailureLimiter{cfg: cfg, m: map[string]*bucket{}}
}

// refill brings b up to now; the caller holds mu.
func (l *FailureLimiter) refill(b *bucket, now time.Time) {
	b.tokens = math.Min(float64(l.cfg.Burst), b.tokens+float64(now.Sub(b.at))/float64(l.cfg.Refill))
	b.at = now
}

// Limited reports whether ip has no attempts left, and how long until it has one.
func (l *FailureLimiter) Limited(ip string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.m[ip]
	if !ok {
		return 0, false
	}
	l.refill(b, l.cfg.Now())
	if b.tokens >= 1 {
		return 0, false
	}
	return time.Duration((1 - b.tokens) * float64(l.cfg.Refill)), true
}

// Fail takes one attempt from ip.
func (l *FailureLimiter) Fail(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Now()
	b, ok := l.m[ip]
	if !ok {
		if len(l.m) >= l.cfg.MaxClients {
			l.sweep(now)
		}
		b = &bucket{tokens: float64(l.cfg.Burst), at: now}
		l.m[ip] = b
	}
	l.refill(b, now)
	b.tokens = math.Max(0, b.tokens-1)
}

// sweep forgets the addresses whose buckets are full again (they are as if
// never seen); if that frees nothing, it forgets all, rather than grow without
// bound. The caller holds mu.
func (l *FailureLimiter) sweep(now time.Time) {
	for ip, b := range l.m {
		if l.refill(b, now); b.tokens >= float64(l.cfg.Burst) {
			delete(l.m, ip)
		}
	}
	if len(l.m) >= l.cfg.MaxClients {
		clear(l.m)
	}
}
