package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report holds everything the benchmark prints.
type Report struct {
	Cfg      *Config
	Sys      SysInfo
	Vhost    string
	Commands []string
	Compare  []*CompareRow
	Scale    []*ScaleRow
	// Baseline describes the -baseline-rev build ("" without one).
	Baseline string
	// OTel is what the farm-otel variant exported (nil without -otel).
	OTel  *OTelStats
	Async []*AsyncRun
	// Digits is the digits phase (nil when not run).
	Digits *DigitsRun
	// Batch is the batch phase (nil when not run).
	Batch *BatchRun
	// Ablation is the ablation phase (nil when not run).
	Ablation *AblationRun
}

// OTelStats is what the farm-otel variant's processes exported.
type OTelStats struct {
	Endpoint string
	Sink     SinkStats
	// Requests is the successful /process calls to farm-otel, warm-ups
	// included.
	Requests int64
}

// farmVariants are the variants that are a running farm.
var farmVariants = []string{VariantFarm, VariantFarmBaseline, VariantFarmOTel}

// allVariants in table order.
var allVariants = []string{VariantFarm, VariantFarmV2, VariantFarmBaseline, VariantFarmOTel, VariantRaw, VariantRawSep, VariantRawConfirm}

// CompareRow holds the runs of every variant at one concurrency.
type CompareRow struct {
	Concurrency int
	Variants    map[string]*Summary // by Variant*
}

// ScaleRow holds the runs at one worker count.
type ScaleRow struct {
	Workers     int
	Concurrency int
	Sum         *Summary
	// Ideal is N × CONCURRENCY / MODEL_LATENCY in requests per second.
	Ideal float64
}

// Efficiency is the measured rate over the ideal one.
func (r *ScaleRow) Efficiency() float64 {
	if r.Ideal == 0 {
		return 0
	}
	return r.Sum.RPS() / r.Ideal
}

var variantTitle = map[string]string{
	VariantFarm:         "farm /process",
	VariantRaw:          "raw",
	VariantRawSep:       "raw, responders in a separate process",
	VariantRawConfirm:   "raw, publisher confirms on",
	VariantFarmBaseline: "farm /process, baseline build",
	VariantFarmOTel:     "farm /process, tracing exported",
	VariantFarmV2:       "farm /v2/models/seed/infer",
}

// fmtRate formats a rate with thousands separators ("12,345").
func fmtRate(x float64) string {
	if x >= 100 {
		return thousands(int64(math.Round(x)))
	}
	return strconv.FormatFloat(x, 'f', 1, 64)
}

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	var sb strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			sb.WriteByte(',')
		}
		sb.WriteRune(c)
	}
	return sb.String()
}

// fmtDur formats a latency in milliseconds.
func fmtDur(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case d == 0:
		return "-"
	case ms < 10:
		return strconv.FormatFloat(ms, 'f', 2, 64) + "ms"
	case ms < 100:
		return strconv.FormatFloat(ms, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
}

func fmtRatio(x float64) string {
	if x == 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return "-"
	}
	return strconv.FormatFloat(x, 'f', 2, 64) + "×"
}

func fmtFailures(f map[string]int) string {
	if len(f) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range sortedKeys(f) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, f[k]))
	}
	return strings.Join(parts, " ")
}

// PrintHeader prints the machine and the method.
func (r *Report) PrintHeader(w io.Writer) {
	s, c := r.Sys, r.Cfg
	rmq := s.RabbitMQVersion
	if rmq == "" {
		rmq = "unknown"
	}
	if s.ErlangVersion != "" {
		rmq += " (Erlang " + s.ErlangVersion + ")"
	}
	p := func(format string, a ...any) { _, _ = fmt.Fprintf(w, format+"\n", a...) }
	p("warren benchmark, %s", s.Date.Format("2006-01-02 15:04:05 MST"))
	p("machine    %s, %d cores (GOMAXPROCS %d), %s", s.CPUModel, s.Cores, s.GOMAXPROCS, s.Kernel)
	p("software   %s, RabbitMQ %s, %s", s.GoVersion, rmq, s.AMQPClient)
	p("broker     %s, temporary vhost %s", redact(c.AMQPURL), r.Vhost)
	p("args       %s", strings.Join(append([]string{"bench"}, c.Args...), " "))
	for _, cmd := range r.Commands {
		p("built      %s", cmd)
	}
	if r.Baseline != "" {
		p("baseline   %s", r.Baseline)
	}
	if s.BackgroundLoad >= 0 {
		p("idle load  %.2f cores busy before the first run (other processes on the machine)", s.BackgroundLoad)
	}
	if c.Has(PhaseFarm) || c.Has(PhaseRaw) || c.Has(PhaseExtra) || c.Has(PhaseV2) || c.Has(PhaseScale) || c.Has(PhaseDigits) {
		p("method     closed loop, keep-alive, %v warm-up, %v measured, median of %d alternating runs", c.Warmup, c.Duration, c.Runs)
	}
	if c.Has(PhaseAsync) {
		p("async      %s jobs per store (%s), %d concurrent submitters, then %d long-pollers", thousands(int64(c.AsyncJobs)),
			strings.Join(c.AsyncStores, ", "), c.AsyncSubmitters, c.AsyncPollers)
	}
	p("")
}

