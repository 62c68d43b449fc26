package e2e

// The Prometheus configuration, rules, alerts and the Grafana dashboard in deployments/
// are tested here against the real tools: promtool checks and unit-tests the files, and
// a real prometheus scrapes a farm started from the real binaries while every
// dashboard query and every rule expression is run through its HTTP API.
//
// How alert rules are queried: alerts are empty while the farm is healthy, so the test
// runs each alert's SIGNAL, not the alert. deployments/prometheus/alerts.yml writes
// every alert as
//
//	SIGNAL <comparison> NUMBER
//
// with the comparison as the outermost operator (SIGNAL has no unparenthesised
// and/or/unless or comparison, the right-hand side is a plain number). alertSignal
// checks that shape (so a rule that breaks the convention fails here rather than
// being half-tested) and cuts the threshold off. SIGNALs are written to return series
// whenever their inputs exist (conditions inside them are `bool` masks, not filters).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"

	"github.com/warren-farm/warren/internal/testbroker"
)

const deploymentsDir = "../../deployments"

// TestPrometheusFiles checks the shipped files without a broker: promtool's config and
// rule checks and the rules' unit tests (these need promtool: under -short without it
// they are left out), the alert convention, the two configs' jobs and the dashboard's
// structure.
func TestPrometheusFiles(t *testing.T) {
	tests, err := filepath.Glob(filepath.Join(deploymentsDir, "prometheus", "tests", "*.yml"))
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule unit tests in deployments/prometheus/tests (%v)", err)
	}
	for i := range tests {
		tests[i] = filepath.Join("tests", filepath.Base(tests[i]))
	}
	if tools := requireTools(t); tools != nil {
		tools.promtool(t, "check", "config", "prometheus.yml", "prometheus-local.yml")
		tools.promtool(t, "check", "rules", "rules.yml", "alerts.yml")
		tools.promtool(t, append([]string{"test", "rules"}, tests...)...)
	}

	// Every alert is unit-tested, and follows the SIGNAL <cmp> NUMBER convention.
	var alerts struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	readYAML(t, filepath.Join(deploymentsDir, "prometheus", "alerts.yml"), &alerts)
	var tested strings.Builder
	for _, f := range tests {
		b, err := os.ReadFile(filepath.Join(deploymentsDir, "prometheus", f))
		if err != nil {
			t.Fatal(err)
		}
		tested.Write(b)
	}
	n := 0
	for _, g := range alerts.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if _, err := alertSignal(r.Expr); err != nil {
				t.Errorf("alert %s: %v", r.Alert, err)
			}
			if !strings.Contains(tested.String(), "alertname: "+r.Alert+"\n") {
				t.Errorf("alert %s has no alert_rule_test in deployments/prometheus/tests", r.Alert)
			}
		}
	}
	if n == 0 {
		t.Error("alerts.yml has no alerts")
	}

	// prometheus-local.yml has the same jobs as prometheus.yml (names, paths,
	// parameters); only the discovery differs.
	jobs := func(file string) map[string]string {
		var c struct {
			ScrapeConfigs []map[string]any `yaml:"scrape_configs"`
		}
		readYAML(t, filepath.Join(deploymentsDir, "prometheus", file), &c)
		m := map[string]string{}
		for _, sc := range c.ScrapeConfigs {
			m[fmt.Sprint(sc["job_name"])] = fmt.Sprint(sc["metrics_path"], sc["params"], sc["scheme"])
		}
		return m
	}
	if a, b := jobs("prometheus.yml"), jobs("prometheus-local.yml"); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("prometheus.yml and prometheus-local.yml scrape different jobs:\n%v\n%v", a, b)
	}

	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("dashboard uid %q title %q schemaVersion %d", d.UID, d.Title, d.SchemaVersion)
	}
	hasVhost := false
	for _, v := range d.Templating.List {
		if v.Name == "vhost" && strings.Contains(string(v.Query), "vhost") && v.Datasource.UID == "prometheus" {
			hasVhost = true
		}
	}
	if !hasVhost {
		t.Error("dashboard has no `vhost` template variable querying the prometheus datasource")
	}
	ids := map[int]bool{}
	for _, p := range d.allPanels() {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Type != "timeseries" && p.Type != "stat" {
			t.Errorf("panel %q: type %q", p.Title, p.Type)
		}
		if p.Datasource.UID != "prometheus" || len(p.Targets) == 0 || p.GridPos.W == 0 || p.GridPos.H == 0 {
			t.Errorf("panel %q: datasource %+v, %d targets, gridPos %+v", p.Title, p.Datasource, len(p.Targets), p.GridPos)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] || tg.Datasource.UID != "prometheus" {
				t.Errorf("panel %q: target %+v (empty, duplicate refId or not the prometheus datasource)", p.Title, tg)
			}
			refs[tg.RefID] = true
		}
	}
}

// The Prometheus check's farm serves two models, each from a pool of its own: seed
// (the API's DEFAULT_MODEL, called through /process) and digits (ONNX, called
// through the v2 routes). Per-model rules, alerts and panels are only shown to be
// per model when each model's series come out as its own.
var promModels = []string{"digits", "seed"}

