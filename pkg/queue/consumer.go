package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ConsumerConfig configures a [Consumer].
type ConsumerConfig struct {
	DialConfig
	// Queue is the request queue; empty means DefaultQueue.
	Queue string
	// WorkerID is echoed in every reply; required.
	WorkerID string
	// Concurrency is the number of requests handled at once; zero means 4.
	Concurrency int
	// Prefetch is the channel's QoS; zero means Concurrency. A large prefetch parks
	// requests behind a slow one while other workers idle.
	Prefetch int
	// DrainTimeout bounds how long in-flight requests may run after Run's context is
	// cancelled; zero means 20s. When it passes, their contexts are cancelled.
	DrainTimeout time.Duration
	// ReplyCache is how many recent replies are kept to answer a redelivered request
	// without recomputing it; zero means 4096.
	ReplyCache int
	// OnProcessed, if set, is called for every request the handler ran, with the time
	// from a handler taking it to its reply being published and acked. It runs on the
	// handler goroutine and must be cheap.
	OnProcessed func(time.Duration)
}

// Message is a request as a handler sees it.
type Message struct {
	RequestID     string
	CorrelationID string
	Deadline      time.Time
	Redelivered   bool
	Body          []byte
	// Headers are the message headers as received (trace context, among others).
	Headers amqp.Table
	// PublishedAt is the publisher's clock at publish (zero if it did not say);
	// ReceivedAt is this worker's clock when a handler took the message.
	PublishedAt, ReceivedAt time.Time
}

// Trace-context headers copied from a request to its reply, so the caller can
// continue the worker's trace (W3C Trace Context).
var traceHeaders = [...]string{"traceparent", "tracestate"}

// Handler computes the reply body for a request. ctx carries the request's deadline.
// A returned error becomes an error reply (never a requeue); a panic is recovered and
// answered the same way.
type Handler func(ctx context.Context, m *Message) ([]byte, error)

// BadMessageError marks a request the handler could not decode; it is answered with
// ReasonBadMessage instead of ReasonModelError.
type BadMessageError struct{ Err error }

func (e *BadMessageError) Error() string { return "bad message: " + e.Err.Error() }
func (e *BadMessageError) Unwrap() error { return e.Err }

// ConsumerStats are monotonically increasing counters.
type ConsumerStats struct {
	Sessions    uint64 // sessions established (1 + reconnects)
	Received    uint64 // deliveries taken from the buffer by a handler
	Redelivered uint64 // of those, flagged redelivered by the broker
	OK          uint64 // answered with a result
	Failed      uint64 // answered with an error reply (model error, panic, bad message)
	Expired     uint64 // skipped: deadline already passed when taken from the buffer
	TimedOut    uint64 // deadline passed while computing; no reply sent
	Orphaned    uint64 // skipped: redelivered, and the caller's reply queue is gone
	Replayed    uint64 // redelivered after a reply was already sent; the cached reply was resent
	Rejected    uint64 // undecodable without reply_to: rejected without requeue
	Requeued    uint64 // nacked with requeue during a drain (never started)
	ReplyFailed uint64 // reply could not be published (connection lost); broker will redeliver
}

// Consumer consumes the request queue with manual acks, runs Handler with bounded
// concurrency, and replies to each request's reply_to with its correlation id,
// acking only after the reply was published on the same channel.
type Consumer struct {
	cfg     ConsumerConfig
	handler Handler

	pool
	cache *replyCache

	sessions, received, redelivered, ok, failed, expired, timedOut, orphaned,
	replayed, rejected, replyFailed atomic.Uint64
}

