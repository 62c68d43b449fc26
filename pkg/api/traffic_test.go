package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-farm/warren/internal/lifecycle"
	"github.com/warren-farm/warren/pkg/auth"
	"github.com/warren-farm/warren/pkg/catalog"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/metrics"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/oip"
	"github.com/warren-farm/warren/pkg/queue"
)

// The version a call that names none goes to is the catalog's Pick, for every
// endpoint that takes such calls; the request's headers reach it (sticky routing).
func TestUnversionedCallsGoWherePickSays(t *testing.T) {
	r := newRig(t)
	var mu sync.Mutex
	var asked []string
	r.catalog.pick = func(name string, header func(string) string) (catalog.Version, error) {
		mu.Lock()
		asked = append(asked, name+" "+header("X-User-Id"))
		mu.Unlock()
		vs := r.catalog.versions[name]
		return vs[0], nil // the oldest: not what Resolve(name, "") would say
	}
	seedBody := `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["x"]}]}`
	r.catalog.versions["seed"] = append(r.catalog.versions["seed"], version("seed", "2", model.SeedMetadata(), 1))

	if a := r.do(t, "POST", "/v2/models/seed/infer", seedBody, "X-User-Id", "u-1"); a.code != 200 || a.m["model_version"] != "1" {
		t.Fatalf("v2 infer: %d %s", a.code, a.body)
	}
	if a := r.do(t, "POST", "/process", `{"data":"x"}`, "X-User-Id", "u-2"); a.code != 200 || r.calls.last().Route.Version != "1" {
		t.Fatalf("/process: %d %s %v", a.code, a.body, r.calls.last().Route)
	}
	if a := r.do(t, "POST", "/jobs", `{"data":"x"}`, "X-User-Id", "u-3"); a.code != 202 || a.m["model_version"] != "1" {
		t.Fatalf("lab job: %d %s", a.code, a.body)
	}
	if a := r.do(t, "POST", "/jobs", `{"model":"seed",`+seedBody[1:], "X-User-Id", "u-4"); a.code != 202 || a.m["model_version"] != "1" {
		t.Fatalf("v2 job: %d %s", a.code, a.body)
	}
	if a := r.do(t, "POST", "/v2/models/seed/infer", seedBody, "X-User-Id", "u-5", "Prefer", "respond-async"); a.code != 202 || a.m["model_version"] != "1" {
		t.Fatalf("v2 hand-off: %d %s", a.code, a.body)
	}
	// A named version is not Pick's business.
	if a := r.do(t, "POST", "/v2/models/seed/versions/2/infer", seedBody, "X-User-Id", "u-6"); a.code != 200 || a.m["model_version"] != "2" {
		t.Fatalf("pinned: %d %s", a.code, a.body)
	}
	if a := r.do(t, "POST", "/jobs", `{"model":"seed","version":"2",`+seedBody[1:], "X-User-Id", "u-7"); a.code != 202 || a.m["model_version"] != "2" {
		t.Fatalf("pinned job: %d %s", a.code, a.body)
	}
	if got := strings.Join(asked, ","); got != "seed u-1,seed u-2,seed u-3,seed u-4,seed u-5" {
		t.Fatalf("Pick was asked %s", got)
	}
}

// trafficRig is the handlers around a real catalog (the traffic settings are the
// catalog's; nothing else of it does I/O) with model canary: version 1 takes the
// seed lab's input, version 2 the digits model's.
type trafficRig struct {
	*rig
	cat   *catalog.Catalog
	store *metaStore
	mu    sync.Mutex
	live  map[string]int
}

func newTrafficRig(t *testing.T, admin string) *trafficRig {
	t.Helper()
	return newTrafficRigAuth(t, admin, nil)
}

// newTrafficRigAuth is newTrafficRig with an authenticator (nil: none).
func newTrafficRigAuth(t *testing.T, admin string, a *auth.Authenticator) *trafficRig {
	t.Helper()
	tr := &trafficRig{rig: &rig{calls: &fakeCaller{}, jobs: &fakeJobs{byID: map[string]*jobs.Job{}}, cap: &fakeCapacity{}, state: lifecycle.Ready},
		store: &metaStore{kv: map[string][]byte{}}, live: map[string]int{"canary/1": 1, "canary/2": 1}}
	var err error
	tr.cat, err = catalog.New(catalog.Config{Store: tr.store, Workers: func(r queue.Route) int {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return tr.live[r.String()]
	}})
	if err != nil {
		t.Fatal(err)
	}
	seedMD, _ := json.Marshal(model.SeedMetadata())
	digits, _ := json.Marshal(digitsMD)
	tr.cat.Apply(queue.Announcement{Worker: "w", State: queue.StateReady, IntervalMs: 10000, Models: []queue.ModelAnnouncement{
		{Name: "canary", Version: "1", Metadata: seedMD}, {Name: "canary", Version: "2", Metadata: digits},
		{Name: "seed", Version: "1", Metadata: seedMD},
	}})
	cfg := Config{DefaultModel: "seed", BodyLimit: 4096, AdminAPI: admin, Auth: a}
	cfg.setDefaults()
	reg := prometheus.NewRegistry()
	tr.h = newRouter(&handlers{cfg: cfg, calls: tr.calls, catalog: tr.cat, traffic: tr.cat, jobs: tr.jobs, capacity: tr.cap,
		metrics: metrics.NewAPI(reg, "/", nilSource{}), registry: reg,
		state: func() lifecycle.State { return tr.state }, enter: func() bool { return true }, leave: func() {},
		stopping: make(chan struct{}), broker: func() bool { return true }, jobsProblem: func() string { return "" }})
	return tr
}

