package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/apidoc/apidoctest"
	"github.com/warren-farm/warren/pkg/model"
)

// A version rollout through the real binaries, as docs/versions.md's recipe does it:
// two API replicas sharing a Redis job store (so a traffic change made on one must
// reach the other), version 1 of model canary served, then, under continuous load
// on /v2/models/canary/infer without a version, version 2's workers start, its
// weight goes 0 → 10 → 50 (sticky) → 100, version 1's workers are drained, and the
// settings are reset. No call may fail, and every answer must be the prediction of
// the version it names: the two versions' workers run the seed model with
// different seeds, so an answer labelled with the wrong version would not match.

// The phases of the rollout, in order. Between two phases the load is in
// transition while a change reaches every replica; a call counts for a phase when
// it started and ended in it, so that it was routed by that phase's settings.
const (
	phaseV1      int32 = iota // version 1 only
	phasePinned               // weights {1: 100}, version 2 starting
	phaseV2Live               // version 2 live, weight still 0
	phaseCanary               // {1: 90, 2: 10}
	phaseSticky               // {1: 50, 2: 50}, sticky by X-User-ID
	phaseAll2                 // {2: 100}
	phaseDrained              // version 1's workers gone
	phaseReset                // DELETE: the default rule
	phaseCount
)

var phaseNames = [phaseCount]string{"v1 only", "pinned to 1", "2 live, weight 0", "canary 10%", "sticky 50/50", "2 at 100%", "1 drained", "reset"}

// The seed each version's workers run with (MODEL_SEED).
var canarySeeds = map[string]uint64{"1": 1001, "2": 2002}

// canaryLoad calls /v2/models/canary/infer without a version from several
// goroutines, spread over the API replicas, and tallies the answers by phase.
type canaryLoad struct {
	t    *testing.T
	spec *apidoctest.Validator
	apis []*proc
	// phase is 2p while in phase p, 2p-1 in the transition to it: it only grows.
	phase atomic.Int32
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	mu       sync.Mutex
	counts   [phaseCount]map[string]int // version → calls started and ended in the phase
	calls    int
	failures []string
	// reached[g] is the phase value at which goroutine g's last finished call started.
	reached []atomic.Int32
}

