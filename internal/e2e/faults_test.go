package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warren-farm/warren/internal/faultproxy"
	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/api"
	"github.com/warren-farm/warren/pkg/jobs/boltstore"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/worker"
)

// The network-fault tests: an API and a worker in this process reach the
// broker only through a faultproxy.Proxy on loopback, under a steady load of
// sync calls and with jobs in flight; each test injects one fault, heals it,
// and checks what callers saw, that every job ends exactly once, succeeded,
// and how long the farm took to answer 200 again. Each test logs its README
// row ("Running in production").

// faultHeartbeat is the farm's AMQP_HEARTBEAT in these tests.
const faultHeartbeat = 2 * time.Second

// faultCallTimeout is the sync callers' X-Request-Timeout.
const faultCallTimeout = 3 * time.Second

// faultFarm is the farm behind the proxy.
type faultFarm struct {
	t     *testing.T
	vh    *testbroker.Vhost
	proxy *faultproxy.Proxy
	srv   *api.Server
	base  string
	stops []func()
}

func newFaultFarm(t *testing.T) *faultFarm {
	t.Helper()
	vh := testbroker.NewVhost(t)
	u, err := url.Parse(vh.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := faultproxy.Start(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = proxy.Addr()
	f := &faultFarm{t: t, vh: vh, proxy: proxy}
	t.Cleanup(f.close)

	st, err := boltstore.OpenBolt(boltstore.BoltConfig{Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	// RecoverAfter just above the publish timeout (10s): a job whose publish the
	// cut left unconfirmed is republished by the outbox that soon.
	acfg := api.Config{Jobs: api.JobsConfig{Store: st, MaxWait: 30 * time.Second, RecoverAfter: 11 * time.Second}}
	acfg.AMQP.URL, acfg.AMQP.Heartbeat = u.String(), faultHeartbeat
	acfg.AMQP.MaxBackoff = 500 * time.Millisecond
	if f.srv, err = api.New(acfg); err != nil {
		t.Fatal(err)
	}
	wcfg := worker.Config{WorkerID: "w-" + t.Name(),
		Models: []worker.ModelSpec{serve(seedRoute, model.NewSeed(model.SeedConfig{}), 4, 2)}}
	wcfg.AMQP.URL, wcfg.AMQP.Heartbeat = u.String(), faultHeartbeat
	wcfg.AMQP.MaxBackoff = 500 * time.Millisecond
	w, err := worker.New(wcfg)
	if err != nil {
		t.Fatal(err)
	}
	wln, aln := listen(t), listen(t)
	f.base = "http://" + aln.Addr().String()
	f.run(func(ctx context.Context) { _ = w.Run(ctx, wln) }, func() { _ = w.Stop(context.Background()) })
	f.run(func(ctx context.Context) { _ = f.srv.Run(ctx, aln) }, func() { _ = f.srv.Stop(context.Background()) })
	deadline := time.Now().Add(15 * time.Second)
	for {
		if v, err := f.srv.Catalog().Resolve(seedRoute.Model, seedRoute.Version); err == nil && v.Ready() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the API never saw the worker through the proxy")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return f
}

// run runs fn in a goroutine; close calls stop and waits for fn, newest first.
func (f *faultFarm) run(fn func(ctx context.Context), stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); fn(ctx) }()
	f.stops = append(f.stops, func() {
		stop()
		cancel()
		<-done
	})
}

func (f *faultFarm) close() {
	f.proxy.Blackhole(false)
	for i := len(f.stops) - 1; i >= 0; i-- {
		f.stops[i]()
	}
	f.stops = nil
	_ = f.proxy.Close()
	client.CloseIdleConnections()
}

// callResult is one sync call.
type callResult struct {
	start, end time.Time
	status     int
	reason     string
}

// load calls POST /v2/models/seed/infer from n goroutines until stop.
type load struct {
	mu      sync.Mutex
	results []callResult
	stop    chan struct{}
	wg      sync.WaitGroup
}

func (f *faultFarm) startLoad(n int) *load {
	l := &load{stop: make(chan struct{})}
	body := []byte(`{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["cat image data"]}]}`)
	for range n {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				req, _ := http.NewRequest("POST", f.base+"/v2/models/seed/infer", bytes.NewReader(body))
				req.Header.Set("X-Request-Timeout", faultCallTimeout.String())
				r := callResult{start: time.Now()}
				resp, err := client.Do(req)
				r.end = time.Now()
				if err != nil {
					r.status = -1
				} else {
					var e struct{ Reason string }
					b, _ := io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					_ = json.Unmarshal(b, &e)
					r.status, r.reason = resp.StatusCode, e.Reason
				}
				l.mu.Lock()
				l.results = append(l.results, r)
				l.mu.Unlock()
				if r.status != 200 {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	return l
}

func (l *load) halt() []callResult {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]callResult(nil), l.results...)
}

// submitJobs submits n jobs and returns their ids; a submission the farm
// refuses (503 while the broker is unreachable) is retried until accepted,
// so each id is a job the client was told about.
func (f *faultFarm) submitJobs(n int, tag string) (ids []string, refused map[string]int, err error) {
	refused = map[string]int{}
	for i := range n {
		deadline := time.Now().Add(30 * time.Second)
		for {
			req, _ := http.NewRequest("POST", f.base+"/jobs", strings.NewReader(fmt.Sprintf(`{"data":"%s-%d"}`, tag, i)))
			req.Header.Set("Idempotency-Key", fmt.Sprintf("%s-%s-%d", f.t.Name(), tag, i))
			resp, err := client.Do(req)
			if err == nil {
				var j struct{ ID string }
				b, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode == 202 || resp.StatusCode == 200 {
					_ = json.Unmarshal(b, &j)
					ids = append(ids, j.ID)
					break
				}
				var e struct{ Reason string }
				_ = json.Unmarshal(b, &e)
				refused[fmt.Sprintf("%d %s", resp.StatusCode, e.Reason)]++
			}
			if time.Now().After(deadline) {
				return ids, refused, fmt.Errorf("job %s-%d not accepted within 30s (refusals %v)", tag, i, refused)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return ids, refused, nil
}

// jobsSucceed waits until every job is final and checks each succeeded on its
// first final state (one final state: the store keeps the first).
func (f *faultFarm) jobsSucceed(ids []string, within time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(within)
	for _, id := range ids {
		for {
			resp, err := client.Get(f.base + "/jobs/" + id + "?wait=5")
			if err == nil {
				var j jobBody
				b, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				_ = json.Unmarshal(b, &j)
				if j.Status == "succeeded" {
					break
				}
				if j.Status != "" && j.Status != "queued" && j.Status != "running" {
					f.t.Fatalf("job %s ended %s: %s", id, j.Status, b)
				}
			}
			if time.Now().After(deadline) {
				f.t.Fatalf("job %s not succeeded within %v", id, within)
			}
		}
	}
}

// summary describes the calls in [from, to): statuses, the slowest, and
// whether each ended within its deadline (plus 500ms of slack).
func summary(rs []callResult, from, to time.Time) (string, bool) {
	counts := map[string]int{}
	var slowest time.Duration
	ok := true
	for _, r := range rs {
		if r.start.Before(from) || !r.start.Before(to) {
			continue
		}
		k := fmt.Sprint(r.status)
		if r.reason != "" {
			k += " " + r.reason
		}
		counts[k]++
		d := r.end.Sub(r.start)
		slowest = max(slowest, d)
		if d > faultCallTimeout+500*time.Millisecond {
			ok = false
		}
	}
	var keys []string
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, counts[k]))
	}
	return fmt.Sprintf("%s; slowest %v", strings.Join(parts, ", "), slowest.Round(10*time.Millisecond)), ok
}

// firstOKAfter is how long after t the first call that started then answered 200.
func firstOKAfter(rs []callResult, t time.Time) (time.Duration, bool) {
	best := time.Duration(-1)
	for _, r := range rs {
		if r.status == 200 && !r.start.Before(t) {
			if d := r.end.Sub(t); best < 0 || d < best {
				best = d
			}
		}
	}
	return best, best >= 0
}

// faultRun is one row: apply the fault for hold, heal it, measure.
type faultRun struct {
	name      string
	apply     func(f *faultFarm)
	heal      func(f *faultFarm)
	hold      time.Duration
	instant   bool          // the fault is one event: recovery counts from it, not from the end of hold
	allOK     bool          // every call during the fault must answer 200 in time
	recoverIn time.Duration // the first 200 after healing must come within this
}

func runFault(t *testing.T, fr faultRun) {
	integration(t)
	f := newFaultFarm(t)
	before, _, err := f.submitJobs(5, "before")
	if err != nil {
		t.Fatal(err)
	}
	l := f.startLoad(4)
	time.Sleep(500 * time.Millisecond)
	cut := time.Now()
	fr.apply(f)
	type submitted struct {
		ids     []string
		refused map[string]int
		err     error
	}
	duringc := make(chan submitted, 1)
	go func() {
		ids, refused, err := f.submitJobs(3, "during")
		duringc <- submitted{ids, refused, err}
	}()
	time.Sleep(time.Until(cut.Add(fr.hold)))
	healed := time.Now()
	fr.heal(f)
	if fr.instant {
		healed = cut
	}
	// Wait for the first 200 after healing (or give up after recoverIn).
	deadline := healed.Add(fr.recoverIn)
	var rec time.Duration
	for {
		l.mu.Lock()
		d, ok := firstOKAfter(l.results, healed)
		l.mu.Unlock()
		if ok {
			rec = d
			break
		}
		if time.Now().After(deadline) {
			rs := l.halt()
			s, _ := summary(rs, healed, time.Now())
			t.Fatalf("%s: no 200 within %v of healing; after healing: %s", fr.name, fr.recoverIn, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	rs := l.halt()
	s, inTime := summary(rs, cut, cut.Add(fr.hold))
	if !inTime {
		t.Errorf("%s: a call outlived its deadline during the fault: %s", fr.name, s)
	}
	if fr.allOK && !strings.HasPrefix(s, "200 ×") || fr.allOK && strings.Contains(s, ", ") {
		t.Errorf("%s: calls failed during a fault they should ride out: %s", fr.name, s)
	}
	during := <-duringc
	if during.err != nil {
		t.Fatal(during.err)
	}
	f.jobsSucceed(append(before, during.ids...), 60*time.Second)
	t.Logf("ROW | %s | %s | %d jobs, all succeeded once; submissions refused meanwhile: %v | first 200 %v after %s |",
		fr.name, s, len(before)+len(during.ids), during.refused, rec.Round(10*time.Millisecond),
		map[bool]string{true: "the fault", false: "healing"}[fr.instant])
}

func TestFaultLatency50ms(t *testing.T) {
	runFault(t, faultRun{name: "latency 50 ms each way",
		apply: func(f *faultFarm) { f.proxy.SetLatency(50 * time.Millisecond) },
		heal:  func(f *faultFarm) { f.proxy.SetLatency(0) },
		hold:  3 * time.Second, allOK: true, recoverIn: 2 * time.Second})
}

func TestFaultLatency1s(t *testing.T) {
	runFault(t, faultRun{name: "latency 1 s each way",
		apply: func(f *faultFarm) { f.proxy.SetLatency(time.Second) },
		heal:  func(f *faultFarm) { f.proxy.SetLatency(0) },
		hold:  5 * time.Second, recoverIn: 10 * time.Second})
}

func TestFaultBandwidth(t *testing.T) {
	runFault(t, faultRun{name: "bandwidth 4 kB/s each way",
		apply: func(f *faultFarm) { f.proxy.SetBandwidth(4 << 10) },
		heal:  func(f *faultFarm) { f.proxy.SetBandwidth(0) },
		hold:  4 * time.Second, recoverIn: 10 * time.Second})
}

func TestFaultResetMidFrame(t *testing.T) {
	runFault(t, faultRun{name: "reset mid-frame (RST on every connection)",
		apply: func(f *faultFarm) { f.proxy.ResetMidFrame() },
		heal:  func(f *faultFarm) {},
		hold:  time.Second, instant: true, recoverIn: 10 * time.Second})
}

func TestFaultSlowClose(t *testing.T) {
	runFault(t, faultRun{name: "broker closes every connection, the FIN 3 s late",
		apply: func(f *faultFarm) { f.proxy.SetSlowClose(3 * time.Second); f.vh.CloseConnections(f.t) },
		heal:  func(f *faultFarm) { f.proxy.SetSlowClose(0) },
		hold:  time.Second, instant: true, recoverIn: 10 * time.Second})
}

// TestFaultHalfOpen cuts every connection without a FIN or a RST and measures
// how long the farm takes to notice (AMQP_HEARTBEAT=2s here).
func TestFaultHalfOpen(t *testing.T) {
	noticedc := make(chan time.Duration, 1)
	runFault(t, faultRun{name: "half-open cut for 8 s (no FIN, no RST; AMQP_HEARTBEAT=2s)",
		apply: func(f *faultFarm) {
			f.proxy.Blackhole(true)
			start := time.Now()
			go func() {
				for f.srv.Client().State().Connected && time.Since(start) < 8*time.Second {
					time.Sleep(10 * time.Millisecond)
				}
				noticedc <- time.Since(start)
			}()
		},
		heal: func(f *faultFarm) { f.proxy.Blackhole(false) },
		hold: 8 * time.Second, recoverIn: 15 * time.Second})
	noticed := <-noticedc
	t.Logf("ROW-NOTE | the API's connection was marked lost %v after the cut", noticed.Round(10*time.Millisecond))
	if noticed >= 8*time.Second {
		t.Errorf("the heartbeat did not notice the cut within 8s")
	}
}
