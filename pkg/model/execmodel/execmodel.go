package execmodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/oip"
)

// Model is a model served by supervised child processes. It is safe for
// concurrent use.
type Model struct {
	cfg      Config
	log      *slog.Logger
	md       model.Metadata
	maxBatch int
	quit     chan struct{} // closed by Close
	wg       sync.WaitGroup

	mu      sync.Mutex
	slots   []slotState
	closed  bool
	lastErr string
	// free holds the children that are up and idle; a child taken from it is the
	// taker's until it is put back (or killed). A child that died while idle
	// stays until someone takes it and drops it.
	free []*instance
	// wake is closed (and replaced) whenever a child is freed or goes down, so
	// that callers waiting for a free child look again.
	wake chan struct{}
}

// slotState is one instance's supervision state.
type slotState struct {
	up       bool
	readyAt  time.Time
	failures int // fast failures in a row
}

var _ model.Predictor = (*Model)(nil)

// New validates cfg, starts the children and waits for their handshakes. It
// fails when none becomes ready: with an error wrapping [model.ErrUnavailable]
// when they started but did not load (the caller may try again later), a plain
// error when the command cannot run or the config is invalid. Children that fail
// while another succeeds are restarted in the background.
func New(ctx context.Context, cfg Config) (*Model, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	m := &Model{cfg: cfg, log: cfg.Logger.With("model", cfg.Name),
		quit: make(chan struct{}), slots: make([]slotState, cfg.Instances), wake: make(chan struct{})}
	type started struct {
		in  *instance
		f   *childFrame
		err error
	}
	res := make([]started, cfg.Instances)
	var wg sync.WaitGroup
	for i := range res {
		wg.Go(func() {
			in, err := m.spawn(i)
			if err != nil {
				res[i].err = err
				return
			}
			res[i].in = in
			res[i].f, res[i].err = m.handshake(in)
		})
	}
	wg.Wait()
	var first *childFrame
	var errs []error
	for _, r := range res {
		if r.err == nil && first == nil {
			first = r.f
		}
	}
	for i := range res {
		r := &res[i]
		if r.err == nil && !sameMetadata(first, r.f) {
			r.in.kill("its metadata differs from the first child's")
			r.err = fmt.Errorf("%w: model %s: child %d declares other inputs, outputs or max_batch_size than child 0", model.ErrUnavailable, cfg.Name, i)
		}
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	if first == nil || ctx.Err() != nil {
		for _, r := range res {
			if r.in != nil {
				r.in.terminate(cfg.StopTimeout)
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, errors.Join(errs...)
	}
	m.md = model.Metadata{Platform: first.Platform, Inputs: first.Inputs, Outputs: first.Outputs}
	if m.md.Platform == "" {
		m.md.Platform = "exec"
	}
	m.maxBatch = first.MaxBatchSize
	for i, r := range res {
		in := r.in
		if r.err != nil {
			m.log.Warn("child failed to start; retrying", "instance", i, "err", r.err)
			m.slots[i].failures = 1
			m.lastErr = r.err.Error()
			if in != nil {
				<-in.exited
			}
			in = nil
		} else {
			m.slots[i] = slotState{up: true, readyAt: time.Now()}
			m.free = append(m.free, in)
			m.log.Info("child ready", "instance", i, "pid", in.cmd.Process.Pid)
		}
		m.wg.Add(1)
		go m.supervise(i, in)
	}
	return m, nil
}

func sameMetadata(a, b *childFrame) bool {
	return a.MaxBatchSize == b.MaxBatchSize && a.Platform == b.Platform &&
		reflect.DeepEqual(a.Inputs, b.Inputs) && reflect.DeepEqual(a.Outputs, b.Outputs)
}

// supervise owns instance idx: it waits for its child to exit, then restarts it
// with backoff, until Close. in is the running child, or nil when none is.
func (m *Model) supervise(idx int, in *instance) {
	defer m.wg.Done()
	log := m.log.With("instance", idx)
	for {
		if in != nil {
			select {
			case <-in.exited:
			case <-m.quit:
				in.terminate(m.cfg.StopTimeout)
				m.setDown(idx, "")
				return
			}
			why := in.describeExit()
			m.mu.Lock()
			st := &m.slots[idx]
			if time.Since(st.readyAt) < m.cfg.StableAfter {
				st.failures++
			} else {
				st.failures = 0
			}
			m.mu.Unlock()
			m.setDown(idx, fmt.Sprintf("child %d exited (%s)", idx, why))
			log.Warn("child exited; restarting it", "exit", why)
			in = nil
		}
		m.mu.Lock()
		failures := m.slots[idx].failures
		m.mu.Unlock()
		delay := m.backoff(failures)
		t := time.NewTimer(delay)
		select {
		case <-m.quit:
			t.Stop()
			return
		case <-t.C:
		}
		next, err := m.spawn(idx)
		if err == nil {
			var f *childFrame
			if f, err = m.handshake(next); err == nil && !sameMetadata(m.frame(), f) {
				next.kill("its metadata differs from the model's")
				err = fmt.Errorf("model %s: child %d now declares other inputs, outputs or max_batch_size than when the model loaded", m.cfg.Name, idx)
			}
			if err != nil {
				<-next.exited
			}
		}
		if err != nil {
			m.mu.Lock()
			m.slots[idx].failures++
			m.lastErr = err.Error()
			m.mu.Unlock()
			log.Warn("child failed to start; retrying", "err", err, "failures", failures+1)
			continue
		}
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			next.terminate(m.cfg.StopTimeout)
			return
		}
		m.slots[idx].up, m.slots[idx].readyAt = true, time.Now()
		m.mu.Unlock()
		in = next
		m.release(in)
		log.Info("child ready", "pid", in.cmd.Process.Pid)
	}
}

// frame is the model's metadata as a ready frame, to compare a restarted child's.
func (m *Model) frame() *childFrame {
	return &childFrame{Platform: m.platformReported(), MaxBatchSize: m.maxBatch, Inputs: m.md.Inputs, Outputs: m.md.Outputs}
}

func (m *Model) platformReported() string {
	if m.md.Platform == "exec" {
		return ""
	}
	return m.md.Platform
}

// backoff is the delay before a restart after failures fast failures in a row.
func (m *Model) backoff(failures int) time.Duration {
	d := m.cfg.RestartBackoff
	for i := 1; i < failures && d < m.cfg.RestartBackoffMax; i++ {
		d *= 2
	}
	return min(d, m.cfg.RestartBackoffMax)
}

func (m *Model) setDown(idx int, why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.slots[idx].up = false
	if why != "" {
		m.lastErr = why
	}
	m.broadcast()
}

// Metadata is what the children declared in their ready frames.
func (m *Model) Metadata() model.Metadata { return m.md }

// MaxBatchSize is the most requests the children take in one frame (0: no
// limit); Predict splits larger batches.
func (m *Model) MaxBatchSize() int { return m.maxBatch }

// Healthy returns nil while at least one child is up and not crash-looping (up,
// and either fewer than MaxFailures fast failures in a row before it or up for
// StableAfter), else an error saying why.
func (m *Model) Healthy() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("%w: model %s is closed", model.ErrUnavailable, m.cfg.Name)
	}
	looping := 0
	for _, s := range m.slots {
		if !s.up {
			continue
		}
		if s.failures < m.cfg.MaxFailures || time.Since(s.readyAt) >= m.cfg.StableAfter {
			return nil
		}
		looping++
	}
	if looping > 0 {
		return fmt.Errorf("%w: model %s: its children keep dying (%d fast failures in a row); last: %s", model.ErrUnavailable, m.cfg.Name, m.cfg.MaxFailures, m.lastErr)
	}
	return fmt.Errorf("%w: model %s: no child is running; last: %s", model.ErrUnavailable, m.cfg.Name, m.lastErr)
}

