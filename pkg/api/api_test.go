package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-farm/warren/internal/lifecycle"
	"github.com/warren-farm/warren/pkg/catalog"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/metrics"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/oip"
	"github.com/warren-farm/warren/pkg/queue"
)

// The handlers are tested here with fakes of their narrow interfaces; the
// end-to-end tests (internal/e2e) drive the same handlers over a real broker.

type fakeCaller struct {
	mu    sync.Mutex
	calls []queue.Request
	err   error
	// answer computes the reply body; nil answers with the seed model.
	answer func(queue.Request) ([]byte, error)
}

var _ Caller = (*fakeCaller)(nil)

func (f *fakeCaller) Call(_ context.Context, req queue.Request) (*queue.Reply, error) {
	f.mu.Lock()
	f.calls = append(f.calls, req)
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	if f.answer != nil {
		b, err := f.answer(req)
		return &queue.Reply{Body: b, Worker: "w-1"}, err
	}
	r, id, err := oip.DecodeRequest(req.Body, oip.Limits{})
	if err != nil {
		return nil, &queue.RemoteError{Reason: queue.ReasonBadInput, Message: err.Error()}
	}
	resps, _ := model.NewSeed(model.SeedConfig{}).Predict(context.Background(), []*model.Request{r})
	b, err := oip.EncodeResponse(req.Route.Model, req.Route.Version, id, resps[0].Outputs)
	return &queue.Reply{Body: b, Worker: "w-1"}, err
}

func (f *fakeCaller) last() queue.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[len(f.calls)-1]
}

type fakeCatalog struct {
	versions map[string][]catalog.Version
	// pick, when set, answers Pick; else Pick is Resolve(name, "").
	pick func(name string, header func(string) string) (catalog.Version, error)
}

func (f *fakeCatalog) Pick(name string, header func(string) string) (catalog.Version, error) {
	if f.pick != nil {
		return f.pick(name, header)
	}
	return f.Resolve(name, "")
}

var _ Catalog = (*fakeCatalog)(nil)

func (f *fakeCatalog) Resolve(name, version string) (catalog.Version, error) {
	vs, ok := f.versions[name]
	if !ok {
		return catalog.Version{}, fmt.Errorf("%w: %q", catalog.ErrUnknownModel, name)
	}
	if version == "" {
		return vs[len(vs)-1], nil
	}
	for _, v := range vs {
		if v.Route.Version == version {
			return v, nil
		}
	}
	return catalog.Version{}, fmt.Errorf("%w: %s has no version %q", catalog.ErrUnknownVersion, name, version)
}

func (f *fakeCatalog) Models() []catalog.Model {
	var out []catalog.Model
	for n, vs := range f.versions {
		out = append(out, catalog.Model{Name: n, Versions: vs})
	}
	return out
}

func version(name, v string, md model.Metadata, live int) catalog.Version {
	md.Name, md.Versions = name, []string{v}
	return catalog.Version{Route: queue.Route{Model: name, Version: v}, Metadata: md, Live: live}
}

var digitsMD = model.Metadata{Platform: "onnx",
	Inputs:  []model.TensorSpec{{Name: "input", Datatype: model.FP32, Shape: []int64{-1, 64}}},
	Outputs: []model.TensorSpec{{Name: "probabilities", Datatype: model.FP32, Shape: []int64{-1, 10}}}}

type fakeJobs struct {
	mu   sync.Mutex
	subs []jobs.Submission
	byID map[string]*jobs.Job
	err  error
}

var _ Jobs = (*fakeJobs)(nil)

func (f *fakeJobs) Submit(_ context.Context, s jobs.Submission) (*jobs.Job, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, false, f.err
	}
	f.subs = append(f.subs, s)
	j := &jobs.Job{ID: fmt.Sprintf("j%d", len(f.subs)), Status: jobs.Queued, Model: s.Model, Version: s.Version,
		Format: s.Format, Input: s.Input, RequestID: s.RequestID, CreatedAt: time.Now(), Owner: s.Owner}
	f.byID[j.ID] = j
	return j, false, nil
}

