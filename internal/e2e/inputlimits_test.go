package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestInputLimits drives every limit of docs/limits.md that a stranger can reach
// through the real API binary: each is refused with its 4xx, naming the limit,
// in the path's error shape (the OpenAPI document's, checked by f.do) — except
// the header limit, which net/http enforces before any handler runs.
func TestInputLimits(t *testing.T) {
	f := newFarm(t, 1, nil, nil)
	tensor := func(name, shape, dt, data string) string {
		return `{"name":"` + name + `","shape":[` + shape + `],"datatype":"` + dt + `","data":[` + data + `]}`
	}
	infer := func(inputs ...string) string { return `{"inputs":[` + strings.Join(inputs, ",") + `]}` }
	deep := strings.Repeat("[", 65) + strings.Repeat("]", 65)
	ok := tensor("data", "1", "BYTES", `"x"`)
	for _, c := range []struct {
		what, path, body string
		hdr              []string
		status           int
		want             string
	}{
		{"body over BODY_LIMIT", "/process", `{"data":"` + strings.Repeat("x", 1<<20) + `"}`, nil, 413, "the limit is 1048576 bytes"},
		{"v2 body over BODY_LIMIT", "/v2/models/seed/infer", infer(tensor("data", "1", "BYTES", `"`+strings.Repeat("x", 1<<20)+`"`)), nil, 413, "the limit is 1048576 bytes"},
		{"jobs body over BODY_LIMIT", "/jobs", `{"data":"` + strings.Repeat("x", 1<<20) + `"}`, nil, 413, "the limit is 1048576 bytes"},
		{"JSON depth", "/process", `{"data":"x","x":` + deep + `}`, nil, 422, "nested deeper than 64 levels"},
		{"v2 JSON depth", "/v2/models/seed/infer", `{"parameters":{"p":` + deep + `},"inputs":[` + ok + `]}`, nil, 400, "nested deeper than 64 levels"},
		{"elements per tensor", "/v2/models/seed/infer", infer(tensor("data", "16777217", "BYTES", `"x"`)), nil, 400, "the limit is 16777216"},
		{"shape product overflow", "/v2/models/seed/infer", infer(tensor("data", "4294967296,4294967296", "BYTES", `"x"`)), nil, 400, "more than 2147483647 elements"},
		{"negative dimension", "/v2/models/seed/infer", infer(tensor("data", "-1", "BYTES", `"x"`)), nil, 400, "no negative dimensions"},
		{"shape promising more than the data", "/v2/models/seed/infer", infer(tensor("data", "16777216", "BYTES", `"x"`)), nil, 400, "data has 1 elements, the shape says 16777216"},
		{"tensors per request", "/v2/models/seed/infer", infer(strings.Split(strings.Repeat(ok+"\x00", 65), "\x00")[:65]...), nil, 400, "more than 64 inputs"},
		{"rank", "/v2/models/seed/infer", infer(tensor("data", strings.Repeat("1,", 16)+"1", "BYTES", `"x"`)), nil, 400, "more than 16 dimensions"},
		{"tensor name length", "/v2/models/seed/infer", infer(tensor(strings.Repeat("n", 257), "1", "BYTES", `"x"`)), nil, 400, "longer than 256 bytes"},
		{"id length", "/v2/models/seed/infer", `{"id":"` + strings.Repeat("i", 257) + `","inputs":[` + ok + `]}`, nil, 400, "longer than 256 bytes"},
		{"data short of its shape", "/v2/models/seed/infer", infer(tensor("data", "2", "BYTES", `"x"`)), nil, 400, "data has 1 elements, the shape says 2"},
		{"Idempotency-Key length", "/jobs", `{"data":"x"}`, []string{"Idempotency-Key", strings.Repeat("k", 256)}, 422, "1 to 255 printable ASCII"},
	} {
		r := f.do("POST", c.path, c.body, c.hdr...)
		if r.Status != c.status || !strings.Contains(string(r.Body), c.want) {
			t.Errorf("%s: %d %.300s, want %d …%s…", c.what, r.Status, r.Body, c.status, c.want)
		}
	}

	// X-Request-ID: an id longer than 128 characters is replaced, not refused.
	long := strings.Repeat("r", 129)
	if r := f.do("POST", "/process", `{"data":"x"}`, "X-Request-ID", long); r.Status != 200 || r.Header.Get("X-Request-ID") == long || r.Header.Get("X-Request-ID") == "" {
		t.Errorf("a 129-character X-Request-ID: %d, answered with id %q", r.Status, r.Header.Get("X-Request-ID"))
	}

	// Header lines over 64 KiB (net/http reads up to about 8 KiB more before it
	// gives up): net/http's 431, before any handler.
	req, _ := http.NewRequest("POST", f.api.url("/process"), strings.NewReader(`{"data":"x"}`))
	req.Header.Set("X-Pad", strings.Repeat("p", 80<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("80 KiB of headers: %d %s", resp.StatusCode, b)
	}
	// …and just under it is served.
	req, _ = http.NewRequest("POST", f.api.url("/process"), strings.NewReader(`{"data":"x"}`))
	req.Header.Set("X-Pad", strings.Repeat("p", 60<<10))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("60 KiB of headers: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}
