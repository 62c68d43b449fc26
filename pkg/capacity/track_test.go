package capacity_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/capacity"
	"github.com/warren-farm/warren/pkg/queue"
)

// TestTrack: routes are tracked once, bounded by MaxRoutes (the rest ignored
// and counted), invalid ones refused, and observations track a new route.
func TestTrack(t *testing.T) {
	f := newFarm(t, capacity.Config{MaxRoutes: 3})
	if _, ok := f.Snapshot(digits1); ok {
		t.Fatal("an untracked route has a snapshot")
	}
	if got := f.Snapshots(); len(got) != 0 {
		t.Fatalf("no route tracked: %d snapshots", len(got))
	}
	track(t, f, digits1, digits1, digits2)
	if n := len(f.Snapshots()); n != 2 {
		t.Fatalf("%d routes after tracking 2 (one twice), want 2", n)
	}

	for _, bad := range []queue.Route{{Model: "digits", Version: "01"}, {Model: "a.b", Version: "1"}, {}} {
		if err := f.Track(bad); err == nil {
			t.Errorf("Track(%+v) accepted an invalid route", bad)
		}
	}
	f.ObserveTurnedAway(queue.Route{Model: "-x", Version: "1"})
	if n := f.Ignored(); n != 4 {
		t.Errorf("Ignored() = %d after 4 invalid routes, want 4", n)
	}

	// An observation tracks its route: the third and last one.
	f.ObserveService(resnet7, 20*time.Millisecond, 2)
	if s := snap(t, f, resnet7); s.Answered != 1 || s.SlotsPerWorker != 2 {
		t.Errorf("route tracked by its first observation: %+v, want that observation counted", s)
	}

	// Full: new routes are ignored and counted, tracked ones still work.
	extra := queue.Route{Model: "bert", Version: "1"}
	if err := f.Track(extra); !errors.Is(err, capacity.ErrTooManyRoutes) {
		t.Errorf("Track over MaxRoutes: %v, want ErrTooManyRoutes", err)
	}
	f.ObserveTurnedAway(extra)
	f.ObserveService(extra, time.Millisecond, 1)
	if _, ok := f.Snapshot(extra); ok {
		t.Error("a route over MaxRoutes was tracked")
	}
	if n := f.Ignored(); n != 7 {
		t.Errorf("Ignored() = %d, want 7 (4 invalid, 3 over the bound)", n)
	}
	f.ObserveTurnedAway(digits1)
	if s := snap(t, f, digits1); s.TurnedAway != 1 {
		t.Errorf("a tracked route after the bound: %+v", s)
	}
	if err := f.Track(digits2); err != nil {
		t.Errorf("re-tracking a tracked route when full: %v", err)
	}
}

// TestDefaultMaxRoutes: 1024 routes by default.
func TestDefaultMaxRoutes(t *testing.T) {
	f := newFarm(t, capacity.Config{})
	for i := range capacity.DefaultMaxRoutes + 1 {
		err := f.Track(queue.Route{Model: "m" + strconv.Itoa(i/10), Version: strconv.Itoa(1 + i%10)})
		if (err == nil) != (i < capacity.DefaultMaxRoutes) {
			t.Fatalf("route %d: %v", i, err)
		}
	}
	if n := len(f.Snapshots()); n != capacity.DefaultMaxRoutes || f.Ignored() != 1 {
		t.Errorf("%d tracked, %d ignored; want %d and 1", n, f.Ignored(), capacity.DefaultMaxRoutes)
	}
}

// TestSnapshotsSorted: by model, then by version as a number.
func TestSnapshotsSorted(t *testing.T) {
	f := newFarm(t, capacity.Config{})
	for _, r := range []queue.Route{{Model: "resnet", Version: "10"}, {Model: "digits", Version: "2"}, {Model: "resnet", Version: "9"},
		{Model: "bert", Version: "1"}, {Model: "digits", Version: "1"}, {Model: "resnet", Version: "100"}} {
		track(t, f, r)
	}
	var got []string
	for _, s := range f.Snapshots() {
		got = append(got, s.Model+"/"+s.Version+"="+s.Queue)
	}
	want := []string{"bert/1=warren.req.bert.v1", "digits/1=warren.req.digits.v1", "digits/2=warren.req.digits.v2",
		"resnet/9=warren.req.resnet.v9", "resnet/10=warren.req.resnet.v10", "resnet/100=warren.req.resnet.v100"}
	if !slices.Equal(got, want) {
		t.Errorf("order %q\nwant %q", got, want)
	}
}

