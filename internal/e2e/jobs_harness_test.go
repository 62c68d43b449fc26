package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/apidoc/apidoctest"
	"github.com/warren-farm/warren/pkg/jobs/redisstore/redistest"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/queue"
)

// Helpers for the job fault tests (jobs_test.go): the real binaries, the job
// endpoints, worker job counters, a Redis prefix per test and private-node vhosts.

// tryDo is doChecked for goroutines and for calls that may legitimately fail at the
// transport level (an API being killed): it returns the transport error instead of
// failing the test. A response that does not match the OpenAPI document is still
// reported with t.Errorf (safe from any goroutine).
func tryDo(t *testing.T, spec *apidoctest.Validator, method, u, body string, hdr ...string) (response, error) {
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return response{}, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	if spec != nil {
		vreq, _ := http.NewRequest(method, u, strings.NewReader(body))
		vreq.Header = req.Header.Clone()
		if err := spec.Validate(vreq, []byte(body), resp, b); err != nil {
			t.Errorf("%s %s → %d does not match openapi.json: %v\nbody: %s", method, u, resp.StatusCode, err, b)
		}
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// awaitBroker waits until an API's /ready says it is connected to the broker.
func awaitBroker(t *testing.T, spec *apidoctest.Validator, api *proc) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := doChecked(t, spec, "GET", api.url("/ready"), "")
		if r.Status == http.StatusOK && r.json(t)["broker"] == "up" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("API not connected to the broker: %d %s", r.Status, r.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// finalStatus reports whether a job status is final.
func finalStatus(s string) bool {
	switch s {
	case "succeeded", "failed", "expired", "cancelled":
		return true
	}
	return false
}

// submitJob POSTs a lab job {"data"} on api and expects a 202 with a queued job of
// the default model.
func submitJob(t *testing.T, spec *apidoctest.Validator, api *proc, data string, hdr ...string) jobBody {
	t.Helper()
	j := submitBody(t, spec, api, fmt.Sprintf(`{"data":%q}`, data), hdr...)
	if j.Model != seedRoute.Model || j.ModelVersion != seedRoute.Version {
		t.Fatalf("POST /jobs %q: a job of %s/%s, want %s", data, j.Model, j.ModelVersion, seedRoute)
	}
	return j
}

// submitBody POSTs body to /jobs on api and expects a 202 with a queued job.
func submitBody(t *testing.T, spec *apidoctest.Validator, api *proc, body string, hdr ...string) jobBody {
	t.Helper()
	r := doChecked(t, spec, "POST", api.url("/jobs"), body, hdr...)
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST /jobs %.200s: %d %s", body, r.Status, r.Body)
	}
	j := decodeJob(t, r)
	if j.ID == "" || j.Status != "queued" || r.Header.Get("Location") != "/jobs/"+j.ID {
		t.Fatalf("POST /jobs %.200s: %v %s", body, r.Header, r.Body)
	}
	return j
}

// getJob GETs /jobs/{id} on api (wait "" for none) and expects a 200.
func getJob(t *testing.T, spec *apidoctest.Validator, api *proc, id, wait string) jobBody {
	t.Helper()
	path := "/jobs/" + id
	if wait != "" {
		path += "?wait=" + url.QueryEscape(wait)
	}
	r := doChecked(t, spec, "GET", api.url(path), "")
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
	}
	return decodeJob(t, r)
}

// awaitJob long-polls a job until cond holds for it, failing t after timeout.
func awaitJob(t *testing.T, spec *apidoctest.Validator, api *proc, id string, timeout time.Duration, what string, cond func(jobBody) bool) jobBody {
	t.Helper()
	j, ok := pollJob(t, spec, api, id, timeout, cond)
	if !ok {
		t.Fatalf("job %s: not %s after %v; last %+v", id, what, timeout, j)
	}
	return j
}

// pollJob long-polls a job until cond holds for it or timeout passes; it returns the
// last state read and whether cond held.
func pollJob(t *testing.T, spec *apidoctest.Validator, api *proc, id string, timeout time.Duration, cond func(jobBody) bool) (jobBody, bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		// A short wait: the long poll returns at the final state, and a non-final
		// condition (running) is re-checked at least every half second.
		j := getJob(t, spec, api, id, "0.5")
		if cond(j) {
			return j, true
		}
		if time.Now().After(deadline) {
			return j, false
		}
	}
}