func (f *fakeJobs) Get(_ context.Context, id string) (*jobs.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if j, ok := f.byID[id]; ok {
		return j, nil
	}
	return nil, jobs.ErrNotFound
}

func (f *fakeJobs) Wait(ctx context.Context, id string, _ time.Duration) (*jobs.Job, error) {
	return f.Get(ctx, id)
}

func (f *fakeJobs) Cancel(ctx context.Context, id string) (*jobs.Job, error) {
	j, err := f.Get(ctx, id)
	if err == nil && j.Status != jobs.Queued {
		return j, jobs.ErrConflict
	}
	return j, err
}

type fakeCapacity struct {
	mu             sync.Mutex
	served, turned int
}

func (f *fakeCapacity) ObserveService(queue.Route, time.Duration, int) {
	f.mu.Lock()
	f.served++
	f.mu.Unlock()
}
func (f *fakeCapacity) ObserveTurnedAway(queue.Route) { f.mu.Lock(); f.turned++; f.mu.Unlock() }
func (f *fakeCapacity) Handler() http.Handler         { return http.NotFoundHandler() }

// rig is the handlers around fakes.
type rig struct {
	h       http.Handler
	calls   *fakeCaller
	catalog *fakeCatalog
	jobs    *fakeJobs
	cap     *fakeCapacity
	state   lifecycle.State
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{calls: &fakeCaller{}, jobs: &fakeJobs{byID: map[string]*jobs.Job{}}, cap: &fakeCapacity{}, state: lifecycle.Ready,
		catalog: &fakeCatalog{versions: map[string][]catalog.Version{
			"seed":   {version("seed", "1", model.SeedMetadata(), 2)},
			"digits": {version("digits", "1", digitsMD, 0), version("digits", "2", digitsMD, 1)},
		}}}
	cfg := Config{DefaultModel: "seed", BodyLimit: 4096}
	cfg.setDefaults()
	reg := prometheus.NewRegistry()
	stopping := make(chan struct{})
	r.h = newRouter(&handlers{cfg: cfg, calls: r.calls, catalog: r.catalog, jobs: r.jobs, capacity: r.cap,
		metrics: metrics.NewAPI(reg, "/", nilSource{}), registry: reg,
		state: func() lifecycle.State { return r.state }, enter: func() bool { return r.state < lifecycle.Draining }, leave: func() {},
		stopping: stopping, broker: func() bool { return true }, jobsProblem: func() string { return "" }})
	return r
}

type nilSource struct{}

func (nilSource) Routes() []queue.Route                    { return nil }
func (nilSource) Workers(queue.Route) int                  { return 0 }
func (nilSource) WorkersNeeded(queue.Route) (int, bool)    { return 0, false }
func (nilSource) Client() (queue.State, queue.ClientStats) { return queue.State{}, queue.ClientStats{} }

type answer struct {
	code int
	hdr  http.Header
	body string
	m    map[string]any
}

func (r *rig) do(t *testing.T, method, path, body string, hdr ...string) answer {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, req)
	a := answer{code: rec.Code, hdr: rec.Header(), body: rec.Body.String()}
	_ = json.Unmarshal(rec.Body.Bytes(), &a.m)
	return a
}

func TestProcessKeepsTheLabContract(t *testing.T) {
	r := newRig(t)
	a := r.do(t, "POST", "/process", `{"data":"cat image data"}`, "X-Request-ID", "order-42")
	if a.code != 200 || a.m["status"] != "Input logged successfully" {
		t.Fatalf("%d %s", a.code, a.body)
	}
	pred := a.m["model_prediction"].(map[string]any)
	p := pred["prediction"].(map[string]any)
	want := model.NewSeed(model.SeedConfig{}).PredictOne("cat image data")
	if p["class"] != want.Prediction.Class || p["confidence"] != want.Prediction.Confidence || p["input_length"] != 14.0 ||
		pred["message"] != want.Message || pred["request_id"] != "order-42" || pred["worker_id"] != "w-1" {
		t.Fatalf("%s", a.body)
	}
	if m := pred["model"].(map[string]any); m["name"] != "seed" || m["version"] != "1" {
		t.Fatalf("model %v", m)
	}
	// The message on the queue is a v2 request for the default model.
	c := r.calls.last()
	if c.Route != (queue.Route{Model: "seed", Version: "1"}) || !strings.Contains(string(c.Body), `"data":["cat image data"]`) {
		t.Fatalf("published %+v %s", c.Route, c.Body)
	}
	if until := time.Until(c.Deadline); until < 9*time.Second || until > 10*time.Second {
		t.Fatalf("default deadline in %s", until)
	}
	if a := r.do(t, "POST", "/process", `{"data":"x","forward_to_model":"no"}`); a.code != 200 || a.body != loggedOK {
		t.Fatalf("log only: %d %s", a.code, a.body)
	}
	if r.cap.served != 0 { // the fake reply has no timings
		t.Errorf("capacity saw %d services without timings", r.cap.served)
	}
}

