package capacity

import (
	"cmp"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/warren-farm/warren/pkg/queue"
)

// brokerState is what the management API last said about one route's queue.
type brokerState struct {
	stats     queueStats
	stale     bool
	err       string
	updatedAt time.Time
	missing   bool // the last good read did not list the queue (log-once)
}

// route is the state of one tracked model version: its local observations and
// its queue's statistics as last read.
type route struct {
	r     queue.Route
	queue string // r.RequestQueue()
	log   *slog.Logger
	win   *window

	mu     sync.Mutex
	broker brokerState
}

// readResult is the outcome of one management API read, for every route.
type readResult struct {
	queues map[string]queueEntry // the request queues listed; nil when err != nil
	err    error                 // nil, ErrVhostNotFound or why the read failed
	at     time.Time
}

func newRoute(r queue.Route, log *slog.Logger, window time.Duration, noMgmt bool) *route {
	rt := &route{r: r, queue: r.RequestQueue(), win: newWindow(window),
		log: log.With("model", r.Model, "version", r.Version, "queue", r.RequestQueue())}
	rt.broker = brokerState{stale: true, err: "management API not read yet"}
	if noMgmt {
		rt.broker.err = "no management URL configured"
	}
	return rt
}

// apply updates the route's broker inputs from a read: a failed read keeps the
// last values, marked stale; a missing vhost or queue zeroes them (nothing is
// waiting or arriving), marked stale; a queue without statistics yet keeps them,
// marked stale. Read failures are logged by the farm, a missing queue here (once
// when it starts).
func (rt *route) apply(res *readResult) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	b := &rt.broker
	if res.err != nil {
		if errors.Is(res.err, ErrVhostNotFound) {
			b.stats = queueStats{}
		}
		b.stale, b.err = true, res.err.Error()
		return
	}
	e, listed := res.queues[rt.queue]
	switch {
	case !listed:
		if !b.missing {
			rt.log.Warn("request queue not found in the management API; counting it as empty")
		}
		b.stats, b.stale, b.err, b.missing = queueStats{}, true, ErrQueueNotFound.Error(), true
		return
	case b.missing:
		rt.log.Info("request queue found in the management API")
		b.missing = false
	}
	if !e.hasStats {
		rt.log.Debug("no statistics for the request queue yet")
		b.stale, b.err = true, ErrNoStatistics.Error()
		return
	}
	*b = brokerState{stats: e.stats, updatedAt: res.at}
}

// compareRoutes orders routes by model, then by version as a number (versions
// are positive integers without leading zeros, so a shorter one is smaller).
func compareRoutes(a, b queue.Route) int {
	return cmp.Or(cmp.Compare(a.Model, b.Model),
		cmp.Compare(len(a.Version), len(b.Version)),
		cmp.Compare(a.Version, b.Version))
}
