package capacity_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/warren-farm/warren/pkg/capacity"
)

func newEstimator(t testing.TB, cfg capacity.Config) *capacity.Estimator {
	t.Helper()
	e, err := capacity.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// fakeMgmt is a management API answering one queue read from memory: no
// network, so it also works inside a synctest bubble.
type fakeMgmt struct {
	mu     sync.Mutex
	status int
	body   string
	err    error
	reqs   []*http.Request
}

func (f *fakeMgmt) set(status int, body string, err error) {
	f.mu.Lock()
	f.status, f.body, f.err = status, body, err
	f.mu.Unlock()
}

func (f *fakeMgmt) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

func (f *fakeMgmt) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, r)
	if f.err != nil {
		return nil, f.err
	}
	return &http.Response{StatusCode: f.status, Status: http.StatusText(f.status),
		Body: io.NopCloser(strings.NewReader(f.body)), Request: r}, nil
}

var _ http.RoundTripper = (*fakeMgmt)(nil)

func fakeEstimator(t testing.TB, f *fakeMgmt, mutate func(*capacity.Config)) *capacity.Estimator {
	t.Helper()
	cfg := capacity.Config{ManagementURL: "http://guest:secret@rabbit:15672/", Queue: "warren.requests",
		HTTPClient: &http.Client{Transport: f}}
	if mutate != nil {
		mutate(&cfg)
	}
	return newEstimator(t, cfg)
}

func TestConfigValidation(t *testing.T) {
	valid := func() capacity.Config { return capacity.Config{Queue: "warren.requests"} }
	if _, err := capacity.New(valid()); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*capacity.Config)
		want   string
	}{
		{"missing queue", func(c *capacity.Config) { c.Queue = "" }, "Queue is required"},
		{"amqp management URL", func(c *capacity.Config) { c.ManagementURL = "amqp://guest:pw@h:5672" }, "not an http(s) URL"},
		{"management URL without host", func(c *capacity.Config) { c.ManagementURL = "http://" }, "not an http(s) URL"},
		{"negative interval", func(c *capacity.Config) { c.Interval = -time.Second }, "Interval"},
		{"utilisation above 1", func(c *capacity.Config) { c.TargetUtilization = 1.5 }, "TargetUtilization"},
		{"negative utilisation", func(c *capacity.Config) { c.TargetUtilization = -0.1 }, "TargetUtilization"},
		{"negative wait", func(c *capacity.Config) { c.TargetWait = -time.Second }, "TargetWait"},
		{"window too short", func(c *capacity.Config) { c.Window = time.Millisecond }, "Window"},
		{"window too long", func(c *capacity.Config) { c.Window = 2 * time.Hour }, "Window"},
		{"negative default service time", func(c *capacity.Config) { c.DefaultServiceTime = -1 }, "DefaultServiceTime"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			tc.mutate(&cfg)
			_, err := capacity.New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error about %s", err, tc.want)
			}
		})
	}
	t.Run("every bad field reported, password hidden", func(t *testing.T) {
		_, err := capacity.New(capacity.Config{ManagementURL: "ftp://u:hunter2@h", TargetWait: -1})
		if err == nil {
			t.Fatal("New accepted it")
		}
		for _, s := range []string{"Queue", "TargetWait", "ManagementURL"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not name %s", err, s)
			}
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error %q shows the password", err)
		}
	})
}

func TestRefreshRequest(t *testing.T) {
	f := &fakeMgmt{status: 200, body: `{"messages_ready":1}`}
	e := fakeEstimator(t, f, func(c *capacity.Config) { c.Vhost = "/" })
	if err := e.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	r := f.reqs[0]
	if r.Method != http.MethodGet || r.URL.Host != "rabbit:15672" || r.URL.EscapedPath() != "/api/queues/%2F/warren.requests" {
		t.Errorf("request %s %s, want GET http://rabbit:15672/api/queues/%%2F/warren.requests", r.Method, r.URL)
	}
	if r.URL.User != nil {
		t.Errorf("credentials left in the URL: %s", r.URL)
	}
	if u, p, ok := r.BasicAuth(); !ok || u != "guest" || p != "secret" {
		t.Errorf("basic auth %q %q %v, want guest secret", u, p, ok)
	}
	q := r.URL.Query()
	if q.Get("msg_rates_age") != "60" || q.Get("msg_rates_incr") != "5" || !strings.Contains(q.Get("columns"), "publish_details.avg_rate") {
		t.Errorf("query %v: want the publish rate averaged over 60s and a columns filter", q)
	}
}

