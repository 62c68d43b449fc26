package capacity_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/capacity"
	"github.com/warren-farm/warren/pkg/queue"
)

func TestConfigValidation(t *testing.T) {
	if _, err := capacity.New(capacity.Config{}); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*capacity.Config)
		want   string
	}{
		{"amqp management URL", func(c *capacity.Config) { c.ManagementURL = "amqp://guest:pw@h:5672" }, "not an http(s) URL"},
		{"management URL without host", func(c *capacity.Config) { c.ManagementURL = "http://" }, "not an http(s) URL"},
		{"negative interval", func(c *capacity.Config) { c.Interval = -time.Second }, "Interval"},
		{"utilisation above 1", func(c *capacity.Config) { c.TargetUtilization = 1.5 }, "TargetUtilization"},
		{"negative utilisation", func(c *capacity.Config) { c.TargetUtilization = -0.1 }, "TargetUtilization"},
		{"negative wait", func(c *capacity.Config) { c.TargetWait = -time.Second }, "TargetWait"},
		{"window too short", func(c *capacity.Config) { c.Window = time.Millisecond }, "Window"},
		{"window too long", func(c *capacity.Config) { c.Window = 2 * time.Hour }, "Window"},
		{"negative default service time", func(c *capacity.Config) { c.DefaultServiceTime = -1 }, "DefaultServiceTime"},
		{"negative max routes", func(c *capacity.Config) { c.MaxRoutes = -1 }, "MaxRoutes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cfg capacity.Config
			tc.mutate(&cfg)
			_, err := capacity.New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error about %s", err, tc.want)
			}
		})
	}
	t.Run("every bad field reported, password hidden", func(t *testing.T) {
		_, err := capacity.New(capacity.Config{ManagementURL: "ftp://u:hunter2@h", TargetWait: -1, MaxRoutes: -5})
		if err == nil {
			t.Fatal("New accepted it")
		}
		for _, s := range []string{"MaxRoutes", "TargetWait", "ManagementURL"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not name %s", err, s)
			}
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error %q shows the password", err)
		}
	})
}

// TestRefreshRequest: one GET of the vhost's queue list, with credentials as
// basic auth, the columns the formula needs and the publish rate averaged over
// the window, however many routes are tracked.
func TestRefreshRequest(t *testing.T) {
	fm := &fakeMgmt{status: 200, body: `[]`}
	f := fakeFarm(t, fm, func(c *capacity.Config) { c.Vhost = "/" })
	track(t, f, digits1, digits2, resnet7)
	if err := f.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := fm.calls(); n != 1 {
		t.Fatalf("%d requests for 3 routes, want 1", n)
	}
	r := fm.reqs[0]
	if r.Method != http.MethodGet || r.URL.Host != "rabbit:15672" || r.URL.EscapedPath() != "/api/queues/%2F" {
		t.Errorf("request %s %s, want GET http://rabbit:15672/api/queues/%%2F", r.Method, r.URL)
	}
	if r.URL.User != nil {
		t.Errorf("credentials left in the URL: %s", r.URL)
	}
	if u, p, ok := r.BasicAuth(); !ok || u != "guest" || p != "secret" {
		t.Errorf("basic auth %q %q %v, want guest secret", u, p, ok)
	}
	q := r.URL.Query()
	cols := strings.Split(q.Get("columns"), ",")
	for _, want := range []string{"name", "messages_ready", "messages_unacknowledged", "consumers",
		"message_stats.publish_details.avg_rate"} {
		if !strings.Contains(","+q.Get("columns")+",", ","+want+",") {
			t.Errorf("columns %v lack %s", cols, want)
		}
	}
	if q.Get("msg_rates_age") != "60" || q.Get("msg_rates_incr") != "5" {
		t.Errorf("query %v: want the publish rate averaged over 60s", q)
	}
}

