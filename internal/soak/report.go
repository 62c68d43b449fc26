package soak

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Proc is the resource series of one process over its lifetime in the run.
type Proc struct {
	Name  string // "api", "worker-1", ...
	Pid   int
	Ended string // "ran to the end", "killed (SIGKILL) at 4m0s"
	// Series holds each Metric's samples by Metric.Name.
	Series map[string][]Point
	// SampleErrors counts samples that could not be read (a process that
	// just died, a /metrics that did not answer).
	SampleErrors int
}

// Lifetime is the span between the process's first and last sample.
func (p *Proc) Lifetime() (from, to time.Duration) {
	first := true
	for _, s := range p.Series {
		for _, pt := range s {
			if first || pt.At < from {
				from = pt.At
			}
			if first || pt.At > to {
				to = pt.At
			}
			first = false
		}
	}
	return from, to
}

// Jobs is what happened to the jobs submitted during the run.
type Jobs struct {
	Submitted int            // POST /jobs sent
	Accepted  int            // answered 202 with an id
	Final     map[string]int // final status -> jobs
	// Lost: accepted, never seen final by the end of the drain.
	Lost []string
	// Changed: seen final, and later read back with another status or
	// finished_at (two final states).
	Changed []string
}

// Report is the outcome of a soak run.
type Report struct {
	Command      string
	Machine      string
	Began        time.Time
	Duration     time.Duration // of the open-loop phase
	Warmup       time.Duration
	SampleEvery  time.Duration
	FaultEvery   time.Duration
	Grace        time.Duration
	ModelLatency time.Duration
	Workers      int

	CapacityRPS  float64 // closed loop, measured before the run
	CapacityConc int
	CapacityFail int
	SyncRate     float64 // /process calls per second
	JobRate      float64 // POST /jobs per second

	SyncSent, SyncOK int
	// Late counts calls the open-loop generator could not start on time
	// (all its callers busy): they are skipped, not failures of the farm.
	Late int

	Jobs     Jobs
	Windows  []Window
	Failures Tally
	Procs    []*Proc
}

// Problems lists what makes the run fail: unexplained failures, lost jobs,
// jobs with two final states, growing resources and failed recoveries.
func (r *Report) Problems() []string {
	var ps []string
	if n := Total(r.Failures.Unexplained); n > 0 {
		ps = append(ps, fmt.Sprintf("%d failures not explained by a fault window: %v", n, r.Failures.Unexplained))
	}
	if len(r.Jobs.Lost) > 0 {
		ps = append(ps, fmt.Sprintf("%d jobs lost (accepted, never final): %v", len(r.Jobs.Lost), head(r.Jobs.Lost)))
	}
	if len(r.Jobs.Changed) > 0 {
		ps = append(ps, fmt.Sprintf("%d jobs with two final states: %v", len(r.Jobs.Changed), head(r.Jobs.Changed)))
	}
	for _, w := range r.Windows {
		if !w.RecoveryOK {
			ps = append(ps, fmt.Sprintf("no recovery after %s at %v: %s", w.Kind, w.From.Round(time.Second), w.Detail))
		}
	}
	for _, p := range r.Procs {
		for _, m := range Metrics {
			if j := Judge(m, p.Series[m.Name], r.Warmup, r.Windows); j.Verdict == Growing && !m.Info {
				ps = append(ps, fmt.Sprintf("%s (pid %d) %s grows: %+.1f%s over %v (%+.1f%s/h; median %.1f%s; tolerance %s)",
					p.Name, p.Pid, m.Name, j.Rise/m.Scale, m.Unit, j.Span.Round(time.Second), j.PerHour/m.Scale, m.Unit,
					j.Median/m.Scale, m.Unit, m.Tol.scaled(m.Scale, m.Unit)))
			}
		}
	}
	if r.SyncSent > 0 && r.Late*100 > r.SyncSent {
		ps = append(ps, fmt.Sprintf("the load generator started %d of %d calls late (>1%%): the offered rate was not held", r.Late, r.SyncSent))
	}
	return ps
}

func (t Tolerance) scaled(scale float64, unit string) string {
	return fmt.Sprintf("a rise over the fitted span of at most max(%g%s, %g%% of the median)", t.Abs/scale, unit, t.Rel*100)
}

func head(xs []string) []string {
	if len(xs) > 10 {
		return xs[:10]
	}
	return xs
}

