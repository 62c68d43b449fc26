package capacity_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/capacity"
)

// integration marks a test that needs the real broker; -short runs the unit subset.
func integration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs RabbitMQ; run without -short (make test)")
	}
}

// declareAndPublish declares queue name in v (durable, as request queues are)
// and publishes n messages to it, with confirms, then closes the connection.
func declareAndPublish(t *testing.T, v *testbroker.Vhost, name string, n int) {
	t.Helper()
	withChannel(t, v, func(ch *amqp.Channel) {
		if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
			t.Fatalf("declare %s: %v", name, err)
		}
		if err := ch.Confirm(false); err != nil {
			t.Fatalf("confirm mode: %v", err)
		}
		for i := range n {
			dc, err := ch.PublishWithDeferredConfirmWithContext(t.Context(), "", name, true, false,
				amqp.Publishing{ContentType: "application/json", Body: []byte(`{"data":"x"}`)})
			if err != nil {
				t.Fatalf("publish %d to %s: %v", i, name, err)
			}
			if ok, err := dc.WaitContext(t.Context()); !ok || err != nil {
				t.Fatalf("publish %d to %s not confirmed: %v %v", i, name, ok, err)
			}
		}
	})
}

// withChannel runs fn on a channel of a fresh connection to v.
func withChannel(t *testing.T, v *testbroker.Vhost, fn func(*amqp.Channel)) {
	t.Helper()
	conn, err := amqp.Dial(v.AMQPURL)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	fn(ch)
}

