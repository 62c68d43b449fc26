package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// CallFunc makes one request and waits for its answer. It returns "" on
// success and a short failure label otherwise ("503", "timeout", ...). A
// CallFunc is used by one goroutine only, so it may keep reusable buffers.
type CallFunc func(ctx context.Context) (failure string)

// LoopConfig describes one closed-loop run.
type LoopConfig struct {
	// Concurrency is the number of callers, each with one request in flight.
	Concurrency int
	// Warmup is the time before the measured window; completions in it are
	// not counted.
	Warmup time.Duration
	// Duration is the length of the measured window.
	Duration time.Duration
	// OnWindowStart and OnWindowEnd, if set, are called (from a goroutine of
	// the runner) when the measured window opens and closes; the CPU sampler
	// hangs off them.
	OnWindowStart, OnWindowEnd func()
}

// RunClosedLoop runs cfg.Concurrency callers, each made by newCall with its
// index, in a closed loop for cfg.Warmup + cfg.Duration, and returns what
// completed inside the measured window. Calls still in flight when the window
// closes are cancelled through their context and not counted. It returns
// ctx's error if ctx ends first.
func RunClosedLoop(ctx context.Context, cfg LoopConfig, newCall func(i int) CallFunc) (*Result, error) {
	if cfg.Concurrency < 1 {
		return nil, fmt.Errorf("concurrency %d: need at least 1", cfg.Concurrency)
	}
	if cfg.Duration <= 0 {
		return nil, errors.New("duration must be positive")
	}
	calls := make([]CallFunc, cfg.Concurrency)
	for i := range calls {
		calls[i] = newCall(i)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	type local struct {
		lat   []time.Duration
		fails map[string]int
	}
	locals := make([]local, cfg.Concurrency)
	ws, we := cfg.Warmup, cfg.Warmup+cfg.Duration

	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		base  time.Time
	)
	for i := range calls {
		wg.Go(func() {
			<-start
			l := &locals[i]
			l.lat = make([]time.Duration, 0, 4096)
			call := calls[i]
			for runCtx.Err() == nil {
				t0 := time.Since(base)
				failure := call(runCtx)
				t1 := time.Since(base)
				if t1 >= we {
					return
				}
				if t1 < ws {
					continue
				}
				if failure == "" {
					l.lat = append(l.lat, t1-t0)
					continue
				}
				if l.fails == nil {
					l.fails = map[string]int{}
				}
				l.fails[failure]++
			}
		})
	}

	base = time.Now()
	close(start)
	waitUntil := func(off time.Duration) bool {
		t := time.NewTimer(time.Until(base.Add(off)))
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	ok := waitUntil(ws)
	if ok && cfg.OnWindowStart != nil {
		cfg.OnWindowStart()
	}
	ok = ok && waitUntil(we)
	if ok && cfg.OnWindowEnd != nil {
		cfg.OnWindowEnd()
	}
	cancel()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	res := &Result{Concurrency: cfg.Concurrency, Window: cfg.Duration, Failures: map[string]int{}}
	n := 0
	for _, l := range locals {
		n += len(l.lat)
	}
	res.Latencies = make([]time.Duration, 0, n)
	for _, l := range locals {
		res.Latencies = append(res.Latencies, l.lat...)
		for k, v := range l.fails {
			res.Failures[k] += v
		}
	}
	slices.Sort(res.Latencies)
	return res, nil
}
