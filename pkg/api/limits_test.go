package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-farm/warren/pkg/apidoc/apidoctest"
	"github.com/warren-farm/warren/pkg/auth"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/metrics"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/ratelimit"
	"github.com/warren-farm/warren/pkg/ratelimit/redislimit"
)

// limitedRig is a rig whose limited routes apply l to every caller (by
// address), counted by lim (nil: an in-memory limiter).
type limitedRig struct {
	*rig
	lim     ratelimit.Limiter
	limiter *limiter
	reg     *prometheus.Registry
	val     *apidoctest.Validator
}

func newLimitedRig(t *testing.T, l ratelimit.Limits, lim ratelimit.Limiter) *limitedRig {
	t.Helper()
	if lim == nil {
		lim = ratelimit.NewLocal(ratelimit.LocalConfig{})
	}
	v, err := apidoctest.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	lr := &limitedRig{lim: lim, reg: prometheus.NewRegistry(), val: v}
	lr.limiter = &limiter{lim: lim, identify: ByAddress(l), leaseTTL: time.Hour, metrics: metrics.NewLimits(lr.reg),
		log: slog.New(slog.DiscardHandler), now: time.Now}
	lr.rig = newRigWith(t, func(h *handlers) { h.limits = lr.limiter })
	lr.jobs.useIDs = true
	return lr
}

// from sends a request from the client address addr and checks the answer
// against the OpenAPI document.
func (lr *limitedRig) from(t *testing.T, addr, method, path, body string, hdr ...string) answer {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = addr
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	lr.h.ServeHTTP(rec, req)
	a := answer{code: rec.Code, hdr: rec.Header(), body: rec.Body.String()}
	_ = json.Unmarshal(rec.Body.Bytes(), &a.m)
	resp := rec.Result()
	if err := lr.val.Validate(req, []byte(body), resp, rec.Body.Bytes()); err != nil {
		t.Errorf("%s %s → %d does not conform to the OpenAPI document: %v", method, path, rec.Code, err)
	}
	return a
}

func (lr *limitedRig) limited(reason, caller string) float64 {
	return counter(lr.reg, "warren_rate_limited_total", "reason", reason, "caller", caller)
}

func (lr *limitedRig) unavailable() float64 {
	return counter(lr.reg, "warren_rate_limiter_unavailable_total")
}

