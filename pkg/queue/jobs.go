package queue

import (
	"fmt"
	"math"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The async job path. Jobs travel on durable quorum queues, one per model version,
// as persistent messages; workers report progress and results as persistent
// messages (jobs.Event, JSON) on a durable results queue that the API replicas
// consume and apply to the job store. Workers never touch the store.
//
//	API ──job──▶ warren.job.<model>.v<n> (quorum, x-delivery-limit, DLX) ──▶ worker
//	                 │ over the delivery limit                               │ running / final
//	                 ▼                                                       ▼
//	       warren.jobs.dlx (fanout) ──▶ warren.jobs.dead        warren.jobs.results ──▶ API ──▶ store
//
//	worker ──model error──▶ warren.jobs.delay.<ms>ms (fanout, routing key = the job queue)
//	          ──▶ warren.jobs.retry.<ms>ms (TTL) ──dead-letter, same routing key──▶ the job queue
//	API ──DELETE──▶ warren.jobs.cancel (fanout) ──▶ every worker's exclusive queue

// Job message headers.
const (
	HeaderJobID    = "x-warren-job-id"      // string
	HeaderAttempt  = "x-warren-attempt"     // int: 1 + model-error retries so far
	HeaderStartBy  = "x-warren-start-by-ms" // int64, Unix ms: a job not started by then expires; absent = never
	deliveryCount  = "x-delivery-count"     // set by quorum queues on redelivery
	jobType        = "warren.job.v2"
	jobEventType   = "warren.job-event.v1"
	firstDeathHead = "x-first-death-reason"
)

var quorum = amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}

// declareJobShared declares what every job queue relies on: the dead-letter
// exchange and queue, the results queue and the cancel exchange. Arguments are
// fixed, so every process declares them identically.
func declareJobShared(ch *amqp.Channel) error {
	for _, ex := range []string{JobDLX, JobCancel} {
		if err := ch.ExchangeDeclare(ex, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare exchange %q: %w", ex, err)
		}
	}
	for _, q := range []string{JobDead, JobResults} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, quorum); err != nil {
			return fmt.Errorf("declare queue %q: %w", q, err)
		}
	}
	if err := ch.QueueBind(JobDead, "", JobDLX, false, nil); err != nil {
		return fmt.Errorf("bind %q: %w", JobDead, err)
	}
	return nil
}

// declareJobQueue declares a route's job queue. at-least-once dead-lettering (3.10+)
// needs overflow=reject-publish; without a dead-letter exchange a message over the
// delivery limit would be dropped silently.
func declareJobQueue(ch *amqp.Channel, q string) error {
	_, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{
		amqp.QueueTypeArg:        amqp.QueueTypeQuorum,
		"x-delivery-limit":       int32(JobDeliveryLimit),
		"x-dead-letter-exchange": JobDLX,
		"x-dead-letter-strategy": "at-least-once",
		"x-overflow":             "reject-publish",
	})
	if err != nil {
		return fmt.Errorf("declare queue %q: %w", q, err)
	}
	return nil
}

// declareRetry declares the delay exchange and retry queue for delay and returns
// the exchange to publish a retry to (with the job queue's name as routing key).
func declareRetry(ch *amqp.Channel, delay time.Duration) (string, error) {
	ex, q := JobDelay(delay), JobRetryQueue(delay)
	if err := ch.ExchangeDeclare(ex, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return "", fmt.Errorf("declare exchange %q: %w", ex, err)
	}
	// No x-dead-letter-routing-key: an expired message is dead-lettered with the
	// routing key it was published with, the job queue's name.
	if _, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{
		"x-message-ttl":          int64(delay.Milliseconds()),
		"x-dead-letter-exchange": "",
	}); err != nil {
		return "", fmt.Errorf("declare queue %q: %w", q, err)
	}
	if err := ch.QueueBind(q, "", ex, false, nil); err != nil {
		return "", fmt.Errorf("bind %q: %w", q, err)
	}
	return ex, nil
}

// jobAttempt is the attempt number of a delivery: the attempt the message was
// published as, plus the broker's count of earlier deliveries of this message.
func jobAttempt(d *amqp.Delivery) int {
	a, _ := headerInt64(d.Headers, HeaderAttempt)
	dc, _ := headerInt64(d.Headers, deliveryCount)
	// Any peer can publish: clamp both before adding, so no header can overflow the
	// sum into a negative attempt that would never count as exhausted.
	const most = math.MaxInt32
	return int(min(max(a, 1), most) + min(max(dc, 0), most))
}
