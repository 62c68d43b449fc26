package apidoc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v4"
)

func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(Spec())
	if err != nil {
		t.Fatalf("loading the document: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the document is not valid OpenAPI: %v", err)
	}
	return doc
}

func TestSpecLoadsAndValidates(t *testing.T) {
	doc := loadDoc(t)
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
	if doc.Info.Title != "warren API" || doc.Info.Version != "0.1.0" {
		t.Errorf("info = %q %q, want warren API 0.1.0", doc.Info.Title, doc.Info.Version)
	}
	if len(doc.Servers) != 0 {
		t.Errorf("servers = %v: the document names no host, so Swagger UI calls the one serving it", doc.Servers)
	}

	wantOps := map[string][]string{
		"/":                                    {http.MethodGet},
		"/health":                              {http.MethodGet},
		"/ready":                               {http.MethodGet},
		"/process":                             {http.MethodPost},
		"/jobs":                                {http.MethodPost},
		"/jobs/{id}":                           {http.MethodDelete, http.MethodGet},
		"/capacity":                            {http.MethodGet},
		"/metrics":                             {http.MethodGet},
		"/openapi.json":                        {http.MethodGet},
		"/docs":                                {http.MethodGet},
		"/models":                              {http.MethodGet},
		"/v2":                                  {http.MethodGet},
		"/v2/health/live":                      {http.MethodGet, http.MethodHead},
		"/v2/health/ready":                     {http.MethodGet, http.MethodHead},
		"/v2/models":                           {http.MethodGet},
		"/v2/models/{name}":                    {http.MethodGet},
		"/v2/models/{name}/versions/{version}": {http.MethodGet},
		"/v2/models/{name}/ready":              {http.MethodGet, http.MethodHead},
		"/v2/models/{name}/versions/{version}/ready": {http.MethodGet, http.MethodHead},
		"/v2/models/{name}/infer":                    {http.MethodPost},
		"/v2/models/{name}/versions/{version}/infer": {http.MethodPost},
		"/v2/models/{name}/traffic":                  {http.MethodDelete, http.MethodGet, http.MethodPut},
	}
	if got := doc.Paths.Len(); got != len(wantOps) {
		t.Errorf("the document has %d paths, want %d", got, len(wantOps))
	}
	for p, methods := range wantOps {
		item := doc.Paths.Value(p)
		if item == nil {
			t.Errorf("path %s is missing", p)
			continue
		}
		var got []string
		for m, op := range item.Operations() {
			got = append(got, m)
			if op.OperationID == "" || op.Summary == "" || len(op.Tags) == 0 {
				t.Errorf("%s %s: operationId, summary and tags are all wanted", m, p)
			}
			for code, r := range op.Responses.Map() {
				if r.Value == nil || r.Value.Description == nil || *r.Value.Description == "" {
					t.Errorf("%s %s %s: response without a description", m, p, code)
				}
			}
		}
		sort.Strings(got)
		if !slices.Equal(got, methods) {
			t.Errorf("%s: methods %v, want %v", p, got, methods)
		}
	}

	process := doc.Paths.Value("/process").Post
	var codes []string
	for code, r := range process.Responses.Map() {
		codes = append(codes, code)
		h := r.Value.Headers["X-Request-ID"]
		if h == nil || !h.Value.Required {
			t.Errorf("POST /process %s: X-Request-ID must be a required response header", code)
		}
	}
	sort.Strings(codes)
	if want := []string{"200", "202", "400", "401", "403", "413", "422", "429", "502", "503", "504"}; !slices.Equal(codes, want) {
		t.Errorf("POST /process statuses %v, want %v", codes, want)
	}
	if h := process.Responses.Status(503).Value.Headers["Retry-After"]; h == nil || !h.Value.Required {
		t.Error("POST /process 503: Retry-After must be a required response header")
	}
	for _, name := range []string{"ModelPrediction", "Prediction", "HTTPValidationError", "ValidationError", "Reason", "ReasonedError", "V2Error",
		"HTTPError", "Readiness", "ProcessRequest", "ProcessResponse", "JobRequest", "LabJobRequest", "V2JobRequest", "Job", "JobError",
		"CapacitySummary", "CapacitySnapshot", "ServerMetadata", "ModelMetadata", "TensorMetadata", "Datatype", "InferenceRequest",
		"InferenceResponse", "RequestInput", "RequestOutput", "ResponseOutput", "TensorData", "Parameters", "ModelList"} {
		if doc.Components.Schemas[name] == nil {
			t.Fatalf("components.schemas.%s is missing", name)
		}
	}
	reasons := doc.Components.Schemas["Reason"].Value.Enum
	for _, r := range []string{"model_error", "no_workers", "queue_full", "broker_unavailable", "draining", "timeout",
		"store_unavailable", "not_found", "in_progress", "not_cancellable", "idempotency_key_reused", "bad_input", "jobs_unavailable"} {
		if !slices.Contains(reasons, any(r)) {
			t.Errorf("Reason lacks %q", r)
		}
	}
}