func TestRefresh(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		wantErr error
		want    capacity.Snapshot // broker fields only
	}{
		{name: "counters and the windowed publish rate", status: 200,
			body: `{"consumers":2,"messages_ready":40,"messages_unacknowledged":8,"message_stats":{"publish_details":{"avg_rate":12.5,"rate":30.0}}}`,
			want: capacity.Snapshot{Ready: 40, Unacked: 8, Consumers: 2, PublishRate: 12.5}},
		{name: "instant rate when no average", status: 200,
			body: `{"consumers":0,"messages_ready":3,"messages_unacknowledged":0,"message_stats":{"publish_details":{"rate":2.0}}}`,
			want: capacity.Snapshot{Ready: 3, PublishRate: 2}},
		{name: "idle queue has no message_stats", status: 200,
			body: `{"consumers":1,"messages_ready":0,"messages_unacknowledged":0}`,
			want: capacity.Snapshot{Consumers: 1}},
		{name: "statistics not collected yet (filtered)", status: 200, body: `[]`,
			wantErr: capacity.ErrNoStatistics, want: capacity.Snapshot{Stale: true}},
		{name: "statistics not collected yet", status: 200, body: `{"name":"warren.requests","durable":true}`,
			wantErr: capacity.ErrNoStatistics, want: capacity.Snapshot{Stale: true}},
		{name: "queue not declared", status: 404, body: `{"error":"Object Not Found","reason":"Not Found"}`,
			wantErr: capacity.ErrQueueNotFound, want: capacity.Snapshot{Stale: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := fakeEstimator(t, &fakeMgmt{status: tc.status, body: tc.body}, nil)
			err := e.Refresh(t.Context())
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Refresh: %v, want %v", err, tc.wantErr)
			}
			s := e.Snapshot()
			checkBroker(t, s, tc.want)
			if tc.wantErr == nil && (s.Error != "" || s.UpdatedAt.IsZero()) {
				t.Errorf("good read: error %q, updated %v", s.Error, s.UpdatedAt)
			}
			if tc.wantErr != nil && s.Error == "" {
				t.Error("stale snapshot without an error")
			}
		})
	}
}

// TestRefreshKeepsLastGoodValues: failures keep the last values and mark them
// stale; a 404 zeroes them; a good read clears the flag.
func TestRefreshKeepsLastGoodValues(t *testing.T) {
	f := &fakeMgmt{status: 200, body: `{"consumers":1,"messages_ready":25,"messages_unacknowledged":4,"message_stats":{"publish_details":{"avg_rate":3}}}`}
	e := fakeEstimator(t, f, nil)
	ctx := t.Context()
	good := capacity.Snapshot{Ready: 25, Unacked: 4, Consumers: 1, PublishRate: 3}
	if err := e.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	checkBroker(t, e.Snapshot(), good)
	updated := e.Snapshot().UpdatedAt

	for _, fail := range []struct {
		name   string
		status int
		body   string
		err    error
	}{
		{"server error", 500, `{"error":"internal"}`, nil},
		{"unauthorised", 401, `{"error":"not_authorised"}`, nil},
		{"garbage", 200, `<html>`, nil},
		{"connection refused", 0, "", errors.New("dial tcp: connection refused")},
		{"no statistics", 200, `[]`, nil},
	} {
		f.set(fail.status, fail.body, fail.err)
		if err := e.Refresh(ctx); err == nil {
			t.Fatalf("%s: Refresh succeeded", fail.name)
		}
		s := e.Snapshot()
		stale := good
		stale.Stale = true
		checkBroker(t, s, stale)
		if s.Error == "" || !s.UpdatedAt.Equal(updated) {
			t.Errorf("%s: error %q, updated %v; want a reason and the last good time %v", fail.name, s.Error, s.UpdatedAt, updated)
		}
	}

	f.set(404, `{"error":"Object Not Found"}`, nil)
	if err := e.Refresh(ctx); !errors.Is(err, capacity.ErrQueueNotFound) {
		t.Fatalf("Refresh: %v, want ErrQueueNotFound", err)
	}
	checkBroker(t, e.Snapshot(), capacity.Snapshot{Stale: true})

	f.set(200, `{"consumers":0,"messages_ready":7,"messages_unacknowledged":0}`, nil)
	if err := e.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	checkBroker(t, e.Snapshot(), capacity.Snapshot{Ready: 7})
}

