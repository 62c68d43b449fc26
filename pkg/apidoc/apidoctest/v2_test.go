package apidoctest

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// Exchanges of the Open Inference Protocol's endpoints (and GET /models), shaped as
// pkg/api's handlers answer them: the worker's inference response passed through, a
// job for Prefer: respond-async, and {"error", "reason"?} for every error under /v2
// (pkg/httperr).

// The protocol's errors carry the request ID, and a 503 Retry-After.
var v2Unavailable = with(jsonWithID, "Retry-After", "5")

const (
	// A good request for model digits (FP32 [-1, 64]; two pixels shown, the schema
	// does not count elements) and the worker's answer to it.
	inferRequest  = `{"id":"order-42","inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[0,7]}],"outputs":[{"name":"probabilities"}]}`
	inferResponse = `{"model_name":"digits","model_version":"1","id":"order-42",
		"outputs":[{"name":"probabilities","datatype":"FP32","shape":[1,3],"data":[0.04221528,0.801941,0.15584372]}]}`
	// The specification's example request (inference_rest.md): a 2×2 UINT32 and a
	// BOOL input, one output asked for. Its BOOL input has 1 element for a shape of
	// 3: the document cannot see that, the API answers 400 bad_input.
	specRequest = `{"id":"42","inputs":[{"name":"input0","shape":[2,2],"datatype":"UINT32","data":[1,2,3,4]},
		{"name":"input1","shape":[3],"datatype":"BOOL","data":[true]}],"outputs":[{"name":"output0"}]}`
	// The specification's example answer (a 3×2 FP32), with the model_name that its
	// schema requires and its example leaves out.
	specResponse = `{"model_name":"mymodel","id":"42","outputs":[{"name":"output0","shape":[3,2],"datatype":"FP32","data":[1.0,1.1,2.0,2.1,3.0,3.1]}]}`

	digitsMetadata = `{"name":"digits","versions":["1","2"],"platform":"onnx",
		"inputs":[{"name":"input","datatype":"FP32","shape":[-1,64]}],"outputs":[{"name":"probabilities","datatype":"FP32","shape":[-1,10]}]}`
	modelList = `{"models":[{"name":"digits","default_version":"2","versions":[
		{"version":"1","platform":"onnx","ready":false,"workers":0,"announced_by":[],"max_batch_size":32},
		{"version":"2","platform":"onnx","ready":true,"workers":2,"announced_by":["worker-a","worker-b"],"max_batch_size":32}]},
		{"name":"seed","default_version":"1","versions":[{"version":"1","platform":"warren_seed","ready":true,"workers":1,"announced_by":["worker-a"],"max_batch_size":0}]}]}`

	jobInferRunning = `{"id":"jm4tq2zk7hx3vd6w5nrbyc2pfga","status":"running","model":"digits","model_version":"1",
		"created_at":"2025-06-01T12:00:00.123456789Z","started_at":"2025-06-01T12:00:00.2Z","finished_at":null,"attempts":1,
		"links":{"self":"/jobs/jm4tq2zk7hx3vd6w5nrbyc2pfga"}}`
)

var (
	inferAccepted = with(jsonWithID, "Location", "/jobs/jm4tq2zk7hx3vd6w5nrbyc2pfga", "Preference-Applied", "respond-async")
	noBody        = map[string]string{"X-Request-ID": "req-1"}
)

