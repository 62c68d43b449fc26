package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// RetypeResult is what [RetypeRequestQueue] did.
type RetypeResult struct {
	// Converted is true when the queue had the other type and now has the one
	// asked for; false when it already had it (or did not exist and was declared).
	Converted bool
	// Waited is how long the queue took to have no ready message.
	Waited time.Duration
	// Gap is the time between the old queue's deletion and the new one's
	// declaration: publishes in it are returned unroutable (503 no_workers).
	Gap time.Duration
}

// RetypeRequestQueue converts the sync request queue name to typ ([QueueTypeClassic]
// or [QueueTypeQuorum]) on a live farm. A queue's type is fixed when it is declared,
// so the queue is deleted and declared again: once it holds no ready message (the
// delete is if-empty, retried every 20 ms until ctx ends; a quorum queue refuses
// if-empty, so converting one back reads its ready count and then deletes it), and
// the new declaration follows on the same channel at once. The workers' consumers are cancelled by the
// delete and subscribe again to the new queue; requests they hold at that moment
// are still answered (replies do not go through the request queue). Set
// REQUEST_QUEUE_TYPE to typ on every replica first, or a worker that reconnects
// in the gap may declare the old type again (the next call then converts again).
//
// It needs no management API: cfg's first URL is dialled. A queue that does not
// exist is declared as typ.
func RetypeRequestQueue(ctx context.Context, cfg DialConfig, name, typ string) (RetypeResult, error) {
	var res RetypeResult
	cfg.RequestQueueType = typ
	cfg.setDefaults("retype")
	if err := cfg.validate(); err != nil {
		return res, err
	}
	if typ == "" {
		return res, errors.New("queue: RetypeRequestQueue needs a type")
	}
	if !strings.HasPrefix(name, RequestQueuePrefix) {
		return res, fmt.Errorf("queue: %q is not a request queue (%s…)", name, RequestQueuePrefix)
	}
	conn, err := dial(&cfg, SplitURLs(cfg.URL)[0])
	if err != nil {
		return res, err
	}
	defer conn.Close()

	// A declare with the asked-for type succeeds when the queue has it already.
	ch, err := conn.Channel()
	if err != nil {
		return res, err
	}
	if _, err = ch.QueueDeclare(name, true, false, false, false, requestQueueArgs(typ)); err == nil {
		_ = ch.Close()
		return res, nil
	}
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed {
		return res, fmt.Errorf("declare queue %q: %w", name, err)
	}

	start := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if ch, err = conn.Channel(); err != nil {
			return res, err
		}
		if typ == QueueTypeClassic {
			// The queue is a quorum queue, which refuses an if-empty delete (540
			// NOT_IMPLEMENTED, closing the connection): read its ready count, then
			// delete it unconditionally. A request published between the two is lost
			// (its caller gets its deadline).
			var q amqp.Queue
			if q, err = ch.QueueDeclarePassive(name, true, false, false, false, nil); err == nil {
				if q.Messages == 0 {
					_, err = ch.QueueDelete(name, false, false, false)
				} else {
					err = &amqp.Error{Code: amqp.PreconditionFailed, Reason: "not empty"}
				}
			}
		} else {
			_, err = ch.QueueDelete(name, false, true, false)
		}
		if err == nil {
			deleted := time.Now()
			if _, err = ch.QueueDeclare(name, true, false, false, false, requestQueueArgs(typ)); err != nil {
				return res, fmt.Errorf("declare queue %q as %s after deleting it: %w", name, typ, err)
			}
			res.Converted, res.Waited, res.Gap = true, deleted.Sub(start), time.Since(deleted)
			_ = ch.Close()
			return res, nil
		}
		if !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed {
			return res, fmt.Errorf("delete queue %q: %w", name, err)
		}
		// Not empty yet (an if-empty refusal closes the channel): try again.
		_ = ch.Close()
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("queue %q still held ready messages after %s: %w", name, time.Since(start).Round(time.Millisecond), ctx.Err())
		case <-tick.C:
		}
	}
}
