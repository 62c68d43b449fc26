package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// JobConsumerConfig configures a [JobConsumer].
type JobConsumerConfig struct {
	DialConfig
	// Names of the job path's queues; the zero value uses DefaultJobQueue.
	Names JobNames
	// WorkerID is reported in every update; required.
	WorkerID string
	// Concurrency is the number of jobs run at once (JOB_CONCURRENCY), and the
	// prefetch; zero means 1. It is separate from the sync consumer's, so a backlog
	// of jobs never delays /process.
	Concurrency int
	// MaxAttempts bounds how often a job is started: model errors are retried
	// until then, and a delivery whose attempt number (model-error retries plus
	// redeliveries after crashes and drains) is above it is failed without running.
	// Zero means 3. At most JobDeliveryLimit.
	MaxAttempts int
	// RetryBackoff is the delay before the first retry of a model error; it doubles
	// for each further attempt up to RetryBackoffMax. Zero means 1s and 30s.
	RetryBackoff, RetryBackoffMax time.Duration
	// RunTimeout bounds one run of the model. It must stay below the broker's
	// consumer_timeout (30 min by default on RabbitMQ 3.10): the delivery stays
	// unacked while the job runs, and a broker that times the consumer out closes the
	// whole channel. Zero means 15m.
	RunTimeout time.Duration
	// DrainTimeout bounds how long running jobs may finish after Run's context is
	// cancelled; then they are interrupted and requeued. Zero means 20s.
	DrainTimeout time.Duration
	// CancelMemory is how many cancelled job ids a worker remembers; zero means 65536.
	CancelMemory int
}

// JobConsumerStats are monotonically increasing counters.
type JobConsumerStats struct {
	Sessions  uint64 // sessions established (1 + reconnects)
	Received  uint64 // deliveries taken by a handler
	Succeeded uint64 // final succeeded reported
	Failed    uint64 // final failed reported (model error after the last attempt, bad message, attempts exhausted)
	Retried   uint64 // model errors sent to a retry queue
	Expired   uint64 // not started before their start-by time
	Cancelled uint64 // skipped: cancelled before they were started
	Rejected  uint64 // unreadable (no job id): rejected to the dead-letter queue
	Requeued  uint64 // nacked with requeue (drain)
}

// JobConsumer runs jobs from the job queue and reports running and final states to
// the results queue. A delivery is acked only after its final state (or its retry
// copy) was confirmed by the broker, so a worker that dies mid-job leaves the job to
// be redelivered (attempt + 1). It has its own connection, prefetch and handlers.
type JobConsumer struct {
	cfg     JobConsumerConfig
	handler Handler
	pool
	cancelled *idSet

	sessions, received, succeeded, failed, retried, expired, skipped, rejected atomic.Uint64
}

