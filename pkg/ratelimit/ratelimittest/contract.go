// Package ratelimittest holds the checks every ratelimit.Limiter passes.
package ratelimittest

import (
	"context"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/ratelimit"
)

// LeaseContract checks what every Limiter's leases do: the quota per caller,
// renewal, release by id alone (twice, or unknown: no error) and expiry. expire
// moves the limiter's time past ttl.
func LeaseContract(t *testing.T, lim ratelimit.Limiter, ttl time.Duration, expire func()) {
	ctx := context.Background()
	l := ratelimit.Limits{Concurrency: 2}
	acq := func(caller, id string) ratelimit.Lease {
		t.Helper()
		ls, err := lim.Acquire(ctx, caller, id, l, ttl)
		if err != nil {
			t.Fatalf("Acquire(%s, %s): %v", caller, id, err)
		}
		return ls
	}
	if ls := acq("a", "1"); !ls.Acquired || ls.InUse != 1 || ls.Limit != 2 {
		t.Fatalf("first lease: %+v", ls)
	}
	if ls := acq("a", "2"); !ls.Acquired || ls.InUse != 2 {
		t.Fatalf("second lease: %+v", ls)
	}
	if ls := acq("a", "3"); ls.Acquired || ls.InUse != 2 {
		t.Fatalf("third lease over a quota of 2: %+v, want refused", ls)
	}
	if ls := acq("a", "2"); !ls.Acquired || ls.InUse != 2 {
		t.Fatalf("renewing a held lease: %+v, want acquired with 2 in use", ls)
	}
	if ls := acq("b", "4"); !ls.Acquired || ls.InUse != 1 {
		t.Fatalf("another caller: %+v, want its own quota", ls)
	}
	// Release by id alone.
	if err := lim.Release(ctx, "1"); err != nil {
		t.Fatal(err)
	}
	if err := lim.Release(ctx, "1"); err != nil {
		t.Fatalf("releasing twice: %v", err)
	}
	if err := lim.Release(ctx, "never-acquired"); err != nil {
		t.Fatalf("releasing an unknown id: %v", err)
	}
	if ls := acq("a", "3"); !ls.Acquired || ls.InUse != 2 {
		t.Fatalf("after a release: %+v, want acquired", ls)
	}
	// Leases nobody releases expire.
	expire()
	if ls := acq("a", "5"); !ls.Acquired || ls.InUse != 1 {
		t.Fatalf("after the ttl: %+v, want the expired leases gone", ls)
	}
	if ls := acq("a", "6"); !ls.Acquired || ls.InUse != 2 {
		t.Fatalf("after the ttl, second: %+v", ls)
	}
}
