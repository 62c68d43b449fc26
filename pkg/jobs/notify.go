package jobs

import (
	"context"
	"sync"
	"time"
)

// Notifier fans finalisation notices out to the Waits of one process, and
// implements [Store.Wait] on top of them. A notice means "job id may have
// become final (or gone): re-read it"; a spurious one costs a read and
// nothing else. For Store implementations: the store calls Notify after
// every write that makes a job final or deletes it, and Close when it
// closes. Safe for concurrent use. The zero value is not usable: use
// [NewNotifier].
type Notifier struct {
	mu      sync.Mutex
	waiters map[string]map[chan struct{}]struct{}
	done    chan struct{} // closed by Close
	closed  bool
}

// NewNotifier returns a Notifier with no waiters.
func NewNotifier() *Notifier {
	return &Notifier{waiters: map[string]map[chan struct{}]struct{}{}, done: make(chan struct{})}
}

// Subscribe registers interest in id. The returned channel receives (at most
// one pending) notice; cancel must be called when done and may be called
// more than once.
func (n *Notifier) Subscribe(id string) (c <-chan struct{}, cancel func()) {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	set := n.waiters[id]
	if set == nil {
		set = map[chan struct{}]struct{}{}
		n.waiters[id] = set
	}
	set[ch] = struct{}{}
	n.mu.Unlock()
	return ch, func() {
		n.mu.Lock()
		// ch's set stays in the map while it holds ch: look it up again.
		if set := n.waiters[id]; set != nil {
			delete(set, ch)
			if len(set) == 0 {
				delete(n.waiters, id)
			}
		}
		n.mu.Unlock()
	}
}

// Notify wakes the waiters of id. It never blocks.
func (n *Notifier) Notify(id string) {
	n.mu.Lock()
	for ch := range n.waiters[id] {
		select {
		case ch <- struct{}{}:
		default: // a notice is already pending
		}
	}
	n.mu.Unlock()
}

// NotifyAll wakes every waiter, e.g. after notices may have been lost (a
// Redis subscription that reconnected).
func (n *Notifier) NotifyAll() {
	n.mu.Lock()
	for _, set := range n.waiters {
		for ch := range set {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	n.mu.Unlock()
}

// Close makes every current and future Wait return ErrClosed. Idempotent.
func (n *Notifier) Close() {
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		close(n.done)
	}
	n.mu.Unlock()
}

// Wait implements [Store.Wait] with get as the store's Get. It subscribes
// before the first read, so a final state committed between the read and
// the wait is not missed: its notice is already pending.
func (n *Notifier) Wait(ctx context.Context, get func(context.Context, string) (*Job, error), id string, timeout time.Duration) (*Job, error) {
	if timeout <= 0 {
		return get(ctx, id)
	}
	select {
	case <-n.done:
		return nil, ErrClosed
	default:
	}
	notices, cancel := n.Subscribe(id)
	defer cancel()
	// The first read is not cut short by ctx (it is one quick read): a Wait
	// whose ctx ends at once still returns the job as it is, as documented (the
	// API's long polls answer that way when it drains).
	j, err := get(context.WithoutCancel(ctx), id)
	if err != nil || j.Status.Final() {
		return j, err
	}
	if ctx.Err() != nil {
		return j, ctx.Err()
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case <-notices:
		case <-timer.C:
			// Not final yet; re-read so a running status is not reported
			// as queued (running events send no notice).
			cur, err := get(ctx, id)
			if err != nil {
				return j, err
			}
			return cur, nil
		case <-ctx.Done():
			return j, ctx.Err()
		case <-n.done:
			return j, ErrClosed
		}
		cur, err := get(ctx, id)
		if err != nil {
			return j, err
		}
		if j = cur; j.Status.Final() {
			return j, nil
		}
	}
}

// Waiters is how many Waits are subscribed to id now (tests, diagnostics).
func (n *Notifier) Waiters(id string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.waiters[id])
}