// waitFor refreshes f until cond holds; the management API's statistics lag by
// up to 5s.
func waitFor(t *testing.T, f *capacity.Farm, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f.Refresh(t.Context())
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 20s; last read: %v, snapshots %+v", what, err, f.Snapshots())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// fresh reports whether every route's snapshot is fresh.
func fresh(f *capacity.Farm) bool {
	for _, s := range f.Snapshots() {
		if s.Stale {
			return false
		}
	}
	return true
}

// TestBrokerTwoRoutes: each route is estimated from its own queue, read in one
// request: a backlog on one model's queue raises only that model's estimate,
// and queues that are no request queue do not count.
func TestBrokerTwoRoutes(t *testing.T) {
	integration(t)
	t.Parallel()
	v := testbroker.NewVhost(t)
	fm := &countingTransport{}
	f := newFarm(t, capacity.Config{ManagementURL: v.ManagementURL, Vhost: v.Name, HTTPClient: &http.Client{Transport: fm}})
	track(t, f, digits1, resnet7)
	// Publish only once the broker has statistics for the queues: publishes made
	// before a queue's first statistics sample may never show in its publish rate.
	declareAndPublish(t, v, digits1.RequestQueue(), 0)
	declareAndPublish(t, v, resnet7.RequestQueue(), 0)
	declareAndPublish(t, v, digits1.JobQueue(), 40) // not a request queue
	waitFor(t, f, "queue statistics", func() bool { return fresh(f) })
	before := fm.n.Load()
	if err := f.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := fm.n.Load() - before; n != 1 {
		t.Errorf("%d management API requests for one Refresh of 2 routes, want 1", n)
	}
	declareAndPublish(t, v, digits1.RequestQueue(), 25)

	waitFor(t, f, "25 ready messages for digits/1", func() bool { return snap(t, f, digits1).Ready == 25 })
	s := snap(t, f, digits1)
	if s.Stale || s.Error != "" || s.UpdatedAt.IsZero() || s.Consumers != 0 || s.Unacked != 0 {
		t.Errorf("digits/1 %+v: want fresh, no consumers, nothing unacked", s)
	}
	if s.ServiceTimeSource != capacity.ServiceTimeDefault || s.ServiceTime != capacity.DefaultServiceTime.Seconds() {
		t.Errorf("service time %v s from %q, want the default %v", s.ServiceTime, s.ServiceTimeSource, capacity.DefaultServiceTime)
	}
	// The publish rate is 25 messages over the 60s window (0.42/s) once the
	// statistics have caught up, 0 before: the λ term adds less than 0.5 to the
	// backlog's 2.5 workers.
	t.Logf("digits/1 publish rate %v/s", s.PublishRate)
	if s.PublishRate < 0 || s.PublishRate >= 3.5 || s.ArrivalRate != s.PublishRate {
		t.Errorf("publish rate %v, arrival rate %v: want the same, below 3.5/s", s.PublishRate, s.ArrivalRate)
	}
	want := capacity.Needed(capacity.Inputs{ArrivalRate: s.ArrivalRate, ServiceTime: capacity.DefaultServiceTime,
		Ready: 25, TargetUtilization: 0.7, TargetWait: time.Second})
	byHand := int(math.Ceil(s.ArrivalRate*0.1/0.7 + 25*0.1/1.0)) // C = 1 until a worker answers
	if s.WorkersNeeded != want || want != byHand || want != 3 {
		t.Errorf("digits/1 workers needed %d; formula %d, by hand %d, want 3", s.WorkersNeeded, want, byHand)
	}

	// The publish statistics lag the counters; once in, the rate is the 25
	// messages averaged over the 60s window; the other route saw none of them.
	waitFor(t, f, "digits/1 publish rate", func() bool { return snap(t, f, digits1).PublishRate > 0 })
	if s := snap(t, f, digits1); s.PublishRate > 25.0/60+1e-6 || s.WorkersNeeded != 3 {
		t.Errorf("digits/1 publish rate %v/s (want at most 25/60), workers needed %d (want 3)", s.PublishRate, s.WorkersNeeded)
	}
	if s := snap(t, f, resnet7); s.Stale || s.Ready != 0 || s.PublishRate != 0 || s.WorkersNeeded != 0 {
		t.Errorf("resnet/7 %+v: want fresh, empty, 0 needed", s)
	}

	// A backlog on resnet/7 raises resnet/7 only.
	declareAndPublish(t, v, resnet7.RequestQueue(), 12)
	waitFor(t, f, "12 ready messages for resnet/7", func() bool { return snap(t, f, resnet7).Ready == 12 })
	if s := snap(t, f, resnet7); s.WorkersNeeded != 2 { // 12·0.1/1 = 1.2 (+ a small λ term) → 2
		t.Errorf("resnet/7 %+v: want 2 needed", s)
	}
	if s := snap(t, f, digits1); s.Ready != 25 || s.WorkersNeeded != 3 {
		t.Errorf("digits/1 after resnet/7's backlog: %+v, want still 25 ready, 3 needed", s)
	}

	// The HTTP answers KEDA reads.
	h := f.Handler()
	for target, want := range map[string]string{
		"/capacity?model=digits":           `"workers_needed":3,`,
		"/capacity?model=resnet&version=7": `"workers_needed":2,`,
		"/capacity":                        `{"workers_needed":5,"stale":false,`,
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("GET %s: %d %s, want %s", target, rec.Code, rec.Body, want)
		}
	}

	// Once workers of digits/1 have answered, their service time and slots
	// replace the guesses for digits/1 only.
	f.ObserveService(digits1, 40*time.Millisecond, 2)
	// (λ·0.04/0.7 + 25·0.04/1) / 2 = (≤0.024 + 1) / 2 → 1.
	if s := snap(t, f, digits1); s.WorkersNeeded != 1 || s.ServiceTimeSource != capacity.ServiceTimeWindow || s.SlotsPerWorker != 2 {
		t.Errorf("digits/1 after an answer: %+v, want 1 needed from a 0.04s window mean and 2 slots", s)
	}
	if s := snap(t, f, resnet7); s.WorkersNeeded != 2 || s.ServiceTimeSource != capacity.ServiceTimeDefault {
		t.Errorf("resnet/7 after digits/1's answer: %+v, want unchanged", s)
	}
}

