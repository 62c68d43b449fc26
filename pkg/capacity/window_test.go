package capacity_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/warren-farm/warren/pkg/capacity"
)

// TestWindow checks that observations age out after Window, using synctest's
// fake clock (no real minute passes).
func TestWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFarm(t, capacity.Config{Window: time.Minute})
		track(t, f, digits1)
		snapshot := func() capacity.Snapshot { return snap(t, f, digits1) }

		s := snapshot()
		if s.WorkersNeeded != 0 || s.ServiceTimeSource != capacity.ServiceTimeDefault || s.ServiceTime != 0.1 || s.SlotsPerWorker != 0 {
			t.Fatalf("fresh route: %+v, want 0 needed, default 0.1s service, 0 slots", s)
		}

		// t=0: one answer of 200ms from a 4-slot worker, three turned away.
		f.ObserveService(digits1, 200*time.Millisecond, 4)
		for range 3 {
			f.ObserveTurnedAway(digits1)
		}
		s = snapshot()
		want := capacity.Snapshot{Answered: 1, TurnedAway: 3, TurnedAwayRate: 3.0 / 60, ServiceTime: 0.2,
			ServiceTimeSource: capacity.ServiceTimeWindow, SlotsPerWorker: 4, WorkersNeeded: 1}
		checkLocal(t, "t=0", s, want)

		// t=30s: another answer of 400ms; the window holds both.
		time.Sleep(30 * time.Second)
		f.ObserveService(digits1, 400*time.Millisecond, 4)
		want.Answered, want.ServiceTime = 2, 0.3
		checkLocal(t, "t=30s", snapshot(), want)

		// t=59.9s: the first observations are still inside the minute.
		time.Sleep(29900 * time.Millisecond)
		checkLocal(t, "t=59.9s", snapshot(), want)

		// t=60s: the first answer and the rejections, a full window old, have
		// aged out.
		time.Sleep(100 * time.Millisecond)
		want = capacity.Snapshot{Answered: 1, ServiceTime: 0.4, ServiceTimeSource: capacity.ServiceTimeWindow,
			SlotsPerWorker: 4, WorkersNeeded: 0}
		checkLocal(t, "t=60s", snapshot(), want)

		// t=89.9s: the second answer is still in. At t=90s the window is empty:
		// S falls back to the recent mean of both answers, slots stay known,
		// and an idle farm needs nothing.
		time.Sleep(29900 * time.Millisecond)
		checkLocal(t, "t=89.9s", snapshot(), want)
		time.Sleep(100 * time.Millisecond)
		s = snapshot()
		want = capacity.Snapshot{ServiceTime: s.ServiceTime, ServiceTimeSource: capacity.ServiceTimeRecent, SlotsPerWorker: 4}
		checkLocal(t, "t=90s", s, want)
		if s.ServiceTime <= 0.2 || s.ServiceTime >= 0.4 {
			t.Errorf("t=90s: recent service time %v, want between the two answers (0.2, 0.4)", s.ServiceTime)
		}

		// A single turned-away request wakes the farm again.
		f.ObserveTurnedAway(digits1)
		if s := snapshot(); s.WorkersNeeded != 1 || s.ArrivalRate != 1.0/60 {
			t.Errorf("after one rejection: needed %d, λ %v; want 1, 1/60", s.WorkersNeeded, s.ArrivalRate)
		}
	})
}

// TestWindowShort checks a window that is not a whole number of buckets.
func TestWindowShort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFarm(t, capacity.Config{Window: 1500 * time.Millisecond})
		snapshot := func() capacity.Snapshot { return snap(t, f, digits1) }
		f.ObserveTurnedAway(digits1)
		if s := snapshot(); s.TurnedAway != 1 || s.TurnedAwayRate != 1/1.5 {
			t.Fatalf("turned away %d at %v/s, want 1 at 1/1.5", s.TurnedAway, s.TurnedAwayRate)
		}
		time.Sleep(1600 * time.Millisecond)
		if s := snapshot(); s.TurnedAway != 0 || s.WorkersNeeded != 0 {
			t.Fatalf("after the window: %+v, want nothing", s)
		}
	})
}

// checkLocal compares the locally observed fields of a snapshot.
func checkLocal(t *testing.T, when string, got, want capacity.Snapshot) {
	t.Helper()
	type local struct {
		WorkersNeeded           int
		Answered, TurnedAway    int64
		TurnedAwayRate, Service float64
		Source                  string
		Slots                   int
	}
	g := local{got.WorkersNeeded, got.Answered, got.TurnedAway, got.TurnedAwayRate, round(got.ServiceTime), got.ServiceTimeSource, got.SlotsPerWorker}
	w := local{want.WorkersNeeded, want.Answered, want.TurnedAway, want.TurnedAwayRate, round(want.ServiceTime), want.ServiceTimeSource, want.SlotsPerWorker}
	if g != w {
		t.Errorf("%s: got %+v, want %+v", when, g, w)
	}
}

// round drops float noise below a microsecond.
func round(sec float64) float64 { return float64(time.Duration(sec*1e9).Round(time.Microsecond)) / 1e9 }