// TestRefresh: each route takes its own queue's entry from the one list.
func TestRefresh(t *testing.T) {
	for _, tc := range []struct {
		name  string
		entry string // digits/1's entry, "" for none
		want  capacity.Snapshot
		err   error // digits/1's Error, nil for none
	}{
		{name: "counters and the windowed publish rate",
			entry: `{"name":"warren.req.digits.v1","consumers":2,"messages_ready":40,"messages_unacknowledged":8,"message_stats":{"publish_details":{"avg_rate":12.5,"rate":30.0}}}`,
			want:  capacity.Snapshot{Ready: 40, Unacked: 8, Consumers: 2, PublishRate: 12.5}},
		{name: "instant rate when no average",
			entry: `{"name":"warren.req.digits.v1","consumers":0,"messages_ready":3,"messages_unacknowledged":0,"message_stats":{"publish_details":{"rate":2.0}}}`,
			want:  capacity.Snapshot{Ready: 3, PublishRate: 2}},
		{name: "idle queue has no message_stats",
			entry: `{"name":"warren.req.digits.v1","consumers":1,"messages_ready":0,"messages_unacknowledged":0}`,
			want:  capacity.Snapshot{Consumers: 1}},
		{name: "statistics not collected yet", entry: `{"name":"warren.req.digits.v1"}`,
			want: capacity.Snapshot{Stale: true}, err: capacity.ErrNoStatistics},
		{name: "queue not declared", entry: "",
			want: capacity.Snapshot{Stale: true}, err: capacity.ErrQueueNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The other route's queue and queues that are no request queue
			// (same model's job queue, another vhost user's queue) are listed too.
			others := []string{
				`{"name":"warren.req.resnet.v7","consumers":3,"messages_ready":1,"messages_unacknowledged":2}`,
				`{"name":"warren.job.digits.v1","consumers":1,"messages_ready":500,"messages_unacknowledged":1}`,
				`{"name":"digits","consumers":0,"messages_ready":99,"messages_unacknowledged":0}`,
			}
			if tc.entry != "" {
				others = append(others, tc.entry)
			}
			f := fakeFarm(t, &fakeMgmt{status: 200, body: list(others...)}, nil)
			track(t, f, digits1, resnet7)
			if err := f.Refresh(t.Context()); err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			s := snap(t, f, digits1)
			checkBroker(t, "digits/1", s, tc.want)
			if tc.err == nil && (s.Error != "" || s.UpdatedAt.IsZero()) {
				t.Errorf("good read: error %q, updated %v", s.Error, s.UpdatedAt)
			}
			if tc.err != nil && s.Error != tc.err.Error() {
				t.Errorf("error %q, want %q", s.Error, tc.err)
			}
			if s.Model != "digits" || s.Version != "1" || s.Queue != "warren.req.digits.v1" {
				t.Errorf("route %q %q %q", s.Model, s.Version, s.Queue)
			}
			checkBroker(t, "resnet/7", snap(t, f, resnet7), capacity.Snapshot{Ready: 1, Unacked: 2, Consumers: 3})
		})
	}
}

