package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ResultConsumerConfig configures a [ResultConsumer].
type ResultConsumerConfig struct {
	DialConfig
	// Names of the job path's queues; the zero value uses DefaultJobQueue.
	Names JobNames
	// Handlers is how many updates are applied at once (so an embedded store can
	// batch its writes), and the prefetch; zero means 32.
	Handlers int
	// RetryDelay is the pause before an update whose handler failed (the store is
	// down) is handed back to the broker; zero means 1s.
	RetryDelay time.Duration
}

// ResultConsumerStats are monotonically increasing counters.
type ResultConsumerStats struct {
	Sessions  uint64
	Updates   uint64 // updates applied (handler returned nil)
	Dead      uint64 // dead-lettered jobs handled
	Malformed uint64 // undecodable updates, dropped
	Retried   uint64 // handler errors: handed back to the broker
}

// ResultConsumer consumes the results queue and the dead-letter queue on behalf of
// the API and hands each message to its handler, acking only after the handler
// succeeded. Several API replicas may consume the same queues: handlers must be
// idempotent (the store applies updates so that the first final state wins).
type ResultConsumer struct {
	cfg    ResultConsumerConfig
	update func(context.Context, JobUpdate) error
	dead   func(context.Context, DeadJob) error

	connected                                    atomic.Bool
	sessions, updates, deadN, malformed, retried atomic.Uint64
}

// NewResultConsumer validates cfg.
func NewResultConsumer(cfg ResultConsumerConfig, update func(context.Context, JobUpdate) error,
	dead func(context.Context, DeadJob) error) (*ResultConsumer, error) {
	cfg.DialConfig.setDefaults("api-results")
	if cfg.Handlers == 0 {
		cfg.Handlers = 32
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = time.Second
	}
	errs := []error{cfg.DialConfig.validate()}
	if cfg.Handlers < 0 || cfg.RetryDelay < 0 {
		errs = append(errs, errors.New("queue: Handlers and RetryDelay must not be negative"))
	}
	if update == nil || dead == nil {
		errs = append(errs, errors.New("queue: nil result handler"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &ResultConsumer{cfg: cfg, update: update, dead: dead}, nil
}

// Connected reports whether the consumer has a live subscription.
func (r *ResultConsumer) Connected() bool { return r.connected.Load() }

// Stats returns the counters.
func (r *ResultConsumer) Stats() ResultConsumerStats {
	return ResultConsumerStats{Sessions: r.sessions.Load(), Updates: r.updates.Load(), Dead: r.deadN.Load(),
		Malformed: r.malformed.Load(), Retried: r.retried.Load()}
}

// Run consumes until ctx is cancelled, reconnecting as needed. Messages being
// handled when it stops are finished (or, if the connection is gone, redelivered to
// another consumer).
func (r *ResultConsumer) Run(ctx context.Context) error {
	runSessions(ctx, &r.cfg.DialConfig, r.session)
	return nil
}

func (r *ResultConsumer) session(ctx context.Context, conn *amqp.Connection, gen uint64) error {
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	if err := declareJobTopology(ch, r.cfg.Names); err != nil {
		return err
	}
	if err := ch.Qos(r.cfg.Handlers, 0, false); err != nil {
		return fmt.Errorf("qos: %w", err)
	}
	updates, err := ch.Consume(r.cfg.Names.Results(), "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %q: %w", r.cfg.Names.Results(), err)
	}
	dead, err := ch.Consume(r.cfg.Names.Dead(), "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %q: %w", r.cfg.Names.Dead(), err)
	}
	r.sessions.Add(1)
	r.connected.Store(true)
	defer r.connected.Store(false)

	// Handlers stop with the session: ctx for a clean stop (they finish the message
	// in hand), the connection closing otherwise (their acks then fail and the broker
	// redelivers).
	hctx, hcancel := context.WithCancel(context.Background())
	defer hcancel()
	var wg sync.WaitGroup
	for range r.cfg.Handlers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case d, ok := <-updates:
					if !ok {
						return
					}
					r.handleUpdate(hctx, d)
				case d, ok := <-dead:
					if !ok {
						return
					}
					r.handleDead(hctx, d)
				}
			}
		}()
	}
	var cause error
	select {
	case <-ctx.Done():
	case e := <-closed:
		cause = closeErr(e)
	}
	_ = ch.Close() // stops deliveries; unacked ones go back to the queue
	hcancel()
	wg.Wait()
	return cause
}

func (r *ResultConsumer) handleUpdate(ctx context.Context, d amqp.Delivery) {
	var u JobUpdate
	if err := json.Unmarshal(d.Body, &u); err != nil || u.JobID == "" ||
		(u.Type != UpdateRunning && u.Type != UpdateFinal) {
		r.malformed.Add(1)
		r.cfg.Logger.Warn("dropped a malformed job update", "err", err, "message_id", d.MessageId)
		_ = d.Ack(false)
		return
	}
	if err := r.update(ctx, u); err != nil {
		r.giveBack(ctx, d, err, u.JobID)
		return
	}
	r.updates.Add(1)
	_ = d.Ack(false)
}

func (r *ResultConsumer) handleDead(ctx context.Context, d amqp.Delivery) {
	dj := DeadJob{JobID: headerString(d.Headers, HeaderJobID), Reason: headerString(d.Headers, firstDeathHead)}
	if err := r.dead(ctx, dj); err != nil {
		r.giveBack(ctx, d, err, dj.JobID)
		return
	}
	r.deadN.Add(1)
	_ = d.Ack(false)
}

// giveBack requeues a message whose handler failed, after RetryDelay so a store
// outage does not become a hot loop.
func (r *ResultConsumer) giveBack(ctx context.Context, d amqp.Delivery, err error, id string) {
	r.retried.Add(1)
	r.cfg.Logger.Warn("job update not applied; requeueing", "err", err, "job_id", id)
	t := time.NewTimer(r.cfg.RetryDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	_ = d.Nack(false, true)
}
