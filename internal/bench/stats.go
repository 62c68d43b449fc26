package bench

import (
	"maps"
	"math"
	"slices"
	"time"
)

// Result is the outcome of one closed-loop run.
type Result struct {
	// Concurrency is the number of closed-loop callers.
	Concurrency int
	// Window is the length of the measured window.
	Window time.Duration
	// Latencies holds the latency of every success completed inside the
	// window, sorted ascending.
	Latencies []time.Duration
	// Failures counts the calls that completed inside the window without
	// success, by label ("503", "timeout", "conn-refused", ...).
	Failures map[string]int
	// CPU is the CPU used by each process group during the window, if sampled.
	CPU *CPUUsage
}

// OK is the number of successes completed inside the window.
func (r *Result) OK() int { return len(r.Latencies) }

// FailureCount is the number of failed calls completed inside the window.
func (r *Result) FailureCount() int {
	n := 0
	for _, v := range r.Failures {
		n += v
	}
	return n
}

// RPS is the rate of successes per second over the window.
func (r *Result) RPS() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(len(r.Latencies)) / r.Window.Seconds()
}

// Percentile returns the p-th percentile (0 < p ≤ 100) of the success
// latencies, or 0 when there were none.
func (r *Result) Percentile(p float64) time.Duration {
	return Percentile(r.Latencies, p)
}

// Mean returns the mean success latency, or 0 when there were none.
func (r *Result) Mean() time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range r.Latencies {
		sum += d
	}
	return sum / time.Duration(len(r.Latencies))
}

// Percentile returns the p-th percentile of sorted by the nearest-rank
// method: the smallest value such that at least p percent of the values are
// less than or equal to it. sorted must be in ascending order. It returns 0
// for an empty slice; p is clamped to [0, 100].
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}

// Median returns the median of xs (the mean of the two middle values for an
// even count), or 0 for an empty slice. xs is not modified.
func Median(xs []float64) float64 {
	n := len(xs)
	if n == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// MedianDuration is Median for durations.
func MedianDuration(ds []time.Duration) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return time.Duration(math.Round(Median(xs)))
}

// Summary aggregates the runs of one configuration.
type Summary struct {
	Runs []*Result
}

// Add appends a run.
func (s *Summary) Add(r *Result) { s.Runs = append(s.Runs, r) }

// Empty reports whether no run was recorded.
func (s *Summary) Empty() bool { return s == nil || len(s.Runs) == 0 }

// RPS is the median success rate over the runs.
func (s *Summary) RPS() float64 {
	if s.Empty() {
		return 0
	}
	xs := make([]float64, len(s.Runs))
	for i, r := range s.Runs {
		xs[i] = r.RPS()
	}
	return Median(xs)
}

// Percentile is the median over the runs of each run's p-th percentile.
func (s *Summary) Percentile(p float64) time.Duration {
	if s.Empty() {
		return 0
	}
	ds := make([]time.Duration, len(s.Runs))
	for i, r := range s.Runs {
		ds[i] = r.Percentile(p)
	}
	return MedianDuration(ds)
}

// Failures sums the failures of all runs by label.
func (s *Summary) Failures() map[string]int {
	out := map[string]int{}
	if s.Empty() {
		return out
	}
	for _, r := range s.Runs {
		for k, v := range r.Failures {
			out[k] += v
		}
	}
	return out
}

// OK sums the successes of all runs.
func (s *Summary) OK() int {
	n := 0
	if s.Empty() {
		return 0
	}
	for _, r := range s.Runs {
		n += r.OK()
	}
	return n
}

// CPU averages the sampled CPU usage over the runs that have it, or returns
// nil when none has.
func (s *Summary) CPU() *CPUUsage {
	if s.Empty() {
		return nil
	}
	var us []*CPUUsage
	for _, r := range s.Runs {
		if r.CPU != nil {
			us = append(us, r.CPU)
		}
	}
	if len(us) == 0 {
		return nil
	}
	avg := &CPUUsage{Cores: map[string]float64{}}
	for _, u := range us {
		for k, v := range u.Cores {
			avg.Cores[k] += v / float64(len(us))
		}
		avg.Machine += u.Machine / float64(len(us))
		avg.IRQ += u.IRQ / float64(len(us))
		avg.Window += u.Window / time.Duration(len(us))
	}
	return avg
}

// sortedKeys returns m's keys in ascending order.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
