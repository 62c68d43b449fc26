package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Variants of the /process comparison, in the order they alternate.
const (
	VariantFarm       = "farm"
	VariantRaw        = "raw"
	VariantRawSep     = "raw-sep"
	VariantRawConfirm = "raw-confirm"
	// VariantFarmBaseline is the farm built from Config.BaselineRev.
	VariantFarmBaseline = "farm-baseline"
	// VariantFarmOTel is the current farm with tracing exported to an
	// in-bench OTLP/HTTP sink.
	VariantFarmOTel = "farm-otel"
	// VariantFarmV2 is the farm of VariantFarm called through
	// POST /v2/models/seed/infer with the same input.
	VariantFarmV2 = "farm-v2"
)

// Phases that -phases selects.
const (
	PhaseFarm  = "farm"  // /process against the farm
	PhaseRaw   = "raw"   // the raw amqp091-go loop
	PhaseExtra = "extra" // raw with responders in a separate process, and with confirms
	PhaseScale = "scale" // throughput against worker count with a model service time
	PhaseAsync = "async" // POST /jobs: submit rate, completion rate, end-to-end latency
	// PhaseV2 is POST /v2/models/seed/infer against POST /process on the same
	// farm, alternating.
	PhaseV2 = "v2"
	// PhaseDigits is the digits ONNX model through the farm and in process.
	PhaseDigits = "digits"
	// PhaseBatch is dynamic batching against max_batch_size 1: a simulated
	// model and the digits model.
	PhaseBatch = "batch"
)

var allPhases = []string{PhaseFarm, PhaseRaw, PhaseV2, PhaseExtra, PhaseScale, PhaseDigits, PhaseAsync, PhaseBatch, PhaseAblation}

// defaultPhases are the phases of a run without -phases (make bench): all but
// the ablation, which takes about 6 minutes of its own and is asked for by name.
var defaultPhases = slices.DeleteFunc(slices.Clone(allPhases), func(p string) bool { return p == PhaseAblation })

// The models the bench calls, from the repository's models/ directory.
const (
	// seedModel is the farm's model: the API's DEFAULT_MODEL, behind /process.
	seedModel = "seed"
	// digitsModel is the ONNX model of the digits phase.
	digitsModel = "digits"
)

// Job stores the async phase can run against (-async-store).
const (
	StoreBolt  = "bolt"
	StoreRedis = "redis"
)

// quickScaleWorkers are the scaling phase's worker counts under -quick.
var quickScaleWorkers = []int{1, 2, 4}

// Config is the benchmark's configuration, set by flags.
type Config struct {
	AMQPURL       string
	ManagementURL string

	Warmup      time.Duration
	Duration    time.Duration
	Runs        int
	Concurrency []int
	Workers     int
	Phases      []string
	// FarmEnv holds KEY=VALUE settings for the comparison farm's API and
	// workers (diagnostics; empty means default settings).
	FarmEnv []string

	RawResponders int
	RawConns      int
	RawPrefetch   int

	ScaleWorkers []int
	ScaleLatency time.Duration
	ScaleFactor  int
	ScaleRuns    int

	// DigitsConcurrency are the closed-loop concurrencies of the digits
	// phase, DigitsWorkers its workers.
	DigitsConcurrency []int
	DigitsWorkers     int

	// The batch phase: closed-loop callers, workers, and the models'
	// concurrency, max_batch_size, max_batch_delay, and the simulated model's
	// latency per batch and per item.
	BatchConcurrency      int
	BatchWorkers          int
	BatchModelConcurrency int
	BatchSize             int
	BatchDelay            time.Duration
	BatchLatency          time.Duration
	BatchItemLatency      time.Duration

	// The ablation phase: closed-loop callers, runs per variant, the
	// measured window, and the variants (comma-separated names, "" for all).
	AblationConcurrency int
	AblationRuns        int
	AblationDuration    time.Duration
	AblationVariants    string

	// BaselineRev, when set, is a git revision whose bin/api and bin/worker
	// run as the farm-baseline variant of the /process comparison.
	BaselineRev string
	// OTel adds the farm-otel variant: tracing on, exported to a sink in
	// this process.
	OTel bool

	AsyncJobs           int
	AsyncSubmitters     int
	AsyncPollers        int
	AsyncWorkers        int
	AsyncJobConcurrency int
	AsyncLatency        time.Duration
	AsyncStores         []string // StoreBolt, StoreRedis
	AsyncRuns           int      // runs per store and variant
	RedisURL            string

	RepoDir  string
	BinDir   string
	Build    bool
	KeepLogs bool
	// Quick is -quick: a smoke run (shorter windows, fewer workers and jobs).
	Quick bool

	Args []string // the command line, for the report
}

// Has reports whether phase p is selected.
func (c *Config) Has(p string) bool { return slices.Contains(c.Phases, p) }

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

type intList []int

func (l *intList) String() string {
	s := make([]string, len(*l))
	for i, v := range *l {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(v string) error {
	var out []int
	for f := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("%q: want positive integers separated by commas", v)
		}
		out = append(out, n)
	}
	*l = out
	return nil
}

