package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ClientConfig configures a [Client].
type ClientConfig struct {
	DialConfig
	// Queue is the request queue; empty means DefaultQueue.
	Queue string
	// ConsumerRefresh is how often the consumer count of Queue is re-read (a passive
	// declare on a dedicated channel); zero means 200ms. "No workers" is at most this
	// stale.
	ConsumerRefresh time.Duration
	// Jobs names the job path's queues, declared by every session so that jobs can
	// be submitted with no worker running; the zero value uses DefaultJobQueue.
	Jobs JobNames
	// OnConfirm, if set, is called with the publish → confirm latency of every request
	// the broker confirmed (acked or nacked). It runs on the calling goroutine and must
	// be cheap.
	OnConfirm func(time.Duration)
}

// Request is one sync call.
type Request struct {
	// RequestID travels as the message id and the x-request-id header.
	RequestID string
	// Body is the JSON payload.
	Body []byte
	// Deadline is required: it becomes the message expiration and the absolute
	// deadline header. Call also stops waiting when ctx ends.
	Deadline time.Time
	// Headers are extra message headers (e.g. W3C trace context); optional.
	Headers amqp.Table
}

// Reply is a worker's successful answer.
type Reply struct {
	Body   []byte
	Worker string
	Timing Timing
}

// Timing is what a call learnt about where its time went. Published and Replied are
// read on the API's clock; WorkerReceived on the worker's, so queue wait and reply
// transit are shifted by the clock skew between the two hosts (one gains what the
// other loses; their sum, like Compute, is exact). Stages clamps the split so that
// no stage is negative.
type Timing struct {
	Published      time.Time     // API: request published
	Replied        time.Time     // API: reply received
	WorkerReceived time.Time     // worker: a handler took the request; zero if not reported
	Compute        time.Duration // worker: time in the handler
	Slots          int           // worker: handler slots (its CONCURRENCY); 0 if not reported
}

// Stages splits the round trip into queue wait (publish → a handler took it), compute,
// and reply transit (the rest: reply publish, broker, API delivery). ok is false when
// the worker sent no timings.
func (t Timing) Stages() (queueWait, compute, replyTransit time.Duration, ok bool) {
	if t.WorkerReceived.IsZero() || t.Published.IsZero() || t.Replied.IsZero() {
		return 0, 0, 0, false
	}
	total := t.Replied.Sub(t.Published)
	compute = min(max(t.Compute, 0), max(total, 0))
	queueWait = min(max(t.WorkerReceived.Sub(t.Published), 0), total-compute)
	replyTransit = total - compute - queueWait
	return queueWait, compute, replyTransit, true
}

// State is a snapshot for readiness endpoints.
type State struct {
	// EverConnected is false until the first session was established.
	EverConnected bool
	// Connected is true while a session is up.
	Connected bool
	// Blocked is true while the broker blocks publishers (resource alarm).
	Blocked bool
	// Workers is the consumer count of the request queue, -1 when unknown.
	Workers int
}

// ClientStats are monotonically increasing counters.
type ClientStats struct {
	Sessions       uint64 // sessions established (1 + reconnects)
	UnknownReplies uint64 // replies whose correlation id matched no waiting call (late, duplicate, or foreign)
	Returned       uint64 // requests returned unroutable (request queue missing)
}

// Client sends requests and waits for replies. It keeps one connection; each
// connection generation has its own exclusive, server-named reply queue, so replies
// are demultiplexed by correlation id and never cross generations. Call is safe for
// concurrent use. Run must be running for calls to succeed.
type Client struct {
	cfg      ClientConfig
	sess     atomic.Pointer[clientSession]
	ever     atomic.Bool
	workers  atomic.Int64
	seq      atomic.Uint64
	unknown  atomic.Uint64
	returned atomic.Uint64
	sessions atomic.Uint64
	stopped  atomic.Bool
}

type result struct {
	reply *Reply
	err   error
}