// TestRoutesIndependent: one route's observations do not move another's.
func TestRoutesIndependent(t *testing.T) {
	f := newFarm(t, capacity.Config{})
	track(t, f, digits1, digits2)
	for range 120 {
		f.ObserveTurnedAway(digits2)
	}
	f.ObserveService(digits2, 2*time.Second, 3)
	// digits/2: λ = 2/s, S = 2s, C = 3: 2·2/0.7/3 = 1.9 → 2.
	if s := snap(t, f, digits2); s.WorkersNeeded != 2 || s.TurnedAway != 120 || s.ServiceTime != 2 || s.SlotsPerWorker != 3 {
		t.Errorf("digits/2: %+v, want 2 needed from its own inputs", s)
	}
	if s := snap(t, f, digits1); s.WorkersNeeded != 0 || s.TurnedAway != 0 || s.Answered != 0 ||
		s.ServiceTimeSource != capacity.ServiceTimeDefault || s.SlotsPerWorker != 0 {
		t.Errorf("digits/1: %+v, want untouched", s)
	}
}

// TestTrackStartsFromLastRead: a route tracked after a read shows that read at
// once, without waiting for the next one.
func TestTrackStartsFromLastRead(t *testing.T) {
	fm := &fakeMgmt{status: 200, body: list(`{"name":"warren.req.digits.v2","consumers":1,"messages_ready":12,"messages_unacknowledged":1}`)}
	f := fakeFarm(t, fm, nil)
	track(t, f, digits1)
	if err := f.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	track(t, f, digits2, resnet7)
	s := snap(t, f, digits2)
	checkBroker(t, "digits/2", s, capacity.Snapshot{Ready: 12, Unacked: 1, Consumers: 1})
	if s.UpdatedAt.IsZero() || s.WorkersNeeded != 2 {
		t.Errorf("digits/2: %+v, want the read's time and 2 needed", s)
	}
	if s := snap(t, f, resnet7); !s.Stale || s.Error != capacity.ErrQueueNotFound.Error() {
		t.Errorf("resnet/7, not in the read: %+v, want stale, queue not found", s)
	}
}

// TestObserveNoAlloc: the reply path's calls do not allocate for a tracked
// route, nor does reading its snapshot.
func TestObserveNoAlloc(t *testing.T) {
	f := newFarm(t, capacity.Config{})
	track(t, f, digits1, digits2, resnet7)
	r := queue.Route{Model: "digits", Version: "2"} // equal, not the same strings
	if n := testing.AllocsPerRun(1000, func() {
		f.ObserveService(r, 3*time.Millisecond, 4)
		f.ObserveTurnedAway(r)
	}); n != 0 {
		t.Errorf("%v allocations per observation, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = f.Snapshot(r) }); n != 0 {
		t.Errorf("%v allocations per Snapshot, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = f.Snapshots() }); n != 1 {
		t.Errorf("%v allocations per Snapshots, want 1 (the slice)", n)
	}
}

// TestConcurrent exercises tracking, observations, refreshes and reads together
// (for -race).
func TestConcurrent(t *testing.T) {
	fm := &fakeMgmt{status: 200, body: list(`{"name":"warren.req.digits.v1","consumers":1,"messages_ready":2,"messages_unacknowledged":1}`)}
	f := fakeFarm(t, fm, func(c *capacity.Config) { c.MaxRoutes = 20 })
	h := f.Handler()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 400 {
				r := queue.Route{Model: "digits", Version: strconv.Itoa(1 + (i*j)%30)}
				switch (i + j) % 7 {
				case 0:
					f.ObserveTurnedAway(r)
				case 1:
					_ = f.Refresh(t.Context())
				case 2:
					h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/capacity?model=digits", nil))
				case 3:
					_ = f.Snapshots()
				case 4:
					_ = f.Track(r)
				default:
					f.ObserveService(digits1, time.Duration(j)*time.Microsecond, 1+i%4)
				}
			}
		})
	}
	wg.Wait()
	ss := f.Snapshots()
	if len(ss) != 20 || f.Ignored() == 0 {
		t.Errorf("%d routes, %d ignored: want 20 and some", len(ss), f.Ignored())
	}
	if !slices.IsSortedFunc(ss, func(a, b capacity.Snapshot) int {
		x, _ := strconv.Atoi(a.Version)
		y, _ := strconv.Atoi(b.Version)
		return x - y
	}) {
		t.Errorf("snapshots out of order")
	}
	if s := snap(t, f, digits1); s.Answered == 0 || s.Ready != 2 || s.WorkersNeeded < 1 {
		t.Errorf("after concurrent use: %+v", s)
	}
}

func BenchmarkObserveService(b *testing.B) {
	f := newFarm(b, capacity.Config{})
	track(b, f, digits1, digits2, resnet7)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			f.ObserveService(digits2, time.Millisecond, 4)
		}
	})
}
