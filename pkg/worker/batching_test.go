package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/batch"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/oip"
	"github.com/warren-farm/warren/pkg/queue"
)

// counting is the seed model that counts its Predict calls and items, can hold
// its calls until released, and can break the batch contract.
type counting struct {
	seed         *model.Seed
	calls, items atomic.Int64
	hold         chan struct{} // when not nil, non-warm-up calls wait for it to close
	short        bool          // answer one response too few
}

func (c *counting) Metadata() model.Metadata { return model.SeedMetadata() }
func (c *counting) Predict(ctx context.Context, b []*model.Request) ([]*model.Response, error) {
	if b[0].ID == "warmup" {
		return c.seed.Predict(ctx, b)
	}
	c.calls.Add(1)
	c.items.Add(int64(len(b)))
	if c.hold != nil {
		<-c.hold
	}
	r, err := c.seed.Predict(ctx, b)
	if c.short && err == nil {
		r = r[:len(r)-1]
	}
	return r, err
}

func batchedWorker(t *testing.T, p model.Predictor, size, concurrency int, delay time.Duration) (*Worker, *served) {
	t.Helper()
	sp := spec(seedRoute, p)
	sp.MaxBatchSize, sp.MaxBatchDelay, sp.Concurrency = size, delay, concurrency
	w := newWorker(t, sp)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		w.closeBatchers(ctx)
	})
	return w, w.byRoute[seedRoute]
}

func seedBody(input string) []byte {
	return fmt.Appendf(nil, `{"id":%q,"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":[%q]}]}`, input, input)
}

// TestBatchedHandler: concurrent queue messages share Predict calls, each answer
// is its own request's, and a batching model gets MaxBatchSize × Concurrency
// handler slots.
func TestBatchedHandler(t *testing.T) {
	m := &counting{seed: model.NewSeed(model.SeedConfig{Seed: 5, Latency: 20 * time.Millisecond})}
	w, s := batchedWorker(t, m, 8, 2, 10*time.Millisecond)
	if got := w.consumer.Concurrency(seedRoute); got != 16 {
		t.Errorf("handler slots %d, want 8 × 2", got)
	}
	if s.syncBatch.Load() == nil {
		t.Fatal("no batcher after load")
	}
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := strings.Repeat("x", i+1)
			out, err := s.handle(w, seedBody(in))
			if err != nil {
				errs <- err
				return
			}
			r, err := oip.DecodeResponse(out, oip.Limits{})
			if err != nil {
				errs <- err
				return
			}
			want := m.seed.PredictOne(in)
			var got int64
			for _, o := range r.Outputs {
				if o.Name == model.SeedInputLength {
					got = o.Data.([]int64)[0]
				}
			}
			if r.ID != in || got != int64(i+1) || want.Prediction.InputLength != i+1 {
				errs <- fmt.Errorf("input of length %d got id %q, input_length %d", i+1, r.ID, got)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if c := m.calls.Load(); c >= n/2 || m.items.Load() != n {
		t.Errorf("%d Predict calls for %d items (model saw %d): not batched", c, n, m.items.Load())
	}
}

// TestBatchedExpiredIsATimeout: a request whose deadline passes while it waits for
// a batch is answered with a timeout and never reaches the model.
func TestBatchedExpiredIsATimeout(t *testing.T) {
	m := &counting{seed: model.NewSeed(model.SeedConfig{}), hold: make(chan struct{})}
	w, s := batchedWorker(t, m, 2, 1, 0)
	held := make(chan error, 2)
	for i := range 2 { // a full batch holds the only compute slot
		go func() { _, err := s.handle(w, seedBody(fmt.Sprint("held", i))); held <- err }()
	}
	for m.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := w.handler(s, &s.syncBatch)(ctx, &queue.Message{Route: seedRoute, Body: seedBody("late")})
	var re *queue.ReasonError
	if !errors.As(err, &re) || re.Reason != queue.ReasonTimeout || !errors.Is(err, batch.ErrExpired) {
		t.Fatalf("expired: %v, want a timeout reason wrapping batch.ErrExpired", err)
	}
	close(m.hold)
	for range 2 {
		if err := <-held; err != nil {
			t.Fatal(err)
		}
	}
	if m.items.Load() != 2 {
		t.Errorf("the model saw %d items, want the 2 held ones only", m.items.Load())
	}
	if got := s.syncBatch.Load().Expired(); got != 1 {
		t.Errorf("expired counted %d, want 1", got)
	}
}

// TestBatchedWrongCountIsAModelError: a model that returns too few responses
// gives every item of the batch a model error.
func TestBatchedWrongCountIsAModelError(t *testing.T) {
	m := &counting{seed: model.NewSeed(model.SeedConfig{}), short: true}
	w, s := batchedWorker(t, m, 4, 1, 50*time.Millisecond)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.handle(w, seedBody(fmt.Sprint("in", i)))
			var re *queue.ReasonError
			if !errors.As(err, &re) || re.Reason != queue.ReasonModelError || !strings.Contains(err.Error(), "responses for a batch of") {
				t.Errorf("item %d: %v, want a model error naming the count", i, err)
			}
		}()
	}
	wg.Wait()
}

