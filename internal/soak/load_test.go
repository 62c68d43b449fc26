package soak

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warren-farm/warren/internal/bench"
)

// callTimeout bounds one client call of the soak load (the API's own
// REQUEST_TIMEOUT is 10s).
const callTimeout = 30 * time.Second

// buildBinaries builds bin/api and bin/worker with the Makefile's build line
// into a temporary directory.
func buildBinaries(t *testing.T) (api, worker string) {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"api", "worker"} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, name), "../../cmd/"+name)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
	return filepath.Join(dir, "api"), filepath.Join(dir, "worker")
}

// machine describes the machine for the report.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	load := "?"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			load = strings.Join(f[:3], " ")
		}
	}
	return fmt.Sprintf("%d CPUs (%s), %s/%s, %s; load average %s when the run began",
		runtime.NumCPU(), model, runtime.GOOS, runtime.GOARCH, runtime.Version(), load)
}

// recorder collects failures from the load's goroutines.
type recorder struct {
	mu       sync.Mutex
	failures []Failure
}

func (r *recorder) add(f Failure) {
	r.mu.Lock()
	r.failures = append(r.failures, f)
	r.mu.Unlock()
}

func (r *recorder) all() []Failure {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Failure(nil), r.failures...)
}

// openLoop offers rate calls per second until ctx ends, through callers
// goroutines (each with its own CallFunc from newCall). A call that is due
// while every caller is busy is skipped and counted late: the offered rate is
// the schedule's, not the farm's pace. Calls cut off by the end of ctx are not
// counted at all. Failures go to rec as kind "process".
func openLoop(ctx context.Context, rate float64, callers int, newCall func(i int) bench.CallFunc, since func() time.Duration, rec *recorder) (sent, ok, late int) {
	work := make(chan struct{}, callers)
	var nOK, nCut atomic.Int64
	var wg sync.WaitGroup
	for i := range callers {
		call := newCall(i)
		wg.Go(func() {
			for range work {
				start := since()
				cctx, cancel := context.WithTimeout(ctx, callTimeout)
				label := call(cctx)
				timedOut := cctx.Err() == context.DeadlineExceeded
				cancel()
				switch {
				case label == "":
					nOK.Add(1)
				case ctx.Err() != nil:
					nCut.Add(1) // the run ended under it
				default:
					if label == "canceled" && timedOut {
						label = "client-timeout"
					}
					rec.add(Failure{Kind: "process", Label: label, Start: start, End: since()})
				}
			}
		})
	}
	t0 := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	issued := 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		due := int(time.Since(t0).Seconds()*rate) - issued
		for ; due > 0; due-- {
			issued++
			select {
			case work <- struct{}{}:
				sent++
			default:
				late++
			}
		}
	}
	tick.Stop()
	close(work)
	wg.Wait()
	return sent - int(nCut.Load()), int(nOK.Load()), late
}

// jobState is what the soak saw of one accepted job.
type jobState struct {
	submitted  time.Duration
	status     string // final status, "" until seen
	finishedAt string
}

// jobRunner submits jobs (POST /jobs) at a fixed rate and follows each to its
// final state (GET /jobs/{id}?wait=).
type jobRunner struct {
	base  string
	hc    *http.Client
	since func() time.Duration
	rec   *recorder

	mu        sync.Mutex
	submitted int
	jobs      map[string]*jobState
}

// run submits rate jobs per second until loadCtx ends, then waits for every
// job's poller; pollers give up when drainCtx ends (their jobs count lost).
func (j *jobRunner) run(loadCtx, drainCtx context.Context, rate float64) {
	j.mu.Lock()
	if j.jobs == nil {
		j.jobs = map[string]*jobState{}
	}
	j.mu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for seq := 1; ; seq++ {
		select {
		case <-loadCtx.Done():
			return
		case <-tick.C:
		}
		wg.Go(func() { j.one(drainCtx, seq) })
	}
}

