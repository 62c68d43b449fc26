package metrics

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The caller label stays bounded: past MaxLimitedCallers, callers share "other".
func TestLimitedCallersAreBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := NewLimits(reg)
	for i := range MaxLimitedCallers + 50 {
		l.Limited("rate_limited", fmt.Sprint("addr:10.0.0.", i))
	}
	l.Limited("quota_exceeded", "addr:10.0.0.0") // a known caller keeps its label
	l.Unavailable()
	// One series per known caller, plus "other" for each reason.
	if n := testutil.CollectAndCount(l.limited); n != MaxLimitedCallers+3 {
		t.Fatalf("%d series, want %d", n, MaxLimitedCallers+3)
	}
	if v := testutil.ToFloat64(l.limited.WithLabelValues("rate_limited", OtherCaller)); v != 50 {
		t.Fatalf("other = %v, want 50", v)
	}
	if v := testutil.ToFloat64(l.limited.WithLabelValues("quota_exceeded", "addr:10.0.0.0")); v != 1 {
		t.Fatalf("a known caller's quota_exceeded = %v, want 1", v)
	}
	if v := testutil.ToFloat64(l.unavailable); v != 1 {
		t.Fatalf("unavailable = %v", v)
	}
}
