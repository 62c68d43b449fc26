package capacity

import (
	"context"
	"errors"
	"time"
)

// Run reads the management API at once and then every Config.Interval until ctx
// is done, and returns then. Each read is one request for every request queue
// of the vhost. Run starts no goroutine of its own, and when it made its own
// HTTP client (Config.HTTPClient nil) it closes that client's idle connections
// on the way out. Without a management URL it just waits for ctx. Call it once.
func (f *Farm) Run(ctx context.Context) {
	if f.ownClient != nil {
		defer f.ownClient.CloseIdleConnections()
	}
	if f.mgmt == nil {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(f.cfg.Interval)
	defer t.Stop()
	for {
		_ = f.Refresh(ctx) // logged and recorded in the snapshots
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Refresh reads the management API once and updates every route's broker inputs.
// It returns nil when the list of queues was read, whatever it said of each
// route (a route's queue missing or without statistics yet is in its
// [Snapshot].Error); ErrVhostNotFound when the vhost does not exist (every route
// then counts as empty); any other error when the read failed (every route keeps
// its last values). Either error marks every route stale. An error caused by ctx
// ending changes nothing. Run calls Refresh; tests and one-shot callers may too.
func (f *Farm) Refresh(ctx context.Context) error {
	if f.mgmt == nil {
		return errors.New("capacity: no management URL configured")
	}
	f.refreshMu.Lock()
	defer f.refreshMu.Unlock()
	queues, err := f.mgmt.read(ctx)
	if err != nil && ctx.Err() != nil {
		return err
	}
	f.logRead(err)
	res := &readResult{queues: queues, err: err, at: time.Now()}
	// Store the read and take the routes together: a route tracked meanwhile
	// either is in set or starts from res.
	f.trackMu.Lock()
	f.last.Store(res)
	set := f.routes.Load()
	f.trackMu.Unlock()
	for _, rt := range set.sorted {
		rt.apply(res)
	}
	return err
}

// errOther classes every read failure but ErrVhostNotFound, for log-once.
var errOther = errors.New("other")

// logRead logs each kind of read failure once at Warn when it starts, repeats at
// Debug, and the recovery at Info. f.refreshMu must be held.
func (f *Farm) logRead(err error) {
	var class error
	switch {
	case err == nil:
	case errors.Is(err, ErrVhostNotFound):
		class = ErrVhostNotFound
	default:
		class = errOther
	}
	prev := f.readFailing
	f.readFailing = class
	switch {
	case class == nil && prev != nil:
		f.log.Info("management API gives queue statistics again")
	case class == nil:
	case class == prev:
		f.log.Debug("management API still unreadable", "err", err)
	case class == ErrVhostNotFound:
		f.log.Warn("vhost not found in the management API; counting every request queue as empty", "err", err)
	default:
		f.log.Warn("management API unreadable; keeping the last queue statistics", "err", err)
	}
}