type clientSession struct {
	prefix     string
	pub        *amqp.Channel
	replyQueue string
	blocked    atomic.Bool
	done       chan struct{} // closed when the session ends

	mu      sync.Mutex
	pending map[string]chan result
}

// NewClient validates cfg and returns a client. Nothing is dialled until Run.
func NewClient(cfg ClientConfig) (*Client, error) {
	cfg.DialConfig.setDefaults("api")
	if cfg.Queue == "" {
		cfg.Queue = DefaultQueue
	}
	if cfg.ConsumerRefresh == 0 {
		cfg.ConsumerRefresh = 200 * time.Millisecond
	}
	if err := cfg.DialConfig.validate(); err != nil {
		return nil, err
	}
	if cfg.ConsumerRefresh < 0 {
		return nil, errors.New("queue: ConsumerRefresh must be positive")
	}
	c := &Client{cfg: cfg}
	c.workers.Store(-1)
	return c, nil
}

// Run connects and keeps the client connected until ctx is done, reconnecting with
// backoff. Calls in flight when a connection is lost fail at once with
// ErrBrokerUnavailable. Run returns after every goroutine it started has stopped.
func (c *Client) Run(ctx context.Context) error {
	defer c.stopped.Store(true)
	runSessions(ctx, &c.cfg.DialConfig, c.session)
	return nil
}

// State returns a snapshot of the connection state.
func (c *Client) State() State {
	s := c.sess.Load()
	st := State{EverConnected: c.ever.Load(), Connected: s != nil, Workers: int(c.workers.Load())}
	if s != nil {
		st.Blocked = s.blocked.Load()
	} else {
		st.Workers = -1
	}
	return st
}

// Stats returns the client's counters.
func (c *Client) Stats() ClientStats {
	return ClientStats{Sessions: c.sessions.Load(), UnknownReplies: c.unknown.Load(), Returned: c.returned.Load()}
}

