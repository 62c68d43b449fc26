package ratelimit_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/ratelimit"
	"github.com/warren-farm/warren/pkg/ratelimit/ratelimittest"
)

// clock is a settable clock for the Local limiter.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 0)} }

func TestGCRABurstThenRate(t *testing.T) {
	clk := newClock()
	lo := ratelimit.NewLocal(ratelimit.LocalConfig{Now: clk.now})
	l := ratelimit.Limits{Rate: 10, Burst: 5} // T = 100ms, τ = 500ms
	ctx := context.Background()
	for i := range 5 {
		d, err := lo.Allow(ctx, "a", l)
		if err != nil || !d.Allowed {
			t.Fatalf("request %d of the burst refused: %+v %v", i+1, d, err)
		}
		if d.Remaining != 4-i || d.Limit != 5 {
			t.Fatalf("request %d: remaining %d limit %d, want %d 5", i+1, d.Remaining, d.Limit, 4-i)
		}
		if want := time.Duration(i+1) * 100 * time.Millisecond; d.Reset != want {
			t.Fatalf("request %d: reset %v, want %v", i+1, d.Reset, want)
		}
	}
	d, _ := lo.Allow(ctx, "a", l)
	if d.Allowed || d.RetryAfter != 100*time.Millisecond || d.Remaining != 0 {
		t.Fatalf("6th request at once: %+v, want refused with RetryAfter 100ms", d)
	}
	// A refused request costs nothing: after 40ms the wait is 60ms.
	clk.add(40 * time.Millisecond)
	if d, _ = lo.Allow(ctx, "a", l); d.Allowed || d.RetryAfter != 60*time.Millisecond {
		t.Fatalf("after 40ms: %+v, want refused with RetryAfter 60ms", d)
	}
	clk.add(60 * time.Millisecond)
	if d, _ = lo.Allow(ctx, "a", l); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("after 100ms: %+v, want allowed with 0 remaining", d)
	}
	// Another caller has its own bucket.
	if d, _ = lo.Allow(ctx, "b", l); !d.Allowed || d.Remaining != 4 {
		t.Fatalf("caller b: %+v, want a full bucket", d)
	}
	// Over a long run, the rate holds: 10 s at 1 request per ms → 100 allowed.
	clk.add(time.Second) // full again
	allowed := 0
	for range 10_000 {
		if d, _ := lo.Allow(ctx, "a", l); d.Allowed {
			allowed++
		}
		clk.add(time.Millisecond)
	}
	if allowed < 104 || allowed > 106 { // burst 5 + 10 s × 10/s
		t.Fatalf("allowed %d of 10000 over 10s at 10/s burst 5, want 105±1", allowed)
	}
}

func TestDefaultBurstAndUnlimited(t *testing.T) {
	lo := ratelimit.NewLocal(ratelimit.LocalConfig{Now: newClock().now})
	ctx := context.Background()
	n := 0
	for range 10 {
		if d, _ := lo.Allow(ctx, "a", ratelimit.Limits{Rate: 2.5}); d.Allowed {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("rate 2.5 with no burst allowed %d at once, want ceil(2.5) = 3", n)
	}
	for range 100 {
		if d, _ := lo.Allow(ctx, "a", ratelimit.Limits{}); !d.Allowed {
			t.Fatal("no rate limit refused a request")
		}
		if ls, _ := lo.Acquire(ctx, "a", "x", ratelimit.Limits{}, time.Second); !ls.Acquired {
			t.Fatal("no quota refused a lease")
		}
	}
}

func TestSecondsAndHeaders(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want int
	}{{0, 0}, {-time.Second, 0}, {time.Nanosecond, 1}, {time.Second, 1}, {time.Second + 1, 2}, {2500 * time.Millisecond, 3}} {
		if got := ratelimit.Seconds(c.d); got != c.want {
			t.Errorf("Seconds(%v) = %d, want %d", c.d, got, c.want)
		}
	}
	l := ratelimit.Limits{Rate: 10, Burst: 20, Concurrency: 4}
	if got, want := ratelimit.PolicyHeader(l), `"rate";q=20;w=2, "concurrency";q=4;qu="concurrent-requests"`; got != want {
		t.Errorf("PolicyHeader = %s, want %s", got, want)
	}
	if got := ratelimit.PolicyHeader(ratelimit.Limits{}); got != "" {
		t.Errorf("PolicyHeader of no limits = %q, want empty", got)
	}
	if got, want := ratelimit.RateHeader(ratelimit.Decision{Allowed: true, Remaining: 7, Reset: 1300 * time.Millisecond}), `"rate";r=7;t=2`; got != want {
		t.Errorf("RateHeader = %s, want %s", got, want)
	}
	if got, want := ratelimit.RateHeader(ratelimit.Decision{RetryAfter: 100 * time.Millisecond, Reset: 5 * time.Second}), `"rate";r=0;t=1`; got != want {
		t.Errorf("RateHeader refused = %s, want %s", got, want)
	}
	if got, want := ratelimit.ConcurrencyHeader(ratelimit.Lease{Limit: 4, InUse: 3}), `"concurrency";r=1`; got != want {
		t.Errorf("ConcurrencyHeader = %s, want %s", got, want)
	}
}

