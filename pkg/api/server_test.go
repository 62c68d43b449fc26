package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/api"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/jobs/boltstore"
	"github.com/warren-farm/warren/pkg/queue"
)

// A server stopped by cancelling Run's context (what the binary does on SIGTERM)
// answers its long polls at once with the job as it is, as it does for Stop:
// they must not hold the drain until the HTTP server's shutdown gives up on them.
// No broker is needed: the job is read from the store.
func TestRunContextEndsLongPolls(t *testing.T) {
	store, err := boltstore.OpenBolt(boltstore.BoltConfig{Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(context.Background(), &jobs.Job{ID: "jwaiting", Model: "seed", Version: "1", Input: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead, err := net.Listen("tcp", "127.0.0.1:0") // a port nobody answers AMQP on
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "amqp://guest:guest@" + dead.Addr().String() + "/"
	dead.Close()
	srv, err := api.New(api.Config{AMQP: queue.DialConfig{URL: deadURL}, DrainTimeout: time.Second,
		Jobs: api.JobsConfig{Store: store, MaxWait: 30 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx, ln) }()

	type result struct {
		status int
		job    jobs.Job
		err    error
		took   time.Duration
	}
	got := make(chan result, 1)
	begin := time.Now()
	go func() {
		var r result
		resp, err := http.Get("http://" + ln.Addr().String() + "/jobs/jwaiting?wait=30")
		if err == nil {
			r.status = resp.StatusCode
			r.err = json.NewDecoder(resp.Body).Decode(&r.job)
			resp.Body.Close()
		} else {
			r.err = err
		}
		r.took = time.Since(begin)
		got <- r
	}()
	// Wait until the poll is in the server: two requests in flight, the poll and
	// the scrape asking.
	for deadline := time.Now().Add(5 * time.Second); inFlight(t, "http://"+ln.Addr().String()+"/metrics") < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the long poll never reached the server")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case r := <-got:
		if r.err != nil || r.status != http.StatusOK || r.job.Status != jobs.Queued || r.took > 2*time.Second {
			t.Fatalf("long poll after Run's context ended: %d %+v err %v after %v", r.status, r.job, r.err, r.took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll outlived the stop")
	}
	select {
	case <-ran:
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}
}

// inFlight reads warren_http_requests_in_flight from a /metrics endpoint.
func inFlight(t *testing.T, url string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "warren_http_requests_in_flight "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	t.Fatalf("no warren_http_requests_in_flight in %s", url)
	return 0
}
