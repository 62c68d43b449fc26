package capacity

import (
	"slices"
	"strings"
	"time"

	"github.com/warren-farm/warren/pkg/queue"
)

// Snapshot returns route r's current estimate with its inputs: the local
// observations of the last Window as of now, and the management API's values as
// last read. It reports false for a route that is not tracked (and does not
// track it).
func (f *Farm) Snapshot(r queue.Route) (Snapshot, bool) {
	rt := f.routes.Load().byRoute[r]
	if rt == nil {
		return Snapshot{}, false
	}
	return rt.snapshot(time.Now(), &f.cfg), true
}

// Snapshots returns the snapshot of every tracked route, sorted by model and
// then by version as a number. It takes no farm-wide lock (each route's own
// locks briefly) and allocates only the slice, so a metrics scrape can call it.
func (f *Farm) Snapshots() []Snapshot {
	set := f.routes.Load()
	now := time.Now()
	out := make([]Snapshot, len(set.sorted))
	for i, rt := range set.sorted {
		out[i] = rt.snapshot(now, &f.cfg)
	}
	return out
}

// ModelSnapshot returns the sum over the tracked versions of model, for a worker
// pool that serves all of them; false when no version of model is tracked.
//
// Summed: WorkersNeeded (the sum of each version's own estimate, so every
// version with demand counts at least 1), ArrivalRate, PublishRate,
// TurnedAwayRate, TurnedAway, Answered, Ready, Unacked and Consumers.
// Maxed: ServiceTime (the slowest version's, with its ServiceTimeSource) and
// SlotsPerWorker. Stale if any version is; Error lists the stale versions'
// reasons ("v2: …; v3: …"); UpdatedAt is the oldest version's (omitted if any
// was never read). Version and Queue are empty; Versions lists the versions.
func (f *Farm) ModelSnapshot(model string) (Snapshot, bool) {
	sorted := f.routes.Load().sorted
	i, _ := slices.BinarySearchFunc(sorted, model, func(rt *route, m string) int { return strings.Compare(rt.r.Model, m) })
	j := i
	for j < len(sorted) && sorted[j].r.Model == model {
		j++
	}
	if i == j {
		return Snapshot{}, false
	}
	now := time.Now()
	vs := make([]Snapshot, 0, j-i)
	for _, rt := range sorted[i:j] {
		vs = append(vs, rt.snapshot(now, &f.cfg))
	}
	return sumModel(model, vs), true
}

// Summary returns every route's snapshot and their total: the answer of
// GET /capacity.
func (f *Farm) Summary() Summary {
	s := Summary{Models: f.Snapshots()}
	switch last := f.last.Load(); {
	case f.mgmt == nil:
		s.Stale, s.Error = true, "no management URL configured"
	case last == nil:
		s.Stale, s.Error = true, "management API not read yet"
	case last.err != nil:
		s.Stale, s.Error = true, last.err.Error()
	}
	for _, m := range s.Models {
		s.WorkersNeeded = min(s.WorkersNeeded+m.WorkersNeeded, MaxWorkersNeeded)
		s.Stale = s.Stale || m.Stale
	}
	return s
}
