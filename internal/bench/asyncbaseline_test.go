package bench

import (
	"strings"
	"testing"
	"time"
)

// The async phase against a baseline: the ratio of the median submission rates
// per store, and the per-run targets only for this build's runs.
func TestAsyncBaselineTargets(t *testing.T) {
	run := func(store, variant string, round, jobs int, submit time.Duration) *AsyncRun {
		return &AsyncRun{Store: store, Variant: variant, Round: round, Jobs: jobs, Submitted: jobs, SubmitTime: submit,
			Workers: 2, JobConcurrency: 4, Latency: 50 * time.Millisecond, Statuses: map[string]int{"succeeded": jobs}}
	}
	r := &Report{Cfg: &Config{}, Baseline: "abc1234 \"the commit before\"", Async: []*AsyncRun{
		run(StoreBolt, VariantFarm, 1, 1000, time.Second),           // 1,000/s
		run(StoreBolt, VariantFarmBaseline, 1, 1000, 2*time.Second), // 500/s
		run(StoreBolt, VariantFarm, 2, 1000, 400*time.Millisecond),  // 2,500/s
		run(StoreBolt, VariantFarmBaseline, 2, 1000, time.Second),   // 1,000/s
		run(StoreBolt, VariantFarm, 3, 1000, 500*time.Millisecond),  // 2,000/s
		run(StoreBolt, VariantFarmBaseline, 3, 1000, 4*time.Second), // 250/s
	}}
	var ratio *Target
	perRun := 0
	for _, tg := range r.Targets() {
		switch {
		case strings.Contains(tg.Name, "≥ 2× farm-baseline"):
			ratio = &tg
		case strings.Contains(tg.Name, "submit ≥ 2,000 jobs/s"):
			perRun++
			if strings.Contains(tg.Name, VariantFarmBaseline) {
				t.Errorf("a baseline run has a rate target: %s", tg.Name)
			}
		}
	}
	if perRun != 3 {
		t.Errorf("%d per-run submit targets, want 3 (this build's runs)", perRun)
	}
	// Medians: 2,000 against 500 jobs/s.
	if ratio == nil || ratio.Status != "PASS" || !strings.HasPrefix(ratio.Detail, "4.00×") || !strings.Contains(ratio.Name, "abc1234") {
		t.Fatalf("baseline target: %+v", ratio)
	}
	r.Async[2].SubmitTime = 2 * time.Second // 500/s: medians 1,000 against 500
	for _, tg := range r.Targets() {
		if strings.Contains(tg.Name, "≥ 2× farm-baseline") && (tg.Status != "PASS" || !strings.HasPrefix(tg.Detail, "2.00×")) {
			t.Errorf("at exactly 2×: %+v", tg)
		}
	}
	r.Async[0].SubmitTime = 2 * time.Second // medians 500 against 500
	for _, tg := range r.Targets() {
		if strings.Contains(tg.Name, "≥ 2× farm-baseline") && tg.Status != "MISS" {
			t.Errorf("at 1×: %+v", tg)
		}
	}
	if got := r.Async[1].Label(); got != "bolt farm-baseline r1" {
		t.Errorf("label %q", got)
	}
	if got := r.Async[0].Label(); got != "bolt" {
		t.Errorf("label %q", got)
	}
}
