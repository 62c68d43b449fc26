package capacity

import (
	"math"
	"time"
)

// MaxWorkersNeeded caps [Needed], so absurd inputs cannot overflow an int.
const MaxWorkersNeeded = math.MaxInt32

// epsilon absorbs floating-point noise before rounding up, so that e.g.
// 7 req/s × 0.1 s / 0.7 is 1 worker, not 2.
const epsilon = 1e-9

// Inputs are the terms of the workers-needed formula (see the package
// documentation).
type Inputs struct {
	// ArrivalRate is λ in requests/s: the publish rate plus the turned-away rate.
	ArrivalRate float64
	// ServiceTime is S, the mean service time of one request.
	ServiceTime time.Duration
	// Slots is C, the handler slots per worker; below 1 counts as 1.
	Slots int
	// Ready is B, the backlog of ready messages; below 0 counts as 0.
	Ready int
	// Unacked is the number of messages workers hold. It is not a term of the
	// formula (λ·S covers them) but keeps the result at 1 or more while work is
	// in progress.
	Unacked int
	// TargetUtilization is U; outside (0, 1] counts as DefaultTargetUtilization.
	TargetUtilization float64
	// TargetWait is W; zero or negative counts as DefaultTargetWait.
	TargetWait time.Duration
}

// Needed returns ceil((λ·S/U + B·S/W) / C), at least 1 when there is demand or
// work in progress (λ > 0, B > 0 or Unacked > 0) and 0 only without, capped at
// MaxWorkersNeeded. It is a pure function of in.
func Needed(in Inputs) int {
	lambda := in.ArrivalRate
	if math.IsNaN(lambda) || lambda < 0 {
		lambda = 0
	}
	ready := max(in.Ready, 0)
	if lambda == 0 && ready == 0 && in.Unacked <= 0 {
		return 0
	}
	u := in.TargetUtilization
	if math.IsNaN(u) || u <= 0 || u > 1 {
		u = DefaultTargetUtilization
	}
	w := in.TargetWait
	if w <= 0 {
		w = DefaultTargetWait
	}
	s := max(in.ServiceTime, 0).Seconds()
	c := float64(max(in.Slots, 1))

	slots := lambda*s/u + float64(ready)*s/w.Seconds()
	n := math.Ceil(slots/c - epsilon)
	switch {
	case math.IsNaN(n) || n < 1:
		return 1
	case n >= MaxWorkersNeeded:
		return MaxWorkersNeeded
	default:
		return int(n)
	}
}