func (r *Report) rowSum(c int, v string) *Summary {
	for _, row := range r.Compare {
		if row.Concurrency == c {
			return row.Variants[v]
		}
	}
	return nil
}

// PrintCompare prints the /process comparison, the extra rows, the CPU
// breakdown and the failures.
func (r *Report) PrintCompare(w io.Writer) {
	c := r.Cfg
	p := func(format string, a ...any) { _, _ = fmt.Fprintf(w, format+"\n", a...) }
	p("/process vs raw amqp091-go RPC")
	settings := "default settings"
	if len(c.FarmEnv) > 0 {
		settings = "settings " + strings.Join(c.FarmEnv, " ") + " (NOT the defaults)"
	}
	p("  farm: bin/api + %d × bin/worker (MODELS=%s), %s, POST /process {\"data\": \"<distinct>\", \"forward_to_model\": true}", c.Workers, seedModel, settings)
	p("  raw:  direct reply-to, %d responders in this process (prefetch %d), %d client connections, no confirms", c.RawResponders, c.RawPrefetch, c.RawConns)
	p("")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "conc\tfarm req/s\tp50\tp99\t\traw req/s\tp50\tp99\t\tfarm/raw req/s\tp99 farm/raw\t")
	for _, row := range r.Compare {
		f, x := row.Variants[VariantFarm], row.Variants[VariantRaw]
		cols := []string{strconv.Itoa(row.Concurrency)}
		cols = append(cols, sumCols(f)...)
		cols = append(cols, "|")
		cols = append(cols, sumCols(x)...)
		cols = append(cols, "|")
		if !f.Empty() && !x.Empty() {
			cols = append(cols, fmtRatio(f.RPS()/x.RPS()), fmtRatio(float64(f.Percentile(99))/float64(x.Percentile(99))))
		} else {
			cols = append(cols, "-", "-")
		}
		_, _ = fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t")
	}
	_ = tw.Flush()
	p("")

	if c.Has(PhaseExtra) {
		p("extra raw rows (same broker, same windows, alternating with the rows above)")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		_, _ = fmt.Fprintln(tw, "variant\tconc\treq/s\tp50\tp99\tvs raw\tfarm/variant req/s\t")
		for _, v := range []string{VariantRaw, VariantRawSep, VariantRawConfirm} {
			for _, row := range r.Compare {
				s := row.Variants[v]
				if s.Empty() {
					continue
				}
				vsRaw, farmRatio := "-", "-"
				if x := row.Variants[VariantRaw]; !x.Empty() {
					vsRaw = fmtRatio(s.RPS() / x.RPS())
				}
				if f := row.Variants[VariantFarm]; !f.Empty() {
					farmRatio = fmtRatio(f.RPS() / s.RPS())
				}
				cols := append([]string{variantTitle[v], strconv.Itoa(row.Concurrency)}, sumCols(s)...)
				cols = append(cols, vsRaw, farmRatio)
				_, _ = fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t")
			}
		}
		_ = tw.Flush()
		p("")
	}

	p("CPU during the measured windows (cores busy, mean of runs; the machine has %d)", r.Sys.Cores)
	p("  bench = this process: the load generator (and, for raw rows, the in-process responders);")
	p("  softirq = kernel interrupt work charged to no process (mostly loopback TCP);")
	p("  other = everything else on the machine (idle farm or responders, other users' jobs)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "variant\tconc\tbench\tapi\tworkers\tresponder\tbroker\tsoftirq\tother\tmachine\tCPU µs/req\t")
	for _, v := range allVariants {
		for _, row := range r.Compare {
			s := row.Variants[v]
			u := s.CPU()
			if u == nil {
				continue
			}
			cols := append([]string{v, strconv.Itoa(row.Concurrency)},
				u.columns("bench", "api", "workers", "responder", "broker")...)
			if rps := s.RPS(); rps > 0 {
				cols = append(cols, strconv.FormatFloat(u.Machine/rps*1e6, 'f', 0, 64))
			} else {
				cols = append(cols, "-")
			}
			_, _ = fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t")
		}
	}
	_ = tw.Flush()
	if r.OTel != nil {
		p("  farm-otel: the OTLP sink runs in the bench process, so its CPU is in the bench column")
	}
	p("")

	var fails []string
	for _, row := range r.Compare {
		for _, v := range allVariants {
			if s := row.Variants[v]; !s.Empty() && len(s.Failures()) > 0 {
				fails = append(fails, fmt.Sprintf("  %s c=%d: %s (successes %d)", v, row.Concurrency, fmtFailures(s.Failures()), s.OK()))
			}
		}
	}
	if len(fails) == 0 {
		p("failures (non-200 answers, transport errors) in the measured windows: none")
	} else {
		p("failures (non-200 answers, transport errors) in the measured windows, all runs:")
		for _, f := range fails {
			p("%s", f)
		}
	}
	p("")
}