var v2Conforming = []exchange{
	{name: "v2 infer 401", method: "POST", path: "/v2/models/digits/infer", reqBody: inferRequest, status: 401,
		respHeader: with(jsonWithID, "WWW-Authenticate", `Bearer realm="warren", error="invalid_token", error_description="unknown API key"`),
		respBody:   `{"error":"Unauthorized: unknown API key","reason":"unauthorized"}`},
	{name: "v2 infer 403", method: "POST", path: "/v2/models/digits/infer", reqBody: inferRequest, status: 403,
		respBody: `{"error":"Forbidden: ci may not call model digits","reason":"forbidden"}`},
	{name: "v2 infer 429", method: "POST", path: "/v2/models/digits/infer", reqBody: inferRequest, status: 429, respHeader: v2Unavailable,
		respBody: `{"error":"Too many failed authentications from this address; retry later","reason":"auth_limited"}`},
	{name: "v2 server metadata", method: "GET", path: "/v2", status: 200,
		respBody: `{"name":"warren","version":"dev","extensions":["warren_models","warren_async"]}`},
	{name: "v2 live", method: "GET", path: "/v2/health/live", status: 200, respBody: `{"live":true}`},
	{name: "v2 live, HEAD", method: "HEAD", path: "/v2/health/live", status: 200, respHeader: noBody},
	{name: "v2 ready", method: "GET", path: "/v2/health/ready", status: 200, respBody: `{"ready":true}`},
	{name: "v2 not ready", method: "GET", path: "/v2/health/ready", status: 400, respBody: `{"ready":false}`},
	{name: "v2 not ready, HEAD", method: "HEAD", path: "/v2/health/ready", status: 400, respHeader: noBody},

	{name: "v2 model list", method: "GET", path: "/v2/models", status: 200, respBody: modelList},
	{name: "v2 model list, empty", method: "GET", path: "/v2/models", status: 200, respBody: `{"models":[]}`},
	{name: "model list", method: "GET", path: "/models", status: 200, respBody: modelList},
	{name: "v2 metadata", method: "GET", path: "/v2/models/digits", status: 200, respBody: digitsMetadata},
	{name: "v2 version metadata", method: "GET", path: "/v2/models/digits/versions/2", status: 200,
		respBody: strings.Replace(digitsMetadata, `["1","2"]`, `["2"]`, 1)},
	{name: "v2 metadata 404", method: "GET", path: "/v2/models/resnet", status: 404,
		respBody: `{"error":"Model not found: \"resnet\" (no worker has announced it)","reason":"not_found"}`},
	{name: "v2 version metadata 404", method: "GET", path: "/v2/models/digits/versions/3", status: 404,
		respBody: `{"error":"Model not found: digits has no version \"3\" (known: 1, 2)","reason":"not_found"}`},
	{name: "v2 metadata of a name the catalog cannot hold", method: "GET", path: "/v2/models/a.b", status: 404,
		respBody: `{"error":"Model not found: \"a.b\" (no worker has announced it)","reason":"not_found"}`},
	{name: "v2 model ready", method: "GET", path: "/v2/models/digits/ready", status: 200, respBody: `{"name":"digits","ready":true}`},
	{name: "v2 model version not ready", method: "GET", path: "/v2/models/digits/versions/1/ready", status: 400,
		respBody: `{"name":"digits","version":"1","ready":false}`},
	{name: "v2 model ready 404", method: "GET", path: "/v2/models/resnet/ready", status: 404,
		respBody: `{"error":"Model not found: \"resnet\" (no worker has announced it)","reason":"not_found"}`},
	{name: "v2 model ready, HEAD", method: "HEAD", path: "/v2/models/digits/ready", status: 200, respHeader: noBody},
	{name: "v2 model version not ready, HEAD", method: "HEAD", path: "/v2/models/digits/versions/1/ready", status: 400, respHeader: noBody},
	{name: "v2 model ready 404, HEAD", method: "HEAD", path: "/v2/models/resnet/ready", status: 404, respHeader: noBody},

	{name: "infer 200", method: "POST", path: "/v2/models/digits/infer", reqBody: inferRequest, status: 200, respBody: inferResponse},
	{name: "infer 200 on a version", method: "POST", path: "/v2/models/digits/versions/1/infer", reqBody: inferRequest, status: 200, respBody: inferResponse},
	{name: "infer 200, nested data, parameters, no id", method: "POST", path: "/v2/models/digits/infer", status: 200,
		reqHeader: map[string]string{"X-Request-Timeout": "2.5s", "X-Request-ID": "order-42"},
		reqBody: `{"parameters":{"priority":1,"tag":"a","trace":true},
			"inputs":[{"name":"input","shape":[2,2],"datatype":"FP32","data":[[0,7],[16,3]],"parameters":{"binary_data":false}}]}`,
		respHeader: with(jsonWithID, "X-Request-ID", "order-42"),
		respBody:   `{"model_name":"digits","model_version":"1","outputs":[{"name":"probabilities","datatype":"FP32","shape":[2,1],"data":[0.5,0.5]}]}`},
	{name: "infer 200, BYTES and a scalar", method: "POST", path: "/v2/models/seed/infer", status: 200,
		reqBody:  `{"inputs":[{"name":"data","shape":[],"datatype":"BYTES","data":"cat image data"}]}`,
		respBody: `{"model_name":"seed","model_version":"1","outputs":[{"name":"class","datatype":"BYTES","shape":[],"data":["dog"]}]}`},
	{name: "infer 200, the specification's answer", method: "POST", path: "/v2/models/mymodel/infer", reqBody: inferRequest, status: 200, respBody: specResponse},
	{name: "infer 400, the specification's request", method: "POST", path: "/v2/models/mymodel/infer", reqBody: specRequest, status: 400,
		respBody: `{"error":"input \"input1\": data has 1 elements, the shape says 3","reason":"bad_input"}`},
	{name: "infer 202", method: "POST", path: "/v2/models/digits/infer", reqHeader: prefer, reqBody: inferRequest, status: 202,
		respHeader: inferAccepted, respBody: jobInferRunning},
	{name: "infer 202 on a version, no wait", method: "POST", path: "/v2/models/digits/versions/1/infer",
		reqHeader: map[string]string{"Prefer": "respond-async"}, reqBody: inferRequest, status: 202,
		respHeader: inferAccepted, respBody: strings.Replace(jobInferRunning, `"running"`, `"queued"`, 1)},
	{name: "infer async 200", method: "POST", path: "/v2/models/digits/infer", reqHeader: prefer, reqBody: inferRequest, status: 200, respBody: inferResponse},
	{name: "infer 400 bad input", method: "POST", path: "/v2/models/digits/infer", reqBody: inferRequest, status: 400,
		respBody: `{"error":"input \"input\": shape [1 2]: dimension 1 must be 64 (the model expects [-1 64])","reason":"bad_input"}`},
	{name: "infer 400 malformed JSON", method: "POST", path: "/v2/models/digits/infer", reqBody: `{"inputs":`, status: 400,
		respBody: `{"error":"bad inference request: unexpected EOF","reason":"bad_input"}`},
	{name: "infer 400 binary extension", method: "POST", path: "/v2/models/digits/infer",
		reqHeader: map[string]string{"Inference-Header-Content-Length": "120"}, reqBody: inferRequest, status: 400,
		respBody: `{"error":"The binary tensor data extension is not supported: send the request as JSON","reason":"invalid"}`},
	{name: "infer 400 malformed timeout, no reason", method: "POST", path: "/v2/models/digits/infer",
		reqHeader: map[string]string{"X-Request-Timeout": "soon"}, reqBody: inferRequest, status: 400,
		respBody: `{"error":"validation failed: [header X-Request-Timeout]: X-Request-Timeout must be a positive duration such as 2.5s or 500ms, or seconds such as 3"}`},
	{name: "infer async 400, the job failed on its input", method: "POST", path: "/v2/models/digits/infer", reqHeader: prefer,
		reqBody: inferRequest, status: 400, respBody: `{"error":"bad_input: input rejected","reason":"bad_input"}`},
	{name: "infer 404", method: "POST", path: "/v2/models/resnet/infer", reqBody: inferRequest, status: 404,
		respBody: `{"error":"Model not found: \"resnet\" (no worker has announced it)","reason":"not_found"}`},
	{name: "infer 404 version", method: "POST", path: "/v2/models/digits/versions/9/infer", reqBody: inferRequest, status: 404,
		respBody: `{"error":"Model not found: digits has no version \"9\" (known: 1, 2)","reason":"not_found"}`},
	{name: "infer 413", method: "POST", path: "/v2/models/digits/infer", reqBody: inferRequest, status: 413,
		respBody: `{"error":"Request body too large: the limit is 1048576 bytes"}`},
	{name: "infer 502", method: "POST", path: "/v2/models/digits/infer", reqBody: inferRequest, status: 502,
		respBody: `{"error":"Model error: the model failed","reason":"model_error"}`},
	{name: "infer async 502", method: "POST", path: "/v2/models/digits/infer", reqHeader: prefer, reqBody: inferRequest, status: 502,
		respBody: `{"error":"run_timeout: the model ran longer than JOB_RUN_TIMEOUT","reason":"model_error"}`},
	{name: "infer 504", method: "POST", path: "/v2/models/digits/infer", reqBody: inferRequest, status: 504,
		respBody: `{"error":"The model did not answer before the request's deadline","reason":"timeout"}`},

	{name: "v2 404 unknown route", method: "GET", path: "/v2/repository/index", status: 404, respBody: `{"error":"Not Found"}`},
	{name: "v2 404 trailing slash", method: "GET", path: "/v2/", status: 404, respBody: `{"error":"Not Found"}`},
	{name: "v2 405 POST live", method: "POST", path: "/v2/health/live", status: 405, respBody: `{"error":"Method Not Allowed"}`},
	{name: "v2 405 GET infer", method: "GET", path: "/v2/models/digits/infer", status: 405, respBody: `{"error":"Method Not Allowed"}`},
	{name: "v2 405 DELETE /v2", method: "DELETE", path: "/v2", status: 405, respBody: `{"error":"Method Not Allowed"}`},
	{name: "v2 405 HEAD metadata", method: "HEAD", path: "/v2/models/digits", status: 405, respHeader: noBody},
}

