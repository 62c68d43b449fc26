package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warren-farm/warren/pkg/jobs"
)

// ResultConsumerConfig configures a [ResultConsumer].
type ResultConsumerConfig struct {
	DialConfig
	// Handlers is how many events are applied at once per queue (so an embedded
	// store can batch its writes), and the prefetch; zero means 32.
	Handlers int
	// RetryDelay is the pause before an event whose handler failed (the store is
	// down) is handed back to the broker; zero means 1s.
	RetryDelay time.Duration
	// DrainTimeout bounds how long events being applied may take after Run's context
	// is cancelled; zero means DefaultDrainTimeout.
	DrainTimeout time.Duration
}

// ResultConsumerStats are monotonically increasing counters.
type ResultConsumerStats struct {
	Sessions  uint64
	Events    uint64 // events applied (handler returned nil)
	Dead      uint64 // dead-lettered jobs handled
	Malformed uint64 // undecodable events, dropped
	Retried   uint64 // handler errors: handed back to the broker
}

// ResultConsumer consumes the results queue and the dead-letter queue on behalf of
// the API and hands each message to its handler, acking only after the handler
// succeeded. Several API replicas may consume the same queues: handlers must be
// idempotent (the store applies events so that the first final state wins). It
// runs the same consuming loop as the workers' consumers: a subscription that ends
// (its queue deleted, its channel closed) ends the session, and a new one starts.
type ResultConsumer struct {
	cfg    ResultConsumerConfig
	event  func(context.Context, jobs.Event) error
	dead   func(context.Context, jobs.DeadLetter) error
	events *routeSlots
	deads  *routeSlots
	pool
}

// NewResultConsumer validates cfg.
func NewResultConsumer(cfg ResultConsumerConfig, event func(context.Context, jobs.Event) error,
	dead func(context.Context, jobs.DeadLetter) error) (*ResultConsumer, error) {
	cfg.DialConfig.setDefaults("api-results")
	if cfg.Handlers == 0 {
		cfg.Handlers = 32
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = time.Second
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	r := &ResultConsumer{cfg: cfg, event: event, dead: dead,
		events: &routeSlots{queue: JobResults, concurrency: cfg.Handlers},
		deads:  &routeSlots{queue: JobDead, concurrency: max(cfg.Handlers/8, 1)}}
	errs := []error{cfg.DialConfig.validate()}
	if cfg.Handlers < 0 || cfg.RetryDelay < 0 || cfg.DrainTimeout < 0 {
		errs = append(errs, errors.New("queue: Handlers, RetryDelay and DrainTimeout must not be negative"))
	}
	if event == nil || dead == nil {
		errs = append(errs, errors.New("queue: nil result handler"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	r.events.enabled.Store(true)
	r.deads.enabled.Store(true)
	r.pool = newPool([]*routeSlots{r.events, r.deads})
	return r, nil
}

// Stats returns the counters.
func (r *ResultConsumer) Stats() ResultConsumerStats {
	return ResultConsumerStats{Sessions: r.sessions.Load(), Events: r.events.ok.Load(), Dead: r.deads.ok.Load(),
		Malformed: r.events.rejected.Load(), Retried: r.events.retried.Load() + r.deads.retried.Load()}
}

// Run consumes until ctx is cancelled, reconnecting as needed, then lets the events
// being applied finish (within DrainTimeout). Unacked events go back to the queue
// for another replica.
func (r *ResultConsumer) Run(ctx context.Context) error {
	r.pool.run(ctx, &r.cfg.DialConfig, r.cfg.DrainTimeout, r.handle, r.session)
	return nil
}

func (r *ResultConsumer) session(ctx context.Context, conn *amqp.Connection, gen uint64) error {
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	sub := subscriberOf(conn,
		func(rs *routeSlots) string { return fmt.Sprintf("%s %s g%d", r.cfg.Name, rs.queue, gen) },
		func(_ *routeSlots, ch *amqp.Channel) error { return declareJobShared(ch) },
		plainSession(conn))
	return r.pool.pumpAll(ctx, conn, closed, sub)
}

func (r *ResultConsumer) handle(ctx context.Context, w work) {
	d, rs := &w.d, w.rs
	rs.received.Add(1)
	if rs == r.deads {
		dl := jobs.DeadLetter{JobID: headerString(d.Headers, HeaderJobID), Reason: headerString(d.Headers, firstDeathHead)}
		r.apply(ctx, w, dl.JobID, func() error { return r.dead(ctx, dl) })
		return
	}
	var ev jobs.Event
	if err := json.Unmarshal(d.Body, &ev); err != nil || ev.JobID == "" ||
		(ev.Type != jobs.EventRunning && ev.Type != jobs.EventFinal) {
		rs.rejected.Add(1)
		r.cfg.Logger.Warn("dropped a malformed job event", "err", err, "message_id", d.MessageId)
		_ = d.Ack(false)
		return
	}
	r.apply(ctx, w, ev.JobID, func() error { return r.event(ctx, ev) })
}

// apply runs fn and acks, or requeues the message after RetryDelay when fn failed
// (the store is down), so an outage does not become a hot loop.
func (r *ResultConsumer) apply(ctx context.Context, w work, id string, fn func() error) {
	if err := fn(); err != nil {
		w.rs.retried.Add(1)
		r.cfg.Logger.Warn("job event not applied; requeueing", "err", err, "job_id", id, "queue", w.rs.queue)
		t := time.NewTimer(r.cfg.RetryDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		_ = w.d.Nack(false, true)
		return
	}
	w.rs.ok.Add(1)
	_ = w.d.Ack(false)
}
