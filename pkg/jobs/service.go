package jobs

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Publisher is what the service needs of the broker (pkg/queue implements it).
// Its methods are called concurrently.
type Publisher interface {
	// PublishJob publishes m as a persistent message and returns once the broker
	// confirmed it. An error wrapping ErrUnconfirmed: sent but neither confirmed nor
	// refused (the job may be queued). Any other error: definitely not queued.
	PublishJob(ctx context.Context, m Message) error
	// PublishCancel tells the workers connected now that job id was cancelled (a hint).
	PublishCancel(ctx context.Context, id string) error
	// Ready reports whether a publish can be attempted now (the outbox waits otherwise).
	Ready() bool
}

// Message is a job as the [Service] hands it to the [Publisher]. The ctx of
// PublishJob carries the submission's trace (if any) for the publisher to
// propagate.
type Message struct {
	ID        string    // the job id
	RequestID string    // the submission's request id (logs, tracing)
	Model     string    // the model to run
	Version   string    // its version; "" for the model's default
	Body      []byte    // the job's input, as submitted
	StartBy   time.Time // a worker that gets it later reports it expired; zero: never
}

// Errors of the [Service] (besides the [Store]'s, which it passes on).
var (
	// ErrUnconfirmed: the broker neither confirmed nor refused a publish. A
	// Publisher returns it (wrapped); Submit passes it on (wrapped) when it
	// kept the job for the outbox.
	ErrUnconfirmed = errors.New("jobs: publish not confirmed")
	// ErrStoreUnavailable wraps a failure of the store itself (unreachable,
	// closed, corrupt), as opposed to an outcome about a job (ErrNotFound,
	// ErrConflict, …), which the Service passes on unchanged. The cause stays
	// in the chain (errors.Is(err, ErrClosed) still holds).
	ErrStoreUnavailable = errors.New("jobs: store unavailable")
)

// Observer is told what the [Service] did, e.g. to count it in metrics. Its
// methods are called synchronously and concurrently: they must be quick and
// safe for concurrent use.
type Observer interface {
	// Submitted: a job was stored and the broker confirmed it (not for a
	// replay, nor for a job kept for the outbox).
	Submitted()
	// Finished: a job became final through this Service (Apply, ApplyDead,
	// Cancel, or the reaper's expiry), once per job and status.
	Finished(Status)
	// DeadLettered: a dead-lettered job message was handled (ApplyDead
	// returned nil, so the consumer acks it).
	DeadLettered()
}

// Defaults of [ServiceConfig].
const (
	DefaultRecoverAfter   = 30 * time.Second
	DefaultRecoverEvery   = 5 * time.Second
	DefaultReapEvery      = time.Second
	DefaultPublishTimeout = 10 * time.Second
	DefaultDeliveryLimit  = 20
)

// ServiceConfig configures [NewService]. Store and Publisher are required.
type ServiceConfig struct {
	// Store keeps the jobs. The Service does not close it.
	Store Store
	// Publisher puts jobs and cancel notices on the broker.
	Publisher Publisher
	// StartTimeout: a job not started this long after its submission
	// expires (JOB_START_TIMEOUT); 0 means never.
	StartTimeout time.Duration
	// RecoverAfter: a stored job whose publish was never confirmed is
	// republished by Run once it is this old; 0 means 30s. Keep it above
	// PublishTimeout, so that a publish still waiting for its confirm is
	// not republished.
	RecoverAfter time.Duration
	// PublishTimeout bounds the wait for the broker's confirm of one
	// publish; 0 means 10s.
	PublishTimeout time.Duration
	// RecoverEvery is how often Run looks for unpublished jobs; 0 means 5s.
	RecoverEvery time.Duration
	// ReapEvery is how often Run expires queued jobs past their start-by
	// time; 0 means 1s.
	ReapEvery time.Duration
	// DeliveryLimit is the broker's delivery limit of a job message, named
	// in the error of a dead-lettered job; 0 means 20 (pkg/queue's
	// JobDeliveryLimit).
	DeliveryLimit int
	// Observer, if not nil, is told about submissions, finished jobs and
	// dead letters.
	Observer Observer
	// Logger receives the Service's logs; nil discards them.
	Logger *slog.Logger
}

