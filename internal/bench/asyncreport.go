package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

func fmtSecs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) }

// PrintAsync prints the async phase.
func (r *Report) PrintAsync(w io.Writer) {
	if len(r.Async) == 0 {
		return
	}
	a0 := r.Async[0]
	p := func(format string, a ...any) { _, _ = fmt.Fprintf(w, format+"\n", a...) }
	p("async jobs: POST /jobs, then GET /jobs/{id}?wait=%v until final", asyncPollWait)
	p("  farm:   bin/api + %d × bin/worker, JOB_CONCURRENCY=%d, MODEL_LATENCY=%v, other settings default", a0.Workers, a0.JobConcurrency, a0.Latency)
	for _, a := range r.Async {
		p("  store:  %-5s %s", a.Store, a.StoreDetail)
	}
	p("  submit: %s jobs by %d concurrent callers, each sending the next job when answered; a 202 means stored,", thousands(int64(a0.Jobs)), a0.Submitters)
	p("          published persistent and confirmed by the broker. Workers run jobs while submission goes on.")
	p("  done:   after the last submit, %d pollers take the jobs in submit order and hold one long-poll each until", a0.Pollers)
	p("          the job is final (about one GET per job). all final = first submit → last job seen final.")
	p("  target: completion ≥ 0.9 × workers × JOB_CONCURRENCY / MODEL_LATENCY = 0.9 × %d × %d / %v = %s jobs/s",
		a0.Workers, a0.JobConcurrency, a0.Latency, fmtRate(a0.Target()))
	p("")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "store\taccepted\tsubmit s\tsubmit jobs/s\tp50\tp99\t\tall final s\tcompletion jobs/s\tof ideal\tdrain jobs/s\te2e p50\te2e p99\tnot succeeded\t")
	for _, a := range r.Async {
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t|\t%s\t%s\t%.3f\t%s\t%s\t%s\t%d\t\n", a.Label(),
			thousands(int64(a.Submitted)), fmtSecs(a.SubmitTime), fmtRate(a.SubmitRate()),
			fmtDur(Percentile(a.SubmitLat, 50)), fmtDur(Percentile(a.SubmitLat, 99)),
			fmtSecs(a.AllFinal), fmtRate(a.CompletionRate()), a.CompletionRate()/a.Ideal(), fmtRate(a.DrainRate()),
			fmtLong(Percentile(a.E2E, 50)), fmtLong(Percentile(a.E2E, 99)), a.NotSucceeded())
	}
	_ = tw.Flush()
	p("  of ideal = completion ÷ (workers × JOB_CONCURRENCY / MODEL_LATENCY); drain = jobs finished after the last submit ÷ time after it;")
	p("  e2e = finished_at − created_at of each job (the API's and the worker's clocks, same machine): mostly time queued behind the backlog")
	p("")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "store\tfinal at submit end\tbacklog at submit end\twait p50\twait p99\trun p50\trun p99\tslot utilization\tserver span s\tGET polls\t")
	for _, a := range r.Async {
		backlog := "-"
		if a.BacklogAtSubmitEnd >= 0 {
			backlog = thousands(int64(a.BacklogAtSubmitEnd))
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.3f\t%s\t%s\t\n", a.Label(),
			thousands(int64(a.FinalAtSubmitEnd)), backlog,
			fmtLong(Percentile(a.Wait, 50)), fmtLong(Percentile(a.Wait, 99)),
			fmtDur(Percentile(a.Run, 50)), fmtDur(Percentile(a.Run, 99)),
			a.Utilization(), fmtSecs(a.ServerSpan), thousands(a.Polls))
	}
	_ = tw.Flush()
	p("  wait = started_at − created_at; run = finished_at − started_at (the worker's run, MODEL_LATENCY included);")
	p("  slot utilization = Σ run ÷ (workers × JOB_CONCURRENCY × all final); server span = last finished_at − first created_at")
	p("")
	p("CPU (cores busy; the machine has %d) while submitting and while draining", r.Sys.Cores)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "store\tstage\tbench\tapi\tworkers\tbroker\tredis\tsoftirq\tother\tmachine\tCPU µs/job\t")
	for _, a := range r.Async {
		for _, st := range []struct {
			name string
			u    *CPUUsage
			jobs float64
		}{
			{"submit", a.CPUSubmit, float64(a.Submitted)},
			{"drain", a.CPUDrain, float64(a.Succeeded() - a.FinalAtSubmitEnd)},
		} {
			u := st.u
			if u == nil {
				continue
			}
			cols := append([]string{a.Label(), st.name}, u.columns("bench", "api", "workers", "broker", "redis")...)
			if st.jobs > 0 && u.Window > 0 {
				cols = append(cols, strconv.FormatFloat(u.Machine*u.Window.Seconds()/st.jobs*1e6, 'f', 0, 64))
			} else {
				cols = append(cols, "-")
			}
			_, _ = fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t")
		}
	}
	_ = tw.Flush()
	p("  drain CPU µs/job is over the jobs finished after the last submit; the submit row's jobs also ran partly in it")
	p("")
	for _, a := range r.Async {
		var st []string
		for _, k := range sortedKeys(a.Statuses) {
			st = append(st, fmt.Sprintf("%s %s", k, thousands(int64(a.Statuses[k]))))
		}
		var att []string
		for n := range 30 {
			if v := a.Attempts[n]; v > 0 {
				att = append(att, fmt.Sprintf("%d: %s", n, thousands(int64(v))))
			}
		}
		var left []string
		for _, k := range sortedKeys(a.Leftover) {
			left = append(left, fmt.Sprintf("%s %d", k, a.Leftover[k]))
		}
		p("%s: submit failures %s; final statuses: %s; attempts: %s; GET failures %s", a.Label(), fmtFailures(a.SubmitFailures),
			strings.Join(st, ", "), strings.Join(att, ", "), fmtFailures(a.PollFailures))
		p("  ready messages left: %s", strings.Join(left, ", "))
		if a.RedisKeys >= 0 {
			p("  redis keys under the run's prefix, deleted afterwards: %s", thousands(int64(a.RedisKeys)))
		}
	}
	p("")
}

// fmtLong formats a latency that may be seconds long.
func fmtLong(d time.Duration) string {
	if d >= 10*time.Second {
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	}
	if d >= time.Second {
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
	}
	return fmtDur(d)
}

// asyncBaselineTargets compares, per store, the median submission rate of this
// build's runs with the baseline's (-baseline-rev): POST /jobs ≥ 2× the baseline.
func (r *Report) asyncBaselineTargets(verdict func(bool) string) []Target {
	var ts []Target
	stores := map[string]bool{}
	for _, a := range r.Async {
		if a.Variant != VariantFarmBaseline || stores[a.Store] {
			continue
		}
		stores[a.Store] = true
		var cur, base []float64
		for _, b := range r.Async {
			switch {
			case b.Store != a.Store:
			case b.Variant == VariantFarmBaseline:
				base = append(base, b.SubmitRate())
			default:
				cur = append(cur, b.SubmitRate())
			}
		}
		if len(cur) == 0 {
			continue
		}
		ratio := Median(cur) / Median(base)
		ts = append(ts, Target{
			Name:   fmt.Sprintf("async (%s): POST /jobs submissions ≥ 2× farm-baseline (%s)", a.Store, shortRev(r.Baseline)),
			Status: verdict(ratio >= 2),
			Detail: fmt.Sprintf("%s (medians of %d and %d runs: %s vs %s jobs/s)", fmtRatio(ratio), len(cur), len(base),
				fmtRate(Median(cur)), fmtRate(Median(base))),
		})
	}
	return ts
}