// one submits job seq and follows it.
func (j *jobRunner) one(ctx context.Context, seq int) {
	j.mu.Lock()
	j.submitted++
	j.mu.Unlock()
	start := j.since()
	body := fmt.Sprintf(`{"data":"soak-job-%d"}`, seq)
	status, b, err := j.do(ctx, http.MethodPost, "/jobs", body)
	if ctx.Err() != nil {
		return
	}
	if err != nil || status != http.StatusAccepted {
		j.rec.add(Failure{Kind: "jobs-submit", Label: label(status, b, err), Start: start, End: j.since()})
		return
	}
	var jb jobBody
	if err := json.Unmarshal(b, &jb); err != nil || jb.ID == "" {
		j.rec.add(Failure{Kind: "jobs-submit", Label: "202-without-id", Start: start, End: j.since()})
		return
	}
	st := &jobState{submitted: start}
	j.mu.Lock()
	j.jobs[jb.ID] = st
	j.mu.Unlock()
	for ctx.Err() == nil {
		pstart := j.since()
		status, b, err := j.do(ctx, http.MethodGet, "/jobs/"+jb.ID+"?wait=20", "")
		if ctx.Err() != nil {
			return
		}
		var got jobBody
		if err == nil && status == http.StatusOK {
			err = json.Unmarshal(b, &got)
		}
		if err != nil || status != http.StatusOK {
			j.rec.add(Failure{Kind: "jobs-poll", Label: label(status, b, err), Start: pstart, End: j.since()})
			sleep(ctx, time.Second)
			continue
		}
		if !final(got.Status) {
			continue
		}
		j.mu.Lock()
		st.status, st.finishedAt = got.Status, got.FinishedAt
		j.mu.Unlock()
		if got.Status != "succeeded" {
			msg := string(got.Error)
			if len(msg) > 80 {
				msg = msg[:80]
			}
			j.rec.add(Failure{Kind: "job-final", Label: got.Status + " " + msg, Start: st.submitted, End: j.since()})
		}
		return
	}
}

// recheck reads every job seen final once more and returns those whose status
// or finished_at changed (two final states). Reads that fail are failures of
// kind "jobs-recheck".
func (j *jobRunner) recheck(ctx context.Context) (changed []string) {
	type item struct {
		id string
		st jobState
	}
	var items []item
	j.mu.Lock()
	for id, st := range j.jobs {
		if st.status != "" {
			items = append(items, item{id, *st})
		}
	}
	j.mu.Unlock()
	ch := make(chan item)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for it := range ch {
				start := j.since()
				status, b, err := j.do(ctx, http.MethodGet, "/jobs/"+it.id, "")
				var got jobBody
				if err == nil && status == http.StatusOK {
					err = json.Unmarshal(b, &got)
				}
				if err != nil || status != http.StatusOK {
					j.rec.add(Failure{Kind: "jobs-recheck", Label: label(status, b, err), Start: start, End: j.since()})
					continue
				}
				if got.Status != it.st.status || got.FinishedAt != it.st.finishedAt {
					mu.Lock()
					changed = append(changed, fmt.Sprintf("%s: %s at %s, then %s at %s", it.id, it.st.status, it.st.finishedAt, got.Status, got.FinishedAt))
					mu.Unlock()
				}
			}
		})
	}
	for _, it := range items {
		ch <- it
	}
	close(ch)
	wg.Wait()
	return changed
}

type jobBody struct {
	ID         string          `json:"id"`
	Status     string          `json:"status"`
	FinishedAt string          `json:"finished_at"`
	Error      json.RawMessage `json:"error"`
	Reason     string          `json:"reason"`
}

func final(s string) bool {
	switch s {
	case "succeeded", "failed", "expired", "cancelled":
		return true
	}
	return false
}

func (j *jobRunner) do(ctx context.Context, method, path, body string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, j.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := j.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, b, err
}

