package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/apidoc/apidoctest"
	"github.com/warren-farm/warren/pkg/auth"
)

// Limits per caller through the real binaries. With API keys a caller is its key,
// with its key's limits (TestGreedyCallerDoesNotStarvePolite); without
// authentication a caller is the client's address, and TestLimitsSharedAcrossReplicas
// tells two callers apart by dialling from two loopback addresses, 127.0.0.1 and
// 127.0.0.2.

// clientFrom is an HTTP client whose connections come from the local address ip.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512}}
}

func (x exchange) reason() string {
	var m struct {
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(x.body, &m)
	return m.Reason
}

// TestLimitsSharedAcrossReplicas: two API replicas on one Redis (REDIS_URL)
// share every caller's rate limit and concurrency quota; a job's slot, taken on
// one replica, is given back when the other sees the job end.
func TestLimitsSharedAcrossReplicas(t *testing.T) {
	integration(t)
	store := redisStore(t)
	env := append(slices.Clone(store), "RATE_LIMIT=0.5", "RATE_BURST=6", "CALLER_CONCURRENCY=2")
	// JOB_CONCURRENCY=0: the worker runs no jobs, so they stay queued until cancelled.
	f := newFarm(t, 1, env, []string{"JOB_CONCURRENCY=0"})
	apiB := startProc(t, "api", append([]string{"AMQP_URL=" + f.vh.AMQPURL, "MANAGEMENT_URL=" + f.vh.ManagementURL}, env...)...)
	waitReadyOn(t, apiB, "seed", "1", true)
	apis := []*proc{f.api, apiB}

	// The rate limit: a burst of 6 at 0.5/s, whichever replica is asked.
	c1 := clientFrom("127.0.0.1")
	allowed := map[string]int{}
	for i := range 12 {
		a := apis[i%2]
		x := send(t, c1, f.spec, "POST", a.url("/process"), `{"data":"x"}`)
		switch {
		case x.err != nil:
			t.Fatal(x.err)
		case x.status == 200:
			allowed[a.addr]++
		case x.status == 429 && x.reason() == "rate_limited":
			if x.header.Get("Retry-After") == "" || !strings.Contains(x.header.Get("RateLimit"), `"rate";r=0`) {
				t.Fatalf("429 without its headers: %v", x.header)
			}
		default:
			t.Fatalf("request %d: %d %s", i+1, x.status, x.body)
		}
	}
	if n := allowed[f.api.addr] + allowed[apiB.addr]; n < 6 || n > 7 {
		t.Fatalf("two replicas allowed %d of 12 requests (%v), want the shared burst of 6 (7 if a token came back meanwhile)", n, allowed)
	}
	if allowed[f.api.addr] == 0 || allowed[apiB.addr] == 0 {
		t.Fatalf("one replica allowed nothing: %v", allowed)
	}

	// The concurrency quota, from another caller: two queued jobs, one per replica.
	c2 := clientFrom("127.0.0.2")
	var ids []string
	for _, a := range apis {
		x := send(t, c2, f.spec, "POST", a.url("/jobs"), `{"data":"queued"}`)
		if x.status != 202 {
			t.Fatalf("job on %s: %d %s", a.addr, x.status, x.body)
		}
		var j struct{ ID string }
		_ = json.Unmarshal(x.body, &j)
		ids = append(ids, j.ID)
	}
	// The quota is full on both replicas, for jobs and calls alike.
	if x := send(t, c2, f.spec, "POST", f.api.url("/jobs"), `{"data":"third"}`); x.status != 429 || x.reason() != "quota_exceeded" ||
		!strings.Contains(x.header.Get("RateLimit"), `"concurrency";r=0`) {
		t.Fatalf("a third job: %d %v %s", x.status, x.header, x.body)
	}
	if x := send(t, c2, f.spec, "POST", apiB.url("/v2/models/seed/infer"), `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["x"]}]}`); x.status != 429 || x.reason() != "quota_exceeded" {
		t.Fatalf("a call with two jobs queued: %d %s", x.status, x.body)
	}
	// The first caller is not affected by the second's quota.
	if x := send(t, c1, nil, "GET", apiB.url("/jobs/"+ids[0]), ""); x.status != 200 {
		t.Fatalf("reading a job: %d %s", x.status, x.body)
	}
	// Cancelling the job submitted through A, on B, gives its slot back.
	if x := send(t, c2, f.spec, "DELETE", apiB.url("/jobs/"+ids[0]), ""); x.status != 200 {
		t.Fatalf("cancel: %d %s", x.status, x.body)
	}
	if x := send(t, c2, f.spec, "POST", f.api.url("/jobs"), `{"data":"after the cancel"}`); x.status != 202 {
		t.Fatalf("a job after one was cancelled on the other replica: %d %s", x.status, x.body)
	}
	// Every decision was Redis': none went through unlimited for want of an answer.
	for _, a := range apis {
		m := send(t, c1, nil, "GET", a.url("/metrics"), "")
		if !strings.Contains(string(m.body), "\nwarren_rate_limiter_unavailable_total 0\n") {
			t.Errorf("%s: the limiter failed to decide (fail-open) during the test", a.addr)
		}
	}
}

// fairness is what one run of the fairness scenario measured.
type fairness struct {
	alone, with              []time.Duration // the polite caller's latencies
	failed                   []string        // its failures next to the greedy one
	sent, ok, limited, other int64           // the greedy caller's requests and answers
	seconds                  float64         // how long the greedy caller sent
	p99Alone, p99With, bound time.Duration
	metrics                  string
}

// Fairness scenario constants: the farm computes 2 calls at a time for 20 ms
// each, 100 calls/s. Within their limits the two callers load it to 30%; the
// greedy caller alone, unlimited, would ask for twice what it can do.
const (
	fairLimit      = 20.0 // the keys' rate limit: requests/s per key
	fairPoliteRate = 10.0 // within the limit
	fairGreedyRate = 10 * fairLimit
	fairPhase      = 6 * time.Second
)

// runFairness starts a farm whose API knows two API keys, polite and greedy,
// each with keyLimits (a YAML flow mapping; empty: no limits), measures the
// polite key alone, then next to the greedy one sending at ten times the limit,
// open loop, from the same client address.
func runFairness(t *testing.T, keyLimits string) fairness {
	t.Helper()
	var keys strings.Builder
	keys.WriteString("keys:\n")
	bearer := map[string][]string{}
	for _, name := range []string{"polite", "greedy"} {
		secret, e, err := auth.NewKey(name, []string{"*"}, false)
		if err != nil {
			t.Fatal(err)
		}
		keys.WriteString(e.YAML())
		if keyLimits != "" {
			keys.WriteString("    limits: " + keyLimits + "\n")
		}
		bearer[name] = []string{"Authorization", "Bearer " + secret}
	}
	keysFile := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(keysFile, []byte(keys.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFarm(t, 1, []string{"LOG_LEVEL=info", "API_KEYS_FILE=" + keysFile}, []string{"MODEL_LATENCY=20ms", "CONCURRENCY=2"})
	polite, greedy := clientFrom("127.0.0.1"), clientFrom("127.0.0.1")
	url := f.api.url("/v2/models/seed/infer")
	body := `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["hello"]}]}`

	// politeRun sends at fairPoliteRate for fairPhase, one call at a time on a
	// ticker, and returns the latencies of the answered calls and the failures.
	politeRun := func() (lat []time.Duration, failures []string) {
		tick := time.NewTicker(time.Duration(float64(time.Second) / fairPoliteRate))
		defer tick.Stop()
		end := time.Now().Add(fairPhase)
		for time.Now().Before(end) {
			<-tick.C
			x := send(t, polite, f.spec, "POST", url, body, append([]string{"X-Request-Timeout", "10s"}, bearer["polite"]...)...)
			if x.err != nil || x.status != 200 {
				failures = append(failures, fmt.Sprintf("%d %v %s", x.status, x.err, x.body))
				continue
			}
			lat = append(lat, x.took)
		}
		return lat, failures
	}
	// Warm up (connections, the model), then measure the polite caller alone.
	for range 5 {
		send(t, polite, nil, "POST", url, body, bearer["polite"]...)
	}
	time.Sleep(time.Second) // its bucket fills again
	var r fairness
	var failed []string
	if r.alone, failed = politeRun(); len(failed) > 0 {
		t.Fatalf("the polite caller alone failed %d calls: %v", len(failed), failed)
	}

	// Now with the greedy caller: open loop at fairGreedyRate, each call on its
	// own, at most 256 at once (the client's own bound).
	ctx, stop := context.WithCancel(context.Background())
	var sent, ok, limited, other, checked atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		tick := time.NewTicker(time.Duration(float64(time.Second) / fairGreedyRate))
		defer tick.Stop()
		inflight := make(chan struct{}, 256)
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			select {
			case inflight <- struct{}{}:
			default:
				continue
			}
			sent.Add(1)
			wg.Go(func() {
				defer func() { <-inflight }()
				var spec *apidoctest.Validator
				if checked.Add(1) <= 50 { // check a sample against the document
					spec = f.spec
				}
				x := send(t, greedy, spec, "POST", url, body, bearer["greedy"]...)
				switch {
				case x.err == nil && x.status == 200:
					ok.Add(1)
				case x.err == nil && x.status == 429:
					limited.Add(1)
				default:
					other.Add(1)
				}
			})
		}
	})
	time.Sleep(500 * time.Millisecond) // the greedy caller has used its burst
	r.with, r.failed = politeRun()
	r.seconds = time.Since(start).Seconds()
	stop()
	wg.Wait()
	r.sent, r.ok, r.limited, r.other = sent.Load(), ok.Load(), limited.Load(), other.Load()
	r.p99Alone, r.p99With = percentile(r.alone, 0.99), percentile(r.with, 0.99)
	r.bound = max(3*r.p99Alone, r.p99Alone+250*time.Millisecond)
	r.metrics = string(send(t, polite, nil, "GET", f.api.url("/metrics"), "").body)
	t.Logf("polite alone: %d calls, p50 %v p99 %v; next to the greedy caller: %d calls, p50 %v p99 %v (bound %v), %d failed",
		len(r.alone), percentile(r.alone, 0.5), r.p99Alone, len(r.with), percentile(r.with, 0.5), r.p99With, r.bound, len(r.failed))
	t.Logf("greedy: %d sent in %.1fs (%.0f/s): %d answered, %d refused 429, %d other",
		r.sent, r.seconds, float64(r.sent)/r.seconds, r.ok, r.limited, r.other)
	return r
}