// metaStore is a catalog.MetaStore in memory that can fail.
type metaStore struct {
	mu   sync.Mutex
	kv   map[string][]byte
	fail error
}

func (m *metaStore) PutMeta(_ context.Context, k string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.kv[k] = append([]byte(nil), v...)
	return nil
}

func (m *metaStore) ListMeta(_ context.Context, prefix string) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	out := map[string][]byte{}
	for k, v := range m.kv {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out, nil
}

// doFrom is rig.do from a given client address.
func (r *rig) doFrom(t *testing.T, remote, method, path, body string, hdr ...string) answer {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = remote
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, req)
	a := answer{code: rec.Code, hdr: rec.Header(), body: rec.Body.String()}
	_ = json.Unmarshal(rec.Body.Bytes(), &a.m)
	return a
}

const seedShaped = `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["x"]}]}`

func digitsShaped() string {
	return `{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":[` + strings.TrimSuffix(strings.Repeat("0,", 64), ",") + `]}]}`
}

func TestTrafficEndpoint(t *testing.T) {
	r := newTrafficRig(t, AdminOn)
	a := r.do(t, "GET", "/v2/models/canary/traffic", "")
	if a.code != 200 || a.body != `{"model":"canary","configured":false,"split":{"2":1}}`+"\n" {
		t.Fatalf("no settings: %d %s", a.code, a.body)
	}
	a = r.do(t, "PUT", "/v2/models/canary/traffic", `{"weights":{"1":90,"2":10},"sticky_header":"x-user-id","default_version":"1"}`)
	if a.code != 200 || a.body != `{"model":"canary","configured":true,"weights":{"1":90,"2":10},"sticky_header":"X-User-Id","default_version":"1","split":{"1":0.9,"2":0.1}}`+"\n" {
		t.Fatalf("PUT: %d %s", a.code, a.body)
	}
	if string(r.store.kv["traffic/canary"]) != `{"weights":{"1":90,"2":10},"sticky_header":"X-User-Id","default_version":"1"}` {
		t.Fatalf("stored %s", r.store.kv["traffic/canary"])
	}
	if a := r.do(t, "GET", "/v2/models/canary/traffic", ""); a.m["configured"] != true {
		t.Fatalf("GET after PUT: %s", a.body)
	}
	// Version 2 goes down: the split follows, with no restart.
	r.mu.Lock()
	r.live["canary/2"] = 0
	r.mu.Unlock()
	if a := r.do(t, "GET", "/v2/models/canary/traffic", ""); fmt.Sprint(a.m["split"]) != "map[1:1]" {
		t.Fatalf("split with 2 down: %s", a.body)
	}

	for _, tc := range []struct {
		path, body string
		code       int
		reason     string
		want       string
	}{
		{"/v2/models/nope/traffic", `{"default_version":"1"}`, 404, "not_found", `Model not found: \"nope\"`},
		{"/v2/models/canary/traffic", `{"weights":{"1":90,"3":10,"4":1}}`, 400, "invalid", `canary has no version \"3\", \"4\" (known: 1, 2)`},
		{"/v2/models/canary/traffic", `{"default_version":"9"}`, 400, "invalid", `canary has no version \"9\"`},
		{"/v2/models/canary/traffic", `{"weights":{"1":1.5,"2":-1}}`, 400, "invalid", `the weight of version \"1\" must be an integer from 0 to 1000000, not 1.5; the weight of version \"2\" must be an integer from 0 to 1000000, not -1`},
		{"/v2/models/canary/traffic", `{"weights":{"1":"90"}}`, 400, "invalid", `not \"90\"`},
		{"/v2/models/canary/traffic", `{"weights":{"1":1e2}}`, 400, "invalid", `not 1e2`},
		{"/v2/models/canary/traffic", `{"weights":{"1":0,"2":0}}`, 400, "invalid", `the weights sum to 0`},
		{"/v2/models/canary/traffic", `{"weights":{"1":1},"sticky_header":"X User"}`, 400, "invalid", `sticky_header \"X User\" is not a header name`},
		{"/v2/models/canary/traffic", `{"default_version":"1","sticky_header":"X-User"}`, 400, "invalid", `sticky_header needs weights`},
		{"/v2/models/canary/traffic", `{"weight":{"1":1}}`, 400, "invalid", `unknown field \"weight\"`},
		{"/v2/models/canary/traffic", `{}`, 400, "invalid", `set weights or default_version`},
		{"/v2/models/canary/traffic", `[]`, 400, "invalid", `not a traffic object`},
		{"/v2/models/canary/traffic", `{"default_version":"1"} {}`, 400, "invalid", `data after its JSON object`},
	} {
		a := r.do(t, "PUT", tc.path, tc.body)
		if a.code != tc.code || a.m["reason"] != tc.reason || !strings.Contains(a.body, tc.want) {
			t.Errorf("PUT %s %s: %d %s, want %d %s …%s…", tc.path, tc.body, a.code, a.body, tc.code, tc.reason, tc.want)
		}
	}
	if tr, _, _ := r.cat.Traffic("canary"); tr.Weights["1"] != 90 {
		t.Fatalf("a refused PUT changed the settings: %+v", tr)
	}

	// The store refuses the write: 503, and the settings stay as they were.
	r.store.mu.Lock()
	r.store.fail = fmt.Errorf("%w: redis: connection refused", jobs.ErrStoreUnavailable)
	r.store.mu.Unlock()
	if a := r.do(t, "PUT", "/v2/models/canary/traffic", `{"default_version":"2"}`); a.code != 503 || a.m["reason"] != "store_unavailable" || a.hdr.Get("Retry-After") == "" {
		t.Errorf("store down: %d %s", a.code, a.body)
	}
	if a := r.do(t, "DELETE", "/v2/models/canary/traffic", ""); a.code != 503 || a.m["reason"] != "store_unavailable" {
		t.Errorf("store down, DELETE: %d %s", a.code, a.body)
	}
	r.store.mu.Lock()
	r.store.fail = nil
	r.store.mu.Unlock()

	a = r.do(t, "DELETE", "/v2/models/canary/traffic", "")
	if a.code != 200 || a.body != `{"model":"canary","configured":false,"split":{"1":1}}`+"\n" {
		t.Fatalf("DELETE: %d %s", a.code, a.body)
	}
	if a := r.do(t, "DELETE", "/v2/models/canary/traffic", ""); a.code != 200 {
		t.Fatalf("DELETE again: %d %s", a.code, a.body)
	}
	if a := r.do(t, "GET", "/v2/models/nope/traffic", ""); a.code != 404 || a.m["reason"] != "not_found" {
		t.Fatalf("GET unknown model: %d %s", a.code, a.body)
	}
}