// Service is the job logic between the HTTP API, the store and the broker:
// submitting with the outbox, reading and long-polling, cancelling, applying
// the workers' events and dead letters, and (Run) republishing unconfirmed
// jobs and expiring queued ones. Its methods are safe for concurrent use.
type Service struct {
	store   Store
	pub     Publisher
	cfg     ServiceConfig // defaults applied
	log     *slog.Logger
	obs     Observer
	started time.Time // NewService's time: older unpublished jobs are an earlier process's
	running atomic.Bool

	recoverBatch, reapBatch int // page sizes of Run's rounds (tests shrink them)
}

// storeTimeout bounds the store writes detached from a caller's ctx.
const storeTimeout = 5 * time.Second

// NewService checks cfg, applies its defaults and returns a Service. It
// starts nothing: call Run for the outbox and the reaper.
func NewService(cfg ServiceConfig) (*Service, error) {
	var errs []error
	if cfg.Store == nil {
		errs = append(errs, errors.New("ServiceConfig.Store is required"))
	}
	if cfg.Publisher == nil {
		errs = append(errs, errors.New("ServiceConfig.Publisher is required"))
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"StartTimeout", &cfg.StartTimeout, 0},
		{"RecoverAfter", &cfg.RecoverAfter, DefaultRecoverAfter},
		{"PublishTimeout", &cfg.PublishTimeout, DefaultPublishTimeout},
		{"RecoverEvery", &cfg.RecoverEvery, DefaultRecoverEvery},
		{"ReapEvery", &cfg.ReapEvery, DefaultReapEvery},
	} {
		switch {
		case *d.v < 0:
			errs = append(errs, fmt.Errorf("ServiceConfig.%s must not be negative (got %v)", d.name, *d.v))
		case *d.v == 0:
			*d.v = d.def
		}
	}
	switch {
	case cfg.DeliveryLimit < 0:
		errs = append(errs, fmt.Errorf("ServiceConfig.DeliveryLimit must not be negative (got %d)", cfg.DeliveryLimit))
	case cfg.DeliveryLimit == 0:
		cfg.DeliveryLimit = DefaultDeliveryLimit
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	s := &Service{
		store: cfg.Store, pub: cfg.Publisher, cfg: cfg, log: cfg.Logger, obs: cfg.Observer, started: time.Now(),
		recoverBatch: 1000, reapBatch: 1000,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.obs == nil {
		s.obs = nopObserver{}
	}
	return s, nil
}

// Submission is a job to submit.
type Submission struct {
	// RequestID is the submitting request's id (logs, tracing).
	RequestID string
	// Model and Version name what to run ("" Version: the default).
	Model, Version string
	// Format is how the API renders the job: FormatV2 or FormatProcess.
	Format string
	// Input is the message body the worker receives.
	Input []byte
	// IdempotencyKey is the client's Idempotency-Key, "" for none. Keys are
	// global to the store: scope them before Submit if clients must not
	// share them.
	IdempotencyKey string
	// Owner is who submitted the job (pkg/auth's Principal.Owner), "" for
	// nobody in particular; it is stored with the job.
	Owner string
}

// Submit stores a job, publishes it and records the broker's confirm: the
// outbox order, so that a job the client was told about is never lost. It
// returns the new job, or with replay true the earlier job that
// sub.IdempotencyKey names (nothing is published then). Errors:
//
//   - ErrKeyMismatch: the key was used for another submission (input,
//     model, version or format differ). ErrInProgress: the key's first
//     submission is not confirmed yet; retry later.
//   - An error wrapping ErrUnconfirmed: the broker neither confirmed nor
//     refused the publish. The job is kept unpublished, so Run publishes it
//     again later; a retry with the same key gets ErrInProgress, then the
//     job.
//   - Any other error of the Publisher, unchanged: the job was definitely
//     not queued, so it is deleted (its key is free again) and never runs.
//   - ErrStoreUnavailable (wrapping the cause): the store failed.
//   - ctx's error, unchanged, if ctx ended.
//
// The job is nil whenever the error is not.
func (s *Service) Submit(ctx context.Context, sub Submission) (j *Job, replay bool, err error) {
	now := time.Now().UTC()
	j = &Job{
		ID: "j" + strings.ToLower(rand.Text()), CreatedAt: now, RequestID: sub.RequestID,
		Model: sub.Model, Version: sub.Version, Format: sub.Format, Input: sub.Input,
		IdempotencyKey: sub.IdempotencyKey, BodyHash: bodyHash(sub), Owner: sub.Owner,
	}
	if s.cfg.StartTimeout > 0 {
		j.StartBy = now.Add(s.cfg.StartTimeout)
	}
	prev, err := s.store.Create(ctx, j)
	switch {
	case errors.Is(err, ErrKeyMismatch), errors.Is(err, ErrInProgress):
		return nil, false, err
	case err != nil:
		return nil, false, s.storeErr(ctx, err)
	case prev != nil:
		return prev, true, nil
	}
	log := s.log.With("job_id", j.ID, "request_id", j.RequestID)
	if j.Owner != "" {
		log = log.With("owner", j.Owner)
	}
	err = s.publish(ctx, j, log)
	switch {
	case errors.Is(err, ErrUnconfirmed):
		// Sent, but neither confirmed nor refused: the job may be queued. It
		// stays in the store unpublished, so Run publishes it again (a
		// duplicate delivery only repeats work; the first final state wins).
		log.Warn("job publish not confirmed; kept for the outbox", "err", err)
		return nil, false, fmt.Errorf("jobs: job %s kept for the outbox: %w", j.ID, err)
	case err != nil:
		// Definitely not queued: the client gets an error, so the job must
		// not run later either.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
		if derr := s.store.Delete(dctx, j.ID); derr != nil {
			log.Warn("could not delete a job whose publish failed; the outbox will publish it", "err", derr)
		}
		cancel()
		return nil, false, err
	}
	s.obs.Submitted()
	return j, false, nil
}

// publish publishes j, waiting at most PublishTimeout for the confirm, then
// records the confirm in the store, detached from ctx (the job is queued
// whatever happens to the caller) and sets j.Published. A failed record is
// logged, not returned: the job will run; the flag only spares a republish
// (j.Published stays false, which ends an outbox round).
func (s *Service) publish(ctx context.Context, j *Job, log *slog.Logger) error {
	pctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	err := s.pub.PublishJob(pctx, Message{
		ID: j.ID, RequestID: j.RequestID, Model: j.Model, Version: j.Version, Body: j.Input, StartBy: j.StartBy,
	})
	cancel()
	if err != nil {
		return err
	}
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := s.store.MarkPublished(mctx, j.ID); err != nil {
		log.Warn("job published but not marked so; the outbox may publish it again", "err", err)
		return nil
	}
	j.Published = true
	return nil
}

// bodyHash identifies a submission for its idempotency key: the input and
// what it targets (format, model, version, each length-prefixed), so that a
// key reused for another model is a mismatch, not a replay of the other
// model's job.
func bodyHash(sub Submission) string {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, f := range []string{sub.Format, sub.Model, sub.Version} {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(f)))])
		h.Write([]byte(f))
	}
	h.Write(sub.Input)
	return hex.EncodeToString(h.Sum(nil))
}

