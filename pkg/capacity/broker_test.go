package capacity_test

import (
	"context"
	"errors"
	"math"
	"net/url"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/capacity"
)

const requestQueue = "warren.requests"

// integration marks a test that needs the real broker; -short runs the unit subset.
func integration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs RabbitMQ; run without -short (make test)")
	}
}

// declareAndPublish declares the request queue in v and publishes n messages to
// it, with confirms, then closes the connection.
func declareAndPublish(t *testing.T, v *testbroker.Vhost, n int) {
	t.Helper()
	withChannel(t, v, func(ch *amqp.Channel) {
		if _, err := ch.QueueDeclare(requestQueue, true, false, false, false, nil); err != nil {
			t.Fatalf("declare: %v", err)
		}
		if err := ch.Confirm(false); err != nil {
			t.Fatalf("confirm mode: %v", err)
		}
		for i := range n {
			dc, err := ch.PublishWithDeferredConfirmWithContext(t.Context(), "", requestQueue, true, false,
				amqp.Publishing{ContentType: "application/json", Body: []byte(`{"data":"x"}`)})
			if err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
			if ok, err := dc.WaitContext(t.Context()); !ok || err != nil {
				t.Fatalf("publish %d not confirmed: %v %v", i, ok, err)
			}
		}
	})
}

// withChannel runs f on a channel of a fresh connection to v.
func withChannel(t *testing.T, v *testbroker.Vhost, f func(*amqp.Channel)) {
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
	f(ch)
}