// Call publishes req and waits for its reply. It returns ErrNoWorkers, ErrQueueFull
// or ErrBrokerUnavailable (wrapped) without waiting when the farm cannot take the
// request; a *RemoteError for a worker's error reply; ctx's error when ctx ends first;
// and context.DeadlineExceeded when req.Deadline passes.
func (c *Client) Call(ctx context.Context, req Request) (*Reply, error) {
	if req.Deadline.IsZero() {
		return nil, errors.New("queue: request without deadline")
	}
	s, corr, ch, err := c.register("")
	if err != nil {
		return nil, err
	}
	defer s.release(corr)
	if c.workers.Load() == 0 {
		return nil, ErrNoWorkers
	}
	timer := time.NewTimer(time.Until(req.Deadline))
	defer timer.Stop()

	now := time.Now()
	headers := amqp.Table{
		HeaderSchema:      int32(SchemaVersion),
		HeaderDeadline:    req.Deadline.UnixMilli(),
		HeaderRequestID:   req.RequestID,
		HeaderPublishedUs: now.UnixMicro(),
	}
	for k, v := range req.Headers {
		if _, taken := headers[k]; !taken {
			headers[k] = v
		}
	}
	dc, err := s.pub.PublishWithDeferredConfirmWithContext(ctx, "", c.cfg.Queue, true, false, amqp.Publishing{
		ContentType:   contentTypeJSON,
		CorrelationId: corr,
		ReplyTo:       s.replyQueue,
		Expiration:    expirationFor(req.Deadline, now),
		MessageId:     req.RequestID,
		Timestamp:     now,
		Type:          requestType,
		Headers:       headers,
		Body:          req.Body,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, unavailable("publish: " + err.Error())
	}
	confirmed := dc.Done()
	for {
		select {
		case r := <-ch:
			if r.reply != nil {
				r.reply.Timing.Published = now
			}
			return r.reply, r.err
		case <-confirmed:
			confirmed = nil
			if c.cfg.OnConfirm != nil {
				c.cfg.OnConfirm(time.Since(now))
			}
			if !dc.Acked() {
				if s.pub.IsClosed() {
					return nil, unavailable("connection lost before the publish was confirmed")
				}
				return nil, ErrQueueFull
			}
		case <-s.done:
			// A reply may have raced the session's end.
			select {
			case r := <-ch:
				if r.reply != nil {
					r.reply.Timing.Published = now
				}
				return r.reply, r.err
			default:
			}
			return nil, unavailable("connection lost while waiting for the reply")
		case <-timer.C:
			return nil, context.DeadlineExceeded
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// register checks that a publish can be attempted now and registers a waiter for
// its reply or mandatory return under corr (a new correlation id when empty). The
// caller must release it.
func (c *Client) register(corr string) (*clientSession, string, chan result, error) {
	s := c.sess.Load()
	switch {
	case s == nil && c.stopped.Load():
		return nil, "", nil, ErrClosed
	case s == nil:
		return nil, "", nil, unavailable("not connected")
	case s.blocked.Load():
		return nil, "", nil, unavailable("broker is blocking publishers (memory or disk alarm)")
	}
	if corr == "" {
		corr = s.prefix + strconv.FormatUint(c.seq.Add(1), 36)
	}
	ch := make(chan result, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil { // the session already ended
		return nil, "", nil, unavailable("connection lost")
	}
	s.pending[corr] = ch
	return s, corr, ch, nil
}

// release forgets the waiter registered under corr.
func (s *clientSession) release(corr string) {
	s.mu.Lock()
	if s.pending != nil {
		delete(s.pending, corr)
	}
	s.mu.Unlock()
}

// deliver hands a result to the call waiting on corr, if any.
func (s *clientSession) deliver(corr string, r result) bool {
	s.mu.Lock()
	ch, ok := s.pending[corr]
	if ok {
		delete(s.pending, corr)
	}
	s.mu.Unlock()
	if ok {
		ch <- r // buffered 1, and removed from the map: never blocks
	}
	return ok
}

// session sets up one connection generation and runs it until the connection
// closes or ctx ends.
func (c *Client) session(ctx context.Context, conn *amqp.Connection, gen uint64) error {
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 4))

	// Topology: the request queue (workers declare it too), then this generation's
	// reply queue and consumer.
	topo, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	q, err := declareRequestQueue(topo, c.cfg.Queue)
	if err != nil {
		return err
	}
	c.workers.Store(int64(q.Consumers))
	if err := declareJobTopology(topo, c.cfg.Jobs); err != nil {
		return err
	}

	replyCh, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open reply channel: %w", err)
	}
	rq, err := replyCh.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return fmt.Errorf("declare reply queue: %w", err)
	}
	replies, err := replyCh.Consume(rq.Name, "", true, true, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume reply queue: %w", err)
	}

	pub, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open publish channel: %w", err)
	}
	if err := pub.Confirm(false); err != nil {
		return fmt.Errorf("confirm mode: %w", err)
	}
	returns := pub.NotifyReturn(make(chan amqp.Return, 64))
	// A channel-level error (someone deleted the reply queue, a publish the broker
	// refused) closes just that channel; the session is useless without either, so it
	// ends and a new generation starts.
	replyClosed := replyCh.NotifyClose(make(chan *amqp.Error, 1))
	pubClosed := pub.NotifyClose(make(chan *amqp.Error, 1))

	s := &clientSession{
		prefix:     "g" + strconv.FormatUint(gen, 10) + "-",
		pub:        pub,
		replyQueue: rq.Name,
		done:       make(chan struct{}),
		pending:    map[string]chan result{},
	}

	var wg sync.WaitGroup
	wg.Add(4)
	// replyEnded is closed when the reply consumer stops: the broker cancelled it
	// (reply queue deleted) or its channel closed.
	replyEnded := make(chan struct{})
	go func() { // replies → waiting calls
		defer wg.Done()
		defer close(replyEnded)
		for d := range replies {
			if !s.deliver(d.CorrelationId, decodeReply(&d, time.Now())) {
				c.unknown.Add(1)
				c.cfg.Logger.Debug("dropped reply for no waiting call", "correlation_id", d.CorrelationId,
					"request_id", headerString(d.Headers, HeaderRequestID))
			}
		}
	}()
	go func() { // mandatory returns: the request queue does not exist
		defer wg.Done()
		for r := range returns {
			c.returned.Add(1)
			s.deliver(r.CorrelationId, result{err: fmt.Errorf("%w: request queue %q does not exist (%s)", ErrNoWorkers, c.cfg.Queue, r.ReplyText)})
		}
	}()
	go func() { // resource alarms
		defer wg.Done()
		for b := range blocked {
			s.blocked.Store(b.Active)
			if b.Active {
				c.cfg.Logger.Warn("broker blocked publishers", "reason", b.Reason)
			} else {
				c.cfg.Logger.Info("broker unblocked publishers")
			}
		}
	}()
	stopMonitor := make(chan struct{})
	go func() { // consumer count of the request queue
		defer wg.Done()
		c.monitorConsumers(topo, conn, stopMonitor)
	}()

	c.sessions.Add(1)
	c.sess.Store(s)
	c.ever.Store(true)

	var cause error
	select {
	case <-ctx.Done():
	case e := <-closed:
		cause = closeCause("connection", e)
	case e := <-replyClosed:
		cause = closeCause("reply channel", e)
	case <-replyEnded:
		cause = errors.New("reply consumer cancelled by the broker (reply queue deleted?)")
	case e := <-pubClosed:
		cause = closeCause("publish channel", e)
	}
	// Fail this generation's calls first, then tear down.
	c.sess.CompareAndSwap(s, nil)
	c.workers.Store(-1)
	s.mu.Lock()
	s.pending = nil
	s.mu.Unlock()
	close(s.done)
	close(stopMonitor)
	_ = conn.Close() // closes every channel and so every chan the goroutines range over
	wg.Wait()
	return cause
}