// ParseFlags parses the command line into a Config.
func ParseFlags(args []string, stderr io.Writer) (*Config, error) {
	cfg := &Config{
		Concurrency:       []int{1, 16, 64},
		ScaleWorkers:      []int{1, 2, 4, 8, 16, 32},
		DigitsConcurrency: []int{1, 4, 16},
		Args:              args,
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		_, _ = fmt.Fprintf(stderr, "Usage: go run ./cmd/bench [flags]\n\n"+
			"Measures warren's POST /process against a raw amqp091-go RPC loop through the\n"+
			"same RabbitMQ, POST /v2/models/seed/infer against /process, throughput against\n"+
			"worker count, the digits ONNX model through the farm and in process, the\n"+
			"async job path (POST /jobs, GET /jobs/{id}?wait=), and (-phases ablation) what\n"+
			"each broker feature of the farm costs the raw loop. Runs in temporary vhosts.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.AMQPURL, "amqp-url", envOr("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"), "broker `URL` (loopback only; its vhost is replaced by a temporary one) [$AMQP_URL]")
	fs.StringVar(&cfg.ManagementURL, "management-url", envOr("MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672"), "RabbitMQ management API `URL` (loopback only) [$MANAGEMENT_URL]")
	fs.DurationVar(&cfg.Warmup, "warmup", time.Second, "warm-up before each measured window")
	fs.DurationVar(&cfg.Duration, "duration", 8*time.Second, "length of each measured window")
	fs.IntVar(&cfg.Runs, "runs", 3, "alternating runs per row (the table shows medians)")
	fs.Var((*intList)(&cfg.Concurrency), "concurrency", "closed-loop concurrencies of the /process comparison")
	fs.IntVar(&cfg.Workers, "workers", 2, "workers for the /process comparison")
	farmEnv := fs.String("farm-env", "", "diagnostics: comma-separated KEY=VALUE settings for the comparison farm (e.g. PREFETCH=32,CONCURRENCY=8); default settings when empty")
	phases := fs.String("phases", strings.Join(defaultPhases, ","), "phases to run, from "+strings.Join(allPhases, ",")+" (ablation only when named)")
	fs.IntVar(&cfg.RawResponders, "raw-responders", 2, "raw loop: responders (one connection each)")
	fs.IntVar(&cfg.RawConns, "raw-conns", 2, "raw loop: client connections")
	fs.IntVar(&cfg.RawPrefetch, "raw-prefetch", 32, "raw loop: responder prefetch")
	fs.Var((*intList)(&cfg.ScaleWorkers), "scale-workers", "scaling phase: worker counts")
	fs.DurationVar(&cfg.ScaleLatency, "scale-latency", 20*time.Millisecond, "scaling phase: the workers' MODEL_LATENCY")
	fs.IntVar(&cfg.ScaleFactor, "scale-factor", 2, "scaling phase: closed-loop concurrency per worker")
	fs.IntVar(&cfg.ScaleRuns, "scale-runs", 1, "scaling phase: runs per worker count (median)")
	fs.Var((*intList)(&cfg.DigitsConcurrency), "digits-concurrency", "digits phase: closed-loop concurrencies against the farm")
	fs.IntVar(&cfg.DigitsWorkers, "digits-workers", 1, "digits phase: workers (MODELS=digits)")
	fs.IntVar(&cfg.BatchConcurrency, "batch-concurrency", 64, "batch phase: closed-loop callers")
	fs.IntVar(&cfg.BatchWorkers, "batch-workers", 1, "batch phase: workers")
	fs.IntVar(&cfg.BatchModelConcurrency, "batch-model-concurrency", 2, "batch phase: each model's concurrency (batches, or requests, computed at once per worker)")
	fs.IntVar(&cfg.BatchSize, "batch-size", 32, "batch phase: the batched models' max_batch_size")
	fs.DurationVar(&cfg.BatchDelay, "batch-delay", 5*time.Millisecond, "batch phase: the batched models' max_batch_delay")
	fs.DurationVar(&cfg.BatchLatency, "batch-latency", 20*time.Millisecond, "batch phase: the simulated model's latency per batch")
	fs.DurationVar(&cfg.BatchItemLatency, "batch-item-latency", 200*time.Microsecond, "batch phase: the simulated model's item_latency per request")
	fs.IntVar(&cfg.AblationConcurrency, "ablation-concurrency", 64, "ablation phase: closed-loop callers")
	fs.IntVar(&cfg.AblationRuns, "ablation-runs", 3, "ablation phase: alternating runs per variant (the table shows medians)")
	fs.DurationVar(&cfg.AblationDuration, "ablation-duration", 4*time.Second, "ablation phase: length of each measured window")
	fs.StringVar(&cfg.AblationVariants, "ablation-variants", "", "ablation phase: comma-separated variants to run besides raw (empty: all)")
	fs.StringVar(&cfg.BaselineRev, "baseline-rev", "", "farm and async phases: also run the farm built from this git `revision` (variant farm-baseline), alternating with the current one")
	fs.BoolVar(&cfg.OTel, "otel", false, "farm phase: also run the current farm with tracing exported to an OTLP/HTTP sink in the bench (variant farm-otel)")
	fs.IntVar(&cfg.AsyncJobs, "async-jobs", 10000, "async phase: jobs submitted")
	fs.IntVar(&cfg.AsyncRuns, "async-runs", 1, "async phase: runs per store and variant, alternating with -baseline-rev (the verdict takes medians)")
	fs.IntVar(&cfg.AsyncSubmitters, "async-submitters", 64, "async phase: concurrent POST /jobs callers")
	fs.IntVar(&cfg.AsyncPollers, "async-pollers", 64, "async phase: concurrent GET /jobs/{id}?wait= long-polls")
	fs.IntVar(&cfg.AsyncWorkers, "async-workers", 2, "async phase: workers")
	fs.IntVar(&cfg.AsyncJobConcurrency, "async-job-concurrency", 4, "async phase: the workers' JOB_CONCURRENCY")
	fs.DurationVar(&cfg.AsyncLatency, "async-latency", 50*time.Millisecond, "async phase: the workers' MODEL_LATENCY")
	asyncStore := fs.String("async-store", StoreBolt, "async phase: job store, bolt (embedded, DATA_DIR in a temporary directory), redis, or both")
	fs.StringVar(&cfg.RedisURL, "redis-url", "redis://127.0.0.1:6379/0", "async phase: Redis for -async-store redis (loopback only); keys go under a unique REDIS_PREFIX, deleted afterwards")
	fs.StringVar(&cfg.BinDir, "bin-dir", "bin", "where bin/api and bin/worker are, relative to the repository root")
	fs.BoolVar(&cfg.Build, "build", true, "build bin/api and bin/worker with `go build` first")
	fs.BoolVar(&cfg.KeepLogs, "keep-logs", false, "keep the child processes' logs (kept anyway on failure)")
	quick := fs.Bool("quick", false, "smoke run: -warmup 500ms -duration 2s -runs 1 -scale-workers 1,2,4 -async-jobs 2000 -ablation-runs 1 -ablation-duration 2s")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.Quick = *quick
	if *quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["warmup"] {
			cfg.Warmup = 500 * time.Millisecond
		}
		if !set["duration"] {
			cfg.Duration = 2 * time.Second
		}
		if !set["runs"] {
			cfg.Runs = 1
		}
		if !set["scale-workers"] {
			cfg.ScaleWorkers = slices.Clone(quickScaleWorkers)
		}
		if !set["async-jobs"] {
			cfg.AsyncJobs = 2000
		}
		if !set["ablation-runs"] {
			cfg.AblationRuns = 1
		}
		if !set["ablation-duration"] {
			cfg.AblationDuration = 2 * time.Second
		}
	}
	for kv := range strings.SplitSeq(*farmEnv, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, fmt.Errorf("-farm-env: %q is not KEY=VALUE", kv)
		}
		cfg.FarmEnv = append(cfg.FarmEnv, kv)
	}
	cfg.Phases = nil
	for p := range strings.SplitSeq(*phases, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(allPhases, p) {
			return nil, fmt.Errorf("-phases: unknown phase %q (want some of %s)", p, strings.Join(allPhases, ","))
		}
		cfg.Phases = append(cfg.Phases, p)
	}
	switch strings.TrimSpace(*asyncStore) {
	case StoreBolt, "":
		cfg.AsyncStores = []string{StoreBolt}
	case StoreRedis:
		cfg.AsyncStores = []string{StoreRedis}
	case "both":
		cfg.AsyncStores = []string{StoreBolt, StoreRedis}
	default:
		return nil, fmt.Errorf("-async-store: %q: want bolt, redis or both", *asyncStore)
	}
	switch {
	case len(cfg.Phases) == 0:
		return nil, errors.New("-phases: nothing to run")
	case cfg.Runs < 1, cfg.ScaleRuns < 1:
		return nil, errors.New("-runs and -scale-runs must be at least 1")
	case cfg.Duration <= 0 || cfg.Warmup < 0:
		return nil, errors.New("-duration must be positive and -warmup not negative")
	case cfg.DigitsWorkers < 1:
		return nil, errors.New("-digits-workers must be at least 1")
	case cfg.BatchConcurrency < 1 || cfg.BatchWorkers < 1 || cfg.BatchModelConcurrency < 1 || cfg.BatchSize < 2 || cfg.BatchSize > 1024:
		return nil, errors.New("-batch-concurrency, -batch-workers and -batch-model-concurrency must be at least 1, -batch-size between 2 and 1024")
	case cfg.BatchDelay < 0 || cfg.BatchDelay > time.Minute || cfg.BatchLatency < 0 || cfg.BatchItemLatency < 0:
		return nil, errors.New("-batch-delay must be between 0 and 1m, -batch-latency and -batch-item-latency not negative")
	case cfg.Workers < 1 || cfg.RawResponders < 1 || cfg.RawConns < 1 || cfg.RawPrefetch < 1 || cfg.ScaleFactor < 1:
		return nil, errors.New("-workers, -raw-responders, -raw-conns, -raw-prefetch and -scale-factor must be at least 1")
	case cfg.AsyncJobs < 1 || cfg.AsyncSubmitters < 1 || cfg.AsyncPollers < 1 || cfg.AsyncWorkers < 1 || cfg.AsyncJobConcurrency < 1:
		return nil, errors.New("-async-jobs, -async-submitters, -async-pollers, -async-workers and -async-job-concurrency must be at least 1")
	case cfg.AblationConcurrency < 1 || cfg.AblationRuns < 1 || cfg.AblationDuration <= 0:
		return nil, errors.New("-ablation-concurrency and -ablation-runs must be at least 1, -ablation-duration positive")
	case cfg.AsyncLatency <= 0:
		return nil, errors.New("-async-latency must be positive (the completion target divides by it)")
	case cfg.BaselineRev != "" && !cfg.Has(PhaseFarm) && !cfg.Has(PhaseAsync):
		return nil, errors.New("-baseline-rev adds a variant to the farm and async phases: select one (-phases farm,...)")
	case cfg.OTel && !cfg.Has(PhaseFarm):
		return nil, errors.New("-otel adds a variant to the farm phase: select it (-phases farm,...)")
	case cfg.AsyncRuns < 1:
		return nil, errors.New("-async-runs must be at least 1")
	}
	if _, err := SelectAblationVariants(cfg.AblationVariants); err != nil {
		return nil, err
	}
	urls := []string{cfg.AMQPURL, cfg.ManagementURL}
	if cfg.Has(PhaseAsync) && slices.Contains(cfg.AsyncStores, StoreRedis) {
		urls = append(urls, cfg.RedisURL)
	}
	for _, u := range urls {
		if err := checkLoopbackURL(u); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// Main runs the benchmark with the command-line args and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	cfg, err := ParseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills at once
	}()
	if err := Run(ctx, cfg, stdout, stderr); err != nil {
		if errors.Is(err, context.Canceled) {
			_, _ = fmt.Fprintln(stderr, "bench: interrupted; cleaned up")
			return 130
		}
		_, _ = fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	return 0
}

// amqpPort returns the port of an AMQP URL (5672 by default).
func amqpPort(raw string) int {
	u, err := url.Parse(raw)
	if err != nil {
		return 5672
	}
	if p, err := strconv.Atoi(u.Port()); err == nil {
		return p
	}
	if u.Scheme == "amqps" {
		return 5671
	}
	return 5672
}

// findRepo walks up from dir to the directory holding go.mod.
func findRepo(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s: run the benchmark from the warren repository", dir)
		}
	}
}