// pollFinal is pollJob until the job is final.
func pollFinal(t *testing.T, spec *apidoctest.Validator, api *proc, id string, timeout time.Duration) (jobBody, bool) {
	t.Helper()
	return pollJob(t, spec, api, id, timeout, func(j jobBody) bool { return finalStatus(j.Status) })
}

// awaitFinal waits until a job is final and returns it.
func awaitFinal(t *testing.T, spec *apidoctest.Validator, api *proc, id string, timeout time.Duration) jobBody {
	t.Helper()
	return awaitJob(t, spec, api, id, timeout, "final", func(j jobBody) bool { return finalStatus(j.Status) })
}

// resultWorker returns the worker_id inside a succeeded lab job's result (the
// model_prediction object), "" if there is none.
func resultWorker(j jobBody) string {
	var a struct {
		WorkerID string `json:"worker_id"`
	}
	_ = json.Unmarshal(j.Result, &a)
	return a.WorkerID
}

// workerReady is the part of a worker's /ready the job tests read: its job
// counters (summed over its models), absent when no model runs jobs there.
type workerReady struct {
	Status string                  `json:"status"`
	Jobs   *queue.JobConsumerStats `json:"jobs"`
}

// jobStats reads a worker's job counters from its /ready (200 or 503).
func jobStats(w *proc) (queue.JobConsumerStats, error) {
	resp, err := http.Get(w.url("/ready"))
	if err != nil {
		return queue.JobConsumerStats{}, err
	}
	defer resp.Body.Close()
	var body workerReady
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return queue.JobConsumerStats{}, err
	}
	if body.Jobs == nil {
		return queue.JobConsumerStats{}, fmt.Errorf("%s /ready has no jobs section (JOB_CONCURRENCY=0?)", w.name)
	}
	return *body.Jobs, nil
}