func TestProcessValidation(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		body, header, want string
	}{
		{`{}`, "", `"loc":["body","data"]`},
		{`{"data":7}`, "", `"string_type"`},
		{"{\"data\":\"\xff\xfe\"}", "", `"string_unicode"`},
		{`{"data":"x","forward_to_model":"maybe"}`, "", `"bool_parsing"`},
		{`nope`, "", `"json_invalid"`},
		{`{"data":"x"}`, "Inf", `"X-Request-Timeout"`},
		{`{"data":"x"}`, "-Inf", `"X-Request-Timeout"`},
		{`{"data":"x"}`, "NaN", `"X-Request-Timeout"`},
		{`{"data":"x"}`, "0", `"X-Request-Timeout"`},
		{`{"data":"x"}`, "-2s", `"X-Request-Timeout"`},
		{`{"data":"x"}`, "soon", `"X-Request-Timeout"`},
	} {
		a := r.do(t, "POST", "/process", tc.body, "X-Request-Timeout", tc.header)
		if a.code != 422 || !strings.Contains(a.body, tc.want) {
			t.Errorf("%s (timeout %q): %d %s, want 422 …%s…", tc.body, tc.header, a.code, a.body, tc.want)
		}
	}
	if a := r.do(t, "POST", "/process", `{"data":"`+strings.Repeat("x", 5000)+`"}`); a.code != 413 {
		t.Errorf("oversized: %d", a.code)
	}
	r.do(t, "POST", "/process", `{"data":"x"}`, "X-Request-Timeout", "2.5")
	if until := time.Until(r.calls.last().Deadline); until < 2*time.Second || until > 2500*time.Millisecond {
		t.Errorf("X-Request-Timeout 2.5: deadline in %s", until)
	}
	r.do(t, "POST", "/process", `{"data":"x"}`, "X-Request-Timeout", fmt.Sprint(math.MaxFloat64))
	if until := time.Until(r.calls.last().Deadline); until > time.Minute || until < 59*time.Second {
		t.Errorf("a huge timeout is clamped to MAX_REQUEST_TIMEOUT: %s", until)
	}
}

func TestFarmErrorsFollowTheStatusContract(t *testing.T) {
	for _, tc := range []struct {
		err          error
		code         int
		reason, hint string
		retryAfter   string
	}{
		{queue.ErrNoWorkers, 503, "no_workers", "no predictor worker is running", "5"},
		{queue.ErrQueueFull, 503, "queue_full", "the request queue is full", "1"},
		{fmt.Errorf("%w: not connected", queue.ErrBrokerUnavailable), 503, "broker_unavailable", "not connected", "5"},
		{context.DeadlineExceeded, 504, "timeout", "deadline", ""},
		{&queue.RemoteError{Reason: queue.ReasonModelError, Message: "no weights"}, 502, "model_error", "Model error: no weights", ""},
		{&queue.RemoteError{Reason: queue.ReasonBadMessage, Message: "schema"}, 502, "model_error", "schema", ""},
		{&queue.RemoteError{Reason: queue.ReasonBadInput, Message: "too long"}, 400, "bad_input", "too long", ""},
		{&queue.RemoteError{Reason: queue.ReasonTimeout, Message: "remote timed out"}, 504, "timeout", "remote timed out", ""},
	} {
		r := newRig(t)
		r.calls.err = tc.err
		for _, path := range []string{"/process", "/v2/models/seed/infer"} {
			body := `{"data":"x"}`
			key := "detail"
			if path != "/process" {
				body, key = `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["x"]}]}`, "error"
			}
			a := r.do(t, "POST", path, body)
			if a.code != tc.code || a.m["reason"] != tc.reason || !strings.Contains(fmt.Sprint(a.m[key]), tc.hint) ||
				a.hdr.Get("Retry-After") != tc.retryAfter {
				t.Errorf("%s %v: %d %v %s", path, tc.err, a.code, a.hdr, a.body)
			}
		}
		if tc.reason == "no_workers" && r.cap.turned != 2 {
			t.Errorf("no_workers not observed as turned away: %d", r.cap.turned)
		}
	}
}