// bench is the state of one benchmark run.
type bench struct {
	cfg    *Config
	rep    *Report
	mgmt   *Mgmt
	out    io.Writer // the report
	log    io.Writer // progress
	vhost  string    // the main temporary vhost
	vurl   string    // AMQP URL with the main vhost
	vhosts []string  // every vhost created, deleted at exit
	logDir string
	broker []int // the broker's pids, for CPU sampling
	step   int
	steps  int

	apiBin, workerBin string
	// modelsDir is the repository's models/ (absolute): the workers'
	// MODEL_REPOSITORY.
	modelsDir string
	// baseline binaries (-baseline-rev), in a temporary directory, and the
	// baseline's models/ ("" when that revision has none)
	baseAPI, baseWorker, baseModels string
}

// Run runs the selected phases and prints the report to stdout and progress
// to stderr. It cleans up (children, vhosts, temporary directories, Redis
// keys) before returning, also when ctx is cancelled.
func Run(ctx context.Context, cfg *Config, stdout, stderr io.Writer) (err error) {
	b := &bench{cfg: cfg, out: stdout, log: stderr}
	mgmt, err := NewMgmt(cfg.ManagementURL)
	if err != nil {
		return err
	}
	b.mgmt = mgmt
	b.rep = &Report{Cfg: cfg, Sys: CollectSysInfo(ctx, mgmt)}
	b.broker = brokerPids(amqpPort(cfg.AMQPURL))

	needFarm := cfg.Has(PhaseFarm) || cfg.Has(PhaseV2) || cfg.Has(PhaseScale) || cfg.Has(PhaseDigits) || cfg.Has(PhaseAsync) || cfg.Has(PhaseBatch)
	if needFarm || cfg.BaselineRev != "" {
		if cfg.RepoDir == "" {
			wd, err := os.Getwd()
			if err != nil {
				return err
			}
			if cfg.RepoDir, err = findRepo(wd); err != nil {
				return err
			}
		}
	}
	if needFarm {
		bin := cfg.BinDir
		if !filepath.IsAbs(bin) {
			bin = filepath.Join(cfg.RepoDir, bin)
		}
		b.apiBin, b.workerBin = filepath.Join(bin, "api"), filepath.Join(bin, "worker")
		if cfg.Build {
			for _, x := range []struct{ out, pkg string }{{b.apiBin, "./cmd/api"}, {b.workerBin, "./cmd/worker"}} {
				cmd, err := goBuild(ctx, cfg.RepoDir, x.out, x.pkg, b.log)
				if err != nil {
					return err
				}
				b.rep.Commands = append(b.rep.Commands, cmd)
			}
		}
		for _, p := range []string{b.apiBin, b.workerBin} {
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("%s: %w (build it or drop -build=false)", p, err)
			}
		}
		b.modelsDir = filepath.Join(cfg.RepoDir, "models")
		if st, err := os.Stat(b.modelsDir); err != nil || !st.IsDir() {
			return fmt.Errorf("%s: the model repository the workers serve is missing", b.modelsDir)
		}
	}
	if cfg.BaselineRev != "" {
		bl, err := BuildRevision(ctx, cfg.RepoDir, cfg.BaselineRev, b.log)
		if err != nil {
			return fmt.Errorf("-baseline-rev: %w", err)
		}
		defer bl.Remove()
		b.baseAPI, b.baseWorker = bl.API, bl.Worker
		if st, err := os.Stat(bl.Models()); err == nil && st.IsDir() {
			b.baseModels = bl.Models()
		}
		b.rep.Baseline = bl.Describe()
		for _, c := range bl.Commands {
			b.rep.Commands = append(b.rep.Commands, c+"   (baseline "+shortCommit(bl.Commit)+", in a git archive of it)")
		}
	}

	if b.logDir, err = os.MkdirTemp("", "warren-bench-"); err != nil {
		return err
	}
	defer func() {
		if (err == nil || errors.Is(err, context.Canceled)) && !cfg.KeepLogs {
			_ = os.RemoveAll(b.logDir)
		} else {
			_, _ = fmt.Fprintf(stderr, "bench: child process logs kept in %s\n", b.logDir)
		}
	}()

	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		for _, v := range b.vhosts {
			if derr := mgmt.DeleteVhost(dctx, v); derr != nil {
				_, _ = fmt.Fprintf(stderr, "bench: delete vhost %s: %v\n", v, derr)
			}
		}
	}()
	if b.vurl, err = b.newVhost(ctx, fmt.Sprintf("warren-bench-%d-%s", os.Getpid(), hex.EncodeToString(rnd[:]))); err != nil {
		return err
	}
	b.vhost = b.vhosts[0]
	b.rep.Vhost = b.vhost

	b.rep.PrintHeader(stdout)
	b.countSteps()

	farmCfg := FarmConfig{APIBin: b.apiBin, WorkerBin: b.workerBin, AMQPURL: b.vurl, ManagementURL: cfg.ManagementURL, LogDir: b.logDir,
		ModelRepository: b.modelsDir, Models: seedModel}
	if b.comparing() {
		farmCfg := farmCfg
		farmCfg.Env = cfg.FarmEnv
		if err := b.compare(ctx, farmCfg); err != nil {
			return err
		}
		if cfg.Has(PhaseFarm) || cfg.Has(PhaseRaw) || cfg.Has(PhaseExtra) {
			b.rep.PrintCompare(stdout)
		}
		if b.rep.HasObservability() {
			b.rep.PrintObservability(stdout)
		}
		if cfg.Has(PhaseV2) {
			b.rep.PrintV2(stdout)
		}
	}
	if cfg.Has(PhaseScale) {
		if err := b.scale(ctx, farmCfg); err != nil {
			return err
		}
		b.rep.PrintScale(stdout)
	}
	if cfg.Has(PhaseDigits) {
		if err := b.digits(ctx); err != nil {
			return fmt.Errorf("digits: %w", err)
		}
		b.rep.PrintDigits(stdout)
	}
	if cfg.Has(PhaseAsync) {
		for round := 1; round <= cfg.AsyncRuns; round++ {
			for _, store := range cfg.AsyncStores {
				for _, v := range roundOrder(b.asyncVariants(), round) {
					if err := b.async(ctx, store, v, round); err != nil {
						return fmt.Errorf("async (%s, %s): %w", store, v, err)
					}
				}
			}
		}
		b.rep.PrintAsync(stdout)
	}
	if cfg.Has(PhaseBatch) {
		if err := b.batch(ctx); err != nil {
			return fmt.Errorf("batch: %w", err)
		}
		b.rep.PrintBatch(stdout)
	}
	if cfg.Has(PhaseAblation) {
		if err := b.ablation(ctx); err != nil {
			return fmt.Errorf("ablation: %w", err)
		}
		b.rep.PrintAblation(stdout)
	}
	b.rep.PrintTargets(stdout)
	return nil
}

