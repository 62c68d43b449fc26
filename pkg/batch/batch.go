// Package batch is warren's dynamic batcher: it gathers the requests of one model
// version that arrive close together into one Predict call, and hands each caller
// its own response.
//
// A batch starts with the first waiting request and goes when it holds MaxSize
// requests, when MaxDelay has passed since that first request arrived, or when
// waiting any longer would miss a deadline: a batch never waits past the earliest
// deadline in it minus the model's expected compute time, an exponentially
// weighted moving average of the batches' measured Predict times (nobody has to
// configure it). A request whose deadline passed before its batch went is dropped
// — never sent to the model — and its caller gets [ErrExpired].
//
// Concurrency batches are computed at once; one goroutine at a time gathers the
// next batch, so while every model slot is busy the waiting requests pile up and
// the next batch goes full. One Predict call answers a whole batch: its
// responses go to their own callers by position, a batch-level error goes to
// every caller, and a model that returns the wrong number of responses (or
// panics) is a model error for every caller — never a hang.
package batch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warren-farm/warren/pkg/model"
)

// Errors of [Batcher.Do] (test with errors.Is).
var (
	// ErrExpired: the request's deadline passed before its batch went to the model.
	ErrExpired = errors.New("deadline passed while waiting for a batch")
	// ErrClosed: the batcher was closed.
	ErrClosed = errors.New("batcher closed")
	// ErrBadBatch: the model broke the batch contract (wrong number of responses,
	// a malformed output, a panic). Every item of the batch gets it.
	ErrBadBatch = errors.New("model broke the batch contract")
)

// Observer receives the batcher's measurements; its methods run on the batcher's
// goroutines and must be cheap.
type Observer interface {
	// Batch is called for every batch sent to the model: its size and how long its
	// first request waited for it to go (the fill wait).
	Batch(size int, fillWait time.Duration)
	// Expired is called with the number of requests dropped because their deadline
	// passed before their batch went.
	Expired(n int)
	// Compute is called with each Predict call's duration.
	Compute(d time.Duration)
}

// PredictFunc computes a batch (model.Predictor's Predict, perhaps wrapped in a
// span). ctx carries the latest deadline of the batch's requests.
type PredictFunc func(ctx context.Context, batch []*model.Request) ([]*model.Response, error)

// Config configures a [Batcher].
type Config struct {
	// MaxSize is the largest batch; at least 1.
	MaxSize int
	// MaxDelay is how long a batch may wait for more requests after its first one
	// arrived; zero sends at once whatever is already waiting.
	MaxDelay time.Duration
	// Concurrency is the number of batches computed at once; at least 1.
	Concurrency int
	// Predict computes a batch; required.
	Predict PredictFunc
	// Expected is the first estimate of a batch's compute time (the worker's
	// warm-up inference); measured batches replace it. Zero means none yet.
	Expected time.Duration
	// Observer, if not nil, receives batch sizes, fill waits, expired drops and
	// compute times.
	Observer Observer
}

// ewmaWeight is the weight of the newest batch in the expected compute time: about
// the last ten batches count.
const ewmaWeight = 0.2

// item states: waiting in a batch or in Do's hand-over, taken for compute, or
// dropped (its caller gave up, or it expired). The transitions are CASes so that a
// request is counted and answered once.
const (
	stateWaiting int32 = iota
	stateTaken
	stateDropped
)

type result struct {
	resp *model.Response
	err  error
}

type item struct {
	req      *model.Request
	ctx      context.Context
	deadline time.Time // zero: none
	at       time.Time // when Do was called: the fill timer starts at the first item's
	state    atomic.Int32
	res      chan result // buffered 1: the batcher never blocks on a caller
}

// Batcher batches one model version's requests. Run its goroutines with [New] and
// stop them with [Batcher.Close].
type Batcher struct {
	cfg      Config
	in       chan *item // unbuffered: an item is in a batch once a gatherer took it
	gatherMu sync.Mutex // one gatherer at a time, so idle slots do not split a batch
	flushing chan struct{}
	flushed  sync.Once
	stopping chan struct{}
	stopped  sync.Once
	base     context.Context // the batches' context; cancelled when Close gives up
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	expected atomic.Int64 // EWMA of Predict time, nanoseconds; 0 until measured
	expired  atomic.Uint64
}

