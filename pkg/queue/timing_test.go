package queue

import (
	"testing"
	"time"
)

func TestTimingStages(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	ms := time.Millisecond
	cases := []struct {
		name         string
		tm           Timing
		qw, comp, rt time.Duration
		ok           bool
	}{
		{"same clock", Timing{Published: t0, WorkerReceived: t0.Add(3 * ms), Compute: 5 * ms, Replied: t0.Add(10 * ms)}, 3 * ms, 5 * ms, 2 * ms, true},
		// The worker's clock runs 2 ms ahead: queue wait gains what reply transit loses.
		{"worker ahead", Timing{Published: t0, WorkerReceived: t0.Add(5 * ms), Compute: 5 * ms, Replied: t0.Add(10 * ms)}, 5 * ms, 5 * ms, 0, true},
		// Far ahead: queue wait is capped so that reply transit is never negative.
		{"worker far ahead", Timing{Published: t0, WorkerReceived: t0.Add(50 * ms), Compute: 5 * ms, Replied: t0.Add(10 * ms)}, 5 * ms, 5 * ms, 0, true},
		// Behind: queue wait would be negative; it is 0 and reply transit takes the rest.
		{"worker behind", Timing{Published: t0, WorkerReceived: t0.Add(-4 * ms), Compute: 5 * ms, Replied: t0.Add(10 * ms)}, 0, 5 * ms, 5 * ms, true},
		{"no worker timing", Timing{Published: t0, Replied: t0.Add(10 * ms)}, 0, 0, 0, false},
	}
	for _, c := range cases {
		qw, comp, rt, ok := c.tm.Stages()
		if qw != c.qw || comp != c.comp || rt != c.rt || ok != c.ok {
			t.Errorf("%s: got %v %v %v %v, want %v %v %v %v", c.name, qw, comp, rt, ok, c.qw, c.comp, c.rt, c.ok)
		}
		if ok && qw+comp+rt != c.tm.Replied.Sub(c.tm.Published) {
			t.Errorf("%s: stages do not add up to the round trip", c.name)
		}
	}
}