// acquire takes a free child, waiting while at least one child is up (busy);
// when none is, it fails at once with model.ErrUnavailable.
func (m *Model) acquire(ctx context.Context) (*instance, error) {
	for {
		// A request already past its deadline must not reach a child: the
		// deadline would kill a healthy one.
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m.mu.Lock()
		for len(m.free) > 0 {
			in := m.free[len(m.free)-1]
			m.free = m.free[:len(m.free)-1]
			if !in.dead() {
				m.mu.Unlock()
				return in, nil
			}
		}
		closed, wake, lastErr := m.closed, m.wake, m.lastErr
		up := slices.ContainsFunc(m.slots, func(s slotState) bool { return s.up })
		m.mu.Unlock()
		switch {
		case closed:
			return nil, fmt.Errorf("%w: model %s is closed", model.ErrUnavailable, m.cfg.Name)
		case !up:
			return nil, fmt.Errorf("%w: model %s: no child is running (restarting; last: %s)", model.ErrUnavailable, m.cfg.Name, lastErr)
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// release puts an idle child back on the free list and wakes the waiters.
func (m *Model) release(in *instance) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.free = append(m.free, in)
	m.broadcast()
}

// broadcast wakes the callers waiting in acquire; m.mu is held.
func (m *Model) broadcast() {
	close(m.wake)
	m.wake = make(chan struct{})
}

// Predict validates each request against the metadata (a misfit is that item's
// error), then sends the others to free children, at most max_batch_size per
// frame. A child that dies, breaks the protocol or misses the deadline fails the
// batch: model.ErrUnavailable, or the context's error; it is restarted.
func (m *Model) Predict(ctx context.Context, batch []*model.Request) ([]*model.Response, error) {
	resps := make([]*model.Response, len(batch))
	var idx []int
	var items [][]byte
	var ids []string
	for i, r := range batch {
		if err := m.md.Validate(r); err != nil {
			resps[i] = &model.Response{Err: err}
			continue
		}
		id := r.ID
		if id == "" {
			id = strconv.Itoa(i)
		}
		b, err := oip.EncodeRequest(id, r)
		if err != nil {
			resps[i] = &model.Response{Err: &model.InputError{Msg: fmt.Sprintf("cannot be sent to the model as JSON: %v", err)}}
			continue
		}
		idx, items, ids = append(idx, i), append(items, b), append(ids, id)
	}
	chunk := m.maxBatch
	if chunk == 0 {
		chunk = max(len(idx), 1)
	}
	for start := 0; start < len(idx); start += chunk {
		end := min(start+chunk, len(idx))
		in, err := m.acquire(ctx)
		if err != nil {
			return nil, err
		}
		f, err := m.call(ctx, in, items[start:end], ids[start:end])
		if err != nil {
			return nil, err
		}
		m.release(in)
		if f.Type == "error" {
			return nil, fmt.Errorf("model %s: the batch failed: %s", m.cfg.Name, f.Error)
		}
		for j, raw := range f.Results {
			i := idx[start+j]
			resps[i] = m.decodeResult(raw, batch[i])
		}
	}
	return resps, nil
}

// decodeResult turns one result item into a response.
func (m *Model) decodeResult(raw json.RawMessage, r *model.Request) *model.Response {
	var res result
	if err := json.Unmarshal(raw, &res); err != nil {
		return &model.Response{Err: fmt.Errorf("model %s: a result that is not a JSON object: %v", m.cfg.Name, err)}
	}
	switch res.Status {
	case statusOK:
	case statusBadInput:
		return &model.Response{Err: &model.InputError{Msg: "the model refused it: " + res.Error}}
	case statusError:
		return &model.Response{Err: fmt.Errorf("the model failed: %s", res.Error)}
	case statusUnavailable:
		return &model.Response{Err: fmt.Errorf("%w: %s", model.ErrUnavailable, res.Error)}
	default:
		return &model.Response{Err: fmt.Errorf("model %s: a result with status %q (want ok, bad_input, error or unavailable)", m.cfg.Name, res.Status)}
	}
	dec, err := oip.DecodeResponse(raw, oip.Limits{})
	if err != nil {
		// %v: the decoder's errors mean bad input for a request; here the model is
		// at fault.
		return &model.Response{Err: fmt.Errorf("model %s: its answer is not valid: %v", m.cfg.Name, err)}
	}
	outs, err := model.Select(dec.Outputs, r.Outputs)
	if err != nil {
		return &model.Response{Err: fmt.Errorf("model %s: %w", m.cfg.Name, err)}
	}
	return &model.Response{Outputs: outs}
}

// Close stops every child (SIGTERM, then SIGKILL after StopTimeout) and waits
// until they are reaped. Predict fails with model.ErrUnavailable afterwards.
func (m *Model) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.broadcast()
	m.mu.Unlock()
	close(m.quit)
	m.wg.Wait()
	return nil
}
