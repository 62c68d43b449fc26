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
	"go.opentelemetry.io/otel/attribute"

	"github.com/warren-farm/warren/pkg/tracing"
)

// DefaultConsumerRefresh is how often a [Client] re-reads the consumer counts of the
// request queues it watches.
const DefaultConsumerRefresh = 200 * time.Millisecond

// ClientConfig configures a [Client].
type ClientConfig struct {
	DialConfig
	// ConsumerRefresh is how often the consumer count of every watched request queue
	// is re-read (a passive declare on a dedicated channel); zero means
	// DefaultConsumerRefresh. "No workers" is at most this stale.
	ConsumerRefresh time.Duration
	// OnConfirm, if set, is called with the publish → confirm latency of every
	// request the broker confirmed (acked or nacked). It runs on the calling
	// goroutine (or, for a confirm that comes after the reply, on a goroutine of
	// its own) and must be cheap and safe for concurrent use.
	OnConfirm func(Route, time.Duration)
	// Tracing, if enabled, wraps every call in a producer span "publish <queue>"
	// and sends its W3C trace context in the message headers.
	Tracing *tracing.Tracing
}

// Request is one sync call.
type Request struct {
	// Route is the model version to call.
	Route Route
	// RequestID travels as the message id and the x-request-id header.
	RequestID string
	// Body is the JSON payload (a v2 inference request).
	Body []byte
	// Deadline is required: it becomes the message expiration and the absolute
	// deadline header. Call also stops waiting when ctx ends.
	Deadline time.Time
	// Headers are extra message headers; optional.
	Headers Headers
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
	Slots          int           // worker: the route's handler slots there; 0 if not reported
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
	seq      atomic.Uint64
	unknown  atomic.Uint64
	returned atomic.Uint64
	sessions atomic.Uint64
	stopped  atomic.Bool

	wmu     sync.RWMutex
	watched map[string]*atomic.Int64 // request queue → consumer count, -1 unknown
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
	if cfg.ConsumerRefresh == 0 {
		cfg.ConsumerRefresh = DefaultConsumerRefresh
	}
	if err := cfg.DialConfig.validate(); err != nil {
		return nil, err
	}
	if cfg.ConsumerRefresh < 0 {
		return nil, errors.New("queue: ConsumerRefresh must be positive")
	}
	return &Client{cfg: cfg, watched: map[string]*atomic.Int64{}}, nil
}

// Watch makes the client keep route r's consumer count fresh (see Workers). Calls
// to a route watch it too; watching ahead of the first call (when a model is
// announced) gives that call a fresh count.
func (c *Client) Watch(r Route) { c.counter(r.RequestQueue()) }