func sumCols(s *Summary) []string {
	if s.Empty() {
		return []string{"-", "-", "-"}
	}
	return []string{fmtRate(s.RPS()), fmtDur(s.Percentile(50)), fmtDur(s.Percentile(99))}
}

// PrintScale prints the scaling table.
func (r *Report) PrintScale(w io.Writer) {
	c := r.Cfg
	p := func(format string, a ...any) { _, _ = fmt.Fprintf(w, format+"\n", a...) }
	p("scaling: MODEL_LATENCY=%v, CONCURRENCY=1, closed loop at %d × N, %v measured, median of %d run(s)", c.ScaleLatency, c.ScaleFactor, c.Duration, c.ScaleRuns)
	p("  ideal = N × CONCURRENCY / MODEL_LATENCY; efficiency = req/s ÷ ideal; vs N×1 = req/s ÷ (N × req/s at the first N)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "workers\tconc\treq/s\tideal\tefficiency\tvs N×1\tp50\tp99\tfailures\t")
	var base float64
	for i, row := range r.Scale {
		rps := row.Sum.RPS()
		if i == 0 && row.Workers > 0 {
			base = rps / float64(row.Workers)
		}
		vs := "-"
		if base > 0 {
			vs = strconv.FormatFloat(rps/(base*float64(row.Workers)), 'f', 2, 64)
		}
		_, _ = fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%.3f\t%s\t%s\t%s\t%s\t\n", row.Workers, row.Concurrency, fmtRate(rps),
			fmtRate(row.Ideal), row.Efficiency(), vs, fmtDur(row.Sum.Percentile(50)), fmtDur(row.Sum.Percentile(99)),
			fmtFailures(row.Sum.Failures()))
	}
	_ = tw.Flush()
	p("")
}

// Target is one verdict of the targets.
type Target struct {
	Name   string
	Status string // PASS, MISS, or NotMeasured when its data points were not measured
	Detail string
}

// NotMeasured is the status of a target whose data points the run did not measure;
// its Detail starts with "not measured" and says why.
const NotMeasured = "n/a"

// scaleTargetWorkers is the worker count the scaling target is stated for.
const scaleTargetWorkers = 32

// notMeasuredCompare says why the /process comparison has no row of phases at
// concurrency c.
func (r *Report) notMeasuredCompare(c int, phases ...string) string {
	cfg := r.Cfg
	for _, p := range phases {
		if !cfg.Has(p) && (p != PhaseFarm || !cfg.Has(PhaseV2)) { // v2 runs the farm's /process too
			return fmt.Sprintf("not measured: -phases %s leaves out the %s phase", strings.Join(cfg.Phases, ","), p)
		}
	}
	if !slices.Contains(cfg.Concurrency, c) {
		return fmt.Sprintf("not measured: -concurrency %s has no %d", (*intList)(&cfg.Concurrency).String(), c)
	}
	return "not measured"
}

