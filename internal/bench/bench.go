package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Variants of the /process comparison, in the order they alternate.
const (
	VariantFarm       = "farm"
	VariantRaw        = "raw"
	VariantRawSep     = "raw-sep"
	VariantRawConfirm = "raw-confirm"
)

// Phases that -phases selects.
const (
	PhaseFarm  = "farm"  // /process against the farm
	PhaseRaw   = "raw"   // the raw amqp091-go loop
	PhaseExtra = "extra" // raw with responders in a separate process, and with confirms
	PhaseScale = "scale" // throughput against worker count with a model service time
)

var allPhases = []string{PhaseFarm, PhaseRaw, PhaseExtra, PhaseScale}

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

	RepoDir  string
	BinDir   string
	Build    bool
	KeepLogs bool

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
		Concurrency:  []int{1, 16, 64},
		ScaleWorkers: []int{1, 2, 4, 8, 16, 32},
		Args:         args,
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		_, _ = fmt.Fprintf(stderr, "Usage: go run ./cmd/bench [flags]\n\n"+
			"Measures warren's POST /process against a raw amqp091-go RPC loop through the\n"+
			"same RabbitMQ, then throughput against worker count. Runs in a temporary vhost.\n\nFlags:\n")
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
	phases := fs.String("phases", strings.Join(allPhases, ","), "phases to run, from "+strings.Join(allPhases, ","))
	fs.IntVar(&cfg.RawResponders, "raw-responders", 2, "raw loop: responders (one connection each)")
	fs.IntVar(&cfg.RawConns, "raw-conns", 2, "raw loop: client connections")
	fs.IntVar(&cfg.RawPrefetch, "raw-prefetch", 32, "raw loop: responder prefetch")
	fs.Var((*intList)(&cfg.ScaleWorkers), "scale-workers", "scaling phase: worker counts")
	fs.DurationVar(&cfg.ScaleLatency, "scale-latency", 20*time.Millisecond, "scaling phase: the workers' MODEL_LATENCY")
	fs.IntVar(&cfg.ScaleFactor, "scale-factor", 2, "scaling phase: closed-loop concurrency per worker")
	fs.IntVar(&cfg.ScaleRuns, "scale-runs", 1, "scaling phase: runs per worker count (median)")
	fs.StringVar(&cfg.BinDir, "bin-dir", "bin", "where bin/api and bin/worker are, relative to the repository root")
	fs.BoolVar(&cfg.Build, "build", true, "build bin/api and bin/worker with `go build` first")
	fs.BoolVar(&cfg.KeepLogs, "keep-logs", false, "keep the child processes' logs (kept anyway on failure)")
	quick := fs.Bool("quick", false, "smoke run: -warmup 500ms -duration 2s -runs 1 -scale-workers 1,2,4")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
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
			cfg.ScaleWorkers = []int{1, 2, 4}
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
	switch {
	case len(cfg.Phases) == 0:
		return nil, errors.New("-phases: nothing to run")
	case cfg.Runs < 1, cfg.ScaleRuns < 1:
		return nil, errors.New("-runs and -scale-runs must be at least 1")
	case cfg.Duration <= 0 || cfg.Warmup < 0:
		return nil, errors.New("-duration must be positive and -warmup not negative")
	case cfg.Workers < 1 || cfg.RawResponders < 1 || cfg.RawConns < 1 || cfg.RawPrefetch < 1 || cfg.ScaleFactor < 1:
		return nil, errors.New("-workers, -raw-responders, -raw-conns, -raw-prefetch and -scale-factor must be at least 1")
	}
	for _, u := range []string{cfg.AMQPURL, cfg.ManagementURL} {
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
	out    io.Writer // the report
	log    io.Writer // progress
	vurl   string    // AMQP URL with the bench vhost
	logDir string
	broker []int // the broker's pids, for CPU sampling
	step   int
	steps  int
}

