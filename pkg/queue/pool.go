package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// work is a delivery handed from a session's pump to a handler goroutine.
type work struct {
	d    amqp.Delivery
	sess *consumerSession
	rs   *routeSlots
}

// consumerSession is what a handler needs of the session a delivery came from: acks
// and replies go to the delivery's own channel, so a delivery from an older
// generation can never ack a newer session's message.
type consumerSession struct {
	conn *amqp.Connection
	ch   *amqp.Channel // the channel the delivery came from
	pub  *amqp.Channel // confirm-mode channel for results (job path only)
	// lost is done once the session's connection is gone (never on a drain): its
	// deliveries can no longer be acked and are being redelivered (job path only).
	lost context.Context
	// retries declares the retry queues (job path only).
	retries *retryQueues
}

// routeSlots is one consumed queue of a pool: its handler goroutines, the channel
// that feeds them, and its counters.
type routeSlots struct {
	route       Route
	queue       string
	concurrency int
	prefetch    int
	handler     Handler
	jobs        chan work
	inflight    atomic.Int64
	// enabled routes are subscribed (see RouteConfig.Disabled and Consumer.Enable).
	enabled atomic.Bool
	counters
}

// counters are a route's monotonically increasing counters (see ConsumerStats and
// JobConsumerStats for their meaning).
type counters struct {
	received, redelivered, ok, failed, expired, timedOut, orphaned, replayed, rejected,
	requeued, replyFailed, retried, cancelled atomic.Uint64
}

// pool is the consuming machinery the sync [Consumer] and the [JobConsumer] share:
// per route, a fixed set of handler goroutines fed through an unbuffered channel by
// whichever session is current, and the drain on shutdown.
type pool struct {
	routes    []*routeSlots
	draining  atomic.Bool
	connected atomic.Bool
	sessions  atomic.Uint64
	changed   chan struct{} // a route was enabled: the session subscribes it
}

func newPool(routes []*routeSlots) pool {
	for _, rs := range routes {
		rs.jobs = make(chan work)
		if rs.prefetch == 0 {
			rs.prefetch = rs.concurrency
		}
	}
	return pool{routes: routes, changed: make(chan struct{}, 1)}
}

// enable lets the current session (and every later one) consume queue q's route.
// It reports whether the pool has such a route.
func (p *pool) enable(q string) bool {
	rs := p.route(q)
	if rs == nil {
		return false
	}
	if !rs.enabled.Swap(true) {
		select {
		case p.changed <- struct{}{}:
		default:
		}
	}
	return true
}

// Connected reports whether the consumer currently has a live subscription on every
// route.
func (p *pool) Connected() bool { return p.connected.Load() }

// Draining reports whether Run's context was cancelled and the consumer is draining.
func (p *pool) Draining() bool { return p.draining.Load() }

// InFlight returns the number of deliveries being handled, over all routes.
func (p *pool) InFlight() int {
	n := int64(0)
	for _, rs := range p.routes {
		n += rs.inflight.Load()
	}
	return int(n)
}

// route returns the slots of queue q, or nil.
func (p *pool) route(q string) *routeSlots {
	for _, rs := range p.routes {
		if rs.queue == q {
			return rs
		}
	}
	return nil
}

// run starts each route's handlers, runs sessions (reconnecting) until ctx ends,
// then drains: handlers finish what they hold within drainTimeout, after which their
// context is cancelled. Handlers outlive sessions: a delivery being handled when its
// connection drops finishes (its reply and ack then fail harmlessly on the dead
// channel, the broker requeues it) while the next session already consumes. The
// unbuffered channels cap concurrency across sessions.
func (p *pool) run(ctx context.Context, dial *DialConfig, drainTimeout time.Duration,
	handle func(context.Context, work), session func(ctx context.Context, conn *amqp.Connection, gen uint64) error) {
	hctx, hcancel := context.WithCancel(context.Background())
	defer hcancel()
	var handlers sync.WaitGroup
	for _, rs := range p.routes {
		for range rs.concurrency {
			handlers.Add(1)
			go func() {
				defer handlers.Done()
				for w := range rs.jobs {
					rs.inflight.Add(1)
					handle(hctx, w)
					rs.inflight.Add(-1)
				}
			}()
		}
	}

	// Sessions run until ctx ends; the last one then drains its subscriptions.
	var lastConn atomic.Pointer[amqp.Connection]
	runSessions(ctx, dial, func(sctx context.Context, conn *amqp.Connection, gen uint64) error {
		lastConn.Store(conn)
		return session(sctx, conn, gen)
	})
	p.draining.Store(true)
	for _, rs := range p.routes {
		close(rs.jobs)
	}

	done := make(chan struct{})
	go func() { handlers.Wait(); close(done) }()
	t := time.NewTimer(drainTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		dial.Logger.Warn("drain timeout: cancelling in-flight work", "in_flight", p.InFlight())
		hcancel()
		// A handler that ignores its context must not keep the process alive forever.
		grace := time.NewTimer(2 * time.Second)
		defer grace.Stop()
		select {
		case <-done:
		case <-grace.C:
			dial.Logger.Error("handlers ignored cancellation; exiting with work in flight", "in_flight", p.InFlight())
		}
	}
	if conn := lastConn.Load(); conn != nil {
		_ = conn.Close()
	}
	p.connected.Store(false)
}