// TestRefreshLogsOnce: a failure is logged at Warn when it starts, not at every
// read; missing statistics (normal after a declare) never warn.
func TestRefreshLogsOnce(t *testing.T) {
	var buf bytes.Buffer
	f := &fakeMgmt{status: 200, body: `[]`}
	e := fakeEstimator(t, f, func(c *capacity.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	steps := []struct {
		status int
		body   string
		want   string // the line logged, "" for none
	}{
		{200, `[]`, ""},
		{200, `[]`, ""},
		{200, `{"messages_ready":1}`, ""},
		{500, `oops`, "level=WARN msg=\"management API unreadable"},
		{500, `oops`, ""},
		{502, `oops`, ""},
		{404, `{}`, "level=WARN msg=\"request queue not found"},
		{404, `{}`, ""},
		{200, `{"messages_ready":1}`, "level=INFO msg=\"management API gives queue statistics again\""},
	}
	for i, st := range steps {
		buf.Reset()
		f.set(st.status, st.body, nil)
		_ = e.Refresh(t.Context())
		got := strings.TrimSpace(buf.String())
		if (st.want == "") != (got == "") || !strings.Contains(got, st.want) || strings.Count(got, "\n") > 0 {
			t.Errorf("step %d (%d %s): logged %q, want %q", i, st.status, st.body, got, st.want)
		}
		if got != "" && !strings.Contains(got, "queue=warren.requests") {
			t.Errorf("step %d: %q does not name the queue", i, got)
		}
	}
}

// TestRefreshCancelled: a read cut short by its context changes nothing.
func TestRefreshCancelled(t *testing.T) {
	f := &fakeMgmt{status: 200, body: `{"messages_ready":5}`}
	e := fakeEstimator(t, f, nil)
	if err := e.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	f.set(0, "", context.Canceled)
	if err := e.Refresh(ctx); err == nil {
		t.Fatal("Refresh succeeded with a cancelled context")
	}
	checkBroker(t, e.Snapshot(), capacity.Snapshot{Ready: 5})
}

func TestNoManagementURL(t *testing.T) {
	e := newEstimator(t, capacity.Config{Queue: "q"})
	if err := e.Refresh(t.Context()); err == nil {
		t.Error("Refresh without a management URL succeeded")
	}
	s := e.Snapshot()
	if !s.Stale || s.Error == "" || s.WorkersNeeded != 0 {
		t.Errorf("snapshot %+v, want stale with a reason and 0 needed", s)
	}
	e.ObserveTurnedAway()
	if n := e.Snapshot().WorkersNeeded; n != 1 {
		t.Errorf("turned away without a management API: needed %d, want 1", n)
	}
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { e.Run(ctx); close(done) }()
		synctest.Wait()
		cancel()
		<-done
	})
}

// TestRun: Run reads at once and every Interval, and returns when its context
// ends (synctest fails the test if any goroutine is left behind).
func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeMgmt{status: 200, body: `{"consumers":0,"messages_ready":25,"messages_unacknowledged":0}`}
		e := fakeEstimator(t, f, func(c *capacity.Config) { c.Interval = 2 * time.Second })
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { e.Run(ctx); close(done) }()

		synctest.Wait()
		if n := f.calls(); n != 1 {
			t.Fatalf("%d reads at start, want 1", n)
		}
		if s := e.Snapshot(); s.Ready != 25 || s.Stale || s.WorkersNeeded != 3 {
			t.Fatalf("after the first read: %+v, want 25 ready, fresh, 3 needed", s)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if n := f.calls(); n != 3 {
			t.Fatalf("%d reads after 5s at a 2s interval, want 3", n)
		}
		cancel()
		select {
		case <-done:
		case <-time.After(time.Second):
			t.Fatal("Run did not return after cancel")
		}
		if n := f.calls(); n != 3 {
			t.Errorf("%d reads, want no more after cancel", n)
		}
	})
}