// counter reads a counter of reg with these label pairs (0 if absent).
func counter(reg *prometheus.Registry, name string, labels ...string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

const (
	alice = "192.0.2.10:40000"
	bob   = "192.0.2.20:40000"
)

var inferBody = `{"inputs":[{"name":"data","datatype":"BYTES","shape":[1],"data":["x"]}]}`

func TestRateLimitOnTheCallingRoutes(t *testing.T) {
	lr := newLimitedRig(t, ratelimit.Limits{Rate: 1, Burst: 2}, nil)
	for i := range 2 {
		a := lr.from(t, alice, "POST", "/process", `{"data":"x"}`)
		if a.code != 200 {
			t.Fatalf("request %d within the burst: %d %s", i+1, a.code, a.body)
		}
		if got, want := a.hdr.Get("RateLimit-Policy"), `"rate";q=2;w=2`; got != want {
			t.Fatalf("RateLimit-Policy %q, want %q", got, want)
		}
		if got, want := a.hdr.Get("RateLimit"), fmt.Sprintf(`"rate";r=%d;t=%d`, 1-i, i+1); got != want {
			t.Fatalf("request %d: RateLimit %q, want %q", i+1, got, want)
		}
	}
	a := lr.from(t, alice, "POST", "/process", `{"data":"x"}`)
	if a.code != 429 || a.m["reason"] != "rate_limited" || a.hdr.Get("Retry-After") != "1" ||
		a.hdr.Get("RateLimit") != `"rate";r=0;t=1` || a.hdr.Get("RateLimit-Policy") == "" {
		t.Fatalf("over the burst: %d %v %s", a.code, a.hdr, a.body)
	}
	calls := len(lr.calls.calls)
	// The limit is the caller's across routes; under /v2 the body is the protocol's.
	if a := lr.from(t, alice, "POST", "/v2/models/seed/infer", inferBody); a.code != 429 || a.m["reason"] != "rate_limited" || a.m["error"] == nil {
		t.Fatalf("v2 infer over the limit: %d %s", a.code, a.body)
	}
	if a := lr.from(t, alice, "POST", "/v2/models/seed/versions/1/infer", inferBody); a.code != 429 {
		t.Fatalf("versioned v2 infer over the limit: %d %s", a.code, a.body)
	}
	if a := lr.from(t, alice, "POST", "/jobs", `{"data":"x"}`); a.code != 429 || a.m["detail"] == nil {
		t.Fatalf("POST /jobs over the limit: %d %s", a.code, a.body)
	}
	if n := len(lr.calls.calls); n != calls || len(lr.jobs.subs) != 0 {
		t.Fatalf("a limited request reached the farm: %d calls (was %d), %d jobs", n, calls, len(lr.jobs.subs))
	}
	// Another caller has its own budget.
	if a := lr.from(t, bob, "POST", "/v2/models/seed/infer", inferBody); a.code != 200 || a.hdr.Get("RateLimit") != `"rate";r=1;t=1` {
		t.Fatalf("another caller: %d %v %s", a.code, a.hdr, a.body)
	}
	// Probes, reads and docs are never limited and carry no limit headers.
	for range 5 {
		for _, p := range []string{"/ready", "/health", "/v2/health/live", "/v2/health/ready", "/v2/models/seed", "/metrics"} {
			a := lr.from(t, alice, "GET", p, "")
			if a.code == 429 || a.hdr.Get("RateLimit-Policy") != "" || a.hdr.Get("RateLimit") != "" {
				t.Fatalf("GET %s: %d with limit headers %v", p, a.code, a.hdr)
			}
		}
	}
	if got := lr.limited("rate_limited", "addr:192.0.2.10"); got != 4 {
		t.Fatalf("warren_rate_limited_total{rate_limited, alice} = %v, want 4", got)
	}
	// The budget comes back at the rate.
	time.Sleep(1100 * time.Millisecond)
	if a := lr.from(t, alice, "POST", "/process", `{"data":"x"}`); a.code != 200 {
		t.Fatalf("a second later: %d %s", a.code, a.body)
	}
}

// blockingCaller holds every call until release is closed (at most 5s).
func blockingCaller(r *rig) (started chan struct{}, release chan struct{}) {
	started, release = make(chan struct{}, 100), make(chan struct{})
	seed := &fakeCaller{}
	r.calls.answer = func(req queue.Request) ([]byte, error) {
		started <- struct{}{}
		select { // a test that fails must not hang
		case <-release:
		case <-time.After(5 * time.Second):
		}
		rep, err := seed.Call(context.Background(), req)
		if err != nil {
			return nil, err
		}
		return rep.Body, nil
	}
	return started, release
}

func TestQuotaOfSyncCalls(t *testing.T) {
	lr := newLimitedRig(t, ratelimit.Limits{Concurrency: 2}, nil)
	started, release := blockingCaller(lr.rig)
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	for range 2 {
		wg.Go(func() { codes <- lr.from(t, alice, "POST", "/process", `{"data":"x"}`).code })
	}
	<-started
	<-started
	a := lr.from(t, alice, "POST", "/v2/models/seed/infer", inferBody)
	if a.code != 429 || a.m["reason"] != "quota_exceeded" || a.hdr.Get("Retry-After") != "1" ||
		a.hdr.Get("RateLimit") != `"concurrency";r=0` || a.hdr.Get("RateLimit-Policy") != `"concurrency";q=2;qu="concurrent-requests"` {
		t.Fatalf("a third call in flight: %d %v %s", a.code, a.hdr, a.body)
	}
	// Jobs count against the same quota.
	if a := lr.from(t, alice, "POST", "/jobs", `{"data":"x"}`); a.code != 429 || a.m["reason"] != "quota_exceeded" {
		t.Fatalf("a job with two calls in flight: %d %s", a.code, a.body)
	}
	// Another caller is not affected.
	go func() { <-started }()
	close(release)
	if a := lr.from(t, bob, "POST", "/process", `{"data":"x"}`); a.code != 200 {
		t.Fatalf("another caller: %d %s", a.code, a.body)
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Fatalf("a call within the quota: %d", c)
		}
	}
	// Both calls ended: their slots are free again.
	for range 3 {
		if a := lr.from(t, alice, "POST", "/process", `{"data":"x"}`); a.code != 200 || a.hdr.Get("RateLimit") != `"concurrency";r=1` {
			t.Fatalf("after the calls ended: %d %v %s", a.code, a.hdr, a.body)
		}
	}
	if got := lr.limited("quota_exceeded", "addr:192.0.2.10"); got != 2 {
		t.Fatalf("warren_rate_limited_total{quota_exceeded, alice} = %v, want 2", got)
	}
}

