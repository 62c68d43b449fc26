package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// v2Target is the v2 phase's bar: v2 req/s ≥ v2TargetRatio × /process req/s.
const v2TargetRatio = 0.95

// pairedRatios is the per-run ratios of a over b: over the quiet pairs when
// there are at least 3, else over all pairs, with which it is.
func pairedRatios(a, b *Summary) ([]float64, string) {
	if pr := quietRunRatios(a, b); len(pr) >= 3 {
		return pr, "quiet pairs"
	}
	return perRunRatios(a, b), "all pairs"
}

// groupPerReq is CPU group g's µs per request of s ("-" when not sampled).
func groupPerReq(s *Summary, g string) string {
	u := s.CPU()
	if u == nil || s.RPS() <= 0 {
		return "-"
	}
	x, ok := u.Cores[g]
	if !ok {
		return "-"
	}
	return strconv.FormatFloat(x/s.RPS()*1e6, 'f', 0, 64)
}

// PrintV2 prints POST /v2/models/seed/infer against POST /process.
func (r *Report) PrintV2(w io.Writer) {
	c := r.Cfg
	p := func(format string, a ...any) { _, _ = fmt.Fprintf(w, format+"\n", a...) }
	settings := "default settings"
	if len(c.FarmEnv) > 0 {
		settings = "settings " + strings.Join(c.FarmEnv, " ") + " (NOT the defaults)"
	}
	p("v2 (Open Inference Protocol) against /process: one farm, the same input, alternating runs")
	p("  farm:     bin/api + %d × bin/worker (MODELS=%s), %s", c.Workers, seedModel, settings)
	p("  /process: POST /process {\"data\": \"bench-<caller>-<seq>\", \"forward_to_model\": true}")
	p("  v2:       POST %s {\"inputs\": [{\"name\": \"data\", \"datatype\": \"BYTES\", \"shape\": [1], \"data\": [\"bench-<caller>-<seq>\"]}]}", seedInferPath)
	p("  paired = median [range] of the per-run ratios (run i of v2 against run i of /process, same round); quiet pairs")
	p("  (other processes under %.2f cores during both runs) when there are at least 3, else all pairs (n = pairs)", quietOther)
	p("")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "conc\t/process req/s\tp50\tp99\t\tv2 req/s\tp50\tp99\t\tv2/process req/s\tpaired\t\tn\tp50\tp99\t\tapi µs/req\tv2\tworkers µs/req\tv2\t")
	for _, row := range r.Compare {
		f, v := row.Variants[VariantFarm], row.Variants[VariantFarmV2]
		if f.Empty() && v.Empty() {
			continue
		}
		cols := []string{strconv.Itoa(row.Concurrency)}
		cols = append(cols, sumCols(f)...)
		cols = append(cols, "|")
		cols = append(cols, sumCols(v)...)
		cols = append(cols, "|")
		if !f.Empty() && !v.Empty() {
			pr, _ := pairedRatios(v, f)
			cols = append(cols, fmtRatio(v.RPS()/f.RPS()), fmtRatio(Median(pr)), "["+fmtRange(pr)+"]", strconv.Itoa(len(pr)),
				fmtRatio(float64(v.Percentile(50))/float64(f.Percentile(50))),
				fmtRatio(float64(v.Percentile(99))/float64(f.Percentile(99))))
		} else {
			cols = append(cols, "-", "-", "-", "-", "-", "-")
		}
		cols = append(cols, "|", groupPerReq(f, "api"), groupPerReq(v, "api"), groupPerReq(f, "workers"), groupPerReq(v, "workers"))
		_, _ = fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t")
	}
	_ = tw.Flush()
	p("  api µs/req, workers µs/req: CPU of the API and of the workers per request (/process, then v2), means of the runs")
	var fails []string
	for _, row := range r.Compare {
		for _, v := range []string{VariantFarm, VariantFarmV2} {
			if s := row.Variants[v]; !s.Empty() && len(s.Failures()) > 0 {
				fails = append(fails, fmt.Sprintf("  %s c=%d: %s (successes %d)", v, row.Concurrency, fmtFailures(s.Failures()), s.OK()))
			}
		}
	}
	if len(fails) == 0 {
		p("  failures in the measured windows: none")
	} else {
		p("  failures in the measured windows, all runs:")
		for _, f := range fails {
			p("%s", f)
		}
	}
	p("")
}

// v2Targets are the v2 phase's verdicts, one per concurrency.
func (r *Report) v2Targets(verdict func(bool) string) []Target {
	if !r.Cfg.Has(PhaseV2) {
		return nil
	}
	var ts []Target
	for _, c := range r.Cfg.Concurrency {
		name := fmt.Sprintf("v2 ≥ %.2f× /process req/s at concurrency %d", v2TargetRatio, c)
		f, v := r.rowSum(c, VariantFarm), r.rowSum(c, VariantFarmV2)
		if f.Empty() || v.Empty() {
			ts = append(ts, Target{Name: name, Status: NotMeasured, Detail: "not measured"})
			continue
		}
		pr, which := pairedRatios(v, f)
		ratio := Median(pr)
		ts = append(ts, Target{Name: name, Status: verdict(ratio >= v2TargetRatio),
			Detail: fmt.Sprintf("%s, paired median of %d %s [%s] (medians: v2 %s vs /process %s req/s; p99 %s vs %s)",
				fmtRatio(ratio), len(pr), which, fmtRange(pr), fmtRate(v.RPS()), fmtRate(f.RPS()),
				fmtDur(v.Percentile(99)), fmtDur(f.Percentile(99)))})
	}
	return ts
}

