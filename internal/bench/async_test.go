package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeJobs is a job API in the shape of warren's: POST /jobs answers 202 and
// the job succeeds after runFor; GET /jobs/{id}?wait= blocks until then.
type fakeJobs struct {
	runFor time.Duration
	failN  int // every failN-th submit answers 503 (0: never)

	mu       sync.Mutex
	jobs     map[string]*fakeJob
	data     map[string]bool
	dupData  int
	submits  int
	gets     atomic.Int64
	noWait   atomic.Int64
	maxPolls atomic.Int64 // concurrent GETs, at most
	inPoll   atomic.Int64
}

type fakeJob struct {
	id      string
	created time.Time
	done    chan struct{}
	started time.Time
	ended   time.Time
}

func newFakeJobs(runFor time.Duration) *fakeJobs {
	return &fakeJobs{runFor: runFor, jobs: map[string]*fakeJob{}, data: map[string]bool{}}
}

func (f *fakeJobs) view(j *fakeJob, final bool) map[string]any {
	v := map[string]any{"id": j.id, "status": "queued", "created_at": j.created, "started_at": nil, "finished_at": nil, "attempts": 0}
	if final {
		v["status"], v["started_at"], v["finished_at"], v["attempts"] = "succeeded", j.started, j.ended, 1
	}
	return v
}