// TestSpecJobs pins the parts of the job operations' contract that clients rely on.
func TestSpecJobs(t *testing.T) {
	doc := loadDoc(t)
	jobs, job := doc.Paths.Value("/jobs"), doc.Paths.Value("/jobs/{id}")
	ops := map[string]*openapi3.Operation{"POST /jobs": jobs.Post, "GET /jobs/{id}": job.Get, "DELETE /jobs/{id}": job.Delete}
	wantCodes := map[string][]string{
		"POST /jobs":        {"200", "202", "400", "401", "403", "404", "409", "413", "422", "429", "503"},
		"GET /jobs/{id}":    {"200", "401", "404", "422", "429", "503"},
		"DELETE /jobs/{id}": {"200", "401", "404", "409", "429", "503"},
	}
	for name, op := range ops {
		var codes []string
		for code, r := range op.Responses.Map() {
			codes = append(codes, code)
			if h := r.Value.Headers["X-Request-ID"]; h == nil || !h.Value.Required {
				t.Errorf("%s %s: X-Request-ID must be a required response header", name, code)
			}
		}
		sort.Strings(codes)
		if !slices.Equal(codes, wantCodes[name]) {
			t.Errorf("%s statuses %v, want %v", name, codes, wantCodes[name])
		}
		if h := op.Responses.Status(503).Value.Headers["Retry-After"]; h == nil || !h.Value.Required {
			t.Errorf("%s 503: Retry-After must be a required response header", name)
		}
	}
	for _, c := range []struct {
		op     *openapi3.Operation
		status int
		header string
	}{
		{jobs.Post, 202, "Location"},
		{jobs.Post, 200, "Location"},
		{jobs.Post, 200, "Idempotent-Replayed"},
		{jobs.Post, 409, "Retry-After"},
		{doc.Paths.Value("/process").Post, 202, "Location"},
		{doc.Paths.Value("/process").Post, 202, "Preference-Applied"},
	} {
		if h := c.op.Responses.Status(c.status).Value.Headers[c.header]; h == nil || !h.Value.Required {
			t.Errorf("%s %d: %s must be a required response header", c.op.OperationID, c.status, c.header)
		}
	}

	// Job: the fields and statuses of pkg/jobs.Job, as the API shows it.
	js := doc.Components.Schemas["Job"].Value
	for _, f := range []string{"id", "status", "model", "model_version", "created_at", "started_at", "finished_at", "attempts", "result", "error", "links"} {
		if js.Properties[f] == nil {
			t.Errorf("Job lacks %q", f)
		}
	}
	var statuses []string
	for _, v := range js.Properties["status"].Value.Enum {
		statuses = append(statuses, v.(string))
	}
	sort.Strings(statuses)
	if want := []string{"cancelled", "expired", "failed", "queued", "running", "succeeded"}; !slices.Equal(statuses, want) {
		t.Errorf("Job.status %v, want %v", statuses, want)
	}
	for _, f := range []string{"started_at", "finished_at"} {
		if !js.Properties[f].Value.Nullable || !slices.Contains(js.Required, f) {
			t.Errorf("Job.%s must be required and nullable (always sent, null until set)", f)
		}
	}
	// result: a v2 job's InferenceResponse, or a lab job's ModelPrediction (that of POST /process).
	var results []string
	for _, s := range js.Properties["result"].Value.OneOf {
		results = append(results, s.Ref)
	}
	if want := []string{"#/components/schemas/InferenceResponse", "#/components/schemas/ModelPrediction"}; !slices.Equal(results, want) {
		t.Errorf("Job.result is oneOf %v, want %v", results, want)
	}
	for body, ok := range map[string]bool{
		`{"model_name":"digits","model_version":"1","outputs":[{"name":"p","datatype":"FP32","shape":[1],"data":[0.5]}]}`: true,
		`{"prediction":{"class":"dog","confidence":0.92,"input_length":1},"message":"Predicted class: dog with 92.0% confidence",
		  "request_id":"r","model":{"name":"seed","version":"1"},"worker_id":"w","input_sha256":"` + strings.Repeat("0", 64) + `"}`: true,
		`{"outputs":[]}`:                 false, // no model_name
		`{"prediction":{"class":"dog"}}`: false,
	} {
		var v any
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatal(err)
		}
		if err := js.Properties["result"].Value.VisitJSON(v); (err == nil) != ok {
			t.Errorf("Job.result %s: accepted %v, want %v (%v)", body, err == nil, ok, err)
		}
	}

	// POST /jobs 422 takes both the validation shape and idempotency_key_reused's.
	one := jobs.Post.Responses.Status(422).Value.Content.Get("application/json").Schema.Value
	if len(one.OneOf) != 2 {
		t.Fatalf("POST /jobs 422: want a oneOf of two shapes, got %d", len(one.OneOf))
	}
	for body, ok := range map[string]bool{
		`{"detail":[{"type":"value_error","loc":["header","Idempotency-Key"],"msg":"bad","input":"a b"}]}`:      true,
		`{"detail":"Idempotency-Key was already used with a different body","reason":"idempotency_key_reused"}`: true,
		`{"detail":"x","reason":"in_progress"}`: false,
		`{"detail":"x"}`:                        false,
	} {
		var v any
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatal(err)
		}
		if err := one.VisitJSON(v); (err == nil) != ok {
			t.Errorf("POST /jobs 422 %s: accepted %v, want %v (%v)", body, err == nil, ok, err)
		}
	}
}

