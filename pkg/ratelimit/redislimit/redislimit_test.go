package redislimit_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/jobs/redisstore/redistest"
	"github.com/warren-farm/warren/pkg/ratelimit"
	"github.com/warren-farm/warren/pkg/ratelimit/ratelimittest"
	"github.com/warren-farm/warren/pkg/ratelimit/redislimit"
)

func newRedis(t *testing.T) *redislimit.Redis {
	t.Helper()
	url := redistest.URL(t)
	r, err := redislimit.New(redislimit.Config{URL: url, Prefix: redistest.Prefix(t, url)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func TestRedisGCRA(t *testing.T) {
	r := newRedis(t)
	ctx := context.Background()
	l := ratelimit.Limits{Rate: 2, Burst: 4} // T = 500ms
	for i := range 4 {
		d, err := r.Allow(ctx, "a", l)
		if err != nil || !d.Allowed || d.Remaining != 3-i {
			t.Fatalf("request %d of the burst: %+v %v", i+1, d, err)
		}
	}
	d, err := r.Allow(ctx, "a", l)
	if err != nil || d.Allowed {
		t.Fatalf("5th request at once: %+v %v, want refused", d, err)
	}
	// Redis' clock moved a little since the burst: the wait is just under 500ms.
	if d.RetryAfter <= 300*time.Millisecond || d.RetryAfter > 500*time.Millisecond {
		t.Fatalf("RetryAfter %v, want just under 500ms", d.RetryAfter)
	}
	if d, _ := r.Allow(ctx, "b", l); !d.Allowed || d.Remaining != 3 {
		t.Fatalf("caller b: %+v, want its own bucket", d)
	}
	time.Sleep(d.RetryAfter + 20*time.Millisecond)
	if d, err := r.Allow(ctx, "a", l); err != nil || !d.Allowed {
		t.Fatalf("after RetryAfter: %+v %v, want allowed", d, err)
	}
}

// Two limiters on the same Redis and prefix (two API replicas) share a bucket.
func TestRedisSharedAcrossInstances(t *testing.T) {
	url := redistest.URL(t)
	prefix := redistest.Prefix(t, url)
	var lims []*redislimit.Redis
	for range 2 {
		r, err := redislimit.New(redislimit.Config{URL: url, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		lims = append(lims, r)
	}
	ctx := context.Background()
	l := ratelimit.Limits{Rate: 0.1, Burst: 10, Concurrency: 3}
	allowed := 0
	for i := range 40 {
		if d, err := lims[i%2].Allow(ctx, "a", l); err != nil {
			t.Fatal(err)
		} else if d.Allowed {
			allowed++
		}
	}
	if allowed != 10 {
		t.Fatalf("two instances allowed %d of 40, want the shared burst of 10", allowed)
	}
	got := 0
	for i := range 6 {
		if ls, err := lims[i%2].Acquire(ctx, "a", fmt.Sprint("id", i), l, time.Minute); err != nil {
			t.Fatal(err)
		} else if ls.Acquired {
			got++
		}
	}
	if got != 3 {
		t.Fatalf("two instances granted %d leases, want the shared quota of 3", got)
	}
	// A lease taken on one instance is released through the other, by id.
	if err := lims[1].Release(ctx, "id0"); err != nil {
		t.Fatal(err)
	}
	if ls, _ := lims[0].Acquire(ctx, "a", "id9", l, time.Minute); !ls.Acquired {
		t.Fatal("a release on the other instance did not free a slot")
	}
}

func TestRedisLeases(t *testing.T) {
	r := newRedis(t)
	ttl := 300 * time.Millisecond
	ratelimittest.LeaseContract(t, r, ttl, func() { time.Sleep(ttl + 50*time.Millisecond) })
}

// A Redis that does not answer is an error wrapping ErrUnavailable, quickly.
func TestRedisUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a port nobody listens on
	r, err := redislimit.New(redislimit.Config{URL: "redis://" + addr + "/0"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	start := time.Now()
	if _, err := r.Allow(ctx, "a", ratelimit.Limits{Rate: 1}); !errors.Is(err, ratelimit.ErrUnavailable) {
		t.Fatalf("Allow against a dead port: %v, want ErrUnavailable", err)
	}
	if _, err := r.Acquire(ctx, "a", "x", ratelimit.Limits{Concurrency: 1}, time.Second); !errors.Is(err, ratelimit.ErrUnavailable) {
		t.Fatalf("Acquire against a dead port: %v, want ErrUnavailable", err)
	}
	if err := r.Release(ctx, "x"); !errors.Is(err, ratelimit.ErrUnavailable) {
		t.Fatalf("Release against a dead port: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("three decisions against a dead port took %v", d)
	}
	// Without limits nothing is asked of Redis.
	if d, err := r.Allow(ctx, "a", ratelimit.Limits{}); err != nil || !d.Allowed {
		t.Fatalf("no limit against a dead Redis: %+v %v", d, err)
	}
}