// digitsV2 is a v2 inference request for the digits model: one 8×8 image (64
// pixel counts), or with short, one pixel short (refused by the API: 400).
func digitsV2(short bool) string {
	n := 64
	if short {
		n = 63
	}
	px := make([]string, n)
	for i := range px {
		px[i] = strconv.Itoa(i * 7 % 17)
	}
	return `{"inputs":[{"name":"input","shape":[1,` + strconv.Itoa(n) + `],"datatype":"FP32","data":[` + strings.Join(px, ",") + `]}]}`
}

// waitModelWorkers waits until the API's /ready counts n workers for model.
func (f *farm) waitModelWorkers(model string, n int) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var r struct {
			Models []struct {
				Name    string
				Workers int
			}
		}
		code, _, _ := getJSON(f.api.url("/ready"), &r)
		have := 0
		for _, m := range r.Models {
			if m.Name == model {
				have += m.Workers
			}
		}
		if code == 200 && have == n {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("API never saw %d workers for model %s (last /ready %d %+v)", n, model, code, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// modelTraffic counts the outcomes of one model's traffic.
type modelTraffic struct {
	ok, timeouts, bad, jobsOK, jobsBad atomic.Int64
	jobErr                             atomic.Value
}

// TestPrometheusScrapesFarm starts an API and two worker pools from the real
// binaries — one serving the seed model, one the digits model — a real prometheus
// scraping them and RabbitMQ with the shipped local configuration, and runs every
// dashboard query (for every model, and for each model alone), every template
// variable query and every rule through prometheus' query API while calls (answered,
// timed out, malformed) and async jobs flow to both models. Every query must return
// series, and series that carry a model must exist for each model selected and
// for no other. Then it stops the seed pool only and checks that seed's
// workers-needed estimate still asks for a worker and its no-consumers and
// not-enough-workers alerts go pending, while digits' stay quiet.
func TestPrometheusScrapesFarm(t *testing.T) {
	integration(t)
	tools := requireTools(t)
	f := newFarm(t, 1, nil, []string{"MODELS=seed", "MODEL_LATENCY=30ms"})
	seedPool := f.workers
	f.addWorker("MODELS=digits")
	f.waitModelWorkers("digits", 1)
	vhost := f.vh.Name

	rabbit := rabbitPrometheus(t)
	dir := t.TempDir()
	writeTargets(t, filepath.Join(dir, "targets.json"), f, rabbit)
	cfg := localConfig(t, dir)
	prom := tools.startPrometheus(t, cfg, dir)

	// Traffic while prometheus scrapes: a steady stream of answered calls to both
	// models, and failures: calls whose deadline passes (504 timeout: seed's 20 ms
	// deadline is shorter than its 30 ms latency; digits' 1 µs passes before any
	// answer) and malformed requests (422 on /process, 400 on v2; HTTP only). Model
	// errors (502) cannot be provoked through the real binaries.
	traffic := map[string]*modelTraffic{"seed": {}, "digits": {}}
	senders := []func(i int) (model, path, body, timeout string){
		func(i int) (string, string, string, string) {
			if i%5 == 0 {
				return "seed", "/process", fmt.Sprintf(`{"data":"input 0-%d"}`, i), "20ms"
			}
			return "seed", "/process", fmt.Sprintf(`{"data":"input 0-%d"}`, i), ""
		},
		func(i int) (string, string, string, string) {
			if i%10 == 0 {
				return "seed", "/process", `{"forward_to_model":true}`, ""
			}
			return "seed", "/process", fmt.Sprintf(`{"data":"input 1-%d"}`, i), ""
		},
		func(i int) (string, string, string, string) {
			switch {
			case i%10 == 0:
				return "digits", "/v2/models/digits/infer", digitsV2(true), ""
			case i%7 == 0:
				return "digits", "/v2/models/digits/infer", digitsV2(false), "1us"
			}
			return "digits", "/v2/models/digits/infer", digitsV2(false), ""
		},
		func(i int) (string, string, string, string) {
			return "digits", "/v2/models/digits/versions/1/infer", digitsV2(false), ""
		},
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, send := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				model, path, body, timeout := send(i)
				if model == "digits" {
					// digits answers in microseconds: pace it, or its two senders
					// take the machine's cores from everything else.
					time.Sleep(5 * time.Millisecond)
				}
				tr := traffic[model]
				switch postProcess(f.api.url(path), body, timeout) {
				case 200:
					tr.ok.Add(1)
				case 504:
					tr.timeouts.Add(1)
				case 422, 400:
					tr.bad.Add(1)
				}
			}
		}()
	}
	// And a stream of async jobs, one at a time, to each model in turn (POST /jobs,
	// then long-poll until it is final), so the Jobs row has real data:
	// submissions, consumption, outcomes, finishes, in-flight.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			model, body := "seed", fmt.Sprintf(`{"data":"job %d"}`, i)
			if i%2 == 1 {
				model, body = "digits", `{"model":"digits",`+digitsV2(false)[1:]
			}
			tr := traffic[model]
			if err := promJob(f.api.url(""), body); err != nil {
				tr.jobsBad.Add(1)
				tr.jobErr.CompareAndSwap(nil, err.Error())
				continue
			}
			tr.jobsOK.Add(1)
		}
	}()
	stopTraffic := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopTraffic)

	prom.waitTargets(t, map[string]int{"warren-api": 1, "warren-worker": 2, "rabbitmq": 1, "rabbitmq-detailed": 1}, 20*time.Second)

	// Every query, with what it is for the failure messages and the model it
	// selects ("" for every model).
	type query struct {
		what, expr, model string
		series            int // the number of series it must return; 0: any
	}
	var queries []query
	d := loadDashboard(t)
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			queries = append(queries, query{what: fmt.Sprintf("panel %q %s", p.Title, tg.RefID), expr: dashboardVars(t, tg.Expr, vhost, "")})
			if !strings.Contains(tg.Expr, "$model") {
				continue
			}
			for _, m := range promModels {
				queries = append(queries, query{what: fmt.Sprintf("panel %q %s with model %s", p.Title, tg.RefID, m), expr: dashboardVars(t, tg.Expr, vhost, m), model: m})
			}
		}
	}
	groups := prom.rules(t)
	for _, g := range groups {
		for _, r := range g.Rules {
			switch r.Type {
			case "recording":
				queries = append(queries, query{what: "recording rule " + r.Name, expr: r.Query})
			case "alerting":
				sig, err := alertSignal(r.Query)
				if err != nil {
					t.Errorf("alert %s: %v", r.Name, err)
					continue
				}
				queries = append(queries, query{what: "alert " + r.Name + " (its signal)", expr: sig})
			}
		}
	}
	if len(groups) != 2 {
		t.Errorf("prometheus loaded %d rule groups, want the 2 of rules.yml and alerts.yml", len(groups))
	}
	// The job traffic reached every stage the Jobs row draws, for each model.
	// Counters, not rates: a rate over a short window may be 0 between two jobs.
	queries = append(queries, query{what: "job traffic: warren_jobs_submitted_total > 0", expr: `sum by (vhost) (warren_jobs_submitted_total) > 0`},
		query{what: `job traffic: warren_jobs_finished_total{status="succeeded"} > 0`, expr: `sum by (vhost) (warren_jobs_finished_total{status="succeeded"}) > 0`})
	for _, c := range []string{
		`warren_worker_jobs_consumed_total`,
		`warren_worker_jobs_handled_total{outcome="succeeded"}`,
		`warren_worker_processing_duration_seconds_count{queue=~"warren\\.job\\..+"}`,
	} {
		queries = append(queries, query{what: "job traffic: " + c + " > 0 for each model", expr: fmt.Sprintf(`sum by (vhost, model) (%s) > 0`, c)})
	}

	// Per-model values: each model's rules describe its own pool (one worker, seed
	// with CONCURRENCY's 4 slots and 30 ms of latency, digits with the 2 × 32 slots of
	// its config.yaml and a model that answers in well under a millisecond), not
	// the farm's sum or the other model's.
	req := fmt.Sprintf(`vhost=%q,queue=~"warren\\.req\\..+"`, vhost)
	for _, v := range []struct {
		expr, model string
		series      int
	}{
		{fmt.Sprintf(`warren:route:info{vhost=%q} == 1`, vhost), "", 4}, // each model's request and job queue
		{fmt.Sprintf(`warren:queue_consumers:sum{vhost=%q} == 1`, vhost), "", 4},
		{`warren:workers_running:sum{` + req + `} == 1`, "", 2},
		{`warren:workers_needed:ceil{` + req + `} >= 1`, "", 2},
		{`warren:worker_slots:avg{` + req + `,model="seed"} == 4`, "seed", 1},
		{`warren:worker_slots:avg{` + req + `,model="digits"} == 64`, "digits", 1}, // 2 × its max_batch_size of 32
		{`warren:service_time_seconds:mean1m{` + req + `,model="seed"} > 0.015`, "seed", 1},
		{`warren:service_time_seconds:mean1m{` + req + `,model="digits"} < 0.01`, "digits", 1},
		{`warren:service_time_seconds:mean1h{` + req + `,model="seed"} > 0.015`, "seed", 1},
		{`warren:service_time_seconds:mean1h{` + req + `,model="digits"} < 0.01`, "digits", 1},
	} {
		queries = append(queries, query{what: "per-model value: " + v.expr, expr: v.expr, model: v.model, series: v.series})
	}

	// What is wrong with a query's result, "" when nothing: it must hold series of
	// the test's vhost (as many as it says, if it does), and series with a model
	// label must be of the selected model (of both models when it selects every
	// model).
	problem := func(q query, res []promSample) string {
		mine := vhostSeries(res, vhost)
		if len(mine) == 0 {
			return "no series"
		}
		if q.series > 0 && len(mine) != q.series {
			return fmt.Sprintf("%d series, want %d", len(mine), q.series)
		}
		seen := map[string]bool{}
		for _, s := range mine {
			if m, ok := s.Metric["model"]; ok {
				seen[m] = true
			}
		}
		if len(seen) == 0 {
			return ""
		}
		want := promModels
		if q.model != "" {
			want = []string{q.model}
		}
		if got := slices.Sorted(maps.Keys(seen)); !slices.Equal(got, want) {
			return fmt.Sprintf("series for models %v, want %v", got, want)
		}
		return ""
	}
	// Rates need a few scrapes and rules a few evaluations: retry what fails until
	// the deadline, then report everything still failing at once. (No query is
	// exempt: RabbitMQ exports the dead-letter queue warren.jobs.dead, which the API
	// declares, with 0 messages, so even the dead-letter queries return series; the
	// retry queues, declared at the first model error, fall back to 0.)
	begin := time.Now()
	deadline := begin.Add(30 * time.Second)
	pending := queries
	why := map[string]string{}
	for {
		var failing []query
		for _, q := range pending {
			res, err := prom.query(q.expr)
			if err != nil {
				t.Fatalf("%s: %v\n%s", q.what, err, q.expr)
			}
			if p := problem(q, res); p != "" {
				failing = append(failing, q)
				why[q.what] = p
			}
		}
		pending = failing
		if len(pending) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("%d queries, %d passed after %s", len(queries), len(queries)-len(pending), time.Since(begin).Round(time.Millisecond))
	for _, q := range pending {
		t.Errorf("%s: %s for vhost %q:\n  %s", q.what, why[q.what], vhost, q.expr)
	}

	// The template variables, as Grafana asks for their values
	// (label_values(selector, label) is the series API's label values with match[]):
	// the farm's vhost; both models; version 1 for every model and for each.
	varQuery := regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
	for _, v := range d.Templating.List {
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			_ = json.Unmarshal(v.Query, &q.Query)
		}
		m := varQuery.FindStringSubmatch(strings.TrimSpace(q.Query))
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, q.Query)
			continue
		}
		selections := []string{""}
		if strings.Contains(m[1], "$model") {
			selections = append(selections, promModels...)
		}
		for _, sel := range selections {
			got := prom.labelValues(t, m[2], dashboardVars(t, m[1], vhost, sel))
			var ok bool
			switch v.Name {
			case "vhost":
				ok = slices.Contains(got, vhost)
			case "model":
				ok = slices.Equal(got, promModels)
			case "version":
				ok = slices.Equal(got, []string{"1"})
			default:
				t.Errorf("dashboard variable %s: the test does not know what it should list", v.Name)
				continue
			}
			if !ok {
				t.Errorf("variable %s (model %q): %s lists %v", v.Name, sel, q.Query, got)
			}
		}
	}

	// Every selector of a metric that has a vhost label filters by the dashboard's
	// variable (asked of prometheus now that the recording rules have run).
	vhostMetrics := prom.labelValues(t, "__name__", `{vhost!=""}`)
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			for _, sel := range promSelectors(tg.Expr) {
				if slices.Contains(vhostMetrics, sel.name) && !strings.Contains(sel.matchers, `vhost=~"$vhost"`) {
					t.Errorf("panel %q: %s has a vhost label but is not filtered by vhost=~\"$vhost\": %s", p.Title, sel.name, tg.Expr)
				}
			}
		}
	}
	// Route matchers name real route labels (templates such as
	// /v2/models/:name/infer, as pkg/metrics exports them), and a panel that counts
	// the inference routes' HTTP answers counts every one that had traffic: /process
	// and the v2 infer routes.
	routes := prom.labelValues(t, "route", `warren_http_requests_total`)
	var inference []string
	res, err := prom.query(`sum by (route) (warren_http_requests_total{job="warren-api", method="POST"}) > 0`)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res {
		if r := s.Metric["route"]; r == "/process" || strings.HasSuffix(r, "/infer") {
			inference = append(inference, r)
		}
	}
	slices.Sort(inference)
	if len(inference) != 3 {
		t.Errorf("inference routes with traffic: %v, want /process and the two v2 infer routes", inference)
	}
	countsInference := 0
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			for _, sel := range promSelectors(tg.Expr) {
				for _, mt := range promMatchers(sel.matchers) {
					if mt.label != "route" {
						continue
					}
					if !slices.ContainsFunc(routes, mt.matches) {
						t.Errorf("panel %q %s: route%s%q matches none of the route labels prometheus has: %v", p.Title, tg.RefID, mt.op, mt.value, routes)
					}
					if !mt.matches("/process") {
						continue
					}
					countsInference++
					for _, r := range inference {
						if !mt.matches(r) {
							t.Errorf("panel %q %s counts /process but not %s, which answered inference calls too: %s", p.Title, tg.RefID, r, tg.Expr)
						}
					}
				}
			}
		}
	}
	if countsInference == 0 {
		t.Error("no panel counts the HTTP answers of the inference routes")
	}
	// Rule health: every rule evaluated without error.
	for _, g := range prom.rules(t) {
		for _, r := range g.Rules {
			if r.Health == "err" {
				t.Errorf("rule %s: %s", r.Name, r.LastError)
			}
		}
	}
	stopTraffic()
	for _, m := range promModels {
		tr := traffic[m]
		t.Logf("%s traffic: %d ok, %d timeouts, %d malformed; %d jobs succeeded", m, tr.ok.Load(), tr.timeouts.Load(), tr.bad.Load(), tr.jobsOK.Load())
		if tr.ok.Load() == 0 || tr.timeouts.Load() == 0 || tr.bad.Load() == 0 {
			t.Errorf("%s: traffic did not produce every outcome: %d ok, %d timeouts, %d malformed", m, tr.ok.Load(), tr.timeouts.Load(), tr.bad.Load())
		}
		if tr.jobsOK.Load() == 0 || tr.jobsBad.Load() > 0 {
			t.Errorf("%s jobs: %d succeeded, %d did not (first: %v)", m, tr.jobsOK.Load(), tr.jobsBad.Load(), tr.jobErr.Load())
		}
	}
	if t.Failed() {
		return
	}

	// The seed pool scaled to zero with callers turned away, digits still served:
	// seed's estimate still wants a worker, none runs, and its no-consumers and
	// not-enough-workers alerts go pending; digits' do not, and it keeps its worker.
	for _, w := range seedPool {
		w.signal(syscall.SIGTERM)
	}
	for _, w := range seedPool {
		w.wait(30 * time.Second)
	}
	f.waitWorkers(0)
	f.waitModelWorkers("digits", 1)
	sel := func(model string) string {
		return fmt.Sprintf(`vhost=%q,model=%q,queue=~"warren\\.req\\..+"`, vhost, model)
	}
	want := map[string]string{
		`warren:workers_needed:ceil{%s} >= 1`:                                "workers needed ≥ 1",
		`warren:workers_running:sum{%s} == 0`:                                "workers running = 0",
		`ALERTS{alertname="WarrenNoConsumers",alertstate="pending",%s}`:      "WarrenNoConsumers pending",
		`ALERTS{alertname="WarrenNotEnoughWorkers",alertstate="pending",%s}`: "WarrenNotEnoughWorkers pending",
	}
	quiet := func() {
		t.Helper()
		res, err := prom.query(fmt.Sprintf(`ALERTS{alertname=~"WarrenNoConsumers|WarrenNotEnoughWorkers",%s}`, sel("digits")))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range res {
			t.Errorf("digits, still served, has alert %s %s (%v)", s.Metric["alertname"], s.Metric["alertstate"], s.Metric)
		}
	}
	begin = time.Now()
	deadline = begin.Add(20 * time.Second)
	for len(want) > 0 && !t.Failed() {
		if r := f.do("POST", "/process", `{"data":"nobody home"}`); r.Status != 503 || r.json(t)["reason"] != "no_workers" {
			t.Fatalf("with no seed workers: %d %s", r.Status, r.Body)
		}
		if r := f.do("POST", "/v2/models/digits/infer", digitsV2(false)); r.Status != 200 {
			t.Fatalf("digits, with the seed pool stopped: %d %s", r.Status, r.Body)
		}
		for expr := range want {
			res, err := prom.query(fmt.Sprintf(expr, sel("seed")))
			if err != nil {
				t.Fatalf("%s: %v", expr, err)
			}
			if len(res) > 0 {
				delete(want, expr)
			}
		}
		quiet()
		if time.Now().After(deadline) {
			for expr, what := range want {
				t.Errorf("seed pool stopped: no %s within 20s (%s)", what, fmt.Sprintf(expr, sel("seed")))
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// digits: its worker still counts, and the estimate asks for no more.
	for _, expr := range []string{
		`warren:workers_running:sum{%s} >= 1`,
		`warren:workers_needed:ceil{%[1]s} - on (vhost, queue, model, version) warren:workers_running:sum{%[1]s} <= 0`,
	} {
		res, err := prom.query(fmt.Sprintf(expr, sel("digits")))
		if err != nil {
			t.Fatal(err)
		}
		if len(res) == 0 {
			t.Errorf("digits, with the seed pool stopped: %s is empty", fmt.Sprintf(expr, sel("digits")))
		}
	}
	quiet()
	t.Logf("seed pool stopped: its estimate, running count and alerts seen after %s; digits' alerts quiet", time.Since(begin).Round(time.Millisecond))
}

// promMatcher is one label matcher of a selector.
type promMatcher struct{ label, op, value string }

// matches reports whether a label value satisfies the matcher.
func (m promMatcher) matches(v string) bool {
	switch m.op {
	case "=":
		return v == m.value
	case "!=":
		return v != m.value
	}
	re, err := regexp.Compile("^(?:" + m.value + ")$")
	if err != nil {
		return false
	}
	return re.MatchString(v) == (m.op == "=~")
}

var promMatcherRE = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")`)

// promMatchers parses the matchers of a selector (promSelector.matchers).
func promMatchers(s string) []promMatcher {
	var out []promMatcher
	for _, m := range promMatcherRE.FindAllStringSubmatch(s, -1) {
		v, err := strconv.Unquote(m[3])
		if err != nil {
			v = m[3][1 : len(m[3])-1]
		}
		out = append(out, promMatcher{m[1], m[2], v})
	}
	return out
}

func TestAlertSignalAndSelectors(t *testing.T) {
	for expr, want := range map[string]string{
		`max by (vhost) (warren_broker_blocked) > 0`:                          `max by (vhost) (warren_broker_blocked)`,
		"(\n  a / (b > 0)\n)\n> 0.05\n":                                       "(\n  a / (b > 0)\n)",
		`max(label_replace(x == bool 0, "l", "$1", "__name__", "(.+)")) >= 1`: `max(label_replace(x == bool 0, "l", "$1", "__name__", "(.+)"))`,
		`x{a=">"} < 1e3`: `x{a=">"}`,
		`a > 0 and b`:    "",
		`a > b`:          "",
		`a > bool 1`:     "",
		`a > 1 > 2`:      "",
		`a`:              "",
	} {
		got, err := alertSignal(expr)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("alertSignal(%q) = %q, %v; want %q", expr, got, err, want)
		}
	}
	got := fmt.Sprint(promSelectors(`sum by (le, vhost) (rate(a_bucket{vhost=~"$vhost", q="b{c}"}[$__rate_interval] offset 5m)) / on (x) group_left (y) ` +
		`max(b and on (job) warren:c{role="api"}) * 0.5 + {__name__=~"d.+"} - topk(3, e)`))
	if want := `[{a_bucket vhost=~"$vhost", q="b{c}"} {b } {warren:c role="api"} { __name__=~"d.+"} {e }]`; got != want {
		t.Errorf("selectors: %s, want %s", got, want)
	}
}

// alertSignal splits an alert expression SIGNAL <cmp> NUMBER and returns SIGNAL.
func alertSignal(expr string) (string, error) {
	expr = strings.TrimSpace(expr)
	type pos struct{ at, n int }
	var cmps []pos
	depth := 0
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i = skipPromString(expr, i) - 1
		case c == '(' || c == '[' || c == '{':
			depth++
		case c == ')' || c == ']' || c == '}':
			depth--
		case depth > 0:
		case c == '#':
			return "", errors.New("comments in the expression are not supported by alertSignal")
		case strings.HasPrefix(expr[i:], "==") || strings.HasPrefix(expr[i:], "!=") ||
			strings.HasPrefix(expr[i:], ">=") || strings.HasPrefix(expr[i:], "<="):
			cmps = append(cmps, pos{i, 2})
			i++
		case c == '>' || c == '<':
			cmps = append(cmps, pos{i, 1})
		case isPromIdentStart(c) && (i == 0 || !isPromIdent(expr[i-1])):
			j := i
			for j < len(expr) && isPromIdent(expr[j]) {
				j++
			}
			switch w := strings.ToLower(expr[i:j]); w {
			case "and", "or", "unless":
				return "", fmt.Errorf("top-level %q binds looser than the threshold comparison; parenthesise the signal: %s", w, expr)
			}
			i = j - 1
		}
	}
	if len(cmps) != 1 {
		return "", fmt.Errorf("want exactly one top-level comparison (SIGNAL <cmp> NUMBER), found %d: %s", len(cmps), expr)
	}
	c := cmps[0]
	rhs := strings.TrimSpace(expr[c.at+c.n:])
	if _, err := strconv.ParseFloat(rhs, 64); err != nil {
		return "", fmt.Errorf("the threshold %q is not a plain number: %s", rhs, expr)
	}
	return strings.TrimSpace(expr[:c.at]), nil
}