// subscription is one route's consumer on a session's channel.
type subscription struct {
	rs         *routeSlots
	ch         *amqp.Channel
	tag        string
	deliveries <-chan amqp.Delivery
	sess       *consumerSession
}

// subscribe opens a channel for rs on conn with the route's prefetch, runs declare
// on it (the queue's topology) and starts consuming rs.queue.
func subscribe(conn *amqp.Connection, rs *routeSlots, tag string, declare func(*amqp.Channel) error) (*subscription, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Qos(rs.prefetch, 0, false); err != nil {
		return nil, fmt.Errorf("qos: %w", err)
	}
	if err := declare(ch); err != nil {
		return nil, err
	}
	deliveries, err := ch.Consume(rs.queue, tag, false, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("consume %q: %w", rs.queue, err)
	}
	return &subscription{rs: rs, ch: ch, tag: tag, deliveries: deliveries}, nil
}

// subscriber subscribes one route on a session's connection.
type subscriber func(rs *routeSlots) (*subscription, error)

// subscriberOf builds the subscriber of a session: tag names each consumer,
// declare is the route's topology, and session gives each subscription the session
// its handlers reply and ack through.
func subscriberOf(conn *amqp.Connection, tag func(*routeSlots) string, declare func(*routeSlots, *amqp.Channel) error,
	session func(*subscription) *consumerSession) subscriber {
	return func(rs *routeSlots) (*subscription, error) {
		s, err := subscribe(conn, rs, tag(rs), func(ch *amqp.Channel) error { return declare(rs, ch) })
		if err != nil {
			return nil, err
		}
		s.sess = session(s)
		return s, nil
	}
}

// plainSession is the session of a subscription that replies and acks on its own
// channel.
func plainSession(conn *amqp.Connection) func(*subscription) *consumerSession {
	return func(s *subscription) *consumerSession { return &consumerSession{conn: conn, ch: s.ch} }
}

// pumpAll subscribes every enabled route, and every route enabled while the session
// runs, and runs one pump per subscription until the connection closes, a
// subscription ends, or ctx ends (then each drains its subscription). It returns
// the first error. On ctx cancellation the connection stays open for in-flight
// replies and acks; run closes it after the drain.
func (p *pool) pumpAll(ctx context.Context, conn *amqp.Connection, closed <-chan *amqp.Error, sub subscriber) error {
	connClosed := closed // this loop's view of it, set to nil once seen closed; the pumps keep closed
	subscribed := map[*routeSlots]bool{}
	errs := make(chan error, len(p.routes))
	running := 0
	var first error
	fail := func(err error) {
		if first == nil {
			first = err
			// One route's subscription ended: end the session, so every route
			// resubscribes on a new connection.
			_ = conn.Close()
		}
	}
	subscribeEnabled := func() {
		for _, rs := range p.routes {
			if subscribed[rs] || !rs.enabled.Load() {
				continue
			}
			s, err := sub(rs)
			if err != nil {
				fail(err)
				return
			}
			subscribed[rs] = true
			running++
			go func() { errs <- p.pump(ctx, conn, closed, s) }()
		}
	}
	subscribeEnabled()
	if first != nil {
		return first
	}
	p.sessions.Add(1)
	p.connected.Store(true)
	defer p.connected.Store(false)
	done := ctx.Done()
	for running > 0 || (first == nil && done != nil) {
		changed := p.changed
		if first != nil || done == nil {
			changed = nil // stopping: subscribe nothing more
		}
		select {
		case err := <-errs:
			running--
			if err != nil {
				fail(err)
			}
		case <-changed:
			subscribeEnabled()
		case e, ok := <-connClosed:
			if !ok {
				connClosed = nil
			}
			fail(closeErr(e)) // the pumps see it too and return
		case <-done:
			done = nil // the pumps drain their subscriptions and return
		}
	}
	return first
}