func (c *Client) counter(q string) *atomic.Int64 {
	c.wmu.RLock()
	n, ok := c.watched[q]
	c.wmu.RUnlock()
	if ok {
		return n
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if n, ok = c.watched[q]; !ok {
		n = &atomic.Int64{}
		n.Store(-1)
		c.watched[q] = n
	}
	return n
}

// Workers returns the consumer count of route r's request queue as last read, or -1
// while unknown (not connected, or not read yet).
func (c *Client) Workers(r Route) int {
	if c.sess.Load() == nil {
		return -1
	}
	c.wmu.RLock()
	n, ok := c.watched[r.RequestQueue()]
	c.wmu.RUnlock()
	if !ok {
		return -1
	}
	return int(n.Load())
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
	st := State{EverConnected: c.ever.Load(), Connected: s != nil}
	if s != nil {
		st.Blocked = s.blocked.Load()
	}
	return st
}

// Stats returns the client's counters.
func (c *Client) Stats() ClientStats {
	return ClientStats{Sessions: c.sessions.Load(), UnknownReplies: c.unknown.Load(), Returned: c.returned.Load()}
}

// Call publishes req to its route's request queue and waits for the reply. It
// returns ErrNoWorkers, ErrQueueFull or ErrBrokerUnavailable (wrapped) without
// waiting when the farm cannot take the request; a *RemoteError for a worker's
// error reply; ctx's error when ctx ends first; and context.DeadlineExceeded when
// req.Deadline passes.
func (c *Client) Call(ctx context.Context, req Request) (_ *Reply, err error) {
	if req.Deadline.IsZero() {
		return nil, errors.New("queue: request without deadline")
	}
	q := req.Route.RequestQueue()
	workers := c.counter(q)
	s, corr, ch, err := c.register()
	if err != nil {
		return nil, err
	}
	defer s.release(corr)
	if workers.Load() == 0 {
		return nil, ErrNoWorkers
	}
	timer := time.NewTimer(time.Until(req.Deadline))
	defer timer.Stop()

	now := time.Now()
	// Only what the worker needs travels as headers: each one costs an encode here,
	// a parse in the broker and a decode in the worker (BENCHMARKS.md, the
	// ablation). The request id is the message id; the route is the queue's name.
	headers := amqp.Table{
		HeaderSchema:      int32(SchemaVersion),
		HeaderDeadline:    req.Deadline.UnixMilli(),
		HeaderPublishedUs: now.UnixMicro(),
	}
	for k, v := range req.Headers {
		if _, taken := headers[k]; !taken {
			headers[k] = v
		}
	}
	if tr := c.cfg.Tracing; tr.Enabled() {
		var end func(error)
		ctx, end = startPublishSpan(ctx, tr, q, headers, attribute.String("warren.request_id", req.RequestID))
		defer func() { end(err) }()
	}
	dc, err := s.pub.PublishWithDeferredConfirmWithContext(ctx, "", q, true, false, amqp.Publishing{
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
			// The confirm is usually in by now, but select picks among ready
			// cases at random: count it rather than return past it. A reply can
			// also overtake its confirm (they travel on different channels): that
			// confirm is counted when it comes, off the caller's path.
			if confirmed != nil && c.cfg.OnConfirm != nil {
				select {
				case <-confirmed:
					c.cfg.OnConfirm(req.Route, time.Since(now))
				default:
					go func() {
						select {
						case <-confirmed:
							if dc.Acked() || !s.pub.IsClosed() {
								c.cfg.OnConfirm(req.Route, time.Since(now))
							}
						case <-s.done:
						}
					}()
				}
			}
			if r.reply != nil {
				r.reply.Timing.Published = now
			}
			err = r.err
			return r.reply, r.err
		case <-confirmed:
			confirmed = nil
			if c.cfg.OnConfirm != nil {
				c.cfg.OnConfirm(req.Route, time.Since(now))
			}
			if !dc.Acked() {
				if s.pub.IsClosed() {
					err = unavailable("connection lost before the publish was confirmed")
				} else {
					err = ErrQueueFull
				}
				return nil, err
			}
		case <-s.done:
			// A reply may have raced the session's end.
			select {
			case r := <-ch:
				if r.reply != nil {
					r.reply.Timing.Published = now
				}
				err = r.err
				return r.reply, r.err
			default:
			}
			err = unavailable("connection lost while waiting for the reply")
			return nil, err
		case <-timer.C:
			err = context.DeadlineExceeded
			return nil, err
		case <-ctx.Done():
			err = ctx.Err()
			return nil, err
		}
	}
}

// register checks that a publish can be attempted now and registers a waiter for
// its reply or mandatory return under a new correlation id. The caller must
// release it.
func (c *Client) register() (*clientSession, string, chan result, error) {
	s := c.sess.Load()
	switch {
	case s == nil && c.stopped.Load():
		return nil, "", nil, ErrClosed
	case s == nil:
		return nil, "", nil, unavailable("not connected")
	case s.blocked.Load():
		return nil, "", nil, unavailable("broker is blocking publishers (memory or disk alarm)")
	}
	corr := s.prefix + strconv.FormatUint(c.seq.Add(1), 36)
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

	monitor, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	c.refreshConsumers(monitor, conn) // fresh counts before the first call of this generation

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
				c.cfg.Logger.Debug("dropped reply for no waiting call", "correlation_id", d.CorrelationId)
			}
		}
	}()
	go func() { // mandatory returns: the request queue does not exist
		defer wg.Done()
		for r := range returns {
			c.returned.Add(1)
			s.deliver(r.CorrelationId, result{err: fmt.Errorf("%w: queue %q does not exist (%s)", ErrNoWorkers, r.RoutingKey, r.ReplyText)})
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
	go func() { // consumer counts of the watched request queues
		defer wg.Done()
		c.monitorConsumers(monitor, conn, stopMonitor)
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
	s.mu.Lock()
	s.pending = nil
	s.mu.Unlock()
	close(s.done)
	close(stopMonitor)
	_ = conn.Close() // closes every channel and so every chan the goroutines range over
	wg.Wait()
	return cause
}

// monitorConsumers refreshes the watched queues' consumer counts every
// ConsumerRefresh until stop is closed.
func (c *Client) monitorConsumers(ch *amqp.Channel, conn *amqp.Connection, stop <-chan struct{}) {
	t := time.NewTicker(c.cfg.ConsumerRefresh)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		ch = c.refreshConsumers(ch, conn)
	}
}

// refreshConsumers reads every watched queue's consumer count with a passive
// declare. A queue that does not exist is declared (durable, classic, no arguments,
// as the workers declare it), so that its count reads 0 from then on instead of
// closing the monitor channel every time; a failed declare closes the channel,
// which is then replaced. It returns the channel to use next.
func (c *Client) refreshConsumers(ch *amqp.Channel, conn *amqp.Connection) *amqp.Channel {
	c.wmu.RLock()
	queues := make(map[string]*atomic.Int64, len(c.watched))
	for q, n := range c.watched {
		queues[q] = n
	}
	c.wmu.RUnlock()
	for q, n := range queues {
		if ch == nil || ch.IsClosed() {
			var err error
			if ch, err = conn.Channel(); err != nil {
				return nil // the connection is going away; the session notices
			}
		}
		st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		if err != nil {
			n.Store(0)
			var ae *amqp.Error
			if errors.As(err, &ae) && ae.Code == amqp.NotFound {
				if _, err := declareRequestQueue(conn, q, c.cfg.RequestQueueType, c.cfg.Logger); err != nil {
					c.cfg.Logger.Warn("declare request queue", "queue", q, "err", err)
				}
			}
			continue
		}
		n.Store(int64(st.Consumers))
	}
	return ch
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
