package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warren-farm/warren/pkg/jobs"
)

// Defaults of [JobConsumerConfig].
const (
	DefaultJobConcurrency  = 1
	DefaultJobMaxAttempts  = 3
	DefaultRetryBackoff    = time.Second
	DefaultRetryBackoffMax = 30 * time.Second
	DefaultJobRunTimeout   = 15 * time.Minute
	DefaultCancelMemory    = 1 << 16
	DefaultReportPatience  = 30 * time.Second
)

// JobConsumerConfig configures a [JobConsumer].
type JobConsumerConfig struct {
	DialConfig
	// WorkerID is reported in every event; required.
	WorkerID string
	// Routes are the model versions whose job queues are consumed. A route's
	// Concurrency is the number of its jobs run at once (JOB_CONCURRENCY; zero means
	// DefaultJobConcurrency) and its prefetch. It is separate from the sync
	// consumer's, so a backlog of jobs never delays requests.
	Routes []RouteConfig
	// Middleware wraps every route's handler, as the sync consumer's does.
	Middleware []Middleware
	// MaxAttempts bounds how often a job is started: model errors are retried
	// until then, and a delivery whose attempt number (model-error retries plus
	// redeliveries after crashes and drains) is above it is failed without running.
	// Zero means DefaultJobMaxAttempts. At most JobDeliveryLimit.
	MaxAttempts int
	// RetryBackoff is the delay before the first retry of a model error; it doubles
	// for each further attempt up to RetryBackoffMax. Zero means the defaults.
	RetryBackoff, RetryBackoffMax time.Duration
	// RunTimeout bounds one run of the model. It must stay below the broker's
	// consumer_timeout (30 min by default on RabbitMQ 3.10): the delivery stays
	// unacked while the job runs, and a broker that times the consumer out closes the
	// whole channel. Zero means DefaultJobRunTimeout.
	RunTimeout time.Duration
	// DrainTimeout bounds how long running jobs may finish after Run's context is
	// cancelled; then they are interrupted and requeued. Zero means
	// DefaultDrainTimeout.
	DrainTimeout time.Duration
	// CancelMemory is how many cancelled job ids a worker remembers; zero means
	// DefaultCancelMemory.
	CancelMemory int
	// ReportPatience is how long a final report the broker nacks is published
	// again (backoff from 0.1 s, doubling up to 2 s) before the job is requeued to
	// run again. In a cluster the results queue refuses publishes for several
	// seconds after its leader's node died (8 s seen); a requeue costs an attempt
	// and a second run. Zero means DefaultReportPatience.
	ReportPatience time.Duration
}

// JobConsumerStats are monotonically increasing counters (of one route, or of all).
type JobConsumerStats struct {
	Received  uint64 `json:"received"`  // deliveries taken by a handler
	Succeeded uint64 `json:"succeeded"` // final succeeded reported
	Failed    uint64 `json:"failed"`    // final failed reported (model error after the last attempt, bad input or message, attempts exhausted)
	Retried   uint64 `json:"retried"`   // model errors sent to a retry queue
	Expired   uint64 `json:"expired"`   // not started before their start-by time
	Cancelled uint64 `json:"cancelled"` // skipped: cancelled before they were started
	Rejected  uint64 `json:"rejected"`  // unreadable (no job id): rejected to the dead-letter queue
	Requeued  uint64 `json:"requeued"`  // nacked with requeue (drain, or a retry that could not be scheduled)
}

func (c *counters) jobStats() JobConsumerStats {
	return JobConsumerStats{
		Received: c.received.Load(), Succeeded: c.ok.Load(), Failed: c.failed.Load(), Retried: c.retried.Load(),
		Expired: c.expired.Load(), Cancelled: c.cancelled.Load(), Rejected: c.rejected.Load(),
		Requeued: c.requeued.Load(),
	}
}

// JobConsumer runs jobs from the job queues of its routes and reports running and
// final states to the results queue. A delivery is acked only after its final state
// (or its retry copy) was confirmed by the broker, so a worker that dies mid-job
// leaves the job to be redelivered (attempt + 1). It has its own connection,
// prefetch and handlers.
type JobConsumer struct {
	cfg JobConsumerConfig
	pool
	cancelled *idSet
}