// TestSpecComponentsAreUsed keeps the document tidy: every component is referenced,
// except the 404/405 responses (both shapes), which stand for routes the document
// cannot list.
func TestSpecComponentsAreUsed(t *testing.T) {
	var raw map[string]any
	if err := json.Unmarshal(Spec(), &raw); err != nil {
		t.Fatal(err)
	}
	refs := map[string]bool{}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if s, ok := e.(string); ok && k == "$ref" {
					refs[s] = true
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(raw)
	unreferenced := map[string]bool{
		"#/components/responses/NotFound":           true,
		"#/components/responses/MethodNotAllowed":   true,
		"#/components/responses/V2NotFound":         true,
		"#/components/responses/V2MethodNotAllowed": true,
		// Security schemes are named by "security" requirements, never by $ref.
		"#/components/securitySchemes/bearer": true,
		"#/components/securitySchemes/apiKey": true,
	}
	for kind, comps := range raw["components"].(map[string]any) {
		for name := range comps.(map[string]any) {
			ref := "#/components/" + kind + "/" + name
			if !refs[ref] && !unreferenced[ref] {
				t.Errorf("%s is never referenced", ref)
			}
		}
	}
}

func TestSpecReturnsACopy(t *testing.T) {
	a := Spec()
	a[0] = 'x'
	if Spec()[0] != '{' {
		t.Fatal("Spec exposes the embedded document to changes")
	}
}

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	e := echo.New()
	e.HideBanner = true
	// The API answers errors FastAPI's way; this stands in for its handler.
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		code, msg := http.StatusInternalServerError, "Internal Server Error"
		if he, ok := err.(*echo.HTTPError); ok {
			code, msg = he.Code, http.StatusText(he.Code)
		}
		_ = c.JSON(code, map[string]string{"detail": msg})
	}
	Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, method, u string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestRegisterServesSpec(t *testing.T) {
	srv := newServer(t)
	resp, body := get(t, http.MethodGet, srv.URL+"/openapi.json", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /openapi.json: %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if !bytes.Equal(body, Spec()) {
		t.Error("GET /openapi.json does not serve Spec()")
	}
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}

	resp, body = get(t, http.MethodHead, srv.URL+"/openapi.json", nil)
	if resp.StatusCode != http.StatusOK || len(body) != 0 {
		t.Errorf("HEAD /openapi.json: %d with %d body bytes", resp.StatusCode, len(body))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("HEAD Content-Type = %q", ct)
	}
	if resp.ContentLength != int64(len(Spec())) {
		t.Errorf("HEAD Content-Length = %d, want %d", resp.ContentLength, len(Spec()))
	}

	resp, _ = get(t, http.MethodGet, srv.URL+"/openapi.json", map[string]string{"If-None-Match": etag})
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", resp.StatusCode)
	}
}

var (
	srcAttr  = regexp.MustCompile(`(?i)\b(?:src|href)\s*=\s*["']([^"']*)["']`)
	absolute = regexp.MustCompile(`(?i)^([a-z][a-z0-9+.-]*:|//)`)
)