// NewJobConsumer validates cfg.
func NewJobConsumer(cfg JobConsumerConfig, h Handler) (*JobConsumer, error) {
	cfg.DialConfig.setDefaults("worker-jobs")
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 1
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = time.Second
	}
	if cfg.RetryBackoffMax == 0 {
		cfg.RetryBackoffMax = 30 * time.Second
	}
	if cfg.RunTimeout == 0 {
		cfg.RunTimeout = 15 * time.Minute
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 20 * time.Second
	}
	if cfg.CancelMemory == 0 {
		cfg.CancelMemory = 1 << 16
	}
	errs := []error{cfg.DialConfig.validate()}
	if cfg.Concurrency < 0 || cfg.RunTimeout < 0 || cfg.DrainTimeout < 0 || cfg.RetryBackoff < 0 || cfg.CancelMemory < 0 {
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
	if h == nil {
		errs = append(errs, errors.New("queue: nil Handler"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &JobConsumer{cfg: cfg, handler: h, cancelled: newIDSet(cfg.CancelMemory)}, nil
}

// Concurrency returns the number of job slots.
func (c *JobConsumer) Concurrency() int { return c.cfg.Concurrency }

// Stats returns the consumer's counters.
func (c *JobConsumer) Stats() JobConsumerStats {
	return JobConsumerStats{
		Sessions: c.sessions.Load(), Received: c.received.Load(), Succeeded: c.succeeded.Load(),
		Failed: c.failed.Load(), Retried: c.retried.Load(), Expired: c.expired.Load(),
		Cancelled: c.skipped.Load(), Rejected: c.rejected.Load(), Requeued: c.requeued.Load(),
	}
}

// Run consumes until ctx is cancelled, reconnecting as needed, then drains like
// [Consumer.Run]. Jobs interrupted by the drain are requeued (which counts as a
// delivery).
func (c *JobConsumer) Run(ctx context.Context) error {
	c.pool.run(ctx, &c.cfg.DialConfig, c.cfg.Concurrency, c.cfg.DrainTimeout, c.handle, c.session)
	return nil
}

func (c *JobConsumer) session(ctx context.Context, conn *amqp.Connection, gen uint64, jobs chan<- work) error {
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	if err := declareJobTopology(ch, c.cfg.Names); err != nil {
		return err
	}
	if err := ch.Qos(c.cfg.Concurrency, 0, false); err != nil {
		return fmt.Errorf("qos: %w", err)
	}
	pub, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open publish channel: %w", err)
	}
	if err := pub.Confirm(false); err != nil {
		return fmt.Errorf("confirm mode: %w", err)
	}

	// Cancel notices: an exclusive queue of this connection bound to the fanout.
	cch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open cancel channel: %w", err)
	}
	cq, err := cch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return fmt.Errorf("declare cancel queue: %w", err)
	}
	if err := cch.QueueBind(cq.Name, "", c.cfg.Names.Cancel(), false, nil); err != nil {
		return fmt.Errorf("bind cancel queue: %w", err)
	}
	notices, err := cch.Consume(cq.Name, "", true, true, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume cancel queue: %w", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // ends when the cancel channel or the connection closes
		defer wg.Done()
		for n := range notices {
			c.cancelled.add(string(n.Body))
		}
	}()

	tag := fmt.Sprintf("%s jobs g%d", c.cfg.WorkerID, gen)
	deliveries, err := ch.Consume(c.cfg.Names.Queue(), tag, false, false, false, false, nil)
	if err != nil {
		_ = conn.Close()
		wg.Wait()
		return fmt.Errorf("consume %q: %w", c.cfg.Names.Queue(), err)
	}
	c.sessions.Add(1)
	lost, markLost := context.WithCancel(context.Background())
	err = c.pool.pump(ctx, closed, ch, tag, deliveries, &consumerSession{conn: conn, ch: ch, pub: pub, lost: lost}, jobs)
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
	wg.Wait()
	return err
}

// handle runs one job delivery to its end: skipped, retried, or reported final.
func (c *JobConsumer) handle(hctx context.Context, w work) {
	d := &w.d
	c.received.Add(1)
	id := headerString(d.Headers, HeaderJobID)
	log := c.cfg.Logger.With("job_id", id, "request_id", headerString(d.Headers, HeaderRequestID))
	if id == "" {
		// Nothing to report against: the broker dead-letters it to the dead queue.
		c.rejected.Add(1)
		log.Warn("rejected a job message without a job id")
		_ = d.Reject(false)
		return
	}
	attempt := jobAttempt(d)
	up := JobUpdate{JobID: id, Attempt: attempt, Worker: c.cfg.WorkerID}

	if c.cancelled.has(id) {
		c.skipped.Add(1)
		log.Debug("skipped a cancelled job")
		_ = d.Ack(false)
		return
	}
	if ms, ok := headerInt64(d.Headers, HeaderStartBy); ok && time.Now().After(time.UnixMilli(ms)) {
		up.Status, up.Error = JobExpired, &JobError{Reason: "expired", Message: "the job was not started before its start-by time (JOB_START_TIMEOUT)"}
		c.finish(w, up, log)
		return
	}
	if attempt > c.cfg.MaxAttempts {
		up.Status, up.Error = JobFailed, &JobError{Reason: ReasonAttemptsExhausted,
			Message: fmt.Sprintf("delivered %d times (crashed, drained or timed-out workers, or model errors); the limit is JOB_MAX_ATTEMPTS=%d", attempt, c.cfg.MaxAttempts)}
		c.finish(w, up, log)
		return
	}

	msg, bad := decodeJob(d, id, c.cfg.RunTimeout)
	if bad != nil {
		up.Status, up.Error = JobFailed, &JobError{Reason: ReasonBadMessage, Message: bad.Error()}
		c.finish(w, up, log)
		return
	}
	msg.ReceivedAt = time.Now()
	// The running report is not waited for: it shares the channel (and so the order)
	// with the final one, which is.
	run := up
	run.Type, run.At = UpdateRunning, msg.ReceivedAt
	_, _ = c.publishUpdate(w.sess, run)

	ctx, cancel := context.WithTimeout(hctx, c.cfg.RunTimeout)
	stopLost := context.AfterFunc(w.sess.lost, cancel)
	body, err := call(ctx, log, c.handler, msg)
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	stopLost()
	cancel()
	var bm *BadMessageError
	switch {
	case err != nil && w.sess.lost.Err() != nil:
		// Interrupted because the connection went away: the broker redelivers it.
		log.Warn("job interrupted: its connection is gone; the broker redelivers it", "attempt", attempt)
	case err == nil:
		up.Status, up.Result = JobSucceeded, body
		if !json.Valid(body) {
			up.Result, _ = json.Marshal(string(body))
		}
		c.finish(w, up, log)
	case hctx.Err() != nil:
		// Interrupted by the drain: back to the queue (this counts as a delivery).
		log.Warn("job interrupted by the drain; requeued", "attempt", attempt)
		c.pool.requeue(*d)
	case errors.As(err, &bm):
		up.Status, up.Error = JobFailed, &JobError{Reason: ReasonBadMessage, Message: err.Error()}
		c.finish(w, up, log)
	default:
		reason := ReasonModelError
		if timedOut {
			reason = ReasonRunTimeout
			err = fmt.Errorf("the model ran longer than JOB_RUN_TIMEOUT (%s): %w", c.cfg.RunTimeout, err)
		}
		if attempt < c.cfg.MaxAttempts {
			if c.retry(w, attempt, log, err) {
				return
			}
		}
		log.Warn("job failed", "err", err, "reason", reason, "attempt", attempt)
		up.Status, up.Error = JobFailed, &JobError{Reason: reason, Message: err.Error()}
		c.finish(w, up, log)
	}
}