// TestBrokerQueueNotFound: a route whose queue is not declared (yet) is no crash
// and counts as empty; turned-away demand still asks for a worker.
func TestBrokerQueueNotFound(t *testing.T) {
	integration(t)
	t.Parallel()
	v := testbroker.NewVhost(t)
	declareAndPublish(t, v, resnet7.RequestQueue(), 0) // another route's queue exists
	f := newFarm(t, capacity.Config{ManagementURL: v.ManagementURL, Vhost: v.Name})
	track(t, f, digits1)

	if err := f.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	s := snap(t, f, digits1)
	if !s.Stale || s.Error != capacity.ErrQueueNotFound.Error() || s.Ready != 0 || s.Consumers != 0 || s.WorkersNeeded != 0 {
		t.Errorf("snapshot %+v: want stale, queue not found, empty, 0 needed", s)
	}
	f.ObserveTurnedAway(digits1)
	if s := snap(t, f, digits1); s.WorkersNeeded != 1 || s.TurnedAway != 1 {
		t.Errorf("after a no_workers rejection: %+v, want 1 needed", s)
	}

	// The queue appears, then is deleted: its backlog is forgotten, not kept.
	declareAndPublish(t, v, digits1.RequestQueue(), 5)
	waitFor(t, f, "5 ready messages", func() bool { s := snap(t, f, digits1); return s.Ready == 5 && !s.Stale })
	withChannel(t, v, func(ch *amqp.Channel) {
		if _, err := ch.QueueDelete(digits1.RequestQueue(), false, false, false); err != nil {
			t.Fatalf("delete: %v", err)
		}
	})
	waitFor(t, f, "queue gone", func() bool { s := snap(t, f, digits1); return s.Stale && s.Ready == 0 })
	if s := snap(t, f, digits1); s.WorkersNeeded != 1 || s.Error != capacity.ErrQueueNotFound.Error() { // the rejection is still in the window
		t.Errorf("after the queue was deleted: %+v, want 1 needed", s)
	}
}

// TestBrokerUnreadable: refused credentials or a vhost that does not exist leave
// the estimates stale, with the reason, instead of failing anything.
func TestBrokerUnreadable(t *testing.T) {
	integration(t)
	t.Parallel()
	v := testbroker.NewVhost(t)
	u, err := url.Parse(v.ManagementURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), "wrong-password")
	f := newFarm(t, capacity.Config{ManagementURL: u.String(), Vhost: v.Name})
	track(t, f, digits1)
	if err := f.Refresh(t.Context()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("Refresh with a wrong password: %v, want a 401 error", err)
	}
	if s := snap(t, f, digits1); !s.Stale || !strings.Contains(s.Error, "401") {
		t.Errorf("snapshot %+v, want stale with the reason", s)
	}

	f = newFarm(t, capacity.Config{ManagementURL: v.ManagementURL, Vhost: v.Name + "-no-such-vhost"})
	track(t, f, digits1)
	if err := f.Refresh(t.Context()); !errors.Is(err, capacity.ErrVhostNotFound) {
		t.Fatalf("Refresh of a missing vhost: %v, want ErrVhostNotFound", err)
	}
	if s := snap(t, f, digits1); !s.Stale || s.Error != capacity.ErrVhostNotFound.Error() || s.WorkersNeeded != 0 {
		t.Errorf("snapshot %+v, want stale, vhost not found, 0 needed", s)
	}
}

// TestBrokerRun: Run keeps every route's snapshot current against the real
// management API and stops, leaving no goroutine, when its context is cancelled.
func TestBrokerRun(t *testing.T) {
	integration(t)
	// Not parallel: goleak would see the other tests' goroutines.
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	v := testbroker.NewVhost(t)
	declareAndPublish(t, v, digits1.RequestQueue(), 3)
	declareAndPublish(t, v, digits2.RequestQueue(), 0)
	f := newFarm(t, capacity.Config{ManagementURL: v.ManagementURL, Vhost: v.Name,
		Interval: 100 * time.Millisecond}) // its own HTTP client, with keep-alives
	track(t, f, digits1, digits2)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()

	deadline := time.Now().Add(20 * time.Second)
	for !fresh(f) || snap(t, f, digits1).Ready != 3 {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("Run did not report 3 ready messages within 20s: %+v", f.Snapshots())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := snap(t, f, digits1).WorkersNeeded; n != 1 { // 3 × 0.1s / 1s = 0.3 → 1
		t.Errorf("digits/1 workers needed %d, want 1", n)
	}
	if s := snap(t, f, digits2); s.Ready != 0 || s.WorkersNeeded != 0 {
		t.Errorf("digits/2 %+v, want empty, 0 needed", s)
	}
	if s, _ := f.ModelSnapshot("digits"); s.WorkersNeeded != 1 || s.Ready != 3 {
		t.Errorf("digits %+v, want 1 needed for 3 ready", s)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of cancel")
	}
}

// countingTransport counts the management API requests.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return noKeepAlive.RoundTrip(r)
}

// noKeepAlive leaves no idle connection behind (goleak in TestBrokerRun).
var noKeepAlive = &http.Transport{DisableKeepAlives: true}
