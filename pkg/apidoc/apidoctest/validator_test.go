package apidoctest

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v4"

	"github.com/warren-farm/warren/pkg/apidoc"
	"github.com/warren-farm/warren/pkg/httperr"
)

// exchange is one fake HTTP exchange for the Validator.
type exchange struct {
	name       string
	method     string
	path       string
	reqHeader  map[string]string
	reqBody    string
	status     int
	respHeader map[string]string // nil: JSON with an X-Request-ID
	respBody   string
	want       string // for a non-conforming exchange: part of the error
}

var jsonWithID = map[string]string{"Content-Type": "application/json", "X-Request-ID": "req-1"}

func with(h map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(out, kv[i])
		} else {
			out[kv[i]] = kv[i+1]
		}
	}
	return out
}

var unavailable = with(jsonWithID, "Retry-After", "1")

const prediction = `{"status":"Input logged successfully","model_prediction":{
	"prediction":{"class":"dog","confidence":0.92,"input_length":4},
	"message":"Predicted class: dog with 92.0% confidence",
	"request_id":"req-1","model":{"name":"simple","version":"1"},"worker_id":"w-1",
	"input_sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}}`

func predictionWith(old, new string) string {
	if !strings.Contains(prediction, old) {
		panic("no " + old + " in the prediction")
	}
	return strings.Replace(prediction, old, new, 1)
}

// A job as the API shows it, in each status.
const (
	jobQueued = `{"id":"jkq3v7m2xw4hzt6rbn5yc2dpfga","status":"queued","created_at":"2025-06-01T12:00:00.123456789Z",
		"started_at":null,"finished_at":null,"attempts":0,"links":{"self":"/jobs/jkq3v7m2xw4hzt6rbn5yc2dpfga"}}`
	jobRunning = `{"id":"jkq3v7m2xw4hzt6rbn5yc2dpfga","status":"running","created_at":"2025-06-01T12:00:00.123456789Z",
		"started_at":"2025-06-01T12:00:00.2Z","finished_at":null,"attempts":1,"links":{"self":"/jobs/jkq3v7m2xw4hzt6rbn5yc2dpfga"}}`
	jobFailed = `{"id":"jkq3v7m2xw4hzt6rbn5yc2dpfga","status":"failed","created_at":"2025-06-01T12:00:00.123456789Z",
		"started_at":"2025-06-01T12:00:00.2Z","finished_at":"2025-06-01T12:00:03Z","attempts":3,
		"error":{"reason":"model_error","message":"boom"},"links":{"self":"/jobs/jkq3v7m2xw4hzt6rbn5yc2dpfga"}}`
	jobCancelled = `{"id":"jkq3v7m2xw4hzt6rbn5yc2dpfga","status":"cancelled","created_at":"2025-06-01T12:00:00.123456789Z",
		"started_at":null,"finished_at":"2025-06-01T12:00:04Z","attempts":0,"links":{"self":"/jobs/jkq3v7m2xw4hzt6rbn5yc2dpfga"}}`
	// One model version's capacity snapshot, and the farm's summary around it.
	snapshot = `{"model":"seed","version":"1","queue":"warren.req.seed.v1","workers_needed":3,"arrival_rate":12.5,"publish_rate":12.5,
		"turned_away_rate":0,"turned_away":0,"service_time":0.12,"service_time_source":"window","answered":750,"slots_per_worker":1,
		"ready":0,"unacked":2,"consumers":2,"target_utilization":0.7,"target_wait":1,"window":60,"stale":false,"updated_at":"2025-06-01T12:00:00.5Z"}`
	capacity = `{"workers_needed":3,"stale":false,"models":[` + snapshot + `]}`
	// A model's sum over its versions.
	modelSum = `{"model":"digits","versions":["1","2"],"workers_needed":4,"arrival_rate":20,"publish_rate":19,"turned_away_rate":1,
		"turned_away":60,"service_time":0.2,"service_time_source":"recent","answered":0,"slots_per_worker":2,"ready":5,"unacked":0,
		"consumers":0,"target_utilization":0.7,"target_wait":1,"window":60,"stale":true,"error":"v2: queue warren.req.digits.v2 not found"}`
)

// A job submitted as a v2 request, queued and succeeded.
const (
	v2JobBody   = `{"model":"digits","version":"1","id":"order-42","inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[0,1]}]}`
	jobV2Queued = `{"id":"jm4tq2zk7hx3vd6w5nrbyc2pfga","status":"queued","model":"digits","model_version":"1",
		"created_at":"2025-06-01T12:00:00.123456789Z","started_at":null,"finished_at":null,"attempts":0,"links":{"self":"/jobs/jm4tq2zk7hx3vd6w5nrbyc2pfga"}}`
	jobV2Succeeded = `{"id":"jm4tq2zk7hx3vd6w5nrbyc2pfga","status":"succeeded","model":"digits","model_version":"1",
		"created_at":"2025-06-01T12:00:00.123456789Z","started_at":"2025-06-01T12:00:00.2Z","finished_at":"2025-06-01T12:00:00.31Z","attempts":1,
		"result":{"model_name":"digits","model_version":"1","id":"order-42","outputs":[{"name":"probabilities","datatype":"FP32","shape":[1,2],"data":[0.25,0.75]}]},
		"links":{"self":"/jobs/jm4tq2zk7hx3vd6w5nrbyc2pfga"}}`
)

// jobSucceeded is a succeeded job; its result is the model_prediction of prediction.
const jobSucceeded = `{"id":"jkq3v7m2xw4hzt6rbn5yc2dpfga","status":"succeeded","created_at":"2025-06-01T12:00:00.123456789Z",
	"started_at":"2025-06-01T12:00:00.2Z","finished_at":"2025-06-01T12:00:00.35Z","attempts":1,"result":{
	"prediction":{"class":"dog","confidence":0.92,"input_length":4},
	"message":"Predicted class: dog with 92.0% confidence",
	"request_id":"req-1","model":{"name":"simple","version":"1"},"worker_id":"w-1",
	"input_sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
	"links":{"self":"/jobs/jkq3v7m2xw4hzt6rbn5yc2dpfga"}}`

var (
	jobAccepted  = with(jsonWithID, "Location", "/jobs/jkq3v7m2xw4hzt6rbn5yc2dpfga")
	asyncHeader  = with(jobAccepted, "Preference-Applied", "respond-async")
	replayHeader = with(jobAccepted, "Idempotent-Replayed", "true")
	prefer       = map[string]string{"Prefer": "respond-async, wait=10"}
	noStore      = with(jsonWithID, "Cache-Control", "no-store")
)