// notMeasuredScale says why the scaling phase did not reach scaleTargetWorkers.
func (r *Report) notMeasuredScale() string {
	cfg := r.Cfg
	if !cfg.Has(PhaseScale) {
		return fmt.Sprintf("not measured: -phases %s leaves out the scale phase", strings.Join(cfg.Phases, ","))
	}
	top := 0
	for _, row := range r.Scale {
		top = max(top, row.Workers)
	}
	for _, n := range cfg.ScaleWorkers {
		top = max(top, n)
	}
	if cfg.Quick && slices.Equal(cfg.ScaleWorkers, quickScaleWorkers) {
		return fmt.Sprintf("not measured: -quick stops at %d workers (run without -quick for %d)", top, scaleTargetWorkers)
	}
	return fmt.Sprintf("not measured: -scale-workers %s stops at %d workers", (*intList)(&cfg.ScaleWorkers).String(), top)
}

// Targets evaluates the targets on what was measured.
func (r *Report) Targets() []Target {
	var ts []Target
	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "MISS"
	}
	f64, x64 := r.rowSum(64, VariantFarm), r.rowSum(64, VariantRaw)
	t := Target{Name: "farm ≥ 0.5× raw req/s at concurrency 64", Status: NotMeasured, Detail: r.notMeasuredCompare(64, PhaseFarm, PhaseRaw)}
	if !f64.Empty() && !x64.Empty() {
		ratio := f64.RPS() / x64.RPS()
		t.Status = verdict(ratio >= 0.5)
		t.Detail = fmt.Sprintf("%s (farm %s vs raw %s req/s)", fmtRatio(ratio), fmtRate(f64.RPS()), fmtRate(x64.RPS()))
	}
	ts = append(ts, t)

	t = Target{Name: "farm CPU per request ≤ 2.5× the raw loop's at concurrency 64", Status: NotMeasured, Detail: r.notMeasuredCompare(64, PhaseFarm, PhaseRaw)}
	if fc, xc := ownCPUPerReq(f64), ownCPUPerReq(x64); fc > 0 && xc > 0 {
		t.Status = verdict(fc/xc <= 2.5)
		t.Detail = fmt.Sprintf("%s (%.0f vs %.0f µs of CPU per request: the whole machine's but other processes', load generator and broker included)",
			fmtRatio(fc/xc), fc*1e6, xc*1e6)
	}
	ts = append(ts, t)

	f16, x16 := r.rowSum(16, VariantFarm), r.rowSum(16, VariantRaw)
	t = Target{Name: "p99 at concurrency 16 ≤ 2× the raw loop's p99", Status: NotMeasured, Detail: r.notMeasuredCompare(16, PhaseFarm, PhaseRaw)}
	if !f16.Empty() && !x16.Empty() {
		ratio := float64(f16.Percentile(99)) / float64(x16.Percentile(99))
		t.Status = verdict(ratio <= 2)
		t.Detail = fmt.Sprintf("%s (farm %s vs raw %s)", fmtRatio(ratio), fmtDur(f16.Percentile(99)), fmtDur(x16.Percentile(99)))
	}
	ts = append(ts, t)

	t = Target{Name: "p99 at concurrency 16 under 15 ms", Status: NotMeasured, Detail: r.notMeasuredCompare(16, PhaseFarm)}
	if !f16.Empty() {
		p99 := f16.Percentile(99)
		t.Status = verdict(p99 < 15*time.Millisecond)
		t.Detail = "farm p99 " + fmtDur(p99)
	}
	ts = append(ts, t)

	// The target is stated for N up to 32: without N=32 measured it has no verdict
	// (a -quick run stops at 4 workers), only what the measured counts showed.
	t = Target{Name: fmt.Sprintf("scaling ≥ 0.9× linear up to %d workers", scaleTargetWorkers), Status: NotMeasured, Detail: r.notMeasuredScale()}
	var worst, top *ScaleRow
	for _, row := range r.Scale {
		if worst == nil || row.Efficiency() < worst.Efficiency() {
			worst = row
		}
		if top == nil || row.Workers > top.Workers {
			top = row
		}
	}
	if worst != nil {
		measured := fmt.Sprintf("lowest efficiency %.3f at N=%d; N=%d: %s of %s req/s", worst.Efficiency(), worst.Workers,
			top.Workers, fmtRate(top.Sum.RPS()), fmtRate(top.Ideal))
		if top.Workers >= scaleTargetWorkers {
			t.Status, t.Detail = verdict(worst.Efficiency() >= 0.9), measured
		} else {
			t.Detail += "; measured up to N=" + strconv.Itoa(top.Workers) + ": " + measured
		}
	}
	ts = append(ts, t)

	if r.HasObservability() {
		for _, row := range r.Compare {
			f, bl := row.Variants[VariantFarm], row.Variants[VariantFarmBaseline]
			if f.Empty() || bl.Empty() {
				continue
			}
			// The paired median over quiet pairs when there are at least 3,
			// else over all pairs.
			pr, which := quietRunRatios(f, bl), "quiet pairs"
			if len(pr) < 3 {
				pr, which = perRunRatios(f, bl), "all pairs"
			}
			ratio := Median(pr)
			ts = append(ts, Target{
				Name:   fmt.Sprintf("tracing off: farm ≥ 0.97× farm-baseline (%s) req/s at concurrency %d", shortRev(r.Baseline), row.Concurrency),
				Status: verdict(ratio >= 0.97),
				Detail: fmt.Sprintf("%s, paired median of %d %s [%s] (medians: farm %s vs baseline %s req/s; p99 %s vs %s; farm µs/req %s vs %s)",
					fmtRatio(ratio), len(pr), which, fmtRange(pr), fmtRate(f.RPS()), fmtRate(bl.RPS()),
					fmtDur(f.Percentile(99)), fmtDur(bl.Percentile(99)), farmCPUPerReq(f), farmCPUPerReq(bl)),
			})
		}
		if o := r.OTel; o != nil {
			ts = append(ts, Target{
				Name:   "farm-otel exported its spans to the sink",
				Status: verdict(o.Sink.Spans > 0 && o.Sink.Bad == 0),
				Detail: fmt.Sprintf("%s spans in %s requests, %d refused", thousands(o.Sink.Spans), thousands(o.Sink.Requests), o.Sink.Bad),
			})
		}
	}

	ts = append(ts, r.v2Targets(verdict)...)
	ts = append(ts, r.digitsTargets(verdict)...)

	for _, a := range r.Async {
		if a.Variant == VariantFarmBaseline {
			continue // the baseline's runs count only in the ratio below
		}
		ts = append(ts, Target{
			Name:   fmt.Sprintf("async (%s): submit ≥ 2,000 jobs/s", a.Label()),
			Status: verdict(a.SubmitRate() >= 2000),
			Detail: fmt.Sprintf("%s jobs/s (%s jobs in %ss, p99 %s)", fmtRate(a.SubmitRate()), thousands(int64(a.Submitted)), fmtSecs(a.SubmitTime),
				fmtDur(Percentile(a.SubmitLat, 99))),
		})
		ts = append(ts, Target{
			Name: fmt.Sprintf("async (%s): completion ≥ 0.9 × %d workers × JOB_CONCURRENCY %d / %v = %s jobs/s",
				a.Label(), a.Workers, a.JobConcurrency, a.Latency, fmtRate(a.Target())),
			Status: verdict(a.CompletionRate() >= a.Target()),
			Detail: fmt.Sprintf("%s jobs/s (%.3f of ideal; all final after %ss)", fmtRate(a.CompletionRate()),
				a.CompletionRate()/a.Ideal(), fmtSecs(a.AllFinal)),
		})
	}
	for _, a := range r.Async {
		ts = append(ts, Target{
			Name:   fmt.Sprintf("async (%s): every job accepted and succeeded", a.Label()),
			Status: verdict(a.SubmitFailed() == 0 && a.NotSucceeded() == 0 && a.Submitted == a.Jobs),
			Detail: fmt.Sprintf("%s of %s succeeded; submit failures %s; not succeeded %d", thousands(int64(a.Succeeded())),
				thousands(int64(a.Jobs)), fmtFailures(a.SubmitFailures), a.NotSucceeded()),
		})
	}
	ts = append(ts, r.asyncBaselineTargets(verdict)...)
	return ts
}