// NewConsumer validates cfg.
func NewConsumer(cfg ConsumerConfig, h Handler) (*Consumer, error) {
	cfg.DialConfig.setDefaults("worker")
	if cfg.Queue == "" {
		cfg.Queue = DefaultQueue
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 4
	}
	if cfg.Prefetch == 0 {
		cfg.Prefetch = cfg.Concurrency
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 20 * time.Second
	}
	if cfg.ReplyCache == 0 {
		cfg.ReplyCache = 4096
	}
	errs := []error{cfg.DialConfig.validate()}
	if cfg.Concurrency < 0 || cfg.Prefetch < 0 || cfg.DrainTimeout < 0 || cfg.ReplyCache < 0 {
		errs = append(errs, errors.New("queue: Concurrency, Prefetch, DrainTimeout and ReplyCache must not be negative"))
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
	return &Consumer{cfg: cfg, handler: h, cache: newReplyCache(cfg.ReplyCache)}, nil
}

// Concurrency returns the number of handler slots.
func (c *Consumer) Concurrency() int { return c.cfg.Concurrency }

// Stats returns the consumer's counters.
func (c *Consumer) Stats() ConsumerStats {
	return ConsumerStats{
		Sessions: c.sessions.Load(), Received: c.received.Load(), Redelivered: c.redelivered.Load(),
		OK: c.ok.Load(), Failed: c.failed.Load(), Expired: c.expired.Load(), TimedOut: c.timedOut.Load(),
		Orphaned: c.orphaned.Load(), Replayed: c.replayed.Load(), Rejected: c.rejected.Load(),
		Requeued: c.requeued.Load(), ReplyFailed: c.replyFailed.Load(),
	}
}

// Run consumes until ctx is cancelled, reconnecting as needed, then drains: it
// cancels the subscription, requeues deliveries it has not started, lets in-flight
// requests finish and reply within DrainTimeout, closes the connection and returns.
func (c *Consumer) Run(ctx context.Context) error {
	c.pool.run(ctx, &c.cfg.DialConfig, c.cfg.Concurrency, c.cfg.DrainTimeout, c.handle, c.session)
	return nil
}

// session consumes on one connection. On ctx cancellation it cancels the
// subscription and requeues what it has not handed out, but leaves the connection
// open for in-flight replies and acks; Run closes it after the drain.
func (c *Consumer) session(ctx context.Context, conn *amqp.Connection, gen uint64, jobs chan<- work) error {
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Qos(c.cfg.Prefetch, 0, false); err != nil {
		return fmt.Errorf("qos: %w", err)
	}
	if _, err := declareRequestQueue(ch, c.cfg.Queue); err != nil {
		return err
	}
	tag := fmt.Sprintf("%s g%d", c.cfg.WorkerID, gen)
	deliveries, err := ch.Consume(c.cfg.Queue, tag, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %q: %w", c.cfg.Queue, err)
	}
	c.sessions.Add(1)
	return c.pool.pump(ctx, closed, ch, tag, deliveries, &consumerSession{conn: conn, ch: ch}, jobs)
}

// handle processes one delivery. Acks and replies go to the delivery's own channel,
// so a delivery from an older generation can never ack a newer session's message.
func (c *Consumer) handle(hctx context.Context, w work) {
	d := &w.d
	c.received.Add(1)
	if d.Redelivered {
		c.redelivered.Add(1)
	}
	// The per-request logger is built only when something is logged: no
	// per-request allocation on the hot path.
	log := func() *slog.Logger {
		return c.cfg.Logger.With("request_id", headerString(d.Headers, HeaderRequestID), "correlation_id", d.CorrelationId)
	}

	taken := time.Now()
	msg, bad := decodeRequest(d)
	if bad != nil {
		if d.ReplyTo == "" {
			c.rejected.Add(1)
			log().Warn("rejected undecodable request", "err", bad)
			_ = d.Reject(false)
			return
		}
		c.failed.Add(1)
		log().Warn("undecodable request", "err", bad)
		c.reply(w, errorReply(c.cfg.WorkerID, d.CorrelationId, ReasonBadMessage, bad.Error()), log)
		return
	}
	if !time.Now().Before(msg.Deadline) {
		c.expired.Add(1)
		log().Debug("skipped expired request", "late_by", time.Since(msg.Deadline))
		_ = d.Ack(false)
		return
	}
	key := d.ReplyTo + "\x00" + d.CorrelationId
	if d.Redelivered {
		if p, ok := c.cache.get(key); ok {
			c.replayed.Add(1)
			log().Debug("resent cached reply for redelivered request")
			c.reply(w, p, log)
			return
		}
		if gone, err := c.replyQueueGone(w.sess, d.ReplyTo); err == nil && gone {
			c.orphaned.Add(1)
			log().Debug("skipped redelivered request: caller's reply queue is gone")
			_ = d.Ack(false)
			return
		}
	}

	msg.ReceivedAt = taken
	if c.cfg.OnProcessed != nil {
		defer func() { c.cfg.OnProcessed(time.Since(taken)) }()
	}
	ctx, cancel := context.WithDeadline(hctx, msg.Deadline)
	body, err := call(ctx, c.cfg.Logger, c.handler, msg)
	cancel()
	var p amqp.Publishing
	switch {
	case err == nil:
		c.ok.Add(1)
		h := amqp.Table{
			HeaderSchema: int32(SchemaVersion), HeaderStatus: StatusOK, HeaderWorker: c.cfg.WorkerID,
			HeaderRequestID: msg.RequestID, HeaderReceivedUs: taken.UnixMicro(),
			HeaderComputeUs: time.Since(taken).Microseconds(), HeaderSlots: int32(c.cfg.Concurrency),
		}
		for _, k := range traceHeaders {
			if v, ok := d.Headers[k]; ok {
				h[k] = v
			}
		}
		p = amqp.Publishing{
			ContentType:   contentTypeJSON,
			CorrelationId: d.CorrelationId,
			Type:          replyType,
			Headers:       h,
			Body:          body,
		}
	case errors.Is(err, context.DeadlineExceeded) && !time.Now().Before(msg.Deadline):
		// The caller has already answered 504; a reply would be dropped as late.
		c.timedOut.Add(1)
		log().Debug("deadline passed while computing")
		_ = d.Ack(false)
		return
	default:
		c.failed.Add(1)
		reason := ReasonModelError
		var bm *BadMessageError
		if errors.As(err, &bm) {
			reason = ReasonBadMessage
		}
		log().Warn("request failed", "err", err, "reason", reason)
		p = errorReply(c.cfg.WorkerID, d.CorrelationId, reason, err.Error())
	}
	if d.ReplyTo != "" {
		c.cache.put(key, p)
	}
	c.reply(w, p, log)
}

// call runs h, turning a panic into an error (logged with its stack).
func call(ctx context.Context, log *slog.Logger, h Handler, m *Message) (body []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("handler panicked", "panic", r, "stack", string(debug.Stack()),
				"request_id", m.RequestID, "correlation_id", m.CorrelationID)
			body, err = nil, fmt.Errorf("worker panicked: %v", r)
		}
	}()
	return h(ctx, m)
}