// Run runs the selected phases and prints the report to stdout and progress
// to stderr. It cleans up (children, vhost) before returning, also when ctx
// is cancelled.
func Run(ctx context.Context, cfg *Config, stdout, stderr io.Writer) (err error) {
	b := &bench{cfg: cfg, out: stdout, log: stderr}
	mgmt, err := NewMgmt(cfg.ManagementURL)
	if err != nil {
		return err
	}
	b.rep = &Report{Cfg: cfg, Sys: CollectSysInfo(ctx, mgmt)}
	b.broker = brokerPids(amqpPort(cfg.AMQPURL))

	needFarm := cfg.Has(PhaseFarm) || cfg.Has(PhaseScale)
	var apiBin, workerBin string
	if needFarm {
		if cfg.RepoDir == "" {
			wd, err := os.Getwd()
			if err != nil {
				return err
			}
			if cfg.RepoDir, err = findRepo(wd); err != nil {
				return err
			}
		}
		bin := cfg.BinDir
		if !filepath.IsAbs(bin) {
			bin = filepath.Join(cfg.RepoDir, bin)
		}
		apiBin, workerBin = filepath.Join(bin, "api"), filepath.Join(bin, "worker")
		if cfg.Build {
			if err := b.build(ctx, apiBin, "./cmd/api"); err != nil {
				return err
			}
			if err := b.build(ctx, workerBin, "./cmd/worker"); err != nil {
				return err
			}
		}
		for _, p := range []string{apiBin, workerBin} {
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("%s: %w (build it or drop -build=false)", p, err)
			}
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
	vhost := fmt.Sprintf("warren-bench-%d-%s", os.Getpid(), hex.EncodeToString(rnd[:]))
	if err := mgmt.CreateVhost(ctx, vhost); err != nil {
		return fmt.Errorf("create vhost: %w", err)
	}
	b.rep.Vhost = vhost
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if derr := mgmt.DeleteVhost(dctx, vhost); derr != nil {
			_, _ = fmt.Fprintf(stderr, "bench: delete vhost %s: %v\n", vhost, derr)
		}
	}()
	if b.vurl, err = WithVhost(cfg.AMQPURL, vhost); err != nil {
		return err
	}

	b.rep.PrintHeader(stdout)
	b.countSteps()

	farmCfg := FarmConfig{APIBin: apiBin, WorkerBin: workerBin, AMQPURL: b.vurl, ManagementURL: cfg.ManagementURL, LogDir: b.logDir}
	if cfg.Has(PhaseFarm) || cfg.Has(PhaseRaw) || cfg.Has(PhaseExtra) {
		farmCfg := farmCfg
		farmCfg.Env = cfg.FarmEnv
		if err := b.compare(ctx, farmCfg); err != nil {
			return err
		}
		b.rep.PrintCompare(stdout)
	}
	if cfg.Has(PhaseScale) {
		if err := b.scale(ctx, farmCfg); err != nil {
			return err
		}
		b.rep.PrintScale(stdout)
	}
	b.rep.PrintTargets(stdout)
	return nil
}

func (b *bench) build(ctx context.Context, out, pkg string) error {
	args := []string{"build", "-o", out, pkg}
	b.rep.Commands = append(b.rep.Commands, "go "+strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = b.cfg.RepoDir
	cmd.Stdout, cmd.Stderr = b.log, b.log
	_, _ = fmt.Fprintf(b.log, "bench: go %s\n", strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", pkg, err)
	}
	return nil
}

func (b *bench) variants() []string {
	var vs []string
	if b.cfg.Has(PhaseFarm) {
		vs = append(vs, VariantFarm)
	}
	if b.cfg.Has(PhaseRaw) {
		vs = append(vs, VariantRaw)
	}
	if b.cfg.Has(PhaseExtra) {
		vs = append(vs, VariantRawSep, VariantRawConfirm)
	}
	return vs
}

func (b *bench) countSteps() {
	if b.cfg.Has(PhaseFarm) || b.cfg.Has(PhaseRaw) || b.cfg.Has(PhaseExtra) {
		b.steps += len(b.cfg.Concurrency) * b.cfg.Runs * len(b.variants())
	}
	if b.cfg.Has(PhaseScale) {
		b.steps += len(b.cfg.ScaleWorkers) * b.cfg.ScaleRuns
	}
}

const (
	rawQueue    = "bench.raw"
	rawSepQueue = "bench.raw.sep"
)

// compare runs the /process comparison: every variant at every concurrency,
// alternating runs.
func (b *bench) compare(ctx context.Context, farmCfg FarmConfig) error {
	cfg := b.cfg
	var farm *Farm
	if cfg.Has(PhaseFarm) {
		settings := "default settings"
		if len(cfg.FarmEnv) > 0 {
			settings = strings.Join(cfg.FarmEnv, " ")
		}
		_, _ = fmt.Fprintf(b.log, "bench: starting bin/api and %d bin/worker (%s)\n", cfg.Workers, settings)
		var err error
		if farm, err = StartFarm(ctx, farmCfg, cfg.Workers); err != nil {
			return fmt.Errorf("start farm: %w", err)
		}
		defer farm.Stop()
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

	for _, c := range cfg.Concurrency {
		row := &CompareRow{Concurrency: c, Variants: map[string]*Summary{}}
		b.rep.Compare = append(b.rep.Compare, row)
		for run := 1; run <= cfg.Runs; run++ {
			for _, v := range b.variants() {
				var res *Result
				var err error
				switch v {
				case VariantFarm:
					res, err = b.runFarm(ctx, farm, c)
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
				b.progress(fmt.Sprintf("%-11s c=%-3d run %d/%d", v, c, run, cfg.Runs), res)
			}
		}
	}
	return nil
}

// scale runs the scaling phase: workers with a model service time, added
// step by step, each count measured at ScaleFactor × N.
func (b *bench) scale(ctx context.Context, farmCfg FarmConfig) error {
	cfg := b.cfg
	workers := slices.Sorted(slices.Values(cfg.ScaleWorkers))
	farmCfg.WorkerEnv = []string{"MODEL_LATENCY=" + cfg.ScaleLatency.String(), "CONCURRENCY=1"}
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
			res, err := b.runFarm(ctx, farm, c)
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
		line += fmt.Sprintf("  cpu %.2f cores", r.CPU.Machine)
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

func (b *bench) runFarm(ctx context.Context, farm *Farm, c int) (*Result, error) {
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
	res, err := RunClosedLoop(ctx, b.loopConfig(c, s, &usage), ProcessCaller(tr, farm.BaseURL+"/process"))
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