// Get returns the job. ErrNotFound (unknown, or finished longer than the
// TTL ago) is returned unchanged, a store failure wrapped in
// ErrStoreUnavailable.
func (s *Service) Get(ctx context.Context, id string) (*Job, error) {
	j, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, s.storeErr(ctx, err)
	}
	return j, nil
}

// Wait is [Store.Wait]: the job once final, or as it is when d passes (nil
// error), or as last read and ctx's error (unchanged) when ctx ends.
// ErrNotFound is returned unchanged, a store failure (its Close included)
// wrapped in ErrStoreUnavailable.
func (s *Service) Wait(ctx context.Context, id string, d time.Duration) (*Job, error) {
	j, err := s.store.Wait(ctx, id, d)
	if err != nil {
		return j, s.storeErr(ctx, err)
	}
	return j, nil
}

// Cancel cancels a queued job and returns it. Cancelling a cancelled job
// again returns it with a nil error. A running or final job is returned
// with ErrConflict and left alone; ErrNotFound is returned unchanged, a
// store failure wrapped in ErrStoreUnavailable.
//
// After a cancel, the workers connected now are told (a best-effort hint,
// bounded by PublishTimeout and detached from ctx): one that receives the
// job later skips it. The store keeps the job cancelled whatever a worker
// reports.
func (s *Service) Cancel(ctx context.Context, id string) (*Job, error) {
	j, err := s.store.Cancel(ctx, id)
	switch {
	case errors.Is(err, ErrConflict) && j != nil && j.Status == Cancelled:
		return j, nil
	case errors.Is(err, ErrConflict):
		return j, err
	case err != nil:
		return nil, s.storeErr(ctx, err)
	}
	s.obs.Finished(Cancelled)
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.PublishTimeout)
	defer cancel()
	if err := s.pub.PublishCancel(nctx, id); err != nil {
		s.log.Debug("cancel notice not published", "job_id", id, "err", err)
	}
	return j, nil
}

