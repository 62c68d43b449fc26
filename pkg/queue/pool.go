package queue

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// work is a delivery handed from a session's pump to a handler goroutine.
type work struct {
	d    amqp.Delivery
	sess *consumerSession
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
}

// pool is the consuming machinery the sync [Consumer] and the [JobConsumer] share:
// a fixed set of handler goroutines fed through an unbuffered channel by whichever
// session is current, and the drain on shutdown.
type pool struct {
	inflight  atomic.Int64
	draining  atomic.Bool
	connected atomic.Bool
	requeued  atomic.Uint64
}

// Connected reports whether the consumer currently has a live subscription.
func (p *pool) Connected() bool { return p.connected.Load() }

// Draining reports whether Run's context was cancelled and the consumer is draining.
func (p *pool) Draining() bool { return p.draining.Load() }

// InFlight returns the number of deliveries being handled.
func (p *pool) InFlight() int { return int(p.inflight.Load()) }

// run starts concurrency handlers, runs sessions (reconnecting) until ctx ends, then
// drains: handlers finish what they hold within drainTimeout, after which their
// context is cancelled. Handlers outlive sessions: a delivery being handled when its
// connection drops finishes (its reply and ack then fail harmlessly on the dead
// channel, the broker requeues it) while the next session already consumes. The
// unbuffered channel caps concurrency across sessions.
func (p *pool) run(ctx context.Context, dial *DialConfig, concurrency int, drainTimeout time.Duration,
	handle func(context.Context, work),
	session func(ctx context.Context, conn *amqp.Connection, gen uint64, jobs chan<- work) error) {
	hctx, hcancel := context.WithCancel(context.Background())
	defer hcancel()
	jobs := make(chan work)
	var handlers sync.WaitGroup
	for i := 0; i < concurrency; i++ {
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			for w := range jobs {
				p.inflight.Add(1)
				handle(hctx, w)
				p.inflight.Add(-1)
			}
		}()
	}

	// Sessions run until ctx ends; the last one then drains its subscription.
	var lastConn atomic.Pointer[amqp.Connection]
	runSessions(ctx, dial, func(sctx context.Context, conn *amqp.Connection, gen uint64) error {
		lastConn.Store(conn)
		return session(sctx, conn, gen, jobs)
	})
	p.draining.Store(true)
	close(jobs)

	done := make(chan struct{})
	go func() { handlers.Wait(); close(done) }()
	t := time.NewTimer(drainTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		dial.Logger.Warn("drain timeout: cancelling in-flight work", "in_flight", p.inflight.Load())
		hcancel()
		// A handler that ignores its context must not keep the process alive forever.
		grace := time.NewTimer(2 * time.Second)
		defer grace.Stop()
		select {
		case <-done:
		case <-grace.C:
			dial.Logger.Error("handlers ignored cancellation; exiting with work in flight", "in_flight", p.inflight.Load())
		}
	}
	if conn := lastConn.Load(); conn != nil {
		_ = conn.Close()
	}
	p.connected.Store(false)
}

// pump hands deliveries to the handlers until the connection closes or ctx ends. On
// ctx cancellation it cancels the subscription and requeues what it has not handed
// out, but leaves the connection open for in-flight replies and acks; run closes it
// after the drain.
func (p *pool) pump(ctx context.Context, closed <-chan *amqp.Error, ch *amqp.Channel, tag string,
	deliveries <-chan amqp.Delivery, s *consumerSession, jobs chan<- work) error {
	p.connected.Store(true)
	defer p.connected.Store(false)
	for {
		select {
		case <-ctx.Done():
			return p.drainSession(ch, tag, deliveries, nil)
		case e := <-closed:
			return closeErr(e)
		case d, ok := <-deliveries:
			if !ok {
				// Channel closed under us (e.g. consumer cancelled by the broker because
				// the queue was deleted); start a new session.
				_ = s.conn.Close()
				return errors.New("delivery channel closed")
			}
			select {
			case jobs <- work{d: d, sess: s}:
			case <-ctx.Done():
				return p.drainSession(ch, tag, deliveries, &d)
			case e := <-closed:
				return closeErr(e)
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

// drainSession cancels the subscription, then requeues held (a delivery the pump
// had in hand) and every delivery still buffered: the broker keeps prefetched
// deliveries of a cancelled consumer until they are nacked or the channel closes.
// Cancelling first matters: a delivery nacked while the consumer is still subscribed
// may come straight back to it.
func (p *pool) drainSession(ch *amqp.Channel, tag string, deliveries <-chan amqp.Delivery, held *amqp.Delivery) error {
	p.draining.Store(true)
	if err := ch.Cancel(tag, false); err != nil {
		return nil // channel already gone: the broker requeues everything
	}
	if held != nil {
		p.requeue(*held)
	}
	for d := range deliveries { // closed once the cancel is confirmed
		p.requeue(d)
	}
	return nil
}

func (p *pool) requeue(d amqp.Delivery) {
	if err := d.Nack(false, true); err == nil {
		p.requeued.Add(1)
	}
}