// TestDrainFlushesAWaitingBatch: a request waiting for its batch to fill (a long
// max_batch_delay) is computed and answered as soon as the worker drains, not when
// the delay ends. POST /predict takes the same batcher as the queue; no broker is
// needed.
func TestDrainFlushesAWaitingBatch(t *testing.T) {
	m := &counting{seed: model.NewSeed(model.SeedConfig{})}
	sp := spec(seedRoute, m)
	sp.MaxBatchSize, sp.MaxBatchDelay = 8, time.Minute
	w, err := New(Config{AMQP: queue.DialConfig{URL: "amqp://guest:guest@127.0.0.1:1/"}, WorkerID: "u", Models: []ModelSpec{sp}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background(), ln) }()
	select {
	case <-w.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("never ready")
	}
	type answer struct {
		code int
		body string
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		res, err := http.Post("http://"+ln.Addr().String()+"/predict", "application/json", strings.NewReader(`{"input":"waiting"}`))
		if err != nil {
			got <- answer{err: err}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		got <- answer{code: res.StatusCode, body: string(b)}
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case a := <-got:
		t.Fatalf("answered before the drain, without a full batch: %+v", a)
	default:
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a.err != nil || a.code != http.StatusOK || !strings.Contains(a.body, `"input_length":7`) {
		t.Fatalf("the waiting request: %+v", a)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("answered %v after the stop: the drain did not flush", d)
	}
	if m.calls.Load() != 1 || m.items.Load() != 1 {
		t.Errorf("model calls %d, items %d, want 1 and 1", m.calls.Load(), m.items.Load())
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestPredictAfterBatchersCloseIsDraining: POST /predict on a batching model whose
// batchers the drain has closed answers 503 draining, not a model error.
func TestPredictAfterBatchersCloseIsDraining(t *testing.T) {
	w, _ := batchedWorker(t, &counting{seed: model.NewSeed(model.SeedConfig{})}, 4, 1, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w.closeBatchers(ctx)
	rec := httptest.NewRecorder()
	w.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/predict", strings.NewReader(`{"input":"late"}`)))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"reason":"draining"`) {
		t.Fatalf("after the batchers closed: %d %s, want 503 draining", rec.Code, rec.Body.String())
	}
}

// TestBatchedErrorsKeepTheirReasons: through the batcher a model's errors reach
// the reply with the reasons they have without it (a job's retry depends on
// them): timeout for a model that gave up, model_error otherwise, and the
// request's own deadline unanswered.
func TestBatchedErrorsKeepTheirReasons(t *testing.T) {
	for _, tc := range []struct {
		err    error
		reason string
	}{
		{model.ErrTimeout, queue.ReasonTimeout},
		{fmt.Errorf("remote down: %w", model.ErrUnavailable), queue.ReasonModelError},
		{errors.New("no weights"), queue.ReasonModelError},
	} {
		w, s := batchedWorker(t, broken{tc.err}, 4, 1, time.Millisecond)
		_, err := s.handle(w, seedBody("x"))
		var re *queue.ReasonError
		if !errors.As(err, &re) || re.Reason != tc.reason || !errors.Is(err, tc.err) {
			t.Errorf("%v: got %v, want reason %s wrapping it", tc.err, err, tc.reason)
		}
	}
	w, s := batchedWorker(t, broken{context.DeadlineExceeded}, 4, 1, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := w.handler(s, &s.syncBatch)(ctx, &queue.Message{Route: seedRoute, Body: seedBody("x")})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the request's deadline while computing: %v, want context.DeadlineExceeded (unanswered)", err)
	}
}

// TestNewRejectsTooManyBatchSlots: max_batch_size × concurrency must fit AMQP's
// 16-bit prefetch count; the error names the model and both numbers.
func TestNewRejectsTooManyBatchSlots(t *testing.T) {
	sp := spec(seedRoute, model.NewSeed(model.SeedConfig{}))
	sp.MaxBatchSize, sp.Concurrency = 1024, 128
	_, err := New(Config{AMQP: queue.DialConfig{URL: "amqp://x/"}, WorkerID: "w", Models: []ModelSpec{sp}})
	if err == nil || !strings.Contains(err.Error(), "seed/1: max_batch_size 1024 × concurrency 128 = 131072") {
		t.Fatalf("got %v", err)
	}
	sp.Concurrency = 64 // 65,536: one too many
	if _, err := New(Config{AMQP: queue.DialConfig{URL: "amqp://x/"}, WorkerID: "w", Models: []ModelSpec{sp}}); err == nil {
		t.Fatal("65,536 slots accepted")
	}
	sp.Concurrency = 63
	if _, err := New(Config{AMQP: queue.DialConfig{URL: "amqp://x/"}, WorkerID: "w", Models: []ModelSpec{sp}}); err != nil {
		t.Fatal(err)
	}
}
