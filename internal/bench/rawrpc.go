package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// directReplyTo is RabbitMQ's pseudo-queue for direct reply-to.
const directReplyTo = "amq.rabbitmq.reply-to"

// rawReply is the fixed answer of the raw responders: about the size of a
// worker's answer, so the broker moves comparable bytes.
var rawReply = []byte(`{"status":"Input logged successfully","model_prediction":{"prediction":"positive","confidence":0.87}}`)

// DeclareQueue declares the non-durable request queue name on the broker at url.
func DeclareQueue(url, name string) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer func() { _ = conn.Close() }()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("channel: %w", err)
	}
	if _, err := ch.QueueDeclare(name, false, false, false, false, nil); err != nil {
		return fmt.Errorf("declare %s: %w", name, err)
	}
	return nil
}

// Responders answer raw RPC requests on one queue: each responder has its own
// connection and channel, consumes with manual acks and the given prefetch,
// publishes the reply to the request's reply-to with its correlation id on the
// channel it consumes on, then acks. They run until Close.
type Responders struct {
	conns []*amqp.Connection
	wg    sync.WaitGroup
}

// StartResponders starts n responders on queue at url.
func StartResponders(url, queue string, n, prefetch int) (*Responders, error) {
	r := &Responders{}
	for range n {
		conn, err := amqp.Dial(url)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("responder dial: %w", err)
		}
		r.conns = append(r.conns, conn)
		ch, err := conn.Channel()
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("responder channel: %w", err)
		}
		if err := ch.Qos(prefetch, 0, false); err != nil {
			r.Close()
			return nil, fmt.Errorf("responder qos: %w", err)
		}
		deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("responder consume: %w", err)
		}
		r.wg.Go(func() { respond(ch, deliveries) })
	}
	return r, nil
}

func respond(ch *amqp.Channel, deliveries <-chan amqp.Delivery) {
	ctx := context.Background()
	for d := range deliveries {
		if d.ReplyTo != "" {
			err := ch.PublishWithContext(ctx, "", d.ReplyTo, false, false, amqp.Publishing{
				ContentType:   "application/json",
				CorrelationId: d.CorrelationId,
				Body:          rawReply,
			})
			if err != nil {
				return
			}
		}
		if err := d.Ack(false); err != nil {
			return
		}
	}
}

// Close closes the responders' connections and waits for their loops.
func (r *Responders) Close() {
	for _, c := range r.conns {
		_ = c.Close()
	}
	r.wg.Wait()
}

// RawClient is the client side of the raw RPC loop: a few connections, each
// with one channel that consumes direct reply-to (no-ack) and publishes the
// requests of its share of the callers. Replies are routed back to the caller
// by correlation id "<slot>.<seq>", where slot indexes the caller's reply
// channel on that connection (a demux table without a lock).
type RawClient struct {
	url, queue string
	confirms   bool
	conns      []*rawConn
}

type rawConn struct {
	conn   *amqp.Connection
	ch     *amqp.Channel
	mu     sync.Mutex
	slots  []chan uint64
	closed chan struct{}
}

// NewRawClient dials conns connections to url for requests to queue; with
// confirms the request publishes use publisher confirms (awaited
// asynchronously through deferred confirmations, alongside the reply).
func NewRawClient(url, queue string, conns int, confirms bool) (*RawClient, error) {
	c := &RawClient{url: url, queue: queue, confirms: confirms}
	for range conns {
		conn, err := amqp.Dial(url)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("client dial: %w", err)
		}
		rc := &rawConn{conn: conn, closed: make(chan struct{})}
		c.conns = append(c.conns, rc)
		if rc.ch, err = conn.Channel(); err != nil {
			c.Close()
			return nil, fmt.Errorf("client channel: %w", err)
		}
		if confirms {
			if err := rc.ch.Confirm(false); err != nil {
				c.Close()
				return nil, fmt.Errorf("client confirm: %w", err)
			}
		}
		// Direct reply-to: consume (no-ack) before publishing on this channel.
		replies, err := rc.ch.Consume(directReplyTo, "", true, false, false, false, nil)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("client consume reply-to: %w", err)
		}
		go rc.demux(replies)
	}
	return c, nil
}

func (rc *rawConn) demux(replies <-chan amqp.Delivery) {
	defer close(rc.closed)
	for d := range replies {
		slotStr, seqStr, ok := strings.Cut(d.CorrelationId, ".")
		if !ok {
			continue
		}
		slot, err1 := strconv.Atoi(slotStr)
		seq, err2 := strconv.ParseUint(seqStr, 10, 64)
		rc.mu.Lock()
		valid := err1 == nil && err2 == nil && slot >= 0 && slot < len(rc.slots)
		var sink chan uint64
		if valid {
			sink = rc.slots[slot]
		}
		rc.mu.Unlock()
		if sink == nil {
			continue
		}
		// One call per slot is outstanding, so only the newest sequence number can
		// matter: keep the larger of the buffered one and this one, never drop the
		// current reply behind a stale one (or the other way round).
		for sent := false; !sent; {
			select {
			case sink <- seq:
				sent = true
			default:
				select {
				case old := <-sink:
					seq = max(seq, old)
				default:
				}
			}
		}
	}
}

// Caller returns the CallFunc factory for RunClosedLoop: caller i uses
// connection i mod len(conns), so each connection carries an equal share.
func (c *RawClient) Caller() func(i int) CallFunc {
	return func(i int) CallFunc {
		rc := c.conns[i%len(c.conns)]
		mine := make(chan uint64, 1)
		rc.mu.Lock()
		slot := len(rc.slots)
		rc.slots = append(rc.slots, mine)
		rc.mu.Unlock()

		prefix := strconv.Itoa(slot) + "."
		bodyPrefix := `{"data":"raw-` + strconv.Itoa(i) + `-`
		const bodySuffix = `","forward_to_model":true}`
		var (
			seq  uint64
			corr = make([]byte, 0, 32)
			body = make([]byte, 0, 128)
		)
		return func(ctx context.Context) string {
			seq++
			corr = strconv.AppendUint(append(corr[:0], prefix...), seq, 10)
			body = strconv.AppendUint(append(body[:0], bodyPrefix...), seq, 10)
			body = append(body, bodySuffix...)
			msg := amqp.Publishing{
				ContentType:   "application/json",
				CorrelationId: string(corr),
				ReplyTo:       directReplyTo,
				Body:          body,
			}
			var dc *amqp.DeferredConfirmation
			var err error
			if c.confirms {
				dc, err = rc.ch.PublishWithDeferredConfirmWithContext(ctx, "", c.queue, false, false, msg)
			} else {
				err = rc.ch.PublishWithContext(ctx, "", c.queue, false, false, msg)
			}
			if err != nil {
				if ctx.Err() != nil {
					return "canceled"
				}
				return "publish-error"
			}
			for {
				select {
				case got := <-mine:
					if got != seq {
						continue // stale
					}
				case <-rc.closed:
					return "conn-closed"
				case <-ctx.Done():
					return "canceled"
				}
				break
			}
			if dc != nil {
				acked, err := dc.WaitContext(ctx)
				switch {
				case errors.Is(err, context.Canceled), ctx.Err() != nil:
					return "canceled"
				case err != nil:
					return "confirm-error"
				case !acked:
					return "nack"
				}
			}
			return ""
		}
	}
}

// Close closes the client's connections.
func (c *RawClient) Close() {
	for _, rc := range c.conns {
		_ = rc.conn.Close()
	}
}