// label names a failed call: the status and the error body's reason, or the
// transport error.
func label(status int, body []byte, err error) string {
	if err != nil {
		s := err.Error()
		switch {
		case strings.Contains(s, "deadline exceeded") || strings.Contains(s, "Timeout"):
			return "client-timeout"
		case strings.Contains(s, "connection refused"):
			return "conn-refused"
		case strings.Contains(s, "connection reset"):
			return "conn-reset"
		case strings.Contains(s, "EOF"):
			return "eof"
		}
		if status != 0 {
			return strconv.Itoa(status) + " body: " + s
		}
		return "transport-error"
	}
	var jb jobBody
	if json.Unmarshal(body, &jb) == nil && jb.Reason != "" {
		return strconv.Itoa(status) + " " + jb.Reason
	}
	return strconv.Itoa(status)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// target is one process the sampler reads.
type target struct {
	name, metricsURL string
	pid, httpPort    int // httpPort: its HTTP listener's, whose accepted connections are conns_in
}

// sampler reads RSS, open fds and goroutines of the farm's processes.
type sampler struct {
	targets func() []target
	began   time.Time
	hc      *http.Client

	mu     sync.Mutex
	byName map[string]*Proc
	order  []string
}

func newSampler(f *bench.Farm, began time.Time) *sampler {
	return &sampler{
		began: began,
		hc:    &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}},
		targets: func() []target {
			ts := []target{{name: "api", pid: f.API.Pid(), metricsURL: f.BaseURL + "/metrics", httpPort: portOf(f.BaseURL)}}
			ws, addrs := f.WorkersAndAddrs()
			for i, w := range ws {
				ts = append(ts, target{name: w.Name, pid: w.Pid(), metricsURL: "http://" + addrs[i] + "/metrics", httpPort: portOf(addrs[i])})
			}
			return ts
		},
		byName: map[string]*Proc{},
	}
}

// portOf is the port of a URL or host:port; 0 if none.
func portOf(addr string) int {
	if u, err := url.Parse(addr); err == nil && u.Port() != "" {
		addr = u.Host
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

func (s *sampler) run(ctx context.Context, every time.Duration) {
	defer s.hc.CloseIdleConnections()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		s.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *sampler) sample(ctx context.Context) {
	for _, tg := range s.targets() {
		at := time.Since(s.began)
		s.mu.Lock()
		p := s.byName[tg.name]
		if p == nil {
			p = &Proc{Name: tg.name, Pid: tg.pid, Series: map[string][]Point{}}
			s.byName[tg.name] = p
			s.order = append(s.order, tg.name)
		}
		ended := p.Ended != ""
		s.mu.Unlock()
		if ended {
			continue
		}
		mem, errR := ReadStatus(tg.pid, "VmRSS", "RssAnon", "RssFile")
		fds, errF := CountFDsByKind(tg.pid, tg.httpPort)
		gor, errG := s.goroutines(ctx, tg.metricsURL)
		s.mu.Lock()
		if p.Ended == "" { // not killed meanwhile
			for _, m := range []struct {
				name string
				v    float64
				err  error
			}{{"RSS", mem[0], errR}, {"fds", fds.All - fds.Inbound, errF}, {"conns_in", fds.Inbound, errF},
				{"goroutines", gor, errG}, {"RssAnon", mem[1], errR}, {"RssFile", mem[2], errR}} {
				if m.err != nil {
					p.SampleErrors++
					continue
				}
				p.Series[m.name] = append(p.Series[m.name], Point{At: at, Value: m.v})
			}
		}
		s.mu.Unlock()
	}
}

func (s *sampler) goroutines(ctx context.Context, url string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	res, err := s.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, res.Status)
	}
	return ParseGauge(res.Body, "go_goroutines")
}

// ended marks a process as gone (killed): no more samples.
func (s *sampler) ended(name, how string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.byName[name]; p != nil {
		p.Ended = how
	}
}

// procs returns the processes in the order they were first sampled.
func (s *sampler) procs() []*Proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ps []*Proc
	for _, n := range s.order {
		p := s.byName[n]
		if p.Ended == "" {
			p.Ended = "ran to the end"
		}
		ps = append(ps, p)
	}
	return ps
}
