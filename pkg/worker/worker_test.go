package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warren-farm/warren/internal/lifecycle"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/oip"
	"github.com/warren-farm/warren/pkg/queue"
)

var seedRoute = queue.Route{Model: "seed", Version: "1"}

// broken is a seed-shaped model whose Predict always fails with err.
type broken struct{ err error }

func (broken) Metadata() model.Metadata { return model.SeedMetadata() }
func (b broken) Predict(ctx context.Context, batch []*model.Request) ([]*model.Response, error) {
	if batch[0].ID == "warmup" {
		return model.NewSeed(model.SeedConfig{}).Predict(context.Background(), batch)
	}
	if errors.Is(b.err, context.DeadlineExceeded) {
		<-ctx.Done() // a model that runs until the request's deadline
		return nil, ctx.Err()
	}
	return nil, b.err
}

func spec(r queue.Route, p model.Predictor) ModelSpec {
	return ModelSpec{Route: r, Concurrency: 2, Load: func(context.Context) (model.Predictor, error) { return p, nil }}
}

// newWorker builds a worker serving specs and loads its models (no broker needed).
func newWorker(t *testing.T, specs ...ModelSpec) *Worker {
	t.Helper()
	w, err := New(Config{AMQP: queue.DialConfig{URL: "amqp://guest:guest@127.0.0.1:5672/"}, WorkerID: "unit-1",
		BodyLimit: 256, Models: specs, LoadRetry: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.loadAll(ctx); err != nil {
		t.Fatal(err)
	}
	return w
}

func TestQueueHandlerAnswersV2(t *testing.T) {
	w := newWorker(t, spec(seedRoute, model.NewSeed(model.SeedConfig{Seed: 3})))
	body := `{"id":"abc","inputs":[{"name":"data","shape":[2],"datatype":"BYTES","data":["héllo","x"]}],"outputs":[{"name":"input_length"}]}`
	out, err := w.byRoute[seedRoute].handle(w, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	r, err := oip.DecodeResponse(out, oip.Limits{})
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if r.ModelName != "seed" || r.ModelVersion != "1" || r.ID != "abc" || len(r.Outputs) != 1 ||
		r.Outputs[0].Name != "input_length" || r.Outputs[0].Data.([]int64)[0] != 5 {
		t.Fatalf("%s", out)
	}
}

func TestQueueHandlerClassifiesErrors(t *testing.T) {
	w := newWorker(t, spec(seedRoute, broken{errors.New("no weights")}),
		spec(queue.Route{Model: "picky", Version: "1"}, broken{model.BadInput("data", "too short")}),
		spec(queue.Route{Model: "slow", Version: "1"}, broken{model.ErrTimeout}))
	good := `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["x"]}]}`
	for _, tc := range []struct {
		model, body, reason, contains string
	}{
		{"seed", good, queue.ReasonModelError, "no weights"},
		{"picky", good, queue.ReasonBadInput, `input "data": too short`},
		{"slow", good, queue.ReasonTimeout, "model timed out"},
		{"seed", `{"inputs":[{"name":"data","shape":[1],"datatype":"FP32","data":[1]}]}`, queue.ReasonBadInput, "datatype FP32, the model expects BYTES"},
		{"seed", `{"inputs":[`, queue.ReasonBadInput, "bad inference request"},
		{"seed", `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["x"]}],"outputs":[{"name":"nope"}]}`, queue.ReasonBadInput, `requested output "nope"`},
	} {
		_, err := w.byRoute[queue.Route{Model: tc.model, Version: "1"}].handle(w, []byte(tc.body))
		var re *queue.ReasonError
		if !errors.As(err, &re) || re.Reason != tc.reason || !strings.Contains(err.Error(), tc.contains) {
			t.Errorf("%s %s: %v, want %s …%s…", tc.model, tc.body, err, tc.reason, tc.contains)
		}
	}
	// The request's own deadline is not a model error: the consumer leaves it
	// unanswered (the caller already gave up).
	w2 := newWorker(t, spec(seedRoute, broken{context.DeadlineExceeded}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err := w2.handler(w2.byRoute[seedRoute], &w2.byRoute[seedRoute].syncBatch)(ctx, &queue.Message{Route: seedRoute, Body: []byte(good)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
}

// handle runs the route's queue handler on a body.
func (s *served) handle(w *Worker, body []byte) ([]byte, error) {
	return w.handler(s, &s.syncBatch)(context.Background(), &queue.Message{Route: s.spec.Route, RequestID: "r-1", Body: body})
}

func TestPredictEndpoint(t *testing.T) {
	h := newWorker(t, spec(seedRoute, model.NewSeed(model.SeedConfig{}))).Handler()
	for _, tc := range []struct {
		body, rid string
		status    int
		contains  string
	}{
		{`{"input":"test"}`, "abc", 200, `"request_id":"abc"`},
		{`{"input":"test"}`, "", 200, `"input_length":4`},
		{`{}`, "", 422, `"loc":["body","input"]`},
		{`{"input":7}`, "", 422, `"string_type"`},
		{`nope`, "", 422, `"json_invalid"`},
		{"{\"input\":\"\xff\"}", "", 422, `"string_unicode"`},
		{`{"input":"` + strings.Repeat("x", 300) + `"}`, "", 413, `Request body too large`},
	} {
		req := httptest.NewRequest("POST", "/predict", strings.NewReader(tc.body))
		if tc.rid != "" {
			req.Header.Set("X-Request-ID", tc.rid)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.contains) {
			t.Errorf("%s: %d %s", tc.body, rec.Code, rec.Body)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/predict", strings.NewReader(`{"input":"héllo"}`)))
	var a model.Answer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("héllo"))
	if a.WorkerID != "unit-1" || a.InputSHA256 != hex.EncodeToString(sum[:]) || a.Prediction.InputLength != 5 ||
		a.Model.Name != "seed" || a.Model.Version != "1" {
		t.Fatalf("answer %+v", a)
	}

	rec = httptest.NewRecorder()
	newWorker(t, spec(seedRoute, broken{errors.New("no weights")})).Handler().ServeHTTP(rec,
		httptest.NewRequest("POST", "/predict", strings.NewReader(`{"input":"x"}`)))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "no weights") {
		t.Errorf("model error: %d %s", rec.Code, rec.Body)
	}
	// Loaded but not consuming: not ready.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/ready", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"status":"new"`) ||
		!strings.Contains(rec.Body.String(), `"status":"ready","platform":"warren_seed"`) {
		t.Errorf("/ready before consuming: %d %s", rec.Code, rec.Body)
	}
}

// flaky is unavailable a few times, then loads.
type flaky struct{ left atomic.Int32 }

func TestLoadRetriesUnavailableAndFailsOnOtherErrors(t *testing.T) {
	f := &flaky{}
	f.left.Store(3)
	s := ModelSpec{Route: seedRoute, Load: func(context.Context) (model.Predictor, error) {
		if f.left.Add(-1) >= 0 {
			return nil, model.ErrUnavailable
		}
		return model.NewSeed(model.SeedConfig{}), nil
	}}
	w := newWorker(t, s)
	if st, _ := w.byRoute[seedRoute].get(); st != "ready" {
		t.Fatalf("status %s", st)
	}
	bad := ModelSpec{Route: seedRoute, Load: func(context.Context) (model.Predictor, error) {
		return nil, errors.New("operator ArgMax is not supported")
	}}
	w2, err := New(Config{AMQP: queue.DialConfig{URL: "amqp://127.0.0.1/"}, WorkerID: "u", Models: []ModelSpec{bad}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w2.loadAll(context.Background()); !errors.Is(err, ErrModel) || !strings.Contains(err.Error(), "ArgMax") {
		t.Fatalf("permanent load failure: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("empty config accepted")
	}
	_, err := New(Config{AMQP: queue.DialConfig{URL: "amqp://x/"}, WorkerID: "w",
		Models: []ModelSpec{spec(seedRoute, model.NewSeed(model.SeedConfig{})), spec(seedRoute, model.NewSeed(model.SeedConfig{}))}})
	if err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("duplicate model: %v", err)
	}
}

func TestHTTPServeErrorStopsTheWorkerAtOnce(t *testing.T) {
	// No broker at all: the worker must not wait for one to notice its HTTP server
	// is gone.
	w, err := New(Config{AMQP: queue.DialConfig{URL: "amqp://guest:guest@127.0.0.1:1/"}, WorkerID: "u",
		Models: []ModelSpec{spec(seedRoute, model.NewSeed(model.SeedConfig{}))}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // Serve fails at once
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background(), ln) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "http server") {
			t.Fatalf("Run = %v, want the HTTP server's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the worker kept running without its HTTP server")
	}
	if w.State() != lifecycle.Stopped {
		t.Fatalf("state %s", w.State())
	}
	// Stop after Run returned is a no-op that reports Run's outcome, as often as asked.
	for i := 0; i < 2; i++ {
		if err := w.Stop(context.Background()); err == nil {
			t.Fatal("Stop lost Run's error")
		}
	}
}

func TestStopDrainsARunningWorkerAndIsIdempotent(t *testing.T) {
	w, err := New(Config{AMQP: queue.DialConfig{URL: "amqp://guest:guest@127.0.0.1:1/"}, WorkerID: "u",
		Models: []ModelSpec{spec(seedRoute, model.NewSeed(model.SeedConfig{}))}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background(), ln) }()
	select { // models loaded and warm: ready, though no broker answers (not consuming)
	case <-w.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("never ready")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		if err := w.Stop(ctx); err != nil {
			t.Fatalf("Stop #%d: %v", i, err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("the HTTP listener is still open after Stop")
	}
}
