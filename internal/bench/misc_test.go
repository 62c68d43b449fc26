package bench

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/config"
)

func TestCheckLoopbackURL(t *testing.T) {
	for _, u := range []string{
		"amqp://guest:guest@127.0.0.1:5672/", "amqp://localhost/", "http://[::1]:15672", "http://127.0.0.2:1",
	} {
		if err := checkLoopbackURL(u); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	for _, u := range []string{"amqp://10.0.0.1/", "http://example.com", "amqp://192.168.1.2:5672/"} {
		if err := checkLoopbackURL(u); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
}

func TestWithVhost(t *testing.T) {
	got, err := WithVhost("amqp://guest:guest@127.0.0.1:5672/", "warren-bench-1-ab")
	if err != nil || got != "amqp://guest:guest@127.0.0.1:5672/warren-bench-1-ab" {
		t.Errorf("got %q, %v", got, err)
	}
}

func TestParseFlags(t *testing.T) {
	cfg, err := ParseFlags([]string{"-quick", "-phases", "raw,scale", "-concurrency", "2,8"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Duration != 2*time.Second || cfg.Runs != 1 || len(cfg.ScaleWorkers) != 3 {
		t.Errorf("quick defaults not applied: %+v", cfg)
	}
	if !cfg.Has(PhaseRaw) || !cfg.Has(PhaseScale) || cfg.Has(PhaseFarm) {
		t.Errorf("phases %v", cfg.Phases)
	}
	if cfg.Concurrency[0] != 2 || cfg.Concurrency[1] != 8 {
		t.Errorf("concurrency %v", cfg.Concurrency)
	}
	cfg, err = ParseFlags([]string{"-quick", "-duration", "5s"}, io.Discard)
	if err != nil || cfg.Duration != 5*time.Second {
		t.Errorf("an explicit flag must win over -quick: %v %v", cfg.Duration, err)
	}
	for _, bad := range [][]string{
		{"-phases", "nope"}, {"-concurrency", "0"}, {"-runs", "0"}, {"-amqp-url", "amqp://10.1.2.3/"}, {"extra"},
	} {
		if _, err := ParseFlags(bad, io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestCPUSamplerSeesBusyProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	s := NewCPUSampler(map[string]func() []int{"self": func() []int { return []int{os.Getpid()} }})
	s.Start()
	end := time.Now().Add(300 * time.Millisecond)
	x := 0
	for time.Now().Before(end) {
		x++
	}
	u := s.Stop()
	if u.Cores["self"] < 0.3 || u.Cores["self"] > float64(runtime.NumCPU())+0.2 {
		t.Errorf("busy loop used %.2f cores, want about 1", u.Cores["self"])
	}
	if u.Machine < u.Cores["self"]-0.2 {
		t.Errorf("machine %.2f below the process's %.2f", u.Machine, u.Cores["self"])
	}
	_ = x
}

func TestProcStop(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	p, err := StartProc("sleeper", sleep, []string{"30"}, os.Environ(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.Stop(5 * time.Second)
	p.Stop(5 * time.Second) // idempotent
	select {
	case <-p.Done():
	default:
		t.Fatal("not exited after Stop")
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("SIGTERM took %v", time.Since(start))
	}
}

func TestReportTargets(t *testing.T) {
	res := func(rps float64, p99 time.Duration) *Summary {
		n := int(rps)
		r := &Result{Window: time.Second}
		for i := range n {
			d := time.Millisecond
			if i >= n*98/100 { // the slowest 2%: p99 lands on them
				d = p99
			}
			r.Latencies = append(r.Latencies, d)
		}
		return &Summary{Runs: []*Result{r}}
	}
	rep := &Report{Cfg: &Config{Phases: allPhases, ScaleLatency: 20 * time.Millisecond, ScaleFactor: 2, Runs: 1}}
	rep.Compare = []*CompareRow{
		{Concurrency: 16, Variants: map[string]*Summary{VariantFarm: res(4000, 12*time.Millisecond), VariantRaw: res(8000, 5*time.Millisecond)}},
		{Concurrency: 64, Variants: map[string]*Summary{VariantFarm: res(6000, 30*time.Millisecond), VariantRaw: res(10000, 20*time.Millisecond)}},
	}
	for _, n := range []int{1, 32} {
		rep.Scale = append(rep.Scale, &ScaleRow{Workers: n, Concurrency: 2 * n, Ideal: float64(n) * 50, Sum: res(float64(n)*48, 25*time.Millisecond)})
	}
	// CPU per request at 64: the farm's 1.8 cores minus 0.3 of other processes for
	// 6,000 req/s (250 µs) against the raw loop's 1.0 for 10,000 (100 µs): 2.5×.
	rep.Compare[1].Variants[VariantFarm].Runs[0].CPU = &CPUUsage{Machine: 1.8, IRQ: 0.1, Cores: map[string]float64{"api": 0.6, "workers": 0.3, "broker": 0.5}}
	rep.Compare[1].Variants[VariantRaw].Runs[0].CPU = &CPUUsage{Machine: 1.0, IRQ: 0.1, Cores: map[string]float64{"bench": 0.4, "broker": 0.5}}
	got := map[string]string{}
	for _, tg := range rep.Targets() {
		got[tg.Name] = tg.Status
	}
	want := map[string]string{
		"farm ≥ 0.5× raw req/s at concurrency 64":                      "PASS", // 0.6
		"p99 at concurrency 16 ≤ 2× the raw loop's p99":                "MISS", // 12 vs 5
		"p99 at concurrency 16 under 15 ms":                            "PASS",
		"scaling ≥ 0.9× linear up to 32 workers":                       "PASS", // 0.96
		"farm CPU per request ≤ 2.5× the raw loop's at concurrency 64": "PASS", // 2.5
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s, want %s", k, got[k], v)
		}
	}
	var sb strings.Builder
	rep.PrintCompare(&sb)
	rep.PrintScale(&sb)
	rep.PrintTargets(&sb)
	for _, s := range []string{"0.60×", "[PASS]", "[MISS]", "0.960", "2.50× (250 vs 100 µs"} {
		if !strings.Contains(sb.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, sb.String())
		}
	}
}

func TestListenerPids(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	port := ln.Addr().(*net.TCPAddr).Port
	pids := listenerPids(port)
	if len(pids) != 1 || pids[0] != os.Getpid() {
		t.Errorf("listenerPids(%d) = %v, want [%d]", port, pids, os.Getpid())
	}
	if got := amqpPort("amqp://guest:guest@127.0.0.1:5673/"); got != 5673 {
		t.Errorf("amqpPort = %d", got)
	}
	if got := amqpPort("amqp://localhost/"); got != 5672 {
		t.Errorf("amqpPort default = %d", got)
	}
}

func TestParseFlagsAsyncAndObservability(t *testing.T) {
	cfg, err := ParseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Has(PhaseAsync) || cfg.AsyncJobs != 10000 || cfg.AsyncWorkers != 2 || cfg.AsyncJobConcurrency != 4 ||
		cfg.AsyncLatency != 50*time.Millisecond || cfg.AsyncSubmitters != 64 || len(cfg.AsyncStores) != 1 || cfg.AsyncStores[0] != StoreBolt {
		t.Errorf("defaults: %+v", cfg)
	}
	cfg, err = ParseFlags([]string{"-phases", "farm,async", "-async-store", "both", "-baseline-rev", "HEAD~1", "-otel", "-quick"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.AsyncStores) != 2 || cfg.BaselineRev != "HEAD~1" || !cfg.OTel || cfg.AsyncJobs != 2000 {
		t.Errorf("parsed %+v", cfg)
	}
	// -baseline-rev runs the async phase with the baseline's binaries too.
	cfg, err = ParseFlags([]string{"-phases", "async", "-baseline-rev", "HEAD~1", "-async-runs", "3"}, io.Discard)
	if err != nil || cfg.AsyncRuns != 3 || cfg.BaselineRev != "HEAD~1" {
		t.Errorf("async with a baseline: %+v, %v", cfg, err)
	}
	for _, bad := range [][]string{
		{"-async-store", "sqlite"}, {"-async-jobs", "0"}, {"-async-latency", "0s"},
		{"-phases", "raw", "-otel"}, {"-phases", "raw", "-baseline-rev", "HEAD"}, {"-phases", "async", "-otel"},
		{"-phases", "async", "-async-runs", "0"},
		{"-phases", "async", "-async-store", "redis", "-redis-url", "redis://10.0.0.5:6379/0"},
	} {
		if _, err := ParseFlags(bad, io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// Every variable of the configuration table, and every OTEL_* variable, is
// the bench's to set: inherited values never reach the farm.
func TestFarmEnvDropsEveryConfigVar(t *testing.T) {
	for _, v := range config.All() {
		t.Setenv(v.Env, "inherited")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/v1/traces")
	t.Setenv("OTEL_TRACES_SAMPLER", "always_off")
	t.Setenv("WARREN_BENCH_UNRELATED", "kept")
	c := FarmConfig{AMQPURL: "amqp://127.0.0.1/v", ManagementURL: "http://127.0.0.1:15672"}
	env := c.env("127.0.0.1:1", []string{"MODEL_LATENCY=5ms"})
	got := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := got[k]; dup {
			t.Errorf("%s set twice", k)
		}
		got[k] = v
	}
	for k, v := range got {
		if v == "inherited" || strings.HasPrefix(k, "OTEL_") {
			t.Errorf("%s=%s reached the farm", k, v)
		}
	}
	if got["AMQP_URL"] != c.AMQPURL || got["HTTP_ADDR"] != "127.0.0.1:1" || got["MODEL_LATENCY"] != "5ms" || got["WARREN_BENCH_UNRELATED"] != "kept" {
		t.Errorf("env %v", got)
	}
	for _, k := range []string{"DATA_DIR", "REDIS_URL", "REDIS_PREFIX", "JOB_CONCURRENCY", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"} {
		if !controlled(k) {
			t.Errorf("%s not controlled", k)
		}
	}
}

func TestExtractTarRefusesEscapes(t *testing.T) {
	for _, name := range []string{"../evil", "/abs/evil", "a/../../evil"} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		_ = tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 1})
		_, _ = tw.Write([]byte("x"))
		_ = tw.Close()
		if err := extractTar(&buf, t.TempDir()); err == nil {
			t.Errorf("%q extracted", name)
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755})
	_ = tw.WriteHeader(&tar.Header{Name: "d/f.go", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3})
	_, _ = tw.Write([]byte("abc"))
	_ = tw.WriteHeader(&tar.Header{Name: "d/l", Typeflag: tar.TypeSymlink, Linkname: "f.go"})
	_ = tw.Close()
	dir := t.TempDir()
	if err := extractTar(&buf, dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "d", "l")); err != nil || string(b) != "abc" {
		t.Errorf("extracted %q, %v", b, err)
	}
}

// BuildRevision builds the binaries of a commit without touching the
// repository.
func TestBuildRevision(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries; runs without -short")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	wd, _ := os.Getwd()
	repo, err := findRepo(wd)
	if err != nil {
		t.Skip(err)
	}
	if err := exec.Command("git", "-C", repo, "rev-parse", "HEAD").Run(); err != nil {
		t.Skip("not a git checkout")
	}
	before, _ := exec.Command("git", "-C", repo, "worktree", "list", "--porcelain").Output()
	r, err := BuildRevision(context.Background(), repo, "HEAD", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		r.Remove()
		if _, err := os.Stat(r.Dir); !os.IsNotExist(err) {
			t.Errorf("%s left behind", r.Dir)
		}
	}()
	for _, bin := range []string{r.API, r.Worker} {
		out, err := exec.Command(bin, "config").Output()
		if err != nil || !strings.Contains(string(out), "AMQP_URL") {
			t.Errorf("%s config: %v\n%s", bin, err, out)
		}
	}
	if len(r.Commit) != 40 || !strings.Contains(r.Describe(), r.Commit[:7]) || len(r.Commands) != 2 {
		t.Errorf("revision %+v", r)
	}
	after, _ := exec.Command("git", "-C", repo, "worktree", "list", "--porcelain").Output()
	if !bytes.Equal(before, after) {
		t.Errorf("worktree list changed:\n%s\n%s", before, after)
	}
	if _, err := BuildRevision(context.Background(), repo, "no-such-revision-xyz", io.Discard); err == nil {
		t.Error("an unknown revision was built")
	}
}

func TestObservabilityReport(t *testing.T) {
	run := func(rps float64, api, workers float64) *Result {
		r := &Result{Window: time.Second, CPU: &CPUUsage{Cores: map[string]float64{"api": api, "workers": workers}, Machine: 1.9}}
		for range int(rps) {
			r.Latencies = append(r.Latencies, time.Millisecond)
		}
		return r
	}
	sum := func(rs ...*Result) *Summary { return &Summary{Runs: rs} }
	rep := &Report{Cfg: &Config{Workers: 2}, Baseline: `662c55d "x"`,
		OTel: &OTelStats{Endpoint: "http://127.0.0.1:1", Requests: 100, Sink: SinkStats{Requests: 2, Spans: 500, ByService: map[string]int64{"warren-api": 200, "warren-worker": 300}}}}
	rep.Compare = []*CompareRow{{Concurrency: 16, Variants: map[string]*Summary{
		// Paired ratios 1.00, 0.98, 1.20: median 1.00 although the medians' ratio is 0.98.
		VariantFarm:         sum(run(1000, 0.4, 0.3), run(980, 0.4, 0.3), run(1200, 0.4, 0.3)),
		VariantFarmBaseline: sum(run(1000, 0.4, 0.3), run(1000, 0.4, 0.3), run(1000, 0.4, 0.3)),
		VariantFarmOTel:     sum(run(800, 0.45, 0.35), run(800, 0.45, 0.35), run(800, 0.45, 0.35)),
	}}}
	if !rep.HasObservability() {
		t.Fatal("HasObservability false")
	}
	var status string
	for _, tg := range rep.Targets() {
		if strings.HasPrefix(tg.Name, "tracing off: farm ≥ 0.97× farm-baseline (662c55d) req/s at concurrency 16") {
			status = tg.Status + " " + tg.Detail
		}
	}
	if !strings.HasPrefix(status, "PASS 1.00×") {
		t.Errorf("tracing-off target: %s", status)
	}
	var sb strings.Builder
	rep.PrintObservability(&sb)
	for _, s := range []string{"0.80×", "[0.98–1.20×]", "1,000", "5.00 spans", "warren-api 2.00", "warren-worker 3.00", "700", "1000"} {
		if !strings.Contains(sb.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, sb.String())
		}
	}

	// Without -otel, no otel columns.
	delete(rep.Compare[0].Variants, VariantFarmOTel)
	rep.OTel = nil
	sb.Reset()
	rep.PrintObservability(&sb)
	if strings.Contains(sb.String(), "otel/farm") || !strings.Contains(sb.String(), "farm/baseline") {
		t.Errorf("baseline-only report:\n%s", sb.String())
	}
}

func TestQuietRunRatios(t *testing.T) {
	run := func(rps, other float64) *Result {
		r := &Result{Window: time.Second, CPU: &CPUUsage{Cores: map[string]float64{"api": 0.5, "broker": 0.5}, IRQ: 0.1, Machine: 1.1 + other}}
		for range int(rps) {
			r.Latencies = append(r.Latencies, time.Millisecond)
		}
		return r
	}
	a := &Summary{Runs: []*Result{run(100, 0), run(100, 0.5), run(100, 0.05), run(100, 0)}}
	b := &Summary{Runs: []*Result{run(50, 0), run(100, 0), run(200, 0), run(100, 0.3)}}
	got := quietRunRatios(a, b)
	if len(got) != 2 || got[0] != 2 || got[1] != 0.5 {
		t.Errorf("quiet ratios %v, want [2 0.5] (pairs 2 and 4 had other load)", got)
	}
	if all := perRunRatios(a, b); len(all) != 4 {
		t.Errorf("all ratios %v", all)
	}
}

// A target whose data points were not measured is "not measured", with the reason,
// never PASS or MISS: -quick stops scaling at 4 workers, so the 32-worker target is
// not measured (what the measured counts showed is in the detail).
func TestReportTargetsNotMeasured(t *testing.T) {
	scaleRows := func(eff map[int]float64) []*ScaleRow {
		var rows []*ScaleRow
		for _, n := range []int{1, 2, 4} {
			r := &Result{Window: time.Second}
			for range int(eff[n] * float64(n) * 50) {
				r.Latencies = append(r.Latencies, 20*time.Millisecond)
			}
			rows = append(rows, &ScaleRow{Workers: n, Concurrency: 2 * n, Ideal: float64(n) * 50, Sum: &Summary{Runs: []*Result{r}}})
		}
		return rows
	}
	target := func(rep *Report, prefix string) Target {
		t.Helper()
		for _, tg := range rep.Targets() {
			if strings.HasPrefix(tg.Name, prefix) {
				return tg
			}
		}
		t.Fatalf("no target %q", prefix)
		return Target{}
	}
	parse := func(args ...string) *Config {
		t.Helper()
		cfg, err := ParseFlags(args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	// -quick: scaling measured at 1, 2, 4 workers, all efficient.
	rep := &Report{Cfg: parse("-quick", "-phases", "scale"), Scale: scaleRows(map[int]float64{1: 0.98, 2: 0.96, 4: 0.95})}
	tg := target(rep, "scaling")
	if tg.Status != NotMeasured || !strings.HasPrefix(tg.Detail, "not measured: -quick stops at 4 workers") ||
		!strings.Contains(tg.Detail, "measured up to N=4") {
		t.Errorf("-quick scaling target: %+v", tg)
	}
	var sb strings.Builder
	rep.PrintTargets(&sb)
	if !strings.Contains(sb.String(), "[n/a ] scaling ≥ 0.9× linear up to 32 workers: not measured: -quick stops at 4 workers") {
		t.Errorf("printed targets:\n%s", sb.String())
	}
	for _, bad := range []string{"[MISS]", "[PASS]"} {
		if strings.Contains(sb.String(), bad) {
			t.Errorf("a -phases scale -quick run printed %s for a target it did not measure:\n%s", bad, sb.String())
		}
	}
	// The /process targets, whose phases did not run, say which phase is missing.
	for _, prefix := range []string{"farm ≥ 0.5× raw", "p99 at concurrency 16 ≤", "p99 at concurrency 16 under"} {
		if tg := target(rep, prefix); tg.Status != NotMeasured || !strings.Contains(tg.Detail, "-phases scale leaves out the farm phase") {
			t.Errorf("%s: %+v", prefix, tg)
		}
	}

	// A measured count below 0.9 is shown, but the verdict needs N=32.
	rep.Scale = scaleRows(map[int]float64{1: 0.98, 2: 0.80, 4: 0.95})
	if tg := target(rep, "scaling"); tg.Status != NotMeasured || !strings.Contains(tg.Detail, "lowest efficiency 0.800 at N=2") ||
		!strings.HasPrefix(tg.Detail, "not measured: -quick stops at 4 workers") {
		t.Errorf("scaling target with N=2 at 0.80: %+v", tg)
	}

	// Without -quick the reason names -scale-workers; without the phase, -phases.
	rep = &Report{Cfg: parse("-phases", "scale", "-scale-workers", "1,2,4"), Scale: scaleRows(map[int]float64{1: 1, 2: 1, 4: 1})}
	if tg := target(rep, "scaling"); tg.Status != NotMeasured || !strings.Contains(tg.Detail, "-scale-workers 1,2,4 stops at 4 workers") {
		t.Errorf("-scale-workers 1,2,4: %+v", tg)
	}
	rep = &Report{Cfg: parse("-phases", "farm,raw", "-concurrency", "1,16")}
	if tg := target(rep, "scaling"); tg.Status != NotMeasured || !strings.Contains(tg.Detail, "leaves out the scale phase") {
		t.Errorf("no scale phase: %+v", tg)
	}
	if tg := target(rep, "farm ≥ 0.5× raw"); tg.Status != NotMeasured || !strings.Contains(tg.Detail, "-concurrency 1,16 has no 64") {
		t.Errorf("no concurrency 64: %+v", tg)
	}
}