// v2Unavailables are the 503s of infer, one per reason.
func v2Unavailables() []exchange {
	var out []exchange
	for i, r := range []string{"no_workers", "queue_full", "broker_unavailable", "draining", "store_unavailable", "jobs_unavailable"} {
		path := "/v2/models/digits/infer"
		if i%2 == 1 {
			path = "/v2/models/digits/versions/1/infer"
		}
		out = append(out, exchange{name: "infer 503 " + r, method: "POST", path: path, reqBody: inferRequest,
			status: 503, respHeader: with(v2Unavailable, "Retry-After", strconv.Itoa(i+1)), respBody: `{"error":"Model service is unavailable","reason":"` + r + `"}`})
	}
	return out
}

var v2NonConforming = []exchange{
	// The protocol's error shape, with a Reason of the right status.
	{name: "v2 404 in the lab's shape", want: `"error" is missing`, method: "GET", path: "/v2/models/resnet", status: 404,
		respBody: `{"detail":"Model not found","reason":"not_found"}`},
	{name: "v2 unknown route in the lab's shape", want: `"error" is missing`, method: "GET", path: "/v2/nope", status: 404, respBody: `{"detail":"Not Found"}`},
	{name: "unknown route in the v2 shape", want: `"detail" is missing`, method: "GET", path: "/v3/nope", status: 404, respBody: `{"error":"Not Found"}`},
	{name: "v2 405 in the lab's shape", want: `"error" is missing`, method: "PUT", path: "/v2/health/ready", status: 405, respBody: `{"detail":"Method Not Allowed"}`},
	{name: "infer 404 without reason", want: `"reason" is missing`, method: "POST", path: "/v2/models/resnet/infer", reqBody: inferRequest, status: 404,
		respBody: `{"error":"Model not found"}`},
	{name: "infer 400 with a 504 reason", want: `/reason`, method: "POST", path: "/v2/models/digits/infer", reqBody: inferRequest, status: 400,
		respBody: `{"error":"x","reason":"timeout"}`},
	{name: "infer 503 not_ready", want: `/reason`, method: "POST", path: "/v2/models/digits/infer", reqBody: inferRequest, status: 503,
		respHeader: v2Unavailable, respBody: `{"error":"x","reason":"not_ready"}`},
	{name: "infer 503 without Retry-After", want: `"Retry-After" missing`, method: "POST", path: "/v2/models/digits/infer", reqBody: inferRequest,
		status: 503, respBody: `{"error":"x","reason":"no_workers"}`},
	{name: "infer 503 without reason", want: `"reason" is missing`, method: "POST", path: "/v2/models/digits/infer", reqBody: inferRequest,
		status: 503, respHeader: v2Unavailable, respBody: `{"error":"x"}`},
	{name: "infer 422", want: `status is not supported`, method: "POST", path: "/v2/models/digits/infer", reqBody: inferRequest, status: 422,
		respBody: `{"detail":[{"type":"value_error","loc":["header","X-Request-Timeout"],"msg":"x"}]}`},
	{name: "infer 409", want: `status is not supported`, method: "POST", path: "/v2/models/digits/infer", reqBody: inferRequest, status: 409,
		respBody: `{"error":"x","reason":"in_progress"}`},

	// The inference response.
	{name: "infer 200 without model_name", want: `"model_name" is missing`, method: "POST", path: "/v2/models/digits/infer", reqBody: inferRequest,
		status: 200, respBody: strings.Replace(inferResponse, `"model_name":"digits",`, ``, 1)},
	{name: "infer 200 datatype in lower case", want: `/datatype`, method: "POST", path: "/v2/models/digits/infer", reqBody: inferRequest,
		status: 200, respBody: strings.Replace(inferResponse, `"FP32"`, `"fp32"`, 1)},
	{name: "infer 200 data with null", want: `/data`, method: "POST", path: "/v2/models/digits/infer", reqBody: inferRequest,
		status: 200, respBody: strings.Replace(inferResponse, `0.801941`, `null`, 1)},
	{name: "infer 200 negative dimension", want: `/shape`, method: "POST", path: "/v2/models/digits/infer", reqBody: inferRequest,
		status: 200, respBody: strings.Replace(inferResponse, `[1,3]`, `[-1,3]`, 1)},
	{name: "infer 200 parameters nested", want: `/parameters`, method: "POST", path: "/v2/models/digits/infer", reqBody: inferRequest,
		status: 200, respBody: strings.Replace(inferResponse, `"id":"order-42",`, `"id":"order-42","parameters":{"a":{"b":1}},`, 1)},
	{name: "infer 200 in the lab's shape", want: `"model_name" is missing`, method: "POST", path: "/v2/models/seed/infer", reqBody: inferRequest,
		status: 200, respBody: prediction},
	{name: "infer 202 without Preference-Applied", want: `"Preference-Applied" missing`, method: "POST", path: "/v2/models/digits/infer",
		reqHeader: prefer, reqBody: inferRequest, status: 202, respHeader: jobAccepted, respBody: jobInferRunning},
	{name: "infer 202 without Location", want: `"Location" missing`, method: "POST", path: "/v2/models/digits/infer",
		reqHeader: prefer, reqBody: inferRequest, status: 202, respHeader: with(jsonWithID, "Preference-Applied", "respond-async"), respBody: jobInferRunning},

	// Requests the protocol refuses must not be answered 200.
	{name: "request without inputs accepted", want: `"inputs" is missing`, method: "POST", path: "/v2/models/digits/infer",
		reqBody: `{"id":"1"}`, status: 200, respBody: inferResponse},
	{name: "unknown datatype accepted", want: `/datatype`, method: "POST", path: "/v2/models/digits/infer",
		reqBody: strings.Replace(inferRequest, `"FP32"`, `"FLOAT32"`, 1), status: 200, respBody: inferResponse},
	{name: "data with an object accepted", want: `/data`, method: "POST", path: "/v2/models/digits/infer",
		reqBody: strings.Replace(inferRequest, `[0,7]`, `[0,{"v":7}]`, 1), status: 200, respBody: inferResponse},
	{name: "input without shape accepted", want: `"shape" is missing`, method: "POST", path: "/v2/models/digits/infer",
		reqBody: strings.Replace(inferRequest, `"shape":[1,2],`, ``, 1), status: 200, respBody: inferResponse},
	{name: "parameter with a list accepted", want: `/parameters`, method: "POST", path: "/v2/models/digits/infer",
		reqBody: strings.Replace(inferRequest, `"id":"order-42",`, `"id":"order-42","parameters":{"p":[1]},`, 1), status: 200, respBody: inferResponse},
	{name: "version not a number accepted", want: `"version"`, method: "POST", path: "/v2/models/digits/versions/v10/infer",
		reqBody: inferRequest, status: 200, respBody: inferResponse},
	{name: "binary extension answered 200", want: `status is not supported`, method: "POST", path: "/v2/models/digits/infer", reqBody: inferRequest,
		status: 201, respBody: inferResponse},

	// Health, metadata, the model list.
	{name: "v2 live false", want: `"live" is missing`, method: "GET", path: "/v2/health/live", status: 200, respBody: `{"status":"ok"}`},
	{name: "v2 ready 200 while not ready", want: `/ready`, method: "GET", path: "/v2/health/ready", status: 200, respBody: `{"ready":false}`},
	{name: "v2 ready 400 while ready", want: `/ready`, method: "GET", path: "/v2/health/ready", status: 400, respBody: `{"ready":true}`},
	{name: "v2 not ready as a 503", want: `status is not supported`, method: "GET", path: "/v2/health/ready", status: 503, respBody: `{"ready":false}`},
	{name: "v2 live without X-Request-ID", want: `"X-Request-ID" missing`, method: "HEAD", path: "/v2/health/live", status: 200, respHeader: map[string]string{}},
	{name: "v2 model ready without name", want: `"name" is missing`, method: "GET", path: "/v2/models/digits/ready", status: 200, respBody: `{"ready":true}`},
	{name: "v2 model ready 400 while ready", want: `/ready`, method: "GET", path: "/v2/models/digits/ready", status: 400, respBody: `{"name":"digits","ready":true}`},
	{name: "v2 server metadata of another server", want: `/name`, method: "GET", path: "/v2", status: 200,
		respBody: `{"name":"triton","version":"2.40","extensions":[]}`},
	{name: "v2 metadata without platform", want: `"platform" is missing`, method: "GET", path: "/v2/models/digits", status: 200,
		respBody: strings.Replace(digitsMetadata, `"platform":"onnx",`, ``, 1)},
	{name: "v2 metadata unknown datatype", want: `/datatype`, method: "GET", path: "/v2/models/digits", status: 200,
		respBody: strings.Replace(digitsMetadata, `"FP32"`, `"FLOAT"`, 1)},
	{name: "v2 metadata shape below -1", want: `/shape`, method: "GET", path: "/v2/models/digits", status: 200,
		respBody: strings.Replace(digitsMetadata, `[-1,64]`, `[-2,64]`, 1)},
	{name: "model list without announced_by", want: `"announced_by" is missing`, method: "GET", path: "/models", status: 200,
		respBody: strings.Replace(modelList, `"announced_by":[],`, ``, 1)},
	{name: "model list in camelCase", want: `"default_version" is missing`, method: "GET", path: "/v2/models", status: 200,
		respBody: strings.ReplaceAll(modelList, `"default_version"`, `"defaultVersion"`)},
}