// PrintTargets prints the verdicts.
func (r *Report) PrintTargets(w io.Writer) {
	_, _ = fmt.Fprintln(w, "targets")
	for _, t := range r.Targets() {
		_, _ = fmt.Fprintf(w, "  [%-4s] %s: %s\n", t.Status, t.Name, t.Detail)
	}
}

// HasObservability reports whether the comparison has a farm-baseline or a
// farm-otel variant.
func (r *Report) HasObservability() bool {
	for _, row := range r.Compare {
		if !row.Variants[VariantFarmBaseline].Empty() || !row.Variants[VariantFarmOTel].Empty() {
			return true
		}
	}
	return false
}

// perRunRatios returns a's i-th run's rate over b's i-th run's rate, for the
// runs both have: runs with the same index ran back to back.
func perRunRatios(a, b *Summary) []float64 {
	if a.Empty() || b.Empty() {
		return nil
	}
	var out []float64
	for i := 0; i < len(a.Runs) && i < len(b.Runs); i++ {
		if y := b.Runs[i].RPS(); y > 0 {
			out = append(out, a.Runs[i].RPS()/y)
		}
	}
	return out
}

// quietOther is the most CPU other processes may have used (cores) during both
// runs of a pair for the pair to count as quiet.
const quietOther = 0.10