// TestRefreshKeepsLastGoodValues: failures keep every route's last values and
// mark them stale; a missing queue or vhost zeroes them; a good read clears the
// flag.
func TestRefreshKeepsLastGoodValues(t *testing.T) {
	good := list(`{"name":"warren.req.digits.v1","consumers":1,"messages_ready":25,"messages_unacknowledged":4,"message_stats":{"publish_details":{"avg_rate":3}}}`,
		`{"name":"warren.req.digits.v2","consumers":2,"messages_ready":5,"messages_unacknowledged":0}`)
	fm := &fakeMgmt{status: 200, body: good}
	f := fakeFarm(t, fm, nil)
	track(t, f, digits1, digits2)
	ctx := t.Context()
	want1 := capacity.Snapshot{Ready: 25, Unacked: 4, Consumers: 1, PublishRate: 3}
	want2 := capacity.Snapshot{Ready: 5, Consumers: 2}
	if err := f.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	checkBroker(t, "v1", snap(t, f, digits1), want1)
	checkBroker(t, "v2", snap(t, f, digits2), want2)
	updated := snap(t, f, digits1).UpdatedAt

	for _, fail := range []struct {
		name   string
		status int
		body   string
		err    error
	}{
		{"server error", 500, `{"error":"internal"}`, nil},
		{"unauthorised", 401, `{"error":"not_authorised"}`, nil},
		{"garbage", 200, `<html>`, nil},
		{"an object, not a list", 200, `{"error":"?"}`, nil},
		{"truncated", 200, `[{"name":"warren.req.digits.v1","messages_ready":1}`, nil},
		{"connection refused", 0, "", errors.New("dial tcp: connection refused")},
	} {
		fm.set(fail.status, fail.body, fail.err)
		if err := f.Refresh(ctx); err == nil {
			t.Fatalf("%s: Refresh succeeded", fail.name)
		}
		for _, rw := range []struct {
			r    queue.Route
			want capacity.Snapshot
		}{{digits1, want1}, {digits2, want2}} {
			s := snap(t, f, rw.r)
			rw.want.Stale = true
			checkBroker(t, fail.name+" "+rw.r.String(), s, rw.want)
			if s.Error == "" {
				t.Errorf("%s %v: stale without a reason", fail.name, rw.r)
			}
		}
		if s := snap(t, f, digits1); !s.UpdatedAt.Equal(updated) {
			t.Errorf("%s: updated %v, want the last good read's %v", fail.name, s.UpdatedAt, updated)
		}
	}

	// v2's queue deleted: v2 is zeroed, v1 is read.
	fm.set(200, list(`{"name":"warren.req.digits.v1","consumers":0,"messages_ready":7,"messages_unacknowledged":0}`), nil)
	if err := f.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	checkBroker(t, "v1 read", snap(t, f, digits1), capacity.Snapshot{Ready: 7})
	checkBroker(t, "v2 deleted", snap(t, f, digits2), capacity.Snapshot{Stale: true})

	// The vhost deleted: everything is zeroed.
	fm.set(404, `{"error":"Object Not Found","reason":"Not Found"}`, nil)
	if err := f.Refresh(ctx); !errors.Is(err, capacity.ErrVhostNotFound) {
		t.Fatalf("Refresh: %v, want ErrVhostNotFound", err)
	}
	for _, r := range []queue.Route{digits1, digits2} {
		s := snap(t, f, r)
		checkBroker(t, r.String()+" no vhost", s, capacity.Snapshot{Stale: true})
		if s.Error != capacity.ErrVhostNotFound.Error() {
			t.Errorf("%v: error %q, want %q", r, s.Error, capacity.ErrVhostNotFound)
		}
	}

	fm.set(200, good, nil)
	if err := f.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	checkBroker(t, "v1 back", snap(t, f, digits1), want1)
	checkBroker(t, "v2 back", snap(t, f, digits2), want2)
}

// TestRefreshNoStatisticsKeepsValues: a queue listed without statistics (they
// are collected again) keeps its last values, stale.
func TestRefreshNoStatisticsKeepsValues(t *testing.T) {
	fm := &fakeMgmt{status: 200, body: list(`{"name":"warren.req.digits.v1","consumers":1,"messages_ready":9,"messages_unacknowledged":0}`)}
	f := fakeFarm(t, fm, nil)
	track(t, f, digits1)
	if err := f.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	fm.set(200, list(`{"name":"warren.req.digits.v1"}`), nil)
	if err := f.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	s := snap(t, f, digits1)
	checkBroker(t, "no statistics", s, capacity.Snapshot{Ready: 9, Consumers: 1, Stale: true})
	if s.Error != capacity.ErrNoStatistics.Error() || s.WorkersNeeded != 1 {
		t.Errorf("error %q, %d needed; want %q and 1", s.Error, s.WorkersNeeded, capacity.ErrNoStatistics)
	}
}

// TestRefreshTooLarge: an answer over the cap is a failed read, not a
// truncated document.
func TestRefreshTooLarge(t *testing.T) {
	fm := &fakeMgmt{status: 200, body: list(`{"name":"warren.req.digits.v1","messages_ready":4}`)}
	f := fakeFarm(t, fm, nil)
	track(t, f, digits1)
	if err := f.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	huge := `[{"name":"warren.req.digits.v1","messages_ready":4},{"name":"` + strings.Repeat("x", 17<<20) + `"}]`
	fm.set(200, huge, nil)
	err := f.Refresh(t.Context())
	if err == nil || !strings.Contains(err.Error(), "larger than 16 MiB") {
		t.Fatalf("Refresh: %v, want an error about the size", err)
	}
	checkBroker(t, "too large", snap(t, f, digits1), capacity.Snapshot{Ready: 4, Stale: true})
}

