package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warren-farm/warren/pkg/tracing"
)

// Defaults of [ConsumerConfig] and [RouteConfig].
const (
	DefaultConcurrency  = 4
	DefaultDrainTimeout = 20 * time.Second
	DefaultReplyCache   = 4096
)

// RouteConfig is one model version a consumer serves.
type RouteConfig struct {
	Route Route
	// Handler answers the route's messages; it is wrapped in the consumer's
	// Middleware.
	Handler Handler
	// Concurrency is the number of the route's messages handled at once; zero means
	// DefaultConcurrency.
	Concurrency int
	// Prefetch is the route channel's QoS; zero means Concurrency. A large prefetch
	// parks requests behind a slow one while other workers idle.
	Prefetch int
	// Disabled routes are not consumed until Enable is called for them (a model
	// still loading): the consumer runs the others meanwhile.
	Disabled bool
}

// ConsumerConfig configures a [Consumer].
type ConsumerConfig struct {
	DialConfig
	// WorkerID is echoed in every reply; required.
	WorkerID string
	// Routes are the model versions consumed: each has its request queue, its own
	// channel, prefetch and handler goroutines on the consumer's one connection.
	Routes []RouteConfig
	// Middleware wraps every route's handler, the first outermost. [Standard] is the
	// chain a worker wants; nil means none (no deadline on the handler's context!).
	Middleware []Middleware
	// DrainTimeout bounds how long in-flight requests may run after Run's context is
	// cancelled; zero means DefaultDrainTimeout. When it passes, their contexts are
	// cancelled.
	DrainTimeout time.Duration
	// ReplyCache is how many recent replies are kept to answer a redelivered request
	// without recomputing it; zero means DefaultReplyCache.
	ReplyCache int
}

// Standard is the middleware chain a worker runs every message through: observe
// (when observe is not nil), the deadline check at dequeue, trace context and spans
// (when tracing is enabled), and panic recovery around the model.
func Standard(log *slog.Logger, tr *tracing.Tracing, observe func(*Message, Outcome, time.Duration)) []Middleware {
	var mw []Middleware
	if observe != nil {
		mw = append(mw, Observe(observe))
	}
	mw = append(mw, CheckDeadline())
	if tr.Enabled() {
		mw = append(mw, Trace(tr))
	}
	return append(mw, Recover(log))
}

// ConsumerStats are monotonically increasing counters (of one route, or of all).
type ConsumerStats struct {
	Received    uint64 `json:"received"`     // deliveries taken from the buffer by a handler
	Redelivered uint64 `json:"redelivered"`  // of those, flagged redelivered by the broker
	OK          uint64 `json:"ok"`           // answered with a result
	Failed      uint64 `json:"failed"`       // answered with an error reply (model error, bad input, panic, bad message)
	Expired     uint64 `json:"expired"`      // skipped: deadline already passed when taken from the buffer
	TimedOut    uint64 `json:"timed_out"`    // deadline passed while computing; no reply sent
	Orphaned    uint64 `json:"orphaned"`     // skipped: redelivered, and the caller's reply queue is gone
	Replayed    uint64 `json:"replayed"`     // redelivered after a reply was already sent; the cached reply was resent
	Rejected    uint64 `json:"rejected"`     // undecodable without reply_to: rejected without requeue
	Requeued    uint64 `json:"requeued"`     // nacked with requeue during a drain (never started)
	ReplyFailed uint64 `json:"reply_failed"` // reply could not be published (connection lost); broker will redeliver
}

func (c *counters) consumerStats() ConsumerStats {
	return ConsumerStats{
		Received: c.received.Load(), Redelivered: c.redelivered.Load(), OK: c.ok.Load(), Failed: c.failed.Load(),
		Expired: c.expired.Load(), TimedOut: c.timedOut.Load(), Orphaned: c.orphaned.Load(),
		Replayed: c.replayed.Load(), Rejected: c.rejected.Load(), Requeued: c.requeued.Load(),
		ReplyFailed: c.replyFailed.Load(),
	}
}