// finish reports a final state, waits for the broker's confirm, then acks and counts
// it. If the report cannot be confirmed the delivery is left unacked: the broker
// redelivers it when this channel closes, and the store ignores a second final state.
func (c *JobConsumer) finish(w work, up JobUpdate, log *slog.Logger) {
	up.Type, up.At = UpdateFinal, time.Now()
	if err := confirmed(c.publishUpdate(w.sess, up)); err != nil {
		log.Warn("final job state not confirmed; leaving the job to be redelivered", "err", err)
		return
	}
	_ = w.d.Ack(false)
	switch up.Status {
	case JobSucceeded:
		c.succeeded.Add(1)
	case JobExpired:
		c.expired.Add(1)
	default:
		c.failed.Add(1)
	}
}

// retry republishes the job to the retry queue for its backoff, as attempt+1, and
// acks the original once the copy is confirmed. It reports whether that worked.
func (c *JobConsumer) retry(w work, attempt int, log *slog.Logger, cause error) bool {
	delay := c.cfg.RetryBackoff
	for i := 1; i < attempt && delay < c.cfg.RetryBackoffMax; i++ {
		delay *= 2
	}
	delay = min(delay, c.cfg.RetryBackoffMax)
	q, err := declareRetryQueue(w.sess.pub, c.cfg.Names, delay)
	if err != nil {
		log.Warn("cannot declare the retry queue", "err", err)
		return false
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
	err = confirmed(w.sess.pub.PublishWithDeferredConfirmWithContext(context.Background(), "", q, true, false, amqp.Publishing{
		ContentType: w.d.ContentType, DeliveryMode: amqp.Persistent, MessageId: w.d.MessageId,
		CorrelationId: w.d.CorrelationId, Type: w.d.Type, Timestamp: w.d.Timestamp, Headers: h, Body: w.d.Body,
	}))
	if err != nil {
		log.Warn("cannot schedule a retry", "err", err)
		return false
	}
	c.retried.Add(1)
	log.Warn("job failed; retrying", "err", cause, "attempt", attempt, "retry_in", delay)
	_ = w.d.Ack(false)
	return true
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

func (c *JobConsumer) publishUpdate(s *consumerSession, up JobUpdate) (*amqp.DeferredConfirmation, error) {
	body, err := json.Marshal(up)
	if err != nil {
		return nil, err
	}
	return s.pub.PublishWithDeferredConfirmWithContext(context.Background(), "", c.cfg.Names.Results(), false, false, amqp.Publishing{
		ContentType: contentTypeJSON, DeliveryMode: amqp.Persistent, Type: jobUpdateType,
		MessageId: up.JobID, Timestamp: up.At,
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
func decodeJob(d *amqp.Delivery, id string, run time.Duration) (*Message, error) {
	v, ok := headerInt64(d.Headers, HeaderSchema)
	if !ok {
		return nil, fmt.Errorf("missing %s header", HeaderSchema)
	}
	if v != SchemaVersion {
		return nil, fmt.Errorf("unsupported message schema %d (this worker speaks %d)", v, SchemaVersion)
	}
	m := &Message{
		RequestID:     headerString(d.Headers, HeaderRequestID),
		CorrelationID: id,
		Deadline:      time.Now().Add(run),
		Redelivered:   d.Redelivered,
		Body:          d.Body,
		Headers:       d.Headers,
	}
	if us, ok := headerInt64(d.Headers, HeaderPublishedUs); ok {
		m.PublishedAt = time.UnixMicro(us)
	}
	return m, nil
}