// TestRefreshLogsOnce: a read failure is logged once at Warn when it starts, not
// at every read and not once per route; a missing queue once per route; missing
// statistics (normal after a declare) never warn.
func TestRefreshLogsOnce(t *testing.T) {
	var buf bytes.Buffer
	fm := &fakeMgmt{status: 200, body: `[]`}
	f := fakeFarm(t, fm, func(c *capacity.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	track(t, f, digits1, digits2)
	both := func(e1, e2 string) string { return list(e1, e2) }
	v1 := `{"name":"warren.req.digits.v1","messages_ready":1}`
	v2 := `{"name":"warren.req.digits.v2","messages_ready":1}`
	steps := []struct {
		status int
		body   string
		want   []string // the lines logged, in order
	}{
		{200, both(`{"name":"warren.req.digits.v1"}`, `{"name":"warren.req.digits.v2"}`), nil},
		{200, both(`{"name":"warren.req.digits.v1"}`, `{"name":"warren.req.digits.v2"}`), nil},
		{200, both(v1, v2), nil},
		{500, `oops`, []string{`level=WARN msg="management API unreadable`}},
		{500, `oops`, nil},
		{502, `oops`, nil},
		{200, list(v1), []string{`level=INFO msg="management API gives queue statistics again"`,
			`level=WARN msg="request queue not found in the management API; counting it as empty" vhost=/ model=digits version=2 queue=warren.req.digits.v2`}},
		{200, list(v1), nil},
		{404, `{}`, []string{`level=WARN msg="vhost not found`}},
		{404, `{}`, nil},
		{200, both(v1, v2), []string{`level=INFO msg="management API gives queue statistics again"`,
			`level=INFO msg="request queue found in the management API" vhost=/ model=digits version=2`}},
	}
	for i, st := range steps {
		buf.Reset()
		fm.set(st.status, st.body, nil)
		_ = f.Refresh(t.Context())
		var got []string
		if s := strings.TrimSpace(buf.String()); s != "" {
			got = strings.Split(s, "\n")
		}
		ok := len(got) == len(st.want)
		for j := 0; ok && j < len(got); j++ {
			ok = strings.Contains(got[j], st.want[j])
		}
		if !ok {
			t.Errorf("step %d (%d %.40s): logged %q, want %q", i, st.status, st.body, got, st.want)
		}
	}
}

// TestRefreshCancelled: a read cut short by its context changes nothing.
func TestRefreshCancelled(t *testing.T) {
	fm := &fakeMgmt{status: 200, body: list(`{"name":"warren.req.digits.v1","messages_ready":5}`)}
	f := fakeFarm(t, fm, nil)
	track(t, f, digits1)
	if err := f.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	fm.set(0, "", context.Canceled)
	if err := f.Refresh(ctx); err == nil {
		t.Fatal("Refresh succeeded with a cancelled context")
	}
	checkBroker(t, "cancelled", snap(t, f, digits1), capacity.Snapshot{Ready: 5})
}

// TestInFlightKeepsOneWorker: with requests still being computed but no new
// arrivals or backlog, the route must not be scaled to zero under them.
func TestInFlightKeepsOneWorker(t *testing.T) {
	fm := &fakeMgmt{status: 200, body: list(`{"name":"warren.req.digits.v1","consumers":1,"messages_ready":0,"messages_unacknowledged":2}`)}
	f := fakeFarm(t, fm, nil)
	track(t, f, digits1)
	if err := f.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s := snap(t, f, digits1); s.WorkersNeeded != 1 || s.ArrivalRate != 0 || s.Unacked != 2 {
		t.Errorf("snapshot %+v, want 1 worker for 2 in-flight requests", s)
	}
	fm.set(200, list(`{"name":"warren.req.digits.v1","consumers":1,"messages_ready":0,"messages_unacknowledged":0}`), nil)
	if err := f.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := snap(t, f, digits1).WorkersNeeded; n != 0 {
		t.Errorf("idle: %d needed, want 0", n)
	}
}