// NewJobConsumer validates cfg.
func NewJobConsumer(cfg JobConsumerConfig) (*JobConsumer, error) {
	cfg.DialConfig.setDefaults("worker-jobs")
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultJobMaxAttempts
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = DefaultRetryBackoff
	}
	if cfg.RetryBackoffMax == 0 {
		cfg.RetryBackoffMax = DefaultRetryBackoffMax
	}
	if cfg.RunTimeout == 0 {
		cfg.RunTimeout = DefaultJobRunTimeout
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.ReportPatience == 0 {
		cfg.ReportPatience = DefaultReportPatience
	}
	if cfg.CancelMemory == 0 {
		cfg.CancelMemory = DefaultCancelMemory
	}
	routes := make([]*routeSlots, len(cfg.Routes))
	for i, r := range cfg.Routes {
		if r.Concurrency == 0 {
			r.Concurrency = DefaultJobConcurrency
		}
		routes[i] = &routeSlots{route: r.Route, queue: r.Route.JobQueue(), concurrency: r.Concurrency, prefetch: r.Concurrency}
		routes[i].enabled.Store(!r.Disabled)
		if r.Handler != nil {
			routes[i].handler = Chain(r.Handler, cfg.Middleware...)
		}
	}
	errs := []error{cfg.DialConfig.validate(), checkRoutes(routes, true)}
	if cfg.RunTimeout < 0 || cfg.DrainTimeout < 0 || cfg.RetryBackoff < 0 || cfg.CancelMemory < 0 {
		errs = append(errs, errors.New("queue: job consumer settings must not be negative"))
	}
	if cfg.MaxAttempts < 1 || cfg.MaxAttempts > JobDeliveryLimit {
		errs = append(errs, fmt.Errorf("queue: MaxAttempts must be within 1..%d", JobDeliveryLimit))
	}
	if cfg.RetryBackoffMax < cfg.RetryBackoff {
		errs = append(errs, errors.New("queue: RetryBackoffMax must be at least RetryBackoff"))
	}
	if cfg.WorkerID == "" {
		errs = append(errs, errors.New("queue: WorkerID is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &JobConsumer{cfg: cfg, pool: newPool(routes), cancelled: newIDSet(cfg.CancelMemory)}, nil
}

// Enable starts consuming route r's job queue (a Disabled route), as
// [Consumer.Enable] does.
func (c *JobConsumer) Enable(r Route) bool { return c.enable(r.JobQueue()) }

// Concurrency returns route r's job slots (0 for a route it does not serve).
func (c *JobConsumer) Concurrency(r Route) int {
	if rs := c.route(r.JobQueue()); rs != nil {
		return rs.concurrency
	}
	return 0
}

// InFlightOf returns the number of route r's jobs running.
func (c *JobConsumer) InFlightOf(r Route) int {
	if rs := c.route(r.JobQueue()); rs != nil {
		return int(rs.inflight.Load())
	}
	return 0
}

// Stats returns the counters summed over every route.
func (c *JobConsumer) Stats() JobConsumerStats {
	var s JobConsumerStats
	for _, rs := range c.routes {
		r := rs.jobStats()
		s.Received += r.Received
		s.Succeeded += r.Succeeded
		s.Failed += r.Failed
		s.Retried += r.Retried
		s.Expired += r.Expired
		s.Cancelled += r.Cancelled
		s.Rejected += r.Rejected
		s.Requeued += r.Requeued
	}
	return s
}

// RouteStats returns route r's counters.
func (c *JobConsumer) RouteStats(r Route) JobConsumerStats {
	if rs := c.route(r.JobQueue()); rs != nil {
		return rs.jobStats()
	}
	return JobConsumerStats{}
}

// Sessions returns how many sessions were established (1 + reconnects).
func (c *JobConsumer) Sessions() uint64 { return c.sessions.Load() }

// Cancelled reports whether a cancel notice for job id reached this worker (and is
// still remembered): such a job is skipped when it is delivered.
func (c *JobConsumer) Cancelled(id string) bool { return c.cancelled.has(id) }

// Run consumes until ctx is cancelled, reconnecting as needed, then drains like
// [Consumer.Run]. Jobs interrupted by the drain are requeued (which counts as a
// delivery).
func (c *JobConsumer) Run(ctx context.Context) error {
	c.pool.run(ctx, &c.cfg.DialConfig, c.cfg.DrainTimeout, c.handle, c.session)
	return nil
}

func (c *JobConsumer) session(ctx context.Context, conn *amqp.Connection, gen uint64) error {
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	pub, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open publish channel: %w", err)
	}
	if err := declareJobShared(pub); err != nil {
		return err
	}
	if err := pub.Confirm(false); err != nil {
		return fmt.Errorf("confirm mode: %w", err)
	}
	pubClosed := pub.NotifyClose(make(chan *amqp.Error, 1))
	retries := &retryQueues{conn: conn}

	// Cancel notices: an exclusive queue of this connection bound to the fanout.
	cch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open cancel channel: %w", err)
	}
	cq, err := cch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return fmt.Errorf("declare cancel queue: %w", err)
	}
	if err := cch.QueueBind(cq.Name, "", JobCancel, false, nil); err != nil {
		return fmt.Errorf("bind cancel queue: %w", err)
	}
	notices, err := cch.Consume(cq.Name, "", true, true, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume cancel queue: %w", err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // ends when the cancel channel or the connection closes
		defer wg.Done()
		for n := range notices {
			c.cancelled.add(string(n.Body))
		}
	}()
	stopWatch := make(chan struct{})
	go func() { // ends when the results channel closes or the session ends
		defer wg.Done()
		// A results channel the broker closed (a publish to an exchange deleted
		// under it, say) would leave every final report unconfirmed and every job
		// unacked: end the session instead, so all of it starts again on a new
		// connection and the broker redelivers the unacked jobs.
		select {
		case e, ok := <-pubClosed:
			if ok && e != nil {
				c.cfg.Logger.Warn("the broker closed the job results channel; reconnecting", "err", e)
				_ = conn.Close()
			}
		case <-stopWatch:
		}
	}()

	lost, markLost := context.WithCancel(context.Background())
	sub := subscriberOf(conn,
		func(rs *routeSlots) string { return fmt.Sprintf("%s jobs %s g%d", c.cfg.WorkerID, rs.route, gen) },
		func(rs *routeSlots, ch *amqp.Channel) error { return declareJobQueue(ch, rs.queue) },
		func(s *subscription) *consumerSession {
			return &consumerSession{conn: conn, ch: s.ch, pub: pub, lost: lost, retries: retries}
		})
	err = c.pool.pumpAll(ctx, conn, closed, sub)
	if ctx.Err() != nil {
		// Draining: the connection stays open for running jobs' reports and acks
		// (Run closes it after the drain, which ends this goroutine); only the cancel
		// notices stop.
		_ = cch.Close()
		go func() { <-closed; markLost() }()
	} else {
		// The connection is gone: jobs still running from it cannot report or ack,
		// and the broker is redelivering them; stop them so their slots take the
		// redelivered copies at once (instead of holding them unacked towards the
		// broker's consumer_timeout).
		markLost()
		_ = conn.Close()
	}
	close(stopWatch)
	wg.Wait()
	return err
}

