package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-farm/warren/internal/lifecycle"
	"github.com/warren-farm/warren/pkg/apidoc/apidoctest"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/jobs/boltstore"
	"github.com/warren-farm/warren/pkg/metrics"
)

// recordingPublisher is the broker side of a real jobs.Service: it confirms
// every publish (or fails with err) and records them.
type recordingPublisher struct {
	mu  sync.Mutex
	err error
	got []jobs.Message
}

func (p *recordingPublisher) PublishJob(_ context.Context, m jobs.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.got = append(p.got, m)
	return nil
}
func (p *recordingPublisher) PublishCancel(context.Context, string) error { return nil }
func (p *recordingPublisher) Ready() bool                                 { return true }

// deadRig is the handlers on a real jobs.Service over a bbolt store; every
// answer is checked against the OpenAPI document.
type deadRig struct {
	h    http.Handler
	svc  *jobs.Service
	pub  *recordingPublisher
	spec *apidoctest.Validator
}

func newDeadRig(t *testing.T, admin string) *deadRig {
	t.Helper()
	st, err := boltstore.OpenBolt(boltstore.BoltConfig{Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	pub := &recordingPublisher{}
	svc, err := jobs.NewService(jobs.ServiceConfig{Store: st, Publisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := apidoctest.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{DefaultModel: "seed", BodyLimit: 4096, AdminAPI: admin}
	cfg.setDefaults()
	reg := prometheus.NewRegistry()
	h := newRouter(&handlers{cfg: cfg, calls: &fakeCaller{}, catalog: &fakeCatalog{}, jobs: svc, capacity: &fakeCapacity{},
		metrics: metrics.NewAPI(reg, "/", nilSource{}), registry: reg,
		state: func() lifecycle.State { return lifecycle.Ready }, enter: func() bool { return true }, leave: func() {},
		stopping: make(chan struct{}), broker: func() bool { return true }, jobsProblem: func() string { return "" }})
	return &deadRig{h: h, svc: svc, pub: pub, spec: spec}
}

// do calls the handler from remote (127.0.0.1 when "") and validates the
// exchange against the OpenAPI document.
func (r *deadRig) do(t *testing.T, method, path string, remote ...string) answer {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	req.RemoteAddr = "127.0.0.1:5000"
	if len(remote) > 0 {
		req.RemoteAddr = remote[0]
	}
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, req)
	a := answer{code: rec.Code, hdr: rec.Header(), body: rec.Body.String()}
	_ = json.Unmarshal(rec.Body.Bytes(), &a.m)
	if err := r.spec.Validate(httptest.NewRequest(method, path, nil), nil, rec.Result(), rec.Body.Bytes()); err != nil {
		t.Errorf("%s %s → %d does not match the OpenAPI document: %v\n%s", method, path, a.code, err, a.body)
	}
	return a
}

// deadJob submits a job and makes it a dead letter as the farm would.
func (r *deadRig) deadJob(t *testing.T, input string, ev func(id string) jobs.Event) string {
	t.Helper()
	ctx := context.Background()
	j, _, err := r.svc.Submit(ctx, jobs.Submission{Input: []byte(input), Model: "digits", Version: "1", Format: jobs.FormatV2})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.svc.Apply(ctx, jobs.Event{JobID: j.ID, Type: jobs.EventRunning, Attempt: 1, Worker: "w-1"}); err != nil {
		t.Fatal(err)
	}
	if ev == nil {
		err = r.svc.ApplyDead(ctx, jobs.DeadLetter{JobID: j.ID, Reason: "delivery_limit"})
	} else {
		err = r.svc.Apply(ctx, ev(j.ID))
	}
	if err != nil {
		t.Fatal(err)
	}
	return j.ID
}

func TestDeadLetterEndpoints(t *testing.T) {
	r := newDeadRig(t, AdminLoopback)
	a := r.do(t, "GET", "/admin/deadletters")
	if a.code != 200 || a.m["count"] != 0.0 || len(a.m["dead_letters"].([]any)) != 0 {
		t.Fatalf("empty list: %d %s", a.code, a.body)
	}
	poison := r.deadJob(t, `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`, nil)
	exhausted := r.deadJob(t, "not json", func(id string) jobs.Event {
		return jobs.Event{JobID: id, Type: jobs.EventFinal, Status: jobs.Failed, Attempt: 2, Worker: "w-2",
			Error: &jobs.Error{Reason: jobs.ReasonAttemptsExhausted, Message: "delivered 2 times"}}
	})
	fine := r.deadJob(t, "x", func(id string) jobs.Event {
		return jobs.Event{JobID: id, Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1, Result: json.RawMessage(`{}`)}
	})

	// Pages of one, oldest first, with a token; the count is the total.
	a = r.do(t, "GET", "/admin/deadletters?limit=1")
	list := a.m["dead_letters"].([]any)
	if a.code != 200 || a.m["count"] != 2.0 || len(list) != 1 || a.m["next"] == nil {
		t.Fatalf("first page: %d %s", a.code, a.body)
	}
	first := list[0].(map[string]any)
	if first["id"] != poison || first["error"].(map[string]any)["reason"] != "delivery_limit" || first["worker"] != "w-1" ||
		first["input"] != nil || first["input_bytes"] == 0.0 {
		t.Fatalf("first dead letter: %s", a.body)
	}
	a = r.do(t, "GET", "/admin/deadletters?limit=1&after="+a.m["next"].(string))
	if list = a.m["dead_letters"].([]any); a.code != 200 || len(list) != 1 || list[0].(map[string]any)["id"] != exhausted || a.m["next"] != nil {
		t.Fatalf("second page: %d %s", a.code, a.body)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "after=nonsense"} {
		if a = r.do(t, "GET", "/admin/deadletters?"+q); a.code != 422 || !strings.Contains(a.body, strings.Split(q, "=")[0]) {
			t.Errorf("?%s: %d %s", q, a.code, a.body)
		}
	}

	// One dead letter, with its input: JSON as is, anything else as a string.
	if a = r.do(t, "GET", "/admin/deadletters/"+poison); a.code != 200 || a.m["input"].(map[string]any)["inputs"] == nil {
		t.Fatalf("show: %d %s", a.code, a.body)
	}
	if a = r.do(t, "GET", "/admin/deadletters/"+exhausted); a.code != 200 || a.m["input"] != "not json" {
		t.Fatalf("show a non-JSON input: %d %s", a.code, a.body)
	}
	for _, m := range []string{"GET", "DELETE"} {
		if a = r.do(t, m, "/admin/deadletters/"+fine); a.code != 409 || a.m["reason"] != "not_dead_letter" || a.m["status"] != "succeeded" {
			t.Errorf("%s a succeeded job: %d %s", m, a.code, a.body)
		}
		if a = r.do(t, m, "/admin/deadletters/jnope"); a.code != 404 || a.m["reason"] != "not_found" {
			t.Errorf("%s an unknown job: %d %s", m, a.code, a.body)
		}
	}

	// Replay: same id, queued, published once with the input, the run kept.
	a = r.do(t, "POST", "/admin/deadletters/"+poison+"/replay")
	if a.code != 200 || a.m["id"] != poison || a.m["status"] != "queued" || len(a.m["history"].([]any)) != 1 {
		t.Fatalf("replay: %d %s", a.code, a.body)
	}
	if h := a.m["history"].([]any)[0].(map[string]any); h["worker"] != "w-1" || h["error"].(map[string]any)["reason"] != "delivery_limit" {
		t.Fatalf("replay history: %s", a.body)
	}
	r.pub.mu.Lock()
	last := r.pub.got[len(r.pub.got)-1]
	r.pub.mu.Unlock()
	if last.ID != poison || !strings.Contains(string(last.Body), `"inputs"`) || last.Model != "digits" {
		t.Fatalf("replay published %+v", last)
	}
	if a = r.do(t, "GET", "/jobs/"+poison); a.code != 200 || a.m["status"] != "queued" {
		t.Fatalf("the client's view after the replay: %d %s", a.code, a.body)
	}
	if a = r.do(t, "POST", "/admin/deadletters/"+poison+"/replay"); a.code != 409 || a.m["reason"] != "not_dead_letter" {
		t.Fatalf("second replay: %d %s", a.code, a.body)
	}

	// A replay the broker does not confirm: 503, and the job waits for the outbox.
	again := r.deadJob(t, "y", nil)
	r.pub.mu.Lock()
	r.pub.err = errors.New("connection refused")
	r.pub.mu.Unlock()
	if a = r.do(t, "POST", "/admin/deadletters/"+again+"/replay"); a.code != 503 || a.m["reason"] != "broker_unavailable" || a.hdr.Get("Retry-After") == "" {
		t.Fatalf("unconfirmed replay: %d %s", a.code, a.body)
	}
	if a = r.do(t, "GET", "/jobs/"+again); a.m["status"] != "queued" {
		t.Fatalf("after an unconfirmed replay: %s", a.body)
	}

	// Discard: gone for good.
	if a = r.do(t, "DELETE", "/admin/deadletters/"+exhausted); a.code != 200 || a.m["id"] != exhausted {
		t.Fatalf("discard: %d %s", a.code, a.body)
	}
	if a = r.do(t, "GET", "/jobs/"+exhausted); a.code != 404 {
		t.Fatalf("a discarded job: %d %s", a.code, a.body)
	}
	if a = r.do(t, "GET", "/admin/deadletters"); a.m["count"] != 0.0 {
		t.Fatalf("after replay and discard: %s", a.body)
	}
}

// TestDeadLetterEndpointsAreAdminOnly: every dead-letter call obeys ADMIN_API
// exactly like the traffic changes.
func TestDeadLetterEndpointsAreAdminOnly(t *testing.T) {
	for _, tc := range []struct {
		admin, remote string
		code          int
	}{
		{AdminOff, "127.0.0.1:4000", 403},
		{AdminLoopback, "192.0.2.1:4000", 403},
		{AdminLoopback, "127.0.0.1:4000", 200},
		{AdminOn, "192.0.2.1:4000", 200},
	} {
		r := newDeadRig(t, tc.admin)
		id := r.deadJob(t, "z", nil)
		calls := [][2]string{{"GET", "/admin/deadletters"}, {"GET", "/admin/deadletters/" + id}, {"POST", "/admin/deadletters/" + id + "/replay"}}
		if tc.code == 403 {
			calls = append(calls, [2]string{"DELETE", "/admin/deadletters/" + id})
		}
		for _, c := range calls {
			if a := r.do(t, c[0], c[1], tc.remote); a.code != tc.code || (tc.code == 403 && a.m["reason"] != "forbidden") {
				t.Errorf("ADMIN_API=%s from %s: %s %s → %d %s", tc.admin, tc.remote, c[0], c[1], a.code, a.body)
			}
		}
	}
}
