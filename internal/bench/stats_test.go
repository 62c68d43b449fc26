package bench

import (
	"testing"
	"time"
)

func ms(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = ms(float64(i + 1)) // 1ms..100ms
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single p50", []time.Duration{ms(7)}, 50, ms(7)},
		{"single p99", []time.Duration{ms(7)}, 99, ms(7)},
		{"1..100 p50", hundred, 50, ms(50)},
		{"1..100 p99", hundred, 99, ms(99)},
		{"1..100 p100", hundred, 100, ms(100)},
		{"1..100 p0 clamps to min", hundred, 0, ms(1)},
		{"1..100 p99.5 rounds up", hundred, 99.5, ms(100)},
		{"1..100 above 100 clamps", hundred, 150, ms(100)},
		{"four values p50", []time.Duration{1, 2, 3, 4}, 50, 2},
		{"four values p75", []time.Duration{1, 2, 3, 4}, 75, 3},
		{"four values p76", []time.Duration{1, 2, 3, 4}, 76, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("Percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func TestPercentileTail(t *testing.T) {
	// 990 fast calls and 10 slow ones: p99 is still fast, p99.1 is slow.
	var lat []time.Duration
	for range 990 {
		lat = append(lat, ms(1))
	}
	for range 10 {
		lat = append(lat, ms(50))
	}
	if got := Percentile(lat, 99); got != ms(1) {
		t.Errorf("p99 = %v, want 1ms", got)
	}
	if got := Percentile(lat, 99.1); got != ms(50) {
		t.Errorf("p99.1 = %v, want 50ms", got)
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		xs   []float64
		want float64
	}{
		{"empty", nil, 0},
		{"one", []float64{3}, 3},
		{"odd unsorted", []float64{9, 1, 5}, 5},
		{"even", []float64{4, 1, 3, 2}, 2.5},
		{"outlier ignored", []float64{100, 101, 10000}, 101},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]float64(nil), tt.xs...)
			if got := Median(tt.xs); got != tt.want {
				t.Errorf("Median(%v) = %v, want %v", tt.xs, got, tt.want)
			}
			for i := range in {
				if in[i] != tt.xs[i] {
					t.Fatalf("Median modified its input: %v", tt.xs)
				}
			}
		})
	}
	if got := MedianDuration([]time.Duration{ms(3), ms(1), ms(2)}); got != ms(2) {
		t.Errorf("MedianDuration = %v, want 2ms", got)
	}
}

func TestResultAndSummary(t *testing.T) {
	mk := func(n int, each time.Duration, fails map[string]int) *Result {
		r := &Result{Window: 2 * time.Second, Failures: fails}
		for range n {
			r.Latencies = append(r.Latencies, each)
		}
		return r
	}
	r := mk(1000, ms(2), map[string]int{"503": 3})
	if got := r.RPS(); got != 500 {
		t.Errorf("RPS = %v, want 500 (failures must not count)", got)
	}
	if r.FailureCount() != 3 || r.OK() != 1000 {
		t.Errorf("OK %d failures %d, want 1000 and 3", r.OK(), r.FailureCount())
	}
	if r.Mean() != ms(2) {
		t.Errorf("Mean = %v", r.Mean())
	}

	var s Summary
	if !s.Empty() || s.RPS() != 0 || s.Percentile(99) != 0 {
		t.Fatal("empty summary must report zeros")
	}
	s.Add(mk(1000, ms(2), map[string]int{"503": 1}))         // 500 req/s, p99 2ms
	s.Add(mk(3000, ms(9), nil))                              // 1500 req/s, p99 9ms
	s.Add(mk(2000, ms(4), map[string]int{"503": 2, "x": 1})) // 1000 req/s, p99 4ms
	if got := s.RPS(); got != 1000 {
		t.Errorf("median RPS = %v, want 1000", got)
	}
	if got := s.Percentile(99); got != ms(4) {
		t.Errorf("median p99 = %v, want 4ms", got)
	}
	f := s.Failures()
	if f["503"] != 3 || f["x"] != 1 || len(f) != 2 {
		t.Errorf("failures = %v", f)
	}
	if s.OK() != 6000 {
		t.Errorf("OK = %d", s.OK())
	}
}

func TestSummaryCPU(t *testing.T) {
	var s Summary
	s.Add(&Result{CPU: &CPUUsage{Cores: map[string]float64{"api": 0.5}, Machine: 1.5, Window: time.Second}})
	s.Add(&Result{CPU: &CPUUsage{Cores: map[string]float64{"api": 0.7}, Machine: 1.9, Window: time.Second}})
	s.Add(&Result{}) // a run without a sample does not dilute the mean
	u := s.CPU()
	if u == nil || !near(u.Cores["api"], 0.6) || !near(u.Machine, 1.7) {
		t.Fatalf("CPU = %+v, want api 0.6 machine 1.7", u)
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestFormatting(t *testing.T) {
	tests := []struct{ got, want string }{
		{fmtRate(12345.4), "12,345"},
		{fmtRate(1000), "1,000"},
		{fmtRate(999.6), "1,000"},
		{fmtRate(49.96), "50.0"},
		{fmtDur(ms(0.284)), "0.28ms"},
		{fmtDur(ms(21.64)), "21.6ms"},
		{fmtDur(ms(123.4)), "123ms"},
		{fmtDur(0), "-"},
		{fmtRatio(0.5), "0.50×"},
		{fmtFailures(map[string]int{"504": 2, "503": 1}), "503×1 504×2"},
		{fmtFailures(nil), "none"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
