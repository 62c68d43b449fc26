package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/queue"
)

type broken struct{ model.Predictor }

func (broken) Predict(context.Context, []model.Input) ([]model.Output, error) {
	return nil, errors.New("no weights")
}

func newWorker(t *testing.T, p model.Predictor) *Worker {
	t.Helper()
	w, err := New(Config{Queue: queue.ConsumerConfig{
		DialConfig: queue.DialConfig{URL: "amqp://guest:guest@127.0.0.1:5672/"}, WorkerID: "unit-1",
	}, BodyLimit: 256}, p)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestQueueHandlerAnswersWithDigestAndIdentity(t *testing.T) {
	w := newWorker(t, model.NewSeed(model.SeedConfig{Seed: 3}))
	body, err := w.handle(context.Background(), &queue.Message{RequestID: "r-1", Body: []byte(`{"data":"héllo"}`)})
	if err != nil {
		t.Fatal(err)
	}
	var a Answer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("héllo"))
	if a.RequestID != "r-1" || a.WorkerID != "unit-1" || a.InputSHA256 != hex.EncodeToString(sum[:]) ||
		a.Prediction.InputLength != 5 || a.Model.Name != "seed-animals" {
		t.Fatalf("answer %+v", a)
	}
	// Undecodable bodies are the sender's fault, marked so the reply says bad_message.
	_, err = w.handle(context.Background(), &queue.Message{Body: []byte(`{"data":`)})
	var bm *queue.BadMessageError
	if !errors.As(err, &bm) {
		t.Fatalf("err = %v, want a BadMessageError", err)
	}
}

func TestPredictEndpoint(t *testing.T) {
	h := newWorker(t, model.NewSeed(model.SeedConfig{})).Handler()
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
		if rec.Code == 200 && rec.Header().Get("X-Request-ID") == "" {
			t.Errorf("%s: no X-Request-ID", tc.body)
		}
	}

	rec := httptest.NewRecorder()
	newWorker(t, broken{}).Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/predict", strings.NewReader(`{"input":"x"}`)))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "no weights") {
		t.Errorf("model error: %d %s", rec.Code, rec.Body)
	}
	// Not consuming yet: not ready.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/ready", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"not_consuming"`) {
		t.Errorf("/ready before consuming: %d %s", rec.Code, rec.Body)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}, model.NewSeed(model.SeedConfig{})); err == nil {
		t.Error("no URL accepted")
	}
	if _, err := New(Config{Queue: queue.ConsumerConfig{DialConfig: queue.DialConfig{URL: "amqp://x/"}, WorkerID: "w"}}, nil); err == nil {
		t.Error("nil model accepted")
	}
}