// monitorConsumers refreshes the request queue's consumer count with a passive
// declare every ConsumerRefresh. A failed declare closes the channel (e.g. 404
// after someone deleted the queue); the queue is then re-declared on a new channel.
func (c *Client) monitorConsumers(ch *amqp.Channel, conn *amqp.Connection, stop <-chan struct{}) {
	t := time.NewTicker(c.cfg.ConsumerRefresh)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if ch == nil || ch.IsClosed() {
			var err error
			if ch, err = conn.Channel(); err != nil {
				continue // the connection is going away; the session notices
			}
			if _, err := declareRequestQueue(ch, c.cfg.Queue); err != nil {
				c.cfg.Logger.Warn("re-declare request queue", "err", err)
				c.workers.Store(0)
				continue
			}
		}
		q, err := ch.QueueDeclarePassive(c.cfg.Queue, true, false, false, false, nil)
		if err != nil {
			c.workers.Store(0)
			continue
		}
		c.workers.Store(int64(q.Consumers))
	}
}

func closeCause(what string, e *amqp.Error) error {
	if e == nil {
		return fmt.Errorf("%s closed", what)
	}
	return fmt.Errorf("%s closed: %w", what, e)
}

func decodeReply(d *amqp.Delivery, at time.Time) result {
	worker := headerString(d.Headers, HeaderWorker)
	if headerString(d.Headers, HeaderStatus) == StatusOK {
		r := &Reply{Body: d.Body, Worker: worker, Timing: Timing{Replied: at}}
		if us, ok := headerInt64(d.Headers, HeaderReceivedUs); ok {
			r.Timing.WorkerReceived = time.UnixMicro(us)
		}
		if us, ok := headerInt64(d.Headers, HeaderComputeUs); ok {
			r.Timing.Compute = time.Duration(us) * time.Microsecond
		}
		if n, ok := headerInt64(d.Headers, HeaderSlots); ok {
			r.Timing.Slots = int(n)
		}
		return result{reply: r}
	}
	reason := headerString(d.Headers, HeaderReason)
	if reason == "" {
		reason = ReasonModelError
	}
	return result{err: &RemoteError{Reason: reason, Message: string(d.Body), Worker: worker}}
}