func TestQuotaOfJobs(t *testing.T) {
	lr := newLimitedRig(t, ratelimit.Limits{Concurrency: 1}, nil)
	a := lr.from(t, alice, "POST", "/jobs", `{"data":"x"}`)
	if a.code != 202 {
		t.Fatalf("first job: %d %s", a.code, a.body)
	}
	id, _ := a.m["id"].(string)
	// The queued job holds the slot: no second job, no sync call, async hand-off either.
	if a := lr.from(t, alice, "POST", "/jobs", `{"data":"y"}`); a.code != 429 || a.m["reason"] != "quota_exceeded" {
		t.Fatalf("second job while the first is queued: %d %s", a.code, a.body)
	}
	if a := lr.from(t, alice, "POST", "/process", `{"data":"x"}`); a.code != 429 {
		t.Fatalf("a call while a job is queued: %d %s", a.code, a.body)
	}
	if a := lr.from(t, alice, "POST", "/v2/models/seed/infer", inferBody, "Prefer", "respond-async"); a.code != 429 {
		t.Fatalf("a hand-off while a job is queued: %d %s", a.code, a.body)
	}
	// Reading and cancelling are not limited.
	if a := lr.from(t, alice, "GET", "/jobs/"+id, ""); a.code != 200 {
		t.Fatalf("GET the job: %d %s", a.code, a.body)
	}
	// The job's final state (the job service's OnFinal) frees the slot.
	lr.limiter.release(id)
	a = lr.from(t, alice, "POST", "/v2/models/seed/infer", inferBody, "Prefer", "respond-async")
	if a.code != 202 {
		t.Fatalf("a hand-off after the job finished: %d %s", a.code, a.body)
	}
	lr.limiter.release(a.m["id"].(string))

	// A submission that fails gives its slot back at once…
	lr.jobs.err = queue.ErrNoWorkers
	if a := lr.from(t, alice, "POST", "/jobs", `{"data":"x"}`); a.code != 503 {
		t.Fatalf("a failed submission: %d %s", a.code, a.body)
	}
	lr.jobs.err = nil
	a = lr.from(t, alice, "POST", "/jobs", `{"data":"x"}`)
	if a.code != 202 {
		t.Fatalf("after a failed submission: %d %s (its slot was kept)", a.code, a.body)
	}
	lr.limiter.release(a.m["id"].(string))
	// …but one kept for the outbox (the broker did not confirm) will run: it keeps it.
	lr.jobs.err = fmt.Errorf("jobs: job kept for the outbox: %w", jobs.ErrUnconfirmed)
	if a := lr.from(t, alice, "POST", "/jobs", `{"data":"x"}`); a.code != 503 {
		t.Fatalf("an unconfirmed submission: %d %s", a.code, a.body)
	}
	lr.jobs.err = nil
	if a := lr.from(t, alice, "POST", "/jobs", `{"data":"x"}`); a.code != 429 {
		t.Fatalf("after an unconfirmed submission: %d %s, want its slot still held", a.code, a.body)
	}
}

// A replayed Idempotency-Key answers with the earlier job: the slot the replay
// took in a new id's name is given back.
func TestQuotaReplayReleases(t *testing.T) {
	lr := newLimitedRig(t, ratelimit.Limits{Concurrency: 1}, nil)
	lr.jobs.useIDs = false // the fake answers "j1": another id than the submission's, as a replay
	if a := lr.from(t, alice, "POST", "/jobs", `{"data":"x"}`); a.code != 202 {
		t.Fatalf("%d %s", a.code, a.body)
	}
	if a := lr.from(t, alice, "POST", "/jobs", `{"data":"x"}`); a.code != 202 {
		t.Fatalf("the first submission's slot was not given back: %d %s", a.code, a.body)
	}
}

