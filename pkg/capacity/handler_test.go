package capacity_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/capacity"
)

// handlerFarm is a farm with three routes read from a fake management API:
//
//	digits/1: λ = 20 + 1/60, S = 0.2, C = 4, B = 10: (20.02·0.2/0.7 + 10·0.2)/4 = 1.93 → 2
//	digits/2: λ = 7, S = 0.1, C = 1: 7·0.1/0.7 = 1 → 1
//	resnet/7: B = 25, nothing answered (S = 0.1, C = 1): 25·0.1/1 = 2.5 → 3
func handlerFarm(t *testing.T) (*capacity.Farm, *fakeMgmt) {
	t.Helper()
	fm := &fakeMgmt{status: 200, body: list(
		`{"name":"warren.req.digits.v1","consumers":2,"messages_ready":10,"messages_unacknowledged":3,"message_stats":{"publish_details":{"avg_rate":20}}}`,
		`{"name":"warren.req.digits.v2","consumers":1,"messages_ready":0,"messages_unacknowledged":0,"message_stats":{"publish_details":{"avg_rate":7}}}`,
		`{"name":"warren.req.resnet.v7","consumers":0,"messages_ready":25,"messages_unacknowledged":0}`)}
	f := fakeFarm(t, fm, nil)
	track(t, f, resnet7, digits2, digits1)
	if err := f.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.ObserveService(digits1, 200*time.Millisecond, 4)
	f.ObserveTurnedAway(digits1)
	f.ObserveService(digits2, 100*time.Millisecond, 1)
	return f, fm
}

// get serves one request and decodes the JSON answer (nil for an empty body).
func get(t *testing.T, h http.Handler, method, target string) (int, http.Header, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	if rec.Body.Len() == 0 {
		return rec.Code, rec.Header(), nil
	}
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("%s %s: body %q: %v", method, target, rec.Body, err)
	}
	return rec.Code, rec.Header(), body
}

// check compares the given keys of a decoded answer.
func check(t *testing.T, what string, got map[string]any, want map[string]any) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(want)) {
		g, w := got[k], want[k]
		if gf, ok := g.(float64); ok {
			if wf, ok := w.(float64); ok && abs(gf-wf) < 1e-9 {
				continue
			}
		}
		if gs, ok := g.([]any); ok {
			if ws, ok := w.([]any); ok && slices.Equal(gs, ws) {
				continue
			}
		}
		if g != w {
			t.Errorf("%s: %s = %v (%T), want %v", what, k, g, g, w)
		}
	}
}

func abs(x float64) float64 { return max(x, -x) }

var snapshotKeys = []string{"answered", "arrival_rate", "consumers", "model", "publish_rate", "queue", "ready",
	"service_time", "service_time_source", "slots_per_worker", "stale", "target_utilization", "target_wait",
	"turned_away", "turned_away_rate", "unacked", "updated_at", "version", "window", "workers_needed"}

func TestHandlerRoute(t *testing.T) {
	f, _ := handlerFarm(t)
	code, h, got := get(t, f.Handler(), http.MethodGet, "/capacity?model=digits&version=1")
	if code != http.StatusOK || h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET: %d %v", code, h)
	}
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, snapshotKeys) {
		t.Errorf("keys %v\nwant %v", keys, snapshotKeys)
	}
	check(t, "digits/1", got, map[string]any{"model": "digits", "version": "1", "queue": "warren.req.digits.v1",
		"workers_needed": 2.0, "consumers": 2.0, "ready": 10.0, "unacked": 3.0, "publish_rate": 20.0,
		"arrival_rate": 20 + 1.0/60, "turned_away_rate": 1.0 / 60, "service_time": 0.2, "service_time_source": "window",
		"slots_per_worker": 4.0, "stale": false, "target_utilization": 0.7, "target_wait": 1.0, "window": 60.0,
		"turned_away": 1.0, "answered": 1.0})
	if _, err := time.Parse(time.RFC3339Nano, got["updated_at"].(string)); err != nil {
		t.Errorf("updated_at: %v", err)
	}
	_, _, got = get(t, f.Handler(), http.MethodGet, "/capacity?model=resnet&version=7")
	check(t, "resnet/7", got, map[string]any{"workers_needed": 3.0, "ready": 25.0, "service_time": 0.1,
		"service_time_source": "default", "slots_per_worker": 0.0})
}

func TestHandlerModel(t *testing.T) {
	f, _ := handlerFarm(t)
	code, _, got := get(t, f.Handler(), http.MethodGet, "/capacity?model=digits")
	if code != http.StatusOK {
		t.Fatalf("GET: %d", code)
	}
	for _, k := range []string{"version", "queue", "error"} {
		if _, ok := got[k]; ok {
			t.Errorf("a model's sum has %q", k)
		}
	}
	check(t, "digits", got, map[string]any{"model": "digits", "versions": []any{"1", "2"},
		"workers_needed": 3.0, // 2 + 1
		"publish_rate":   27.0, "arrival_rate": 27 + 1.0/60, "turned_away": 1.0, "turned_away_rate": 1.0 / 60,
		"answered": 2.0, "ready": 10.0, "unacked": 3.0, "consumers": 3.0,
		"service_time": 0.2, "service_time_source": "window", "slots_per_worker": 4.0, // maxed
		"stale": false, "target_utilization": 0.7, "target_wait": 1.0, "window": 60.0})
	_, _, got = get(t, f.Handler(), http.MethodGet, "/capacity?model=resnet")
	check(t, "resnet", got, map[string]any{"model": "resnet", "versions": []any{"7"}, "workers_needed": 3.0})
}

