package queue

import (
	"encoding/json"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The async job path. Jobs travel on a durable quorum queue as persistent messages;
// workers report progress and results as persistent messages on a durable results
// queue that the API replicas consume and apply to the job store. Workers never touch
// the store.
//
//	API ──job──▶ warren.jobs (quorum, x-delivery-limit, DLX) ──▶ worker
//	                 │ over the delivery limit                     │ running / final
//	                 ▼                                             ▼
//	       warren.jobs.dlx (fanout) ──▶ warren.jobs.dead    warren.jobs.results ──▶ API ──▶ store
//	                                                 │
//	worker ──model error──▶ warren.jobs.retry.<ms> (TTL) ──dead-letter──▶ warren.jobs
//	API ──DELETE──▶ warren.jobs.cancel (fanout) ──▶ every worker's exclusive queue
const (
	// DefaultJobQueue is the base name of the job path's queues and exchanges.
	DefaultJobQueue = "warren.jobs"
	// JobDeliveryLimit is the job queue's x-delivery-limit: the broker's own bound on
	// deliveries of one message (each nack with requeue, and each channel closed with
	// the message unacked — a crash, a drain, a consumer_timeout — counts). It is
	// fixed, never configured: redeclaring a queue with another value fails with 406.
	// Workers give up earlier, at JOB_MAX_ATTEMPTS; this is the net below them (a job
	// that kills its worker before it can report anything).
	JobDeliveryLimit = 20
)

// Job message headers.
const (
	HeaderJobID    = "x-warren-job-id"      // string
	HeaderAttempt  = "x-warren-attempt"     // int: 1 + model-error retries so far
	HeaderStartBy  = "x-warren-start-by-ms" // int64, Unix ms: a job not started by then expires; absent = never
	deliveryCount  = "x-delivery-count"     // set by quorum queues on redelivery
	jobType        = "warren.job.v1"
	jobUpdateType  = "warren.job-update.v1"
	firstDeathHead = "x-first-death-reason"
)

// JobNames derives the names of the job path's queues and exchanges from one base.
type JobNames struct{ Base string }

func (n JobNames) base() string {
	if n.Base == "" {
		return DefaultJobQueue
	}
	return n.Base
}

// Queue is the quorum job queue.
func (n JobNames) Queue() string { return n.base() }

// Results is the quorum queue workers report to.
func (n JobNames) Results() string { return n.base() + ".results" }

// Dead is the quorum queue that receives jobs over the delivery limit.
func (n JobNames) Dead() string { return n.base() + ".dead" }

// DLX is the fanout exchange the job queue dead-letters to.
func (n JobNames) DLX() string { return n.base() + ".dlx" }

// Cancel is the fanout exchange cancel notices are published to.
func (n JobNames) Cancel() string { return n.base() + ".cancel" }

// Retry is the retry queue for one backoff delay: a classic queue whose messages
// expire after exactly delay and are dead-lettered back to the job queue. One queue
// per delay, because a TTL is only applied at the head of a queue: a long delay in
// front would hold back a shorter one behind it.
func (n JobNames) Retry(delay time.Duration) string {
	return fmt.Sprintf("%s.retry.%dms", n.base(), delay.Milliseconds())
}

// declareJobTopology declares the job queue, the dead-letter exchange and queue and
// the results queue. Arguments are fixed, so every process declares them identically.
func declareJobTopology(ch *amqp.Channel, n JobNames) error {
	if err := ch.ExchangeDeclare(n.DLX(), amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %q: %w", n.DLX(), err)
	}
	if err := ch.ExchangeDeclare(n.Cancel(), amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %q: %w", n.Cancel(), err)
	}
	quorum := amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}
	if _, err := ch.QueueDeclare(n.Dead(), true, false, false, false, quorum); err != nil {
		return fmt.Errorf("declare queue %q: %w", n.Dead(), err)
	}
	if err := ch.QueueBind(n.Dead(), "", n.DLX(), false, nil); err != nil {
		return fmt.Errorf("bind %q: %w", n.Dead(), err)
	}
	if _, err := ch.QueueDeclare(n.Results(), true, false, false, false, quorum); err != nil {
		return fmt.Errorf("declare queue %q: %w", n.Results(), err)
	}
	// at-least-once dead-lettering (3.10+) needs overflow=reject-publish; without a
	// dead-letter exchange a message over the delivery limit would be dropped silently.
	_, err := ch.QueueDeclare(n.Queue(), true, false, false, false, amqp.Table{
		amqp.QueueTypeArg:        amqp.QueueTypeQuorum,
		"x-delivery-limit":       int32(JobDeliveryLimit),
		"x-dead-letter-exchange": n.DLX(),
		"x-dead-letter-strategy": "at-least-once",
		"x-overflow":             "reject-publish",
	})
	if err != nil {
		return fmt.Errorf("declare queue %q: %w", n.Queue(), err)
	}
	return nil
}

// declareRetryQueue declares the retry queue for delay.
func declareRetryQueue(ch *amqp.Channel, n JobNames, delay time.Duration) (string, error) {
	name := n.Retry(delay)
	_, err := ch.QueueDeclare(name, true, false, false, false, amqp.Table{
		"x-message-ttl":             int64(delay.Milliseconds()),
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": n.Queue(),
	})
	if err != nil {
		return "", fmt.Errorf("declare queue %q: %w", name, err)
	}
	return name, nil
}

// Update types.
const (
	UpdateRunning = "running"
	UpdateFinal   = "final"
)

// Final job statuses a worker reports, and error reasons.
const (
	JobSucceeded = "succeeded"
	JobFailed    = "failed"
	JobExpired   = "expired"

	ReasonAttemptsExhausted = "attempts_exhausted" // redelivered too often (crashes, drains)
	ReasonDeliveryLimit     = "delivery_limit"     // dead-lettered by the broker
	ReasonRunTimeout        = "run_timeout"        // the model ran past JOB_RUN_TIMEOUT
)

// JobUpdate is a worker's report about a job, as it travels on the results queue
// (JSON). Running updates may be repeated or arrive after the final one; the store
// applies them idempotently.
type JobUpdate struct {
	JobID   string          `json:"job_id"`
	Type    string          `json:"type"`             // UpdateRunning or UpdateFinal
	Status  string          `json:"status,omitempty"` // final: JobSucceeded, JobFailed or JobExpired
	At      time.Time       `json:"at"`               // worker clock
	Attempt int             `json:"attempt"`
	Worker  string          `json:"worker"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *JobError       `json:"error,omitempty"`
}

// JobError says why a job failed.
type JobError struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// DeadJob is a job message the broker dead-lettered (over the delivery limit, or
// rejected by a worker because it could not be read).
type DeadJob struct {
	JobID  string // empty when the message carried none
	Reason string // x-first-death-reason: delivery_limit, rejected, expired
}

// jobAttempt is the attempt number of a delivery: the attempt the message was
// published as, plus the broker's count of earlier deliveries of this message.
func jobAttempt(d *amqp.Delivery) int {
	a, _ := headerInt64(d.Headers, HeaderAttempt)
	dc, _ := headerInt64(d.Headers, deliveryCount)
	return int(max(a, 1) + max(dc, 0))
}
