package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/api"
	"github.com/warren-farm/warren/pkg/apidoc/apidoctest"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/worker"
)

// families scrapes a /metrics endpoint and parses the text format.
func families(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(pmodel.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// sample returns the value of the series of name whose labels include want: a
// counter's or gauge's value, a histogram's sample count. found is false if no
// series matches.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) (v float64, sum float64, found bool) {
	f, ok := fams[name]
	if !ok {
		return 0, 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), 0, true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), 0, true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), m.Histogram.GetSampleSum(), true
		}
	}
	return 0, 0, false
}

func mustSample(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	v, _, ok := sample(fams, name, want)
	if !ok {
		t.Fatalf("no series %s%v", name, want)
	}
	return v
}

// seriesKeys lists every series of the families whose name has prefix, as
// name{label="value",...} with the labels sorted.
func seriesKeys(fams map[string]*dto.MetricFamily, prefix string) []string {
	var out []string
	for name, f := range fams {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		for _, m := range f.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			sort.Strings(ls)
			out = append(out, name+"{"+strings.Join(ls, ",")+"}")
		}
	}
	sort.Strings(out)
	return out
}

// labelsOf returns a series' labels as a map.
func labelsOf(m *dto.Metric) map[string]string {
	have := map[string]string{}
	for _, lp := range m.GetLabel() {
		have[lp.GetName()] = lp.GetValue()
	}
	return have
}

// checkRouteLabels checks that every warren series with a queue label names a
// request or job queue and carries the model and version that queue belongs to.
func checkRouteLabels(t *testing.T, who string, fams map[string]*dto.MetricFamily) {
	t.Helper()
	for name, f := range fams {
		if !strings.HasPrefix(name, "warren_") {
			continue
		}
		for _, m := range f.GetMetric() {
			l := labelsOf(m)
			q, ok := l["queue"]
			if !ok {
				continue
			}
			r := queue.Route{Model: l["model"], Version: l["version"]}
			if r.Check() != nil || (q != r.RequestQueue() && q != r.JobQueue()) {
				t.Errorf("%s: %s%v: the queue label is not the model version's request or job queue", who, name, l)
			}
		}
	}
}

// scripted answers like the seed model except on chosen inputs: "fail" is a model
// error, "bad" an input the model refuses, "slow" a computation that outlasts any
// deadline.
type scripted struct{ *model.Seed }

func (s scripted) Predict(ctx context.Context, batch []*model.Request) ([]*model.Response, error) {
	if in := batch[0].Input(model.SeedInput); in != nil {
		if d, ok := in.Data.([]string); ok && len(d) > 0 {
			switch d[0] {
			case "fail":
				return nil, errors.New("weights not loaded")
			case "bad":
				return nil, model.BadInput(model.SeedInput, "the model refuses %q", d[0])
			case "slow":
				<-ctx.Done()
				return nil, ctx.Err()
			}
		}
	}
	return s.Seed.Predict(ctx, batch)
}

// v2Seed is a v2 inference request for a seed-shaped model.
func v2Seed(data string) string {
	return `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["` + data + `"]}]}`
}

// finishedJob long-polls job id until it is final and returns its status.
func finishedJob(t *testing.T, spec *apidoctest.Validator, base, id string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := doChecked(t, spec, "GET", base+"/jobs/"+id+"?wait=10", "")
		var j struct{ Status string }
		if err := json.Unmarshal(r.Body, &j); r.Status != 200 || err != nil {
			t.Fatalf("GET /jobs/%s: %d %s", id, r.Status, r.Body)
		}
		switch j.Status {
		case "queued", "running":
		default:
			return j.Status
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s after 30s", id, j.Status)
		}
	}
}