// skipPromString returns the index just past the string literal starting at expr[i].
func skipPromString(expr string, i int) int {
	q := expr[i]
	for j := i + 1; j < len(expr); j++ {
		switch {
		case expr[j] == '\\' && q != '`':
			j++
		case expr[j] == q:
			return j + 1
		}
	}
	return len(expr)
}

func isPromIdentStart(c byte) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isPromIdent(c byte) bool { return isPromIdentStart(c) || '0' <= c && c <= '9' }

// promSelector is a metric selector in a PromQL expression: name{matchers}.
type promSelector struct{ name, matchers string }

var (
	promAggregations = map[string]bool{"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true,
		"stdvar": true, "count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true}
	promGroupings = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	promKeywords  = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
		"inf": true, "nan": true}
)

// promSelectors lists the metric selectors of a PromQL expression (enough PromQL for the
// dashboard: functions, promAggregations, grouping lists, strings, ranges, numbers).
func promSelectors(expr string) []promSelector {
	var out []promSelector
	closing := func(i int) int { // index of the bracket closing the one at i
		depth := 0
		for j := i; j < len(expr); j++ {
			switch expr[j] {
			case '"', '\'', '`':
				j = skipPromString(expr, j) - 1
			case '(', '[', '{':
				depth++
			case ')', ']', '}':
				if depth--; depth == 0 {
					return j
				}
			}
		}
		return len(expr) - 1
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i = skipPromString(expr, i)
		case c == '[':
			i = closing(i) + 1
		case c == '{':
			end := closing(i)
			out = append(out, promSelector{"", expr[i+1 : end]})
			i = end + 1
		case '0' <= c && c <= '9' || c == '.':
			for i < len(expr) && (isPromIdent(expr[i]) || expr[i] == '.') {
				i++
			}
		case isPromIdentStart(c):
			j := i
			for j < len(expr) && isPromIdent(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && expr[k] == ' ' {
				k++
			}
			switch {
			case promGroupings[word]:
				if k < len(expr) && expr[k] == '(' {
					j = closing(k) + 1
				}
			case promAggregations[word] || promKeywords[word] || k < len(expr) && expr[k] == '(':
			default:
				sel := promSelector{name: word}
				if k < len(expr) && expr[k] == '{' {
					end := closing(k)
					sel.matchers = expr[k+1 : end]
					j = end + 1
				}
				out = append(out, sel)
			}
			i = j
		default:
			i++
		}
	}
	return out
}

