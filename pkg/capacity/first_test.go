package capacity_test

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/capacity"
)

// TestBeforeFirstAnswer pins what a tracked route reports before any of its
// requests has been answered, as the package documentation states it: S =
// DefaultServiceTime (source "default"), slots_per_worker 0 with C = 1 in the
// formula, 0 when idle and at least 1 as soon as there is demand or work in
// progress.
func TestBeforeFirstAnswer(t *testing.T) {
	fm := &fakeMgmt{status: 200, body: list(`{"name":"warren.req.digits.v1","consumers":0,"messages_ready":0,"messages_unacknowledged":0}`)}
	f := fakeFarm(t, fm, nil)
	track(t, f, digits1)

	// Tracked, management API not read yet: every field.
	want := capacity.Snapshot{Model: "digits", Version: "1", Queue: "warren.req.digits.v1",
		ServiceTime: 0.1, ServiceTimeSource: capacity.ServiceTimeDefault,
		TargetUtilization: 0.7, TargetWait: 1, Window: 60,
		Stale: true, Error: "management API not read yet"}
	if got := snap(t, f, digits1); !reflect.DeepEqual(got, want) {
		t.Fatalf("before any read:\n got %+v\nwant %+v", got, want)
	}

	// Read, idle: 0 workers, fresh.
	if err := f.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := snap(t, f, digits1)
	want.Stale, want.Error, want.UpdatedAt = false, "", got.UpdatedAt
	if !reflect.DeepEqual(got, want) || got.UpdatedAt.IsZero() {
		t.Fatalf("idle:\n got %+v\nwant %+v", got, want)
	}

	steps := []struct {
		what      string
		turnAway  int    // more turned-away requests
		entry     string // the queue's counters
		wantN     int
		wantArriv float64
	}{
		// λ = 1/60: 1/60·0.1/0.7 = 0.0024 → at least 1.
		{"one turned-away request", 1, `"messages_ready":0,"messages_unacknowledged":0`, 1, 1.0 / 60},
		// 1/60·0.1/0.7 + 25·0.1/1 = 2.502 → 3.
		{"25 ready", 0, `"messages_ready":25,"messages_unacknowledged":0`, 3, 1.0 / 60},
		// (14 + 1/60)·0.1/0.7 + 100·0.1/1 = 12.002 → 13 with C = 1 (not divided).
		{"14/s published and 100 ready", 0, `"messages_ready":100,"messages_unacknowledged":0,"message_stats":{"publish_details":{"avg_rate":14}}`, 13, 14 + 1.0/60},
	}
	for _, st := range steps {
		for range st.turnAway {
			f.ObserveTurnedAway(digits1)
		}
		fm.set(200, list(`{"name":"warren.req.digits.v1","consumers":0,`+st.entry+`}`), nil)
		if err := f.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		s := snap(t, f, digits1)
		if s.WorkersNeeded != st.wantN || abs(s.ArrivalRate-st.wantArriv) > 1e-12 || s.ServiceTime != 0.1 ||
			s.ServiceTimeSource != capacity.ServiceTimeDefault || s.SlotsPerWorker != 0 || s.Answered != 0 {
			t.Errorf("%s: %+v\nwant %d needed at λ %v with S 0.1 (default), slots 0", st.what, s, st.wantN, st.wantArriv)
		}
	}

	// Work in progress only, on a route of its own: 1.
	fm.set(200, list(`{"name":"warren.req.digits.v1","consumers":0,`+steps[len(steps)-1].entry+`}`,
		`{"name":"warren.req.digits.v2","consumers":1,"messages_ready":0,"messages_unacknowledged":2}`), nil)
	if err := f.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	track(t, f, digits2)
	if s := snap(t, f, digits2); s.WorkersNeeded != 1 || s.ServiceTimeSource != capacity.ServiceTimeDefault {
		t.Errorf("unacked only: %+v, want 1", s)
	}

	// The same in the JSON a person or KEDA reads.
	rec := httptest.NewRecorder()
	f.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/capacity?model=digits&version=1", nil))
	for _, part := range []string{`"workers_needed":13,`, `"service_time":0.1,"service_time_source":"default","answered":0,"slots_per_worker":0,`} {
		if !strings.Contains(rec.Body.String(), part) {
			t.Errorf("answer %s lacks %s", rec.Body, part)
		}
	}

	// The first answer replaces S and C for its route only.
	f.ObserveService(digits1, 50*time.Millisecond, 4)
	if s := snap(t, f, digits1); s.ServiceTimeSource != capacity.ServiceTimeWindow || s.ServiceTime != 0.05 || s.SlotsPerWorker != 4 {
		t.Errorf("after the first answer: %+v", s)
	}
	if s := snap(t, f, digits2); s.ServiceTimeSource != capacity.ServiceTimeDefault || s.SlotsPerWorker != 0 {
		t.Errorf("another version after digits/1's first answer: %+v, want still the default", s)
	}
}

// TestBeforeFirstAnswerConfigured: the default service time is the configured one.
func TestBeforeFirstAnswerConfigured(t *testing.T) {
	fm := &fakeMgmt{status: 200, body: list(`{"name":"warren.req.digits.v1","messages_ready":1}`)}
	f := fakeFarm(t, fm, func(c *capacity.Config) { c.DefaultServiceTime = 2 * time.Second })
	track(t, f, digits1)
	if err := f.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	// 1 ready · 2s / 1s = 2.
	if s := snap(t, f, digits1); s.WorkersNeeded != 2 || s.ServiceTime != 2 || s.ServiceTimeSource != capacity.ServiceTimeDefault {
		t.Errorf("%+v, want 2 needed with S = 2s (default)", s)
	}
}
