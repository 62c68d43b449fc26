package apidoc

import (
	"encoding/json"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/warren-farm/warren/pkg/reason"
)

const reasonRef = "#/components/schemas/Reason"

// TestSpecReasonIsReasonAll: the Reason enum lists exactly the strings of
// reason.All(), the status contract's vocabulary, each once.
func TestSpecReasonIsReasonAll(t *testing.T) {
	doc := loadDoc(t)
	s := doc.Components.Schemas["Reason"]
	if s == nil || s.Value == nil {
		t.Fatal("components.schemas.Reason is missing")
	}
	var enum []string
	for _, v := range s.Value.Enum {
		str, ok := v.(string)
		if !ok {
			t.Fatalf("Reason's enum has %v (%T), want strings only", v, v)
		}
		enum = append(enum, str)
	}
	var want []string
	for _, r := range reason.All() {
		want = append(want, r.String())
	}
	if !slices.Equal(enum, want) {
		missing, extra := setDiff(want, enum), setDiff(enum, want)
		t.Errorf("Reason's enum is not reason.All(): missing %v, extra %v (order and duplicates count too)\n got %v\nwant %v", missing, extra, enum, want)
	}
	// The table in Reason's description names every value too.
	for _, r := range want {
		if !strings.Contains(s.Value.Description, "| `"+r+"` |") {
			t.Errorf("Reason's description has no table row for %q", r)
		}
	}
}

func setDiff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// reasonStatus maps a reason's name to its status (pkg/reason).
func reasonStatus() map[string]int {
	m := map[string]int{}
	for _, r := range reason.All() {
		m[r.String()] = r.Status()
	}
	return m
}

// operations lists every operation of the document as "METHOD path".
func operations(doc *openapi3.T) map[string]*openapi3.Operation {
	out := map[string]*openapi3.Operation{}
	for p, item := range doc.Paths.Map() {
		for m, op := range item.Operations() {
			out[m+" "+p] = op
		}
	}
	return out
}

// TestSpecOperationsAreComplete: every operation has a unique operationId, a summary
// and a tag; every response a description; every response with a body a schema for
// each media type. Only HEAD answers have no body, and they mirror their GET.
func TestSpecOperationsAreComplete(t *testing.T) {
	doc := loadDoc(t)
	ids := map[string]string{}
	ops := operations(doc)
	if len(ops) < 25 {
		t.Errorf("only %d operations: the walk is broken", len(ops))
	}
	for name, op := range ops {
		if op.OperationID == "" || op.Summary == "" || len(op.Tags) == 0 {
			t.Errorf("%s: operationId, summary and tags are all wanted", name)
		}
		if other, dup := ids[op.OperationID]; dup {
			t.Errorf("%s and %s share the operationId %q", name, other, op.OperationID)
		}
		ids[op.OperationID] = name
		head := strings.HasPrefix(name, http.MethodHead+" ")
		if op.Responses == nil || op.Responses.Len() == 0 {
			t.Errorf("%s: no responses", name)
			continue
		}
		for code, r := range op.Responses.Map() {
			if _, err := strconv.Atoi(code); err != nil {
				t.Errorf("%s %s: every status is spelled out (no default, no 5XX)", name, code)
			}
			if r.Value == nil || r.Value.Description == nil || *r.Value.Description == "" {
				t.Errorf("%s %s: response without a description", name, code)
				continue
			}
			switch {
			case head && len(r.Value.Content) > 0:
				t.Errorf("%s %s: a HEAD answer has no body", name, code)
			case !head && len(r.Value.Content) == 0:
				t.Errorf("%s %s: response without a body", name, code)
			}
			for ct, mt := range r.Value.Content {
				if mt.Schema == nil {
					t.Errorf("%s %s %s: no schema", name, code, ct)
				}
			}
		}
	}
	for p, item := range doc.Paths.Map() {
		if item.Head == nil {
			continue
		}
		if item.Get == nil {
			t.Errorf("HEAD %s has no GET to mirror", p)
			continue
		}
		if h, g := slices.Sorted(maps.Keys(item.Head.Responses.Map())), slices.Sorted(maps.Keys(item.Get.Responses.Map())); !slices.Equal(h, g) {
			t.Errorf("HEAD %s answers %v, GET %v", p, h, g)
		}
	}
}

