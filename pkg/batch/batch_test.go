package batch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/model"
)

// echo is a model that answers each request with its own input (as INT64 [v, size
// of the batch]) after sleep, and records the batches it saw.
type echo struct {
	sleep   time.Duration
	mu      sync.Mutex
	batches [][]int64 // the inputs of each batch
	running atomic.Int32
	maxRun  atomic.Int32
}

func (e *echo) predict(ctx context.Context, batch []*model.Request) ([]*model.Response, error) {
	n := e.running.Add(1)
	defer e.running.Add(-1)
	for {
		m := e.maxRun.Load()
		if n <= m || e.maxRun.CompareAndSwap(m, n) {
			break
		}
	}
	var seen []int64
	out := make([]*model.Response, len(batch))
	for i, r := range batch {
		v := r.Inputs[0].Data.([]int64)[0]
		seen = append(seen, v)
		if v < 0 {
			out[i] = &model.Response{Err: fmt.Errorf("negative input %d", v)}
			continue
		}
		out[i] = &model.Response{Outputs: []model.Tensor{{Name: "out", Datatype: model.INT64, Shape: []int64{2},
			Data: []int64{v, int64(len(batch))}}}}
	}
	e.mu.Lock()
	e.batches = append(e.batches, seen)
	e.mu.Unlock()
	if e.sleep > 0 {
		select {
		case <-time.After(e.sleep):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return out, nil
}

func (e *echo) seen() [][]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([][]int64(nil), e.batches...)
}

func req(v int64) *model.Request {
	return &model.Request{ID: fmt.Sprint(v), Inputs: []model.Tensor{{Name: "in", Datatype: model.INT64, Shape: []int64{1}, Data: []int64{v}}}}
}

// counts is an Observer.
type counts struct {
	mu       sync.Mutex
	sizes    []int
	waits    []time.Duration
	expired  int
	computes int
}

func (c *counts) Batch(n int, w time.Duration) {
	c.mu.Lock()
	c.sizes, c.waits = append(c.sizes, n), append(c.waits, w)
	c.mu.Unlock()
}
func (c *counts) Expired(n int) { c.mu.Lock(); c.expired += n; c.mu.Unlock() }
func (c *counts) Compute(time.Duration) {
	c.mu.Lock()
	c.computes++
	c.mu.Unlock()
}

func newBatcher(t *testing.T, cfg Config) *Batcher {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

type answer struct {
	v    int64
	resp *model.Response
	err  error
	took time.Duration
}

// doAll calls Do for each value at once (each with timeout, when not zero) and
// returns the answers in the order of vals.
func doAll(b *Batcher, timeout time.Duration, vals ...int64) []answer {
	out := make([]answer, len(vals))
	var wg sync.WaitGroup
	for i, v := range vals {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			start := time.Now()
			resp, err := b.Do(ctx, req(v))
			out[i] = answer{v: v, resp: resp, err: err, took: time.Since(start)}
		}()
	}
	wg.Wait()
	return out
}

func checkOwn(t *testing.T, as []answer) {
	t.Helper()
	for _, a := range as {
		if a.err != nil {
			t.Fatalf("input %d: %v", a.v, a.err)
		}
		if got := a.resp.Outputs[0].Data.([]int64)[0]; got != a.v {
			t.Fatalf("input %d got the answer of input %d", a.v, got)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	_, err := New(Config{MaxSize: 0, MaxDelay: -1, Concurrency: 0})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"MaxSize", "MaxDelay", "Concurrency", "Predict"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

// TestFullBatchGoesAtOnce: MaxSize requests go together without waiting for the
// (long) delay.
func TestFullBatchGoesAtOnce(t *testing.T) {
	e := &echo{}
	obs := &counts{}
	b := newBatcher(t, Config{MaxSize: 4, MaxDelay: 10 * time.Second, Concurrency: 1, Predict: e.predict, Observer: obs})
	start := time.Now()
	as := doAll(b, 0, 1, 2, 3, 4)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a full batch took %v: it waited for the delay", d)
	}
	checkOwn(t, as)
	if s := e.seen(); len(s) != 1 || len(s[0]) != 4 {
		t.Fatalf("batches %v, want one of 4", s)
	}
	for _, a := range as {
		if n := a.resp.Outputs[0].Data.([]int64)[1]; n != 4 {
			t.Errorf("input %d computed in a batch of %d", a.v, n)
		}
	}
	if len(obs.sizes) != 1 || obs.sizes[0] != 4 || obs.computes != 1 {
		t.Errorf("observed sizes %v, computes %d", obs.sizes, obs.computes)
	}
}

// TestPartialBatchGoesAtMaxDelay: fewer than MaxSize requests go MaxDelay after the
// first arrived, together.
func TestPartialBatchGoesAtMaxDelay(t *testing.T) {
	e := &echo{}
	obs := &counts{}
	const delay = 80 * time.Millisecond
	b := newBatcher(t, Config{MaxSize: 10, MaxDelay: delay, Concurrency: 1, Predict: e.predict, Observer: obs})
	as := doAll(b, 0, 1, 2, 3)
	checkOwn(t, as)
	for _, a := range as {
		if a.took < delay-5*time.Millisecond || a.took > delay+500*time.Millisecond {
			t.Errorf("input %d answered after %v, want about %v", a.v, a.took, delay)
		}
	}
	if s := e.seen(); len(s) != 1 || len(s[0]) != 3 {
		t.Fatalf("batches %v, want one of 3", s)
	}
	if obs.waits[0] < delay-5*time.Millisecond {
		t.Errorf("fill wait %v, want about %v", obs.waits[0], delay)
	}
}

// TestZeroDelay: MaxDelay 0 sends a lone request at once.
func TestZeroDelay(t *testing.T) {
	e := &echo{}
	b := newBatcher(t, Config{MaxSize: 10, Concurrency: 1, Predict: e.predict})
	as := doAll(b, 0, 7)
	checkOwn(t, as)
	if as[0].took > 500*time.Millisecond {
		t.Errorf("took %v", as[0].took)
	}
}

// TestDeadlineClosesBatchEarly: a batch goes at its earliest deadline minus the
// expected compute time, long before MaxDelay, and in time to be answered.
func TestDeadlineClosesBatchEarly(t *testing.T) {
	e := &echo{sleep: 20 * time.Millisecond}
	b := newBatcher(t, Config{MaxSize: 10, MaxDelay: 10 * time.Second, Concurrency: 1, Predict: e.predict,
		Expected: 300 * time.Millisecond})
	// It goes at 1000-300 = 700ms and computes 20ms: answered (so before the
	// deadline, long before MaxDelay), and not before the batch was due.
	as := doAll(b, time.Second, 1)
	checkOwn(t, as)
	if as[0].took < 650*time.Millisecond {
		t.Errorf("answered after %v: the batch went before the earliest deadline minus the expected compute (700ms)", as[0].took)
	}
	// The measured compute time (about 20ms) now weighs into the estimate.
	if x := b.Expected(); x >= 300*time.Millisecond || x < 20*time.Millisecond {
		t.Errorf("expected compute %v after one 20ms batch, want between 20ms and 300ms", x)
	}
}

// TestExpiredDropped: requests whose deadline passes while every slot is busy are
// dropped, counted, answered ErrExpired, and never reach the model.
func TestExpiredDropped(t *testing.T) {
	release := make(chan struct{})
	var got sync.Map
	pred := func(ctx context.Context, batch []*model.Request) ([]*model.Response, error) {
		out := make([]*model.Response, len(batch))
		for i, r := range batch {
			got.Store(r.ID, true)
			if r.ID == "0" {
				<-release
			}
			out[i] = &model.Response{}
		}
		return out, nil
	}
	obs := &counts{}
	b := newBatcher(t, Config{MaxSize: 1, Concurrency: 1, Predict: pred, Observer: obs})
	held := make(chan error, 1)
	go func() { _, err := b.Do(context.Background(), req(0)); held <- err }()
	for _, ok := got.Load("0"); !ok; _, ok = got.Load("0") {
		time.Sleep(time.Millisecond)
	}
	as := doAll(b, 40*time.Millisecond, 1, 2, 3)
	for _, a := range as {
		if !errors.Is(a.err, ErrExpired) {
			t.Errorf("input %d: err %v, want ErrExpired", a.v, a.err)
		}
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"1", "2", "3"} {
		if _, ok := got.Load(id); ok {
			t.Errorf("expired request %s reached the model", id)
		}
	}
	if b.Expired() != 3 || obs.expired != 3 {
		t.Errorf("expired counted %d (observer %d), want 3", b.Expired(), obs.expired)
	}
}

// TestExpiredInGatheredBatch: with no compute estimate a batch closes at its
// earliest deadline, when that item has just expired: it is dropped at dispatch
// (counted once), and the batch's other item is computed.
func TestExpiredInGatheredBatch(t *testing.T) {
	e := &echo{}
	b := newBatcher(t, Config{MaxSize: 10, MaxDelay: 10 * time.Second, Concurrency: 1, Predict: e.predict})
	var short, long answer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); long = doAll(b, 5*time.Second, 2)[0] }()
	time.Sleep(10 * time.Millisecond)
	go func() { defer wg.Done(); short = doAll(b, 50*time.Millisecond, 1)[0] }()
	wg.Wait()
	if !errors.Is(short.err, ErrExpired) {
		t.Fatalf("short deadline: err %v, want ErrExpired", short.err)
	}
	checkOwn(t, []answer{long})
	if long.took > 3*time.Second {
		t.Errorf("the other item waited %v: the deadline did not close the batch", long.took)
	}
	for _, s := range e.seen() {
		for _, v := range s {
			if v == 1 {
				t.Error("the expired item reached the model")
			}
		}
	}
	if b.Expired() != 1 {
		t.Errorf("expired %d, want 1", b.Expired())
	}
}

// TestBatchErrorAnswersEveryItem: a batch-level error goes to every caller.
func TestBatchErrorAnswersEveryItem(t *testing.T) {
	boom := errors.New("boom")
	b := newBatcher(t, Config{MaxSize: 5, MaxDelay: 50 * time.Millisecond, Concurrency: 1,
		Predict: func(context.Context, []*model.Request) ([]*model.Response, error) { return nil, boom }})
	for _, a := range doAll(b, 0, 1, 2, 3, 4, 5) {
		if !errors.Is(a.err, boom) {
			t.Errorf("input %d: err %v, want boom", a.v, a.err)
		}
	}
}

// TestItemErrorGoesToItsCaller: a response's own Err is its caller's, the others
// are answered.
func TestItemErrorGoesToItsCaller(t *testing.T) {
	e := &echo{}
	b := newBatcher(t, Config{MaxSize: 3, MaxDelay: time.Second, Concurrency: 1, Predict: e.predict})
	as := doAll(b, 0, 1, -2, 3)
	if as[1].err == nil || !strings.Contains(as[1].err.Error(), "negative input -2") {
		t.Errorf("input -2: err %v", as[1].err)
	}
	checkOwn(t, []answer{as[0], as[2]})
}

// TestWrongOutputCount: a model that returns too few responses, or panics, is a
// model error for every item, promptly.
func TestWrongOutputCount(t *testing.T) {
	for name, pred := range map[string]PredictFunc{
		"short": func(_ context.Context, batch []*model.Request) ([]*model.Response, error) {
			return make([]*model.Response, len(batch)-1), nil
		},
		"nil item": func(_ context.Context, batch []*model.Request) ([]*model.Response, error) {
			return make([]*model.Response, len(batch)), nil
		},
		"panic": func(context.Context, []*model.Request) ([]*model.Response, error) { panic("kaboom") },
	} {
		t.Run(name, func(t *testing.T) {
			b := newBatcher(t, Config{MaxSize: 4, MaxDelay: 100 * time.Millisecond, Concurrency: 1, Predict: pred})
			start := time.Now()
			for _, a := range doAll(b, 5*time.Second, 1, 2, 3, 4) {
				if !errors.Is(a.err, ErrBadBatch) {
					t.Errorf("input %d: err %v, want ErrBadBatch", a.v, a.err)
				}
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("answers took %v", d)
			}
			// The batcher still works after it.
			if _, err := b.Do(context.Background(), req(1)); !errors.Is(err, ErrBadBatch) {
				t.Errorf("next call: %v", err)
			}
		})
	}
}

// TestFlushAndClose: Flush sends a waiting partial batch at once; after Close, Do
// answers ErrClosed.
func TestFlushAndClose(t *testing.T) {
	e := &echo{}
	b, err := New(Config{MaxSize: 10, MaxDelay: 10 * time.Second, Concurrency: 1, Predict: e.predict})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan []answer)
	go func() { done <- doAll(b, 0, 1, 2) }()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	b.Flush()
	select {
	case as := <-done:
		checkOwn(t, as)
	case <-time.After(2 * time.Second):
		t.Fatal("Flush did not send the waiting batch")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("flushed after %v", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Do(context.Background(), req(3)); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
}

// TestCloseGivesUp: Close's context cancels a batch that does not finish.
func TestCloseGivesUp(t *testing.T) {
	e := &echo{sleep: time.Hour}
	b, err := New(Config{MaxSize: 1, Concurrency: 1, Predict: e.predict})
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() { _, err := b.Do(context.Background(), req(1)); res <- err }()
	for e.running.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := b.Close(ctx); err == nil {
		t.Error("Close: no error although a batch was cut short")
	}
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Errorf("the cut batch's caller got %v, want context.Canceled", err)
	}
}

// TestConcurrencyBound: no more than Concurrency batches compute at once, and with
// every slot busy the waiting requests form full batches.
func TestConcurrencyBound(t *testing.T) {
	e := &echo{sleep: 30 * time.Millisecond}
	obs := &counts{}
	b := newBatcher(t, Config{MaxSize: 8, MaxDelay: 5 * time.Millisecond, Concurrency: 2, Predict: e.predict, Observer: obs})
	vals := make([]int64, 200)
	for i := range vals {
		vals[i] = int64(i)
	}
	checkOwn(t, doAll(b, 0, vals...))
	if m := e.maxRun.Load(); m > 2 {
		t.Errorf("%d batches computed at once, want at most 2", m)
	}
	items := 0
	for _, n := range obs.sizes {
		items += n
	}
	if items != 200 || len(obs.sizes) > 200/4 {
		t.Errorf("batch sizes %v: with every slot busy the waiting requests should form large batches", obs.sizes)
	}
}

// TestCorrelation: 1,000 concurrent callers, each gets its own answer.
func TestCorrelation(t *testing.T) {
	e := &echo{sleep: time.Millisecond}
	b := newBatcher(t, Config{MaxSize: 32, MaxDelay: 2 * time.Millisecond, Concurrency: 4, Predict: e.predict})
	vals := make([]int64, 1000)
	for i := range vals {
		vals[i] = int64(i * 7)
	}
	checkOwn(t, doAll(b, 0, vals...))
	n := 0
	for _, s := range e.seen() {
		n += len(s)
	}
	if n != 1000 {
		t.Errorf("the model saw %d items, want 1000", n)
	}
}