// readyBody is a 200 GET /ready body with one member replaced (or added).
func readyBody(member string) string {
	b := map[string]json.RawMessage{
		"status": json.RawMessage(`"ready"`), "broker": json.RawMessage(`"up"`), "workers": json.RawMessage(`1`),
		"models": json.RawMessage(`[{"name":"seed","version":"1","workers":1}]`), "jobs": json.RawMessage(`{"status":"ok"}`),
	}
	k, v, _ := strings.Cut(member, ":")
	b[strings.Trim(k, `"`)] = json.RawMessage(v)
	out, err := json.Marshal(b)
	if err != nil {
		panic(err)
	}
	return string(out)
}

func (x exchange) run(v *Validator, host string) error {
	req, err := http.NewRequest(x.method, "http://"+host+x.path, strings.NewReader(x.reqBody))
	if err != nil {
		panic(err)
	}
	for k, val := range x.reqHeader {
		req.Header.Set(k, val)
	}
	// The caller has consumed the bodies, as a real client has.
	_, _ = io.ReadAll(req.Body)
	rh := x.respHeader
	if rh == nil {
		rh = jsonWithID
	}
	resp := &http.Response{StatusCode: x.status, Header: http.Header{}, Body: http.NoBody}
	for k, val := range rh {
		resp.Header.Set(k, val)
	}
	return v.Validate(req, []byte(x.reqBody), resp, []byte(x.respBody))
}

