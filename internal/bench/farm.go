package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/warren-farm/warren/pkg/config"
)

// farmEnvKeys are the settings the benchmark controls: inherited values are
// dropped so "default settings" means the binaries' own defaults. They are
// every variable of the configuration table (pkg/config), plus the ones
// older builds read (for -baseline-rev); see also farmEnvPrefixes.
var farmEnvKeys = func() []string {
	keys := []string{
		"AMQP_URL", "HTTP_ADDR", "MANAGEMENT_URL", "LOG_LEVEL", "LOG_FORMAT", "CONCURRENCY",
		"PREFETCH", "MODEL_LATENCY", "MODEL_SEED", "REQUEST_TIMEOUT", "MAX_REQUEST_TIMEOUT",
		"BODY_LIMIT", "QUEUE_MAX_LENGTH", "DRAIN_TIMEOUT", "WORKER_ID",
	}
	for _, v := range config.All() {
		if !slices.Contains(keys, v.Env) {
			keys = append(keys, v.Env)
		}
	}
	return keys
}()

// farmEnvPrefixes: inherited variables with these prefixes are dropped too.
// The OpenTelemetry SDK reads many OTEL_* variables besides the table's
// (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_BSP_*, OTEL_TRACES_SAMPLER, ...).
var farmEnvPrefixes = []string{"OTEL_"}

// controlled reports whether the bench controls the environment variable k.
func controlled(k string) bool {
	if slices.Contains(farmEnvKeys, k) {
		return true
	}
	for _, p := range farmEnvPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// FarmConfig says how to run the farm's binaries.
type FarmConfig struct {
	APIBin, WorkerBin string
	// AMQPURL points at the benchmark's vhost.
	AMQPURL       string
	ManagementURL string
	// Env holds extra KEY=VALUE settings for the API and the workers
	// (-farm-env; empty for the default settings).
	Env []string
	// ModelRepository is the workers' MODEL_REPOSITORY: an absolute path (the
	// repository's models/), so that it does not depend on the working
	// directory. Empty leaves the binaries' default.
	ModelRepository string
	// Models is the workers' MODELS (comma-separated model names); empty
	// loads every model of the repository.
	Models string
	// Model is the model whose live workers WaitReady counts; empty means the
	// API's DEFAULT_MODEL (the "workers" of GET /ready, which older builds
	// without a model repository also report).
	Model string
	// WorkerEnv holds extra KEY=VALUE settings for every worker
	// (MODEL_LATENCY, CONCURRENCY for the scaling phase).
	WorkerEnv []string
	// APIEnv holds extra KEY=VALUE settings for the API (the job store).
	// Unless it sets DATA_DIR or REDIS_URL, the API's embedded job store
	// goes to a temporary DATA_DIR, removed by Stop.
	APIEnv []string
	LogDir string
	// Name, if set, prefixes the processes' names and log files, so that
	// several farms can share LogDir.
	Name string
	// ReadyTimeout bounds the wait for /ready (default 60s).
	ReadyTimeout time.Duration
}

// Farm is a running bin/api with its bin/worker processes.
type Farm struct {
	cfg     FarmConfig
	API     *Proc
	BaseURL string // http://127.0.0.1:port
	DataDir string // the API's DATA_DIR when the bench made it, else ""

	mu      sync.Mutex
	workers []*Proc
	addrs   []string // the workers' HTTP_ADDR, in the order of workers
	started int      // workers ever started: names worker-1, worker-2, ... never repeat
}

// freeAddr returns a free 127.0.0.1 TCP address.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr, nil
}

func (c FarmConfig) env(addr string, extra []string) []string { return c.envWith(addr, nil, extra) }

// envWith is the inherited environment without the variables the bench
// controls, then the bench's own settings, pre, Env and extra.
func (c FarmConfig) envWith(addr string, pre, extra []string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return controlled(k)
	})
	env = append(env,
		"AMQP_URL="+c.AMQPURL,
		"MANAGEMENT_URL="+c.ManagementURL,
		"HTTP_ADDR="+addr,
		"LOG_LEVEL=warn",
	)
	env = append(env, pre...)
	env = append(env, c.Env...)
	return append(env, extra...)
}

// workerEnv is a worker's environment: the model repository and the models
// it serves come before -farm-env and WorkerEnv, which may override them (of
// duplicate keys the last one counts).
func (c FarmConfig) workerEnv(addr string) []string {
	var pre []string
	if c.ModelRepository != "" {
		pre = append(pre, "MODEL_REPOSITORY="+c.ModelRepository)
	}
	if c.Models != "" {
		pre = append(pre, "MODELS="+c.Models)
	}
	return c.envWith(addr, pre, c.WorkerEnv)
}

func (c FarmConfig) procName(n string) string {
	if c.Name == "" {
		return n
	}
	return c.Name + "-" + n
}

// StartFarm starts the API and n workers and waits until the API reports
// ready with n workers.
func StartFarm(ctx context.Context, cfg FarmConfig, n int) (*Farm, error) {
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	apiEnv := cfg.APIEnv
	var dataDir string
	if !slices.ContainsFunc(apiEnv, func(kv string) bool {
		return strings.HasPrefix(kv, "DATA_DIR=") || strings.HasPrefix(kv, "REDIS_URL=")
	}) {
		// The default DATA_DIR is "data" under the working directory: never
		// the repository's, nor shared with another farm (bbolt locks it).
		if dataDir, err = os.MkdirTemp("", "warren-bench-data-"); err != nil {
			return nil, err
		}
		apiEnv = append(slices.Clone(apiEnv), "DATA_DIR="+dataDir)
	}
	api, err := StartProc(cfg.procName("api"), cfg.APIBin, nil, cfg.env(addr, apiEnv), cfg.LogDir, nil)
	if err != nil {
		if dataDir != "" {
			_ = os.RemoveAll(dataDir)
		}
		return nil, err
	}
	f := &Farm{cfg: cfg, API: api, BaseURL: "http://" + addr, DataDir: dataDir}
	if err := f.AddWorkers(ctx, n); err != nil {
		f.Stop()
		return nil, err
	}
	return f, nil
}

