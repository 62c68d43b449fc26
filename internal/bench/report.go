package bench

import (
	"fmt"
	"io"
	"math"
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
}

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
	VariantFarm:       "farm /process",
	VariantRaw:        "raw",
	VariantRawSep:     "raw, responders in a separate process",
	VariantRawConfirm: "raw, publisher confirms on",
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
	if s.BackgroundLoad >= 0 {
		p("idle load  %.2f cores busy before the first run (other processes on the machine)", s.BackgroundLoad)
	}
	p("method     closed loop, keep-alive, %v warm-up, %v measured, median of %d alternating runs", c.Warmup, c.Duration, c.Runs)
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
	p("  farm: bin/api + %d × bin/worker, %s, POST /process {\"data\": \"<distinct>\", \"forward_to_model\": true}", c.Workers, settings)
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
	for _, v := range []string{VariantFarm, VariantRaw, VariantRawSep, VariantRawConfirm} {
		for _, row := range r.Compare {
			s := row.Variants[v]
			u := s.CPU()
			if u == nil {
				continue
			}
			cols := []string{v, strconv.Itoa(row.Concurrency)}
			known := 0.0
			for _, g := range []string{"bench", "api", "workers", "responder", "broker"} {
				if x, ok := u.Cores[g]; ok {
					known += x
					cols = append(cols, strconv.FormatFloat(x, 'f', 2, 64))
				} else {
					cols = append(cols, "-")
				}
			}
			cols = append(cols, strconv.FormatFloat(u.IRQ, 'f', 2, 64),
				strconv.FormatFloat(max(0, u.Machine-known-u.IRQ), 'f', 2, 64))
			cols = append(cols, strconv.FormatFloat(u.Machine, 'f', 2, 64))
			if rps := s.RPS(); rps > 0 {
				cols = append(cols, strconv.FormatFloat(u.Machine/rps*1e6, 'f', 0, 64))
			} else {
				cols = append(cols, "-")
			}
			_, _ = fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t")
		}
	}
	_ = tw.Flush()
	p("")

	var fails []string
	for _, row := range r.Compare {
		for _, v := range []string{VariantFarm, VariantRaw, VariantRawSep, VariantRawConfirm} {
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
	Status string // PASS, MISS or "n/a" when not measured
	Detail string
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
	t := Target{Name: "farm ≥ 0.5× raw req/s at concurrency 64", Status: "n/a", Detail: "not measured"}
	if !f64.Empty() && !x64.Empty() {
		ratio := f64.RPS() / x64.RPS()
		t.Status = verdict(ratio >= 0.5)
		t.Detail = fmt.Sprintf("%s (farm %s vs raw %s req/s)", fmtRatio(ratio), fmtRate(f64.RPS()), fmtRate(x64.RPS()))
	}
	ts = append(ts, t)

	f16, x16 := r.rowSum(16, VariantFarm), r.rowSum(16, VariantRaw)
	t = Target{Name: "p99 at concurrency 16 ≤ 2× the raw loop's p99", Status: "n/a", Detail: "not measured"}
	if !f16.Empty() && !x16.Empty() {
		ratio := float64(f16.Percentile(99)) / float64(x16.Percentile(99))
		t.Status = verdict(ratio <= 2)
		t.Detail = fmt.Sprintf("%s (farm %s vs raw %s)", fmtRatio(ratio), fmtDur(f16.Percentile(99)), fmtDur(x16.Percentile(99)))
	}
	ts = append(ts, t)

	t = Target{Name: "p99 at concurrency 16 under 15 ms", Status: "n/a", Detail: "not measured"}
	if !f16.Empty() {
		p99 := f16.Percentile(99)
		t.Status = verdict(p99 < 15*time.Millisecond)
		t.Detail = "farm p99 " + fmtDur(p99)
	}
	ts = append(ts, t)

	t = Target{Name: "scaling ≥ 0.9× linear up to 32 workers", Status: "n/a", Detail: "not measured"}
	if len(r.Scale) > 0 {
		worst := r.Scale[0]
		for _, row := range r.Scale {
			if row.Efficiency() < worst.Efficiency() {
				worst = row
			}
		}
		top := r.Scale[len(r.Scale)-1]
		t.Status = verdict(worst.Efficiency() >= 0.9 && top.Workers >= 32)
		t.Detail = fmt.Sprintf("lowest efficiency %.3f at N=%d; N=%d: %s of %s req/s", worst.Efficiency(), worst.Workers,
			top.Workers, fmtRate(top.Sum.RPS()), fmtRate(top.Ideal))
		if top.Workers < 32 {
			t.Detail += " (32 workers not measured)"
		}
	}
	ts = append(ts, t)
	return ts
}

// PrintTargets prints the verdicts.
func (r *Report) PrintTargets(w io.Writer) {
	_, _ = fmt.Fprintln(w, "targets")
	for _, t := range r.Targets() {
		_, _ = fmt.Fprintf(w, "  [%-4s] %s: %s\n", t.Status, t.Name, t.Detail)
	}
}