func TestHandlerSummary(t *testing.T) {
	f, fm := handlerFarm(t)
	code, _, got := get(t, f.Handler(), http.MethodGet, "/capacity")
	if code != http.StatusOK {
		t.Fatalf("GET: %d", code)
	}
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, []string{"models", "stale", "workers_needed"}) {
		t.Errorf("keys %v, want models, stale, workers_needed", keys)
	}
	check(t, "summary", got, map[string]any{"workers_needed": 6.0, "stale": false})
	models, _ := got["models"].([]any)
	var routes []string
	for _, m := range models {
		m := m.(map[string]any)
		routes = append(routes, m["model"].(string)+"/"+m["version"].(string))
		if keys := slices.Sorted(maps.Keys(m)); !slices.Equal(keys, snapshotKeys) {
			t.Errorf("model keys %v", keys)
		}
	}
	if want := []string{"digits/1", "digits/2", "resnet/7"}; !slices.Equal(routes, want) {
		t.Errorf("models %v, want %v", routes, want)
	}

	// Stale: the reasons are given, the answers are still 200 with the last numbers.
	fm.set(503, "down", nil)
	_ = f.Refresh(t.Context())
	code, _, got = get(t, f.Handler(), http.MethodGet, "/capacity")
	check(t, "stale summary", got, map[string]any{"workers_needed": 6.0, "stale": true})
	if code != 200 || !strings.Contains(got["error"].(string), "503") {
		t.Errorf("stale summary: %d, error %v", code, got["error"])
	}
	code, _, got = get(t, f.Handler(), http.MethodGet, "/capacity?model=digits")
	check(t, "stale model", got, map[string]any{"workers_needed": 3.0, "stale": true})
	if e, _ := got["error"].(string); code != 200 || !strings.HasPrefix(e, "v1: ") || !strings.Contains(e, "; v2: ") {
		t.Errorf("stale model: %d, error %q, want both versions' reasons", code, e)
	}
}

// TestHandlerNothingRead: without a management API and any route, the farm
// answers an empty list (not null) with the reason.
func TestHandlerNothingRead(t *testing.T) {
	f := newFarm(t, capacity.Config{})
	rec := httptest.NewRecorder()
	f.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/capacity", nil))
	want := `{"workers_needed":0,"stale":true,"error":"no management URL configured","models":[]}` + "\n"
	if rec.Code != 200 || rec.Body.String() != want {
		t.Errorf("GET: %d %s, want %s", rec.Code, rec.Body, want)
	}
	track(t, f, digits1)
	_, _, got := get(t, f.Handler(), http.MethodGet, "/capacity?model=digits&version=1")
	if _, ok := got["updated_at"]; ok {
		t.Errorf("never read: updated_at given: %v", got)
	}
}

func TestHandlerErrors(t *testing.T) {
	f, _ := handlerFarm(t)
	for _, tc := range []struct {
		target string
		code   int
		detail string // a part of it
	}{
		{"/capacity?model=bert", 404, "model bert is not tracked"},
		{"/capacity?model=digits&version=3", 404, "model digits version 3 is not tracked"},
		{"/capacity?model=a.b", 400, `query parameter "model": "a.b"`},
		{"/capacity?model=", 400, `query parameter "model": ""`},
		{"/capacity?model=" + strings.Repeat("x", 65), 400, `query parameter "model"`},
		{"/capacity?model=digits&version=01", 400, `query parameter "version": "01"`},
		{"/capacity?model=digits&version=v1", 400, `query parameter "version": "v1"`},
		{"/capacity?model=bert&version=0", 400, `query parameter "version"`},
		{"/capacity?version=1", 400, `query parameter "version" needs the query parameter "model"`},
		{"/capacity?model=digits&model=resnet", 400, `query parameter "model": given 2 times`},
		{"/capacity?model=%zz", 400, "malformed query"},
	} {
		code, h, got := get(t, f.Handler(), http.MethodGet, tc.target)
		d, _ := got["detail"].(string)
		if code != tc.code || len(got) != 1 || !strings.Contains(d, tc.detail) || h.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s: %d %v, want %d with a detail containing %q", tc.target, code, got, tc.code, tc.detail)
		}
	}
	// Other parameters are ignored.
	if code, _, got := get(t, f.Handler(), http.MethodGet, "/capacity?model=digits&version=2&pretty=1"); code != 200 || got["workers_needed"] != 1.0 {
		t.Errorf("extra parameter: %d %v", code, got)
	}
}

func TestHandlerMethods(t *testing.T) {
	f, _ := handlerFarm(t)
	for target, code := range map[string]int{"/capacity": 200, "/capacity?model=digits": 200,
		"/capacity?model=digits&version=1": 200, "/capacity?model=bert": 404, "/capacity?model=a.b": 400} {
		c, h, body := get(t, f.Handler(), http.MethodHead, target)
		if c != code || body != nil || h.Get("Content-Type") != "application/json" {
			t.Errorf("HEAD %s: %d with body %v, want %d without", target, c, body, code)
		}
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		c, h, body := get(t, f.Handler(), m, "/capacity?model=digits")
		if c != http.StatusMethodNotAllowed || h.Get("Allow") != "GET, HEAD" || body["detail"] != "Method Not Allowed" {
			t.Errorf("%s: %d, Allow %q, %v", m, c, h.Get("Allow"), body)
		}
	}
}