// pump hands one subscription's deliveries to its route's handlers.
func (p *pool) pump(ctx context.Context, conn *amqp.Connection, closed <-chan *amqp.Error, s *subscription) error {
	jobs := s.rs.jobs
	for {
		select {
		case <-ctx.Done():
			return p.drainSubscription(s, nil)
		case e := <-closed:
			return closeErr(e)
		case d, ok := <-s.deliveries:
			if !ok {
				// Channel closed under us (e.g. consumer cancelled by the broker because
				// the queue was deleted: RetypeRequestQueue does that); start a new
				// session. The route's running handlers answer first, on this
				// connection, or their callers would wait out their deadlines.
				settle(ctx, closed, s, cancelSettle)
				return fmt.Errorf("delivery channel of %q closed", s.rs.queue)
			}
			select {
			case jobs <- work{d: d, sess: s.sess, rs: s.rs}:
			case <-ctx.Done():
				return p.drainSubscription(s, &d)
			case e := <-closed:
				return closeErr(e)
			}
		}
	}
}

// cancelSettle bounds how long a cancelled subscription waits for its route's
// running handlers before its session ends.
const cancelSettle = 10 * time.Second

// settle waits until s's route has no handler running, for at most timeout, or
// until ctx ends, the connection closes or s's channel closes (the broker closes
// it when a delivery outlives its consumer_timeout: nothing can be acked on it).
func settle(ctx context.Context, closed <-chan *amqp.Error, s *subscription, timeout time.Duration) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-closed:
			return
		case <-deadline.C:
			return
		case <-tick.C: // the first tick also lets a handler that just took a delivery count it
			if s.rs.inflight.Load() == 0 || s.ch.IsClosed() {
				return
			}
		}
	}
}

func closeErr(e *amqp.Error) error {
	if e == nil {
		return errors.New("connection closed")
	}
	return e
}

// drainSubscription cancels the subscription, then requeues held (a delivery the
// pump had in hand) and every delivery still buffered: the broker keeps prefetched
// deliveries of a cancelled consumer until they are nacked or the channel closes.
// Cancelling first matters: a delivery nacked while the consumer is still subscribed
// may come straight back to it.
func (p *pool) drainSubscription(s *subscription, held *amqp.Delivery) error {
	p.draining.Store(true)
	if err := s.ch.Cancel(s.tag, false); err != nil {
		return nil // channel already gone: the broker requeues everything
	}
	if held != nil {
		s.rs.requeue(*held)
	}
	for d := range s.deliveries { // closed once the cancel is confirmed
		s.rs.requeue(d)
	}
	return nil
}

func (rs *routeSlots) requeue(d amqp.Delivery) {
	if err := d.Nack(false, true); err == nil {
		rs.requeued.Add(1)
	}
}

// checkRoutes validates the routes of a consumer: each a valid model version
// (unless the consumer serves no model, as the result consumer), unique, with a
// handler and sane sizes.
func checkRoutes(routes []*routeSlots, models bool) error {
	var errs []error
	if len(routes) == 0 {
		errs = append(errs, errors.New("queue: no routes to consume"))
	}
	seen := map[string]bool{}
	for _, rs := range routes {
		if models {
			if err := rs.route.Check(); err != nil {
				errs = append(errs, fmt.Errorf("queue: %w", err))
			}
		}
		if seen[rs.queue] {
			errs = append(errs, fmt.Errorf("queue: queue %q given twice", rs.queue))
		}
		seen[rs.queue] = true
		if models && rs.handler == nil {
			errs = append(errs, fmt.Errorf("queue: %s: nil Handler", rs.queue))
		}
		if rs.concurrency < 1 || rs.prefetch < 0 {
			errs = append(errs, fmt.Errorf("queue: %s: need Concurrency >= 1 and Prefetch >= 0", rs.queue))
		}
	}
	return errors.Join(errs...)
}