func TestHandler(t *testing.T) {
	f := &fakeMgmt{status: 200, body: `{"consumers":2,"messages_ready":10,"messages_unacknowledged":3,"message_stats":{"publish_details":{"avg_rate":20}}}`}
	e := fakeEstimator(t, f, nil)
	if err := e.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.ObserveService(200*time.Millisecond, 4)
	e.ObserveTurnedAway()

	rec := httptest.NewRecorder()
	e.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/capacity", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	keys := make([]string, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	wantKeys := []string{"answered", "arrivalRate", "consumers", "publishRate", "ready", "serviceTime",
		"serviceTimeSource", "slotsPerWorker", "stale", "targetUtilization", "targetWait", "turnedAway",
		"turnedAwayRate", "unacked", "updatedAt", "window", "workersNeeded"}
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("keys %v\nwant %v", keys, wantKeys)
	}
	// λ = 20 + 1/60; S = 0.2; C = 4: (20.0167×0.2/0.7 + 10×0.2/1)/4 = 1.93 → 2.
	for k, want := range map[string]any{"workersNeeded": 2.0, "consumers": 2.0, "ready": 10.0, "unacked": 3.0,
		"publishRate": 20.0, "serviceTime": 0.2, "serviceTimeSource": "window", "slotsPerWorker": 4.0,
		"stale": false, "targetUtilization": 0.7, "targetWait": 1.0, "window": 60.0, "turnedAway": 1.0, "answered": 1.0} {
		if got[k] != want {
			t.Errorf("%s = %v (%T), want %v", k, got[k], got[k], want)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, got["updatedAt"].(string)); err != nil {
		t.Errorf("updatedAt: %v", err)
	}

	// Stale: the reason is given, the answer is still 200 with a number.
	f.set(503, "down", nil)
	_ = e.Refresh(t.Context())
	rec = httptest.NewRecorder()
	e.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/capacity", nil))
	var stale capacity.Snapshot
	if err := json.Unmarshal(rec.Body.Bytes(), &stale); err != nil || rec.Code != 200 || !stale.Stale || stale.Error == "" || stale.WorkersNeeded != 2 {
		t.Errorf("stale: %d %s (%v)", rec.Code, rec.Body, err)
	}

	// Never read: updatedAt is omitted.
	rec = httptest.NewRecorder()
	newEstimator(t, capacity.Config{Queue: "q"}).Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if strings.Contains(rec.Body.String(), "updatedAt") || !strings.Contains(rec.Body.String(), `"workersNeeded":0`) {
		t.Errorf("never read: %s", rec.Body)
	}

	rec = httptest.NewRecorder()
	e.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/capacity", nil))
	if rec.Code != 200 || rec.Body.Len() != 0 {
		t.Errorf("HEAD: %d with %d bytes", rec.Code, rec.Body.Len())
	}
	rec = httptest.NewRecorder()
	e.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/capacity", nil))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

// TestObserveNoAlloc: the reply path's calls do not allocate.
func TestObserveNoAlloc(t *testing.T) {
	e := newEstimator(t, capacity.Config{Queue: "q"})
	if n := testing.AllocsPerRun(1000, func() {
		e.ObserveService(3*time.Millisecond, 4)
		e.ObserveTurnedAway()
	}); n != 0 {
		t.Errorf("%v allocations per observation, want 0", n)
	}
}

// TestConcurrent exercises observations, refreshes and reads together (for -race).
func TestConcurrent(t *testing.T) {
	f := &fakeMgmt{status: 200, body: `{"consumers":1,"messages_ready":2,"messages_unacknowledged":1}`}
	e := fakeEstimator(t, f, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 500 {
				switch (i + j) % 5 {
				case 0:
					e.ObserveTurnedAway()
				case 1:
					_ = e.Refresh(t.Context())
				case 2:
					e.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
				default:
					e.ObserveService(time.Duration(j)*time.Microsecond, 1+i%4)
				}
			}
		})
	}
	wg.Wait()
	s := e.Snapshot()
	if s.Answered == 0 || s.TurnedAway == 0 || s.Ready != 2 || s.WorkersNeeded < 1 {
		t.Errorf("after concurrent use: %+v", s)
	}
}

func BenchmarkObserveService(b *testing.B) {
	e := newEstimator(b, capacity.Config{Queue: "q"})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e.ObserveService(time.Millisecond, 4)
		}
	})
}

// checkBroker compares the fields that come from the management API.
func checkBroker(t *testing.T, got, want capacity.Snapshot) {
	t.Helper()
	type broker struct {
		Ready, Unacked, Consumers int
		PublishRate               float64
		Stale                     bool
	}
	g := broker{got.Ready, got.Unacked, got.Consumers, got.PublishRate, got.Stale}
	w := broker{want.Ready, want.Unacked, want.Consumers, want.PublishRate, want.Stale}
	if g != w {
		t.Errorf("broker inputs %+v, want %+v", g, w)
	}
}

// TestInFlightKeepsOneWorker: with requests still being computed but no new
// arrivals or backlog, the farm must not be scaled to zero under them.
func TestInFlightKeepsOneWorker(t *testing.T) {
	f := &fakeMgmt{status: 200, body: `{"consumers":1,"messages_ready":0,"messages_unacknowledged":2}`}
	e := fakeEstimator(t, f, nil)
	if err := e.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s := e.Snapshot(); s.WorkersNeeded != 1 || s.ArrivalRate != 0 || s.Unacked != 2 {
		t.Errorf("snapshot %+v, want 1 worker for 2 in-flight requests", s)
	}
	f.set(200, `{"consumers":1,"messages_ready":0,"messages_unacknowledged":0}`, nil)
	if err := e.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := e.Snapshot().WorkersNeeded; n != 0 {
		t.Errorf("idle: %d needed, want 0", n)
	}
}