// newVhost creates a temporary vhost, to be deleted at exit, and returns
// the AMQP URL pointing at it.
func (b *bench) newVhost(ctx context.Context, name string) (string, error) {
	if err := b.mgmt.CreateVhost(ctx, name); err != nil {
		return "", fmt.Errorf("create vhost %s: %w", name, err)
	}
	b.vhosts = append(b.vhosts, name)
	return WithVhost(b.cfg.AMQPURL, name)
}

// goBuildFlags are the Makefile's build flags (`make build`, the Dockerfiles):
// static, trimmed, stripped. The bench builds with them so that it measures the
// binaries that ship.
var goBuildFlags = []string{"-trimpath", "-ldflags=-s -w"}

// goBuild runs `CGO_ENABLED=0 go build <goBuildFlags> -o out pkg` in dir and
// returns the command line for the report.
func goBuild(ctx context.Context, dir, out, pkg string, log io.Writer) (string, error) {
	args := append([]string{"build"}, goBuildFlags...)
	args = append(args, "-o", out, pkg)
	line := "CGO_ENABLED=0 go " + strings.ReplaceAll(strings.Join(args, " "), "-ldflags=-s -w", `-ldflags="-s -w"`)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = log, log
	_, _ = fmt.Fprintf(log, "bench: %s (in %s)\n", line, dir)
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s in %s: %w", pkg, dir, err)
	}
	return line, nil
}