// Apply applies a worker's event: the results consumer's handler. An event
// for an unknown (or deleted, or expired by TTL) job and an invalid event
// can never apply: they are logged at debug and dropped (nil, the consumer
// acks). Other errors are returned (the consumer requeues the event): a
// store failure wraps ErrStoreUnavailable.
func (s *Service) Apply(ctx context.Context, ev Event) error {
	j, changed, err := s.store.Apply(ctx, ev)
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrInvalidEvent):
		s.log.Debug("dropped a job event", "job_id", ev.JobID, "type", ev.Type, "status", ev.Status, "err", err)
		return nil
	case err != nil:
		return s.storeErr(ctx, err)
	}
	if changed && j.Status.Final() {
		s.obs.Finished(j.Status)
	}
	return nil
}

// DeadLetter is a job message the broker dead-lettered: over its delivery
// limit, or rejected by a worker that could not read it.
type DeadLetter struct {
	// JobID is the message's job id, "" when it carried none.
	JobID string
	// Reason is the broker's x-first-death-reason: delivery_limit,
	// rejected or expired.
	Reason string
}

// ApplyDead makes a dead-lettered job failed, with reason
// ReasonDeliveryLimit (the dead-letter consumer's handler). A dead letter
// without a job id is logged and dropped. Errors are Apply's: nil when the
// dead letter is handled (the consumer acks it and Observer.DeadLettered is
// told), an error when the consumer should requeue it.
func (s *Service) ApplyDead(ctx context.Context, d DeadLetter) error {
	if d.JobID == "" {
		s.log.Warn("dropped a dead-lettered job message without a job id", "reason", d.Reason)
		s.obs.DeadLettered()
		return nil
	}
	why := d.Reason
	if why == "" {
		why = "no reason given"
	}
	err := s.Apply(ctx, Event{JobID: d.JobID, Type: EventFinal, Status: Failed, At: time.Now(), Error: &Error{
		Reason: ReasonDeliveryLimit,
		Message: "the broker dead-lettered the job (" + why + "): delivered more than " +
			strconv.Itoa(s.cfg.DeliveryLimit) + " times or unreadable",
	}})
	if err != nil {
		return err
	}
	s.obs.DeadLettered()
	return nil
}

// PutMeta is [Store.PutMeta], with a store failure wrapped in
// ErrStoreUnavailable.
func (s *Service) PutMeta(ctx context.Context, key string, value []byte) error {
	return s.storeErr(ctx, s.store.PutMeta(ctx, key, value))
}