func TestRegisterServesDocsOffline(t *testing.T) {
	srv := newServer(t)
	resp, body := get(t, http.MethodGet, srv.URL+"/docs", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /docs: %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	page := string(body)
	if strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Error("the page names an outside URL")
	}
	if strings.Contains(page, "<script>") {
		t.Error("the page has an inline script")
	}

	base, _ := url.Parse(srv.URL + "/docs")
	var refs []string
	for _, m := range srcAttr.FindAllStringSubmatch(page, -1) {
		ref := m[1]
		if absolute.MatchString(ref) {
			t.Errorf("the page loads %q from outside", ref)
			continue
		}
		u, err := base.Parse(ref)
		if err != nil {
			t.Errorf("bad reference %q: %v", ref, err)
			continue
		}
		if !strings.HasPrefix(u.Path, AssetsPrefix) {
			t.Errorf("%q resolves to %s, outside %s", ref, u.Path, AssetsPrefix)
		}
		refs = append(refs, u.Path)
	}
	for _, want := range []string{"swagger-ui-bundle.js", "swagger-ui.css", "swagger-initializer.js"} {
		if !slices.Contains(refs, AssetsPrefix+want) {
			t.Errorf("the page does not load %s (it loads %v)", want, refs)
		}
	}

	// Every asset the page loads is served, with the right type, byte for byte.
	for _, p := range refs {
		resp, body := get(t, http.MethodGet, srv.URL+p, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
			continue
		}
		name := strings.TrimPrefix(p, AssetsPrefix)
		want, err := os.ReadFile("swagger-ui/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body, want) {
			t.Errorf("GET %s does not serve swagger-ui/%s", p, name)
		}
		if resp.Header.Get("ETag") == "" || resp.Header.Get("Cache-Control") == "" {
			t.Errorf("GET %s: no ETag or Cache-Control", p)
		}
	}

	_, body = get(t, http.MethodGet, srv.URL+AssetsPrefix+"swagger-initializer.js", nil)
	js := string(body)
	if !strings.Contains(js, `new URL("openapi.json", window.location.href)`) || strings.Contains(js, "http://") || strings.Contains(js, "https://") {
		t.Errorf("swagger-initializer.js must point Swagger UI at openapi.json and nowhere else:\n%s", js)
	}
	if u, _ := base.Parse("openapi.json"); u.Path != SpecPath {
		t.Errorf("openapi.json relative to /docs is %s", u.Path)
	}
}

func TestRegisterAssetTypes(t *testing.T) {
	srv := newServer(t)
	for name, want := range map[string]string{
		"swagger-ui-bundle.js":   "text/javascript; charset=utf-8",
		"swagger-initializer.js": "text/javascript; charset=utf-8",
		"swagger-ui.css":         "text/css; charset=utf-8",
		"favicon-32x32.png":      "image/png",
		"favicon-16x16.png":      "image/png",
	} {
		resp, body := get(t, http.MethodGet, srv.URL+AssetsPrefix+name, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", name, resp.StatusCode)
			continue
		}
		if got := resp.Header.Get("Content-Type"); got != want {
			t.Errorf("%s: Content-Type %q, want %q", name, got, want)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no X-Content-Type-Options: nosniff", name)
		}
		if strings.HasSuffix(name, ".png") && !bytes.HasPrefix(body, []byte("\x89PNG")) {
			t.Errorf("%s is not a PNG", name)
		}
	}

	// The upstream files are the pinned release, unchanged (see swagger-ui/README.md).
	for name, sum := range map[string]string{
		"swagger-ui-bundle.js": "e6a898692f2d768e807c3ba4626068a69a2c5dd960dd6c76f3e4d3a3de180af2",
		"swagger-ui.css":       "5ed08757e53da3e026d6cbecc61fe5d43585c9560b302d534ad56692519a273d",
	} {
		_, body := get(t, http.MethodGet, srv.URL+AssetsPrefix+name, nil)
		got := sha256.Sum256(body)
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s is not swagger-ui-dist %s's file (%d bytes)", name, SwaggerUIVersion, len(body))
		}
	}

	resp, body := get(t, http.MethodHead, srv.URL+AssetsPrefix+"swagger-ui.css", nil)
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.Header.Get("Content-Type") != "text/css; charset=utf-8" {
		t.Errorf("HEAD asset: %d, %d bytes, %q", resp.StatusCode, len(body), resp.Header.Get("Content-Type"))
	}
	resp, _ = get(t, http.MethodGet, srv.URL+AssetsPrefix+"nope.js", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown asset: %d, want 404", resp.StatusCode)
	}
	resp, _ = get(t, http.MethodGet, srv.URL+"/docs/", nil)
	if resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("GET /docs/: %d, want 307", resp.StatusCode)
	}
	loc, _ := url.Parse(srv.URL + "/docs/")
	if u, err := loc.Parse(resp.Header.Get("Location")); err != nil || u.Path != DocsPath {
		t.Errorf("GET /docs/ redirects to %q", resp.Header.Get("Location"))
	}
}