// comparing reports whether a phase of the alternating comparison is
// selected (farm, raw, v2, extra).
func (b *bench) comparing() bool {
	return b.cfg.Has(PhaseFarm) || b.cfg.Has(PhaseRaw) || b.cfg.Has(PhaseExtra) || b.cfg.Has(PhaseV2)
}

// variants are the comparison's variants in the order they alternate: the v2
// phase needs the farm's /process runs too, and its own come right after them.
func (b *bench) variants() []string {
	var vs []string
	if b.cfg.Has(PhaseFarm) || b.cfg.Has(PhaseV2) {
		vs = append(vs, VariantFarm)
	}
	if b.cfg.Has(PhaseV2) {
		vs = append(vs, VariantFarmV2)
	}
	if b.cfg.Has(PhaseFarm) {
		if b.cfg.BaselineRev != "" {
			vs = append(vs, VariantFarmBaseline)
		}
		if b.cfg.OTel {
			vs = append(vs, VariantFarmOTel)
		}
	}
	if b.cfg.Has(PhaseRaw) {
		vs = append(vs, VariantRaw)
	}
	if b.cfg.Has(PhaseExtra) {
		vs = append(vs, VariantRawSep, VariantRawConfirm)
	}
	return vs
}

// asyncVariants are the builds the async phase runs: the current one, and the
// baseline's with -baseline-rev.
func (b *bench) asyncVariants() []string {
	if b.cfg.BaselineRev != "" {
		return []string{VariantFarm, VariantFarmBaseline}
	}
	return []string{VariantFarm}
}