// TestSpecRefsResolve: every $ref points inside this document, at a component that
// exists.
func TestSpecRefsResolve(t *testing.T) {
	var raw map[string]any
	if err := json.Unmarshal(Spec(), &raw); err != nil {
		t.Fatal(err)
	}
	comps := raw["components"].(map[string]any)
	n := 0
	walkJSON(raw, func(path []string, key string, v any) {
		if key != "$ref" {
			return
		}
		n++
		ref, ok := v.(string)
		if !ok {
			t.Errorf("%s: $ref is %T", strings.Join(path, "/"), v)
			return
		}
		parts := strings.Split(strings.TrimPrefix(ref, "#/components/"), "/")
		if !strings.HasPrefix(ref, "#/components/") || len(parts) != 2 {
			t.Errorf("%s: $ref %q is not #/components/KIND/NAME", strings.Join(path, "/"), ref)
			return
		}
		kind, _ := comps[parts[0]].(map[string]any)
		if _, ok := kind[parts[1]]; !ok {
			t.Errorf("%s: $ref %q resolves to nothing", strings.Join(path, "/"), ref)
		}
	})
	if n < 100 {
		t.Errorf("only %d $refs found: the walk is broken", n)
	}
}

// walkJSON calls f for every member of every object in v, with the path to it.
func walkJSON(v any, f func(path []string, key string, v any)) {
	var walk func(path []string, v any)
	walk = func(path []string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(v)) {
				f(path, k, v[k])
				walk(append(slices.Clip(path), k), v[k])
			}
		case []any:
			for i, e := range v {
				walk(append(slices.Clip(path), strconv.Itoa(i)), e)
			}
		}
	}
	walk(nil, v)
}

// TestSpecExamplesValidate checks every example of the document against its schema:
// media types (request and response bodies), parameters and schemas. The loader's
// own validation does too; this test keeps it so whatever the loader's options.
func TestSpecExamplesValidate(t *testing.T) {
	doc := loadDoc(t)
	n := 0
	check := func(where string, s *openapi3.SchemaRef, example any) {
		t.Helper()
		n++
		if s == nil || s.Value == nil {
			t.Errorf("%s: an example without a schema", where)
			return
		}
		if err := s.Value.VisitJSON(example); err != nil {
			t.Errorf("%s: the example does not match its schema: %v", where, err)
		}
	}
	media := func(where string, content openapi3.Content) {
		for ct, mt := range content {
			if mt.Example != nil {
				check(where+" "+ct, mt.Schema, mt.Example)
			}
			for name, ex := range mt.Examples {
				check(where+" "+ct+" example "+name, mt.Schema, ex.Value.Value)
			}
		}
	}
	for name, op := range operations(doc) {
		if op.RequestBody != nil {
			media(name+" request", op.RequestBody.Value.Content)
		}
		for code, r := range op.Responses.Map() {
			media(name+" "+code, r.Value.Content)
		}
	}
	for name, r := range doc.Components.Responses {
		media("components.responses."+name, r.Value.Content)
	}
	for name, p := range doc.Components.Parameters {
		if p.Value.Example != nil {
			check("components.parameters."+name, p.Value.Schema, p.Value.Example)
		}
	}
	seen := map[*openapi3.Schema]bool{}
	var schema func(where string, s *openapi3.SchemaRef)
	schema = func(where string, s *openapi3.SchemaRef) {
		if s == nil || s.Value == nil || seen[s.Value] {
			return
		}
		seen[s.Value] = true
		if s.Value.Example != nil {
			check(where, s, s.Value.Example)
		}
		for k, p := range s.Value.Properties {
			schema(where+"."+k, p)
		}
		schema(where+"[]", s.Value.Items)
		for _, l := range []openapi3.SchemaRefs{s.Value.AllOf, s.Value.OneOf, s.Value.AnyOf} {
			for i, e := range l {
				schema(where+"/"+strconv.Itoa(i), e)
			}
		}
	}
	for name, s := range doc.Components.Schemas {
		schema("components.schemas."+name, s)
	}
	if n < 60 {
		t.Errorf("only %d examples checked: the walk is broken", n)
	}

	// The check can fail.
	bad := map[string]any{"live": "yes"}
	if doc.Components.Schemas["LiveResponse"].Value.VisitJSON(bad) == nil {
		t.Error("LiveResponse accepts {\"live\": \"yes\"}")
	}
}

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// TestSpecSnakeCase: every member name the document defines is snake_case.
func TestSpecSnakeCase(t *testing.T) {
	var raw map[string]any
	if err := json.Unmarshal(Spec(), &raw); err != nil {
		t.Fatal(err)
	}
	n := 0
	walkJSON(raw, func(path []string, key string, v any) {
		where := strings.Join(path, "/")
		switch key {
		case "properties":
			props, ok := v.(map[string]any)
			if !ok {
				return
			}
			for name := range props {
				n++
				if !snakeCase.MatchString(name) {
					t.Errorf("%s: member %q is not snake_case", where, name)
				}
			}
		case "required":
			names, ok := v.([]any)
			if !ok {
				return
			}
			for _, name := range names {
				if s, _ := name.(string); !snakeCase.MatchString(s) {
					t.Errorf("%s: required member %v is not snake_case", where, name)
				}
			}
		}
	})
	if n < 150 {
		t.Errorf("only %d members found: the walk is broken", n)
	}
}