// waitSamples scrapes url until every check holds (counters that are bumped just
// after the answer a test saw, such as a job's finish or a worker's outcome), at
// most 10s, and returns the last scrape.
func waitSamples(t *testing.T, url string, checks []metricCheck) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams := families(t, url)
		ok := true
		for _, c := range checks {
			if v, _, found := sample(fams, c.name, c.labels); !found || v != c.want {
				ok = false
			}
		}
		if ok || time.Now().After(deadline) {
			return fams
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type metricCheck struct {
	name   string
	labels map[string]string
	want   float64
}

func checkSamples(t *testing.T, who string, fams map[string]*dto.MetricFamily, checks []metricCheck) {
	t.Helper()
	for _, c := range checks {
		v, _, ok := sample(fams, c.name, c.labels)
		switch {
		case !ok:
			t.Errorf("%s: no series %s%v", who, c.name, c.labels)
		case v != c.want:
			t.Errorf("%s: %s%v = %v, want %v", who, c.name, c.labels, v, c.want)
		}
	}
}

// TestMetricsCountWhatHappened drives a known mix of calls and jobs through an
// in-process farm serving two model versions and checks that both /metrics
// endpoints say exactly that, per model version: the vhost and queue labels
// RabbitMQ's plugin uses plus model and version, every reason and outcome present
// from the start, each route's series counting only its own calls, and HTTP route
// labels that are templates, never a model name from the path.
func TestMetricsCountWhatHappened(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	vh := testbroker.NewVhost(t)
	spec := newFarmSpec(t)

	twinRoute := queue.Route{Model: "twin", Version: "2"}
	p := runInProcess(t, vh, api.Config{},
		worker.Config{WorkerID: "metrics-1", Jobs: worker.JobsConfig{MaxAttempts: 1}, Models: []worker.ModelSpec{
			serve(seedRoute, scripted{model.NewSeed(model.SeedConfig{})}, 3, 1),
			serve(twinRoute, scripted{model.NewSeed(model.SeedConfig{Seed: 7})}, 2, 1),
		}})
	base, wbase, stop := p.base, p.wbase, p.stop
	defer stop()

	// The labels of a route's request and job queue series, plus more.
	rl := func(r queue.Route, kv ...string) map[string]string {
		m := map[string]string{"vhost": vh.Name, "queue": r.RequestQueue(), "model": r.Model, "version": r.Version}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	jl := func(r queue.Route, kv ...string) map[string]string {
		m := rl(r, kv...)
		m["queue"] = r.JobQueue()
		return m
	}
	vl := map[string]string{"vhost": vh.Name}
	routes := []queue.Route{seedRoute, twinRoute}

	// Before any call: every reason of every route is there, at zero, and so is every
	// outcome at the worker.
	fams := families(t, base+"/metrics")
	for _, r := range routes {
		for _, rs := range []string{"ok", "no_workers", "queue_full", "broker_unavailable", "draining", "timeout", "model_error", "bad_input", "client_closed"} {
			if v := mustSample(t, fams, "warren_rpc_requests_total", rl(r, "reason", rs)); v != 0 {
				t.Fatalf("%s: reason %s starts at %v", r, rs, v)
			}
		}
	}
	wf := families(t, wbase+"/metrics")
	for _, r := range routes {
		for _, o := range []string{"ok", "error", "expired", "timed_out", "orphaned", "replayed", "rejected", "requeued", "reply_failed"} {
			if v := mustSample(t, wf, "warren_worker_messages_handled_total", rl(r, "outcome", o)); v != 0 {
				t.Fatalf("worker %s: outcome %s starts at %v", r, o, v)
			}
		}
		for _, o := range []string{"succeeded", "failed", "retried", "expired", "cancelled", "rejected", "requeued"} {
			if v := mustSample(t, wf, "warren_worker_jobs_handled_total", jl(r, "outcome", o)); v != 0 {
				t.Fatalf("worker %s: job outcome %s starts at %v", r, o, v)
			}
		}
	}

	// seed: 4 answered (3 through /process, 1 through v2), 1 model error, 1 timeout;
	// a malformed body never reaches the farm.
	for _, in := range []string{"a", "b", "c", "fail"} {
		doChecked(t, spec, "POST", base+"/process", `{"data":"`+in+`"}`)
	}
	if r := doChecked(t, spec, "POST", base+"/process", `{"data":"slow"}`, "X-Request-Timeout", "300ms"); r.Status != 504 {
		t.Fatalf("slow: %d %s", r.Status, r.Body)
	}
	if r := doChecked(t, spec, "POST", base+"/v2/models/seed/infer", v2Seed("v2")); r.Status != 200 {
		t.Fatalf("seed v2: %d %s", r.Status, r.Body)
	}
	doChecked(t, spec, "POST", base+"/process", `{"nodata":1}`) // 422, never reaches the farm
	if r := doChecked(t, nil, "GET", base+"/no/such/path/12345", ""); r.Status != 404 {
		t.Fatalf("unknown path: %d", r.Status)
	}
	// twin: 3 answered (one through the versioned route), 1 model error, 1 input the
	// model refuses (400 bad_input from the worker), 1 input the API refuses
	// before publishing (400, not a call).
	for _, c := range []struct {
		path, in string
		want     int
	}{
		{"/v2/models/twin/infer", "x", 200}, {"/v2/models/twin/infer", "y", 200},
		{"/v2/models/twin/versions/2/infer", "z", 200},
		{"/v2/models/twin/infer", "fail", 502}, {"/v2/models/twin/infer", "bad", 400},
	} {
		if r := doChecked(t, spec, "POST", base+c.path, v2Seed(c.in)); r.Status != c.want {
			t.Fatalf("POST %s %q: %d %s", c.path, c.in, r.Status, r.Body)
		}
	}
	if r := doChecked(t, spec, "POST", base+"/v2/models/twin/infer", `{"inputs":[{"name":"nope","shape":[1],"datatype":"BYTES","data":["x"]}]}`); r.Status != 400 {
		t.Fatalf("twin, wrong input name: %d %s", r.Status, r.Body)
	}

	// Jobs: two on seed (one fails: one attempt only), one on twin.
	var jobIDs []string
	for _, sub := range []struct{ path, body string }{
		{"/jobs", `{"data":"job ok"}`}, {"/jobs", `{"data":"fail"}`},
		{"/jobs", `{"model":"twin","inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["job"]}]}`},
	} {
		r := doChecked(t, spec, "POST", base+sub.path, sub.body)
		if r.Status != 202 {
			t.Fatalf("POST %s %s: %d %s", sub.path, sub.body, r.Status, r.Body)
		}
		jobIDs = append(jobIDs, r.json(t)["id"].(string))
	}
	for i, want := range []string{"succeeded", "failed", "succeeded"} {
		if got := finishedJob(t, spec, base, jobIDs[i]); got != want {
			t.Errorf("job %d: %s, want %s", i, got, want)
		}
	}

	checks := []metricCheck{
		{"warren_rpc_requests_total", rl(seedRoute, "reason", "ok"), 4},
		{"warren_rpc_requests_total", rl(seedRoute, "reason", "model_error"), 1},
		{"warren_rpc_requests_total", rl(seedRoute, "reason", "timeout"), 1},
		{"warren_rpc_requests_total", rl(seedRoute, "reason", "bad_input"), 0},
		{"warren_rpc_requests_total", rl(seedRoute, "reason", "no_workers"), 0},
		{"warren_rpc_requests_total", rl(twinRoute, "reason", "ok"), 3},
		{"warren_rpc_requests_total", rl(twinRoute, "reason", "model_error"), 1},
		{"warren_rpc_requests_total", rl(twinRoute, "reason", "bad_input"), 1},
		{"warren_rpc_requests_total", rl(twinRoute, "reason", "timeout"), 0},
		{"warren_rpc_requests_total", rl(twinRoute, "reason", "no_workers"), 0},
		{"warren_rpc_duration_seconds", rl(seedRoute), 6},
		{"warren_rpc_duration_seconds", rl(twinRoute), 5},
		{"warren_publish_confirm_duration_seconds", rl(seedRoute), 6},
		{"warren_publish_confirm_duration_seconds", rl(twinRoute), 5},
		{"warren_worker_slots", rl(seedRoute), 3},
		{"warren_worker_slots", rl(twinRoute), 2},
		{"warren_queue_consumers", rl(seedRoute), 1},
		{"warren_queue_consumers", rl(twinRoute), 1},
		{"warren_workers_needed", rl(seedRoute), 0},
		{"warren_workers_needed", rl(twinRoute), 0},
		{"warren_broker_connected", vl, 1},
		{"warren_jobs_submitted_total", vl, 3},
		{"warren_jobs_finished_total", map[string]string{"vhost": vh.Name, "status": "succeeded"}, 2},
		{"warren_jobs_finished_total", map[string]string{"vhost": vh.Name, "status": "failed"}, 1},
		{"warren_jobs_finished_total", map[string]string{"vhost": vh.Name, "status": "expired"}, 0},
		{"warren_jobs_dead_lettered_total", vl, 0},
		{"warren_http_requests_total", map[string]string{"route": "/process", "method": "POST", "code": "200"}, 3},
		{"warren_http_requests_total", map[string]string{"route": "/process", "method": "POST", "code": "502"}, 1},
		{"warren_http_requests_total", map[string]string{"route": "/process", "method": "POST", "code": "504"}, 1},
		{"warren_http_requests_total", map[string]string{"route": "/process", "method": "POST", "code": "422"}, 1},
		{"warren_http_requests_total", map[string]string{"route": "/v2/models/:name/infer", "method": "POST", "code": "200"}, 3},
		{"warren_http_requests_total", map[string]string{"route": "/v2/models/:name/infer", "method": "POST", "code": "502"}, 1},
		{"warren_http_requests_total", map[string]string{"route": "/v2/models/:name/infer", "method": "POST", "code": "400"}, 2},
		{"warren_http_requests_total", map[string]string{"route": "/v2/models/:name/versions/:version/infer", "method": "POST", "code": "200"}, 1},
		{"warren_http_requests_total", map[string]string{"route": "/jobs", "method": "POST", "code": "202"}, 3},
		{"warren_http_requests_total", map[string]string{"route": "unmatched", "method": "GET", "code": "404"}, 1},
	}
	for _, st := range []string{"queue_wait", "compute", "reply_transit"} {
		checks = append(checks,
			metricCheck{"warren_rpc_stage_duration_seconds", rl(seedRoute, "stage", st), 4},
			metricCheck{"warren_rpc_stage_duration_seconds", rl(twinRoute, "stage", st), 3})
	}
	fams = waitSamples(t, base+"/metrics", checks)
	checkSamples(t, "API", fams, checks)
	checkRouteLabels(t, "API", fams)

	// The three stages of each answered call add up to its round trip (which the
	// duration histogram also holds, with the failed calls on top), per route.
	for _, r := range routes {
		var stageSum float64
		for _, st := range []string{"queue_wait", "compute", "reply_transit"} {
			_, s, _ := sample(fams, "warren_rpc_stage_duration_seconds", rl(r, "stage", st))
			if s < 0 {
				t.Errorf("%s: stage %s sum %v < 0", r, st, s)
			}
			stageSum += s
		}
		_, total, _ := sample(fams, "warren_rpc_duration_seconds", rl(r))
		if stageSum <= 0 || stageSum > total+1e-6 {
			t.Errorf("%s: stage sum %v vs total %v", r, stageSum, total)
		}
	}
	if _, ok := fams["warren_build_info"]; !ok {
		t.Error("no warren_build_info")
	}

	// The worker: each route's request queue counts its own messages, each job queue
	// its own jobs; the model histogram counts both.
	wchecks := []metricCheck{
		{"warren_worker_messages_consumed_total", rl(seedRoute), 6},
		{"warren_worker_messages_handled_total", rl(seedRoute, "outcome", "ok"), 4},
		{"warren_worker_messages_handled_total", rl(seedRoute, "outcome", "error"), 1},
		{"warren_worker_messages_handled_total", rl(seedRoute, "outcome", "timed_out"), 1},
		{"warren_worker_messages_handled_total", rl(seedRoute, "outcome", "expired"), 0},
		{"warren_worker_messages_consumed_total", rl(twinRoute), 5},
		{"warren_worker_messages_handled_total", rl(twinRoute, "outcome", "ok"), 3},
		{"warren_worker_messages_handled_total", rl(twinRoute, "outcome", "error"), 2},
		{"warren_worker_messages_handled_total", rl(twinRoute, "outcome", "timed_out"), 0},
		{"warren_worker_messages_handled_total", rl(twinRoute, "outcome", "expired"), 0},
		{"warren_worker_processing_duration_seconds", rl(seedRoute), 6},
		{"warren_worker_processing_duration_seconds", rl(twinRoute), 5},
		{"warren_worker_processing_duration_seconds", jl(seedRoute), 2},
		{"warren_worker_processing_duration_seconds", jl(twinRoute), 1},
		{"warren_worker_model_duration_seconds", map[string]string{"vhost": vh.Name, "model": "seed", "version": "1"}, 8},
		{"warren_worker_model_duration_seconds", map[string]string{"vhost": vh.Name, "model": "twin", "version": "2"}, 6},
		{"warren_worker_concurrency", rl(seedRoute), 3},
		{"warren_worker_concurrency", rl(twinRoute), 2},
		{"warren_worker_in_flight", rl(seedRoute), 0},
		{"warren_worker_in_flight", rl(twinRoute), 0},
		{"warren_worker_jobs_consumed_total", jl(seedRoute), 2},
		{"warren_worker_jobs_handled_total", jl(seedRoute, "outcome", "succeeded"), 1},
		{"warren_worker_jobs_handled_total", jl(seedRoute, "outcome", "failed"), 1},
		{"warren_worker_jobs_handled_total", jl(seedRoute, "outcome", "retried"), 0},
		{"warren_worker_jobs_consumed_total", jl(twinRoute), 1},
		{"warren_worker_jobs_handled_total", jl(twinRoute, "outcome", "succeeded"), 1},
		{"warren_worker_jobs_handled_total", jl(twinRoute, "outcome", "failed"), 0},
		{"warren_worker_job_concurrency", jl(seedRoute), 1},
		{"warren_worker_job_concurrency", jl(twinRoute), 1},
		{"warren_worker_jobs_in_flight", jl(seedRoute), 0},
		{"warren_worker_draining", vl, 0},
		{"warren_broker_reconnects_total", vl, 0},
	}
	wf = waitSamples(t, wbase+"/metrics", wchecks)
	checkSamples(t, "worker", wf, wchecks)
	checkRouteLabels(t, "worker", wf)
	for _, r := range routes {
		_, comp, _ := sample(fams, "warren_rpc_stage_duration_seconds", rl(r, "stage", "compute"))
		_, proc, _ := sample(wf, "warren_worker_processing_duration_seconds", rl(r))
		if comp > proc+1e-3 || math.IsNaN(comp) {
			t.Errorf("%s: compute seen by the API (%v s) exceeds the worker's processing time (%v s)", r, comp, proc)
		}
	}

	// Model names in request paths never become label values: a request for an
	// unknown model is counted under its route template, and 50 more of them with
	// random names add no series at all.
	randomName := func() string { return fmt.Sprintf("m%016x", rand.Uint64()) }
	paths := []struct{ method, path, tmpl string }{
		{"POST", "/v2/models/%s/infer", "/v2/models/:name/infer"},
		{"POST", "/v2/models/%s/versions/1/infer", "/v2/models/:name/versions/:version/infer"},
		{"GET", "/v2/models/%s", "/v2/models/:name"},
		{"GET", "/v2/models/%s/ready", "/v2/models/:name/ready"},
	}
	bodyFor := func(method string) string {
		if method == "POST" {
			return v2Seed("x")
		}
		return ""
	}
	for _, pp := range paths {
		if r := doChecked(t, spec, pp.method, base+fmt.Sprintf(pp.path, randomName()), bodyFor(pp.method)); r.Status != 404 {
			t.Fatalf("%s %s for an unknown model: %d %s", pp.method, pp.path, r.Status, r.Body)
		}
	}
	before := families(t, base+"/metrics")
	var names []string
	for range 50 {
		n := randomName()
		names = append(names, n)
		for _, pp := range paths {
			if r := doChecked(t, nil, pp.method, base+fmt.Sprintf(pp.path, n), bodyFor(pp.method)); r.Status != 404 {
				t.Fatalf("%s %s: %d %s", pp.method, fmt.Sprintf(pp.path, n), r.Status, r.Body)
			}
		}
	}
	after := families(t, base+"/metrics")
	if b, a := seriesKeys(before, "warren_"), seriesKeys(after, "warren_"); strings.Join(b, "\n") != strings.Join(a, "\n") {
		t.Errorf("50 requests for random model names changed the API's series: %d before, %d after", len(b), len(a))
	}
	for _, pp := range paths {
		l := map[string]string{"route": pp.tmpl, "method": pp.method, "code": "404"}
		b, a := mustSample(t, before, "warren_http_requests_total", l), mustSample(t, after, "warren_http_requests_total", l)
		if a-b != 50 {
			t.Errorf("warren_http_requests_total%v grew by %v, want 50", l, a-b)
		}
	}
	// Every route label is one of the API's route templates or "unmatched", and no
	// label value anywhere names a model from a path.
	templates := map[string]bool{"unmatched": true}
	for _, r := range p.srv.Handler().(*echo.Echo).Routes() {
		templates[r.Path] = true
	}
	for _, key := range seriesKeys(after, "warren_") {
		for _, n := range names {
			if strings.Contains(key, n) {
				t.Fatalf("a model name from a request path became a label value: %s", key)
			}
		}
	}
	for _, name := range []string{"warren_http_requests_total", "warren_http_request_duration_seconds"} {
		for _, m := range after[name].GetMetric() {
			if rt := labelsOf(m)["route"]; !templates[rt] || strings.Contains(rt, "seed") || strings.Contains(rt, "twin") {
				t.Errorf("%s: route label %q is not a route template", name, rt)
			}
		}
	}
}