// dashboardVars substitutes the dashboard's template variables and Grafana's built-in
// interval variables, as Grafana would for a 1 s scrape interval with the test's vhost,
// model (every model and version, All, whose value the dashboard sets to .*, when
// model is empty; else that model and every version of it), and fails on any
// variable it does not know.
func dashboardVars(t *testing.T, expr, vhost, model string) string {
	t.Helper()
	// Grafana escapes a variable's value for a regex matcher inside a PromQL
	// string: regex metacharacters get a backslash, which PromQL doubles.
	esc := func(v string) string { return strings.ReplaceAll(regexp.QuoteMeta(v), `\`, `\\`) }
	m := ".*"
	if model != "" {
		m = esc(model)
	}
	r := strings.NewReplacer(
		"${vhost}", esc(vhost), "$vhost", esc(vhost),
		"${model}", m, "$model", m, "${version}", ".*", "$version", ".*",
		"$__rate_interval", "15s", "$__interval_ms", "2000", "$__interval", "2s",
		"$__range_s", "300", "$__range_ms", "300000", "$__range", "5m",
	)
	out := r.Replace(expr)
	if m := regexp.MustCompile(`\$\{?\w+`).FindString(out); m != "" {
		t.Errorf("dashboard query uses a variable the test does not substitute (%s): %s", m, expr)
	}
	return out
}

// vhostSeries returns the result's series that belong to vhost: those labelled with it,
// or all of them when none carries a vhost label (broker-wide or per-process series).
func vhostSeries(res []promSample, vhost string) []promSample {
	var mine []promSample
	labelled := false
	for _, s := range res {
		if v, ok := s.Metric["vhost"]; ok {
			labelled = true
			if v == vhost {
				mine = append(mine, s)
			}
		}
	}
	if !labelled {
		return res
	}
	return mine
}

// postProcess sends a /process call outside the test's goroutine; 0 on a transport error.
func postProcess(u, body, timeout string) int {
	req, err := http.NewRequest("POST", u, strings.NewReader(body))
	if err != nil {
		return 0
	}
	if timeout != "" {
		req.Header.Set("X-Request-Timeout", timeout)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// promJob submits a job to the API at base and long-polls it until it is final, outside
// the test's goroutine; an error unless it was accepted (202) and succeeded.
func promJob(base, body string) error {
	var j struct{ ID, Status string }
	call := func(method, path, body string, want int) error {
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		if err := json.Unmarshal(b, &j); err != nil {
			return fmt.Errorf("%s %s: %v: %s", method, path, err, b)
		}
		return nil
	}
	if err := call("POST", "/jobs", body, 202); err != nil {
		return err
	}
	if j.ID == "" {
		return fmt.Errorf("POST /jobs: no job id")
	}
	for range 3 {
		if err := call("GET", "/jobs/"+j.ID+"?wait=10", "", 200); err != nil {
			return err
		}
		switch j.Status {
		case "queued", "running":
			continue
		case "succeeded":
			return nil
		}
		return fmt.Errorf("job %s: %s", j.ID, j.Status)
	}
	return fmt.Errorf("job %s: still %s after 30s", j.ID, j.Status)
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// rabbitPrometheus returns host:port of RabbitMQ's prometheus plugin: RABBITMQ_PROMETHEUS
// if set, else testbroker's (port 15692 on the management API's host, or the Docker
// container's published 15692). It fails if that does not answer.
func rabbitPrometheus(t *testing.T) string {
	t.Helper()
	addr := os.Getenv("RABBITMQ_PROMETHEUS")
	if addr == "" {
		addr = testbroker.PrometheusAddr(t)
	}
	resp, err := http.Get("http://" + addr + "/metrics/detailed?family=queue_consumer_count")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			return addr
		}
		err = fmt.Errorf("status %s", resp.Status)
	}
	t.Fatalf("RabbitMQ's prometheus plugin does not answer at %s (%v): "+
		"rabbitmq-plugins enable rabbitmq_prometheus, or set RABBITMQ_PROMETHEUS=host:port", addr, err)
	return ""
}

// writeTargets writes a file_sd file in the format scripts/run.sh writes.
func writeTargets(t *testing.T, path string, f *farm, rabbit string) {
	t.Helper()
	type group struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	workers := []string{}
	for _, w := range f.workers {
		workers = append(workers, w.addr)
	}
	b, err := json.Marshal([]group{
		{[]string{f.api.addr}, map[string]string{"__meta_warren_role": "api"}},
		{workers, map[string]string{"__meta_warren_role": "worker"}},
		{[]string{rabbit}, map[string]string{"__meta_warren_role": "rabbitmq"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// localConfig writes dir/prometheus.yml: the shipped prometheus-local.yml with 1 s
// intervals, the shipped rule files by absolute path and dir/targets.json as every
// job's file_sd file. Nothing else changes.
func localConfig(t *testing.T, dir string) string {
	t.Helper()
	src := filepath.Join(deploymentsDir, "prometheus", "prometheus-local.yml")
	var cfg map[string]any
	readYAML(t, src, &cfg)
	global, _ := cfg["global"].(map[string]any)
	if global == nil {
		global = map[string]any{}
		cfg["global"] = global
	}
	global["scrape_interval"], global["scrape_timeout"], global["evaluation_interval"] = "1s", "1s", "1s"
	srcDir, err := filepath.Abs(filepath.Dir(src))
	if err != nil {
		t.Fatal(err)
	}
	rules, _ := cfg["rule_files"].([]any)
	if len(rules) == 0 {
		t.Fatalf("%s loads no rule files", src)
	}
	for i, r := range rules {
		if p := fmt.Sprint(r); !filepath.IsAbs(p) {
			rules[i] = filepath.Join(srcDir, p)
		}
	}
	scs, _ := cfg["scrape_configs"].([]any)
	for _, sc := range scs {
		m, _ := sc.(map[string]any)
		sds, _ := m["file_sd_configs"].([]any)
		if len(sds) == 0 {
			t.Fatalf("%s: job %v has no file_sd_configs", src, m["job_name"])
		}
		for _, sd := range sds {
			sd.(map[string]any)["files"] = []any{filepath.Join(dir, "targets.json")}
		}
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// prometheusServer is a running prometheus.
type prometheusServer struct {
	base string
	logs func() string // its output so far
}

// api GETs a prometheus API path and decodes its data field.
func (p *prometheusServer) api(path string, params url.Values, into any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", p.base+path+"?"+params.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct {
		Status, ErrorType, Error string
		Data                     json.RawMessage
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("%s: %s: %v", path, resp.Status, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, r.ErrorType, r.Error)
	}
	return json.Unmarshal(r.Data, into)
}

type promSample struct {
	Metric map[string]string
	Value  []any
}

// query runs an instant query; it must return a vector.
func (p *prometheusServer) query(expr string) ([]promSample, error) {
	var d struct {
		ResultType string
		Result     json.RawMessage
	}
	if err := p.api("/api/v1/query", url.Values{"query": {expr}}, &d); err != nil {
		return nil, err
	}
	if d.ResultType != "vector" {
		return nil, fmt.Errorf("result type %q, want vector", d.ResultType)
	}
	var res []promSample
	return res, json.Unmarshal(d.Result, &res)
}

func (p *prometheusServer) labelValues(t *testing.T, label, match string) []string {
	t.Helper()
	var vs []string
	if err := p.api("/api/v1/label/"+label+"/values", url.Values{"match[]": {match}}, &vs); err != nil {
		t.Fatal(err)
	}
	return vs
}

type promRuleGroup struct {
	Name, File string
	Rules      []struct {
		Name, Query, Type, Health, LastError string
	}
}

func (p *prometheusServer) rules(t *testing.T) []promRuleGroup {
	t.Helper()
	var d struct{ Groups []promRuleGroup }
	if err := p.api("/api/v1/rules", nil, &d); err != nil {
		t.Fatal(err)
	}
	return d.Groups
}

// waitTargets waits until every job has its number of targets, all up.
func (p *prometheusServer) waitTargets(t *testing.T, want map[string]int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var d struct {
			ActiveTargets []struct {
				Labels    map[string]string
				Health    string
				LastError string
				ScrapeURL string
			}
		}
		if err := p.api("/api/v1/targets", url.Values{"state": {"active"}}, &d); err != nil {
			t.Fatal(err)
		}
		up := map[string]int{}
		var state []string
		for _, tg := range d.ActiveTargets {
			if tg.Health == "up" {
				up[tg.Labels["job"]]++
			}
			state = append(state, fmt.Sprintf("%s %s %s %s", tg.Labels["job"], tg.ScrapeURL, tg.Health, tg.LastError))
		}
		total := 0
		for _, n := range want {
			total += n
		}
		if fmt.Sprint(up) == fmt.Sprint(want) && len(d.ActiveTargets) == total {
			return
		}
		if time.Now().After(deadline) {
			sort.Strings(state)
			t.Fatalf("targets up %v, want %v within %s:\n%s", up, want, timeout, strings.Join(state, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dashboard is the part of Grafana's dashboard JSON the tests read.
type dashboard struct {
	UID           string
	Title         string
	SchemaVersion int
	Templating    struct {
		List []struct {
			Name       string
			Query      json.RawMessage
			Datasource struct{ UID string }
		}
	}
	Panels []dashboardPanel
}

type dashboardPanel struct {
	ID         int
	Type       string
	Title      string
	Datasource struct{ Type, UID string }
	GridPos    struct{ X, Y, W, H int }
	Targets    []struct {
		RefID      string
		Expr       string
		Datasource struct{ Type, UID string }
	}
	Panels []dashboardPanel // a collapsed row's panels
}

func loadDashboard(t *testing.T) *dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deploymentsDir, "grafana", "dashboards", "warren.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("warren.json: %v", err)
	}
	return &d
}

func (d *dashboard) allPanels() []dashboardPanel {
	var out []dashboardPanel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}
