package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/api"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/jobs/boltstore"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/worker"
)

// slowFaulty is faulty, plus "slow…" inputs that take 1.5 s.
type slowFaulty struct{ faulty }

func (f slowFaulty) Predict(ctx context.Context, batch []*model.Request) ([]*model.Response, error) {
	if in := batch[0].Input(model.SeedInput); in != nil {
		if data, _ := in.Data.([]string); len(data) == 1 && strings.HasPrefix(data[0], "slow") {
			select {
			case <-time.After(1500 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	return f.faulty.Predict(ctx, batch)
}

// inprocFarm is an API with an embedded job store and, once started, workers, all
// in this process.
type inprocFarm struct {
	t     *testing.T
	vh    *testbroker.Vhost
	srv   *api.Server
	store jobs.Store
	base  string
	stops []func()
}

func newInprocFarm(t *testing.T) *inprocFarm {
	t.Helper()
	vh := testbroker.NewVhost(t)
	store, err := boltstore.OpenBolt(boltstore.BoltConfig{Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	srv := newAPI(t, vh, api.Config{Jobs: api.JobsConfig{Store: store, MaxWait: 10 * time.Second}})
	f := &inprocFarm{t: t, vh: vh, srv: srv, store: store}
	ln := listen(t)
	f.base = "http://" + ln.Addr().String()
	f.run(func(ctx context.Context) { _ = srv.Run(ctx, ln) })
	deadline := time.Now().Add(10 * time.Second)
	for !srv.Client().State().Connected {
		if time.Now().After(deadline) {
			t.Fatal("API never connected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return f
}

// run runs fn until close (or the returned stop) cancels its context.
func (f *inprocFarm) run(fn func(ctx context.Context)) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); fn(ctx) }()
	stop := func() { cancel(); <-done }
	f.stops = append(f.stops, stop)
	return stop
}

// close stops everything, newest first (workers before the API).
func (f *inprocFarm) close() {
	for i := len(f.stops) - 1; i >= 0; i-- {
		f.stops[i]()
	}
	client.CloseIdleConnections()
}

// startWorker runs a worker serving the seed model through slowFaulty with
// jobConcurrency job slots (two attempts, 20 ms apart) and waits until the API
// sees it. The returned func stops it (close does too).
func (f *inprocFarm) startWorker(id string, jobConcurrency int) (*worker.Worker, func()) {
	f.t.Helper()
	w := newWorker(f.t, f.vh, worker.Config{WorkerID: id,
		Models: []worker.ModelSpec{serve(seedRoute, slowFaulty{faulty{model.NewSeed(model.SeedConfig{})}}, 4, jobConcurrency)},
		Jobs:   worker.JobsConfig{MaxAttempts: 2, RetryBackoff: 20 * time.Millisecond, RetryBackoffMax: 20 * time.Millisecond},
	})
	ln := listen(f.t)
	stop := f.run(func(ctx context.Context) { _ = w.Run(ctx, ln) })
	deadline := time.Now().Add(15 * time.Second)
	for {
		if v, err := f.srv.Catalog().Resolve(seedRoute.Model, seedRoute.Version); err == nil && v.Ready() {
			return w, stop
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("the API never saw worker %s", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// knowSeed makes the API know the seed model (a worker announces it, then
// leaves), so that jobs can be submitted with no worker running.
func (f *inprocFarm) knowSeed() {
	f.t.Helper()
	_, stop := f.startWorker("announcer", 0)
	stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := f.srv.Catalog().Resolve(seedRoute.Model, "")
		if err != nil {
			f.t.Fatalf("the API forgot the seed model when its worker left: %v", err)
		}
		if !v.Ready() {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatal("the seed model still has live workers after its worker stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type jobBody struct {
	ID           string          `json:"id"`
	Status       string          `json:"status"`
	Model        string          `json:"model"`
	ModelVersion string          `json:"model_version"`
	CreatedAt    time.Time       `json:"created_at"`
	StartedAt    *time.Time      `json:"started_at"`
	FinishedAt   *time.Time      `json:"finished_at"`
	Attempts     int             `json:"attempts"`
	Result       json.RawMessage `json:"result"`
	Error        *struct {
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"error"`
	Links struct {
		Self string `json:"self"`
	} `json:"links"`
}

func decodeJob(t *testing.T, r response) jobBody {
	t.Helper()
	var j jobBody
	if err := json.Unmarshal(r.Body, &j); err != nil {
		t.Fatalf("job body: %v: %s", err, r.Body)
	}
	return j
}

// v2Response is the v2 inference response a v2 job's result holds.
type v2Response struct {
	ModelName    string `json:"model_name"`
	ModelVersion string `json:"model_version"`
	Outputs      []struct {
		Name     string          `json:"name"`
		Datatype string          `json:"datatype"`
		Shape    []int64         `json:"shape"`
		Data     json.RawMessage `json:"data"`
	} `json:"outputs"`
}

// TestJobsHTTPContract walks the job endpoints through an in-process farm with the
// embedded store: submission with no worker running, idempotency, validation,
// cancel, long poll, model errors with retries, the v2 form, the worker's events
// reaching GET /jobs/{id} with the model named, and the Prefer: respond-async
// hand-off. Every answer is checked against openapi.json.
func TestJobsHTTPContract(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	f := newInprocFarm(t)
	defer f.close()
	spec := newFarmSpec(t)
	do := func(method, path, body string, hdr ...string) response {
		t.Helper()
		return doChecked(t, spec, method, f.base+path, body, hdr...)
	}
	// A model no worker ever announced cannot take jobs: the lab's form says 503
	// (no predictor), the v2 form 404.
	if r := do("POST", "/jobs", `{"data":"too early"}`); r.Status != 503 || r.json(t)["reason"] != "no_workers" {
		t.Fatalf("POST /jobs before any worker announced the default model: %d %s", r.Status, r.Body)
	}
	f.knowSeed()

	// No worker running: the job is stored, confirmed and queued.
	r := do("POST", "/jobs", `{"data":"first"}`, "Idempotency-Key", "key-1")
	if r.Status != 202 {
		t.Fatalf("POST /jobs: %d %s", r.Status, r.Body)
	}
	first := decodeJob(t, r)
	if first.Status != "queued" || r.Header.Get("Location") != "/jobs/"+first.ID || first.Links.Self != "/jobs/"+first.ID ||
		first.Model != "seed" || first.ModelVersion != "1" {
		t.Fatalf("submitted job %+v, Location %q", first, r.Header.Get("Location"))
	}
	// The same key and body: the original job, not a second one.
	r = do("POST", "/jobs", `{"data":"first", "forward_to_model": true}`, "Idempotency-Key", "key-1")
	if r.Status != 200 || r.Header.Get("Idempotent-Replayed") != "true" || decodeJob(t, r).ID != first.ID {
		t.Fatalf("replay: %d %s %v", r.Status, r.Body, r.Header)
	}
	// The same key with another body.
	if r = do("POST", "/jobs", `{"data":"other"}`, "Idempotency-Key", "key-1"); r.Status != 422 || r.json(t)["reason"] != "idempotency_key_reused" {
		t.Fatalf("key reuse: %d %s", r.Status, r.Body)
	}
	// A key whose first submission is still in progress (stored, not yet
	// confirmed): a job of key-2 with the first job's body, never published.
	stored, err := f.store.Get(context.Background(), first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Create(context.Background(), &jobs.Job{ID: "jpending", IdempotencyKey: "key-2", BodyHash: stored.BodyHash,
		Model: stored.Model, Version: stored.Version, Format: stored.Format, Input: stored.Input, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if r = do("POST", "/jobs", `{"data":"first"}`, "Idempotency-Key", "key-2"); r.Status != 409 || r.json(t)["reason"] != "in_progress" {
		t.Fatalf("in-progress key: %d %s", r.Status, r.Body)
	}
	if err := f.store.Delete(context.Background(), "jpending"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		body   string
		hdr    []string
		status int
	}{
		{`{"data":"x","forward_to_model":false}`, nil, 422},
		{`{"nodata":1}`, nil, 422},
		{`{"data":"x"}`, []string{"Idempotency-Key", strings.Repeat("k", 256)}, 422},
		{`{"model":"nosuchmodel","inputs":[]}`, nil, 404},
		{`{"model":"seed","inputs":[{"name":"nope","shape":[1],"datatype":"BYTES","data":["x"]}]}`, nil, 400},
	} {
		if r = do("POST", "/jobs", c.body, c.hdr...); r.Status != c.status {
			t.Errorf("POST /jobs %s %v: %d, want %d: %s", c.body, c.hdr, r.Status, c.status, r.Body)
		}
	}
	if r = do("GET", "/jobs/"+first.ID+"?wait=soon", ""); r.Status != 422 {
		t.Errorf("bad wait: %d", r.Status)
	}
	if r = do("GET", "/jobs/jnosuchjob", ""); r.Status != 404 {
		t.Errorf("unknown job: %d", r.Status)
	}

	// Cancel a queued job; cancelling it again answers the same.
	doomed := decodeJob(t, do("POST", "/jobs", `{"data":"doomed"}`))
	if r = do("DELETE", "/jobs/"+doomed.ID, ""); r.Status != 200 || decodeJob(t, r).Status != "cancelled" {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	if r = do("DELETE", "/jobs/"+doomed.ID, ""); r.Status != 200 || decodeJob(t, r).Status != "cancelled" {
		t.Fatalf("cancelling twice: %d %s", r.Status, r.Body)
	}

	failing := decodeJob(t, do("POST", "/jobs", `{"data":"fail"}`))
	// The v2 form: a job of a named model and version; its result is the v2 response.
	v2job := decodeJob(t, do("POST", "/jobs", `{"model":"seed","version":"1","inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["v2 form"]}]}`))
	if v2job.Status != "queued" || v2job.Model != "seed" || v2job.ModelVersion != "1" {
		t.Fatalf("v2 job: %+v", v2job)
	}
	f.startWorker("inproc-1", 2)
	// Long poll: answers once the job is final, with the worker's events applied.
	begin := time.Now()
	r = do("GET", "/jobs/"+first.ID+"?wait=10", "")
	done := decodeJob(t, r)
	if done.Status != "succeeded" || done.Attempts != 1 || done.StartedAt == nil || done.FinishedAt == nil ||
		done.Model != "seed" || done.ModelVersion != "1" {
		t.Fatalf("first job after the wait (%v): %s", time.Since(begin), r.Body)
	}
	var pred struct {
		Prediction  map[string]any `json:"prediction"`
		InputSHA256 string         `json:"input_sha256"`
		WorkerID    string         `json:"worker_id"`
	}
	if err := json.Unmarshal(done.Result, &pred); err != nil || pred.Prediction["class"] == nil || pred.InputSHA256 == "" ||
		pred.WorkerID != "inproc-1" {
		t.Errorf("result is not a model_prediction by inproc-1: %s", done.Result)
	}
	r = do("GET", "/jobs/"+failing.ID+"?wait=10s", "")
	if j := decodeJob(t, r); j.Status != "failed" || j.Error == nil || j.Error.Reason != "model_error" || j.Attempts != 2 ||
		j.Model != "seed" || j.ModelVersion != "1" {
		t.Errorf("failing job: %s", r.Body)
	}
	r = do("GET", "/jobs/"+v2job.ID+"?wait=10", "")
	var v2 v2Response
	if j := decodeJob(t, r); j.Status != "succeeded" || json.Unmarshal(j.Result, &v2) != nil || v2.ModelName != "seed" ||
		v2.ModelVersion != "1" || len(v2.Outputs) == 0 {
		t.Errorf("v2 job: %s", r.Body)
	}
	if r = do("GET", "/jobs/"+doomed.ID, ""); decodeJob(t, r).Status != "cancelled" {
		t.Errorf("the cancelled job changed: %s", r.Body)
	}
	if r = do("DELETE", "/jobs/"+first.ID, ""); r.Status != 409 || r.json(t)["reason"] != "not_cancellable" {
		t.Errorf("cancel of a finished job: %d %s", r.Status, r.Body)
	}

	// Hand-off: finishes within the wait → /process's 200; does not → 202 and a job.
	r = do("POST", "/process", `{"data":"quick"}`, "Prefer", "respond-async, wait=5")
	if r.Status != 200 || r.Header.Get("Location") != "" {
		t.Fatalf("quick hand-off: %d %v %s", r.Status, r.Header, r.Body)
	}
	checkPrediction(t, r, "quick", r.Header.Get("X-Request-ID"))
	r = do("POST", "/process", `{"data":"slow one"}`, "Prefer", "respond-async, wait=0.2")
	if r.Status != 202 || r.Header.Get("Preference-Applied") != "respond-async" || !strings.HasPrefix(r.Header.Get("Location"), "/jobs/") {
		t.Fatalf("slow hand-off: %d %v %s", r.Status, r.Header, r.Body)
	}
	if j := decodeJob(t, r); j.Model != "seed" || j.ModelVersion != "1" {
		t.Errorf("handed-off job: %s", r.Body)
	}
	r = do("GET", r.Header.Get("Location")+"?wait=10", "")
	if j := decodeJob(t, r); j.Status != "succeeded" {
		t.Errorf("handed-off job: %s", r.Body)
	}

	fams := families(t, f.base+"/metrics")
	jl := map[string]string{"vhost": f.vh.Name}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"warren_jobs_submitted_total", jl, 6},
		{"warren_jobs_finished_total", with(jl, "status", "succeeded"), 4},
		{"warren_jobs_finished_total", with(jl, "status", "failed"), 1},
		{"warren_jobs_finished_total", with(jl, "status", "cancelled"), 1},
		{"warren_jobs_finished_total", with(jl, "status", "expired"), 0},
	} {
		if got, _, ok := sample(fams, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
}

// TestLongPollEndsOnDrain: a stopping API answers its long polls at once with the
// job as it is, instead of holding them until the drain times out.
func TestLongPollEndsOnDrain(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	f := newInprocFarm(t)
	defer f.close()
	f.knowSeed()
	spec := newFarmSpec(t)
	j := decodeJob(t, doChecked(t, spec, "POST", f.base+"/jobs", `{"data":"waits"}`))
	type res struct {
		r  response
		el time.Duration
	}
	got := make(chan res, 1)
	go func() {
		begin := time.Now()
		r := doChecked(t, nil, "GET", f.base+"/jobs/"+j.ID+"?wait=30", "")
		got <- res{r, time.Since(begin)}
	}()
	// Wait until the poll is in the API: two requests in flight, the poll and the
	// scrape asking.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if v, _, _ := sample(families(t, f.base+"/metrics"), "warren_http_requests_in_flight", nil); v >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the long poll never reached the API")
		}
	}
	go f.stops[0]() // the API's Run context: drain
	select {
	case g := <-got:
		if g.r.Status != 200 || decodeJob(t, g.r).Status != "queued" || g.el > 5*time.Second {
			t.Fatalf("long poll during drain: %d after %v: %s", g.r.Status, g.el, g.r.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll outlived the drain")
	}
}
