package capacity

import (
	"strings"
	"time"
)

// Where [Snapshot].ServiceTime comes from.
const (
	ServiceTimeWindow  = "window"  // mean of the route's answers in the window
	ServiceTimeRecent  = "recent"  // moving average of the route's earlier answers
	ServiceTimeDefault = "default" // Config.DefaultServiceTime: nothing answered yet
)

// Snapshot is one route's estimate and every input it rests on, at one instant,
// or the sum over a model's versions ([Farm.ModelSnapshot]). Rates are per
// second over the window; durations are in seconds. Its JSON keys are
// snake_case.
type Snapshot struct {
	// Model and Version name the route; Queue is its request queue. A model's
	// sum has no Version or Queue (omitted) but Versions.
	Model   string `json:"model"`
	Version string `json:"version,omitempty"`
	Queue   string `json:"queue,omitempty"`
	// Versions lists the versions a model's sum adds up, in order; nil (omitted)
	// in a route's snapshot.
	Versions []string `json:"versions,omitempty"`
	// WorkersNeeded is the estimate: Needed of the inputs below.
	WorkersNeeded int `json:"workers_needed"`
	// ArrivalRate is λ = PublishRate + TurnedAwayRate, requests/s.
	ArrivalRate float64 `json:"arrival_rate"`
	// PublishRate is the publish rate into the queue (management API), msg/s.
	PublishRate float64 `json:"publish_rate"`
	// TurnedAwayRate is the rate of no_workers rejections seen here, requests/s.
	TurnedAwayRate float64 `json:"turned_away_rate"`
	// TurnedAway is the number of no_workers rejections in the window.
	TurnedAway int64 `json:"turned_away"`
	// ServiceTime is S, the mean service time used, in seconds.
	ServiceTime float64 `json:"service_time"`
	// ServiceTimeSource says where ServiceTime comes from: "window", "recent"
	// or "default".
	ServiceTimeSource string `json:"service_time_source"`
	// Answered is the number of answered requests observed in the window.
	Answered int64 `json:"answered"`
	// SlotsPerWorker is C as last reported by a worker of the route; 0 until the
	// route's first answer (the formula then uses 1).
	SlotsPerWorker int `json:"slots_per_worker"`
	// Ready, Unacked and Consumers are the queue's messages_ready,
	// messages_unacknowledged and consumers as last read.
	Ready     int `json:"ready"`
	Unacked   int `json:"unacked"`
	Consumers int `json:"consumers"`
	// TargetUtilization is U; TargetWait is W in seconds; Window is the
	// averaging window in seconds.
	TargetUtilization float64 `json:"target_utilization"`
	TargetWait        float64 `json:"target_wait"`
	Window            float64 `json:"window"`
	// Stale is true while the last management API read failed (the values of
	// the last good read are kept), found no queue (counted as empty), found no
	// statistics for it yet, or has not happened yet.
	Stale bool `json:"stale"`
	// Error says why Stale is true; empty (omitted) when it is not.
	Error string `json:"error,omitempty"`
	// UpdatedAt is when Ready, Unacked, Consumers and PublishRate were last
	// read successfully; omitted before the first such read.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// Summary is the whole farm at one instant: the answer of GET /capacity.
type Summary struct {
	// WorkersNeeded is the sum of every route's WorkersNeeded.
	WorkersNeeded int `json:"workers_needed"`
	// Stale is true when the last management API read failed or has not
	// happened, or any route is stale.
	Stale bool `json:"stale"`
	// Error says why the last management API read failed; empty (omitted) when
	// it did not. A route's own reasons are in its snapshot.
	Error string `json:"error,omitempty"`
	// Models holds a snapshot per tracked route, sorted by model and version.
	Models []Snapshot `json:"models"`
}

// snapshot computes the route's estimate as of now.
func (rt *route) snapshot(now time.Time, cfg *Config) Snapshot {
	t := rt.win.totals(now)
	rt.mu.Lock()
	b := rt.broker
	rt.mu.Unlock()

	window := cfg.Window.Seconds()
	s := Snapshot{
		Model:             rt.r.Model,
		Version:           rt.r.Version,
		Queue:             rt.queue,
		PublishRate:       b.stats.publishRate,
		TurnedAwayRate:    float64(t.turnedAway) / window,
		TurnedAway:        t.turnedAway,
		Answered:          t.answered,
		SlotsPerWorker:    t.slots,
		Ready:             b.stats.ready,
		Unacked:           b.stats.unacked,
		Consumers:         b.stats.consumers,
		TargetUtilization: cfg.TargetUtilization,
		TargetWait:        cfg.TargetWait.Seconds(),
		Window:            window,
		Stale:             b.stale,
		UpdatedAt:         b.updatedAt,
	}
	if b.stale {
		s.Error = b.err
	}
	s.ArrivalRate = s.PublishRate + s.TurnedAwayRate

	var service time.Duration
	switch {
	case t.answered > 0:
		service, s.ServiceTimeSource = time.Duration(t.serviceNanos/t.answered), ServiceTimeWindow
	case t.answeredEver:
		service, s.ServiceTimeSource = t.recentMean, ServiceTimeRecent
	default:
		service, s.ServiceTimeSource = cfg.DefaultServiceTime, ServiceTimeDefault
	}
	s.ServiceTime = service.Seconds()

	s.WorkersNeeded = Needed(Inputs{
		ArrivalRate:       s.ArrivalRate,
		ServiceTime:       service,
		Slots:             t.slots,
		Ready:             s.Ready,
		Unacked:           s.Unacked,
		TargetUtilization: cfg.TargetUtilization,
		TargetWait:        cfg.TargetWait,
	})
	return s
}

// sumModel adds up the snapshots of one model's versions, given in order (see
// [Farm.ModelSnapshot] for which fields are summed and which are maxed).
func sumModel(model string, vs []Snapshot) Snapshot {
	sum := Snapshot{Model: model, Versions: make([]string, 0, len(vs))}
	var errs []string
	for i, v := range vs {
		sum.Versions = append(sum.Versions, v.Version)
		sum.WorkersNeeded = min(sum.WorkersNeeded+v.WorkersNeeded, MaxWorkersNeeded)
		sum.ArrivalRate += v.ArrivalRate
		sum.PublishRate += v.PublishRate
		sum.TurnedAwayRate += v.TurnedAwayRate
		sum.TurnedAway += v.TurnedAway
		sum.Answered += v.Answered
		sum.Ready += v.Ready
		sum.Unacked += v.Unacked
		sum.Consumers += v.Consumers
		if i == 0 || v.ServiceTime > sum.ServiceTime {
			sum.ServiceTime, sum.ServiceTimeSource = v.ServiceTime, v.ServiceTimeSource
		}
		sum.SlotsPerWorker = max(sum.SlotsPerWorker, v.SlotsPerWorker)
		sum.TargetUtilization, sum.TargetWait, sum.Window = v.TargetUtilization, v.TargetWait, v.Window
		if v.Stale {
			sum.Stale = true
			errs = append(errs, "v"+v.Version+": "+v.Error)
		}
		if i == 0 || v.UpdatedAt.Before(sum.UpdatedAt) {
			sum.UpdatedAt = v.UpdatedAt
		}
	}
	if len(errs) > 0 {
		sum.Error = strings.Join(errs, "; ")
	}
	return sum
}