var conforming = []exchange{
	{name: "root", method: "GET", path: "/", status: 200, respBody: `{"service":"Service A - Input Logger","status":"running"}`},
	{name: "root without request id", method: "GET", path: "/", status: 200, respHeader: map[string]string{"Content-Type": "application/json"},
		respBody: `{"service":"Service A - Input Logger","status":"running"}`},
	{name: "health", method: "GET", path: "/health", status: 200, respBody: `{"service":"Service A","status":"healthy"}`},
	{name: "health with query", method: "GET", path: "/health?probe=1", status: 200, respBody: `{"service":"Service A","status":"healthy"}`},
	{name: "ready", method: "GET", path: "/ready", status: 200, respBody: `{"status":"ready","broker":"up","workers":3,
		"models":[{"name":"digits","version":"1","workers":1},{"name":"seed","version":"1","workers":3}],"jobs":{"status":"ok"}}`},
	{name: "ready, broker down", method: "GET", path: "/ready", status: 200, respBody: `{"status":"ready","broker":"down","workers":0,
		"models":[{"name":"seed","version":"1","workers":0}],"jobs":{"status":"degraded","problem":"the job publisher is not connected to the broker"}}`},
	{name: "ready, no model known", method: "GET", path: "/ready", status: 200, respBody: `{"status":"ready","broker":"up","workers":0,"models":[],"jobs":{"status":"ok"}}`},
	{name: "starting", method: "GET", path: "/ready", status: 503, respBody: `{"status":"starting","broker":"down","workers":0,"models":[],
		"jobs":{"status":"degraded","problem":"the job publisher is not connected to the broker"}}`},
	{name: "draining", method: "GET", path: "/ready", status: 503, respBody: `{"status":"draining","broker":"up","workers":2,
		"models":[{"name":"seed","version":"1","workers":2}],"jobs":{"status":"ok"}}`},

	{name: "200 log only", method: "POST", path: "/process", reqBody: `{"data":"test","forward_to_model":false}`, status: 200,
		respBody: `{"status":"Input logged successfully"}`},
	{name: "200 prediction", method: "POST", path: "/process", reqBody: `{"data":"test","forward_to_model":true}`, status: 200, respBody: prediction},
	{name: "200 prediction, default forward", method: "POST", path: "/process", reqBody: `{"data":"test"}`, status: 200, respBody: prediction},
	{name: "200 prediction with timings", method: "POST", path: "/process", reqBody: `{"data":"test"}`, status: 200,
		respBody: predictionWith(`"worker_id":"w-1",`, `"worker_id":"w-1","timings":{"queue_ms":1.5},`)},
	{name: "200 empty data, extra member", method: "POST", path: "/process", reqBody: `{"data":"","extra":[1,2]}`, status: 200, respBody: prediction},
	{name: "200 lax bool yes", method: "POST", path: "/process", reqBody: `{"data":"x","forward_to_model":"yes"}`, status: 200, respBody: prediction},
	{name: "200 lax bool 0", method: "POST", path: "/process", reqBody: `{"data":"x","forward_to_model":0}`, status: 200,
		respBody: `{"status":"Input logged successfully"}`},
	{name: "200 lax bool \"off\"", method: "POST", path: "/process", reqBody: `{"data":"x","forward_to_model":"off"}`, status: 200,
		respBody: `{"status":"Input logged successfully"}`},
	{name: "200 body sent as text/plain", method: "POST", path: "/process", reqHeader: map[string]string{"Content-Type": "text/plain"},
		reqBody: `{"data":"x"}`, status: 200, respBody: prediction},
	{name: "200 with request headers", method: "POST", path: "/process",
		reqHeader: map[string]string{"X-Request-ID": "order-42", "X-Request-Timeout": "1m30s"},
		reqBody:   `{"data":"x"}`, status: 200, respHeader: with(jsonWithID, "X-Request-ID", "order-42"), respBody: prediction},
	{name: "200 timeout in plain seconds", method: "POST", path: "/process", reqHeader: map[string]string{"X-Request-Timeout": "0.5"},
		reqBody: `{"data":"x"}`, status: 200, respBody: prediction},
	{name: "200 invalid request id is replaced", method: "POST", path: "/process", reqHeader: map[string]string{"X-Request-ID": "bad id with spaces"},
		reqBody: `{"data":"x"}`, status: 200, respHeader: with(jsonWithID, "X-Request-ID", "a1b2c3d4e5f60718293a4b5c6d7e8f90"), respBody: prediction},
	{name: "200 charset in Content-Type", method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 200,
		respHeader: with(jsonWithID, "Content-Type", "application/json; charset=UTF-8"), respBody: prediction},

	{name: "413", method: "POST", path: "/process", reqBody: `{"data":"` + strings.Repeat("a", 64) + `"}`, status: 413,
		respBody: `{"detail":"Request body is larger than 1048576 bytes"}`},
	{name: "422 missing data", method: "POST", path: "/process", reqBody: `{"forward_to_model":true}`, status: 422,
		respBody: `{"detail":[{"type":"missing","loc":["body","data"],"msg":"Field required","input":{"forward_to_model":true}}]}`},
	{name: "422 data not a string", method: "POST", path: "/process", reqBody: `{"data":5}`, status: 422,
		respBody: `{"detail":[{"type":"string_type","loc":["body","data"],"msg":"Input should be a valid string","input":5}]}`},
	{name: "422 null input, pydantic url", method: "POST", path: "/process", reqBody: `{"data":null}`, status: 422,
		respBody: `{"detail":[{"type":"string_type","loc":["body","data"],"msg":"Input should be a valid string","input":null,"url":"https://errors.pydantic.dev/2.4/v/string_type"}]}`},
	{name: "422 bool parsing", method: "POST", path: "/process", reqBody: `{"data":"x","forward_to_model":"maybe"}`, status: 422,
		respBody: `{"detail":[{"type":"bool_parsing","loc":["body","forward_to_model"],"msg":"Input should be a valid boolean, unable to interpret input","input":"maybe"}]}`},
	{name: "422 json invalid", method: "POST", path: "/process", reqBody: `{"data":`, status: 422,
		respBody: `{"detail":[{"type":"json_invalid","loc":["body",8],"msg":"JSON decode error"}]}`},
	{name: "422 empty body", method: "POST", path: "/process", status: 422,
		respBody: `{"detail":[{"type":"missing","loc":["body"],"msg":"Field required","input":null}]}`},
	{name: "422 body not an object", method: "POST", path: "/process", reqBody: `[1,2]`, status: 422,
		respBody: `{"detail":[{"type":"model_attributes_type","loc":["body"],"msg":"Input should be a valid dictionary or object to extract fields from","input":[1,2]}]}`},
	{name: "422 timeout header", method: "POST", path: "/process", reqHeader: map[string]string{"X-Request-Timeout": "soon"},
		reqBody: `{"data":"x"}`, status: 422,
		respBody: `{"detail":[{"type":"value_error","loc":["header","X-Request-Timeout"],"msg":"must be a positive duration","input":"soon"}]}`},
	{name: "422 zero timeout", method: "POST", path: "/process", reqHeader: map[string]string{"X-Request-Timeout": "0s"},
		reqBody: `{"data":"x"}`, status: 422,
		respBody: `{"detail":[{"type":"value_error","loc":["header","X-Request-Timeout"],"msg":"must be greater than zero","input":"0s"}]}`},
	{name: "502", method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 502, respBody: `{"detail":"model failed","reason":"model_error"}`},
	{name: "401", method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 401,
		respHeader: with(jsonWithID, "WWW-Authenticate", `Bearer realm="warren"`),
		respBody:   `{"detail":"Unauthorized: authentication required","reason":"unauthorized"}`},
	{name: "403 model", method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 403,
		respBody: `{"detail":"Forbidden: ci may not call model seed","reason":"forbidden"}`},
	{name: "429 auth limited", method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 429, respHeader: unavailable,
		respBody: `{"detail":"Too many failed authentications from this address; retry later","reason":"auth_limited"}`},
	{name: "503 no workers", method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 503, respHeader: unavailable,
		respBody: `{"detail":"no predictor worker is available","reason":"no_workers"}`},
	{name: "503 queue full", method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 503, respHeader: unavailable,
		respBody: `{"detail":"queue full","reason":"queue_full"}`},
	{name: "503 broker", method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 503, respHeader: with(unavailable, "Retry-After", "5"),
		respBody: `{"detail":"broker down","reason":"broker_unavailable"}`},
	{name: "503 draining, invalid request", method: "POST", path: "/process", reqBody: `{}`, status: 503, respHeader: unavailable,
		respBody: `{"detail":"shutting down","reason":"draining"}`},
	{name: "504", method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 504, respBody: `{"detail":"no answer within 10s","reason":"timeout"}`},
	{name: "400 the model refused the input", method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 400,
		respBody: `{"detail":"Bad input: input \"data\": empty","reason":"bad_input"}`},
	{name: "503 DEFAULT_MODEL not seed-shaped", method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 503, respHeader: unavailable,
		respBody: `{"detail":"Model service is unavailable: DEFAULT_MODEL digits does not take the seed lab's input","reason":"not_ready"}`},
	{name: "422 data not UTF-8", method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 422,
		respBody: `{"detail":[{"type":"string_unicode","loc":["body","data"],"msg":"Input should be a valid string: invalid UTF-8"}]}`},
	{name: "422 json invalid, input {}", method: "POST", path: "/process", reqBody: `{"data":`, status: 422,
		respBody: `{"detail":[{"type":"json_invalid","loc":["body",8],"msg":"JSON decode error","input":{}}]}`},

	// Prefer: respond-async.
	{name: "async 200", method: "POST", path: "/process", reqHeader: prefer, reqBody: `{"data":"x"}`, status: 200, respBody: prediction},
	{name: "async 202", method: "POST", path: "/process", reqHeader: prefer, reqBody: `{"data":"x"}`, status: 202,
		respHeader: asyncHeader, respBody: jobQueued},
	{name: "async 202 without wait", method: "POST", path: "/process", reqHeader: map[string]string{"Prefer": "respond-async"},
		reqBody: `{"data":"x"}`, status: 202, respHeader: asyncHeader, respBody: jobRunning},
	{name: "async 422 wait", method: "POST", path: "/process", reqHeader: map[string]string{"Prefer": "respond-async, wait=soon"},
		reqBody: `{"data":"x"}`, status: 422,
		respBody: `{"detail":[{"type":"value_error","loc":["header","Prefer"],"msg":"wait must be a non-negative number of seconds (30) or a duration (30s)","input":"soon"}]}`},
	{name: "async 502", method: "POST", path: "/process", reqHeader: prefer, reqBody: `{"data":"x"}`, status: 502,
		respBody: `{"detail":"Model error: run_timeout: the model ran longer than JOB_RUN_TIMEOUT","reason":"model_error"}`},
	{name: "async 503 store", method: "POST", path: "/process", reqHeader: prefer, reqBody: `{"data":"x"}`, status: 503,
		respHeader: with(unavailable, "Retry-After", "2"), respBody: `{"detail":"Job store is unavailable: closed","reason":"store_unavailable"}`},
	{name: "async 503 jobs unavailable", method: "POST", path: "/process", reqHeader: prefer, reqBody: `{"data":"x"}`, status: 503,
		respHeader: unavailable, respBody: `{"detail":"Jobs cannot be published now: job topology unavailable","reason":"jobs_unavailable"}`},

	// The job operations.
	{name: "jobs 202", method: "POST", path: "/jobs", reqBody: `{"data":"x"}`, status: 202, respHeader: jobAccepted, respBody: jobQueued},
	{name: "jobs 202 with key, forward true", method: "POST", path: "/jobs", reqHeader: map[string]string{"Idempotency-Key": "order-42/attempt:1"},
		reqBody: `{"data":"x","forward_to_model":"yes"}`, status: 202, respHeader: jobAccepted, respBody: jobQueued},
	{name: "jobs 200 replay", method: "POST", path: "/jobs", reqHeader: map[string]string{"Idempotency-Key": "k"},
		reqBody: `{"data":"x"}`, status: 200, respHeader: replayHeader, respBody: jobSucceeded},
	{name: "jobs 409", method: "POST", path: "/jobs", reqHeader: map[string]string{"Idempotency-Key": "k"}, reqBody: `{"data":"x"}`, status: 409,
		respHeader: unavailable, respBody: `{"detail":"The first submission with this Idempotency-Key is still in progress; retry","reason":"in_progress"}`},
	{name: "jobs 413", method: "POST", path: "/jobs", reqBody: `{"data":"x"}`, status: 413, respBody: `{"detail":"Request body too large: the limit is 1048576 bytes"}`},
	{name: "jobs 422 forward false", method: "POST", path: "/jobs", reqBody: `{"data":"x","forward_to_model":false}`, status: 422,
		respBody: `{"detail":[{"type":"value_error","loc":["body","forward_to_model"],"msg":"a job always runs the model: forward_to_model must be true or absent","input":false}]}`},
	{name: "jobs 422 key", method: "POST", path: "/jobs", reqHeader: map[string]string{"Idempotency-Key": "a b"}, reqBody: `{"data":"x"}`, status: 422,
		respBody: `{"detail":[{"type":"value_error","loc":["header","Idempotency-Key"],"msg":"Idempotency-Key must be 1 to 255 printable ASCII characters","input":"a b"}]}`},
	{name: "jobs 422 key reused", method: "POST", path: "/jobs", reqHeader: map[string]string{"Idempotency-Key": "k"}, reqBody: `{"data":"y"}`, status: 422,
		respBody: `{"detail":"Idempotency-Key was already used with a different body","reason":"idempotency_key_reused"}`},
	{name: "jobs 503 store", method: "POST", path: "/jobs", reqBody: `{"data":"x"}`, status: 503, respHeader: unavailable,
		respBody: `{"detail":"Job store is unavailable: closed","reason":"store_unavailable"}`},
	{name: "jobs 503 broker", method: "POST", path: "/jobs", reqBody: `{"data":"x"}`, status: 503, respHeader: unavailable,
		respBody: `{"detail":"Model service is unavailable: not connected","reason":"broker_unavailable"}`},
	{name: "jobs 503 jobs unavailable", method: "POST", path: "/jobs", reqBody: v2JobBody, status: 503, respHeader: unavailable,
		respBody: `{"detail":"Jobs cannot be published now: job topology unavailable","reason":"jobs_unavailable"}`},
	{name: "jobs 503 no workers for DEFAULT_MODEL", method: "POST", path: "/jobs", reqBody: `{"data":"x"}`, status: 503, respHeader: unavailable,
		respBody: `{"detail":"Model service is unavailable: no predictor worker is running (no worker has served model seed)","reason":"no_workers"}`},
	{name: "jobs v2 202", method: "POST", path: "/jobs", reqBody: v2JobBody, status: 202, respHeader: jobAccepted, respBody: jobV2Queued},
	{name: "jobs v2 202, no version, nested data", method: "POST", path: "/jobs", status: 202, respHeader: jobAccepted, respBody: jobV2Queued,
		reqBody: `{"model":"digits","inputs":[{"name":"input","shape":[2,2],"datatype":"FP32","data":[[0,1],[2,3]]}]}`},
	{name: "jobs v2 400", method: "POST", path: "/jobs", reqBody: v2JobBody, status: 400,
		respBody: `{"detail":"Bad input: input \"input\": shape [1 2]: dimension 1 must be 64 (the model expects [-1 64])","reason":"bad_input"}`},
	{name: "jobs v2 400 without inputs", method: "POST", path: "/jobs", reqBody: `{"model":"digits"}`, status: 400,
		respBody: `{"detail":"Bad input: bad inference request: \"inputs\" is required","reason":"bad_input"}`},
	{name: "jobs v2 404", method: "POST", path: "/jobs", reqBody: `{"model":"resnet","inputs":[]}`, status: 404,
		respBody: `{"detail":"Model not found: \"resnet\" (no worker has announced it)","reason":"not_found"}`},
	{name: "jobs v2 422 model missing", method: "POST", path: "/jobs", reqBody: `{"inputs":[]}`, status: 422,
		respBody: `{"detail":[{"type":"missing","loc":["body","model"],"msg":"Field required","input":{"inputs":[]}}]}`},
	{name: "jobs v2 422 version a number", method: "POST", path: "/jobs", reqBody: `{"model":"digits","version":2,"inputs":[]}`, status: 422,
		respBody: `{"detail":[{"type":"string_type","loc":["body","version"],"msg":"Input should be a valid string","input":2}]}`},
	{name: "job v2 succeeded", method: "GET", path: "/jobs/jm4tq2zk7hx3vd6w5nrbyc2pfga", status: 200, respBody: jobV2Succeeded},
	{name: "job queued", method: "GET", path: "/jobs/jkq3v7m2xw4hzt6rbn5yc2dpfga", status: 200, respBody: jobQueued},
	{name: "job running, long poll", method: "GET", path: "/jobs/jkq3v7m2xw4hzt6rbn5yc2dpfga?wait=30s", status: 200, respBody: jobRunning},
	{name: "job succeeded", method: "GET", path: "/jobs/jkq3v7m2xw4hzt6rbn5yc2dpfga?wait=2.5", status: 200, respBody: jobSucceeded},
	{name: "job failed", method: "GET", path: "/jobs/jkq3v7m2xw4hzt6rbn5yc2dpfga", status: 200, respBody: jobFailed},
	{name: "job 404", method: "GET", path: "/jobs/nope", status: 404,
		respBody: `{"detail":"Job not found (unknown id, or finished longer ago than JOB_TTL)","reason":"not_found"}`},
	{name: "job 422 wait", method: "GET", path: "/jobs/j1?wait=soon", status: 422,
		respBody: `{"detail":[{"type":"value_error","loc":["query","wait"],"msg":"wait must be a non-negative number of seconds (30) or a duration (30s)","input":"soon"}]}`},
	{name: "job 503", method: "GET", path: "/jobs/j1", status: 503, respHeader: with(unavailable, "Retry-After", "2"),
		respBody: `{"detail":"Job store is unavailable: closed","reason":"store_unavailable"}`},
	{name: "cancel 200", method: "DELETE", path: "/jobs/jkq3v7m2xw4hzt6rbn5yc2dpfga", status: 200, respBody: jobCancelled},
	{name: "cancel 409", method: "DELETE", path: "/jobs/jkq3v7m2xw4hzt6rbn5yc2dpfga", status: 409,
		respBody: `{"detail":"Only a queued job can be cancelled; this one is running","job":` + jobRunning + `,"reason":"not_cancellable"}`},
	{name: "cancel 404", method: "DELETE", path: "/jobs/nope", status: 404,
		respBody: `{"detail":"Job not found (unknown id, or finished longer ago than JOB_TTL)","reason":"not_found"}`},
	{name: "405 GET /jobs", method: "GET", path: "/jobs", status: 405, respBody: `{"detail":"Method Not Allowed"}`},
	{name: "405 PUT /jobs/{id}", method: "PUT", path: "/jobs/j1", status: 405, respBody: `{"detail":"Method Not Allowed"}`},
	{name: "404 /jobs/", method: "GET", path: "/jobs/", status: 404, respBody: `{"detail":"Not Found"}`},

	// Operations.
	{name: "capacity", method: "GET", path: "/capacity", status: 200, respHeader: noStore, respBody: capacity},
	{name: "capacity, nothing tracked", method: "GET", path: "/capacity", status: 200, respHeader: noStore,
		respBody: `{"workers_needed":0,"stale":true,"error":"no management URL configured","models":[]}`},
	{name: "capacity of a model", method: "GET", path: "/capacity?model=digits", status: 200, respHeader: noStore, respBody: modelSum},
	{name: "capacity of a model version", method: "GET", path: "/capacity?model=seed&version=1", status: 200, respHeader: noStore, respBody: snapshot},
	{name: "capacity stale, never read", method: "GET", path: "/capacity?model=seed&version=1", status: 200, respHeader: noStore,
		respBody: `{"model":"seed","version":"1","queue":"warren.req.seed.v1","workers_needed":0,"arrival_rate":0,"publish_rate":0,
			"turned_away_rate":0,"turned_away":0,"service_time":0.1,"service_time_source":"default","answered":0,"slots_per_worker":0,
			"ready":0,"unacked":0,"consumers":0,"target_utilization":0.7,"target_wait":1,"window":60,"stale":true,"error":"no management URL configured"}`},
	{name: "capacity 400 version without model", method: "GET", path: "/capacity?version=1", status: 400, respHeader: noStore,
		respBody: `{"detail":"query parameter \"version\" needs the query parameter \"model\""}`},
	{name: "capacity 400 bad model", method: "GET", path: "/capacity?model=a.b", status: 400, respHeader: noStore,
		respBody: `{"detail":"query parameter \"model\": \"a.b\": want 1-64 letters, digits, '_' or '-', starting with a letter or digit"}`},
	{name: "capacity 404", method: "GET", path: "/capacity?model=digits&version=3", status: 404, respHeader: noStore,
		respBody: `{"detail":"model digits version 3 is not tracked"}`},
	{name: "HEAD capacity", method: "HEAD", path: "/capacity", status: 200, respHeader: noStore},
	{name: "HEAD capacity 404", method: "HEAD", path: "/capacity?model=nope", status: 404, respHeader: noStore},
	{name: "metrics", method: "GET", path: "/metrics", status: 200,
		respHeader: map[string]string{"Content-Type": "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"},
		respBody:   "# TYPE warren_workers_needed gauge\nwarren_workers_needed 0\n"},
	{name: "metrics, OpenMetrics", method: "GET", path: "/metrics", reqHeader: map[string]string{"Accept": "application/openmetrics-text"}, status: 200,
		respHeader: map[string]string{"Content-Type": "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"},
		respBody:   "# TYPE warren_workers_needed gauge\nwarren_workers_needed 0\n# EOF\n"},

	{name: "404 unknown path", method: "GET", path: "/nope", status: 404, respBody: `{"detail":"Not Found"}`},
	{name: "404 unknown path, POST", method: "POST", path: "/predict", reqBody: `{"input":"x"}`, status: 404, respBody: `{"detail":"Not Found"}`},
	{name: "404 trailing slash", method: "GET", path: "/health/", status: 404, respBody: `{"detail":"Not Found"}`},
	{name: "404 trailing slash, wrong method", method: "POST", path: "/health/", status: 404, respBody: `{"detail":"Not Found"}`},
	{name: "405 wrong method", method: "GET", path: "/process", status: 405, respBody: `{"detail":"Method Not Allowed"}`},
	{name: "405 POST /health", method: "POST", path: "/health", status: 405, respHeader: map[string]string{"Content-Type": "application/json"},
		respBody: `{"detail":"Method Not Allowed"}`},
	{name: "HEAD openapi.json", method: "HEAD", path: "/openapi.json", status: 200, respHeader: map[string]string{"Content-Type": "application/json"}},
	{name: "HEAD / not served", method: "HEAD", path: "/", status: 405, respHeader: map[string]string{}},
	{name: "openapi.json", method: "GET", path: "/openapi.json", status: 200, respHeader: map[string]string{"Content-Type": "application/json"},
		respBody: `{"openapi":"3.0.3"}`},
	{name: "docs", method: "GET", path: "/docs", status: 200, respHeader: map[string]string{"Content-Type": "text/html; charset=utf-8"},
		respBody: `<!DOCTYPE html><title>x</title>`},
}