func startCanaryLoad(t *testing.T, spec *apidoctest.Validator, apis []*proc, goroutines int) *canaryLoad {
	l := &canaryLoad{t: t, spec: spec, apis: apis, stop: make(chan struct{}), reached: make([]atomic.Int32, goroutines)}
	for i := range l.counts {
		l.counts[i] = map[string]int{}
	}
	for g := 0; g < goroutines; g++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			api := apis[g%len(apis)]
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				begin := l.phase.Load()
				version, err := canaryCall(spec, api, fmt.Sprintf("load %d-%d", g, i), "")
				end := l.phase.Load()
				l.reached[g].Store(begin)
				l.mu.Lock()
				l.calls++
				if err != nil {
					l.failures = append(l.failures, fmt.Sprintf("%s (phase %s): %v", api.addr, phaseName(begin), err))
				} else if begin == end && begin%2 == 0 {
					l.counts[begin/2][version]++
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// transition marks the load as moving to phase p: call it before the change.
func (l *canaryLoad) transition(p int32) { l.phase.Store(2*p - 1) }

// next moves the load to phase p: call it once the change applies everywhere.
func (l *canaryLoad) next(p int32) {
	l.phase.Store(2 * p)
	l.t.Logf("phase %q", phaseNames[p])
}

func phaseName(v int32) string {
	if v%2 == 1 {
		return "→ " + phaseNames[(v+1)/2]
	}
	return phaseNames[v/2]
}

// count returns the calls of phase p, and those answered by version v.
func (l *canaryLoad) count(p int32, v string) (all, ofV int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.counts[p] {
		all += n
	}
	return all, l.counts[p][v]
}

// waitCalls waits until phase p (the current one) has at least n calls.
func (l *canaryLoad) waitCalls(p int32, n int) {
	l.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if all, _ := l.count(p, ""); all >= n {
			return
		}
		if time.Now().After(deadline) {
			all, _ := l.count(p, "")
			l.t.Fatalf("phase %q: %d calls in 90 s, want %d", phaseNames[p], all, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitReached waits until every goroutine finished a call that started in phase p
// or later: no call routed before p is in flight any more.
func (l *canaryLoad) waitReached(p int32) {
	l.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for g := range l.reached {
		for l.reached[g].Load() < 2*p {
			if time.Now().After(deadline) {
				l.t.Fatalf("load goroutine %d has no call of phase %q after 30 s", g, phaseNames[p])
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// finish stops the load and waits for its calls in flight (idempotent).
func (l *canaryLoad) finish() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// canaryCall makes one v2 call to model canary on api (with X-User-ID user when
// not empty), checks the exchange against the OpenAPI document and the answer
// against the prediction of the version it names, and returns that version. It
// may run on any goroutine: it reports instead of failing the test.
func canaryCall(spec *apidoctest.Validator, api *proc, input, user string) (string, error) {
	body := `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":[` + fmt.Sprintf("%q", input) + `]}]}`
	req, err := http.NewRequest("POST", api.url("/v2/models/canary/infer"), strings.NewReader(body))
	if err != nil {
		return "", err
	}
	if user != "" {
		req.Header.Set("X-User-ID", user)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", err
	}
	vreq, _ := http.NewRequest("POST", req.URL.String(), strings.NewReader(body))
	vreq.Header = req.Header.Clone()
	if err := spec.Validate(vreq, []byte(body), resp, b); err != nil {
		return "", fmt.Errorf("does not match openapi.json: %w", err)
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%d %s", resp.StatusCode, b)
	}
	var answer struct {
		ModelName    string `json:"model_name"`
		ModelVersion string `json:"model_version"`
		Outputs      []struct {
			Name string `json:"name"`
			Data []any  `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(b, &answer); err != nil {
		return "", fmt.Errorf("%w: %s", err, b)
	}
	seed, ok := canarySeeds[answer.ModelVersion]
	if answer.ModelName != "canary" || !ok {
		return "", fmt.Errorf("the answer names model %q version %q: %s", answer.ModelName, answer.ModelVersion, b)
	}
	want := model.NewSeed(model.SeedConfig{Seed: seed}).PredictOne(input)
	got := map[string]any{}
	for _, o := range answer.Outputs {
		if len(o.Data) == 1 {
			got[o.Name] = o.Data[0]
		}
	}
	if got[model.SeedClass] != want.Prediction.Class || got[model.SeedConfidence] != want.Prediction.Confidence ||
		got[model.SeedMessage] != want.Message {
		return "", fmt.Errorf("the answer names version %s but is not its prediction of %q (%+v): %s", answer.ModelVersion, input, want, b)
	}
	return answer.ModelVersion, nil
}

// trafficView is GET /v2/models/{name}/traffic.
type trafficView struct {
	Configured     bool               `json:"configured"`
	Weights        map[string]int     `json:"weights"`
	StickyHeader   string             `json:"sticky_header"`
	DefaultVersion string             `json:"default_version"`
	Split          map[string]float64 `json:"split"`
}

// setTraffic sends the admin call (PUT with body, DELETE with "") to api, then waits
// until every replica in all shows the settings with split want.
func setTraffic(t *testing.T, spec *apidoctest.Validator, api *proc, all []*proc, body string, want map[string]float64) {
	t.Helper()
	method := "PUT"
	if body == "" {
		method = "DELETE"
	}
	r := doChecked(t, spec, method, api.url("/v2/models/canary/traffic"), body)
	if r.Status != 200 {
		t.Fatalf("%s traffic %s on %s: %d %s", method, body, api.name, r.Status, r.Body)
	}
	var set trafficView
	if err := json.Unmarshal(r.Body, &set); err != nil || set.Configured != (body != "") || fmt.Sprint(set.Split) != fmt.Sprint(want) {
		t.Fatalf("%s traffic %s: %s (want split %v)", method, body, r.Body, want)
	}
	for _, p := range all {
		deadline := time.Now().Add(10 * time.Second) // replicas refresh every second
		for {
			var got trafficView
			r := doChecked(t, spec, "GET", p.url("/v2/models/canary/traffic"), "")
			if json.Unmarshal(r.Body, &got) == nil && got.Configured == set.Configured && fmt.Sprint(got.Weights) == fmt.Sprint(set.Weights) &&
				got.StickyHeader == set.StickyHeader && fmt.Sprint(got.Split) == fmt.Sprint(want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never applied %s %s: %d %s", p.addr, method, body, r.Status, r.Body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// waitReadyOn waits until api lists model/version as ready (or not).
func waitReadyOn(t *testing.T, api *proc, model, version string, ready bool) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	path := "/v2/models/" + model + "/versions/" + version + "/ready"
	for {
		r := doChecked(t, nil, "GET", api.url(path), "")
		if (r.Status == 200) == ready && r.Status != 404 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s ready=%v never seen: %d %s", api.addr, path, ready, r.Status, r.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// canaryJob submits a job for canary without a version to api and waits for it:
// it must run on version want.
func canaryJob(t *testing.T, spec *apidoctest.Validator, api *proc, want string) {
	t.Helper()
	const input = "a job"
	r := doChecked(t, spec, "POST", api.url("/jobs"), `{"model":"canary","inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["`+input+`"]}]}`)
	var j struct {
		ID           string `json:"id"`
		Status       string `json:"status"`
		ModelVersion string `json:"model_version"`
		Result       struct {
			ModelVersion string `json:"model_version"`
		} `json:"result"`
	}
	if err := json.Unmarshal(r.Body, &j); err != nil || r.Status != 202 || j.ModelVersion != want {
		t.Fatalf("a job without a version: %d %s, want version %s", r.Status, r.Body, want)
	}
	r = doChecked(t, spec, "GET", api.url("/jobs/"+j.ID+"?wait=20"), "")
	if err := json.Unmarshal(r.Body, &j); err != nil || j.Status != "succeeded" || j.Result.ModelVersion != want {
		t.Fatalf("the job on version %s: %d %s", want, r.Status, r.Body)
	}
}

func TestCanaryRollout(t *testing.T) {
	integration(t)
	store := redisStore(t)
	// The same repository content for both pools but for the version each serves,
	// and model shapes, whose version 2 takes other inputs than its version 1.
	common := map[string]string{"canary/1/README": "version 1\n", "canary/2/README": "version 2\n"}
	files := func(policy string, more map[string]string) map[string]string {
		out := map[string]string{"canary/config.yaml": "backend: seed\nversion_policy: {specific: [" + policy + "]}\n"}
		for k, v := range common {
			out[k] = v
		}
		for k, v := range more {
			out[k] = v
		}
		return out
	}
	repo1 := repository(t, files("1", map[string]string{"shapes/config.yaml": "backend: seed\n", "shapes/1/README": "seed-shaped\n"}), nil)
	repo2 := repository(t, files("2", map[string]string{"shapes/config.yaml": "backend: onnx\n"}),
		map[string]string{"shapes/2/model.onnx": "digits/1/model.onnx"})

	f := newFarm(t, 0, store, nil)
	apiB := startProc(t, "api", append([]string{"AMQP_URL=" + f.vh.AMQPURL, "MANAGEMENT_URL=" + f.vh.ManagementURL}, store...)...)
	apis := []*proc{f.api, apiB}
	v1env := []string{"MODEL_REPOSITORY=" + repo1, "MODELS=canary,shapes", fmt.Sprint("MODEL_SEED=", canarySeeds["1"])}
	v1 := []*proc{f.addWorker(append(v1env, "WORKER_ID=v1-a")...), f.addWorker(append(v1env, "WORKER_ID=v1-b")...)}
	for _, a := range apis {
		waitReadyOn(t, a, "canary", "1", true)
	}

	load := startCanaryLoad(t, f.spec, apis, 4)
	defer load.finish()
	load.waitCalls(phaseV1, 100)

	// 1. Before version 2's workers start, keep every call on version 1: by the
	// default rule, a new highest version would take all of them at once.
	load.transition(phasePinned)
	setTraffic(t, f.spec, f.api, apis, `{"weights":{"1":100}}`, map[string]float64{"1": 1})
	load.next(phasePinned)
	v2env := []string{"MODEL_REPOSITORY=" + repo2, "MODELS=canary,shapes", fmt.Sprint("MODEL_SEED=", canarySeeds["2"])}
	f.addWorker(append(v2env, "WORKER_ID=v2-a")...)
	f.addWorker(append(v2env, "WORKER_ID=v2-b")...)
	for _, a := range apis {
		waitReadyOn(t, a, "canary", "2", true)
		waitReadyOn(t, a, "shapes", "2", true)
	}
	load.next(phaseV2Live)
	canaryJob(t, f.spec, apiB, "1")
	load.waitCalls(phaseV2Live, 100)

	// The versions' metadata differ for model shapes: each request is checked
	// against the version it names, by the API, before anything is published.
	seedShaped := `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["x"]}]}`
	if r := f.do("POST", "/v2/models/shapes/versions/1/infer", seedShaped); r.Status != 200 || r.json(t)["model_version"] != "1" {
		t.Errorf("a v1-shaped request to version 1: %d %s", r.Status, r.Body)
	}
	r := f.do("POST", "/v2/models/shapes/versions/2/infer", seedShaped)
	if m := r.json(t); r.Status != 400 || m["reason"] != "bad_input" || !strings.Contains(m["error"].(string), `input "data": the model has no such input`) {
		t.Errorf("a v1-shaped request to version 2: %d %s", r.Status, r.Body)
	}
	if r := f.do("POST", "/v2/models/shapes/versions/2/infer", digitsV2(false)); r.Status != 200 || r.json(t)["model_version"] != "2" {
		t.Errorf("a v2-shaped request to version 2: %d %s", r.Status, r.Body)
	}
	shapes2 := map[string]string{"model": "shapes", "version": "2"}
	if bad, ok := metric(t, f.api, "warren_rpc_requests_total", with(shapes2, "reason", "bad_input")), metric(t, f.api, "warren_rpc_requests_total", with(shapes2, "reason", "ok")); bad != 0 || ok != 1 {
		t.Errorf("calls of shapes/2 that reached the farm: %v bad_input, %v ok; want 0 and 1", bad, ok)
	}
	for v, input := range map[string]string{"1": `"name":"data"`, "2": `"name":"input"`} {
		if r := f.do("GET", "/v2/models/shapes/versions/"+v, ""); r.Status != 200 || !strings.Contains(string(r.Body), input) {
			t.Errorf("metadata of shapes/%s: %d %s", v, r.Status, r.Body)
		}
	}

	// 2. The canary: 10% to version 2, set on the other replica this time.
	load.transition(phaseCanary)
	setTraffic(t, f.spec, apiB, apis, `{"weights":{"1":90,"2":10}}`, map[string]float64{"1": 0.9, "2": 0.1})
	load.next(phaseCanary)
	load.waitCalls(phaseCanary, 400)

	// 3. Half of it, sticky: a user keeps its version whichever replica it calls.
	load.transition(phaseSticky)
	setTraffic(t, f.spec, f.api, apis, `{"weights":{"1":50,"2":50},"sticky_header":"X-User-ID"}`, map[string]float64{"1": 0.5, "2": 0.5})
	load.next(phaseSticky)
	users := map[string]int{}
	for u := 0; u < 30; u++ {
		user := fmt.Sprint("user-", u)
		first := ""
		for i := 0; i < 4; i++ {
			v, err := canaryCall(f.spec, apis[i%2], fmt.Sprintf("sticky %d-%d", u, i), user)
			if err != nil {
				t.Fatalf("%s: %v", user, err)
			}
			if first == "" {
				first = v
			} else if v != first {
				t.Fatalf("%s got version %s, then %s", user, first, v)
			}
		}
		users[first]++
	}
	if users["1"] == 0 || users["2"] == 0 {
		t.Errorf("30 sticky users all on one version: %v", users)
	}
	load.waitCalls(phaseSticky, 100)

	// 4. All of it to version 2; once no call routed before is in flight, drain
	// version 1's workers.
	load.transition(phaseAll2)
	setTraffic(t, f.spec, apiB, apis, `{"weights":{"1":0,"2":100}}`, map[string]float64{"2": 1})
	load.next(phaseAll2)
	load.waitReached(phaseAll2)
	load.waitCalls(phaseAll2, 100)
	canaryJob(t, f.spec, f.api, "2")
	for _, w := range v1 {
		w.signal(syscall.SIGTERM)
	}
	for _, w := range v1 {
		if code := w.wait(30 * time.Second); code != 0 {
			t.Errorf("%s exited with %d after SIGTERM", w.name, code)
		}
	}
	for _, a := range apis {
		waitReadyOn(t, a, "canary", "1", false)
	}
	load.next(phaseDrained)
	load.waitCalls(phaseDrained, 100)

	// 5. Back to the default rule: the highest live version, 2.
	load.transition(phaseReset)
	setTraffic(t, f.spec, f.api, apis, "", map[string]float64{"2": 1})
	load.next(phaseReset)
	load.waitCalls(phaseReset, 100)
	load.finish()

	// Zero failed calls, and each phase's calls where its settings say.
	for _, msg := range load.failures[:min(len(load.failures), 20)] {
		t.Error(msg)
	}
	if n := len(load.failures); n > 0 {
		t.Fatalf("%d of %d calls failed", n, load.calls)
	}
	for p := phaseV1; p < phaseCount; p++ {
		all, on2 := load.count(p, "2")
		t.Logf("%-18s %5d calls, %5d on version 2 (%.1f%%)", phaseNames[p], all, on2, 100*float64(on2)/float64(max(all, 1)))
		switch p {
		case phaseV1, phasePinned, phaseV2Live:
			if on2 != 0 {
				t.Errorf("phase %q: %d calls went to version 2", phaseNames[p], on2)
			}
		case phaseCanary:
			if share := float64(on2) / float64(all); all < 300 || share < 0.03 || share > 0.25 {
				t.Errorf("phase %q: %d of %d calls on version 2; want 3%% to 25%% of at least 300", phaseNames[p], on2, all)
			}
		case phaseSticky:
			if on2 == 0 || on2 == all {
				t.Errorf("phase %q: %d of %d calls on version 2", phaseNames[p], on2, all)
			}
		case phaseAll2, phaseDrained, phaseReset:
			if on2 != all {
				t.Errorf("phase %q: %d of %d calls went to version 1", phaseNames[p], all-on2, all)
			}
		}
	}
	t.Logf("%d calls, %d failed; sticky users per version %v", load.calls, len(load.failures), users)
}

// TestTrafficAdminAPI: the admin calls' answers through the real binary, each
// checked against the OpenAPI document, and ADMIN_API=off.
func TestTrafficAdminAPI(t *testing.T) {
	integration(t)
	f := newFarm(t, 1, nil, nil)
	f.waitModel("seed", "1", true)
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"GET", "/v2/models/seed/traffic", "", 200, `{"model":"seed","configured":false,"split":{"1":1}}`},
		{"PUT", "/v2/models/seed/traffic", `{"weights":{"1":3},"sticky_header":"x-tenant"}`, 200, `"sticky_header":"X-Tenant"`},
		{"PUT", "/v2/models/seed/traffic", `{"weights":{"1":1,"2":1}}`, 400, `seed has no version \"2\" (known: 1)`},
		{"PUT", "/v2/models/seed/traffic", `{"weights":{"1":0.5}}`, 400, `must be an integer from 0 to 1000000`},
		{"PUT", "/v2/models/nope/traffic", `{"default_version":"1"}`, 404, `"reason":"not_found"`},
		{"PUT", "/v2/models/seed/traffic", `{"default_version":"1"}`, 403, `"reason":"forbidden"`}, // through a proxy
		{"DELETE", "/v2/models/seed/traffic", "", 200, `"configured":false`},
	} {
		hdr := []string{}
		if tc.code == 403 {
			hdr = []string{"X-Forwarded-For", "203.0.113.9"}
		}
		r := f.do(tc.method, tc.path, tc.body, hdr...)
		if r.Status != tc.code || !strings.Contains(string(r.Body), tc.want) {
			t.Errorf("%s %s %s: %d %s, want %d …%s…", tc.method, tc.path, tc.body, r.Status, r.Body, tc.code, tc.want)
		}
	}
	if r := f.do("POST", "/v2/models/seed/infer", `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["x"]}]}`, "X-Tenant", "a"); r.Status != 200 {
		t.Errorf("infer after the reset: %d %s", r.Status, r.Body)
	}

	off := newFarm(t, 1, []string{"ADMIN_API=off"}, nil)
	off.waitModel("seed", "1", true)
	for _, m := range []string{"PUT", "DELETE"} {
		if r := off.do(m, "/v2/models/seed/traffic", `{"default_version":"1"}`); r.Status != 403 || !strings.Contains(string(r.Body), "ADMIN_API=off") {
			t.Errorf("ADMIN_API=off: %s %d %s", m, r.Status, r.Body)
		}
	}
	if r := off.do("GET", "/v2/models/seed/traffic", ""); r.Status != 200 {
		t.Errorf("ADMIN_API=off: GET %d %s", r.Status, r.Body)
	}
}