func (b *bench) countSteps() {
	if b.comparing() {
		b.steps += len(b.cfg.Concurrency) * b.cfg.Runs * len(b.variants())
	}
	if b.cfg.Has(PhaseScale) {
		b.steps += len(b.cfg.ScaleWorkers) * b.cfg.ScaleRuns
	}
	if b.cfg.Has(PhaseDigits) {
		b.steps += b.digitsSteps()
	}
	if b.cfg.Has(PhaseBatch) {
		b.steps += b.batchSteps()
	}
	if b.cfg.Has(PhaseAblation) {
		b.steps += b.ablationSteps()
	}
	if b.cfg.Has(PhaseAsync) {
		b.steps += 2 * len(b.cfg.AsyncStores) * len(b.asyncVariants()) * b.cfg.AsyncRuns // submit, done
	}
}

const (
	rawQueue    = "bench.raw"
	rawSepQueue = "bench.raw.sep"
)

// compare runs the /process comparison: every variant at every concurrency,
// alternating runs. The farm variants run at the same time, each in a vhost of
// its own (they all use the same queue names); only the one being measured
// has load.
func (b *bench) compare(ctx context.Context, farmCfg FarmConfig) error {
	cfg := b.cfg
	var sink *OTLPSink
	if slices.Contains(b.variants(), VariantFarmOTel) {
		var err error
		if sink, err = StartOTLPSink(); err != nil {
			return err
		}
		defer sink.Close() // after the farms have stopped (deferred below)
	}
	farms := map[string]*Farm{}
	defer func() {
		var wg sync.WaitGroup
		for _, f := range farms {
			wg.Go(f.Stop)
		}
		wg.Wait()
	}()
	if cfg.Has(PhaseFarm) || cfg.Has(PhaseV2) {
		settings := "default settings"
		if len(cfg.FarmEnv) > 0 {
			settings = strings.Join(cfg.FarmEnv, " ")
		}
		for _, v := range b.variants() {
			fc := farmCfg
			what := "bin/api and %d bin/worker"
			switch v {
			case VariantFarmBaseline:
				fc.APIBin, fc.WorkerBin = b.baseAPI, b.baseWorker
				fc.ModelRepository = b.baseModels // "": a build from before the model repository
				what = "the api and %d worker of " + b.rep.Baseline
			case VariantFarmOTel:
				fc.Env = append(slices.Clone(fc.Env), "OTEL_EXPORTER_OTLP_ENDPOINT="+sink.URL)
				what = "bin/api and %d bin/worker with OTEL_EXPORTER_OTLP_ENDPOINT=" + sink.URL
			case VariantFarm:
				what += " (MODELS=" + fc.Models + ")"
			default: // farm-v2 calls the farm of VariantFarm
				continue
			}
			if v != VariantFarm {
				fc.Name = v
				url, err := b.newVhost(ctx, b.vhost+"-"+v)
				if err != nil {
					return err
				}
				fc.AMQPURL = url
			}
			_, _ = fmt.Fprintf(b.log, "bench: %s: starting "+what+" (%s)\n", v, cfg.Workers, settings)
			f, err := StartFarm(ctx, fc, cfg.Workers)
			if err != nil {
				return fmt.Errorf("start %s: %w", v, err)
			}
			farms[v] = f
		}
	}
	if cfg.Has(PhaseRaw) || cfg.Has(PhaseExtra) {
		if err := DeclareQueue(b.vurl, rawQueue); err != nil {
			return err
		}
		resp, err := StartResponders(b.vurl, rawQueue, cfg.RawResponders, cfg.RawPrefetch)
		if err != nil {
			return err
		}
		defer resp.Close()
	}
	var sep *ResponderProcess
	if cfg.Has(PhaseExtra) {
		if err := DeclareQueue(b.vurl, rawSepQueue); err != nil {
			return err
		}
		var err error
		if sep, err = StartResponderProcess(ctx, b.vurl, rawSepQueue, cfg.RawResponders, cfg.RawPrefetch, b.logDir); err != nil {
			return err
		}
		defer sep.Stop()
	}

	var otelOK atomic.Int64 // successful /process calls to farm-otel, warm-ups included
	for _, c := range cfg.Concurrency {
		row := &CompareRow{Concurrency: c, Variants: map[string]*Summary{}}
		b.rep.Compare = append(b.rep.Compare, row)
		vs := b.variants()
		for run := 1; run <= cfg.Runs; run++ {
			for _, v := range roundOrder(vs, run) {
				var res *Result
				var err error
				switch v {
				case VariantFarm, VariantFarmBaseline:
					res, err = b.runFarm(ctx, farms[v], c, processPath, nil)
				case VariantFarmV2:
					res, err = b.runFarm(ctx, farms[VariantFarm], c, seedInferPath, nil)
				case VariantFarmOTel:
					res, err = b.runFarm(ctx, farms[v], c, processPath, &otelOK)
				case VariantRaw:
					res, err = b.runRaw(ctx, rawQueue, false, c, nil)
				case VariantRawSep:
					res, err = b.runRaw(ctx, rawSepQueue, false, c, sep)
				case VariantRawConfirm:
					res, err = b.runRaw(ctx, rawQueue, true, c, nil)
				}
				if err != nil {
					return fmt.Errorf("%s c=%d run %d: %w", v, c, run, err)
				}
				if row.Variants[v] == nil {
					row.Variants[v] = &Summary{}
				}
				row.Variants[v].Add(res)
				b.progress(fmt.Sprintf("%-13s c=%-3d run %d/%d", v, c, run, cfg.Runs), res)
			}
		}
	}
	if sink != nil {
		// Stopping the farm flushes the spans still batched (the binaries
		// shut their tracer provider down on SIGTERM).
		farms[VariantFarmOTel].Stop()
		b.rep.OTel = &OTelStats{Sink: sink.Stats(), Requests: otelOK.Load(), Endpoint: sink.URL}
	}
	return nil
}