// ListMeta is [Store.ListMeta], with a store failure wrapped in
// ErrStoreUnavailable.
func (s *Service) ListMeta(ctx context.Context, prefix string) (map[string][]byte, error) {
	m, err := s.store.ListMeta(ctx, prefix)
	if err != nil {
		return nil, s.storeErr(ctx, err)
	}
	return m, nil
}

// Run runs the outbox and the reaper until ctx ends, then returns nil once
// both have stopped. It returns an error at once if it is already running.
//
//   - The outbox: at once and then every RecoverEvery, while the
//     Publisher is Ready, it republishes the jobs whose publish was never
//     confirmed and that are older than RecoverAfter — in the first
//     RecoverAfter, every such job created before NewService (an earlier
//     process's) — and marks each published. A round stops at the first
//     failure; the next round retries. With several API replicas, each
//     runs its outbox: a job may then be published twice, which only
//     repeats work (the first final state wins).
//   - The reaper: at once and then every ReapEvery, it expires the queued
//     jobs past their start-by time (Observer.Finished(Expired) for each).
func (s *Service) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("jobs: Service.Run is already running")
	}
	defer s.running.Store(false)
	var wg sync.WaitGroup
	wg.Go(func() {
		every(ctx, s.cfg.RecoverEvery, func() {
			if s.pub.Ready() {
				s.recoverRound(ctx)
			}
		})
	})
	wg.Go(func() { every(ctx, s.cfg.ReapEvery, func() { s.reap(ctx) }) })
	wg.Wait()
	return nil
}

// every calls fn at once and then every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for ctx.Err() == nil {
		fn()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// recoverRound republishes unpublished jobs created before the cutoff, page
// by page, until there are none or a publish (or its record) fails.
func (s *Service) recoverRound(ctx context.Context) {
	cutoff := time.Now().Add(-s.cfg.RecoverAfter)
	if cutoff.Before(s.started) {
		cutoff = s.started // an earlier process's jobs: at once
	}
	for {
		js, err := s.store.Unpublished(ctx, cutoff, s.recoverBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("reading unpublished jobs failed; the next round retries", "err", err)
			}
			return
		}
		for _, j := range js {
			log := s.log.With("job_id", j.ID, "request_id", j.RequestID)
			if err := s.publish(ctx, j, log); err != nil {
				if ctx.Err() == nil {
					log.Warn("republishing a stored job failed; the next round retries", "err", err)
				}
				return
			}
			if !j.Published {
				return // not marked: the next page would return it again
			}
			log.Info("republished a stored job whose publish was never confirmed")
		}
		if len(js) < s.recoverBatch {
			return
		}
	}
}

// reap expires queued jobs past their start-by time, a batch at a time.
func (s *Service) reap(ctx context.Context) {
	for {
		ids, err := s.store.ExpireQueued(ctx, time.Now(), s.reapBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("expiring queued jobs failed; the next round retries", "err", err)
			}
			return
		}
		for _, id := range ids {
			s.obs.Finished(Expired)
			s.log.Debug("expired a queued job past its start-by time", "job_id", id)
		}
		if len(ids) < s.reapBatch {
			return
		}
	}
}

// storeErr wraps a failure of the store in ErrStoreUnavailable. Outcomes
// about a job or a request (not found, conflict, key mismatch, in progress,
// invalid event, job or meta key) and the end of ctx pass unchanged.
func (s *Service) storeErr(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict), errors.Is(err, ErrKeyMismatch),
		errors.Is(err, ErrInProgress), errors.Is(err, ErrInvalidEvent), errors.Is(err, ErrInvalidJob),
		errors.Is(err, ErrInvalidMetaKey):
		return err
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return err
	}
	return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
}

type nopObserver struct{}

func (nopObserver) Submitted()      {}
func (nopObserver) Finished(Status) {}
func (nopObserver) DeadLettered()   {}
