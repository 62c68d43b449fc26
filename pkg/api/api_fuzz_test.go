package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/warren-farm/warren/pkg/httperr"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/oip"
)

// Fuzz targets of the front door: the headers a stranger sends, and the /process,
// /jobs and v2 infer bodies, driven through the real router with fakes behind it
// (the rig of api_test.go). Whatever the input: never a 5xx, always a JSON body
// in the path's error shape; an accepted call or job always carries a request
// that validates against the model's metadata.

// fuzzRig is a rig whose fakes forget the previous input.
func fuzzRig(r *rig) *rig {
	r.calls.mu.Lock()
	r.calls.calls = nil
	r.calls.mu.Unlock()
	r.jobs.mu.Lock()
	r.jobs.subs, r.jobs.byID = nil, map[string]*jobs.Job{}
	r.jobs.mu.Unlock()
	return r
}

func (r *rig) send(method, path string, body []byte, hdr http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, req)
	return rec
}

// checkAnswer: a JSON body; an error in the path's shape ({"detail"} or, under
// /v2, {"error"}) whose reason, when there is one, is the status's; no 5xx.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder, path string, ok ...int) map[string]any {
	t.Helper()
	if !slices.Contains(ok, rec.Code) {
		t.Fatalf("%s: status %d (want one of %v): %s", path, rec.Code, ok, rec.Body)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("%s: %d answer is not a JSON object: %v: %s", path, rec.Code, err, rec.Body)
	}
	if rec.Code < 400 {
		return m
	}
	key := "detail"
	if strings.HasPrefix(path, "/v2/") {
		key = "error"
	}
	if _, has := m[key]; !has {
		t.Fatalf("%s: %d answer has no %q: %s", path, rec.Code, key, rec.Body)
	}
	if r, has := m["reason"].(string); has {
		want := map[string]int{"bad_input": 400, "not_found": 404, "too_large": 413, "idempotency_key_reused": 422}[r]
		if want != rec.Code {
			t.Fatalf("%s: reason %q with status %d", path, r, rec.Code)
		}
	}
	return m
}

// checkPublished: what reached the queue is a v2 request that validates against
// the version's metadata.
func checkPublished(t *testing.T, body []byte, md model.Metadata) *model.Request {
	t.Helper()
	req, _, err := oip.DecodeRequest(body, oip.Limits{})
	if err == nil {
		err = md.Validate(req)
	}
	if err != nil {
		t.Fatalf("published a request that does not validate: %v: %s", err, body)
	}
	return req
}

func FuzzProcessBody(f *testing.F) {
	for _, s := range []string{`{"data":"cat image data"}`, `{"data":"x","forward_to_model":"no"}`, `{"data":""}`,
		`{"data":"h\u00e9 \u2028 <&>"}`, `{"data":7}`, `{}`, `nope`, `{"data":"x","forward_to_model":null}`} {
		f.Add([]byte(s))
	}
	r := newRig(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		r := fuzzRig(r)
		rec := r.send("POST", "/process", body, nil)
		m := checkAnswer(t, rec, "/process", 200, 413, 422)
		if rec.Code != 200 {
			if len(r.calls.calls) != 0 {
				t.Fatalf("refused with %d, yet called the model", rec.Code)
			}
			return
		}
		if m["status"] != "Input logged successfully" {
			t.Fatalf("200 without the lab's status: %s", rec.Body)
		}
		if len(r.calls.calls) == 0 {
			return // forward_to_model false
		}
		obj, _ := httperr.Object(body)
		var data string
		_ = json.Unmarshal(obj["data"], &data)
		req := checkPublished(t, r.calls.last().Body, model.SeedMetadata())
		if got := req.Inputs[0].Data.([]string); len(got) != 1 || got[0] != data {
			t.Fatalf("published %q for data %q", got, data)
		}
		pred, _ := m["model_prediction"].(map[string]any)
		p, _ := pred["prediction"].(map[string]any)
		if n, _ := p["input_length"].(float64); int(n) != utf8.RuneCountInString(data) {
			t.Fatalf("input_length %v for %q", p["input_length"], data)
		}
	})
}

func FuzzJobsBody(f *testing.F) {
	for _, s := range []string{`{"data":"cat"}`, `{"data":"x","forward_to_model":false}`,
		`{"model":"digits","inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":[` + strings.Repeat("0,", 63) + `0]}]}`,
		`{"model":"digits","version":"1","inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":[1]}]}`,
		`{"model":"seed","inputs":[{"name":"data","shape":[2],"datatype":"BYTES","data":["a","b"]}]}`,
		`{"model":"nope","inputs":[]}`, `{"model":7}`, `{"inputs":[]}`, `[]`} {
		f.Add([]byte(s), "")
	}
	f.Add([]byte(`{"data":"cat"}`), "key-1")
	f.Add([]byte(`{"data":"cat"}`), "bad key")
	r := newRig(f)
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		r := fuzzRig(r)
		hdr := http.Header{}
		if key != "" {
			hdr.Set("Idempotency-Key", key)
		}
		rec := r.send("POST", "/jobs", body, hdr)
		checkAnswer(t, rec, "/jobs", 202, 400, 404, 413, 422)
		if rec.Code != 202 {
			if len(r.jobs.subs) != 0 {
				t.Fatalf("refused with %d, yet submitted a job", rec.Code)
			}
			return
		}
		if len(r.jobs.subs) != 1 {
			t.Fatalf("202 after %d submissions", len(r.jobs.subs))
		}
		sub := r.jobs.subs[0]
		if sub.IdempotencyKey != key || (key != "" && !validKey(key)) {
			t.Fatalf("submitted with key %q for header %q", sub.IdempotencyKey, key)
		}
		v, err := r.catalog.Resolve(sub.Model, sub.Version)
		if err != nil {
			t.Fatalf("submitted to an unknown version %s/%s", sub.Model, sub.Version)
		}
		checkPublished(t, sub.Input, v.Metadata)
		if loc := rec.Header().Get("Location"); loc != "/jobs/j1" {
			t.Fatalf("Location %q", loc)
		}
	})
}

