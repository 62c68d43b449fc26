package queue_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/queue"
)

// collector applies job updates the way the store does (the first final state wins)
// and remembers every update and dead letter.
type collector struct {
	mu      sync.Mutex
	updates map[string][]jobs.Event
	final   map[string]jobs.Event
	dead    []jobs.DeadLetter
}

func newCollector() *collector {
	return &collector{updates: map[string][]jobs.Event{}, final: map[string]jobs.Event{}}
}

func (c *collector) event(_ context.Context, u jobs.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.updates[u.JobID] = append(c.updates[u.JobID], u)
	if _, done := c.final[u.JobID]; !done && u.Type == jobs.EventFinal {
		c.final[u.JobID] = u
	}
	return nil
}

func (c *collector) deadJob(_ context.Context, d jobs.DeadLetter) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dead = append(c.dead, d)
	return nil
}

func (c *collector) finalOf(id string) (jobs.Event, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	u, ok := c.final[id]
	return u, ok
}

func (c *collector) finals(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, u := range c.updates[id] {
		if u.Type == jobs.EventFinal {
			n++
		}
	}
	return n
}

// jobFarm is a publisher that submits, a result consumer that collects, and
// (started by the test when it wants) a job consumer.
type jobFarm struct {
	t     *testing.T
	vh    *testbroker.Vhost
	pub   *queue.JobPublisher
	col   *collector
	stops []func()
}

// close stops everything the farm started, workers first.
func (f *jobFarm) close() {
	for i := len(f.stops) - 1; i >= 0; i-- {
		f.stops[i]()
	}
}

func newJobFarm(t *testing.T) *jobFarm {
	t.Helper()
	vh := testbroker.NewVhost(t)
	pub, err := queue.NewJobPublisher(queue.JobPublisherConfig{DialConfig: queue.DialConfig{URL: vh.AMQPURL}})
	if err != nil {
		t.Fatal(err)
	}
	f := &jobFarm{t: t, vh: vh, pub: pub, col: newCollector()}
	f.stops = append(f.stops, start(t, pub.Run))
	rc, err := queue.NewResultConsumer(queue.ResultConsumerConfig{DialConfig: queue.DialConfig{URL: vh.AMQPURL}},
		f.col.event, f.col.deadJob)
	if err != nil {
		t.Fatal(err)
	}
	f.stops = append(f.stops, start(t, rc.Run))
	waitFor(t, "publisher and result consumer", 10*time.Second, func() bool { return pub.Ready() && rc.Connected() })
	return f
}