func TestLocalLeases(t *testing.T) {
	clk := newClock()
	lo := ratelimit.NewLocal(ratelimit.LocalConfig{Now: clk.now})
	ratelimittest.LeaseContract(t, lo, time.Minute, func() { clk.add(time.Minute) })
}

func TestLocalEvictsIdleCallers(t *testing.T) {
	clk := newClock()
	lo := ratelimit.NewLocal(ratelimit.LocalConfig{MaxCallers: 100, Now: clk.now})
	ctx := context.Background()
	l := ratelimit.Limits{Rate: 1, Burst: 1, Concurrency: 1}
	// Caller "held" keeps a lease; it must survive every eviction.
	if ls, _ := lo.Acquire(ctx, "held", "lease", l, time.Hour); !ls.Acquired {
		t.Fatal("lease refused")
	}
	for i := range 10_000 {
		if d, _ := lo.Allow(ctx, fmt.Sprint("c", i), l); !d.Allowed {
			t.Fatalf("new caller c%d refused", i)
		}
		if i%50 == 0 {
			clk.add(time.Second) // some callers go idle
		}
	}
	if n := lo.Callers(); n > 100 {
		t.Fatalf("%d callers remembered, bound 100", n)
	}
	if ls, _ := lo.Acquire(ctx, "held", "other", l, time.Hour); ls.Acquired {
		t.Fatal("the caller holding a lease was forgotten: its quota was reset")
	}
	// A caller whose bucket is not full again is not idle: right after a refused
	// request, a flood of new callers does not reset it while there is idle room.
	lo2 := ratelimit.NewLocal(ratelimit.LocalConfig{MaxCallers: 10, Now: clk.now})
	lo2.Allow(ctx, "busy", l)
	for i := range 9 {
		lo2.Allow(ctx, fmt.Sprint("idle", i), l)
	}
	clk.add(2 * time.Second)
	lo2.Allow(ctx, "busy", l) // busy again, the others idle
	lo2.Allow(ctx, "new", l)  // evicts: the idle ones go first
	if d, _ := lo2.Allow(ctx, "busy", l); d.Allowed {
		t.Fatal("a busy caller was evicted in favour of idle ones")
	}
}

func TestLocalConcurrentUse(t *testing.T) {
	lo := ratelimit.NewLocal(ratelimit.LocalConfig{})
	ctx := context.Background()
	l := ratelimit.Limits{Concurrency: 3}
	var mu sync.Mutex
	inUse, peak := 0, 0
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				id := fmt.Sprint(g, "-", i)
				ls, _ := lo.Acquire(ctx, "a", id, l, time.Minute)
				if !ls.Acquired {
					continue
				}
				mu.Lock()
				inUse++
				peak = max(peak, inUse)
				mu.Unlock()
				mu.Lock()
				inUse--
				mu.Unlock()
				_ = lo.Release(ctx, id)
			}
		})
	}
	wg.Wait()
	if peak > 3 {
		t.Fatalf("peak %d leases held at once, quota 3", peak)
	}
	if ls, _ := lo.Acquire(ctx, "a", "last", l, time.Minute); !ls.Acquired || ls.InUse != 1 {
		t.Fatalf("after every release: %+v, want 1 in use", ls)
	}
}