// handle runs one job delivery to its end: skipped, retried, or reported final.
func (c *JobConsumer) handle(hctx context.Context, w work) {
	d, rs := &w.d, w.rs
	rs.received.Add(1)
	id := headerString(d.Headers, HeaderJobID)
	log := c.cfg.Logger.With("job_id", id, "request_id", headerString(d.Headers, HeaderRequestID), "queue", rs.queue)
	if id == "" {
		// Nothing to report against: the broker dead-letters it to the dead queue.
		rs.rejected.Add(1)
		log.Warn("rejected a job message without a job id")
		_ = d.Reject(false)
		return
	}
	attempt := jobAttempt(d)
	ev := jobs.Event{JobID: id, Attempt: attempt, Worker: c.cfg.WorkerID}

	if c.cancelled.has(id) {
		rs.cancelled.Add(1)
		log.Debug("skipped a cancelled job")
		_ = d.Ack(false)
		return
	}
	if ms, ok := headerInt64(d.Headers, HeaderStartBy); ok && time.Now().After(time.UnixMilli(ms)) {
		ev.Status, ev.Error = jobs.Expired, &jobs.Error{Reason: jobs.ReasonExpired, Message: "the job was not started before its start-by time (JOB_START_TIMEOUT)"}
		c.finish(w, ev, log)
		return
	}
	if attempt > c.cfg.MaxAttempts {
		ev.Status, ev.Error = jobs.Failed, &jobs.Error{Reason: jobs.ReasonAttemptsExhausted,
			Message: fmt.Sprintf("delivered %d times (crashed, drained or timed-out workers, or model errors); the limit is JOB_MAX_ATTEMPTS=%d", attempt, c.cfg.MaxAttempts)}
		c.finish(w, ev, log)
		return
	}

	msg, bad := decodeJob(d, rs, id, attempt, c.cfg.RunTimeout)
	if bad != nil {
		ev.Status, ev.Error = jobs.Failed, &jobs.Error{Reason: jobs.ReasonBadMessage, Message: bad.Error()}
		c.finish(w, ev, log)
		return
	}
	// The running report is not waited for: it shares the channel (and so the order)
	// with the final one, which is.
	run := ev
	run.Type, run.At = jobs.EventRunning, msg.ReceivedAt
	_, _ = c.publishEvent(w.sess, run)
	// The final report carries the start too: the API may apply it first.
	started := msg.ReceivedAt
	ev.StartedAt = &started

	ctx, cancel := context.WithCancel(hctx)
	stopLost := context.AfterFunc(w.sess.lost, cancel)
	body, err := rs.handler(ctx, msg)
	stopLost()
	cancel()
	outcome, reason := Classify(err, msg.Deadline, time.Now())
	switch {
	case err != nil && w.sess.lost.Err() != nil:
		// Interrupted because the connection went away: the broker redelivers it.
		log.Warn("job interrupted: its connection is gone; the broker redelivers it", "attempt", attempt)
	case err == nil:
		ev.Status, ev.Result = jobs.Succeeded, body
		if !json.Valid(body) {
			ev.Result, _ = json.Marshal(string(body))
		}
		c.finish(w, ev, log)
	case hctx.Err() != nil:
		// Interrupted by the drain: back to the queue (this counts as a delivery).
		log.Warn("job interrupted by the drain; requeued", "attempt", attempt)
		rs.requeue(*d)
	case reason == ReasonBadMessage || reason == ReasonBadInput:
		// Retrying cannot help.
		ev.Status, ev.Error = jobs.Failed, &jobs.Error{Reason: jobs.Reason(reason), Message: err.Error()}
		c.finish(w, ev, log)
	default:
		r := jobs.Reason(reason)
		if outcome == OutcomeTimedOut {
			r = jobs.ReasonRunTimeout
			err = fmt.Errorf("the model ran longer than JOB_RUN_TIMEOUT (%s): %w", c.cfg.RunTimeout, err)
		}
		if attempt < c.cfg.MaxAttempts {
			if rerr := c.retry(w, attempt, log, err); rerr != nil {
				// Attempts are left: never fail the job for want of a retry queue.
				// Requeued, it runs again at once (without the backoff) as the next
				// attempt, which the broker's delivery count still bounds.
				log.Warn("cannot schedule a retry; requeued without the backoff", "err", rerr, "cause", err, "attempt", attempt)
				rs.requeue(*d)
				return
			}
			return
		}
		log.Warn("job failed", "err", err, "reason", r, "attempt", attempt)
		ev.Status, ev.Error = jobs.Failed, &jobs.Error{Reason: r, Message: err.Error()}
		c.finish(w, ev, log)
	}
}

