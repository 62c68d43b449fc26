//go:build porting

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
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
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
)

const deploymentsDir = "../../deployments"

// requireTools reports whether prometheus and promtool are on PATH. A full run (make
// test) fails here when one is missing, never skips; under -short, which needs no
// external tool, it returns false and the caller leaves out what needs them.
func requireTools(t *testing.T) bool {
	t.Helper()
	for _, tool := range []string{"prometheus", "promtool"} {
		if _, err := exec.LookPath(tool); err != nil {
			if testing.Short() {
				t.Logf("%s is not on PATH: -short leaves out the checks that run it (make test runs them): %v", tool, err)
				return false
			}
			t.Fatalf("%s is not on PATH: the Prometheus tests need the real prometheus and promtool "+
				"(Debian/Ubuntu: apt-get install prometheus; elsewhere: https://prometheus.io/download/): %v", tool, err)
		}
	}
	return true
}

func runPromtool(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("promtool", args...)
	cmd.Dir = filepath.Join(deploymentsDir, "prometheus")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

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
	if requireTools(t) {
		runPromtool(t, "check", "config", "prometheus.yml", "prometheus-local.yml")
		runPromtool(t, "check", "rules", "rules.yml", "alerts.yml")
		runPromtool(t, append([]string{"test", "rules"}, tests...)...)
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

// TestPrometheusScrapesFarm starts an API and two workers from the real binaries, a
// real prometheus scraping them and RabbitMQ with the shipped local configuration, and
// runs every dashboard query and every rule through prometheus' query API while /process
// calls and async jobs flow. Then it scales the farm to zero and checks that the
// workers-needed estimate still asks for a worker and the no-consumers alert goes
// pending.
func TestPrometheusScrapesFarm(t *testing.T) {
	integration(t)
	requireTools(t)
	f := newFarm(t, 2, nil, []string{"MODEL_LATENCY=30ms"})
	vhost := f.vh.Name

	rabbit := rabbitPrometheus(t, f.vh.ManagementURL)
	dir := t.TempDir()
	writeTargets(t, filepath.Join(dir, "targets.json"), f, rabbit)
	cfg := localConfig(t, dir)
	prom := startPrometheus(t, cfg, dir)

	// Traffic while prometheus scrapes: a steady stream of answered calls, and
	// some failures: calls whose deadline passes (504 timeout) and malformed bodies
	// (422, HTTP only). Model errors (502) cannot be provoked through the real
	// binaries.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, timeouts, bad atomic.Int64
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body, hdr := fmt.Sprintf(`{"data":"input %d-%d"}`, g, i), ""
				switch {
				case g == 0 && i%5 == 0:
					hdr = "20ms"
				case g == 1 && i%10 == 0:
					body = `{"forward_to_model":true}`
				}
				switch postProcess(f.api.url("/process"), body, hdr) {
				case 200:
					ok.Add(1)
				case 504:
					timeouts.Add(1)
				case 422:
					bad.Add(1)
				}
			}
		}(g)
	}
	// And a stream of async jobs, one at a time (POST /jobs, then long-poll until it is
	// final), so the Jobs row has real data: submissions, consumption, outcomes,
	// finishes, in-flight.
	var jobsOK, jobsBad atomic.Int64
	var jobErr atomic.Value
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if err := promJob(f.api.url(""), fmt.Sprintf(`{"data":"job %d"}`, i)); err != nil {
				jobsBad.Add(1)
				jobErr.CompareAndSwap(nil, err.Error())
				continue
			}
			jobsOK.Add(1)
		}
	}()
	stopTraffic := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopTraffic)

	prom.waitTargets(t, map[string]int{"warren-api": 1, "warren-worker": 2, "rabbitmq": 1, "rabbitmq-detailed": 1}, 20*time.Second)

	// Every query, with what it is for the failure messages.
	type query struct{ what, expr string }
	var queries []query
	d := loadDashboard(t)
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			queries = append(queries, query{fmt.Sprintf("panel %q %s", p.Title, tg.RefID), dashboardVars(t, tg.Expr, vhost)})
		}
	}
	groups := prom.rules(t)
	for _, g := range groups {
		for _, r := range g.Rules {
			switch r.Type {
			case "recording":
				queries = append(queries, query{"recording rule " + r.Name, r.Query})
			case "alerting":
				sig, err := alertSignal(r.Query)
				if err != nil {
					t.Errorf("alert %s: %v", r.Name, err)
					continue
				}
				queries = append(queries, query{"alert " + r.Name + " (its signal)", sig})
			}
		}
	}
	if len(groups) != 2 {
		t.Errorf("prometheus loaded %d rule groups, want the 2 of rules.yml and alerts.yml", len(groups))
	}
	// The job traffic reached every stage the Jobs row draws. Counters, not rates: a
	// rate over a short window may be 0 between two jobs.
	for _, c := range []string{
		`warren_jobs_submitted_total`,
		`warren_worker_jobs_consumed_total`,
		`warren_worker_jobs_handled_total{outcome="succeeded"}`,
		`warren_jobs_finished_total{status="succeeded"}`,
	} {
		queries = append(queries, query{"job traffic: " + c + " > 0", fmt.Sprintf(`sum by (vhost) (%s) > 0`, c)})
	}

	// Rates need a few scrapes and rules a few evaluations: retry what is empty
	// until the deadline, then report everything still empty at once. (No query is
	// exempt: RabbitMQ exports the dead-letter queue warren.jobs.dead, which the API
	// declares, with 0 messages, so even the dead-letter queries return series; the
	// retry queues, declared at the first model error, fall back to 0.)
	begin := time.Now()
	deadline := begin.Add(25 * time.Second)
	pending := queries
	for {
		var empty []query
		for _, q := range pending {
			res, err := prom.query(q.expr)
			if err != nil {
				t.Fatalf("%s: %v\n%s", q.what, err, q.expr)
			}
			if len(vhostSeries(res, vhost)) == 0 {
				empty = append(empty, q)
			}
		}
		pending = empty
		if len(pending) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("%d queries, %d with series after %s", len(queries), len(queries)-len(pending), time.Since(begin).Round(time.Millisecond))
	for _, q := range pending {
		t.Errorf("%s returns no series for vhost %q:\n  %s", q.what, vhost, q.expr)
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
	// Rule health: every rule evaluated without error.
	for _, g := range prom.rules(t) {
		for _, r := range g.Rules {
			if r.Health == "err" {
				t.Errorf("rule %s: %s", r.Name, r.LastError)
			}
		}
	}
	stopTraffic()
	t.Logf("traffic: %d ok, %d timeouts, %d malformed; %d jobs succeeded", ok.Load(), timeouts.Load(), bad.Load(), jobsOK.Load())
	if ok.Load() == 0 || timeouts.Load() == 0 || bad.Load() == 0 {
		t.Errorf("traffic did not produce every outcome: %d ok, %d timeouts, %d malformed", ok.Load(), timeouts.Load(), bad.Load())
	}
	if jobsOK.Load() == 0 || jobsBad.Load() > 0 {
		t.Errorf("jobs: %d succeeded, %d did not (first: %v)", jobsOK.Load(), jobsBad.Load(), jobErr.Load())
	}
	if t.Failed() {
		return
	}

	// Scaled to zero with callers turned away: the estimate still wants a worker,
	// none runs, and the no-consumers and not-enough-workers alerts go pending.
	for _, w := range f.workers {
		w.signal(syscall.SIGTERM)
	}
	for _, w := range f.workers {
		w.wait(30 * time.Second)
	}
	f.waitWorkers(0)
	want := map[string]string{
		`warren:workers_needed:ceil{%s} >= 1`:           "workers needed ≥ 1",
		`warren:workers_running:sum{%s} == 0`:           "workers running = 0",
		`ALERTS{alertname="WarrenNoConsumers",%s}`:      "WarrenNoConsumers pending or firing",
		`ALERTS{alertname="WarrenNotEnoughWorkers",%s}`: "WarrenNotEnoughWorkers pending or firing",
	}
	begin = time.Now()
	deadline = begin.Add(20 * time.Second)
	for len(want) > 0 {
		if r := f.do("POST", "/process", `{"data":"nobody home"}`); r.Status != 503 || r.json(t)["reason"] != "no_workers" {
			t.Fatalf("with no workers: %d %s", r.Status, r.Body)
		}
		for expr := range want {
			res, err := prom.query(fmt.Sprintf(expr, fmt.Sprintf(`vhost=%q,queue=~"warren\\.req\\..+"`, vhost)))
			if err != nil {
				t.Fatalf("%s: %v", expr, err)
			}
			if len(res) > 0 {
				delete(want, expr)
			}
		}
		if time.Now().After(deadline) {
			for expr, what := range want {
				t.Errorf("scaled to zero: no %s within 20s (%s)", what, fmt.Sprintf(expr, "vhost of the test"))
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("scaled to zero: estimate, running count and alerts seen after %s", time.Since(begin).Round(time.Millisecond))
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
// interval variables, as Grafana would for a 1 s scrape interval with the test's vhost
// and every model and version (All, whose value the dashboard sets to .*), and fails on
// any variable it does not know.
func dashboardVars(t *testing.T, expr, vhost string) string {
	t.Helper()
	// Grafana escapes a multi-value variable's value for a regex matcher inside a
	// PromQL string: regex metacharacters get a backslash, which PromQL doubles.
	esc := strings.ReplaceAll(regexp.QuoteMeta(vhost), `\`, `\\`)
	r := strings.NewReplacer(
		"${vhost}", esc, "$vhost", esc,
		"${model}", ".*", "$model", ".*", "${version}", ".*", "$version", ".*",
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
// if set, else port 15692 on the management API's host. It fails if that does not answer.
func rabbitPrometheus(t *testing.T, managementURL string) string {
	t.Helper()
	addr := os.Getenv("RABBITMQ_PROMETHEUS")
	if addr == "" {
		u, err := url.Parse(managementURL)
		if err != nil {
			t.Fatal(err)
		}
		addr = net.JoinHostPort(u.Hostname(), "15692")
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
	out  *syncBuffer
}

func startPrometheus(t *testing.T, config, dir string) *prometheusServer {
	t.Helper()
	addr := freeAddr(t)
	p := &prometheusServer{base: "http://" + addr, out: &syncBuffer{}}
	cmd := exec.Command("prometheus",
		"--config.file="+config,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
	)
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("--- prometheus log ---\n%s", p.out.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(p.base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-done:
			t.Fatalf("prometheus exited:\n%s", p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready within 15s (%v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
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
