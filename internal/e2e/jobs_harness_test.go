//go:build porting

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/apidoc/apidoctest"
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

// submitJob POSTs /jobs on api and expects a 202 with a queued job.
func submitJob(t *testing.T, spec *apidoctest.Validator, api *proc, data string, hdr ...string) jobBody {
	t.Helper()
	r := doChecked(t, spec, "POST", api.url("/jobs"), fmt.Sprintf(`{"data":%q}`, data), hdr...)
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST /jobs %q: %d %s", data, r.Status, r.Body)
	}
	j := decodeJob(t, r)
	if j.ID == "" || j.Status != "queued" {
		t.Fatalf("POST /jobs %q: %s", data, r.Body)
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

// resultWorker returns the worker_id inside a succeeded job's result (the model
// answer), "" if there is none.
func resultWorker(j jobBody) string {
	var a struct {
		WorkerID string `json:"worker_id"`
	}
	_ = json.Unmarshal(j.Result, &a)
	return a.WorkerID
}

// workerJobs is the "jobs" part of a worker's /ready.
type workerJobs struct {
	Consuming bool                   `json:"consuming"`
	InFlight  int                    `json:"in_flight"`
	Stats     queue.JobConsumerStats `json:"stats"`
}

// jobState reads a worker's job consumer state from its /ready (200 or 503).
func jobState(t *testing.T, w *proc) (workerJobs, error) {
	resp, err := http.Get(w.url("/ready"))
	if err != nil {
		return workerJobs{}, err
	}
	defer resp.Body.Close()
	var body struct {
		Jobs *workerJobs `json:"jobs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return workerJobs{}, err
	}
	if body.Jobs == nil {
		return workerJobs{}, fmt.Errorf("%s /ready has no jobs section (JOB_CONCURRENCY=0?)", w.name)
	}
	return *body.Jobs, nil
}

// awaitWorkerJobs polls a worker's job consumer state until cond holds.
func awaitWorkerJobs(t *testing.T, w *proc, timeout time.Duration, what string, cond func(workerJobs) bool) workerJobs {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s, err := jobState(t, w)
		if err == nil && cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %s: not %s after %v; last %+v (err %v)", w.addr, what, timeout, s, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric returns one series of a /metrics endpoint (labels: a subset to match),
// failing t if there is none.
func metric(t *testing.T, p *proc, name string, labels map[string]string) float64 {
	t.Helper()
	return mustSample(t, families(t, p.url("/metrics")), name, labels)
}

// redisURL is the Redis the job-store tests use: REDIS_URL if set, else the local one.
func redisURL() string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// redisStore returns the API environment for a Redis job store under a prefix of
// this test's own; the prefix's keys are deleted at cleanup. It fails (never
// skips) when Redis does not answer.
func redisStore(t *testing.T) []string {
	t.Helper()
	opt, err := redis.ParseURL(redisURL())
	if err != nil {
		t.Fatalf("REDIS_URL: %v", err)
	}
	rdb := redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		t.Fatalf("Redis at %s does not answer (%v): start one (apt-get install redis-server; redis-server --daemonize yes) or set REDIS_URL", opt.Addr, err)
	}
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
	return []string{"REDIS_URL=" + redisURL(), "REDIS_PREFIX=" + prefix}
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
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
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