// JobMessage is one job to publish.
type JobMessage struct {
	ID        string
	RequestID string
	Body      []byte
	// StartBy, if not zero, is when a job not yet started expires.
	StartBy time.Time
	// Headers are extra message headers (e.g. W3C trace context); optional.
	Headers amqp.Table
}

// PublishJob publishes a job as a persistent message on the job queue and returns
// once the broker confirmed it (the message is then on disk on a quorum of nodes).
// It works with no worker running. Errors: ErrBrokerUnavailable (wrapped) when not
// connected or blocked (nothing was sent); ErrQueueFull when the broker nacked it;
// ErrUnconfirmed (also an ErrBrokerUnavailable) when it was sent but ctx ended or
// the connection was lost before the broker answered: it may or may not be queued.
func (c *Client) PublishJob(ctx context.Context, j JobMessage) error {
	s, corr, ch, err := c.register("job-" + j.ID)
	if err != nil {
		return err
	}
	defer s.release(corr)

	now := time.Now()
	headers := amqp.Table{
		HeaderSchema:      int32(SchemaVersion),
		HeaderJobID:       j.ID,
		HeaderRequestID:   j.RequestID,
		HeaderAttempt:     int32(1),
		HeaderPublishedUs: now.UnixMicro(),
	}
	if !j.StartBy.IsZero() {
		headers[HeaderStartBy] = j.StartBy.UnixMilli()
	}
	for k, v := range j.Headers {
		if _, taken := headers[k]; !taken {
			headers[k] = v
		}
	}
	dc, err := s.pub.PublishWithDeferredConfirmWithContext(ctx, "", c.cfg.Jobs.Queue(), true, false, amqp.Publishing{
		ContentType:   contentTypeJSON,
		DeliveryMode:  amqp.Persistent,
		CorrelationId: corr,
		MessageId:     j.ID,
		Timestamp:     now,
		Type:          jobType,
		Headers:       headers,
		Body:          j.Body,
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return unavailable("publish: " + err.Error())
	}
	select {
	case <-dc.Done():
	case <-s.done:
		return unconfirmed("the connection was lost")
	case <-ctx.Done():
		return unconfirmed(ctx.Err().Error())
	}
	if c.cfg.OnConfirm != nil {
		c.cfg.OnConfirm(time.Since(now))
	}
	// A mandatory return arrives before the confirm.
	select {
	case r := <-ch:
		return r.err
	default:
	}
	if !dc.Acked() {
		if s.pub.IsClosed() {
			return unconfirmed("the connection was lost")
		}
		return ErrQueueFull
	}
	return nil
}

// unconfirmed is a publish whose outcome is unknown: sent, but neither confirmed nor
// refused.
func unconfirmed(why string) error {
	return fmt.Errorf("%w: %w: %s", ErrBrokerUnavailable, ErrUnconfirmed, why)
}

// PublishCancel tells the workers connected now that job id was cancelled, so one
// that receives it later skips it. It is a hint: a worker that connects afterwards
// never hears of it (the store keeps the job cancelled regardless).
func (c *Client) PublishCancel(ctx context.Context, id string) error {
	s := c.sess.Load()
	if s == nil {
		return unavailable("not connected")
	}
	return s.pub.PublishWithContext(ctx, c.cfg.Jobs.Cancel(), "", false, false, amqp.Publishing{
		ContentType: "text/plain", Body: []byte(id),
	})
}
