package bench

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunClosedLoopCounts(t *testing.T) {
	var starts, ends atomic.Int32
	var calls atomic.Int64
	cfg := LoopConfig{
		Concurrency:   3,
		Warmup:        100 * time.Millisecond,
		Duration:      400 * time.Millisecond,
		OnWindowStart: func() { starts.Add(1) },
		OnWindowEnd:   func() { ends.Add(1) },
	}
	res, err := RunClosedLoop(context.Background(), cfg, func(i int) CallFunc {
		return func(ctx context.Context) string {
			n := calls.Add(1)
			select {
			case <-time.After(2 * time.Millisecond):
			case <-ctx.Done():
				return "canceled"
			}
			if n%4 == 0 {
				return "503"
			}
			return ""
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if starts.Load() != 1 || ends.Load() != 1 {
		t.Errorf("window hooks called %d/%d times, want 1/1", starts.Load(), ends.Load())
	}
	if res.Window != cfg.Duration || res.Concurrency != 3 {
		t.Errorf("result window %v concurrency %d", res.Window, res.Concurrency)
	}
	// At most 3 callers × 400ms / 2ms = 600 calls fit in the window.
	total := res.OK() + res.FailureCount()
	if total == 0 || total > 603 {
		t.Errorf("%d calls in the window, want 1..603", total)
	}
	if res.Failures["canceled"] != 0 {
		t.Errorf("cancelled calls at the window's end must not count: %v", res.Failures)
	}
	if f := res.Failures["503"]; f == 0 || f > total/2 {
		t.Errorf("503 failures %d of %d, want about a quarter", f, total)
	}
	for i := 1; i < len(res.Latencies); i++ {
		if res.Latencies[i] < res.Latencies[i-1] {
			t.Fatal("latencies not sorted")
		}
	}
	if p50 := res.Percentile(50); p50 < 2*time.Millisecond {
		t.Errorf("p50 %v below the 2ms service time", p50)
	}
}

func TestRunClosedLoopCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := RunClosedLoop(ctx, LoopConfig{Concurrency: 2, Warmup: time.Second, Duration: 10 * time.Second},
		func(int) CallFunc {
			return func(ctx context.Context) string { <-ctx.Done(); return "canceled" }
		})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("cancel took %v", time.Since(start))
	}
}

func TestRunClosedLoopRejectsBadConfig(t *testing.T) {
	none := func(int) CallFunc { return func(context.Context) string { return "" } }
	if _, err := RunClosedLoop(context.Background(), LoopConfig{Concurrency: 0, Duration: time.Second}, none); err == nil {
		t.Error("concurrency 0 accepted")
	}
	if _, err := RunClosedLoop(context.Background(), LoopConfig{Concurrency: 1}, none); err == nil {
		t.Error("zero duration accepted")
	}
}

// processServer is a fake /process with a fixed service time. It records
// every data value and counts new TCP connections.
type processServer struct {
	*httptest.Server
	delay   time.Duration
	mu      sync.Mutex
	seen    map[string]int
	newConn atomic.Int32
	failAt  int64 // every failAt-th request gets 503 (0: never)
	n       atomic.Int64
}

func newProcessServer(t *testing.T, delay time.Duration, failAt int64) *processServer {
	ps := &processServer{delay: delay, seen: map[string]int{}, failAt: failAt}
	ps.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Data           string `json:"data"`
			ForwardToModel bool   `json:"forward_to_model"`
		}
		if r.Method != http.MethodPost || r.URL.Path != "/process" || json.NewDecoder(r.Body).Decode(&in) != nil || !in.ForwardToModel {
			w.WriteHeader(http.StatusUnprocessableEntity)
			return
		}
		ps.mu.Lock()
		ps.seen[in.Data]++
		ps.mu.Unlock()
		time.Sleep(ps.delay)
		if n := ps.n.Add(1); ps.failAt > 0 && n%ps.failAt == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":"no worker"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"Input logged successfully","model_prediction":{"prediction":"positive"}}`)
	}))
	ps.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			ps.newConn.Add(1)
		}
	}
	ps.Start()
	t.Cleanup(ps.Close)
	return ps
}

func TestProcessCallerKnownDelay(t *testing.T) {
	const (
		c     = 4
		delay = 5 * time.Millisecond
	)
	ps := newProcessServer(t, delay, 0)
	tr := NewHTTPTransport(c)
	defer tr.CloseIdleConnections()
	res, err := RunClosedLoop(context.Background(),
		LoopConfig{Concurrency: c, Warmup: 200 * time.Millisecond, Duration: time.Second},
		ProcessCaller(tr, ps.URL+"/process"))
	if err != nil {
		t.Fatal(err)
	}
	if res.FailureCount() != 0 {
		t.Fatalf("failures: %v", res.Failures)
	}
	// A closed loop of c callers against a fixed delay cannot beat c/delay.
	ceiling := float64(c) / delay.Seconds()
	if rps := res.RPS(); rps > ceiling*1.02 || rps < ceiling*0.4 {
		t.Errorf("rps %.0f, want close to (and at most) %.0f", rps, ceiling)
	}
	if p50 := res.Percentile(50); p50 < delay || p50 > delay+20*time.Millisecond {
		t.Errorf("p50 %v, want a little above %v", p50, delay)
	}
	if p99 := res.Percentile(99); p99 < res.Percentile(50) {
		t.Errorf("p99 %v below p50", p99)
	}
	if n := ps.newConn.Load(); n > c {
		t.Errorf("%d TCP connections for %d callers: keep-alive broken", n, c)
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for data, n := range ps.seen {
		if n != 1 {
			t.Fatalf("data %q sent %d times, want distinct data per request", data, n)
		}
		if !strings.HasPrefix(data, "bench-") {
			t.Fatalf("unexpected data %q", data)
		}
	}
}

func TestProcessCallerFailures(t *testing.T) {
	ps := newProcessServer(t, 0, 3)
	tr := NewHTTPTransport(2)
	defer tr.CloseIdleConnections()
	res, err := RunClosedLoop(context.Background(),
		LoopConfig{Concurrency: 2, Duration: 300 * time.Millisecond},
		ProcessCaller(tr, ps.URL+"/process"))
	if err != nil {
		t.Fatal(err)
	}
	f := res.Failures["503"]
	total := f + res.OK()
	if f == 0 || len(res.Failures) != 1 {
		t.Fatalf("failures %v, want only 503s", res.Failures)
	}
	if share := float64(f) / float64(total); share < 0.25 || share > 0.42 {
		t.Errorf("503 share %.2f, want about 1/3", share)
	}

	// A 200 without a prediction is no success.
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	}))
	defer bare.Close()
	call := ProcessCaller(tr, bare.URL+"/process")(0)
	if got := call(context.Background()); got != "200-without-model_prediction" {
		t.Errorf("label %q", got)
	}

	// A closed port is a transport failure, labelled.
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	call = ProcessCaller(tr, "http://"+addr+"/process")(0)
	if got := call(context.Background()); got != "conn-refused" {
		t.Errorf("label %q, want conn-refused", got)
	}
}
