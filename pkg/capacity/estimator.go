package capacity

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Where [Snapshot].ServiceTime comes from.
const (
	ServiceTimeWindow  = "window"  // mean of the answers in the window
	ServiceTimeRecent  = "recent"  // moving average of earlier answers
	ServiceTimeDefault = "default" // Config.DefaultServiceTime: nothing answered yet
)

// Snapshot is the estimate and every input it rests on, at one instant. Rates
// are per second over the window; durations are in seconds.
type Snapshot struct {
	// WorkersNeeded is the estimate: Needed of the inputs below.
	WorkersNeeded int `json:"workersNeeded"`
	// ArrivalRate is λ = PublishRate + TurnedAwayRate, requests/s.
	ArrivalRate float64 `json:"arrivalRate"`
	// PublishRate is the publish rate into the queue (management API), msg/s.
	PublishRate float64 `json:"publishRate"`
	// TurnedAwayRate is the rate of no_workers rejections seen here, requests/s.
	TurnedAwayRate float64 `json:"turnedAwayRate"`
	// TurnedAway is the number of no_workers rejections in the window.
	TurnedAway int64 `json:"turnedAway"`
	// ServiceTime is S, the mean service time used, in seconds.
	ServiceTime float64 `json:"serviceTime"`
	// ServiceTimeSource says where ServiceTime comes from: "window", "recent"
	// or "default".
	ServiceTimeSource string `json:"serviceTimeSource"`
	// Answered is the number of answered requests observed in the window.
	Answered int64 `json:"answered"`
	// SlotsPerWorker is C as last reported by a worker; 0 until the first
	// answer (the formula then uses 1).
	SlotsPerWorker int `json:"slotsPerWorker"`
	// Ready, Unacked and Consumers are the queue's messages_ready,
	// messages_unacknowledged and consumers as last read.
	Ready     int `json:"ready"`
	Unacked   int `json:"unacked"`
	Consumers int `json:"consumers"`
	// TargetUtilization is U; TargetWait is W in seconds; Window is the
	// averaging window in seconds.
	TargetUtilization float64 `json:"targetUtilization"`
	TargetWait        float64 `json:"targetWait"`
	Window            float64 `json:"window"`
	// Stale is true while the last management API read failed (the values of
	// the last good read are kept), found no queue (counted as empty), found no
	// statistics yet, or has not happened yet.
	Stale bool `json:"stale"`
	// Error says why Stale is true; empty when it is not.
	Error string `json:"error,omitempty"`
	// UpdatedAt is when Ready, Unacked, Consumers and PublishRate were last
	// read successfully; omitted before the first such read.
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
}

// brokerState is what the management API last said.
type brokerState struct {
	stats     queueStats
	stale     bool
	err       string
	updatedAt time.Time
	failing   error // class of the current failure, for log-once; nil when fine
}

// Estimator computes the workers-needed estimate. It is safe for concurrent use.
// Create it with [New].
type Estimator struct {
	cfg       Config
	mgmt      *managementAPI // nil without a management URL
	ownClient *http.Client   // the client New made, closed by Run; nil if given
	log       *slog.Logger
	win       *window

	mu     sync.Mutex
	broker brokerState
}

// New returns an estimator for cfg's queue. It reports every invalid field of
// cfg at once. Nothing runs until [Estimator.Run].
func New(cfg Config) (*Estimator, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e := &Estimator{cfg: cfg, win: newWindow(cfg.Window),
		log: cfg.Logger.With("queue", cfg.Queue, "vhost", cfg.Vhost)}
	e.broker = brokerState{stale: true, err: "management API not read yet"}
	if cfg.ManagementURL == "" {
		e.broker.err = "no management URL configured"
		return e, nil
	}
	hc := cfg.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		hc = &http.Client{Timeout: defaultHTTPTimeout, Transport: tr}
		e.ownClient = hc
	}
	m, err := newManagementAPI(cfg.ManagementURL, cfg.Vhost, cfg.Queue, cfg.Window, hc)
	if err != nil {
		return nil, err
	}
	e.mgmt = m
	return e, nil
}

// ObserveService records one answered request: d is its compute time as the
// worker measured it, slots the answering worker's handler slots (CONCURRENCY;
// 0 or less leaves the last reported value). It is meant for the reply path:
// one short critical section, no allocation.
func (e *Estimator) ObserveService(d time.Duration, slots int) {
	e.win.observeService(time.Now(), d, slots)
}