func (f *fakeJobs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/jobs":
		var in struct {
			Data string `json:"data"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Data == "" {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.submits++
		if f.failN > 0 && f.submits%f.failN == 0 {
			f.mu.Unlock()
			http.Error(w, "queue full", http.StatusServiceUnavailable)
			return
		}
		if f.data[in.Data] {
			f.dupData++
		}
		f.data[in.Data] = true
		now := time.Now()
		j := &fakeJob{id: fmt.Sprintf("j%d", len(f.jobs)), created: now, done: make(chan struct{}), started: now.Add(time.Millisecond)}
		f.jobs[j.id] = j
		f.mu.Unlock()
		time.AfterFunc(f.runFor, func() { j.ended = time.Now(); close(j.done) })
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(f.view(j, false))
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/jobs/"):
		f.gets.Add(1)
		n := f.inPoll.Add(1)
		defer f.inPoll.Add(-1)
		for {
			m := f.maxPolls.Load()
			if n <= m || f.maxPolls.CompareAndSwap(m, n) {
				break
			}
		}
		f.mu.Lock()
		j := f.jobs[strings.TrimPrefix(r.URL.Path, "/jobs/")]
		f.mu.Unlock()
		if j == nil {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		wait, err := time.ParseDuration(r.URL.Query().Get("wait"))
		if err != nil {
			f.noWait.Add(1)
		}
		final := false
		select {
		case <-j.done:
			final = true
		case <-time.After(wait):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(f.view(j, final))
	default:
		http.NotFound(w, r)
	}
}

func TestSubmitAndPollJobs(t *testing.T) {
	fake := newFakeJobs(30 * time.Millisecond)
	fake.failN = 50
	srv := httptest.NewServer(fake)
	defer srv.Close()
	tr := NewHTTPTransport(8)
	defer tr.CloseIdleConnections()
	ctx := context.Background()

	sub := SubmitJobs(ctx, tr, srv.URL, 400, 8)
	var ids []string
	for i, id := range sub.IDs {
		if id == "" {
			continue
		}
		ids = append(ids, id)
		if sub.Latencies[i] <= 0 {
			t.Errorf("submit %d: latency %v", i, sub.Latencies[i])
		}
	}
	if len(ids) != 392 || sub.Failures["503"] != 8 {
		t.Errorf("accepted %d (want 392), failures %v (want 503×8)", len(ids), sub.Failures)
	}
	if fake.dupData != 0 {
		t.Errorf("%d submits repeated data", fake.dupData)
	}

	var finals atomic.Int64
	start := time.Now()
	// A 20 ms wait makes the first polls of the slowest jobs return
	// non-final: they must be repeated.
	poll := PollJobs(ctx, tr, srv.URL, ids, 8, 20*time.Millisecond, func() { finals.Add(1) })
	for i, j := range poll.Jobs {
		if j == nil || j.Status != "succeeded" || j.ID != ids[i] || j.FinishedAt == nil {
			t.Fatalf("job %d: %+v", i, j)
		}
	}
	if finals.Load() != int64(len(ids)) {
		t.Errorf("onFinal called %d times for %d jobs", finals.Load(), len(ids))
	}
	if poll.LastFinal.Before(start) {
		t.Errorf("LastFinal %v before the polls started", poll.LastFinal)
	}
	if fake.noWait.Load() != 0 {
		t.Errorf("%d GETs without a valid ?wait=", fake.noWait.Load())
	}
	if m := fake.maxPolls.Load(); m > 8 {
		t.Errorf("%d GETs in flight at once, want at most 8 pollers", m)
	}
	if poll.Polls != fake.gets.Load() || poll.Polls < int64(len(ids)) || poll.Polls > int64(len(ids))*3 {
		t.Errorf("polls %d (server saw %d) for %d jobs", poll.Polls, fake.gets.Load(), len(ids))
	}

	// An unknown id is reported, not waited for.
	poll = PollJobs(ctx, tr, srv.URL, []string{"nope"}, 1, time.Second, nil)
	if poll.Jobs[0] == nil || poll.Jobs[0].Status != "not found" {
		t.Errorf("unknown job: %+v", poll.Jobs[0])
	}
}

func TestPollJobsStopsWithContext(t *testing.T) {
	fake := newFakeJobs(time.Hour)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	tr := NewHTTPTransport(2)
	defer tr.CloseIdleConnections()
	sub := SubmitJobs(context.Background(), tr, srv.URL, 3, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	poll := PollJobs(ctx, tr, srv.URL, sub.IDs, 2, 50*time.Millisecond, nil)
	if time.Since(start) > 2*time.Second {
		t.Errorf("PollJobs took %v after its context ended", time.Since(start))
	}
	for i, j := range poll.Jobs {
		if j != nil {
			t.Errorf("job %d reported %+v, want nil (never final)", i, j)
		}
	}
	if len(poll.Failures) != 0 {
		t.Errorf("failures %v: the context's end is not a failure", poll.Failures)
	}
}

func TestAsyncRunRatesAndTargets(t *testing.T) {
	run := &AsyncRun{
		Store: StoreBolt, Jobs: 1000, Workers: 2, JobConcurrency: 4, Latency: 50 * time.Millisecond,
		Submitted: 1000, SubmitTime: 400 * time.Millisecond, AllFinal: 7 * time.Second, FinalAtSubmitEnd: 40,
		Statuses: map[string]int{"succeeded": 999, "failed": 1}, SubmitFailures: map[string]int{},
		BusyTime: 50400 * time.Millisecond, // 0.9 of 8 slots × 7 s
	}
	if got := run.SubmitRate(); got != 2500 {
		t.Errorf("submit rate %v", got)
	}
	if got := run.Target(); got < 143.99 || got > 144.01 {
		t.Errorf("target %v, want 144", got)
	}
	if got := run.CompletionRate(); got < 142.7 || got > 142.8 {
		t.Errorf("completion %v, want 999/7", got)
	}
	if got := run.Utilization(); got < 0.899 || got > 0.901 {
		t.Errorf("utilization %v, want 0.9", got)
	}
	if got := run.DrainRate(); got < 145.3 || got > 145.4 {
		t.Errorf("drain %v, want 959/6.6", got)
	}
	rep := &Report{Cfg: &Config{}, Async: []*AsyncRun{run}}
	got := map[string]string{}
	for _, tg := range rep.Targets() {
		got[tg.Name] = tg.Status
	}
	for name, want := range map[string]string{
		"async (bolt): submit ≥ 2,000 jobs/s":                                                "PASS",
		"async (bolt): completion ≥ 0.9 × 2 workers × JOB_CONCURRENCY 4 / 50ms = 144 jobs/s": "MISS",
		"async (bolt): every job accepted and succeeded":                                     "MISS",
	} {
		if got[name] != want {
			t.Errorf("%s: %q, want %s (all: %v)", name, got[name], want, got)
		}
	}
	var sb strings.Builder
	rep.PrintAsync(&sb)
	for _, s := range []string{"2,500", "143", "failed 1", "0.9 × 2 × 4 / 50ms = 144 jobs/s"} {
		if !strings.Contains(sb.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, sb.String())
		}
	}
}