// waitFor refreshes e until cond holds for its snapshot; the management API's
// statistics lag by up to 5s.
func waitFor(t *testing.T, e *capacity.Estimator, what string, cond func(capacity.Snapshot) bool) capacity.Snapshot {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := e.Refresh(t.Context())
		s := e.Snapshot()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 20s; last read: %v, snapshot %+v", what, err, s)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestBrokerBacklogWithoutWorkers: a backlog in a farm that has never answered
// gives the formula's number with DefaultServiceTime.
func TestBrokerBacklogWithoutWorkers(t *testing.T) {
	integration(t)
	t.Parallel()
	v := testbroker.NewVhost(t)
	e := newEstimator(t, capacity.Config{ManagementURL: v.ManagementURL, Vhost: v.Name, Queue: requestQueue})
	// Publish only once the broker has statistics for the queue: publishes made
	// before its first statistics sample may never show in the publish rate.
	declareAndPublish(t, v, 0)
	waitFor(t, e, "queue statistics", func(s capacity.Snapshot) bool { return !s.Stale })
	declareAndPublish(t, v, 25)

	s := waitFor(t, e, "25 ready messages", func(s capacity.Snapshot) bool { return s.Ready == 25 })
	if s.Stale || s.Error != "" || s.UpdatedAt.IsZero() || s.Consumers != 0 || s.Unacked != 0 {
		t.Errorf("snapshot %+v: want fresh, no consumers, nothing unacked", s)
	}
	if s.ServiceTimeSource != capacity.ServiceTimeDefault || s.ServiceTime != capacity.DefaultServiceTime.Seconds() {
		t.Errorf("service time %v s from %q, want the default %v", s.ServiceTime, s.ServiceTimeSource, capacity.DefaultServiceTime)
	}
	// The publish rate is 25 messages over the 60s window (0.42/s) once the
	// statistics have caught up, 0 before: the λ term adds less than 0.5 to the
	// backlog's 2.5 workers.
	t.Logf("publish rate %v/s", s.PublishRate)
	if s.PublishRate < 0 || s.PublishRate >= 3.5 || s.ArrivalRate != s.PublishRate {
		t.Errorf("publish rate %v, arrival rate %v: want the same, below 3.5/s", s.PublishRate, s.ArrivalRate)
	}
	want := capacity.Needed(capacity.Inputs{ArrivalRate: s.ArrivalRate, ServiceTime: capacity.DefaultServiceTime,
		Ready: 25, TargetUtilization: 0.7, TargetWait: time.Second})
	byHand := int(math.Ceil(s.ArrivalRate*0.1/0.7 + 25*0.1/1.0)) // C = 1 until a worker answers
	if s.WorkersNeeded != want || want != byHand || want != 3 {
		t.Errorf("workers needed %d; formula %d, by hand %d, want 3", s.WorkersNeeded, want, byHand)
	}

	// The publish statistics lag the counters; once in, the rate is the 25
	// messages averaged over the 60s window.
	s = waitFor(t, e, "publish rate", func(s capacity.Snapshot) bool { return s.PublishRate > 0 })
	if s.PublishRate > 25.0/60+1e-6 || s.WorkersNeeded != 3 {
		t.Errorf("publish rate %v/s (want at most 25/60), workers needed %d (want 3)", s.PublishRate, s.WorkersNeeded)
	}

	// Once workers have answered, their service time and slots replace the guesses.
	e.ObserveService(40*time.Millisecond, 2)
	s = e.Snapshot()
	// (λ·0.04/0.7 + 25·0.04/1) / 2 = (≤0.024 + 1) / 2 → 1.
	if s.WorkersNeeded != 1 || s.ServiceTimeSource != capacity.ServiceTimeWindow || s.SlotsPerWorker != 2 {
		t.Errorf("after an answer: %+v, want 1 needed from a 0.04s window mean and 2 slots", s)
	}
}

// TestBrokerQueueNotFound: a queue that is not declared (yet) is no crash and
// counts as empty; turned-away demand still asks for a worker.
func TestBrokerQueueNotFound(t *testing.T) {
	integration(t)
	t.Parallel()
	v := testbroker.NewVhost(t)
	e := newEstimator(t, capacity.Config{ManagementURL: v.ManagementURL, Vhost: v.Name, Queue: requestQueue})

	if err := e.Refresh(t.Context()); !errors.Is(err, capacity.ErrQueueNotFound) {
		t.Fatalf("Refresh: %v, want ErrQueueNotFound", err)
	}
	s := e.Snapshot()
	if !s.Stale || s.Error == "" || s.Ready != 0 || s.Consumers != 0 || s.WorkersNeeded != 0 {
		t.Errorf("snapshot %+v: want stale with a reason, empty, 0 needed", s)
	}
	e.ObserveTurnedAway()
	if s := e.Snapshot(); s.WorkersNeeded != 1 || s.TurnedAway != 1 {
		t.Errorf("after a no_workers rejection: %+v, want 1 needed", s)
	}

	// The queue appears, then is deleted: its backlog is forgotten, not kept.
	declareAndPublish(t, v, 5)
	waitFor(t, e, "5 ready messages", func(s capacity.Snapshot) bool { return s.Ready == 5 && !s.Stale })
	withChannel(t, v, func(ch *amqp.Channel) {
		if _, err := ch.QueueDelete(requestQueue, false, false, false); err != nil {
			t.Fatalf("delete: %v", err)
		}
	})
	s = waitFor(t, e, "queue gone", func(s capacity.Snapshot) bool { return s.Stale && s.Ready == 0 })
	if s.WorkersNeeded != 1 { // the rejection above is still in the window
		t.Errorf("after the queue was deleted: %+v, want 1 needed", s)
	}
}

// TestBrokerUnauthorised: refused credentials leave the estimate stale, with the
// reason, instead of failing anything.
func TestBrokerUnauthorised(t *testing.T) {
	integration(t)
	t.Parallel()
	v := testbroker.NewVhost(t)
	u, err := url.Parse(v.ManagementURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), "wrong-password")
	e := newEstimator(t, capacity.Config{ManagementURL: u.String(), Vhost: v.Name, Queue: requestQueue})
	if err := e.Refresh(t.Context()); err == nil || errors.Is(err, capacity.ErrQueueNotFound) {
		t.Fatalf("Refresh with a wrong password: %v, want an error", err)
	}
	if s := e.Snapshot(); !s.Stale || s.Error == "" {
		t.Errorf("snapshot %+v, want stale with a reason", s)
	}
}

// TestBrokerRun: Run keeps the snapshot current against the real management
// API and stops, leaving no goroutine, when its context is cancelled.
func TestBrokerRun(t *testing.T) {
	integration(t)
	// Not parallel: goleak would see the other tests' goroutines.
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	v := testbroker.NewVhost(t)
	declareAndPublish(t, v, 3)
	e := newEstimator(t, capacity.Config{ManagementURL: v.ManagementURL, Vhost: v.Name, Queue: requestQueue,
		Interval: 100 * time.Millisecond}) // its own HTTP client, with keep-alives

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()

	deadline := time.Now().Add(20 * time.Second)
	for s := e.Snapshot(); s.Ready != 3 || s.Stale; s = e.Snapshot() {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("Run did not report 3 ready messages within 20s: %+v", s)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := e.Snapshot().WorkersNeeded; n != 1 { // 3 × 0.1s / 1s = 0.3 → 1
		t.Errorf("workers needed %d, want 1", n)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of cancel")
	}
}