// finish reports a final state, waits for the broker's confirm, then acks and counts
// it. A report the broker nacks (the results queue has no leader for a moment, say:
// a node of the cluster just died) is published again, for ReportPatience; if it is
// still not confirmed the job is requeued, so that it runs again rather than stay
// unacked on a live channel, where the broker would never redeliver it. When the
// connection is gone the broker redelivers it anyway. The store ignores a second
// final state.
func (c *JobConsumer) finish(w work, ev jobs.Event, log *slog.Logger) {
	ev.Type, ev.At = jobs.EventFinal, time.Now()
	giveUp := time.Now().Add(c.cfg.ReportPatience)
	for wait, tries := 100*time.Millisecond, 1; ; tries++ {
		err := confirmed(c.publishEvent(w.sess, ev))
		if err == nil {
			if tries > 1 {
				log.Info("final job state confirmed", "tries", tries)
			}
			break
		}
		if w.sess.lost.Err() != nil {
			log.Warn("final job state not confirmed and the connection is gone; the broker redelivers the job", "err", err)
			return
		}
		if time.Now().Add(wait).After(giveUp) {
			log.Warn("final job state not confirmed; requeued the job", "err", err, "tries", tries)
			w.rs.requeue(w.d)
			return
		}
		if tries == 1 {
			log.Warn("final job state not confirmed; publishing it again", "err", err)
		}
		select {
		case <-time.After(wait):
		case <-w.sess.lost.Done():
		}
		wait = min(2*wait, 2*time.Second)
	}
	_ = w.d.Ack(false)
	switch ev.Status {
	case jobs.Succeeded:
		w.rs.ok.Add(1)
	case jobs.Expired:
		w.rs.expired.Add(1)
	default:
		w.rs.failed.Add(1)
	}
}