// digitsTargets: the farm's answers must be the model's (a correctness check
// beside the rates, which have no bar).
func (r *Report) digitsTargets(verdict func(bool) string) []Target {
	d := r.Digits
	if d == nil || d.Check == nil {
		return nil
	}
	ck := d.Check
	return []Target{{
		Name:   "digits through the farm: every vector answered with sklearn's class",
		Status: verdict(ck.Matched == ck.Vectors && len(ck.Failures) == 0),
		Detail: fmt.Sprintf("%d of %d (max |Δp| against sklearn's float64 %.2g)%s", ck.Matched, ck.Vectors, ck.MaxDiff, failuresNote(ck.Failures)),
	}}
}

// PrintDigits prints the digits phase: in process, then through the farm.
func (r *Report) PrintDigits(w io.Writer) {
	d, c := r.Digits, r.Cfg
	if d == nil {
		return
	}
	p := func(format string, a ...any) { _, _ = fmt.Fprintf(w, format+"\n", a...) }
	p("digits: the repository's ONNX MLP (%s: input FP32 [N,64], output probabilities FP32 [N,10])", d.ModelDir)
	p("  every request is one row, the %d held-out vectors of %s/%s in turn; %v warm-up, %v measured", d.Vectors, digitsModel, digitsVectorsFile, c.Warmup, c.Duration)
	p("")
	p("in process: pkg/model/onnxmodel loaded by this process with %d instance(s) (the model's concurrency, as the worker", d.Instances)
	p("  loads it); closed loops of %s alone, and of %s (the worker's work per message without the broker)", LocalPredict, LocalWorker)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "path\tgoroutines\tinferences/s\tp50\tp99\tbench cores\tCPU µs/inference\t")
	for _, row := range d.Local {
		res := row.Res
		cores, per := "-", "-"
		if u := res.CPU; u != nil {
			if x, ok := u.Cores["bench"]; ok {
				cores = strconv.FormatFloat(x, 'f', 2, 64)
				if rps := res.RPS(); rps > 0 {
					per = strconv.FormatFloat(x/rps*1e6, 'f', 1, 64)
				}
			}
		}
		_, _ = fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n", row.Path, row.Goroutines, fmtRate(res.RPS()),
			fmtDurFine(res.Percentile(50)), fmtDurFine(res.Percentile(99)), cores, per)
	}
	_ = tw.Flush()
	p("")
	refRPS, refCPU := d.localRef()
	p("through the farm: bin/api + %d × bin/worker (MODELS=%s), default settings, POST /v2/models/%s/infer", d.Workers, digitsModel, digitsModel)
	p("  {\"id\": \"bench-<caller>-<seq>\", \"inputs\": [{\"name\": \"input\", \"datatype\": \"FP32\", \"shape\": [1, 64], \"data\": [64 pixels]}]};")
	p("  a success is a 200 echoing the id with the probabilities output; median of %d run(s)", c.Runs)
	if ck := d.Check; ck != nil {
		p("  answers checked first: %d of %d vectors answered with sklearn's class, max |Δp| %.2g%s", ck.Matched, ck.Vectors, ck.MaxDiff, failuresNote(ck.Failures))
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "conc	req/s	per worker	p50	p99	api cores	worker cores	worker µs/inf	÷ in process	api µs/inf	ours µs/inf	other cores	failures	")
	for _, row := range d.Farm {
		s := row.Sum
		worker, ratio, ours, other := "-", "-", "-", "-"
		if u := s.CPU(); u != nil && s.RPS() > 0 {
			wk := u.Cores["workers"] / s.RPS() * 1e6
			worker = strconv.FormatFloat(wk, 'f', 0, 64)
			if refCPU > 0 {
				ratio = fmtRatio(wk / refCPU)
			}
			ours = strconv.FormatFloat((u.Machine-u.Other())/s.RPS()*1e6, 'f', 0, 64)
			other = strconv.FormatFloat(u.Other(), 'f', 2, 64)
		}
		_, _ = fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", row.Concurrency, fmtRate(s.RPS()),
			fmtRate(s.RPS()/float64(d.Workers)), fmtDur(s.Percentile(50)), fmtDur(s.Percentile(99)), cpuGroup(s, "api"),
			cpuGroup(s, "workers"), worker, ratio, groupPerReq(s, "api"), ours, other, fmtFailures(s.Failures()))
	}
	_ = tw.Flush()
	p("  worker µs/inf: CPU of the worker processes per inference; ÷ in process: that over the CPU per inference of")
	p("  %s in this process with 1 goroutine (%.1f µs, %s/s); ours µs/inf: the machine's busy CPU less other", LocalWorker, refCPU, fmtRate(refRPS))
	p("  processes' per inference (bench, API, worker, broker and softirq): the whole path's cost on this machine")
	p("")
}

// localRef is the in-process reference: the rate and CPU µs per inference of
// LocalWorker with 1 goroutine (0, 0 when not measured).
func (d *DigitsRun) localRef() (rps, cpuMicros float64) {
	for _, r := range d.Local {
		if r.Path != LocalWorker || r.Goroutines != 1 {
			continue
		}
		rps = r.Res.RPS()
		if u := r.Res.CPU; u != nil && rps > 0 {
			cpuMicros = u.Cores["bench"] / rps * 1e6
		}
	}
	return rps, cpuMicros
}

// fmtDurFine formats a latency in microseconds below 1 ms (in-process calls).
func fmtDurFine(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d >= time.Millisecond:
		return fmtDur(d)
	}
	return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 1, 64) + "µs"
}
