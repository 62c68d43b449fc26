package capacity_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/warren-farm/warren/pkg/capacity"
)

func TestNoManagementURL(t *testing.T) {
	f := newFarm(t, capacity.Config{})
	track(t, f, digits1)
	if err := f.Refresh(t.Context()); err == nil {
		t.Error("Refresh without a management URL succeeded")
	}
	s := snap(t, f, digits1)
	if !s.Stale || s.Error != "no management URL configured" || s.WorkersNeeded != 0 {
		t.Errorf("snapshot %+v, want stale with the reason and 0 needed", s)
	}
	f.ObserveTurnedAway(digits1)
	if n := snap(t, f, digits1).WorkersNeeded; n != 1 {
		t.Errorf("turned away without a management API: needed %d, want 1", n)
	}
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { f.Run(ctx); close(done) }()
		synctest.Wait()
		cancel()
		<-done
	})
}

// TestRun: Run reads once at start and once every Interval for all routes, and
// returns when its context ends (synctest fails the test if any goroutine is
// left behind).
func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fm := &fakeMgmt{status: 200, body: list(
			`{"name":"warren.req.digits.v1","consumers":0,"messages_ready":25,"messages_unacknowledged":0}`,
			`{"name":"warren.req.resnet.v7","consumers":0,"messages_ready":5,"messages_unacknowledged":0}`)}
		f := fakeFarm(t, fm, func(c *capacity.Config) { c.Interval = 2 * time.Second })
		track(t, f, digits1, resnet7)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { f.Run(ctx); close(done) }()

		synctest.Wait()
		if n := fm.calls(); n != 1 {
			t.Fatalf("%d reads at start for 2 routes, want 1", n)
		}
		if s := snap(t, f, digits1); s.Ready != 25 || s.Stale || s.WorkersNeeded != 3 {
			t.Fatalf("digits/1 after the first read: %+v, want 25 ready, fresh, 3 needed", s)
		}
		if s := snap(t, f, resnet7); s.Ready != 5 || s.Stale || s.WorkersNeeded != 1 {
			t.Fatalf("resnet/7 after the first read: %+v, want 5 ready, fresh, 1 needed", s)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if n := fm.calls(); n != 3 {
			t.Fatalf("%d reads after 5s at a 2s interval, want 3", n)
		}
		cancel()
		select {
		case <-done:
		case <-time.After(time.Second):
			t.Fatal("Run did not return after cancel")
		}
		if n := fm.calls(); n != 3 {
			t.Errorf("%d reads, want no more after cancel", n)
		}
	})
}