// TestSpecErrorReasons: every error body of every operation carries Reason (the
// ValidationError list of a 422 excepted), and where a response narrows it, to
// values whose status (pkg/reason) is the response's, a 422 reason becoming a 400
// under /v2. A 503 always comes with Retry-After. Probe answers (a 503 from /ready,
// a 400 from the protocol's readiness probes) are not error bodies.
func TestSpecErrorReasons(t *testing.T) {
	doc := loadDoc(t)
	statuses := reasonStatus()
	enum := doc.Components.Schemas["Reason"].Value.Enum
	narrowed := 0
	for p, item := range doc.Paths.Map() {
		v2 := p == "/v2" || strings.HasPrefix(p, "/v2/")
		for m, op := range item.Operations() {
			for code, r := range op.Responses.Map() {
				status, _ := strconv.Atoi(code)
				mt := r.Value.Content.Get("application/json")
				if status < 400 || mt == nil {
					continue
				}
				where := m + " " + p + " " + code
				if probe(mt.Schema) {
					continue
				}
				alts := openapi3.SchemaRefs{mt.Schema}
				if len(mt.Schema.Value.OneOf) > 0 {
					alts = mt.Schema.Value.OneOf
				}
				for _, alt := range alts {
					if alt.Ref == "#/components/schemas/HTTPValidationError" {
						if v2 || status != 422 {
							t.Errorf("%s: FastAPI's validation shape is for 422 outside /v2 only", where)
						}
						continue
					}
					props := reasonProps(alt)
					if !slices.ContainsFunc(props, func(s *openapi3.SchemaRef) bool { return s.Ref == reasonRef }) {
						t.Errorf("%s: the error body has no reason of type Reason", where)
					}
					if _, ok := allProps(alt)["error"]; ok != v2 {
						t.Errorf("%s: error bodies are {\"error\"} exactly under /v2 (has error: %v)", where, ok)
					}
					for _, s := range props {
						if s.Ref != "" {
							continue
						}
						narrowed++
						if len(s.Value.Enum) == 0 {
							t.Errorf("%s: reason is narrowed without an enum", where)
						}
						for _, e := range s.Value.Enum {
							name, _ := e.(string)
							if !slices.Contains(enum, e) {
								t.Errorf("%s: reason %v is not a Reason", where, e)
								continue
							}
							want := statuses[name]
							if v2 && want == 422 {
								want = 400
							}
							if want != status {
								t.Errorf("%s: reason %s is a %d", where, name, statuses[name])
							}
						}
					}
				}
				if status == 503 {
					if h := r.Value.Headers["Retry-After"]; h == nil || !h.Value.Required {
						t.Errorf("%s: a 503 always comes with Retry-After", where)
					}
				}
			}
		}
	}
	if narrowed < 20 {
		t.Errorf("only %d narrowed reasons found: the walk is broken", narrowed)
	}
}