// awaitJobStats polls a worker's job counters until cond holds.
func awaitJobStats(t *testing.T, w *proc, timeout time.Duration, what string, cond func(queue.JobConsumerStats) bool) queue.JobConsumerStats {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s, err := jobStats(w)
		if err == nil && cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %s: not %s after %v; last %+v (err %v)", w.addr, what, timeout, s, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// jobsInFlight is a worker's running jobs of route r (warren_worker_jobs_in_flight).
func jobsInFlight(t *testing.T, w *proc, r queue.Route) int {
	t.Helper()
	return int(promValue(t, w.url("/metrics"), "warren_worker_jobs_in_flight", map[string]string{"queue": r.JobQueue()}))
}

// awaitJobsInFlight polls a worker until it runs n jobs of route r.
func awaitJobsInFlight(t *testing.T, w *proc, r queue.Route, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for jobsInFlight(t, w, r) != n {
		if time.Now().After(deadline) {
			t.Fatalf("worker %s: not running %d jobs of %s after %v", w.addr, n, r, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// jobSessions counts the sessions of a worker's job consumer from its log: the
// first connection, then one "reconnected to broker" line per new session (the job
// consumer's connection is named warren-worker-jobs).
func jobSessions(w *proc) int {
	n := 0
	for _, l := range strings.Split(w.out.String(), "\n") {
		if strings.Contains(l, "warren-worker-jobs") &&
			(strings.Contains(l, `msg="connected to broker"`) || strings.Contains(l, `msg="reconnected to broker"`)) {
			n++
		}
	}
	return n
}

// amqpChannel opens a connection to amqpURL and a channel on it, both closed at
// the test's cleanup.
func amqpChannel(t *testing.T, amqpURL string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatalf("dial %s: %v", amqpURL, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// queueConsumers reads a queue's consumer count over AMQP with a passive declare
// (private nodes have no management API); -1 if the queue does not exist.
func queueConsumers(t *testing.T, amqpURL, name string) int {
	t.Helper()
	ch := amqpChannel(t, amqpURL)
	q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
	if err != nil {
		return -1
	}
	return q.Consumers
}

// awaitJobConsumer waits until route r's job queue has a consumer (a worker's job
// consumer subscribed).
func awaitJobConsumer(t *testing.T, amqpURL string, r queue.Route, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for queueConsumers(t, amqpURL, r.JobQueue()) < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("nobody consumes %s after %v", r.JobQueue(), timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// promValue scrapes url and returns one series, failing t if there is none.
func promValue(t *testing.T, url, name string, labels map[string]string) float64 {
	t.Helper()
	v, _, ok := sample(families(t, url), name, labels)
	if !ok {
		t.Fatalf("%s: no series %s%v", url, name, labels)
	}
	return v
}

// metric returns one series of a process's /metrics (labels: a subset to match),
// failing t if there is none.
func metric(t *testing.T, p *proc, name string, labels map[string]string) float64 {
	t.Helper()
	return promValue(t, p.url("/metrics"), name, labels)
}

// with returns m plus k=v.
func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// redisStore returns the API environment for a Redis job store under a prefix of
// this test's own; the prefix's keys are deleted at cleanup. It fails (never
// skips) when Redis does not answer.
func redisStore(t *testing.T) []string {
	t.Helper()
	u := redistest.URL(t) // REDIS_URL, the local Redis or Docker's
	opt, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("REDIS_URL: %v", err)
	}
	rdb := redis.NewClient(opt)
	prefix := fmt.Sprintf("warren-e2e:%s:%d:", nameUnsafeChars.Replace(t.Name()), time.Now().UnixNano())
	t.Cleanup(func() {
		defer rdb.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var keys []string
		it := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for it.Next(ctx) {
			keys = append(keys, it.Val())
		}
		if err := it.Err(); err != nil {
			t.Errorf("scanning Redis keys %s*: %v", prefix, err)
			return
		}
		for len(keys) > 0 {
			n := min(len(keys), 500)
			if err := rdb.Del(ctx, keys[:n]...).Err(); err != nil {
				t.Errorf("deleting Redis keys %s*: %v", prefix, err)
				return
			}
			keys = keys[n:]
		}
	})
	return []string{"REDIS_URL=" + u, "REDIS_PREFIX=" + prefix}
}

var nameUnsafeChars = strings.NewReplacer("/", "_", " ", "_", ":", "_", "*", "_")

// nodeVhosts creates vhosts on a private node (which has no management API) in one
// rabbitmqctl call (each call costs 1-2 s) and returns their AMQP URLs.
func nodeVhosts(t *testing.T, node *testbroker.Node, names ...string) []string {
	t.Helper()
	var bins, urls []string
	for _, n := range names {
		if strings.ContainsAny(n, "\"$`\\<>") {
			t.Fatalf("vhost name %q", n)
		}
		bins = append(bins, fmt.Sprintf("<<%q>>", n))
		urls = append(urls, node.AMQPURL+url.PathEscape(n))
	}
	node.Ctl(t, "eval", fmt.Sprintf(`[begin ok = rabbit_vhost:add(V, <<"test">>),
ok = rabbit_auth_backend_internal:set_permissions(<<"guest">>, V, <<".*">>, <<".*">>, <<".*">>, <<"test">>) end
|| V <- [%s]].`, strings.Join(bins, ", ")))
	return urls
}

// publishRaw publishes one persistent message straight to a queue of a vhost, with
// a publisher confirm.
func publishRaw(t *testing.T, amqpURL, queueName string, p amqp.Publishing) {
	t.Helper()
	ch := amqpChannel(t, amqpURL)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	p.DeliveryMode = amqp.Persistent
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queueName, true, false, p)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := dc.WaitContext(ctx); err != nil || !ok {
		t.Fatalf("publish to %s not confirmed: ok=%v err=%v", queueName, ok, err)
	}
}

// slowLabRepository starts the seed lab's Service B (POST /predict {"input"}) in
// the test's process, answering as the seed model does, except that an input
// starting with "slow" is held until its caller gives up (a worker SIGKILLed, or
// the job's run timeout), and returns a model repository whose seed model is that
// server over the http backend (protocol seed). Workers on it run slow jobs without
// a slow warm-up: MODEL_LATENCY delays every inference of the seed backend, the
// warm-up's included.
func slowLabRepository(t *testing.T) string {
	t.Helper()
	seed := model.NewSeed(model.SeedConfig{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Input string `json:"input"`
		}
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&in) != nil {
			http.Error(w, "want POST {\"input\": …}", http.StatusUnprocessableEntity)
			return
		}
		if strings.HasPrefix(in.Input, "slow") {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(2 * time.Minute):
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seed.PredictOne(in.Input))
	}))
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
	dir := filepath.Join(t.TempDir(), "models")
	if err := os.MkdirAll(filepath.Join(dir, "seed"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := "backend: http\nprotocol: seed\nurl: " + srv.URL + "/predict\nconcurrency: 4\n"
	if err := os.WriteFile(filepath.Join(dir, "seed", "config.yaml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// digitsRoute is the repository's digits ONNX model.
var digitsRoute = queue.Route{Model: "digits", Version: "1"}

// digitsInputs is a v2 "inputs" array holding one image.
func digitsInputs(v digitsVector) string {
	b, _ := json.Marshal(v.Input)
	return fmt.Sprintf(`[{"name":"input","datatype":"FP32","shape":[1,64],"data":%s}]`, b)
}

// digitOf reads a digits v2 response (an inference answer or a job's result) and
// returns the most probable digit, failing t unless it is one row of ten
// probabilities of the digits model.
func digitOf(t *testing.T, resp []byte) int {
	t.Helper()
	var r struct {
		ModelName    string `json:"model_name"`
		ModelVersion string `json:"model_version"`
		Outputs      []struct {
			Name  string    `json:"name"`
			Shape []int64   `json:"shape"`
			Data  []float64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(resp, &r); err != nil || r.ModelName != "digits" || r.ModelVersion != "1" || len(r.Outputs) != 1 ||
		r.Outputs[0].Name != "probabilities" || !slices.Equal(r.Outputs[0].Shape, []int64{1, 10}) || len(r.Outputs[0].Data) != 10 {
		t.Fatalf("not the digits model's v2 response (err %v): %s", err, resp)
	}
	best := 0
	for i, p := range r.Outputs[0].Data {
		if p > r.Outputs[0].Data[best] {
			best = i
		}
	}
	return best
}

// apiReady is an API's GET /ready.
type apiReady struct {
	Status  string `json:"status"`
	Broker  string `json:"broker"`
	Workers int    `json:"workers"`
	Models  []struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		Workers int    `json:"workers"`
	} `json:"models"`
	Jobs struct {
		Status  string `json:"status"`
		Problem string `json:"problem"`
	} `json:"jobs"`
}

// awaitReady polls an API's /ready until cond holds for a 200 answer.
func awaitReady(t *testing.T, spec *apidoctest.Validator, api *proc, timeout time.Duration, what string, cond func(apiReady) bool) apiReady {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := doChecked(t, spec, "GET", api.url("/ready"), "")
		var b apiReady
		if err := json.Unmarshal(r.Body, &b); err == nil && r.Status == http.StatusOK && cond(b) {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("API /ready: not %s after %v: %d %s", what, timeout, r.Status, r.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// awaitModelWorkers waits until an API's /ready lists model version r with n live
// workers.
func awaitModelWorkers(t *testing.T, spec *apidoctest.Validator, api *proc, r queue.Route, n int) {
	t.Helper()
	awaitReady(t, spec, api, 15*time.Second, fmt.Sprintf("%d workers of %s", n, r), func(b apiReady) bool {
		for _, m := range b.Models {
			if m.Name == r.Model && m.Version == r.Version {
				return m.Workers == n
			}
		}
		return false
	})
}

// noManagement is the API's MANAGEMENT_URL for a farm without a management API (a
// private node, or no broker): an address nobody answers. An empty MANAGEMENT_URL
// would not do: the binaries take an empty variable for an unset one, whose default
// is the shared broker's management API, and the API would apply its queue policy
// to the shared broker's vhost of the same name ("/").
func noManagement(t *testing.T) string {
	return "MANAGEMENT_URL=http://" + freeAddr(t)
}