// roundOrder is the order of the variants in round run (1, 2, ...): each round
// starts one variant later, so no variant always follows the same one; but
// farm-v2 always runs right beside farm (after it in odd rounds, before it in
// even ones), so that each v2/process pair of the v2 verdict is measured back
// to back.
func roundOrder(vs []string, run int) []string {
	k := (run - 1) % len(vs)
	order := slices.Concat(vs[k:], vs[:k])
	i, j := slices.Index(order, VariantFarm), slices.Index(order, VariantFarmV2)
	if i < 0 || j < 0 {
		return order
	}
	order = slices.Delete(order, j, j+1)
	i = slices.Index(order, VariantFarm)
	if run%2 == 1 {
		i++
	}
	return slices.Insert(order, i, VariantFarmV2)
}

// scale runs the scaling phase: workers with a model service time, added
// step by step, each count measured at ScaleFactor × N.
func (b *bench) scale(ctx context.Context, farmCfg FarmConfig) error {
	cfg := b.cfg
	workers := slices.Sorted(slices.Values(cfg.ScaleWorkers))
	farmCfg.WorkerEnv = []string{"MODEL_LATENCY=" + cfg.ScaleLatency.String(), "CONCURRENCY=1"}
	farmCfg.Name = "scale"
	farmCfg.ReadyTimeout = 120 * time.Second
	_, _ = fmt.Fprintf(b.log, "bench: scaling: starting bin/api and %d bin/worker (MODEL_LATENCY=%v CONCURRENCY=1)\n", workers[0], cfg.ScaleLatency)
	farm, err := StartFarm(ctx, farmCfg, workers[0])
	if err != nil {
		return fmt.Errorf("start farm: %w", err)
	}
	defer farm.Stop()
	for _, n := range workers {
		if err := farm.AddWorkers(ctx, n); err != nil {
			return fmt.Errorf("scale to %d workers: %w", n, err)
		}
		c := cfg.ScaleFactor * n
		row := &ScaleRow{Workers: n, Concurrency: c, Sum: &Summary{},
			Ideal: float64(n) / cfg.ScaleLatency.Seconds()}
		b.rep.Scale = append(b.rep.Scale, row)
		for run := 1; run <= cfg.ScaleRuns; run++ {
			res, err := b.runFarm(ctx, farm, c, processPath, nil)
			if err != nil {
				return fmt.Errorf("scale N=%d run %d: %w", n, run, err)
			}
			row.Sum.Add(res)
			b.progress(fmt.Sprintf("scale N=%-3d c=%-3d run %d/%d", n, c, run, cfg.ScaleRuns), res)
		}
	}
	return nil
}