// TestGreedyCallerDoesNotStarvePolite: one API key sends at ten times its rate
// limit (its keys-file limits) while another keeps within it, from the same
// client address. The greedy one gets 429s; the polite
// one's p99 latency stays within max(3 × its p99 alone, its p99 alone + 250 ms),
// and none of its calls fails. The same run without limits shows the bound is
// not a given: the greedy caller then fills the queue and the polite one's p99
// goes past it.
func TestGreedyCallerDoesNotStarvePolite(t *testing.T) {
	integration(t)
	r := runFairness(t, fmt.Sprintf("{rate: %v, burst: 20, concurrency: 16}", fairLimit))
	if len(r.failed) > 0 {
		t.Errorf("the polite caller failed %d calls next to the greedy one: %v", len(r.failed), r.failed)
	}
	if r.p99With > r.bound {
		t.Errorf("the polite caller's p99 rose from %v alone to %v next to the greedy one, over the bound %v", r.p99Alone, r.p99With, r.bound)
	}
	if float64(r.sent) < 0.7*fairGreedyRate*r.seconds {
		t.Errorf("the greedy caller sent only %d requests in %.1fs: not 10× its limit", r.sent, r.seconds)
	}
	// It gets what the limit allows (burst + rate × time, give or take) and 429s
	// for the rest.
	if maxOK := 20 + fairLimit*r.seconds*1.2 + 5; float64(r.ok) > maxOK {
		t.Errorf("the greedy caller got %d answers in %.1fs, more than its limit allows (%.0f)", r.ok, r.seconds, maxOK)
	}
	if r.limited < r.sent/2 || r.other > 0 {
		t.Errorf("the greedy caller: %d sent, %d refused, %d other answers; want most refused with 429 and nothing else", r.sent, r.limited, r.other)
	}
	// The refusals are counted, by reason and caller.
	want := fmt.Sprintf(`warren_rate_limited_total{caller="key:greedy",reason="rate_limited"} %d`, r.limited)
	if !strings.Contains(r.metrics, want) {
		t.Errorf("/metrics lacks %s", want)
	}

	t.Run("without limits", func(t *testing.T) {
		c := runFairness(t, "")
		if c.limited > 0 {
			t.Fatalf("429s without limits: %d", c.limited)
		}
		if len(c.failed) == 0 && c.p99With <= c.bound {
			t.Errorf("without limits the greedy caller did not hurt the polite one (p99 %v alone, %v with, bound %v): the scenario proves nothing",
				c.p99Alone, c.p99With, c.bound)
		}
	})
}

// percentile is the q-quantile of ds (nearest rank).
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}
