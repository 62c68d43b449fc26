package capacity

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warren-farm/warren/pkg/queue"
)

// ErrTooManyRoutes is returned by [Farm.Track] for a new route once
// Config.MaxRoutes routes are tracked.
var ErrTooManyRoutes = errors.New("capacity: too many routes")

// Farm computes the workers-needed estimate of every tracked route (model
// version) from one management API read per interval for all their request
// queues. It is safe for concurrent use. Create it with [New].
type Farm struct {
	cfg       Config
	mgmt      *managementAPI // nil without a management URL
	ownClient *http.Client   // the client New made, closed by Run; nil if given
	log       *slog.Logger

	// routes is replaced whole (copy on write) when a route is tracked, so the
	// reply path finds its route without a lock or an allocation.
	routes  atomic.Pointer[routeSet]
	last    atomic.Pointer[readResult] // the last read, nil before the first
	trackMu sync.Mutex                 // serialises storing routes, and last with it
	ignored atomic.Int64
	warned  atomic.Bool // ErrTooManyRoutes was logged

	refreshMu   sync.Mutex // one read at a time
	readFailing error      // class of the current read failure (log-once); under refreshMu
}

// routeSet is the tracked routes, never modified once stored.
type routeSet struct {
	byRoute map[queue.Route]*route
	sorted  []*route // by model, then version (compareRoutes)
}

// New returns a farm with no route tracked. It reports every invalid field of cfg
// at once. Nothing runs until [Farm.Run].
func New(cfg Config) (*Farm, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	f := &Farm{cfg: cfg, log: cfg.Logger.With("vhost", cfg.Vhost)}
	f.routes.Store(&routeSet{byRoute: map[queue.Route]*route{}})
	if cfg.ManagementURL == "" {
		return f, nil
	}
	hc := cfg.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		hc = &http.Client{Timeout: defaultHTTPTimeout, Transport: tr}
		f.ownClient = hc
	}
	m, err := newManagementAPI(cfg.ManagementURL, cfg.Vhost, cfg.Window, hc)
	if err != nil {
		return nil, err
	}
	f.mgmt = m
	return f, nil
}

// Track starts estimating r: the API calls it when a model version becomes known.
// Tracking a tracked route does nothing. A new route starts from the last
// management API read, if any. Once Config.MaxRoutes routes are tracked, a new
// one is ignored and counted ([Farm.Ignored]) and Track returns ErrTooManyRoutes;
// an invalid route (see [queue.Route.Check]) is ignored and counted too. A route
// is never untracked.
func (f *Farm) Track(r queue.Route) error {
	_, err := f.route(r)
	switch {
	case errors.Is(err, ErrTooManyRoutes):
		return fmt.Errorf("%w: %s ignored, %d tracked (MaxRoutes)", err, r, f.cfg.MaxRoutes)
	case err != nil:
		return fmt.Errorf("capacity: %w", err)
	}
	return nil
}

// Ignored returns how many Track calls and observations were dropped because
// their route could not be tracked: MaxRoutes reached, or an invalid route.
func (f *Farm) Ignored() int64 { return f.ignored.Load() }

// route returns r's state, tracking r if it is new. For a tracked route it takes
// no lock and allocates nothing.
func (f *Farm) route(r queue.Route) (*route, error) {
	if rt := f.routes.Load().byRoute[r]; rt != nil {
		return rt, nil
	}
	return f.track(r)
}

func (f *Farm) track(r queue.Route) (*route, error) {
	if len(f.routes.Load().sorted) >= f.cfg.MaxRoutes {
		return nil, f.refuse(r)
	}
	if err := r.Check(); err != nil {
		f.ignored.Add(1)
		return nil, err
	}
	f.trackMu.Lock()
	defer f.trackMu.Unlock()
	set := f.routes.Load()
	if rt := set.byRoute[r]; rt != nil {
		return rt, nil
	}
	if len(set.sorted) >= f.cfg.MaxRoutes {
		return nil, f.refuse(r)
	}
	rt := newRoute(r, f.log, f.cfg.Window, f.mgmt == nil)
	if last := f.last.Load(); last != nil {
		rt.apply(last)
	}
	next := &routeSet{byRoute: maps.Clone(set.byRoute)}
	next.byRoute[r] = rt
	i, _ := slices.BinarySearchFunc(set.sorted, r, func(a *route, r queue.Route) int { return compareRoutes(a.r, r) })
	next.sorted = slices.Insert(slices.Clip(set.sorted), i, rt)
	f.routes.Store(next)
	rt.log.Debug("tracking the route")
	return rt, nil
}

// refuse counts a route over MaxRoutes, logging the first one.
func (f *Farm) refuse(r queue.Route) error {
	f.ignored.Add(1)
	if f.warned.CompareAndSwap(false, true) {
		f.log.Warn("MaxRoutes routes tracked; ignoring new ones (counted)",
			"max_routes", f.cfg.MaxRoutes, "first_ignored", r.String())
	}
	return ErrTooManyRoutes
}

// ObserveService records one answered request of route r: d is its compute time
// as the worker measured it, slots the answering worker's handler slots
// (CONCURRENCY; 0 or less leaves the last reported value). An untracked route is
// tracked first (see [Farm.Track]). It is meant for the reply path: for a
// tracked route, one short critical section and no allocation.
func (f *Farm) ObserveService(r queue.Route, d time.Duration, slots int) {
	if rt, _ := f.route(r); rt != nil {
		rt.win.observeService(time.Now(), d, slots)
	}
}

// ObserveTurnedAway records one request for route r turned away with no_workers
// (answered 503 without being published). Same cost as ObserveService.
func (f *Farm) ObserveTurnedAway(r queue.Route) {
	if rt, _ := f.route(r); rt != nil {
		rt.win.observeTurnedAway(time.Now())
	}
}