// New validates cfg and starts the batcher's Concurrency goroutines; Close stops
// them.
func New(cfg Config) (*Batcher, error) {
	var errs []error
	if cfg.MaxSize < 1 {
		errs = append(errs, fmt.Errorf("batch: MaxSize must be at least 1, got %d", cfg.MaxSize))
	}
	if cfg.MaxDelay < 0 {
		errs = append(errs, fmt.Errorf("batch: MaxDelay must not be negative, got %v", cfg.MaxDelay))
	}
	if cfg.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("batch: Concurrency must be at least 1, got %d", cfg.Concurrency))
	}
	if cfg.Predict == nil {
		errs = append(errs, errors.New("batch: Predict is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	b := &Batcher{cfg: cfg, in: make(chan *item), flushing: make(chan struct{}), stopping: make(chan struct{})}
	b.base, b.cancel = context.WithCancel(context.Background())
	b.expected.Store(int64(max(cfg.Expected, 0)))
	for range cfg.Concurrency {
		b.wg.Add(1)
		go b.loop()
	}
	return b, nil
}

// Expected returns the expected compute time of a batch (the EWMA of Predict
// times; zero before the first batch).
func (b *Batcher) Expected() time.Duration { return time.Duration(b.expected.Load()) }

// Expired returns how many requests were dropped because their deadline passed
// before their batch went.
func (b *Batcher) Expired() uint64 { return b.expired.Load() }

// Do adds req to a batch and returns its response once the batch was computed.
// ctx's deadline is the request's: past it, the request is dropped ([ErrExpired])
// if its batch has not gone yet, and abandoned (ctx's error) if it is computing.
// A response's Err is returned as the error.
func (b *Batcher) Do(ctx context.Context, req *model.Request) (*model.Response, error) {
	it := &item{req: req, ctx: ctx, at: time.Now(), res: make(chan result, 1)}
	it.deadline, _ = ctx.Deadline()
	select {
	case <-b.stopping:
		return nil, ErrClosed
	default:
	}
	select {
	case b.in <- it:
	case <-ctx.Done():
		return nil, b.giveUp(it, ctx)
	case <-b.stopping:
		return nil, ErrClosed
	}
	select {
	case r := <-it.res:
		if r.err == nil && r.resp.Err != nil {
			return nil, r.resp.Err
		}
		return r.resp, r.err
	case <-ctx.Done():
		return nil, b.giveUp(it, ctx)
	}
}

// giveUp is Do's answer when ctx ends: a request not yet computing is dropped
// (expired, when its deadline is what ended it); one computing is abandoned.
func (b *Batcher) giveUp(it *item, ctx context.Context) error {
	if it.state.CompareAndSwap(stateWaiting, stateDropped) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		b.countExpired(1)
		return ErrExpired
	}
	return ctx.Err()
}

func (b *Batcher) countExpired(n int) {
	b.expired.Add(uint64(n))
	if b.cfg.Observer != nil {
		b.cfg.Observer.Expired(n)
	}
}

// Flush makes every batch go as soon as it is gathered, without waiting to fill
// (a drain: nothing more is coming). It is not undone.
func (b *Batcher) Flush() { b.flushed.Do(func() { close(b.flushing) }) }

// Close flushes, stops taking requests (Do returns ErrClosed) and waits for the
// batches being computed; when ctx ends first, their context is cancelled and Close
// still waits for the Predict calls to return.
func (b *Batcher) Close(ctx context.Context) error {
	b.Flush()
	b.stopped.Do(func() { close(b.stopping) })
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
		b.cancel()
		return nil
	case <-ctx.Done():
		b.cancel()
		<-done
		return fmt.Errorf("batch: batches still computing when the close timed out: %w", ctx.Err())
	}
}

// loop gathers a batch (holding gatherMu) and computes it, until Close.
func (b *Batcher) loop() {
	defer b.wg.Done()
	for {
		b.gatherMu.Lock()
		items, first := b.gather()
		b.gatherMu.Unlock()
		if items == nil {
			return
		}
		b.run(items, first)
	}
}

