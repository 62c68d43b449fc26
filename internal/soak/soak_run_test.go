package soak

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/warren-farm/warren/internal/bench"
	"github.com/warren-farm/warren/internal/testbroker"
)

// The soak run's settings, from the environment of `make soak` (the test
// reads them; the binaries never see them).
const (
	envDuration   = "WARREN_SOAK"             // open-loop duration, e.g. 30m; unset skips TestSoak
	envFaultEvery = "WARREN_SOAK_FAULT_EVERY" // default 4m
	envOut        = "WARREN_SOAK_OUT"         // Markdown report file, besides stdout
	envLatency    = "WARREN_SOAK_MODEL_LATENCY"
	envGrace      = "WARREN_SOAK_GRACE"
)

func durationFromEnv(t *testing.T, key string, def time.Duration) time.Duration {
	t.Helper()
	s := os.Getenv(key)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		t.Fatalf("%s=%q: want a duration such as 30m", key, s)
	}
	return d
}

// soakSettings are the run's knobs.
type soakSettings struct {
	duration, faultEvery, grace, latency time.Duration
	sampleEvery, warmup                  time.Duration
	workers                              int
	out                                  string
}

func settings(t *testing.T) soakSettings {
	t.Helper()
	s := soakSettings{
		duration:    durationFromEnv(t, envDuration, 0),
		faultEvery:  durationFromEnv(t, envFaultEvery, 4*time.Minute),
		grace:       durationFromEnv(t, envGrace, 15*time.Second),
		latency:     durationFromEnv(t, envLatency, 10*time.Millisecond),
		sampleEvery: 10 * time.Second,
		workers:     2,
		out:         os.Getenv(envOut),
	}
	if s.duration < time.Minute {
		t.Fatalf("%s=%v: a soak run needs at least 1m", envDuration, s.duration)
	}
	if s.faultEvery < 30*time.Second {
		t.Fatalf("%s=%v: faults need at least 30s between them (a broker restart takes ~6s, the recovery more)", envFaultEvery, s.faultEvery)
	}
	// The warm-up cut from each process's series: a sixth of the run, at most 2m.
	s.warmup = min(2*time.Minute, s.duration/6)
	return s
}