// probe reports whether s is a readiness probe's answer.
func probe(s *openapi3.SchemaRef) bool {
	for _, a := range append(openapi3.SchemaRefs{s}, s.Value.AllOf...) {
		switch a.Ref {
		case "#/components/schemas/Readiness", "#/components/schemas/ReadyResponse", "#/components/schemas/ModelReadyResponse":
			return true
		}
	}
	return false
}

// reasonProps collects the "reason" property schemas of s and of its allOf.
func reasonProps(s *openapi3.SchemaRef) []*openapi3.SchemaRef {
	if s == nil || s.Value == nil {
		return nil
	}
	var out []*openapi3.SchemaRef
	if r := s.Value.Properties["reason"]; r != nil {
		out = append(out, r)
	}
	for _, a := range s.Value.AllOf {
		out = append(out, reasonProps(a)...)
	}
	return out
}

// allProps is the properties of s and of its allOf.
func allProps(s *openapi3.SchemaRef) openapi3.Schemas {
	out := openapi3.Schemas{}
	if s == nil || s.Value == nil {
		return out
	}
	maps.Copy(out, s.Value.Properties)
	for _, a := range s.Value.AllOf {
		maps.Copy(out, allProps(a))
	}
	return out
}

// TestSpecV2StatusesAndShapes pins the statuses of the Open Inference Protocol's
// operations.
func TestSpecV2StatusesAndShapes(t *testing.T) {
	doc := loadDoc(t)
	want := map[string][]string{
		"GET /v2":                                         {"200"},
		"GET /v2/health/live":                             {"200"},
		"HEAD /v2/health/live":                            {"200"},
		"GET /v2/health/ready":                            {"200", "400"},
		"HEAD /v2/health/ready":                           {"200", "400"},
		"GET /v2/models":                                  {"200", "401", "429"},
		"GET /models":                                     {"200", "401", "429"},
		"GET /v2/models/{name}":                           {"200", "401", "403", "404", "429"},
		"GET /v2/models/{name}/versions/{version}":        {"200", "401", "403", "404", "429"},
		"GET /v2/models/{name}/ready":                     {"200", "400", "401", "403", "404", "429"},
		"HEAD /v2/models/{name}/ready":                    {"200", "400", "401", "403", "404", "429"},
		"GET /v2/models/{name}/versions/{version}/ready":  {"200", "400", "401", "403", "404", "429"},
		"HEAD /v2/models/{name}/versions/{version}/ready": {"200", "400", "401", "403", "404", "429"},
		"POST /v2/models/{name}/infer":                    {"200", "202", "400", "401", "403", "404", "413", "429", "502", "503", "504"},
		"POST /v2/models/{name}/versions/{version}/infer": {"200", "202", "400", "401", "403", "404", "413", "429", "502", "503", "504"},
		"GET /capacity":                                   {"200", "400", "404"},
	}
	ops := operations(doc)
	for name, codes := range want {
		op := ops[name]
		if op == nil {
			t.Errorf("%s is missing", name)
			continue
		}
		got := slices.Sorted(maps.Keys(op.Responses.Map()))
		if !slices.Equal(got, codes) {
			t.Errorf("%s statuses %v, want %v", name, got, codes)
		}
		for code, r := range op.Responses.Map() {
			if strings.Contains(name, "/v2") {
				if h := r.Value.Headers["X-Request-ID"]; h == nil || !h.Value.Required {
					t.Errorf("%s %s: X-Request-ID must be a required response header", name, code)
				}
			}
		}
	}
	for _, name := range []string{"POST /v2/models/{name}/infer", "POST /v2/models/{name}/versions/{version}/infer"} {
		op := ops[name]
		if ref := op.RequestBody.Ref; ref != "#/components/requestBodies/InferenceRequest" {
			t.Errorf("%s takes %q", name, ref)
		}
		accepted := op.Responses.Status(202).Value
		for _, h := range []string{"Location", "Preference-Applied", "X-Request-ID"} {
			if accepted.Headers[h] == nil || !accepted.Headers[h].Value.Required {
				t.Errorf("%s 202: %s must be a required response header", name, h)
			}
		}
		if ref := op.Responses.Status(200).Value.Content.Get("application/json").Schema.Ref; ref != "#/components/schemas/InferenceResponse" {
			t.Errorf("%s 200 is %q", name, ref)
		}
		var params []string
		for _, p := range op.Parameters {
			params = append(params, p.Value.In+":"+p.Value.Name)
		}
		sort.Strings(params)
		if w := []string{"header:Prefer", "header:X-Request-ID", "header:X-Request-Timeout"}; !slices.Equal(params, w) {
			t.Errorf("%s parameters %v, want %v", name, params, w)
		}
	}
	dt := doc.Components.Schemas["Datatype"].Value.Enum
	if len(dt) != 13 || !slices.Contains(dt, any("BYTES")) || !slices.Contains(dt, any("FP16")) {
		t.Errorf("Datatype is %v, want the protocol's 13 datatypes", dt)
	}
}