// retry republishes the job through the delay exchange for its backoff, as
// attempt+1, and acks the original once the copy is confirmed. An error means
// nothing was acked.
func (c *JobConsumer) retry(w work, attempt int, log *slog.Logger, cause error) error {
	delay := c.cfg.RetryBackoff
	for i := 1; i < attempt && delay < c.cfg.RetryBackoffMax; i++ {
		delay *= 2
	}
	delay = min(delay, c.cfg.RetryBackoffMax)
	ex, err := w.sess.retries.declare(delay)
	if err != nil {
		return err
	}
	h := amqp.Table{}
	for k, v := range w.d.Headers {
		switch k {
		case "x-death", deliveryCount, firstDeathHead, "x-first-death-queue", "x-first-death-exchange":
		default:
			h[k] = v
		}
	}
	h[HeaderAttempt] = int32(attempt + 1)
	err = confirmed(w.sess.pub.PublishWithDeferredConfirmWithContext(context.Background(), ex, w.rs.queue, true, false, amqp.Publishing{
		ContentType: w.d.ContentType, DeliveryMode: amqp.Persistent, MessageId: w.d.MessageId,
		CorrelationId: w.d.CorrelationId, Type: w.d.Type, Timestamp: w.d.Timestamp, Headers: h, Body: w.d.Body,
	}))
	if err != nil {
		return fmt.Errorf("publish the retry copy: %w", err)
	}
	w.rs.retried.Add(1)
	log.Warn("job failed; retrying", "err", cause, "attempt", attempt, "retry_in", delay)
	_ = w.d.Ack(false)
	return nil
}

// retryQueues declares the delay exchanges and retry queues for one connection's
// handlers, one declaration at a time, on a channel of its own: amqp091 does not
// match concurrent calls on one channel with their replies (two handlers
// declaring at once could each take the other's answer), and a refused
// declaration closes its channel, which must not be the results channel.
type retryQueues struct {
	conn *amqp.Connection
	mu   sync.Mutex
	ch   *amqp.Channel
}

func (r *retryQueues) declare(delay time.Duration) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ch == nil || r.ch.IsClosed() {
		ch, err := r.conn.Channel()
		if err != nil {
			return "", fmt.Errorf("open a channel for the retry queues: %w", err)
		}
		r.ch = ch
	}
	return declareRetry(r.ch, delay)
}

// confirmed waits for a publish's confirm: nil once the broker acked it.
func confirmed(dc *amqp.DeferredConfirmation, err error) error {
	if err != nil {
		return err
	}
	ok, err := dc.WaitContext(context.Background())
	if err == nil && !ok {
		err = errors.New("the broker nacked the publish")
	}
	return err
}

func (c *JobConsumer) publishEvent(s *consumerSession, ev jobs.Event) (*amqp.DeferredConfirmation, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	return s.pub.PublishWithDeferredConfirmWithContext(context.Background(), "", JobResults, false, false, amqp.Publishing{
		ContentType: contentTypeJSON, DeliveryMode: amqp.Persistent, Type: jobEventType,
		MessageId: ev.JobID, Timestamp: ev.At,
		Headers: amqp.Table{HeaderSchema: int32(SchemaVersion), HeaderWorker: c.cfg.WorkerID}, Body: body,
	})
}

// idSet remembers the last n ids added.
type idSet struct {
	mu   sync.Mutex
	m    map[string]struct{}
	ring []string
	next int
}

func newIDSet(n int) *idSet {
	return &idSet{m: make(map[string]struct{}, n), ring: make([]string, n)}
}

func (s *idSet) add(id string) {
	if len(s.ring) == 0 || id == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[id]; ok {
		return
	}
	if old := s.ring[s.next]; old != "" {
		delete(s.m, old)
	}
	s.ring[s.next] = id
	s.m[id] = struct{}{}
	s.next = (s.next + 1) % len(s.ring)
}

func (s *idSet) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[id]
	return ok
}

// decodeJob reads a job delivery into the Message a Handler takes. The correlation
// id is the job id; the deadline is the run timeout from now.
func decodeJob(d *amqp.Delivery, rs *routeSlots, id string, attempt int, run time.Duration) (*Message, error) {
	if err := checkSchema(d.Headers); err != nil {
		return nil, err
	}
	now := time.Now()
	m := &Message{
		Route:         rs.route,
		Queue:         rs.queue,
		RequestID:     headerString(d.Headers, HeaderRequestID),
		CorrelationID: id,
		JobID:         id,
		Attempt:       attempt,
		Deadline:      now.Add(run),
		Redelivered:   d.Redelivered,
		Body:          d.Body,
		Headers:       textHeaders(d.Headers),
		ReceivedAt:    now,
	}
	if us, ok := headerInt64(d.Headers, HeaderPublishedUs); ok {
		m.PublishedAt = time.UnixMicro(us)
	}
	return m, nil
}
