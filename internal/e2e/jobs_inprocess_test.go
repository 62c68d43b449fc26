//go:build porting

package e2e

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/api"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/worker"
)

// slowFaulty is faulty, plus "slow…" inputs that take 1.5 s.
type slowFaulty struct{ faulty }

func (f slowFaulty) Predict(ctx context.Context, in []model.Input) ([]model.Output, error) {
	if strings.HasPrefix(in[0].Data, "slow") {
		select {
		case <-time.After(1500 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return f.faulty.Predict(ctx, in)
}

// inprocFarm is an API with an embedded job store and, once started, a worker,
// all in this process.
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
	store, err := jobs.OpenBolt(jobs.BoltConfig{Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{
		Queue: queue.ClientConfig{DialConfig: queue.DialConfig{URL: vh.AMQPURL}},
		Jobs:  api.JobsConfig{Store: store, MaxWait: 10 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
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

func (f *inprocFarm) run(fn func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); fn(ctx) }()
	f.stops = append(f.stops, func() { cancel(); <-done })
}

// close stops everything, newest first (workers before the API).
func (f *inprocFarm) close() {
	for i := len(f.stops) - 1; i >= 0; i-- {
		f.stops[i]()
	}
	client.CloseIdleConnections()
}

func (f *inprocFarm) startWorker(jobConcurrency int) *worker.Worker {
	f.t.Helper()
	w, err := worker.New(worker.Config{
		Queue: queue.ConsumerConfig{DialConfig: queue.DialConfig{URL: f.vh.AMQPURL}, WorkerID: "inproc-1"},
		Jobs: queue.JobConsumerConfig{Concurrency: jobConcurrency, MaxAttempts: 2,
			RetryBackoff: 20 * time.Millisecond, RetryBackoffMax: 20 * time.Millisecond},
	}, slowFaulty{faulty{model.NewSeed(model.SeedConfig{})}})
	if err != nil {
		f.t.Fatal(err)
	}
	var ln net.Listener = listen(f.t)
	f.run(func(ctx context.Context) { _ = w.Run(ctx, ln) })
	return w
}

type jobBody struct {
	ID         string          `json:"id"`
	Status     string          `json:"status"`
	CreatedAt  time.Time       `json:"created_at"`
	StartedAt  *time.Time      `json:"started_at"`
	FinishedAt *time.Time      `json:"finished_at"`
	Attempts   int             `json:"attempts"`
	Result     json.RawMessage `json:"result"`
	Error      *struct {
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

// TestJobsHTTPContract walks the job endpoints through an in-process farm with the
// embedded store: submission with no worker, idempotency, validation, cancel, long
// poll, model errors with retries, and the Prefer: respond-async hand-off. Every
// answer is checked against openapi.json.
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

	// No worker running: the job is stored, confirmed and queued.
	r := do("POST", "/jobs", `{"data":"first"}`, "Idempotency-Key", "key-1")
	if r.Status != 202 {
		t.Fatalf("POST /jobs: %d %s", r.Status, r.Body)
	}
	first := decodeJob(t, r)
	if first.Status != "queued" || r.Header.Get("Location") != "/jobs/"+first.ID || first.Links.Self != "/jobs/"+first.ID {
		t.Fatalf("submitted job %+v, Location %q", first, r.Header.Get("Location"))
	}
	// The same key and body: the original job, not a second one.
	r = do("POST", "/jobs", `{"data":"first", "forward_to_model": true}`, "Idempotency-Key", "key-1")
	if r.Status != 200 || r.Header.Get("Idempotent-Replayed") != "true" || decodeJob(t, r).ID != first.ID {
		t.Fatalf("replay: %d %s %v", r.Status, r.Body, r.Header)
	}
	// The same key with another body.
	if r = do("POST", "/jobs", `{"data":"other"}`, "Idempotency-Key", "key-1"); r.Status != 422 {
		t.Fatalf("key reuse: %d %s", r.Status, r.Body)
	}
	// A key whose first submission is still in progress (stored, not yet confirmed).
	if _, err := f.store.Create(context.Background(), &jobs.Job{ID: "jpending", IdempotencyKey: "key-2",
		BodyHash: "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881", Input: []byte(`{}`), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if r = do("POST", "/jobs", `{"data":"x"}`, "Idempotency-Key", "key-2"); r.Status != 409 {
		t.Fatalf("in-progress key: %d %s", r.Status, r.Body)
	}
	_ = f.store.Delete(context.Background(), "jpending")
	for _, c := range []struct {
		body string
		hdr  []string
	}{
		{`{"data":"x","forward_to_model":false}`, nil},
		{`{"nodata":1}`, nil},
		{`{"data":"x"}`, []string{"Idempotency-Key", strings.Repeat("k", 256)}},
	} {
		if r = do("POST", "/jobs", c.body, c.hdr...); r.Status != 422 {
			t.Errorf("POST /jobs %s %v: %d, want 422", c.body, c.hdr, r.Status)
		}
	}
	if r = do("GET", "/jobs/"+first.ID+"?wait=soon", ""); r.Status != 422 {
		t.Errorf("bad wait: %d", r.Status)
	}
	if r = do("GET", "/jobs/jnosuchjob", ""); r.Status != 404 {
		t.Errorf("unknown job: %d", r.Status)
	}

	// Cancel a queued job; a second cancel conflicts.
	doomed := decodeJob(t, do("POST", "/jobs", `{"data":"doomed"}`))
	if r = do("DELETE", "/jobs/"+doomed.ID, ""); r.Status != 200 || decodeJob(t, r).Status != "cancelled" {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	if r = do("DELETE", "/jobs/"+doomed.ID, ""); r.Status != 200 || decodeJob(t, r).Status != "cancelled" {
		t.Fatalf("cancelling twice: %d %s", r.Status, r.Body)
	}

	failing := decodeJob(t, do("POST", "/jobs", `{"data":"fail"}`))
	f.startWorker(2)
	// Long poll: answers once the job is final.
	begin := time.Now()
	r = do("GET", "/jobs/"+first.ID+"?wait=10", "")
	done := decodeJob(t, r)
	if done.Status != "succeeded" || done.Attempts != 1 || done.StartedAt == nil || done.FinishedAt == nil {
		t.Fatalf("first job after the wait (%v): %s", time.Since(begin), r.Body)
	}
	var pred struct {
		Prediction  map[string]any `json:"prediction"`
		InputSHA256 string         `json:"input_sha256"`
	}
	if err := json.Unmarshal(done.Result, &pred); err != nil || pred.Prediction["class"] == nil || pred.InputSHA256 == "" {
		t.Errorf("result is not a model_prediction: %s", done.Result)
	}
	r = do("GET", "/jobs/"+failing.ID+"?wait=10s", "")
	if j := decodeJob(t, r); j.Status != "failed" || j.Error == nil || j.Error.Reason != "model_error" || j.Attempts != 2 {
		t.Errorf("failing job: %s", r.Body)
	}
	if r = do("GET", "/jobs/"+doomed.ID, ""); decodeJob(t, r).Status != "cancelled" {
		t.Errorf("the cancelled job changed: %s", r.Body)
	}
	if r = do("DELETE", "/jobs/"+first.ID, ""); r.Status != 409 {
		t.Errorf("cancel of a finished job: %d", r.Status)
	}

	// Hand-off: finishes within the wait → /process's 200; does not → 202 and a job.
	r = do("POST", "/process", `{"data":"quick"}`, "Prefer", "respond-async, wait=5")
	if r.Status != 200 {
		t.Fatalf("quick hand-off: %d %s", r.Status, r.Body)
	}
	checkPrediction(t, r, "quick", r.Header.Get("X-Request-ID"))
	r = do("POST", "/process", `{"data":"slow one"}`, "Prefer", "respond-async, wait=0.2")
	if r.Status != 202 || r.Header.Get("Preference-Applied") != "respond-async" || !strings.HasPrefix(r.Header.Get("Location"), "/jobs/") {
		t.Fatalf("slow hand-off: %d %v %s", r.Status, r.Header, r.Body)
	}
	r = do("GET", r.Header.Get("Location")+"?wait=10", "")
	if j := decodeJob(t, r); j.Status != "succeeded" {
		t.Errorf("handed-off job: %s", r.Body)
	}

	fams := families(t, f.base+"/metrics")
	jl := map[string]string{"queue": queue.DefaultJobQueue, "vhost": f.vh.Name}
	with := func(k, v string) map[string]string {
		m := map[string]string{k: v}
		for k, v := range jl {
			m[k] = v
		}
		return m
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"warren_jobs_submitted_total", jl, 5},
		{"warren_jobs_finished_total", with("status", "succeeded"), 3},
		{"warren_jobs_finished_total", with("status", "failed"), 1},
		{"warren_jobs_finished_total", with("status", "cancelled"), 1},
		{"warren_jobs_finished_total", with("status", "expired"), 0},
	} {
		if got := mustSample(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// TestLongPollEndsOnDrain: a SIGTERMed API answers its long polls at once with the
// job as it is, instead of holding them until the drain times out.
func TestLongPollEndsOnDrain(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	f := newInprocFarm(t)
	defer f.close()
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