var nonConforming = []exchange{
	// 503 must say when to come back, and why.
	{name: "503 without Retry-After", want: `"Retry-After" missing`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 503,
		respBody: `{"detail":"no workers","reason":"no_workers"}`},
	{name: "503 Retry-After not seconds", want: `"Retry-After"`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 503,
		respHeader: with(unavailable, "Retry-After", "soon"), respBody: `{"detail":"no workers","reason":"no_workers"}`},
	{name: "503 without reason", want: `"reason" is missing`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 503, respHeader: unavailable,
		respBody: `{"detail":"Service B is unavailable"}`},
	{name: "503 with a 504 reason", want: `/reason`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 503, respHeader: unavailable,
		respBody: `{"detail":"late","reason":"timeout"}`},
	{name: "503 with an unknown reason", want: `/reason`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 503, respHeader: unavailable,
		respBody: `{"detail":"?","reason":"overloaded"}`},
	{name: "504 with a 502 reason", want: `/reason`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 504,
		respBody: `{"detail":"late","reason":"model_error"}`},
	{name: "502 detail not a string", want: `/detail`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 502,
		respBody: `{"detail":{"error":"boom"},"reason":"model_error"}`},

	// The 200 body is checked member by member.
	// Any seed-shaped model may answer /process: class, confidence and message are
	// the model's, not limited to the seed model's values; their types are checked.
	{name: "200 confidence as a string", want: `/confidence": value must be a number`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 200,
		respBody: predictionWith(`"confidence":0.92`, `"confidence":"0.92"`)},
	{name: "200 input_length not an integer", want: `/input_length`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 200,
		respBody: predictionWith(`"input_length":4`, `"input_length":4.5`)},
	{name: "200 short input_sha256", want: `/input_sha256`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 200,
		respBody: predictionWith(`"input_sha256":"9f86d0`, `"input_sha256":"`)},
	{name: "200 without worker_id", want: `"worker_id" is missing`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 200,
		respBody: predictionWith(`"worker_id":"w-1",`, ``)},
	{name: "200 without model", want: `"model" is missing`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 200,
		respBody: predictionWith(`"model":{"name":"simple","version":"1"},`, ``)},
	{name: "200 wrong status text", want: `/status`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 200,
		respBody: `{"status":"ok"}`},
	{name: "200 seed's verbatim prediction", want: `is missing`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 200,
		respBody: `{"status":"Input logged successfully","model_prediction":{"prediction":{"class":"dog","confidence":0.92,"input_length":1},"message":"Predicted class: dog with 92.0% confidence"}}`},
	{name: "200 body not JSON", want: `decode response body`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 200, respBody: `Input logged successfully`},
	{name: "200 as text/plain", want: `Content-Type`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 200,
		respHeader: with(jsonWithID, "Content-Type", "text/plain"), respBody: `{"status":"Input logged successfully"}`},

	// X-Request-ID is on every /process answer, and well formed.
	{name: "200 without X-Request-ID", want: `"X-Request-ID" missing`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 200,
		respHeader: map[string]string{"Content-Type": "application/json"}, respBody: `{"status":"Input logged successfully"}`},
	{name: "422 without X-Request-ID", want: `"X-Request-ID" missing`, method: "POST", path: "/process", reqBody: `{}`, status: 422,
		respHeader: map[string]string{"Content-Type": "application/json"}, respBody: `{"detail":[{"type":"missing","loc":["body","data"],"msg":"Field required"}]}`},
	{name: "X-Request-ID with spaces", want: `"X-Request-ID" doesn`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 200,
		respHeader: with(jsonWithID, "X-Request-ID", "bad id"), respBody: `{"status":"Input logged successfully"}`},
	{name: "X-Request-ID too long", want: `"X-Request-ID" doesn`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 200,
		respHeader: with(jsonWithID, "X-Request-ID", strings.Repeat("a", 129)), respBody: `{"status":"Input logged successfully"}`},

	// 422 has FastAPI's shape.
	{name: "422 detail a string", want: `/detail": value must be an array`, method: "POST", path: "/process", reqBody: `{}`, status: 422,
		respBody: `{"detail":"data is required"}`},
	{name: "422 item without loc", want: `"loc" is missing`, method: "POST", path: "/process", reqBody: `{}`, status: 422,
		respBody: `{"detail":[{"type":"missing","msg":"Field required"}]}`},
	{name: "422 loc not a list", want: `/loc`, method: "POST", path: "/process", reqBody: `{}`, status: 422,
		respBody: `{"detail":[{"type":"missing","loc":"body.data","msg":"Field required"}]}`},
	{name: "422 echo's shape", want: `"detail" is missing`, method: "POST", path: "/process", reqBody: `{}`, status: 422,
		respBody: `{"message":"Unprocessable Entity"}`},

	// A request the document rejects must not be accepted.
	{name: "missing data accepted", want: `"data" is missing`, method: "POST", path: "/process", reqBody: `{"forward_to_model":false}`, status: 200,
		respBody: `{"status":"Input logged successfully"}`},
	{name: "data a number accepted", want: `/data`, method: "POST", path: "/process", reqBody: `{"data":5}`, status: 200,
		respBody: `{"status":"Input logged successfully"}`},
	{name: "bool \"maybe\" accepted", want: `/forward_to_model`, method: "POST", path: "/process", reqBody: `{"data":"x","forward_to_model":"maybe"}`, status: 200,
		respBody: `{"status":"Input logged successfully"}`},
	{name: "bool 2 accepted", want: `/forward_to_model`, method: "POST", path: "/process", reqBody: `{"data":"x","forward_to_model":2}`, status: 200,
		respBody: `{"status":"Input logged successfully"}`},
	{name: "malformed JSON accepted", want: `decode request body`, method: "POST", path: "/process", reqBody: `{"data":`, status: 200,
		respBody: `{"status":"Input logged successfully"}`},
	{name: "empty body accepted", want: `required but missing`, method: "POST", path: "/process", status: 200, respBody: `{"status":"Input logged successfully"}`},
	{name: "malformed timeout accepted", want: `"X-Request-Timeout"`, method: "POST", path: "/process", reqHeader: map[string]string{"X-Request-Timeout": "soon"},
		reqBody: `{"data":"x"}`, status: 200, respBody: `{"status":"Input logged successfully"}`},
	{name: "negative timeout accepted", want: `"X-Request-Timeout"`, method: "POST", path: "/process", reqHeader: map[string]string{"X-Request-Timeout": "-1s"},
		reqBody: `{"data":"x"}`, status: 200, respBody: `{"status":"Input logged successfully"}`},

	// Statuses the document does not list.
	{name: "500", want: `status is not supported`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 500, respBody: `{"detail":"Internal Server Error"}`},
	{name: "429 with another reason", want: `auth_limited`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 429, respHeader: unavailable,
		respBody: `{"detail":"slow down","reason":"no_workers"}`},
	{name: "401 without a reason", want: `reason`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 401,
		respBody: `{"detail":"Unauthorized"}`},
	{name: "404 on a documented route", want: `status is not supported`, method: "GET", path: "/health", status: 404, respBody: `{"detail":"Not Found"}`},
	{name: "200 on an unknown path", want: `want status 404`, method: "GET", path: "/nope", status: 200, respBody: `{"detail":"Not Found"}`},
	{name: "405 on an unknown path", want: `want status 404`, method: "GET", path: "/nope", status: 405, respBody: `{"detail":"Method Not Allowed"}`},
	{name: "405 for a trailing slash", want: `want status 404`, method: "POST", path: "/health/", status: 405, respBody: `{"detail":"Method Not Allowed"}`},
	{name: "200 for a trailing slash", want: `want status 404`, method: "GET", path: "/health/", status: 200, respBody: `{"service":"Service A","status":"healthy"}`},
	{name: "404 for a wrong method", want: `want status 405`, method: "DELETE", path: "/process", status: 404, respBody: `{"detail":"Not Found"}`},
	{name: "404 in echo's shape", want: `"detail" is missing`, method: "GET", path: "/nope", status: 404, respBody: `{"message":"Not Found"}`},
	{name: "405 with another detail", want: `/detail`, method: "PUT", path: "/ready", status: 405, respBody: `{"detail":"Not Found"}`},
	{name: "HEAD openapi.json 404", want: `status is not supported`, method: "HEAD", path: "/openapi.json", status: 404, respHeader: map[string]string{}},

	// The other routes' bodies.
	{name: "root renamed", want: `/service`, method: "GET", path: "/", status: 200, respBody: `{"service":"warren","status":"running"}`},
	{name: "root without status", want: `"status" is missing`, method: "GET", path: "/", status: 200, respBody: `{"service":"Service A - Input Logger"}`},
	{name: "health not healthy", want: `/status`, method: "GET", path: "/health", status: 200, respBody: `{"service":"Service A","status":"ok"}`},
	{name: "ready 200 while draining", want: `/status`, method: "GET", path: "/ready", status: 200, respBody: readyBody(`"status":"draining"`)},
	{name: "ready 503 while ready", want: `/status`, method: "GET", path: "/ready", status: 503, respBody: readyBody(`"status":"ready"`)},
	{name: "ready negative workers", want: `/workers`, method: "GET", path: "/ready", status: 200, respBody: readyBody(`"workers":-1`)},
	{name: "ready workers as a string", want: `/workers`, method: "GET", path: "/ready", status: 200, respBody: readyBody(`"workers":"3"`)},
	{name: "ready unknown broker state", want: `/broker`, method: "GET", path: "/ready", status: 200, respBody: readyBody(`"broker":"flaky"`)},
	{name: "ready without workers", want: `"workers" is missing`, method: "GET", path: "/ready", status: 200,
		respBody: `{"status":"ready","broker":"up","models":[],"jobs":{"status":"ok"}}`},
	{name: "ready, the lab's old body", want: `"models" is missing`, method: "GET", path: "/ready", status: 200, respBody: `{"status":"ready","broker":"up","workers":1}`},
	{name: "ready model without version", want: `"version" is missing`, method: "GET", path: "/ready", status: 200,
		respBody: readyBody(`"models":[{"name":"seed","workers":1}]`)},
	{name: "ready unknown jobs status", want: `/jobs/status`, method: "GET", path: "/ready", status: 200, respBody: readyBody(`"jobs":{"status":"down"}`)},
	{name: "openapi.json as YAML", want: `Content-Type`, method: "GET", path: "/openapi.json", status: 200, respHeader: map[string]string{"Content-Type": "application/yaml"},
		respBody: "openapi: 3.0.3\n"},
	{name: "docs as JSON", want: `Content-Type`, method: "GET", path: "/docs", status: 200, respBody: `{}`},

	// Asynchronous /process and the job operations.
	{name: "async 202 without Preference-Applied", want: `"Preference-Applied" missing`, method: "POST", path: "/process", reqHeader: prefer,
		reqBody: `{"data":"x"}`, status: 202, respHeader: jobAccepted, respBody: jobQueued},
	{name: "jobs 202 without Location", want: `"Location" missing`, method: "POST", path: "/jobs", reqBody: `{"data":"x"}`, status: 202, respBody: jobQueued},
	{name: "jobs 200 without Idempotent-Replayed", want: `"Idempotent-Replayed" missing`, method: "POST", path: "/jobs",
		reqHeader: map[string]string{"Idempotency-Key": "k"}, reqBody: `{"data":"x"}`, status: 200, respHeader: jobAccepted, respBody: jobQueued},
	{name: "jobs forward false accepted", want: `/forward_to_model`, method: "POST", path: "/jobs", reqBody: `{"data":"x","forward_to_model":false}`,
		status: 202, respHeader: jobAccepted, respBody: jobQueued},
	{name: "jobs key with a space accepted", want: `"Idempotency-Key"`, method: "POST", path: "/jobs", reqHeader: map[string]string{"Idempotency-Key": "a b"},
		reqBody: `{"data":"x"}`, status: 202, respHeader: jobAccepted, respBody: jobQueued},
	{name: "jobs 422 with another reason", want: `/reason`, method: "POST", path: "/jobs", reqBody: `{"data":"x"}`, status: 422,
		respBody: `{"detail":"?","reason":"in_progress"}`},
	{name: "jobs 409 without Retry-After", want: `"Retry-After" missing`, method: "POST", path: "/jobs", reqBody: `{"data":"x"}`, status: 409,
		respBody: `{"detail":"?","reason":"in_progress"}`},
	{name: "job unknown status", want: `/status`, method: "GET", path: "/jobs/j1", status: 200,
		respBody: strings.Replace(jobQueued, `"queued"`, `"pending"`, 1)},
	{name: "job without started_at", want: `"started_at" is missing`, method: "GET", path: "/jobs/j1", status: 200,
		respBody: strings.Replace(jobQueued, `"started_at":null,`, ``, 1)},
	{name: "job 404 in the route's shape", want: `"reason" is missing`, method: "GET", path: "/jobs/j1", status: 404, respBody: `{"detail":"Not Found"}`},
	{name: "malformed wait accepted", want: `"wait"`, method: "GET", path: "/jobs/j1?wait=soon", status: 200, respBody: jobQueued},
	{name: "cancel 200 not cancelled", want: `/status`, method: "DELETE", path: "/jobs/j1", status: 200, respBody: jobQueued},
	{name: "cancel 409 without the job", want: `"job" is missing`, method: "DELETE", path: "/jobs/j1", status: 409,
		respBody: `{"detail":"Only a queued job can be cancelled","reason":"not_cancellable"}`},
	{name: "404 for a wrong method on /jobs/{id}", want: `want status 405`, method: "PUT", path: "/jobs/j1", status: 404, respBody: `{"detail":"Not Found"}`},
	{name: "process 400 with another reason", want: `/reason`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 400,
		respBody: `{"detail":"x","reason":"invalid"}`},
	{name: "process 400 in the v2 shape", want: `"detail" is missing`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 400,
		respBody: `{"error":"Bad input","reason":"bad_input"}`},
	{name: "process 404", want: `status is not supported`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 404,
		respBody: `{"detail":"Model not found","reason":"not_found"}`},
	{name: "not_ready 503 without Retry-After", want: `"Retry-After" missing`, method: "POST", path: "/process", reqBody: `{"data":"x"}`, status: 503,
		respBody: `{"detail":"DEFAULT_MODEL does not take the seed lab's input","reason":"not_ready"}`},
	{name: "jobs v2 result not a v2 response", want: `/result`, method: "GET", path: "/jobs/j1", status: 200,
		respBody: strings.Replace(jobV2Succeeded, `"model_name":"digits",`, ``, 1)},
	{name: "jobs v2 data with null accepted", want: `/inputs/0/data`, method: "POST", path: "/jobs", status: 202, respHeader: jobAccepted, respBody: jobV2Queued,
		reqBody: `{"model":"digits","inputs":[{"name":"input","shape":[1],"datatype":"FP32","data":[null]}]}`},
	{name: "jobs model version a number accepted", want: `request body has an error`, method: "POST", path: "/jobs", status: 202, respHeader: jobAccepted,
		respBody: jobV2Queued, reqBody: `{"model":"digits","model_version":"x","version":1,"inputs":[]}`},
	{name: "jobs 404 for an unknown job reason", want: `/reason`, method: "POST", path: "/jobs", reqBody: v2JobBody, status: 404,
		respBody: `{"detail":"Model not found","reason":"no_workers"}`},
	{name: "job with an unknown model_version", want: `/model_version`, method: "GET", path: "/jobs/j1", status: 200,
		respBody: strings.Replace(jobV2Queued, `"model_version":"1"`, `"model_version":"v1"`, 1)},
	{name: "capacity without workers_needed", want: `"workers_needed" is missing`, method: "GET", path: "/capacity", status: 200,
		respHeader: noStore, respBody: strings.Replace(capacity, `{"workers_needed":3,`, `{`, 1)},
	{name: "capacity workers_needed fractional", want: `/workers_needed`, method: "GET", path: "/capacity", status: 200,
		respHeader: noStore, respBody: strings.Replace(capacity, `{"workers_needed":3`, `{"workers_needed":2.5`, 1)},
	{name: "capacity snapshot in camelCase", want: `"workers_needed" is missing`, method: "GET", path: "/capacity?model=seed&version=1", status: 200,
		respHeader: noStore, respBody: strings.Replace(snapshot, `"workers_needed"`, `"workersNeeded"`, 1)},
	{name: "capacity the old camelCase body", want: `"workers_needed" is missing`, method: "GET", path: "/capacity", status: 200, respHeader: noStore,
		respBody: `{"workersNeeded":3,"arrivalRate":12.5,"publishRate":12.5,"turnedAwayRate":0,"turnedAway":0,"serviceTime":0.12,
			"serviceTimeSource":"window","answered":750,"slotsPerWorker":1,"ready":0,"unacked":2,"consumers":2,
			"targetUtilization":0.7,"targetWait":1,"window":60,"stale":false}`},
	{name: "capacity snapshot with a wrong queue", want: `/queue`, method: "GET", path: "/capacity?model=seed&version=1", status: 200,
		respHeader: noStore, respBody: strings.Replace(snapshot, `warren.req.seed.v1`, `warren.requests`, 1)},
	{name: "capacity cacheable", want: `"Cache-Control" missing`, method: "GET", path: "/capacity", status: 200, respBody: capacity},
	{name: "capacity 404 cacheable", want: `"Cache-Control" missing`, method: "GET", path: "/capacity?model=x", status: 404,
		respBody: `{"detail":"model x is not tracked"}`},
	{name: "capacity 404 in the API's v2 shape", want: `"detail" is missing`, method: "GET", path: "/capacity?model=x", status: 404,
		respHeader: noStore, respBody: `{"error":"model x is not tracked"}`},
	{name: "capacity 500", want: `status is not supported`, method: "GET", path: "/capacity", status: 500, respHeader: noStore, respBody: `{"detail":"x"}`},
	{name: "metrics as JSON", want: `Content-Type`, method: "GET", path: "/metrics", status: 200, respBody: `{}`},
}