// TestTrafficSplitsInference: the weights and the sticky header decide where
// unversioned calls go, through the handlers.
func TestTrafficSplitsInference(t *testing.T) {
	r := newTrafficRig(t, AdminOn)
	// Version 2 of seed: both take the same input here.
	seedMD, _ := json.Marshal(model.SeedMetadata())
	r.cat.Apply(queue.Announcement{Worker: "w", State: queue.StateReady, IntervalMs: 10000,
		Models: []queue.ModelAnnouncement{{Name: "seed", Version: "2", Metadata: seedMD}}})
	r.mu.Lock()
	r.live["seed/1"], r.live["seed/2"] = 1, 1
	r.mu.Unlock()
	if a := r.do(t, "PUT", "/v2/models/seed/traffic", `{"weights":{"1":80,"2":20},"sticky_header":"X-User-Id"}`); a.code != 200 {
		t.Fatalf("PUT: %d %s", a.code, a.body)
	}
	count := map[string]int{}
	for i := 0; i < 1000; i++ {
		a := r.do(t, "POST", "/v2/models/seed/infer", seedShaped)
		if a.code != 200 {
			t.Fatalf("%d %s", a.code, a.body)
		}
		count[a.m["model_version"].(string)]++
	}
	if count["2"] < 130 || count["2"] > 270 {
		t.Errorf("80/20 over 1000 calls: %v", count)
	}
	users := map[string]int{}
	for u := 0; u < 40; u++ {
		first := ""
		for i := 0; i < 5; i++ {
			path := "/v2/models/seed/infer"
			body := seedShaped
			if i%2 == 1 {
				path, body = "/process", `{"data":"x"}`
			}
			a := r.do(t, "POST", path, body, "X-User-Id", fmt.Sprint("user-", u))
			if a.code != 200 {
				t.Fatalf("%d %s", a.code, a.body)
			}
			v := r.calls.last().Route.Version
			if first == "" {
				first = v
			} else if v != first {
				t.Fatalf("user-%d went to %s, then %s", u, first, v)
			}
		}
		users[first]++
	}
	if users["1"] == 0 || users["2"] == 0 {
		t.Errorf("40 sticky users all on one version: %v", users)
	}
}