// Markdown renders the report for BENCHMARKS.md.
func (r *Report) Markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("Soak run of %v begun %s (UTC).\n\n", r.Duration, r.Began.UTC().Format("2006-01-02 15:04"))
	if r.Command != "" {
		p("```sh\n%s\n```\n\n", r.Command)
	}
	if r.Machine != "" {
		p("Machine: %s\n\n", r.Machine)
	}
	p("Farm: the real bin/api and %d bin/worker (seed model, MODEL_LATENCY=%v) against a private RabbitMQ node. ", r.Workers, r.ModelLatency)
	p("Capacity, closed loop of %d callers for 20 s: **%.0f req/s** (%d failures). ", r.CapacityConc, r.CapacityRPS, r.CapacityFail)
	p("Offered open loop at half of it: %.1f /process calls/s and %.1f POST /jobs/s for %v. ", r.SyncRate, r.JobRate, r.Duration)
	p("Faults every %v, alternating a broker restart (Stop, Start) and a worker killed with SIGKILL and replaced; ", r.FaultEvery)
	p("a failure is explained when the call overlaps a fault, from its injection to the farm's /ready with every worker, plus %v. ", r.Grace)
	p("Resources sampled every %v; slopes are least squares over each process's samples after its first %v, leaving out those taken in a fault window.\n\n", r.SampleEvery, r.Warmup)

	verdict := "PASS"
	if len(r.Problems()) > 0 {
		verdict = "FAIL"
	}
	unexplained := Total(r.Failures.Unexplained)
	p("| outcome | value |\n|---|---|\n")
	p("| verdict | **%s** |\n", verdict)
	p("| /process calls sent / 200 | %d / %d |\n", r.SyncSent, r.SyncOK)
	p("| calls started late by the generator (skipped) | %d |\n", r.Late)
	p("| failures explained by a fault / unexplained | %d / **%d** |\n", Total(r.Failures.Explained), unexplained)
	p("| jobs submitted / accepted (202) | %d / %d |\n", r.Jobs.Submitted, r.Jobs.Accepted)
	for _, s := range sortedKeys(r.Jobs.Final) {
		p("| jobs final %s | %d |\n", s, r.Jobs.Final[s])
	}
	p("| jobs lost / with two final states | **%d** / **%d** |\n", len(r.Jobs.Lost), len(r.Jobs.Changed))
	p("\n")

	p("| fault | at | recovered after | failures it explains | detail |\n|---|---|---|---|---|\n")
	for i, w := range r.Windows {
		rec := (w.To - w.From).Round(100 * time.Millisecond).String()
		if !w.RecoveryOK {
			rec = "NOT RECOVERED"
		}
		n := 0
		if i < len(r.Failures.PerWindow) {
			n = r.Failures.PerWindow[i]
		}
		p("| %s | %v | %s | %d | %s |\n", w.Kind, w.From.Round(time.Second), rec, n, w.Detail)
	}
	p("\n")

	if len(r.Failures.Explained)+len(r.Failures.Unexplained) > 0 {
		p("| failure (call, label) | explained | unexplained |\n|---|---|---|\n")
		keys := sortedKeys(r.Failures.Explained)
		for _, k := range sortedKeys(r.Failures.Unexplained) {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			p("| %s | %d | %d |\n", k, r.Failures.Explained[k], r.Failures.Unexplained[k])
		}
		p("\n")
	}
	for _, f := range r.Failures.FirstUnexplained {
		p("- unexplained: %s %s, %v–%v\n", f.Kind, f.Label, f.Start.Round(time.Millisecond), f.End.Round(time.Millisecond))
	}
	if len(r.Failures.FirstUnexplained) > 0 {
		p("\n")
	}

	p("| process | lifetime | metric | samples (fitted) | first | last | median | slope /h | rise over fit | tolerance | verdict |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, pr := range r.Procs {
		from, to := pr.Lifetime()
		life := fmt.Sprintf("%v–%v, %s", from.Round(time.Second), to.Round(time.Second), pr.Ended)
		for _, m := range Metrics {
			pts := pr.Series[m.Name]
			j := Judge(m, pts, r.Warmup, r.Windows)
			first, last := "–", "–"
			if len(pts) > 0 {
				first = fmtVal(pts[0].Value/m.Scale, m.Unit)
				last = fmtVal(pts[len(pts)-1].Value/m.Scale, m.Unit)
			}
			sl, rise := "–", "–"
			if j.Verdict != Short {
				sl = fmt.Sprintf("%+.1f", j.PerHour/m.Scale)
				rise = fmt.Sprintf("%+.1f over %v", j.Rise/m.Scale, j.Span.Round(time.Second))
			}
			verdict := string(j.Verdict)
			if m.Info {
				verdict = "(info: " + verdict + ")"
			}
			p("| %s (pid %d) | %s | %s | %d (%d) | %s | %s | %s | %s | %s | %.1f | %s |\n",
				pr.Name, pr.Pid, life, m.Name, len(pts), j.Used, first, last, fmtVal(j.Median/m.Scale, m.Unit), sl, rise,
				j.Limit/m.Scale, verdict)
		}
	}
	p("\nTolerances: ")
	for i, m := range Metrics {
		if m.Info {
			continue
		}
		if i > 0 {
			p("; ")
		}
		p("%s %s", m.Name, m.Tol.scaled(m.Scale, m.Unit))
	}
	p(". A falling line is flat. RSS and RssFile are shown without a verdict of their own: RSS is RssAnon (judged) plus RssFile, the mapped file pages of the API's job store (bbolt keeps every job for JOB_TTL), which the kernel reclaims. fds are the process's own descriptors: every open one less conns_in, the established HTTP connections it accepted (they follow the load generator's connection pool; one its peer closed and it did not, CLOSE_WAIT, stays in fds), which is shown without a verdict too.\n")
	if ps := r.Problems(); len(ps) > 0 {
		p("\nProblems:\n")
		for _, x := range ps {
			p("- %s\n", x)
		}
	}
	return b.String()
}

func fmtVal(v float64, unit string) string {
	if unit == "" {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

func sortedKeys(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