func TestValidatorAcceptsConformingExchanges(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range conforming {
		// Whatever host:port the API listens on.
		for _, host := range []string{"127.0.0.1:38117", "api.example.test", "[::1]:8000"} {
			if err := x.run(v, host); err != nil {
				t.Errorf("%s (host %s): rejected: %v", x.name, host, err)
			}
		}
	}
}

func TestValidatorRejectsNonConformingExchanges(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range nonConforming {
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

func TestValidatorEveryProcessStatusIsExercised(t *testing.T) {
	doc := loadDoc(t)
	seen := map[int]bool{}
	for _, x := range conforming {
		if x.path == "/process" && x.method == http.MethodPost {
			seen[x.status] = true
		}
	}
	for code := range doc.Paths.Value("/process").Post.Responses.Map() {
		var n int
		for _, c := range code {
			n = n*10 + int(c-'0')
		}
		if !seen[n] {
			t.Errorf("no conforming exchange for POST /process %s", code)
		}
	}
}

func TestValidatorNilArguments(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	if v.Validate(nil, nil, nil, nil) == nil {
		t.Error("nil request and response accepted")
	}
}

// TestValidatorRealExchanges drives the routes Register adds through a real server on a
// random port, as the API's integration tests do.
func TestValidatorRealExchanges(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t)
	for _, c := range []struct{ method, path string }{
		{"GET", "/openapi.json"},
		{"HEAD", "/openapi.json"},
		{"GET", "/docs"},
		{"HEAD", "/docs"},
		{"GET", "/no/such/route"},
		{"POST", "/openapi.json"},
	} {
		req, err := http.NewRequest(c.method, srv.URL+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Validate(req, nil, resp, body); err != nil {
			t.Errorf("%s %s: %v", c.method, c.path, err)
		}
	}
}

func TestValidatorConcurrentUse(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, x := range conforming {
				if err := x.run(v, "127.0.0.1:8000"); err != nil {
					t.Errorf("%s: %v", x.name, err)
				}
			}
			for _, x := range nonConforming {
				if x.run(v, "127.0.0.1:8000") == nil {
					t.Errorf("%s: accepted", x.name)
				}
			}
		}()
	}
	wg.Wait()
}

func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(apidoc.Spec())
	if err != nil {
		t.Fatalf("loading the document: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the document is not valid OpenAPI: %v", err)
	}
	return doc
}

// newServer serves the documentation routes with the API's real error handler.
func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	e := echo.New()
	e.HideBanner = true
	e.HTTPErrorHandler = httperr.Handler(slog.New(slog.DiscardHandler))
	apidoc.Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}
