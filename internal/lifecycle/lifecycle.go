// Package lifecycle is the process lifecycle the API server and the worker share
// (alertmanager's app lifecycle and asynq's server state are the models): one state
// value, a Ready channel, an idempotent Stop, and a named last-in-first-out
// teardown stack, so that whatever a Run opened is closed in reverse order and
// every failure is reported with the step's name.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
)

// State is where a component is in its life.
type State int32

// The states, in order.
const (
	New      State = iota // built, not running
	Starting              // running, not ready yet (connecting, loading models)
	Ready                 // serving
	Draining              // stop requested: finishing in-flight work
	Stopped               // Run returned
)

var stateNames = [...]string{"new", "starting", "ready", "draining", "stopped"}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", s)
}

// Lifecycle is embedded by a component with a blocking Run.
type Lifecycle struct {
	state    atomic.Int32
	ready    chan struct{}
	readyOne sync.Once
	stop     chan struct{}
	stopOne  sync.Once
	done     chan struct{}
	doneOne  sync.Once
	err      error // Run's result, set before done is closed

	mu       sync.Mutex
	cleanups []cleanup
	log      *slog.Logger
}

type cleanup struct {
	name string
	fn   func(context.Context) error
}

// Init prepares the lifecycle; call it in the component's constructor. log
// receives teardown failures (nil discards).
func (l *Lifecycle) Init(log *slog.Logger) {
	l.ready, l.stop, l.done = make(chan struct{}), make(chan struct{}), make(chan struct{})
	l.log = log
}

// State returns the current state.
func (l *Lifecycle) State() State { return State(l.state.Load()) }

// Set moves to s, unless the component is already draining or stopped (a late
// "ready" never undoes a stop).
func (l *Lifecycle) Set(s State) {
	for {
		cur := l.state.Load()
		if State(cur) >= Draining && s < State(cur) {
			return
		}
		if l.state.CompareAndSwap(cur, int32(s)) {
			break
		}
	}
	if s == Ready {
		l.readyOne.Do(func() { close(l.ready) })
	}
}

// Ready is closed once the component first became ready.
func (l *Lifecycle) Ready() <-chan struct{} { return l.ready }

// Stopping is closed once Stop was called.
func (l *Lifecycle) Stopping() <-chan struct{} { return l.stop }

// Done is closed once Run returned.
func (l *Lifecycle) Done() <-chan struct{} { return l.done }

// RequestStop asks Run to drain and return; it never blocks and is idempotent.
func (l *Lifecycle) RequestStop() { l.stopOne.Do(func() { close(l.stop) }) }

// Stop asks Run to drain and waits until it returned or ctx ended. It is
// idempotent: every call returns Run's result (or ctx's error if ctx ended first).
// A component that was never run is torn down at once (whatever its constructor
// pushed with OnStop is released).
func (l *Lifecycle) Stop(ctx context.Context) error {
	l.RequestStop()
	if l.state.CompareAndSwap(int32(New), int32(Stopped)) {
		l.Finish(l.Teardown(ctx))
	}
	select {
	case <-l.done:
		return l.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Finish records Run's result and marks the component stopped; Run calls it last.
func (l *Lifecycle) Finish(err error) {
	l.doneOne.Do(func() {
		l.err = err
		l.state.Store(int32(Stopped))
		close(l.done)
	})
}

// OnStop pushes a named cleanup; Teardown runs them last first.
func (l *Lifecycle) OnStop(name string, fn func(context.Context) error) {
	l.mu.Lock()
	l.cleanups = append(l.cleanups, cleanup{name, fn})
	l.mu.Unlock()
}

// Start moves a new component to Starting; it reports false when the component was
// already run or stopped (Run must then return at once).
func (l *Lifecycle) Start() bool { return l.state.CompareAndSwap(int32(New), int32(Starting)) }

// Teardown runs every cleanup pushed so far in reverse order, logs each failure
// with its step name, and returns them joined. Cleanups run once.
func (l *Lifecycle) Teardown(ctx context.Context) error {
	log := l.log
	l.mu.Lock()
	cs := l.cleanups
	l.cleanups = nil
	l.mu.Unlock()
	var errs []error
	for i := len(cs) - 1; i >= 0; i-- {
		if err := cs[i].fn(ctx); err != nil {
			if log != nil {
				log.Warn("stop step failed", "step", cs[i].name, "err", err)
			}
			errs = append(errs, fmt.Errorf("%s: %w", cs[i].name, err))
		}
	}
	return errors.Join(errs...)
}