// ObserveTurnedAway records one request turned away with no_workers (answered
// 503 without being published). Same cost as ObserveService.
func (e *Estimator) ObserveTurnedAway() {
	e.win.observeTurnedAway(time.Now())
}

// Run reads the management API at once and then every Config.Interval until ctx
// is done, and returns then. It starts no goroutine of its own, and when it made
// its own HTTP client (Config.HTTPClient nil) it closes that client's idle
// connections on the way out. Without a management URL it just waits for ctx.
// Call it once.
func (e *Estimator) Run(ctx context.Context) {
	if e.ownClient != nil {
		defer e.ownClient.CloseIdleConnections()
	}
	if e.mgmt == nil {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(e.cfg.Interval)
	defer t.Stop()
	for {
		_ = e.Refresh(ctx) // logged and recorded in the snapshot
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Refresh reads the management API once and updates the broker inputs. On
// ErrQueueNotFound they are set to zero; on any other error the last values are
// kept. Either way the snapshot is marked stale. An error caused by ctx ending
// changes nothing. Run calls Refresh; tests and one-shot callers may too.
func (e *Estimator) Refresh(ctx context.Context) error {
	if e.mgmt == nil {
		return errors.New("capacity: no management URL configured")
	}
	stats, err := e.mgmt.read(ctx)
	if err != nil && ctx.Err() != nil {
		return err
	}
	now := time.Now()

	e.mu.Lock()
	defer e.mu.Unlock()
	b := &e.broker
	log := e.log
	if err == nil {
		if b.failing != nil && b.failing != ErrNoStatistics {
			log.Info("management API gives queue statistics again")
		}
		*b = brokerState{stats: stats, updatedAt: now}
		return nil
	}

	// Log each kind of failure once at Warn when it starts, repeats at Debug.
	// Missing statistics are normal for a few seconds after the queue is
	// declared, so they never reach Warn.
	class := errOther
	switch {
	case errors.Is(err, ErrQueueNotFound):
		class = ErrQueueNotFound
	case errors.Is(err, ErrNoStatistics):
		class = ErrNoStatistics
	}
	switch {
	case class == b.failing || class == ErrNoStatistics:
		log.Debug("no queue statistics from the management API", "err", err)
	case class == ErrQueueNotFound:
		log.Warn("request queue not found in the management API; counting it as empty", "err", err)
	default:
		log.Warn("management API unreadable; keeping the last queue statistics", "err", err)
	}
	b.failing, b.stale, b.err = class, true, err.Error()
	if class == ErrQueueNotFound {
		b.stats = queueStats{} // no queue: nothing is waiting or arriving
	}
	return err
}

// errOther classes every failure but the two sentinels, for log-once.
var errOther = errors.New("other")

// Snapshot returns the current estimate with its inputs: the local observations
// of the last Window as of now, and the management API's values as last read.
func (e *Estimator) Snapshot() Snapshot {
	now := time.Now()
	t := e.win.totals(now)
	e.mu.Lock()
	b := e.broker
	e.mu.Unlock()

	window := e.cfg.Window.Seconds()
	s := Snapshot{
		PublishRate:       b.stats.publishRate,
		TurnedAwayRate:    float64(t.turnedAway) / window,
		TurnedAway:        t.turnedAway,
		Answered:          t.answered,
		SlotsPerWorker:    t.slots,
		Ready:             b.stats.ready,
		Unacked:           b.stats.unacked,
		Consumers:         b.stats.consumers,
		TargetUtilization: e.cfg.TargetUtilization,
		TargetWait:        e.cfg.TargetWait.Seconds(),
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
		service, s.ServiceTimeSource = e.cfg.DefaultServiceTime, ServiceTimeDefault
	}
	s.ServiceTime = service.Seconds()

	s.WorkersNeeded = Needed(Inputs{
		ArrivalRate:       s.ArrivalRate,
		ServiceTime:       service,
		Slots:             t.slots,
		Ready:             s.Ready,
		Unacked:           s.Unacked,
		TargetUtilization: e.cfg.TargetUtilization,
		TargetWait:        e.cfg.TargetWait,
	})
	return s
}