// gather waits for a first item, then takes more until the batch is full, MaxDelay
// after the first item's arrival, the earliest deadline minus the expected compute
// time, or a flush. It returns nil once the batcher stops.
func (b *Batcher) gather() ([]*item, time.Time) {
	var first *item
	select {
	case first = <-b.in:
	case <-b.stopping:
		return nil, time.Time{}
	}
	items := append(make([]*item, 0, b.cfg.MaxSize), first)
	closeAt := first.at.Add(b.cfg.MaxDelay)
	expected := b.Expected()
	bound := func(it *item) {
		if !it.deadline.IsZero() {
			if d := it.deadline.Add(-expected); d.Before(closeAt) {
				closeAt = d
			}
		}
	}
	bound(first)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for len(items) < b.cfg.MaxSize {
		select { // whatever is already waiting joins without a timer
		case it := <-b.in:
			items = append(items, it)
			bound(it)
			continue
		default:
		}
		wait := time.Until(closeAt)
		if wait <= 0 {
			break
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case it := <-b.in:
			items = append(items, it)
			bound(it)
			continue
		case <-timer.C:
		case <-b.flushing:
		}
		break
	}
	return items, first.at
}

// run drops the expired items, computes the others in one Predict call and answers
// each.
func (b *Batcher) run(items []*item, firstAt time.Time) {
	now := time.Now()
	live := make([]*item, 0, len(items))
	expired := 0
	var latest time.Time
	noDeadline := false
	for _, it := range items {
		if !it.deadline.IsZero() && !now.Before(it.deadline) {
			if it.state.CompareAndSwap(stateWaiting, stateDropped) {
				expired++
				it.res <- result{err: ErrExpired}
			}
			continue
		}
		if !it.state.CompareAndSwap(stateWaiting, stateTaken) {
			continue // its caller gave up (and counted it)
		}
		live = append(live, it)
		if it.deadline.IsZero() {
			noDeadline = true
		} else if it.deadline.After(latest) {
			latest = it.deadline
		}
	}
	if expired > 0 {
		b.countExpired(expired)
	}
	if len(live) == 0 {
		return
	}
	if b.cfg.Observer != nil {
		b.cfg.Observer.Batch(len(live), now.Sub(firstAt))
	}
	// The batch's context: the first item's values (its trace), none of its
	// cancellation, the latest deadline of the batch (every caller has given up by
	// then), and Close's give-up.
	ctx, cancel := context.WithCancel(context.WithoutCancel(live[0].ctx))
	defer cancel()
	stop := context.AfterFunc(b.base, cancel)
	defer stop()
	if !noDeadline {
		var c2 context.CancelFunc
		ctx, c2 = context.WithDeadline(ctx, latest)
		defer c2()
	}
	reqs := make([]*model.Request, len(live))
	for i, it := range live {
		reqs[i] = it.req
	}
	start := time.Now()
	resps, err := b.predict(ctx, reqs)
	d := time.Since(start)
	b.observeCompute(d)
	if err == nil {
		if cerr := model.CheckResponses(reqs, resps); cerr != nil {
			err = fmt.Errorf("%w: %w", ErrBadBatch, cerr)
		}
	}
	for i, it := range live {
		if err != nil {
			it.res <- result{err: err}
		} else {
			it.res <- result{resp: resps[i]}
		}
	}
}

// predict calls the model, turning a panic into an error for the whole batch.
func (b *Batcher) predict(ctx context.Context, reqs []*model.Request) (resps []*model.Response, err error) {
	defer func() {
		if r := recover(); r != nil {
			resps, err = nil, fmt.Errorf("%w: the model panicked: %v", ErrBadBatch, r)
		}
	}()
	return b.cfg.Predict(ctx, reqs)
}

func (b *Batcher) observeCompute(d time.Duration) {
	for {
		old := b.expected.Load()
		next := int64(d)
		if old != 0 {
			next = int64(float64(old)*(1-ewmaWeight) + float64(d)*ewmaWeight)
		}
		if b.expected.CompareAndSwap(old, next) {
			break
		}
	}
	if b.cfg.Observer != nil {
		b.cfg.Observer.Compute(d)
	}
}