func (b *bench) progress(what string, r *Result) {
	b.step++
	line := fmt.Sprintf("[%2d/%d] %s: %s req/s  p50 %s  p99 %s", b.step, b.steps, what,
		fmtRate(r.RPS()), fmtDur(r.Percentile(50)), fmtDur(r.Percentile(99)))
	if n := r.FailureCount(); n > 0 {
		line += "  failures " + fmtFailures(r.Failures)
	}
	if r.CPU != nil {
		line += fmt.Sprintf("  cpu %.2f cores (other %.2f)", r.CPU.Machine, r.CPU.Other())
	}
	_, _ = fmt.Fprintln(b.log, line)
}

func (b *bench) sampler(groups map[string]func() []int) *CPUSampler {
	self := os.Getpid()
	groups["bench"] = func() []int { return []int{self} }
	if len(b.broker) > 0 {
		groups["broker"] = func() []int { return b.broker }
	}
	return NewCPUSampler(groups)
}

func (b *bench) loopConfig(c int, s *CPUSampler, res **CPUUsage) LoopConfig {
	return LoopConfig{
		Concurrency:   c,
		Warmup:        b.cfg.Warmup,
		Duration:      b.cfg.Duration,
		OnWindowStart: s.Start,
		OnWindowEnd:   func() { *res = s.Stop() },
	}
}

// The farm's endpoints the comparison calls.
const (
	processPath   = "/process"
	seedInferPath = "/v2/models/" + seedModel + "/infer"
)

// runFarm runs one closed loop against farm's /process or
// /v2/models/seed/infer (path). ok, if set, counts every success, warm-up and
// cancelled window edges included.
func (b *bench) runFarm(ctx context.Context, farm *Farm, c int, path string, ok *atomic.Int64) (*Result, error) {
	var mk func(http.RoundTripper, string) func(int) CallFunc
	switch path {
	case processPath:
		mk = ProcessCaller
	case seedInferPath:
		mk = SeedInferCaller
	default:
		return nil, fmt.Errorf("no caller for %s", path)
	}
	return b.runFarmWith(ctx, farm, c, func(rt http.RoundTripper) func(int) CallFunc {
		return mk(rt, farm.BaseURL+path)
	}, ok)
}

// runFarmWith runs one closed loop of c callers made by newCaller (on a
// fresh keep-alive transport) against farm, sampling the CPU of its API and
// workers. ok, if set, counts every success.
func (b *bench) runFarmWith(ctx context.Context, farm *Farm, c int, newCaller func(http.RoundTripper) func(int) CallFunc, ok *atomic.Int64) (*Result, error) {
	if err := farm.Check(); err != nil {
		return nil, err
	}
	s := b.sampler(map[string]func() []int{
		"api":     func() []int { p, _ := farm.Pids(); return []int{p} },
		"workers": func() []int { _, w := farm.Pids(); return w },
	})
	var usage *CPUUsage
	tr := NewHTTPTransport(c)
	defer tr.CloseIdleConnections()
	caller := newCaller(tr)
	if ok != nil {
		inner := caller
		caller = func(i int) CallFunc {
			call := inner(i)
			return func(ctx context.Context) string {
				f := call(ctx)
				if f == "" {
					ok.Add(1)
				}
				return f
			}
		}
	}
	res, err := RunClosedLoop(ctx, b.loopConfig(c, s, &usage), caller)
	if err != nil {
		return nil, err
	}
	res.CPU = usage
	if err := farm.Check(); err != nil {
		return nil, err
	}
	return res, nil
}

func (b *bench) runRaw(ctx context.Context, queue string, confirms bool, c int, sep *ResponderProcess) (*Result, error) {
	groups := map[string]func() []int{}
	if sep != nil {
		groups["responder"] = func() []int { return []int{sep.Pid()} }
	}
	s := b.sampler(groups)
	client, err := NewRawClient(b.vurl, queue, b.cfg.RawConns, confirms)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	var usage *CPUUsage
	res, err := RunClosedLoop(ctx, b.loopConfig(c, s, &usage), client.Caller())
	if err != nil {
		return nil, err
	}
	res.CPU = usage
	return res, nil
}