func TestProcessWithoutTheDefaultModel(t *testing.T) {
	r := newRig(t)
	delete(r.catalog.versions, "seed")
	if a := r.do(t, "POST", "/process", `{"data":"x"}`); a.code != 503 || a.m["reason"] != "no_workers" {
		t.Fatalf("never served: %d %s", a.code, a.body)
	}
	r.catalog.versions["seed"] = []catalog.Version{version("seed", "1", digitsMD, 1)}
	if a := r.do(t, "POST", "/process", `{"data":"x"}`); a.code != 503 || a.m["reason"] != "not_ready" {
		t.Fatalf("not seed-shaped: %d %s", a.code, a.body)
	}
}

func TestV2Infer(t *testing.T) {
	r := newRig(t)
	r.calls.answer = func(req queue.Request) ([]byte, error) {
		return oip.EncodeResponse(req.Route.Model, req.Route.Version, "7", []model.Tensor{
			{Name: "probabilities", Datatype: model.FP32, Shape: []int64{1, 10}, Data: make([]float32, 10)}})
	}
	row := "[" + strings.TrimSuffix(strings.Repeat("0,", 64), ",") + "]"
	good := `{"id":"7","inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":[` + row + `]}]}`
	a := r.do(t, "POST", "/v2/models/digits/infer", good)
	if a.code != 200 || a.m["model_name"] != "digits" || a.m["model_version"] != "2" || a.m["id"] != "7" {
		t.Fatalf("%d %s", a.code, a.body)
	}
	if c := r.calls.last(); string(c.Body) != good {
		t.Fatalf("the request was not passed through as it came: %s", c.Body)
	}
	if a := r.do(t, "POST", "/v2/models/digits/versions/1/infer", good); a.code != 200 || r.calls.last().Route.Version != "1" {
		t.Fatalf("pinned version: %d %+v", a.code, r.calls.last().Route)
	}
	n := len(r.calls.calls)
	for _, tc := range []struct {
		path, body string
		code       int
		want       string
	}{
		{"/v2/models/nope/infer", good, 404, `Model not found: \"nope\"`},
		{"/v2/models/digits/versions/9/infer", good, 404, `digits has no version \"9\"`},
		{"/v2/models/digits/infer", `{"inputs":[{"name":"input","shape":[1,63],"datatype":"FP32","data":` + row[:len(row)-3] + `]}]}`, 400, `input \"input\": shape [1 63]: dimension 1 must be 64`},
		{"/v2/models/digits/infer", `{"inputs":[{"name":"input","shape":[1,64],"datatype":"INT8","data":` + row + `}]}`, 400, `datatype INT8, the model expects FP32`},
		{"/v2/models/digits/infer", `{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":[1]}]}`, 400, `input \"input\": data has 1 elements, the shape says 64`},
		{"/v2/models/digits/infer", `{"inputs":[{"name":"pixels","shape":[1,64],"datatype":"FP32","data":` + row + `}]}`, 400, `input \"pixels\": the model has no such input`},
		{"/v2/models/digits/infer", `{"inputs":[`, 400, `bad inference request`},
		{"/v2/models/digits/infer", `{"inputs":[]}`, 400, `input \"input\": missing`},
	} {
		a := r.do(t, "POST", tc.path, tc.body)
		if a.code != tc.code || !strings.Contains(a.body, tc.want) || a.m["error"] == nil {
			t.Errorf("%s %s: %d %s, want %d …%s…", tc.path, tc.body, a.code, a.body, tc.code, tc.want)
		}
	}
	if len(r.calls.calls) != n {
		t.Errorf("a bad request reached the queue")
	}
	if a := r.do(t, "POST", "/v2/models/digits/infer", good, "Inference-Header-Content-Length", "10"); a.code != 400 ||
		!strings.Contains(a.body, "binary tensor data extension") {
		t.Errorf("binary extension: %d %s", a.code, a.body)
	}
	if a := r.do(t, "POST", "/v2/models/digits/infer", good, "X-Request-Timeout", "Inf"); a.code != 400 ||
		!strings.Contains(a.body, "X-Request-Timeout") {
		t.Errorf("bad timeout on v2: %d %s", a.code, a.body)
	}
}