func TestValidatorV2Exchanges(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range append(v2Conforming, v2Unavailables()...) {
		if err := x.run(v, "127.0.0.1:8000"); err != nil {
			t.Errorf("%s: rejected: %v", x.name, err)
		}
	}
	for _, x := range v2NonConforming {
		err := x.run(v, "127.0.0.1:8000")
		if err == nil {
			t.Errorf("%s: accepted", x.name)
			continue
		}
		if !strings.Contains(err.Error(), x.want) {
			t.Errorf("%s: rejected for another reason than %q: %v", x.name, x.want, err)
		}
	}
}

// TestValidatorEveryInferStatusIsExercised: every documented status of both infer
// operations has a conforming exchange, and every 503 reason.
func TestValidatorEveryInferStatusIsExercised(t *testing.T) {
	doc := loadDoc(t)
	all := append(v2Conforming, v2Unavailables()...)
	for _, p := range []string{"/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"} {
		versioned := strings.Contains(p, "/versions/")
		seen := map[string]bool{}
		for _, x := range all {
			if x.method == http.MethodPost && strings.HasSuffix(x.path, "/infer") && strings.Contains(x.path, "/versions/") == versioned {
				seen[strconv.Itoa(x.status)] = true
			}
		}
		for code := range doc.Paths.Value(p).Post.Responses.Map() {
			if !seen[code] && !versioned {
				t.Errorf("no conforming exchange for POST %s %s", p, code)
			}
		}
		if versioned && (!seen["200"] || !seen["202"] || !seen["404"] || !seen["503"]) {
			t.Errorf("POST %s: exchanges for 200, 202, 404 and 503 wanted, have %v", p, seen)
		}
	}
	reasons := doc.Components.Responses["V2Unavailable"].Value.Content.Get("application/json").Schema.Value.AllOf[1].Value.Properties["reason"].Value.Enum
	if len(reasons) != len(v2Unavailables()) {
		t.Errorf("V2Unavailable's reasons %v: one exchange each wanted", reasons)
	}
}
