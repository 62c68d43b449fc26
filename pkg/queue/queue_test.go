package queue_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/queue"
)

// integration marks a test that needs the real broker; -short runs the unit subset.
func integration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs RabbitMQ; run without -short (make test)")
	}
}

// recorder is a handler that records how often each request id was computed.
type recorder struct {
	mu    sync.Mutex
	seen  map[string]int
	delay time.Duration
	fail  func(m *queue.Message) error
	calls atomic.Int64
}

func newRecorder(delay time.Duration) *recorder {
	return &recorder{seen: map[string]int{}, delay: delay}
}

func (r *recorder) handle(ctx context.Context, m *queue.Message) ([]byte, error) {
	r.calls.Add(1)
	r.mu.Lock()
	r.seen[m.RequestID]++
	r.mu.Unlock()
	if r.delay > 0 {
		select {
		case <-time.After(r.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if r.fail != nil {
		if err := r.fail(m); err != nil {
			return nil, err
		}
	}
	return []byte(fmt.Sprintf(`{"echo":%q,"request_id":%q}`, m.Body, m.RequestID)), nil
}

func (r *recorder) computedTwice() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var dup []string
	for id, n := range r.seen {
		if n > 1 {
			dup = append(dup, fmt.Sprintf("%s×%d", id, n))
		}
	}
	return dup
}

func (r *recorder) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[id]
}

// start runs fn in a goroutine owned by the test; the returned stop cancels it and
// waits for it to return.
func start(t *testing.T, fn func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = fn(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// route is the model version the tests serve.
var route = queue.Route{Model: "test", Version: "1"}

func newClient(t *testing.T, url string) *queue.Client {
	t.Helper()
	c, err := queue.NewClient(queue.ClientConfig{DialConfig: queue.DialConfig{URL: url, Name: "test-client " + t.Name()}})
	if err != nil {
		t.Fatal(err)
	}
	c.Watch(route)
	return c
}

// newConsumer serves route with h (2 handlers unless mutate changes Routes[0]) and
// the standard middleware.
func newConsumer(t *testing.T, url string, h queue.Handler, mutate func(*queue.ConsumerConfig)) *queue.Consumer {
	t.Helper()
	cfg := queue.ConsumerConfig{
		DialConfig: queue.DialConfig{URL: url, Name: "test-worker " + t.Name()},
		WorkerID:   "w-" + t.Name(),
		Routes:     []queue.RouteConfig{{Route: route, Handler: h, Concurrency: 2}},
		Middleware: queue.Standard(nil, nil, nil),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := queue.NewConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// slots sets the first route's concurrency and prefetch.
func slots(concurrency, prefetch int) func(*queue.ConsumerConfig) {
	return func(c *queue.ConsumerConfig) { c.Routes[0].Concurrency, c.Routes[0].Prefetch = concurrency, prefetch }
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func call(c *queue.Client, id string, timeout time.Duration) (*queue.Reply, error) {
	return c.Call(context.Background(), queue.Request{Route: route, RequestID: id, Body: []byte(id), Deadline: time.Now().Add(timeout)})
}

func TestRoundTripAndNoCrossTalk(t *testing.T) {
	integration(t)
	vh := testbroker.NewVhost(t)
	rec := newRecorder(0)
	start(t, newConsumer(t, vh.AMQPURL, rec.handle, nil).Run)
	start(t, newConsumer(t, vh.AMQPURL, rec.handle, nil).Run)
	c := newClient(t, vh.AMQPURL)
	start(t, c.Run)
	waitFor(t, "2 workers", 10*time.Second, func() bool { return c.Workers(route) == 2 })

	var wg sync.WaitGroup
	errs := make(chan error, 500)
	for i := 0; i < 500; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("req-%d", i)
			r, err := call(c, id, 10*time.Second)
			if err != nil {
				errs <- fmt.Errorf("%s: %w", id, err)
				return
			}
			want := fmt.Sprintf(`{"echo":%q,"request_id":%q}`, id, id)
			if string(r.Body) != want {
				errs <- fmt.Errorf("%s got %s", id, r.Body)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if d := rec.computedTwice(); len(d) > 0 {
		t.Errorf("computed twice: %v", d)
	}
	if s := c.Stats(); s.UnknownReplies != 0 {
		t.Errorf("unknown replies: %d", s.UnknownReplies)
	}
}

func TestNoWorkersAnswersAtOnce(t *testing.T) {
	integration(t)
	vh := testbroker.NewVhost(t)
	c := newClient(t, vh.AMQPURL)
	start(t, c.Run)
	waitFor(t, "connection", 10*time.Second, func() bool { return c.State().Connected })
	begin := time.Now()
	_, err := call(c, "x", 10*time.Second)
	if !errors.Is(err, queue.ErrNoWorkers) {
		t.Fatalf("err = %v, want ErrNoWorkers", err)
	}
	if el := time.Since(begin); el > time.Second {
		t.Fatalf("no_workers took %s", el)
	}

	// A worker that comes and goes is noticed within the refresh interval.
	stop := start(t, newConsumer(t, vh.AMQPURL, newRecorder(0).handle, nil).Run)
	waitFor(t, "worker seen", 5*time.Second, func() bool { return c.Workers(route) == 1 })
	if _, err := call(c, "y", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	stop()
	gone := time.Now()
	waitFor(t, "worker gone", 2*time.Second, func() bool { return c.Workers(route) == 0 })
	if el := time.Since(gone); el > time.Second {
		t.Errorf("last worker's exit noticed after %s", el)
	}
	if _, err := call(c, "z", 5*time.Second); !errors.Is(err, queue.ErrNoWorkers) {
		t.Fatalf("after the last worker left: %v", err)
	}
}

func TestQueueFullIsRejectedByPolicy(t *testing.T) {
	integration(t)
	vh := testbroker.NewVhost(t)
	if err := queue.ApplyPolicy(context.Background(), queue.PolicyConfig{
		ManagementURL: vh.ManagementURL, Vhost: vh.Name, MaxLength: 3,
	}); err != nil {
		t.Fatal(err)
	}
	// One worker, one handler, prefetch 1, slow: everything else waits in the queue.
	rec := newRecorder(2 * time.Second)
	start(t, newConsumer(t, vh.AMQPURL, rec.handle, slots(1, 1)).Run)
	c := newClient(t, vh.AMQPURL)
	start(t, c.Run)
	waitFor(t, "worker", 10*time.Second, func() bool { return c.Workers(route) == 1 })

	var full, other atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			begin := time.Now()
			_, err := call(c, fmt.Sprint("f", i), 1500*time.Millisecond)
			switch {
			case errors.Is(err, queue.ErrQueueFull):
				full.Add(1)
				if el := time.Since(begin); el > 500*time.Millisecond {
					t.Errorf("queue_full took %s", el)
				}
			default:
				other.Add(1)
			}
		}(i)
	}
	wg.Wait()
	// 1 in the worker's prefetch + 3 ready fit; the other 8 are nacked.
	if full.Load() != 8 {
		t.Fatalf("queue_full answers = %d (others %d), want 8", full.Load(), other.Load())
	}
	pol := vh.Policies(t)
	if len(pol) != 1 || pol[0]["name"] != queue.PolicyName {
		t.Fatalf("policies: %v", pol)
	}
	// Removing the bound deletes the policy (no 406 redeclare needed).
	if err := queue.ApplyPolicy(context.Background(), queue.PolicyConfig{
		ManagementURL: vh.ManagementURL, Vhost: vh.Name,
	}); err != nil {
		t.Fatal(err)
	}
	if pol := vh.Policies(t); len(pol) != 0 {
		t.Fatalf("policy not removed: %v", pol)
	}
}

func TestExpiredRequestInBufferIsSkipped(t *testing.T) {
	integration(t)
	vh := testbroker.NewVhost(t)
	rec := newRecorder(0)
	slowDone := make(chan struct{})
	rec.fail = func(m *queue.Message) error {
		if m.RequestID == "slow" {
			<-slowDone
		}
		return nil
	}
	// One handler, prefetch 4: the short-deadline requests are pushed to this worker's
	// buffer while the slow one occupies the handler; AMQP expiration does not apply to
	// prefetched messages, so the worker must check the deadline itself.
	cons := newConsumer(t, vh.AMQPURL, rec.handle, slots(1, 4))
	start(t, cons.Run)
	c := newClient(t, vh.AMQPURL)
	start(t, c.Run)
	waitFor(t, "worker", 10*time.Second, func() bool { return c.Workers(route) == 1 })

	slowRes := make(chan error, 1)
	go func() { _, err := call(c, "slow", 10*time.Second); slowRes <- err }()
	waitFor(t, "slow request in the handler", 5*time.Second, func() bool { return rec.count("slow") == 1 })

	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			begin := time.Now()
			_, err := call(c, fmt.Sprint("short-", i), 300*time.Millisecond)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("short-%d: err = %v, want deadline exceeded", i, err)
			}
			if el := time.Since(begin); el < 250*time.Millisecond || el > 1500*time.Millisecond {
				t.Errorf("short-%d answered after %s, want at its 300ms deadline", i, el)
			}
		}(i)
	}
	wg.Wait() // the short calls returned at their deadlines, so those have passed
	close(slowDone)
	if err := <-slowRes; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "expired requests skipped", 5*time.Second, func() bool { return cons.Stats().Expired == 3 })
	for i := 0; i < 3; i++ {
		if n := rec.count(fmt.Sprint("short-", i)); n != 0 {
			t.Errorf("short-%d was computed %d times", i, n)
		}
	}
}

func TestModelErrorPanicAndPoison(t *testing.T) {
	integration(t)
	vh := testbroker.NewVhost(t)
	rec := newRecorder(0)
	rec.fail = func(m *queue.Message) error {
		switch m.RequestID {
		case "boom":
			return errors.New("model exploded")
		case "panic":
			panic("handler bug")
		}
		return nil
	}
	cons := newConsumer(t, vh.AMQPURL, rec.handle, nil)
	start(t, cons.Run)
	c := newClient(t, vh.AMQPURL)
	start(t, c.Run)
	waitFor(t, "worker", 10*time.Second, func() bool { return c.Workers(route) == 1 })

	for _, id := range []string{"boom", "panic"} {
		_, err := call(c, id, 5*time.Second)
		var re *queue.RemoteError
		if !errors.As(err, &re) || re.Reason != queue.ReasonModelError {
			t.Fatalf("%s: err = %v, want a model_error RemoteError", id, err)
		}
	}

	// Poison: messages no client would send, published raw.
	conn, err := amqp.Dial(vh.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, _ := conn.Channel()
	replies, _ := ch.Consume("amq.rabbitmq.reply-to", "", true, false, false, false, nil)
	// Without reply_to: rejected without requeue, never redelivered.
	for i := 0; i < 3; i++ {
		if err := ch.Publish("", route.RequestQueue(), false, false, amqp.Publishing{Body: []byte("garbage")}); err != nil {
			t.Fatal(err)
		}
	}
	// With reply_to but an unknown schema: an error reply, not a requeue.
	if err := ch.Publish("", route.RequestQueue(), false, false, amqp.Publishing{
		ReplyTo: "amq.rabbitmq.reply-to", CorrelationId: "p1",
		Headers: amqp.Table{queue.HeaderSchema: int32(99)}, Body: []byte("{}"),
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-replies:
		if d.CorrelationId != "p1" || d.Headers[queue.HeaderReason] != queue.ReasonBadMessage ||
			!strings.Contains(string(d.Body), "unsupported message schema 99") {
			t.Fatalf("poison reply: %v %s", d.Headers, d.Body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no error reply for the bad-schema message")
	}
	waitFor(t, "poison rejected", 5*time.Second, func() bool { return cons.Stats().Rejected == 3 })
	waitFor(t, "queue empty", 5*time.Second, func() bool {
		q, ok := vh.Queue(t, route.RequestQueue())
		return ok && q.Ready == 0 && q.Unacked == 0
	})
	// Still healthy afterwards, and nothing looped.
	if _, err := call(c, "after", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if st := cons.Stats(); st.Received != 3+3+1 || st.Redelivered != 0 {
		t.Fatalf("stats %+v: want 7 received, none redelivered", st)
	}
}

func TestForcedDisconnectRecoversWithoutDoubleCompute(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	vh := testbroker.NewVhost(t)
	log := testbroker.WatchLog(t)
	// Slow enough that nothing finishes before the close lands (rabbitmqctl takes
	// about a second to start).
	rec := newRecorder(3 * time.Second)
	cons := newConsumer(t, vh.AMQPURL, rec.handle, slots(2, 4))
	stopCons := start(t, cons.Run)
	c := newClient(t, vh.AMQPURL)
	stopClient := start(t, c.Run)
	waitFor(t, "worker", 10*time.Second, func() bool { return c.Workers(route) == 1 })
	// The management API lists connections with a delay; wait for them first so the
	// close below happens while the calls are outstanding.
	vh.WaitConnections(t, 2, 15*time.Second)

	// 6 calls: 2 computing, 2 prefetched in the worker, 2 ready in the queue.
	type res struct {
		err error
		el  time.Duration
	}
	results := make(chan res, 6)
	for i := 0; i < 6; i++ {
		go func(i int) {
			begin := time.Now()
			_, err := call(c, fmt.Sprint("d", i), 10*time.Second)
			results <- res{err, time.Since(begin)}
		}(i)
	}
	// Two handlers busy means two unacked deliveries (plus prefetched ones) at the
	// worker. (The management API's unacked count lags by its stats interval.)
	waitFor(t, "unacked deliveries at the worker", 5*time.Second, func() bool { return cons.InFlight() == 2 })
	if n := vh.CloseConnections(t); n < 2 {
		t.Fatalf("closed %d connections, want 2", n)
	}
	for i := 0; i < 6; i++ {
		r := <-results
		if !errors.Is(r.err, queue.ErrBrokerUnavailable) {
			t.Errorf("call during the drop: %v, want broker unavailable", r.err)
		}
		if r.el > 3*time.Second {
			t.Errorf("call failed after %s, want fast", r.el)
		}
	}
	waitFor(t, "both reconnected", 15*time.Second, func() bool {
		return c.State().Connected && c.Workers(route) == 1 && cons.Connected() && c.Stats().Sessions == 2 && cons.Sessions() == 2
	})
	if _, err := call(c, "after-drop", 10*time.Second); err != nil {
		t.Fatalf("first call after recovery: %v", err)
	}
	// The redelivered requests belonged to callers that are gone; none may be
	// computed again.
	waitFor(t, "queue drained", 10*time.Second, func() bool {
		q, _ := vh.Queue(t, route.RequestQueue())
		return q.Ready == 0 && q.Unacked == 0
	})
	if d := rec.computedTwice(); len(d) > 0 {
		t.Errorf("computed twice: %v (stats %+v)", d, cons.Stats())
	}
	// Redelivered requests were either skipped because their caller's reply queue is
	// gone, or answered again from the reply cache; neither computes.
	if st := cons.Stats(); st.Redelivered == 0 || st.Orphaned+st.Replayed != st.Redelivered {
		t.Errorf("redeliveries not all skipped or replayed: %+v", st)
	}
	stopClient()
	stopCons()
	// connection_forced errors are the injected fault; a 406 (e.g. an ack with a stale
	// delivery tag) would be a bug.
	for _, e := range log.ErrorsFor(vh.Name) {
		if strings.Contains(e, "PRECONDITION_FAILED") || strings.Contains(e, "unknown delivery tag") {
			t.Errorf("broker logged a channel error for the vhost: %s", e)
		}
	}
}

func TestWorkerDrainAnswersInFlightAndRequeuesBuffered(t *testing.T) {
	integration(t)
	vh := testbroker.NewVhost(t)
	rec := newRecorder(500 * time.Millisecond)
	first := newConsumer(t, vh.AMQPURL, rec.handle, slots(2, 6))
	stopFirst := start(t, first.Run)
	c := newClient(t, vh.AMQPURL)
	start(t, c.Run)
	waitFor(t, "worker", 10*time.Second, func() bool { return c.Workers(route) == 1 })

	errs := make(chan error, 6)
	for i := 0; i < 6; i++ {
		go func(i int) { _, err := call(c, fmt.Sprint("s", i), 15*time.Second); errs <- err }(i)
	}
	waitFor(t, "2 in flight", 5*time.Second, func() bool { return first.InFlight() == 2 })
	// A second worker takes over what the first gives back.
	start(t, newConsumer(t, vh.AMQPURL, rec.handle, nil).Run)
	stopFirst() // SIGTERM equivalent: returns after the drain
	if st := first.Stats(); st.OK != 2 || st.Requeued != 4 {
		t.Errorf("first worker: %+v, want 2 answered and 4 requeued", st)
	}
	for i := 0; i < 6; i++ {
		if err := <-errs; err != nil {
			t.Errorf("call: %v", err)
		}
	}
	if d := rec.computedTwice(); len(d) > 0 {
		t.Errorf("computed twice: %v", d)
	}
}

func TestDeletedReplyQueueStartsANewGeneration(t *testing.T) {
	integration(t)
	vh := testbroker.NewVhost(t)
	start(t, newConsumer(t, vh.AMQPURL, newRecorder(0).handle, nil).Run)
	c := newClient(t, vh.AMQPURL)
	start(t, c.Run)
	waitFor(t, "worker", 10*time.Second, func() bool { return c.Workers(route) == 1 })
	if _, err := call(c, "before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// An operator deletes the exclusive reply queue in the management UI.
	var reply string
	waitFor(t, "reply queue listed", 15*time.Second, func() bool {
		for _, q := range vh.Queues(t) {
			if strings.HasPrefix(q, "amq.gen-") {
				reply = q
				return true
			}
		}
		return false
	})
	vh.DeleteQueue(t, reply)
	waitFor(t, "a new generation", 10*time.Second, func() bool { return c.Stats().Sessions == 2 && c.Workers(route) == 1 })
	if _, err := call(c, "after", 5*time.Second); err != nil {
		t.Fatalf("after the reply queue was deleted: %v", err)
	}
}

func TestBrokerRestart(t *testing.T) {
	integration(t)
	node := testbroker.StartNode(t)
	rec := newRecorder(0)
	cons := newConsumer(t, node.AMQPURL, rec.handle, nil)
	start(t, cons.Run)
	c := newClient(t, node.AMQPURL)
	start(t, c.Run)
	waitFor(t, "worker", 10*time.Second, func() bool { return c.Workers(route) == 1 })
	if _, err := call(c, "before", 5*time.Second); err != nil {
		t.Fatal(err)
	}

	node.Stop(t)
	waitFor(t, "client down", 10*time.Second, func() bool { return !c.State().Connected })
	begin := time.Now()
	_, err := call(c, "during", 5*time.Second)
	if !errors.Is(err, queue.ErrBrokerUnavailable) || time.Since(begin) > time.Second {
		t.Fatalf("while the broker is down: %v after %s", err, time.Since(begin))
	}

	node.Start(t)
	back := time.Now()
	for {
		if _, err := call(c, "after", 2*time.Second); err == nil {
			break
		}
		if time.Since(back) > 5*time.Second {
			t.Fatalf("no answer within 5s of the broker being back (state %+v)", c.State())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("first answer %s after the broker was back", time.Since(back).Round(time.Millisecond))

	// A memory alarm blocks publishers: calls fail at once instead of stalling, and
	// work again once the alarm clears.
	node.Ctl(t, "set_vm_memory_high_watermark", "0.0000001")
	// RabbitMQ blocks a connection (and says so) when it next publishes; that first
	// request cannot be helped and runs into its deadline.
	_, err = call(c, "first-blocked", 500*time.Millisecond)
	t.Logf("the publish that met the alarm: %v", err)
	waitFor(t, "connection.blocked", 10*time.Second, func() bool { return c.State().Blocked })
	begin = time.Now()
	_, err = call(c, "blocked", 5*time.Second)
	if !errors.Is(err, queue.ErrBrokerUnavailable) || time.Since(begin) > 100*time.Millisecond {
		t.Fatalf("while blocked: %v after %s", err, time.Since(begin))
	}
	node.Ctl(t, "set_vm_memory_high_watermark", "0.4")
	waitFor(t, "connection.unblocked", 10*time.Second, func() bool { return !c.State().Blocked })
	if _, err := call(c, "unblocked", 5*time.Second); err != nil {
		t.Fatalf("after the alarm cleared: %v", err)
	}
}

// A disabled route is not consumed until Enable, which subscribes it in the
// running session; the consumer's other routes are served meanwhile.
func TestEnableSubscribesARouteInTheRunningSession(t *testing.T) {
	integration(t)
	vh := testbroker.NewVhost(t)
	late := queue.Route{Model: "late", Version: "1"}
	rec := newRecorder(0)
	cons := newConsumer(t, vh.AMQPURL, rec.handle, func(c *queue.ConsumerConfig) {
		c.Routes = append(c.Routes, queue.RouteConfig{Route: late, Handler: rec.handle, Concurrency: 1, Disabled: true})
	})
	start(t, cons.Run)
	c := newClient(t, vh.AMQPURL)
	c.Watch(late)
	start(t, c.Run)
	waitFor(t, "the enabled route consumed", 10*time.Second, func() bool { return c.Workers(route) == 1 })
	if _, err := call(c, "now", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := c.Workers(late); n != 0 {
		t.Fatalf("the disabled route has %d consumers", n)
	}
	if _, err := c.Call(context.Background(), queue.Request{Route: late, RequestID: "early", Body: []byte("x"), Deadline: time.Now().Add(time.Second)}); !errors.Is(err, queue.ErrNoWorkers) {
		t.Fatalf("a call to the disabled route: %v", err)
	}
	if !cons.Enable(late) || cons.Enable(queue.Route{Model: "other", Version: "1"}) {
		t.Fatal("Enable reported the wrong routes")
	}
	waitFor(t, "the late route consumed", 10*time.Second, func() bool { return c.Workers(late) == 1 })
	if _, err := c.Call(context.Background(), queue.Request{Route: late, RequestID: "late", Body: []byte("x"), Deadline: time.Now().Add(5 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	if cons.Sessions() != 1 {
		t.Fatalf("enabling a route took %d sessions", cons.Sessions())
	}
}