func TestV2HealthAndMetadata(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/v2/health/live", 200, `{"live":true}`},
		{"HEAD", "/v2/health/live", 200, ``},
		{"GET", "/v2/health/ready", 200, `{"ready":true}`},
		{"GET", "/v2/models/seed/ready", 200, `{"name":"seed","ready":true}`},
		{"GET", "/v2/models/digits/versions/1/ready", 400, `{"name":"digits","version":"1","ready":false}`},
		{"HEAD", "/v2/models/digits/versions/1/ready", 400, ``},
		{"GET", "/v2/models/nope/ready", 404, `"reason":"not_found"`},
	} {
		a := r.do(t, tc.method, tc.path, "")
		if a.code != tc.code || !strings.Contains(a.body, tc.body) || (tc.body == "" && a.body != "") {
			t.Errorf("%s %s: %d %q", tc.method, tc.path, a.code, a.body)
		}
	}
	a := r.do(t, "GET", "/v2/models/digits", "")
	if a.code != 200 || fmt.Sprint(a.m["versions"]) != "[1 2]" || a.m["platform"] != "onnx" ||
		!strings.Contains(a.body, `"inputs":[{"name":"input","datatype":"FP32","shape":[-1,64]}]`) {
		t.Fatalf("metadata: %s", a.body)
	}
	if a := r.do(t, "GET", "/v2/models/digits/versions/1", ""); fmt.Sprint(a.m["versions"]) != "[1]" {
		t.Fatalf("versioned metadata: %s", a.body)
	}
	if a := r.do(t, "GET", "/v2", ""); a.m["name"] != "warren" || a.m["extensions"] == nil {
		t.Fatalf("server metadata: %s", a.body)
	}
	if a := r.do(t, "GET", "/models", ""); !strings.Contains(a.body, `"name":"digits","default_version":"2"`) {
		t.Fatalf("models: %s", a.body)
	}
	r.state = lifecycle.Draining
	if a := r.do(t, "GET", "/v2/health/ready", ""); a.code != 400 || a.body != `{"ready":false}`+"\n" {
		t.Errorf("draining: %d %q", a.code, a.body)
	}
	if a := r.do(t, "POST", "/process", `{"data":"x"}`); a.code != 503 || a.m["reason"] != "draining" {
		t.Errorf("draining /process: %d %s", a.code, a.body)
	}
	if a := r.do(t, "GET", "/ready", ""); a.code != 503 || a.m["status"] != "draining" {
		t.Errorf("draining /ready: %d %s", a.code, a.body)
	}
}