// TestMetadataIsCheckedPerVersion: versions of one model may take different
// inputs; each request is checked against the metadata of the version it goes to,
// before anything is published.
func TestMetadataIsCheckedPerVersion(t *testing.T) {
	r := newTrafficRig(t, AdminOn)
	if a := r.do(t, "POST", "/v2/models/canary/versions/1/infer", seedShaped); a.code != 200 || a.m["model_version"] != "1" {
		t.Fatalf("v1-shaped to v1: %d %s", a.code, a.body)
	}
	n := len(r.calls.calls)
	for _, tc := range []struct{ path, body, want string }{
		{"/v2/models/canary/versions/2/infer", seedShaped, `input \"data\": the model has no such input`},
		{"/v2/models/canary/versions/1/infer", digitsShaped(), `input \"input\": the model has no such input`},
	} {
		a := r.do(t, "POST", tc.path, tc.body)
		if a.code != 400 || a.m["reason"] != "bad_input" || !strings.Contains(a.body, tc.want) {
			t.Errorf("%s: %d %s, want 400 bad_input …%s…", tc.path, a.code, a.body, tc.want)
		}
	}
	if a := r.do(t, "POST", "/jobs", `{"model":"canary","version":"2",`+seedShaped[1:]); a.code != 400 || a.m["reason"] != "bad_input" {
		t.Errorf("v1-shaped job to v2: %d %s", a.code, a.body)
	}
	if len(r.calls.calls) != n || len(r.jobs.subs) != 0 {
		t.Fatalf("a request that fits another version was published")
	}
	// Without a version, the version picked decides: all of it to 2 here.
	r.calls.answer = func(req queue.Request) ([]byte, error) {
		return oip.EncodeResponse(req.Route.Model, req.Route.Version, "", []model.Tensor{
			{Name: "probabilities", Datatype: model.FP32, Shape: []int64{1, 10}, Data: make([]float32, 10)}})
	}
	if a := r.do(t, "PUT", "/v2/models/canary/traffic", `{"weights":{"2":1}}`); a.code != 200 {
		t.Fatalf("PUT: %d %s", a.code, a.body)
	}
	if a := r.do(t, "POST", "/v2/models/canary/infer", seedShaped); a.code != 400 || a.m["reason"] != "bad_input" {
		t.Errorf("v1-shaped, routed to 2: %d %s", a.code, a.body)
	}
	if a := r.do(t, "POST", "/v2/models/canary/infer", digitsShaped()); a.code != 200 || r.calls.last().Route.Version != "2" {
		t.Errorf("v2-shaped, routed to 2: %d %s", a.code, a.body)
	}
}

func TestAdminAPISwitch(t *testing.T) {
	put := `{"default_version":"1"}`
	for _, tc := range []struct {
		admin, remote string
		hdr           []string
		code          int
		want          string
	}{
		{AdminOn, "192.0.2.1:4000", nil, 200, ""},
		{AdminOff, "127.0.0.1:4000", nil, 403, "ADMIN_API=off"},
		{AdminLoopback, "192.0.2.1:4000", nil, 403, "ADMIN_API=loopback"},
		{AdminLoopback, "127.0.0.1:4000", nil, 200, ""},
		{AdminLoopback, "[::1]:4000", nil, 200, ""},
		{AdminLoopback, "127.0.0.1:4000", []string{"X-Forwarded-For", "203.0.113.9"}, 403, "X-Forwarded-For"},
		{AdminLoopback, "127.0.0.1:4000", []string{"Forwarded", "for=203.0.113.9"}, 403, "Forwarded"},
	} {
		r := newTrafficRig(t, tc.admin)
		for _, m := range []string{"PUT", "DELETE"} {
			a := r.doFrom(t, tc.remote, m, "/v2/models/canary/traffic", put, tc.hdr...)
			if a.code != tc.code || (tc.code == 403 && (a.m["reason"] != "forbidden" || !strings.Contains(a.body, tc.want))) {
				t.Errorf("ADMIN_API=%s from %s %v: %s %d %s", tc.admin, tc.remote, tc.hdr, m, a.code, a.body)
			}
		}
		// Reading the settings is always allowed.
		if a := r.doFrom(t, tc.remote, "GET", "/v2/models/canary/traffic", "", tc.hdr...); a.code != 200 {
			t.Errorf("ADMIN_API=%s from %s: GET %d %s", tc.admin, tc.remote, a.code, a.body)
		}
	}
	cfg := Config{AdminAPI: "maybe", Jobs: JobsConfig{Store: nil}}
	cfg.setDefaults()
	if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), `AdminAPI "maybe"`) {
		t.Errorf("validate: %v", err)
	}
}