// reply publishes p to the delivery's reply_to on the delivery's channel, then acks.
// Without reply_to there is nobody to answer: the delivery is just acked.
func (c *Consumer) reply(w work, p amqp.Publishing, log func() *slog.Logger) {
	d := &w.d
	if d.ReplyTo != "" {
		// Never mandatory: on RabbitMQ 3.x a mandatory publish to a direct reply-to name
		// is delivered and also returned as NO_ROUTE. A reply for a caller that is gone
		// is dropped by the broker, which is what we want.
		if err := w.sess.ch.PublishWithContext(context.Background(), "", d.ReplyTo, false, false, p); err != nil {
			c.replyFailed.Add(1)
			log().Debug("reply not published; the broker will redeliver the request", "err", err)
			return
		}
	}
	_ = d.Ack(false)
}

// replyQueueGone checks, for a redelivered request only, whether its caller's reply
// queue still exists. A passive declare of another connection's exclusive queue
// answers 405 RESOURCE_LOCKED (alive) or 404 NOT_FOUND (gone); both close the
// channel, so each probe uses a channel of its own. Direct reply-to names cannot be
// probed and count as alive.
func (c *Consumer) replyQueueGone(s *consumerSession, replyTo string) (bool, error) {
	if replyTo == "" || strings.HasPrefix(replyTo, directReplyPrefix) {
		return false, nil
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return false, err
	}
	defer ch.Close()
	_, err = ch.QueueDeclarePassive(replyTo, false, false, true, false, nil)
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.NotFound {
		return true, nil
	}
	if err != nil && !(errors.As(err, &ae) && ae.Code == amqp.ResourceLocked) {
		return false, err
	}
	return false, nil
}

func decodeRequest(d *amqp.Delivery) (*Message, error) {
	v, ok := headerInt64(d.Headers, HeaderSchema)
	if !ok {
		return nil, fmt.Errorf("missing %s header", HeaderSchema)
	}
	if v != SchemaVersion {
		return nil, fmt.Errorf("unsupported message schema %d (this worker speaks %d)", v, SchemaVersion)
	}
	ms, ok := headerInt64(d.Headers, HeaderDeadline)
	if !ok {
		return nil, fmt.Errorf("missing %s header", HeaderDeadline)
	}
	m := &Message{
		RequestID:     headerString(d.Headers, HeaderRequestID),
		CorrelationID: d.CorrelationId,
		Deadline:      time.UnixMilli(ms),
		Redelivered:   d.Redelivered,
		Body:          d.Body,
		Headers:       d.Headers,
	}
	if us, ok := headerInt64(d.Headers, HeaderPublishedUs); ok {
		m.PublishedAt = time.UnixMicro(us)
	}
	return m, nil
}

func errorReply(worker, corr, reason, msg string) amqp.Publishing {
	return amqp.Publishing{
		ContentType:   "text/plain",
		CorrelationId: corr,
		Type:          replyType,
		Headers:       amqp.Table{HeaderSchema: int32(SchemaVersion), HeaderStatus: StatusError, HeaderReason: reason, HeaderWorker: worker},
		Body:          []byte(msg),
	}
}

// replyCache remembers recent replies by reply_to+correlation id, so a request
// redelivered after its reply was published (the ack was lost with the connection)
// is answered again with the same bytes instead of being computed twice.
type replyCache struct {
	mu   sync.Mutex
	max  int
	m    map[string]amqp.Publishing
	ring []string
	next int
}

func newReplyCache(n int) *replyCache {
	return &replyCache{max: n, m: make(map[string]amqp.Publishing, n), ring: make([]string, n)}
}

func (r *replyCache) put(k string, p amqp.Publishing) {
	if r.max == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := r.ring[r.next]; old != "" {
		delete(r.m, old)
	}
	r.ring[r.next] = k
	r.m[k] = p
	r.next = (r.next + 1) % r.max
}

func (r *replyCache) get(k string) (amqp.Publishing, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.m[k]
	return p, ok
}