func FuzzInferBody(f *testing.F) {
	for _, s := range []string{
		`{"id":"d","inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":[` + strings.Repeat("0,", 63) + `0]}]}`,
		`{"inputs":[{"name":"input","shape":[2,64],"datatype":"FP32","data":[1]}]}`,
		`{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["cat"]}],"outputs":[{"name":"class"}]}`,
		`{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["cat"]}],"outputs":[{"name":"nope"}]}`,
		`{"inputs":[]}`, `{}`, `x`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	r := newRig(f)
	f.Fuzz(func(t *testing.T, body []byte, digits bool) {
		r := fuzzRig(r)
		name := map[bool]string{false: "seed", true: "digits"}[digits]
		path := "/v2/models/" + name + "/infer"
		rec := r.send("POST", path, body, nil)
		checkAnswer(t, rec, path, 200, 400, 413)
		if rec.Code != 200 {
			if len(r.calls.calls) != 0 {
				t.Fatalf("refused with %d, yet called the model", rec.Code)
			}
			return
		}
		c := r.calls.last()
		if !bytes.Equal(c.Body, body) {
			t.Fatal("the published body is not the client's")
		}
		v, _ := r.catalog.Resolve(c.Route.Model, c.Route.Version)
		checkPublished(t, c.Body, v.Metadata)
	})
}

// FuzzHeaders: X-Request-ID, X-Request-Timeout, Prefer and Idempotency-Key, parsed
// directly and through the router: a valid id is echoed, any other replaced by a
// valid one; a deadline is positive and at most MAX_REQUEST_TIMEOUT; a wait is
// within [0, MaxWait]; a bad header is a 422 naming it.
func FuzzHeaders(f *testing.F) {
	f.Add("order-42", "2.5", "respond-async, wait=3", "key-1")
	f.Add("", "", "", "")
	f.Add("a b", "Inf", "wait=NaN, respond-async", "bad key")
	f.Add(strings.Repeat("x", 129), "1e308", `respond-async; wait="1e400"`, strings.Repeat("k", 256))
	f.Add("ok/id+=@:", "-2s", "RESPOND-ASYNC,wait=-1", "\x7f")
	f.Add("x", "9223372036s", "respond-async, wait=99999999h", "é")
	r := newRig(f)
	h := &handlers{cfg: Config{RequestTimeout: DefaultRequestTimeout, MaxRequestTimeout: DefaultMaxRequestTimeout,
		Jobs: JobsConfig{MaxWait: DefaultMaxWait}}}
	f.Fuzz(func(t *testing.T, rid, timeout, prefer, key string) {
		// The parsers.
		ve := &httperr.ValidationError{}
		d := h.timeout(timeout, ve)
		if (len(ve.Items) == 0) != (d > 0 && d <= DefaultMaxRequestTimeout) {
			t.Fatalf("X-Request-Timeout %q: %v with %d items", timeout, d, len(ve.Items))
		}
		ve = &httperr.ValidationError{}
		async, wait := preferAsync([]string{prefer})
		if w := h.waitParam(wait, ve); w < 0 || w > DefaultMaxWait || (len(ve.Items) > 0 && w != 0) {
			t.Fatalf("Prefer %q: wait %v", prefer, w)
		}
		if validKey(key) != (len(key) >= 1 && len(key) <= 255 && !strings.ContainsFunc(key, func(c rune) bool { return c < 0x21 || c > 0x7e })) {
			t.Fatalf("validKey(%q) = %v", key, validKey(key))
		}

		// Through the router. Header values that net/http would refuse on the wire
		// (control characters, newlines) never reach a handler.
		hdr := http.Header{}
		for k, v := range map[string]string{"X-Request-ID": rid, "X-Request-Timeout": timeout, "Prefer": prefer, "Idempotency-Key": key} {
			if v != "" && !strings.ContainsFunc(v, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
				hdr.Set(k, v)
			}
		}
		r := fuzzRig(r)
		rec := r.send("POST", "/process", []byte(`{"data":"x"}`), hdr)
		m := checkAnswer(t, rec, "/process", 200, 202, 422)
		got := rec.Header().Get("X-Request-ID")
		if !validRequestID(got) || (validRequestID(hdr.Get("X-Request-ID")) && got != hdr.Get("X-Request-ID")) {
			t.Fatalf("X-Request-ID %q answered as %q", hdr.Get("X-Request-ID"), got)
		}
		if rec.Code == 422 {
			items, _ := m["detail"].([]any)
			for _, it := range items {
				loc, _ := it.(map[string]any)["loc"].([]any)
				if len(loc) != 2 || loc[0] != "header" {
					t.Fatalf("422 not about a header: %s", rec.Body)
				}
			}
			return
		}
		if a, _ := preferAsync(hdr.Values("Prefer")); a != (rec.Code == 202 || len(r.jobs.subs) == 1) {
			t.Fatalf("Prefer %q (async %v): %d with %d jobs", hdr.Get("Prefer"), async, rec.Code, len(r.jobs.subs))
		}
		if len(r.calls.calls) == 1 {
			if until := time.Until(r.calls.last().Deadline); until > DefaultMaxRequestTimeout {
				t.Fatalf("deadline in %s", until)
			}
		}
	})
}