// deadRedis is a Redis limiter on a port nobody listens on.
func deadRedis(t *testing.T) ratelimit.Limiter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r, err := redislimit.New(redislimit.Config{URL: "redis://" + addr + "/0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// When the limiter cannot decide (Redis down), requests go through unlimited,
// and the limiter is not asked again for a second.
func TestLimiterUnavailableFailsOpen(t *testing.T) {
	var logs bytes.Buffer
	lr := newLimitedRig(t, ratelimit.Limits{Rate: 1, Burst: 1, Concurrency: 1}, deadRedis(t))
	lr.limiter.log = slog.New(slog.NewTextHandler(&logs, nil))
	start := time.Now()
	for i := range 20 {
		path := "/process"
		if i%2 == 1 {
			path = "/jobs"
		}
		if a := lr.from(t, alice, "POST", path, `{"data":"x"}`); a.code != 200 && a.code != 202 {
			t.Fatalf("request %d with Redis down: %d %s", i+1, a.code, a.body)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("20 requests with Redis down took %v", d)
	}
	if n := lr.unavailable(); n != 1 {
		t.Fatalf("warren_rate_limiter_unavailable_total = %v, want 1 (the limiter is skipped for a second after a failure)", n)
	}
	if c := strings.Count(logs.String(), "the rate limiter cannot decide"); c != 1 {
		t.Fatalf("%d warnings logged, want 1:\n%s", c, logs.String())
	}
	// A second later it is asked again.
	lr.limiter.downUntil.Store(time.Now().UnixNano())
	lr.from(t, alice, "POST", "/process", `{"data":"x"}`)
	if n := lr.unavailable(); n != 2 {
		t.Fatalf("after the pause: unavailable = %v, want 2", n)
	}
}

// Without limits nothing is asked of the limiter and no header is added.
func TestNoLimitsNoHeaders(t *testing.T) {
	lr := newLimitedRig(t, ratelimit.Limits{}, deadRedis(t))
	for range 5 {
		a := lr.from(t, alice, "POST", "/process", `{"data":"x"}`)
		if a.code != 200 || a.hdr.Get("RateLimit-Policy") != "" || a.hdr.Get("RateLimit") != "" {
			t.Fatalf("no limits: %d %v", a.code, a.hdr)
		}
	}
	if n := lr.unavailable(); n != 0 {
		t.Fatalf("the limiter was asked without limits: %v failures", n)
	}
}

func TestByAddress(t *testing.T) {
	id := ByAddress(ratelimit.Limits{Rate: 3})
	for addr, want := range map[string]string{
		"192.0.2.1:5000": "addr:192.0.2.1", "192.0.2.1:6000": "addr:192.0.2.1", "[2001:db8::1]:443": "addr:2001:db8::1", "odd": "addr:odd",
	} {
		req := httptest.NewRequest("POST", "/process", nil)
		req.RemoteAddr = addr
		req.Header.Set("X-Forwarded-For", "203.0.113.9") // forgeable: ignored
		if got := id(req); got.Name != want || got.Limits.Rate != 3 {
			t.Errorf("ByAddress(%s) = %+v, want %s", addr, got, want)
		}
	}
}

func TestConfigRefusesNegativeLimits(t *testing.T) {
	for _, l := range []ratelimit.Limits{{Rate: -1}, {Burst: -1}, {Concurrency: -2}} {
		cfg := Config{CallerLimits: l, Jobs: JobsConfig{Store: nopStore{}}}
		cfg.setDefaults()
		if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), "CallerLimits") {
			t.Errorf("limits %+v: %v", l, err)
		}
	}
}

type nopStore struct{ jobs.Store }

// TestByPrincipal: with authentication on, a caller is its principal (named as a
// job's owner), with its key's limits field by field over the defaults; a request
// without a principal falls back to its address.
func TestByPrincipal(t *testing.T) {
	defaults := ratelimit.Limits{Rate: 10, Burst: 5, Concurrency: 2}
	id := ByPrincipal(defaults)
	req := func(p *auth.Principal) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/process", nil)
		r.RemoteAddr = "127.0.0.9:4000"
		if p != nil {
			r = r.WithContext(auth.NewContext(r.Context(), p))
		}
		return r
	}
	cases := []struct {
		name string
		p    *auth.Principal
		want Requester
	}{
		{"key without limits", &auth.Principal{Name: "ci", Via: auth.ViaKey},
			Requester{Name: "key:ci", Limits: defaults}},
		{"key with a rate", &auth.Principal{Name: "ci", Via: auth.ViaKey, Limits: auth.Limits{Rate: 50}},
			Requester{Name: "key:ci", Limits: ratelimit.Limits{Rate: 50, Burst: 5, Concurrency: 2}}},
		{"token with every limit", &auth.Principal{Name: "alice", Via: auth.ViaJWT, Limits: auth.Limits{Rate: 1, Burst: 1, Concurrency: 9}},
			Requester{Name: "jwt:alice", Limits: ratelimit.Limits{Rate: 1, Burst: 1, Concurrency: 9}}},
		{"auth off", &auth.Principal{Name: auth.Anonymous, Via: auth.ViaNone},
			Requester{Name: "addr:127.0.0.9", Limits: defaults}},
		{"no principal", nil, Requester{Name: "addr:127.0.0.9", Limits: defaults}},
	}
	for _, tc := range cases {
		if got := id(req(tc.p)); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