// TestSoak runs the real binaries under steady open-loop load for WARREN_SOAK
// with faults injected, and fails on unexplained errors, lost jobs, jobs with
// two final states or growing resources. `make soak` runs it.
func TestSoak(t *testing.T) {
	if os.Getenv(envDuration) == "" {
		t.Skipf("the soak run is not part of make test: run it with `make soak` (SOAK=30m), or "+
			"%s=30m go test -run TestSoak -v -timeout 60m ./internal/soak", envDuration)
	}
	s := settings(t)
	if dl, ok := t.Deadline(); ok {
		need := s.duration + 8*time.Minute // build, broker, capacity, drain, recheck
		if time.Until(dl) < need {
			t.Fatalf("-timeout leaves %v; a %v run needs about %v (make soak sets it)", time.Until(dl).Round(time.Second), s.duration, need)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	apiBin, workerBin := buildBinaries(t)
	node := testbroker.StartNode(t)
	logDir, err := os.MkdirTemp("", "warren-soak-logs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("process logs in %s (kept)", logDir)
	models, err := filepath.Abs("../../models")
	if err != nil {
		t.Fatal(err)
	}
	farm, err := bench.StartFarm(ctx, bench.FarmConfig{
		APIBin: apiBin, WorkerBin: workerBin,
		AMQPURL: node.AMQPURL, ManagementURL: "", // the private node has no management API
		ModelRepository: models, Models: "seed",
		WorkerEnv:    []string{"MODEL_LATENCY=" + s.latency.String()},
		LogDir:       logDir,
		ReadyTimeout: 90 * time.Second,
	}, s.workers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(farm.Stop)

	rep := &Report{
		Command: fmt.Sprintf("make soak SOAK=%v SOAK_FAULT_EVERY=%v   # %s=%v %s=%v go test -run TestSoak -v ./internal/soak",
			s.duration, s.faultEvery, envDuration, s.duration, envFaultEvery, s.faultEvery),
		Machine:      machine(),
		Warmup:       s.warmup,
		SampleEvery:  s.sampleEvery,
		FaultEvery:   s.faultEvery,
		Grace:        s.grace,
		ModelLatency: s.latency,
		Workers:      s.workers,
		Jobs:         Jobs{Final: map[string]int{}},
	}

	// Capacity: a short closed loop.
	const capConc = 32
	rt := soakTransport(256)
	defer rt.CloseIdleConnections()
	jobsRT := soakTransport(64)
	defer jobsRT.CloseIdleConnections()
	capRes, err := bench.RunClosedLoop(ctx, bench.LoopConfig{Concurrency: capConc, Warmup: 3 * time.Second, Duration: 20 * time.Second},
		bench.ProcessCaller(rt, farm.BaseURL+"/process"))
	if err != nil {
		t.Fatal(err)
	}
	rep.CapacityRPS, rep.CapacityConc, rep.CapacityFail = capRes.RPS(), capConc, capRes.FailureCount()
	if rep.CapacityRPS < 10 {
		t.Fatalf("capacity %.1f req/s (failures %v): the farm does not work", rep.CapacityRPS, capRes.Failures)
	}
	half := rep.CapacityRPS / 2
	rep.JobRate = min(10, half/10)
	rep.SyncRate = half - rep.JobRate
	t.Logf("capacity %.0f req/s (%d callers); offering %.1f /process/s and %.1f jobs/s for %v, faults every %v",
		rep.CapacityRPS, capConc, rep.SyncRate, rep.JobRate, s.duration, s.faultEvery)

	began := time.Now()
	rep.Began, rep.Duration = began, s.duration
	since := func() time.Duration { return time.Since(began) }
	rec := &recorder{}

	samp := newSampler(farm, began)
	var bg sync.WaitGroup
	sampCtx, stopSampling := context.WithCancel(ctx)
	bg.Go(func() { samp.run(sampCtx, s.sampleEvery) })

	loadCtx, stopLoad := context.WithCancel(ctx)
	var load sync.WaitGroup
	load.Go(func() {
		rep.SyncSent, rep.SyncOK, rep.Late = openLoop(loadCtx, rep.SyncRate, 256, bench.ProcessCaller(rt, farm.BaseURL+"/process"), since, rec)
	})
	jr := &jobRunner{base: farm.BaseURL, hc: &http.Client{Transport: jobsRT}, since: since, rec: rec}
	drainCtx, stopDrain := context.WithCancel(ctx)
	defer stopDrain()
	load.Go(func() { jr.run(loadCtx, drainCtx, rep.JobRate) })

	// Faults, on the test goroutine (Node.Stop and Start take t).
	for i := 1; ; i++ {
		at := time.Duration(i) * s.faultEvery
		if at > s.duration-s.faultEvery/4 {
			break
		}
		time.Sleep(time.Until(began.Add(at)))
		if err := farm.Check(); err != nil {
			t.Errorf("before fault %d: %v", i, err)
		}
		w := Window{From: since(), Grace: s.grace}
		if i%2 == 1 {
			w.Kind = "broker-restart"
			node.Stop(t)
			node.Start(t)
			err := recovered(ctx, farm, s.workers)
			w.To, w.RecoveryOK = since(), err == nil
			w.Detail = "Stop, Start on its data"
			if err != nil {
				w.Detail = err.Error()
			}
		} else {
			w.Kind = "worker-kill"
			victim, err := farm.KillWorker(0) // the oldest worker
			if err != nil {
				t.Fatalf("fault %d: %v", i, err)
			}
			samp.ended(victim.Name, fmt.Sprintf("SIGKILL at %v", w.From.Round(time.Second)))
			err = farm.AddWorkers(ctx, s.workers)
			if err == nil {
				err = recovered(ctx, farm, s.workers)
			}
			w.To, w.RecoveryOK = since(), err == nil
			w.Detail = fmt.Sprintf("%s (pid %d) killed, a new one started", victim.Name, victim.Pid())
			if err != nil {
				w.Detail += ": " + err.Error()
			}
		}
		rep.Windows = append(rep.Windows, w)
		t.Logf("fault %d: %s at %v, recovered after %v (%v)", i, w.Kind, w.From.Round(time.Second), (w.To - w.From).Round(100*time.Millisecond), w.RecoveryOK)
	}
	time.Sleep(time.Until(began.Add(s.duration)))
	stopLoad()
	// Jobs still running get up to 2 minutes to finish.
	drainTimer := time.AfterFunc(2*time.Minute, stopDrain)
	load.Wait()
	drainTimer.Stop()
	stopSampling()
	bg.Wait()
	if err := farm.Check(); err != nil {
		t.Errorf("after the run: %v", err)
	}

	rep.Jobs.Submitted, rep.Jobs.Accepted = jr.submitted, len(jr.jobs)
	for id, j := range jr.jobs {
		if j.status == "" {
			rep.Jobs.Lost = append(rep.Jobs.Lost, id)
			continue
		}
		rep.Jobs.Final[j.status]++
	}
	rep.Jobs.Changed = jr.recheck(ctx)
	rep.Failures = Classify(rec.failures, rep.Windows)
	rep.Procs = samp.procs()

	md := rep.Markdown()
	fmt.Println(md)
	if s.out != "" {
		if err := os.WriteFile(s.out, []byte(md), 0o644); err != nil {
			t.Errorf("writing %s: %v", s.out, err)
		}
	}
	for _, p := range rep.Problems() {
		t.Error(p)
	}
}

// recovered waits (up to 90s) until the API's /ready reports n workers and
// every worker's own /ready answers 200 (models warm, consuming): the API's
// count alone may still include a killed worker, or workers not yet
// reconnected after a broker restart.
func recovered(ctx context.Context, farm *bench.Farm, n int) error {
	if err := farm.WaitReady(ctx, n); err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(90 * time.Second)
	_, addrs := farm.WorkersAndAddrs()
	for _, a := range addrs {
		for {
			res, err := hc.Get("http://" + a + "/ready")
			if err == nil {
				_ = res.Body.Close()
				if res.StatusCode == http.StatusOK {
					break
				}
				err = fmt.Errorf("GET /ready: %s", res.Status)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("worker %s not ready after 90s: %v", a, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// soakTransport is bench's keep-alive transport with a short idle timeout: the
// connections a burst of calls opened (the backlog after a fault) close again
// within seconds, so that the API's fds and goroutines, which follow its open
// connections, track the farm and not the high-water mark of the load.
func soakTransport(c int) *http.Transport {
	t := bench.NewHTTPTransport(c)
	t.IdleConnTimeout = 10 * time.Second
	return t
}