func (s *ConsumerStats) add(o ConsumerStats) {
	s.Received += o.Received
	s.Redelivered += o.Redelivered
	s.OK += o.OK
	s.Failed += o.Failed
	s.Expired += o.Expired
	s.TimedOut += o.TimedOut
	s.Orphaned += o.Orphaned
	s.Replayed += o.Replayed
	s.Rejected += o.Rejected
	s.Requeued += o.Requeued
	s.ReplyFailed += o.ReplyFailed
}

// Consumer consumes the request queues of its routes with manual acks, runs each
// route's handler with bounded concurrency, and replies to each request's reply_to
// with its correlation id, acking only after the reply was published on the same
// channel.
type Consumer struct {
	cfg ConsumerConfig
	pool
	cache *replyCache
}

// NewConsumer validates cfg.
func NewConsumer(cfg ConsumerConfig) (*Consumer, error) {
	cfg.DialConfig.setDefaults("worker")
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.ReplyCache == 0 {
		cfg.ReplyCache = DefaultReplyCache
	}
	routes := make([]*routeSlots, len(cfg.Routes))
	for i, r := range cfg.Routes {
		if r.Concurrency == 0 {
			r.Concurrency = DefaultConcurrency
		}
		routes[i] = &routeSlots{route: r.Route, queue: r.Route.RequestQueue(), concurrency: r.Concurrency,
			prefetch: r.Prefetch}
		routes[i].enabled.Store(!r.Disabled)
		if r.Handler != nil {
			routes[i].handler = Chain(r.Handler, cfg.Middleware...)
		}
	}
	errs := []error{cfg.DialConfig.validate(), checkRoutes(routes, true)}
	if cfg.DrainTimeout < 0 || cfg.ReplyCache < 0 {
		errs = append(errs, errors.New("queue: DrainTimeout and ReplyCache must not be negative"))
	}
	if cfg.WorkerID == "" {
		errs = append(errs, errors.New("queue: WorkerID is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Consumer{cfg: cfg, pool: newPool(routes), cache: newReplyCache(cfg.ReplyCache)}, nil
}

// Enable starts consuming route r (a Disabled route), in the current session if
// there is one and in every later one. It reports whether the consumer has r.
func (c *Consumer) Enable(r Route) bool { return c.enable(r.RequestQueue()) }

// Concurrency returns route r's handler slots (0 for a route it does not serve).
func (c *Consumer) Concurrency(r Route) int {
	if rs := c.route(r.RequestQueue()); rs != nil {
		return rs.concurrency
	}
	return 0
}

// InFlightOf returns the number of route r's requests being handled.
func (c *Consumer) InFlightOf(r Route) int {
	if rs := c.route(r.RequestQueue()); rs != nil {
		return int(rs.inflight.Load())
	}
	return 0
}

// Stats returns the counters summed over every route.
func (c *Consumer) Stats() ConsumerStats {
	var s ConsumerStats
	for _, rs := range c.routes {
		s.add(rs.consumerStats())
	}
	return s
}

// RouteStats returns route r's counters.
func (c *Consumer) RouteStats(r Route) ConsumerStats {
	if rs := c.route(r.RequestQueue()); rs != nil {
		return rs.consumerStats()
	}
	return ConsumerStats{}
}

// Sessions returns how many sessions were established (1 + reconnects).
func (c *Consumer) Sessions() uint64 { return c.sessions.Load() }

// Run consumes until ctx is cancelled, reconnecting as needed, then drains: it
// cancels the subscriptions, requeues deliveries it has not started, lets in-flight
// requests finish and reply within DrainTimeout, closes the connection and returns.
func (c *Consumer) Run(ctx context.Context) error {
	c.pool.run(ctx, &c.cfg.DialConfig, c.cfg.DrainTimeout, c.handle, c.session)
	return nil
}

// session consumes every route on one connection, each on a channel of its own.
func (c *Consumer) session(ctx context.Context, conn *amqp.Connection, gen uint64) error {
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	sub := subscriberOf(conn,
		func(rs *routeSlots) string { return fmt.Sprintf("%s %s g%d", c.cfg.WorkerID, rs.route, gen) },
		func(rs *routeSlots, _ *amqp.Channel) error {
			_, err := declareRequestQueue(conn, rs.queue, c.cfg.RequestQueueType, c.cfg.Logger)
			return err
		},
		plainSession(conn))
	return c.pool.pumpAll(ctx, conn, closed, sub)
}

// handle processes one delivery. Acks and replies go to the delivery's own channel,
// so a delivery from an older generation can never ack a newer session's message.
func (c *Consumer) handle(hctx context.Context, w work) {
	d, rs := &w.d, w.rs
	rs.received.Add(1)
	if d.Redelivered {
		rs.redelivered.Add(1)
	}
	// The per-request logger is built only when something is logged: no
	// per-request allocation on the hot path.
	log := func() *slog.Logger {
		return c.cfg.Logger.With("request_id", requestID(d), "correlation_id", d.CorrelationId, "queue", rs.queue)
	}

	taken := time.Now()
	msg, bad := decodeRequest(d, rs)
	if bad != nil {
		if d.ReplyTo == "" {
			rs.rejected.Add(1)
			log().Warn("rejected undecodable request", "err", bad)
			_ = d.Reject(false)
			return
		}
		rs.failed.Add(1)
		log().Warn("undecodable request", "err", bad)
		c.reply(w, errorReply(c.cfg.WorkerID, d.CorrelationId, ReasonBadMessage, bad.Error()), log)
		return
	}
	key := d.ReplyTo + "\x00" + d.CorrelationId
	if d.Redelivered {
		if p, ok := c.cache.get(key); ok {
			rs.replayed.Add(1)
			log().Debug("resent cached reply for redelivered request")
			c.reply(w, p, log)
			return
		}
		if gone, err := replyQueueGone(w.sess, d.ReplyTo); err == nil && gone {
			rs.orphaned.Add(1)
			log().Debug("skipped redelivered request: caller's reply queue is gone")
			_ = d.Ack(false)
			return
		}
	}

	msg.ReceivedAt = taken
	body, err := rs.handler(hctx, msg)
	var p amqp.Publishing
	switch outcome, reason := Classify(err, msg.Deadline, time.Now()); outcome {
	case OutcomeOK:
		rs.ok.Add(1)
		p = amqp.Publishing{
			ContentType:   contentTypeJSON,
			CorrelationId: d.CorrelationId,
			Type:          replyType,
			Headers: amqp.Table{
				HeaderSchema: int32(SchemaVersion), HeaderStatus: StatusOK, HeaderWorker: c.cfg.WorkerID,
				HeaderReceivedUs: taken.UnixMicro(),
				HeaderComputeUs:  time.Since(taken).Microseconds(), HeaderSlots: int32(rs.concurrency),
			},
			Body: body,
		}
	case OutcomeExpired:
		rs.expired.Add(1)
		log().Debug("skipped expired request", "late_by", time.Since(msg.Deadline))
		_ = d.Ack(false)
		return
	case OutcomeTimedOut:
		// The caller has already answered 504; a reply would be dropped as late.
		rs.timedOut.Add(1)
		log().Debug("deadline passed while computing")
		_ = d.Ack(false)
		return
	default:
		rs.failed.Add(1)
		log().Warn("request failed", "err", err, "reason", reason)
		p = errorReply(c.cfg.WorkerID, d.CorrelationId, reason, err.Error())
	}
	if d.ReplyTo != "" {
		c.cache.put(key, p)
	}
	c.reply(w, p, log)
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
			w.rs.replyFailed.Add(1)
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
func replyQueueGone(s *consumerSession, replyTo string) (bool, error) {
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

// requestID is a request's id: its message id, which the API sets; an
// HeaderRequestID header (older APIs, raw clients) wins.
func requestID(d *amqp.Delivery) string {
	if id := headerString(d.Headers, HeaderRequestID); id != "" {
		return id
	}
	return d.MessageId
}

func decodeRequest(d *amqp.Delivery, rs *routeSlots) (*Message, error) {
	if err := checkSchema(d.Headers); err != nil {
		return nil, err
	}
	ms, ok := headerInt64(d.Headers, HeaderDeadline)
	if !ok {
		return nil, fmt.Errorf("missing %s header", HeaderDeadline)
	}
	m := &Message{
		Route:         rs.route,
		Queue:         rs.queue,
		RequestID:     requestID(d),
		CorrelationID: d.CorrelationId,
		Deadline:      time.UnixMilli(ms),
		Redelivered:   d.Redelivered,
		Body:          d.Body,
		Headers:       textHeaders(d.Headers),
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