// quietRunRatios is perRunRatios restricted to the pairs in which other
// processes on the machine used less than quietOther cores during both runs.
func quietRunRatios(a, b *Summary) []float64 {
	if a.Empty() || b.Empty() {
		return nil
	}
	var out []float64
	for i := 0; i < len(a.Runs) && i < len(b.Runs); i++ {
		ra, rb := a.Runs[i], b.Runs[i]
		if ra.CPU == nil || rb.CPU == nil || ra.CPU.Other() >= quietOther || rb.CPU.Other() >= quietOther {
			continue
		}
		if y := rb.RPS(); y > 0 {
			out = append(out, ra.RPS()/y)
		}
	}
	return out
}

// fmtRange formats the smallest and largest ratio ("0.97–1.02×").
func fmtRange(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	lo, hi := slices.Min(xs), slices.Max(xs)
	return strconv.FormatFloat(lo, 'f', 2, 64) + "–" + strconv.FormatFloat(hi, 'f', 2, 64) + "×"
}

func cpuPerReq(s *Summary) string {
	u := s.CPU()
	if u == nil || s.RPS() <= 0 {
		return "-"
	}
	return strconv.FormatFloat(u.Machine/s.RPS()*1e6, 'f', 0, 64)
}

func cpuGroup(s *Summary, g string) string {
	u := s.CPU()
	if u == nil {
		return "-"
	}
	x, ok := u.Cores[g]
	if !ok {
		return "-"
	}
	return strconv.FormatFloat(x, 'f', 2, 64)
}

// shortRev is the commit id at the start of a Revision.Describe text.
func shortRev(desc string) string {
	rev, _, _ := strings.Cut(desc, " ")
	return rev
}

// ownCPUPerReq is the CPU per request in seconds of everything a variant runs
// (load generator, farm or responders, broker, interrupts), that is the machine's
// minus other processes'; 0 when not sampled.
func ownCPUPerReq(s *Summary) float64 {
	if s.Empty() {
		return 0
	}
	u := s.CPU()
	if u == nil || s.RPS() <= 0 {
		return 0
	}
	return (u.Machine - u.Other()) / s.RPS()
}

// farmCPU is the CPU of the farm's processes (api + workers) per request in
// seconds, or 0 when not sampled.
func farmCPU(s *Summary) float64 {
	u := s.CPU()
	if u == nil || s.RPS() <= 0 {
		return 0
	}
	return (u.Cores["api"] + u.Cores["workers"]) / s.RPS()
}

func farmCPUPerReq(s *Summary) string {
	if x := farmCPU(s); x > 0 {
		return strconv.FormatFloat(x*1e6, 'f', 0, 64)
	}
	return "-"
}