func TestJobsTakeALabBodyOrAV2Request(t *testing.T) {
	r := newRig(t)
	a := r.do(t, "POST", "/jobs", `{"data":"hello"}`, "Idempotency-Key", "k-1")
	if a.code != 202 || a.hdr.Get("Location") != "/jobs/j1" || a.m["model"] != "seed" || a.m["model_version"] != "1" {
		t.Fatalf("lab job: %d %v %s", a.code, a.hdr, a.body)
	}
	s := r.jobs.subs[0]
	if s.Format != formatProcess || s.IdempotencyKey != "k-1" || !strings.Contains(string(s.Input), `"data":["hello"]`) {
		t.Fatalf("submission %+v %s", s, s.Input)
	}
	a = r.do(t, "POST", "/jobs", `{"model":"digits","version":"1","inputs":[{"name":"input","shape":[0,64],"datatype":"FP32","data":[]}]}`)
	if a.code != 202 || r.jobs.subs[1].Format != formatV2 || r.jobs.subs[1].Version != "1" {
		t.Fatalf("v2 job: %d %s", a.code, a.body)
	}
	for _, tc := range []struct {
		body, hdr string
		code      int
		want      string
	}{
		{`{"model":"nope","inputs":[]}`, "", 404, `Model not found`},
		{`{"model":"digits","inputs":[{"name":"input","shape":[1],"datatype":"FP32","data":[1]}]}`, "", 400, `input \"input\": shape [1] has 1 dimensions`},
		{`{"model":7,"inputs":[]}`, "", 422, `"loc":["body","model"]`},
		{`{"data":"x","forward_to_model":false}`, "", 422, `a job always runs the model`},
		{`{"data":"x"}`, "bad key\x01", 422, `Idempotency-Key`},
	} {
		a := r.do(t, "POST", "/jobs", tc.body, "Idempotency-Key", tc.hdr)
		if a.code != tc.code || !strings.Contains(a.body, tc.want) {
			t.Errorf("%s: %d %s, want %d …%s…", tc.body, a.code, a.body, tc.code, tc.want)
		}
	}
	for _, tc := range []struct {
		err    error
		code   int
		reason string
	}{
		{jobs.ErrKeyMismatch, 422, "idempotency_key_reused"},
		{jobs.ErrInProgress, 409, "in_progress"},
		{fmt.Errorf("%w: %w: lost", queue.ErrBrokerUnavailable, jobs.ErrUnconfirmed), 503, "broker_unavailable"},
		{fmt.Errorf("%w: %w", jobs.ErrStoreUnavailable, errors.New("redis: connection refused 10.0.0.7")), 503, "store_unavailable"},
		{fmt.Errorf("%w: quorum queues unavailable", queue.ErrJobTopology), 503, "jobs_unavailable"},
		{fmt.Errorf("%w: not connected", queue.ErrBrokerUnavailable), 503, "broker_unavailable"},
	} {
		r.jobs.err = tc.err
		a := r.do(t, "POST", "/jobs", `{"data":"x"}`)
		if a.code != tc.code || a.m["reason"] != tc.reason || strings.Contains(a.body, "10.0.0.7") {
			t.Errorf("%v: %d %s", tc.err, a.code, a.body)
		}
	}
}

func TestLabJobResultIsTheProcessPrediction(t *testing.T) {
	r := newRig(t)
	r.do(t, "POST", "/jobs", `{"data":"cat image data"}`, "X-Request-ID", "rid-9")
	j := r.jobs.byID["j1"]
	resps, _ := model.NewSeed(model.SeedConfig{}).Predict(context.Background(), []*model.Request{seedRequest("cat image data")})
	j.Result, _ = oip.EncodeResponse("seed", "1", "", resps[0].Outputs)
	j.Status, j.Worker = jobs.Succeeded, "w-7"
	a := r.do(t, "GET", "/jobs/j1", "")
	res := a.m["result"].(map[string]any)
	if a.code != 200 || res["message"] == nil || res["request_id"] != "rid-9" || res["worker_id"] != "w-7" ||
		res["prediction"].(map[string]any)["input_length"] != 14.0 {
		t.Fatalf("%d %s", a.code, a.body)
	}
	if a := r.do(t, "GET", "/jobs/nope", ""); a.code != 404 || a.m["reason"] != "not_found" {
		t.Fatalf("unknown job: %d %s", a.code, a.body)
	}
	if a := r.do(t, "DELETE", "/jobs/j1", ""); a.code != 409 || a.m["reason"] != "not_cancellable" {
		t.Fatalf("cancel a finished job: %d %s", a.code, a.body)
	}
}