func (f *jobFarm) worker(h queue.Handler, mutate func(*queue.JobConsumerConfig)) (*queue.JobConsumer, func()) {
	f.t.Helper()
	cfg := queue.JobConsumerConfig{
		DialConfig: queue.DialConfig{URL: f.vh.AMQPURL}, WorkerID: "jw-" + f.t.Name(),
		Routes:       []queue.RouteConfig{{Route: route, Handler: h, Concurrency: 2}},
		Middleware:   queue.Standard(nil, nil, nil),
		RetryBackoff: 50 * time.Millisecond, RetryBackoffMax: 200 * time.Millisecond,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	jc, err := queue.NewJobConsumer(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	stop := start(f.t, jc.Run)
	f.stops = append(f.stops, stop)
	waitFor(f.t, "job consumer", 10*time.Second, jc.Connected)
	return jc, stop
}

func (f *jobFarm) submit(id string, mutate ...func(*jobs.Message)) {
	f.t.Helper()
	j := jobs.Message{ID: id, RequestID: "req-" + id, Model: route.Model, Version: route.Version, Body: []byte(id)}
	for _, m := range mutate {
		m(&j)
	}
	if err := f.pub.PublishJob(context.Background(), j); err != nil {
		f.t.Fatalf("PublishJob %s: %v", id, err)
	}
}

func (f *jobFarm) waitFinal(id string, timeout time.Duration) jobs.Event {
	f.t.Helper()
	var u jobs.Event
	waitFor(f.t, "final state of "+id, timeout, func() bool {
		var ok bool
		u, ok = f.col.finalOf(id)
		return ok
	})
	return u
}

func TestJobSubmittedWithNoWorkerRunsLater(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	f := newJobFarm(t)
	defer f.close()
	for _, id := range []string{"j1", "j2", "j3"} {
		f.submit(id) // confirmed with nobody consuming
	}
	q := f.vh.WaitQueue(t, route.JobQueue(), func(q testbroker.QueueInfo) bool { return q.Ready == 3 }, 15*time.Second)
	if q.Arguments["x-queue-type"] != "quorum" || q.Arguments["x-dead-letter-exchange"] == nil || q.Arguments["x-delivery-limit"] == nil {
		t.Errorf("job queue arguments %v: want a quorum queue with a delivery limit and a dead-letter exchange", q.Arguments)
	}
	rec := newRecorder(0)
	f.worker(rec.handle, nil)
	for _, id := range []string{"j1", "j2", "j3"} {
		u := f.waitFinal(id, 10*time.Second)
		if u.Status != jobs.Succeeded || u.Attempt != 1 || u.Worker == "" {
			t.Errorf("%s: final %+v", id, u)
		}
		var res map[string]string
		if err := json.Unmarshal(u.Result, &res); err != nil || res["request_id"] != "req-"+id {
			t.Errorf("%s: result %s (%v)", id, u.Result, err)
		}
		// A running report was sent too (the result consumer applies updates
		// concurrently, so it may be applied after the final one; the store ignores it then).
		waitFor(t, "running report of "+id, 5*time.Second, func() bool {
			f.col.mu.Lock()
			defer f.col.mu.Unlock()
			for _, u := range f.col.updates[id] {
				if u.Type == jobs.EventRunning && u.Attempt == 1 {
					return true
				}
			}
			return false
		})
	}
	if dup := rec.computedTwice(); len(dup) > 0 {
		t.Errorf("computed twice: %v", dup)
	}
}

// failAlwaysAndFlakyOnce makes rec fail every run of job "always" and the first
// run of job "flaky" with a model error.
func failAlwaysAndFlakyOnce(rec *recorder) {
	rec.fail = func(m *queue.Message) error {
		switch {
		case m.RequestID == "req-always":
			return errors.New("weights not loaded")
		case m.RequestID == "req-flaky" && rec.count("req-flaky") == 1:
			return errors.New("transient")
		}
		return nil
	}
}

func TestJobModelErrorsAreRetriedThenFail(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	f := newJobFarm(t)
	defer f.close()
	rec := newRecorder(0)
	failAlwaysAndFlakyOnce(rec)
	f.worker(rec.handle, func(c *queue.JobConsumerConfig) { c.MaxAttempts = 3 })
	begin := time.Now()
	f.submit("always")
	f.submit("flaky")
	f.submit("fine")
	if u := f.waitFinal("fine", 10*time.Second); u.Status != jobs.Succeeded {
		t.Errorf("fine: %+v", u)
	}
	if u := f.waitFinal("flaky", 10*time.Second); u.Status != jobs.Succeeded || u.Attempt != 2 {
		t.Errorf("flaky: %+v, want succeeded at attempt 2", u)
	}
	u := f.waitFinal("always", 10*time.Second)
	if u.Status != jobs.Failed || u.Error == nil || u.Error.Reason != jobs.ReasonModelError || u.Attempt != 3 {
		t.Fatalf("always: %+v, want failed model_error at attempt 3", u)
	}
	// Backoff 50 ms then 100 ms: the third attempt cannot start before 150 ms.
	if el := time.Since(begin); el < 150*time.Millisecond {
		t.Errorf("three attempts in %v: the retry backoff was not applied", el)
	}
	if n := rec.count("req-always"); n != 3 {
		t.Errorf("the failing job ran %d times, want 3", n)
	}
	time.Sleep(300 * time.Millisecond) // nothing more may arrive: it does not loop
	if n := rec.count("req-always"); n != 3 {
		t.Errorf("the failing job ran again (%d)", n)
	}
	if n := f.col.finals("always"); n != 1 {
		t.Errorf("%d final reports for one job", n)
	}
}

func TestJobPoisonMessages(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	f := newJobFarm(t)
	defer f.close()
	rec := newRecorder(0)
	jc, _ := f.worker(rec.handle, func(c *queue.JobConsumerConfig) { c.MaxAttempts = 2 })

	conn, err := amqp.Dial(f.vh.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	pub := func(h amqp.Table, body string) {
		if err := ch.PublishWithContext(context.Background(), "", route.JobQueue(), false, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Headers: h, Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
	}
	pub(amqp.Table{}, "no job id at all")
	pub(amqp.Table{queue.HeaderJobID: "noschema"}, "{}")
	pub(amqp.Table{queue.HeaderJobID: "toomany", queue.HeaderSchema: int32(queue.SchemaVersion), queue.HeaderAttempt: int32(3)}, "{}")
	f.submit("after") // a good job behind them

	if u := f.waitFinal("after", 10*time.Second); u.Status != jobs.Succeeded {
		t.Errorf("the job behind the poison: %+v", u)
	}
	if u := f.waitFinal("noschema", 5*time.Second); u.Status != jobs.Failed || u.Error.Reason != jobs.ReasonBadMessage {
		t.Errorf("noschema: %+v", u)
	}
	if u := f.waitFinal("toomany", 5*time.Second); u.Status != jobs.Failed || u.Error.Reason != jobs.ReasonAttemptsExhausted {
		t.Errorf("toomany: %+v", u)
	}
	waitFor(t, "the id-less message in the dead-letter queue", 5*time.Second, func() bool {
		f.col.mu.Lock()
		defer f.col.mu.Unlock()
		return len(f.col.dead) == 1
	})
	if d := f.col.dead[0]; d.JobID != "" || d.Reason != "rejected" {
		t.Errorf("dead letter %+v", d)
	}
	if n := rec.calls.Load(); n != 1 {
		t.Errorf("the model ran %d times, want once (only the good job)", n)
	}
	if s := jc.Stats(); s.Rejected != 1 || s.Failed != 2 || s.Succeeded != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestJobRedeliveredAfterWorkerConnectionDies(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	f := newJobFarm(t)
	defer f.close()
	// The first run lasts until its connection is gone (however long closing it
	// takes); the redelivered copy answers at once.
	var runs atomic.Int32
	h := func(ctx context.Context, m *queue.Message) ([]byte, error) {
		if runs.Add(1) == 1 {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return []byte(`{"ok":true}`), nil
	}
	jc, _ := f.worker(h, nil)
	f.vh.WaitConnections(t, 3, 15*time.Second)
	f.submit("crash")
	waitFor(t, "the job running", 5*time.Second, func() bool { return jc.InFlight() == 1 })
	// Every connection of the vhost dies, as if the worker's host went away mid-job
	// (the others reconnect too).
	if n := f.vh.CloseConnections(t); n < 3 {
		t.Fatalf("closed %d connections", n)
	}
	u := f.waitFinal("crash", 20*time.Second)
	if u.Status != jobs.Succeeded || u.Attempt < 2 {
		t.Fatalf("final %+v, want succeeded with attempt ≥ 2", u)
	}
	time.Sleep(2500 * time.Millisecond) // the interrupted run's late report, if any, lands now
	if got, _ := f.col.finalOf("crash"); got.Attempt != u.Attempt || f.col.finals("crash") != 1 {
		t.Errorf("the first final state was replaced: %+v", got)
	}
}

func TestJobCancelAndStartBy(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	f := newJobFarm(t)
	defer f.close()
	rec := newRecorder(500 * time.Millisecond)
	jc, _ := f.worker(rec.handle, func(c *queue.JobConsumerConfig) { c.Routes[0].Concurrency = 1 })
	f.submit("busy") // occupies the only slot
	waitFor(t, "busy running", 5*time.Second, func() bool { return jc.InFlight() == 1 })
	if err := f.pub.PublishCancel(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the cancel notice at the worker", 5*time.Second, func() bool { return jc.Cancelled("gone") })
	f.submit("gone")
	f.submit("late", func(j *jobs.Message) { j.StartBy = time.Now().Add(-time.Second) })
	f.submit("ok")
	if u := f.waitFinal("ok", 10*time.Second); u.Status != jobs.Succeeded {
		t.Errorf("ok: %+v", u)
	}
	if u := f.waitFinal("late", time.Second); u.Status != jobs.Expired {
		t.Errorf("late: %+v", u)
	}
	if _, ok := f.col.finalOf("gone"); ok || rec.count("req-gone") != 0 {
		t.Errorf("the cancelled job ran or reported")
	}
	if s := jc.Stats(); s.Cancelled != 1 || s.Expired != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestJobInterruptedWhenItsConnectionIsLost: a job still running when its
// connection dies cannot report or ack any more; it is stopped at once, so the slot
// takes the redelivered copy instead of holding it unacked (which would run into
// the broker's consumer_timeout).
func TestJobInterruptedWhenItsConnectionIsLost(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	f := newJobFarm(t)
	defer f.close()
	type run struct {
		end time.Time
		err error
	}
	runs := make(chan run, 4)
	var n atomic.Int32
	h := func(ctx context.Context, m *queue.Message) ([]byte, error) {
		// The first run would last long past the connection's close (however slow
		// rabbitmqctl is); the redelivered copy is quick.
		d := 30 * time.Second
		if n.Add(1) > 1 {
			d = 100 * time.Millisecond
		}
		select {
		case <-time.After(d):
			runs <- run{time.Now(), nil}
			return []byte(`{"ok":true}`), nil
		case <-ctx.Done():
			runs <- run{time.Now(), ctx.Err()}
			return nil, ctx.Err()
		}
	}
	jc, _ := f.worker(h, func(c *queue.JobConsumerConfig) { c.Routes[0].Concurrency = 1 })
	f.vh.WaitConnections(t, 3, 15*time.Second)
	f.submit("cut")
	waitFor(t, "the job running", 5*time.Second, func() bool { return jc.InFlight() == 1 })
	f.vh.CloseConnections(t) // takes about a second (rabbitmqctl)
	closed := time.Now()
	first := <-runs
	if first.err == nil || first.end.Sub(closed) > time.Second {
		t.Fatalf("the interrupted run ended %v after its connection was closed (err %v); want it stopped at once",
			first.end.Sub(closed), first.err)
	}
	if u := f.waitFinal("cut", 15*time.Second); u.Status != jobs.Succeeded || u.Attempt != 2 {
		t.Fatalf("final %+v, want succeeded at attempt 2", u)
	}
	if s := jc.Stats(); s.Failed != 0 || s.Succeeded != 1 {
		t.Errorf("stats %+v: the interrupted run must not count as failed", s)
	}
}

// A job queue deleted after the publisher declared it: a publish is returned by the
// broker (no such queue) and must fail with ErrNoWorkers, never count as queued
// (the broker confirms a returned message too); the next publish declares the queue
// again, in the same session. Repeated, because whether the return is seen must
// not depend on the goroutines' timing.
func TestJobPublishToADeletedJobQueue(t *testing.T) {
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	f := newJobFarm(t)
	defer f.close()
	conn, err := amqp.Dial(f.vh.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	f.submit("first") // declares the job queue
	conns := f.vh.Connections(t)
	for i := range 10 {
		if _, err := ch.QueueDelete(route.JobQueue(), false, false, false); err != nil {
			t.Fatal(err)
		}
		err := f.pub.PublishJob(context.Background(), jobs.Message{ID: fmt.Sprintf("lost%d", i), Model: route.Model, Version: route.Version, Body: []byte(`{}`)})
		if !errors.Is(err, queue.ErrNoWorkers) {
			t.Fatalf("publish %d to a deleted job queue: %v, want ErrNoWorkers", i, err)
		}
		f.submit(fmt.Sprintf("kept%d", i))
	}
	f.vh.WaitQueue(t, route.JobQueue(), func(q testbroker.QueueInfo) bool {
		return q.Arguments["x-queue-type"] == "quorum" && q.Ready == 1
	}, 10*time.Second)
	if now := f.vh.Connections(t); !slices.Equal(now, conns) {
		t.Errorf("connections %q, then %q: the publisher reconnected", conns, now)
	}
}

// A model's job queue declared beforehand with other arguments (a classic queue)
// breaks only that model's jobs: the publisher names the queue in State as soon as
// the route is tracked, its publishes fail with ErrJobTopology while another
// model's succeed, and once an operator deletes the bad queue the publisher
// declares it again in the same session (no reconnect) and the problem clears.
func TestJobPublisherHealsABrokenJobQueue(t *testing.T) {
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	vh := testbroker.NewVhost(t)
	bad := queue.Route{Model: "broken", Version: "1"}
	conn, err := amqp.Dial(vh.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(bad.JobQueue(), true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}

	pub, err := queue.NewJobPublisher(queue.JobPublisherConfig{DialConfig: queue.DialConfig{URL: vh.AMQPURL},
		TopologyRetry: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, pub.Run)
	defer stop()
	waitFor(t, "publisher", 10*time.Second, pub.Ready)
	pub.Track(bad)
	pub.Track(route)
	waitFor(t, "the broken job queue named in State", 10*time.Second, func() bool {
		return strings.Contains(pub.State().Problem, bad.JobQueue())
	})
	if p := pub.State().Problem; strings.Contains(p, route.JobQueue()) || !strings.Contains(p, "PRECONDITION_FAILED") {
		t.Errorf("State().Problem = %q", p)
	}
	if !pub.Ready() {
		t.Error("one model's broken job queue made the publisher unready")
	}
	msg := func(id string, r queue.Route) jobs.Message {
		return jobs.Message{ID: id, Model: r.Model, Version: r.Version, Body: []byte(`{}`)}
	}
	if err := pub.PublishJob(context.Background(), msg("j1", bad)); !errors.Is(err, queue.ErrJobTopology) {
		t.Fatalf("publish to the broken job queue: %v, want ErrJobTopology", err)
	}
	if err := pub.PublishJob(context.Background(), msg("j2", route)); err != nil {
		t.Fatalf("publish to another model: %v", err)
	}

	conns := vh.Connections(t)
	if _, err := ch.QueueDelete(bad.JobQueue(), false, false, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the problem to clear", 10*time.Second, func() bool { return pub.State().Problem == "" })
	if err := pub.PublishJob(context.Background(), msg("j3", bad)); err != nil {
		t.Fatalf("publish after the bad queue was deleted: %v", err)
	}
	vh.WaitQueue(t, bad.JobQueue(), func(q testbroker.QueueInfo) bool {
		return q.Arguments["x-queue-type"] == "quorum" && q.Ready == 1
	}, 10*time.Second)

	if n := pub.State(); !n.Connected || n.Problem != "" {
		t.Errorf("state %+v", n)
	}
	if now := vh.Connections(t); !slices.Equal(now, conns) {
		t.Errorf("connections %q, then %q: the publisher reconnected to heal", conns, now)
	}
}

// Model errors in many jobs at once all schedule their retries: the retry
// declarations of concurrent handlers must not share a channel's replies (two
// concurrent declares on one amqp091 channel can take each other's answer, and
// the job then failed at attempt 1 with attempts left).
func TestJobConcurrentModelErrorsAreAllRetried(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	f := newJobFarm(t)
	defer f.close()
	rec := newRecorder(0)
	rec.fail = func(m *queue.Message) error {
		if rec.count(m.RequestID) == 1 {
			return errors.New("transient")
		}
		return nil
	}
	f.worker(rec.handle, func(c *queue.JobConsumerConfig) {
		c.MaxAttempts = 3
		c.Routes[0].Concurrency = 16
		// Backoffs of 50 ms, 100 ms and 200 ms: first retries from several
		// handlers at once, each declaring its retry queue.
		c.RetryBackoff, c.RetryBackoffMax = 50*time.Millisecond, 200*time.Millisecond
	})
	const n = 64
	for i := range n {
		f.submit(fmt.Sprintf("c%02d", i))
	}
	for i := range n {
		id := fmt.Sprintf("c%02d", i)
		if u := f.waitFinal(id, 20*time.Second); u.Status != jobs.Succeeded || u.Attempt != 2 {
			t.Errorf("%s: %+v, want succeeded at attempt 2", id, u)
		}
	}
}

// A retry queue the broker will not declare as warren needs it (here one an
// operator made with another TTL: 406 PRECONDITION_FAILED) costs the job its
// backoff, never an attempt: the job is requeued and runs again at once, and the
// refused declaration does not take the results channel down with it.
func TestJobRetryQueueRefusedRequeuesTheJob(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	f := newJobFarm(t)
	defer f.close()
	conn, err := amqp.Dial(f.vh.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue.JobRetryQueue(50*time.Millisecond), true, false, false, false,
		amqp.Table{"x-message-ttl": int64(999)}); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(0)
	failAlwaysAndFlakyOnce(rec)
	jc, _ := f.worker(rec.handle, func(c *queue.JobConsumerConfig) { c.MaxAttempts = 3 })
	f.submit("flaky")
	if u := f.waitFinal("flaky", 10*time.Second); u.Status != jobs.Succeeded || u.Attempt != 2 {
		t.Errorf("flaky: %+v, want succeeded at attempt 2", u)
	}
	f.submit("always")
	if u := f.waitFinal("always", 10*time.Second); u.Status != jobs.Failed || u.Error == nil ||
		u.Error.Reason != jobs.ReasonModelError || u.Attempt != 3 {
		t.Errorf("always: %+v, want failed model_error at attempt 3", u)
	}
	f.submit("fine")
	if u := f.waitFinal("fine", 10*time.Second); u.Status != jobs.Succeeded || u.Attempt != 1 {
		t.Errorf("fine after the refused declarations: %+v", u)
	}
	// Both first attempts needed the refused 50 ms queue (requeued); always's
	// second attempt went through the 100 ms one (retried).
	if st := jc.Stats(); st.Requeued != 2 || st.Retried != 1 {
		t.Errorf("stats %+v: want 2 requeued and 1 retried", st)
	}
	if n := jc.Sessions(); n != 1 {
		t.Errorf("%d sessions: a refused retry declaration must not cost the connection", n)
	}
}

// The broker nacks the final report (the results queue refuses publishes for a
// while: here a bound with reject-publish while nobody consumes it, in a cluster
// a results queue without a leader just after a node died). A short refusal is
// bridged by publishing the report again; a long one requeues the job, which runs
// again once reports are taken. Before, the job stayed unacked on a live channel,
// where the broker never redelivers it, and was never final.
func TestJobFinalReportNackedIsPublishedAgainOrRequeued(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	f := newJobFarm(t)
	defer f.close()
	rec := newRecorder(0)
	jc, _ := f.worker(rec.handle, func(c *queue.JobConsumerConfig) { c.MaxAttempts, c.ReportPatience = 3, 3*time.Second })
	f.stops[1]() // the farm's result consumer: the results queue must fill up

	conn, err := amqp.Dial(f.vh.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	// refuse bounds the results queue at one message with reject-publish (a quorum
	// queue takes one more than its bound) and fills it: from then on the broker
	// nacks every publish to it.
	refuse := func() {
		f.vh.SetPolicy(t, "refuse-results", "^"+regexp.QuoteMeta(queue.JobResults)+"$", 100,
			map[string]any{"max-length": 1, "overflow": "reject-publish"})
		waitFor(t, "the results queue to refuse publishes", 10*time.Second, func() bool {
			body, _ := json.Marshal(jobs.Event{JobID: "probe", Type: jobs.EventRunning, Attempt: 1, At: time.Now()})
			dc, err := ch.PublishWithDeferredConfirm("", queue.JobResults, false, false,
				amqp.Publishing{ContentType: "application/json", Type: "warren.job-event.v1", Body: body})
			if err != nil {
				t.Fatal(err)
			}
			ok, _ := dc.WaitContext(context.Background())
			return !ok
		})
	}
	// take starts a result consumer again: the queue drains below its bound, which
	// unblocks the publishers. (Deleting the policy instead would not: a quorum
	// queue of 3.10 keeps refusing a channel it refused once until its length
	// drops below a bound that is still there.)
	take := func() func() {
		rc, err := queue.NewResultConsumer(queue.ResultConsumerConfig{DialConfig: queue.DialConfig{URL: f.vh.AMQPURL}},
			f.col.event, f.col.deadJob)
		if err != nil {
			t.Fatal(err)
		}
		return start(t, rc.Run)
	}

	// 1. Refused for 1 s: the same run's report gets through on a later publish.
	refuse()
	f.submit("short")
	waitFor(t, "the job to run", 10*time.Second, func() bool { return rec.count("req-short") == 1 })
	time.Sleep(time.Second)
	stop := take()
	if u := f.waitFinal("short", 10*time.Second); u.Status != jobs.Succeeded || u.Attempt != 1 {
		t.Errorf("short refusal: %+v, want succeeded at attempt 1", u)
	}
	if n := rec.count("req-short"); n != 1 {
		t.Errorf("short refusal: the job ran %d times, want 1", n)
	}
	stop()

	// 2. Refused for longer than ReportPatience (3 s): the job is requeued and runs
	// again, and ends once reports are taken.
	refuse()
	f.submit("long")
	waitFor(t, "the job to be requeued", 15*time.Second, func() bool { return jc.Stats().Requeued >= 1 })
	defer take()()
	u := f.waitFinal("long", 20*time.Second)
	if u.Status != jobs.Succeeded || u.Attempt < 2 {
		t.Errorf("long refusal: %+v, want succeeded at attempt 2 or later", u)
	}
	t.Logf("long refusal: ran %d times, final at attempt %d", rec.count("req-long"), u.Attempt)
}