// PrintObservability prints the current farm against the baseline build and
// against itself with tracing exported.
func (r *Report) PrintObservability(w io.Writer) {
	c := r.Cfg
	p := func(format string, a ...any) { _, _ = fmt.Fprintf(w, format+"\n", a...) }
	if r.OTel != nil {
		p("observability overhead on /process (same windows, alternating with the rows above)")
	} else {
		p("/process: this build against the baseline build (same windows, alternating with the rows above)")
	}
	p("  farm:          bin/api + %d × bin/worker, this build, tracing off (no OTEL_* variable set)", c.Workers)
	if r.Baseline != "" {
		p("  farm-baseline: the same from %s", r.Baseline)
	}
	if r.OTel != nil {
		p("  farm-otel:     this build with OTEL_EXPORTER_OTLP_ENDPOINT=%s: an OTLP/HTTP sink in the bench that", r.OTel.Endpoint)
		p("                 answers 200 with an empty body and counts spans; SDK defaults otherwise (batch 512, queue 2048, 5 s)")
	}
	p("  farm µs/req = CPU of the farm's own processes (api + workers) per request; CPU µs/req = the whole machine's")
	p("")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "conc\tvariant\treq/s\tp50\tp99\tapi cores\tworkers cores\tfarm µs/req\tCPU µs/req\t")
	for _, row := range r.Compare {
		for _, v := range farmVariants {
			s := row.Variants[v]
			if s.Empty() {
				continue
			}
			cols := append([]string{strconv.Itoa(row.Concurrency), v}, sumCols(s)...)
			cols = append(cols, cpuGroup(s, "api"), cpuGroup(s, "workers"), farmCPUPerReq(s), cpuPerReq(s))
			_, _ = fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t")
		}
	}
	_ = tw.Flush()
	p("")
	p("  req/s: ratio of the medians; paired = median [range] of the per-run ratios (run i of one variant against run i")
	p("  of the other, measured in the same round); quiet = the same over the pairs in which other processes on the")
	p("  machine used under %.2f cores during both runs (n = pairs); p50, p99: ratios of the medians; farm µs/req: of the means", quietOther)
	type pairing struct {
		title string
		a, b  string // variants: a's req/s over b's
	}
	var pairs []pairing
	for _, pr := range []pairing{{"farm/baseline", VariantFarm, VariantFarmBaseline}, {"otel/farm", VariantFarmOTel, VariantFarm}} {
		for _, row := range r.Compare {
			if !row.Variants[pr.a].Empty() && !row.Variants[pr.b].Empty() {
				pairs = append(pairs, pr)
				break
			}
		}
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"conc"}
	for i, pr := range pairs {
		if i > 0 {
			head = append(head, "")
		}
		head = append(head, pr.title+" req/s", "paired", "", "quiet", "n", "p50", "p99", "farm µs/req")
	}
	_, _ = fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, row := range r.Compare {
		cols := []string{strconv.Itoa(row.Concurrency)}
		for i, pr := range pairs {
			if i > 0 {
				cols = append(cols, "|")
			}
			a, b := row.Variants[pr.a], row.Variants[pr.b]
			if a.Empty() || b.Empty() {
				cols = append(cols, "-", "-", "-", "-", "-", "-", "-", "-")
				continue
			}
			rr, qr := perRunRatios(a, b), quietRunRatios(a, b)
			cols = append(cols, fmtRatio(a.RPS()/b.RPS()), fmtRatio(Median(rr)), "["+fmtRange(rr)+"]",
				fmtRatio(Median(qr)), strconv.Itoa(len(qr)),
				fmtRatio(float64(a.Percentile(50))/float64(b.Percentile(50))),
				fmtRatio(float64(a.Percentile(99))/float64(b.Percentile(99))),
				fmtRatio(farmCPU(a)/farmCPU(b)))
		}
		_, _ = fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t")
	}
	_ = tw.Flush()
	p("")
	if o := r.OTel; o != nil {
		s := o.Sink
		p("spans exported by farm-otel (counted after its processes stopped and flushed):")
		p("  %s spans in %s POST /v1/traces (%.1f MB), %d requests refused", thousands(s.Spans), thousands(s.Requests), float64(s.Bytes)/1e6, s.Bad)
		if o.Requests > 0 {
			var parts []string
			for _, k := range sortedKeys(s.ByService) {
				parts = append(parts, fmt.Sprintf("%s %.2f", k, float64(s.ByService[k])/float64(o.Requests)))
			}
			p("  per successful /process call (%s calls, warm-ups included): %.2f spans; by service.name: %s",
				thousands(o.Requests), float64(s.Spans)/float64(o.Requests), strings.Join(parts, ", "))
		}
		p("")
	}
}

// columns renders u as table cells: the cores of each group ("-" when the group was
// not measured), then softirq, other (the machine minus all that) and the machine.
func (u *CPUUsage) columns(groups ...string) []string {
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) }
	var cols []string
	known := 0.0
	for _, g := range groups {
		if x, ok := u.Cores[g]; ok {
			known += x
			cols = append(cols, f(x))
		} else {
			cols = append(cols, "-")
		}
	}
	return append(cols, f(u.IRQ), f(max(0, u.Machine-known-u.IRQ)), f(u.Machine))
}
