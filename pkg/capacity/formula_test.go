package capacity_test

import (
	"math"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/capacity"
)

func TestNeeded(t *testing.T) {
	const ms = time.Millisecond
	for _, tc := range []struct {
		name string
		in   capacity.Inputs
		want int
	}{
		{name: "idle", in: capacity.Inputs{}, want: 0},
		{name: "idle with known service time and slots",
			in: capacity.Inputs{ServiceTime: 250 * ms, Slots: 4, TargetUtilization: 0.7, TargetWait: time.Second}, want: 0},
		{name: "turned away only (one in a minute) wakes the farm",
			in: capacity.Inputs{ArrivalRate: 1.0 / 60, ServiceTime: 100 * ms, TargetUtilization: 0.7, TargetWait: time.Second}, want: 1},
		{name: "demand but no service time still 1",
			in: capacity.Inputs{ArrivalRate: 5}, want: 1},
		{name: "backlog only: 25 × 0.1s / 1s = 2.5",
			in: capacity.Inputs{Ready: 25, ServiceTime: 100 * ms, TargetUtilization: 0.7, TargetWait: time.Second}, want: 3},
		{name: "work in progress only keeps one worker",
			in: capacity.Inputs{Unacked: 3, ServiceTime: 30 * time.Second, Slots: 1}, want: 1},
		{name: "unacked is not a term of its own",
			in: capacity.Inputs{ArrivalRate: 7, Unacked: 40, ServiceTime: 100 * ms, TargetUtilization: 0.7}, want: 1},
		{name: "a single ready message",
			in: capacity.Inputs{Ready: 1, ServiceTime: ms, TargetWait: time.Second}, want: 1},
		{name: "exactly one worker's worth: 7 × 0.1 / 0.7 is 1, not 2",
			in: capacity.Inputs{ArrivalRate: 7, ServiceTime: 100 * ms, TargetUtilization: 0.7, TargetWait: time.Second}, want: 1},
		{name: "just above one worker",
			in: capacity.Inputs{ArrivalRate: 7.1, ServiceTime: 100 * ms, TargetUtilization: 0.7, TargetWait: time.Second}, want: 2},
		{name: "slots divide: 70 × 0.1 / 0.7 = 10 slots over 4 per worker",
			in: capacity.Inputs{ArrivalRate: 70, ServiceTime: 100 * ms, Slots: 4, TargetUtilization: 0.7, TargetWait: time.Second}, want: 3},
		{name: "both terms: (10 × 0.2 / 0.5 + 10 × 0.2 / 1) / 2 = 3",
			in: capacity.Inputs{ArrivalRate: 10, ServiceTime: 200 * ms, Slots: 2, Ready: 10, TargetUtilization: 0.5, TargetWait: time.Second}, want: 3},
		{name: "shorter target wait needs more for the same backlog",
			in: capacity.Inputs{Ready: 10, ServiceTime: 200 * ms, TargetWait: 250 * ms}, want: 8},
		{name: "large arrival rate: 1e6/s × 1s / 0.7",
			in: capacity.Inputs{ArrivalRate: 1e6, ServiceTime: time.Second, Slots: 1, TargetUtilization: 0.7, TargetWait: time.Second}, want: 1428572},
		{name: "large arrival rate with 8 slots",
			in: capacity.Inputs{ArrivalRate: 50_000, ServiceTime: 20 * ms, Slots: 8, TargetUtilization: 0.7, TargetWait: time.Second}, want: 179},
		{name: "absurd arrival rate is capped",
			in: capacity.Inputs{ArrivalRate: 1e300, ServiceTime: time.Hour}, want: capacity.MaxWorkersNeeded},
		{name: "infinite arrival rate is capped",
			in: capacity.Inputs{ArrivalRate: math.Inf(1), ServiceTime: time.Second}, want: capacity.MaxWorkersNeeded},
		{name: "NaN arrival rate counts as none", in: capacity.Inputs{ArrivalRate: math.NaN(), ServiceTime: time.Second}, want: 0},
		{name: "negative inputs count as none",
			in: capacity.Inputs{ArrivalRate: -3, Ready: -5, Unacked: -1, ServiceTime: time.Second}, want: 0},
		{name: "slots below 1 count as 1",
			in: capacity.Inputs{ArrivalRate: 14, ServiceTime: 100 * ms, Slots: -2, TargetUtilization: 0.7}, want: 2},
		{name: "invalid utilisation counts as the default (0.7)",
			in: capacity.Inputs{ArrivalRate: 14, ServiceTime: 100 * ms, TargetUtilization: 3}, want: 2},
		{name: "zero target wait counts as the default (1s)",
			in: capacity.Inputs{Ready: 30, ServiceTime: 100 * ms}, want: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := capacity.Needed(tc.in); got != tc.want {
				t.Errorf("Needed(%+v) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}