// Workers returns the running worker processes.
func (f *Farm) Workers() []*Proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.workers)
}

// WorkerAddrs returns the workers' HTTP addresses (their /metrics).
func (f *Farm) WorkerAddrs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.addrs)
}

// WorkersAndAddrs returns the running worker processes and their HTTP
// addresses, index for index (one snapshot, unlike Workers then WorkerAddrs).
func (f *Farm) WorkersAndAddrs() ([]*Proc, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.workers), slices.Clone(f.addrs)
}

// Pids returns the API's pid and the workers' pids.
func (f *Farm) Pids() (api int, workers []int) {
	for _, w := range f.Workers() {
		workers = append(workers, w.Pid())
	}
	return f.API.Pid(), workers
}

// AddWorkers starts workers until there are n and waits until the API
// reports n ready workers.
func (f *Farm) AddWorkers(ctx context.Context, n int) error {
	f.mu.Lock()
	have := len(f.workers)
	f.mu.Unlock()
	for i := have; i < n; i++ {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		f.mu.Lock()
		f.started++
		name := f.cfg.procName("worker-" + strconv.Itoa(f.started))
		f.mu.Unlock()
		w, err := StartProc(name, f.cfg.WorkerBin, nil, f.cfg.workerEnv(addr), f.cfg.LogDir, nil)
		if err != nil {
			return err
		}
		f.mu.Lock()
		f.workers = append(f.workers, w)
		f.addrs = append(f.addrs, addr)
		f.mu.Unlock()
	}
	return f.WaitReady(ctx, n)
}

// KillWorker sends SIGKILL to the farm's i-th worker (no drain, no goodbye:
// a crash), waits until it has exited and removes it from the farm, so that
// AddWorkers can start its replacement and Check no longer reports it.
func (f *Farm) KillWorker(i int) (*Proc, error) {
	f.mu.Lock()
	if i < 0 || i >= len(f.workers) {
		f.mu.Unlock()
		return nil, fmt.Errorf("no worker %d (%d running)", i, len(f.workers))
	}
	w := f.workers[i]
	f.workers = slices.Delete(f.workers, i, i+1)
	f.addrs = slices.Delete(f.addrs, i, i+1)
	f.mu.Unlock()
	if err := w.cmd.Process.Kill(); err != nil {
		return w, fmt.Errorf("kill %s: %w", w.Name, err)
	}
	<-w.Done()
	return w, nil
}

type readyBody struct {
	Status string `json:"status"`
	Broker string `json:"broker"`
	// Workers is DEFAULT_MODEL's live workers.
	Workers int `json:"workers"`
	// Models holds every known model version with its live workers (builds
	// with a model repository).
	Models []struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		Workers int    `json:"workers"`
	} `json:"models"`
}

// workersOf is the live workers /ready reports for model: the default
// model's for "", else the most any version of model has.
func (rb *readyBody) workersOf(model string) int {
	if model == "" {
		return rb.Workers
	}
	n := 0
	for _, m := range rb.Models {
		if m.Name == model {
			n = max(n, m.Workers)
		}
	}
	return n
}

// WaitReady polls GET /ready until it answers 200 with at least n live
// workers of the farm's Model.
func (f *Farm) WaitReady(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.ReadyTimeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	last := "no answer yet"
	for {
		if p := f.exited(); p != nil {
			return fmt.Errorf("%s exited (%v) before the farm was ready\n%s", p.Name, p.Err(), p.Tail(20))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.BaseURL+"/ready", nil)
		res, err := hc.Do(req)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
			_ = res.Body.Close()
			var rb readyBody
			_ = json.Unmarshal(b, &rb)
			if res.StatusCode == http.StatusOK && rb.workersOf(f.cfg.Model) >= n {
				return nil
			}
			last = fmt.Sprintf("%s %s", res.Status, strings.TrimSpace(string(b)))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			if errCtx := ctx.Err(); errCtx == context.DeadlineExceeded {
				return fmt.Errorf("farm not ready with %d workers after %v; last /ready: %s\n%s", n, f.cfg.ReadyTimeout, last, f.API.Tail(20))
			}
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// exited returns a farm process that has exited, if any.
func (f *Farm) exited() *Proc {
	for _, p := range append([]*Proc{f.API}, f.Workers()...) {
		select {
		case <-p.Done():
			return p
		default:
		}
	}
	return nil
}

// Check returns an error if a farm process has exited.
func (f *Farm) Check() error {
	if p := f.exited(); p != nil {
		return fmt.Errorf("%s exited (%v)\n%s", p.Name, p.Err(), p.Tail(20))
	}
	return nil
}

// Stop stops the API first (it drains in-flight requests), then the workers,
// all with SIGTERM and a grace period, and removes the DATA_DIR it made. It
// is idempotent.
func (f *Farm) Stop() {
	f.API.Stop(15 * time.Second)
	var wg sync.WaitGroup
	for _, w := range f.Workers() {
		wg.Go(func() { w.Stop(15 * time.Second) })
	}
	wg.Wait()
	if f.DataDir != "" {
		_ = os.RemoveAll(f.DataDir)
	}
}