// TestSpecV2Bodies validates bodies written after the Open Inference Protocol's
// specification (inference_rest.md and open_inference_rest.yaml of
// kserve/open-inference-protocol) against the document's schemas, and bodies the
// protocol forbids.
func TestSpecV2Bodies(t *testing.T) {
	doc := loadDoc(t)
	for _, c := range []struct {
		schema, body string
		ok           bool
	}{
		// The specification's inference request example: two inputs (a 2×2 UINT32
		// and a BOOL) and one requested output.
		{"InferenceRequest", `{"id":"42","inputs":[{"name":"input0","shape":[2,2],"datatype":"UINT32","data":[1,2,3,4]},
			{"name":"input1","shape":[3],"datatype":"BOOL","data":[true]}],"outputs":[{"name":"output0"}]}`, true},
		// Its answer, a 3×2 FP32 tensor. The specification's example leaves out
		// model_name, which its schema requires and warren always sends.
		{"InferenceResponse", `{"model_name":"mymodel","id":"42","outputs":[{"name":"output0","shape":[3,2],"datatype":"FP32","data":[1.0,1.1,2.0,2.1,3.0,3.1]}]}`, true},
		{"InferenceResponse", `{"id":"42","outputs":[{"name":"output0","shape":[3,2],"datatype":"FP32","data":[1.0,1.1,2.0,2.1,3.0,3.1]}]}`, false},
		// Tensor data in its natural, nested form, flat, and as a single value.
		{"RequestInput", `{"name":"x","shape":[2,2],"datatype":"INT32","data":[[1,2],[4,5]]}`, true},
		{"RequestInput", `{"name":"x","shape":[2,2,1],"datatype":"INT32","data":[[[1],[2]],[[4],[5]]]}`, true},
		{"RequestInput", `{"name":"x","shape":[],"datatype":"FP64","data":0.5}`, true},
		{"RequestInput", `{"name":"s","shape":[2],"datatype":"BYTES","data":["a","b"],"parameters":{"content_type":"str"}}`, true},
		{"RequestInput", `{"name":"x","shape":[2],"datatype":"INT32","data":[1,null]}`, false},
		{"RequestInput", `{"name":"x","shape":[2],"datatype":"INT32","data":[1,{"v":2}]}`, false},
		{"RequestInput", `{"name":"x","shape":[2],"datatype":"INT32"}`, false},
		{"RequestInput", `{"name":"x","shape":[-1],"datatype":"INT32","data":[1]}`, false}, // concrete shapes only
		{"RequestInput", `{"name":"x","shape":[1],"datatype":"FP128","data":[1]}`, false},
		{"RequestInput", `{"name":"x","shape":[1],"datatype":"fp32","data":[1]}`, false}, // case-sensitive
		// Parameters: strings, numbers and booleans only.
		{"InferenceRequest", `{"parameters":{"temperature":0.2,"stream":false,"mode":"fast"},"inputs":[]}`, true},
		{"InferenceRequest", `{"parameters":{"nested":{"a":1}},"inputs":[]}`, false},
		{"InferenceRequest", `{"parameters":{"list":[1]},"inputs":[]}`, false},
		{"InferenceRequest", `{"id":"42"}`, false},
		{"RequestOutput", `{"name":"output0","parameters":{"classification":2}}`, true},
		{"RequestOutput", `{"parameters":{}}`, false},
		// Metadata: -1 marks a variable dimension.
		{"ModelMetadata", `{"name":"mymodel","versions":["1","2"],"platform":"onnx","inputs":[{"name":"input0","datatype":"FP32","shape":[-1,3,224,224]}],
			"outputs":[{"name":"output0","datatype":"FP32","shape":[-1,1000]}]}`, true},
		{"ModelMetadata", `{"name":"mymodel","platform":"onnx","inputs":[],"outputs":[]}`, true},
		{"ModelMetadata", `{"name":"mymodel","platform":"onnx","inputs":[{"name":"i","datatype":"FP32","shape":[-2]}],"outputs":[]}`, false},
		{"TensorMetadata", `{"name":"i","datatype":"FP32"}`, false},
		{"ServerMetadata", `{"name":"warren","version":"dev","extensions":["warren_models","warren_async"]}`, true},
		{"ServerMetadata", `{"name":"warren","version":"dev"}`, false},
		{"LiveResponse", `{"live":true}`, true},
		{"ReadyResponse", `{"ready":false}`, true},
		{"ModelReadyResponse", `{"name":"mymodel","ready":true}`, true},
		{"ModelReadyResponse", `{"name":"mymodel","version":"1","ready":false}`, true},
		{"ModelReadyResponse", `{"name":"mymodel"}`, false},
		// The protocol's error object, with and without warren's reason.
		{"V2Error", `{"error":"unknown model"}`, true},
		{"V2Error", `{"error":"unknown model","reason":"not_found"}`, true},
		{"V2Error", `{"error":"x","reason":"nope"}`, false},
		{"V2Error", `{"detail":"unknown model"}`, false},
		// POST /jobs takes either form.
		{"JobRequest", `{"data":"x"}`, true},
		{"JobRequest", `{"data":"x","forward_to_model":"yes","extra":1}`, true},
		{"JobRequest", `{"model":"digits","inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[0,1]}]}`, true},
		{"JobRequest", `{"model":"digits","version":"2","id":"a","inputs":[]}`, true},
		{"JobRequest", `{"data":"x","forward_to_model":false}`, false},
		{"JobRequest", `{"data":"x","model":"digits"}`, false}, // a v2 request without inputs
		{"JobRequest", `{"inputs":[]}`, false},                 // inputs without model
		{"JobRequest", `{"model":"digits","version":2,"inputs":[]}`, false},
		{"JobRequest", `{"model":"no.dots","inputs":[]}`, false},
		// Traffic settings (a warren extension): integer weights, a header name.
		{"TrafficSettings", `{"weights":{"1":90,"2":10},"sticky_header":"X-User-ID","default_version":"1"}`, true},
		{"TrafficSettings", `{"default_version":"2"}`, true},
		{"TrafficSettings", `{"weights":null,"default_version":"2"}`, true},
		{"TrafficSettings", `{"weights":{"1":1.5}}`, false},
		{"TrafficSettings", `{"weights":{"1":-1}}`, false},
		{"TrafficSettings", `{"weights":{"1":"90"}}`, false},
		{"TrafficSettings", `{"weights":{"1":1},"sticky_header":"X User"}`, false},
		{"TrafficSettings", `{"default_version":"01"}`, false},
		{"TrafficSettings", `{"weight":{"1":1}}`, false},
		{"Traffic", `{"model":"digits","configured":true,"weights":{"1":90,"2":10},"sticky_header":"X-User-Id","split":{"1":0.9,"2":0.1}}`, true},
		{"Traffic", `{"model":"digits","configured":false,"split":{"2":1}}`, true},
		{"Traffic", `{"model":"digits","configured":false}`, false},
		{"Traffic", `{"model":"digits","configured":false,"split":{"2":2}}`, false},
	} {
		s := doc.Components.Schemas[c.schema]
		if s == nil {
			t.Fatalf("components.schemas.%s is missing", c.schema)
		}
		var v any
		if err := json.Unmarshal([]byte(c.body), &v); err != nil {
			t.Fatalf("%s: %v", c.body, err)
		}
		if err := s.Value.VisitJSON(v); (err == nil) != c.ok {
			t.Errorf("%s %s: accepted %v, want %v (%v)", c.schema, c.body, err == nil, c.ok, err)
		}
	}
}
