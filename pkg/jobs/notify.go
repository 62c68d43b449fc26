package jobs

import (
	"context"
	"sync"
	"time"
)

// notifier fans finalisation notices out to the Waits of this process. A
// notice means "job id may have become final: re-read it"; a spurious one
// costs a read and nothing else.
type notifier struct {
	mu      sync.Mutex
	waiters map[string]map[chan struct{}]struct{}
	done    chan struct{} // closed by close
	closed  bool
}

func newNotifier() *notifier {
	return &notifier{waiters: map[string]map[chan struct{}]struct{}{}, done: make(chan struct{})}
}

// subscribe registers interest in id. The returned channel receives (at most
// one pending) notice; cancel must be called when done.
func (n *notifier) subscribe(id string) (c <-chan struct{}, cancel func()) {
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

// notify wakes the waiters of id.
func (n *notifier) notify(id string) {
	n.mu.Lock()
	for ch := range n.waiters[id] {
		select {
		case ch <- struct{}{}:
		default: // a notice is already pending
		}
	}
	n.mu.Unlock()
}

// notifyAll wakes every waiter, e.g. after notices may have been lost (a
// Redis subscription that reconnected).
func (n *notifier) notifyAll() {
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

// close makes every current and future Wait return ErrClosed. Idempotent.
func (n *notifier) close() {
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		close(n.done)
	}
	n.mu.Unlock()
}

// wait implements Store.Wait on top of a notifier and the store's Get.
// It subscribes before the first read, so a final state committed between
// the read and the select is not missed: its notice is already pending.
func wait(ctx context.Context, n *notifier, get func(context.Context, string) (*Job, error), id string, timeout time.Duration) (*Job, error) {
	if timeout <= 0 {
		return get(ctx, id)
	}
	select {
	case <-n.done:
		return nil, ErrClosed
	default:
	}
	notices, cancel := n.subscribe(id)
	defer cancel()
	j, err := get(ctx, id)
	if err != nil || j.Status.Final() {
		return j, err
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

// count is how many Waits are subscribed to id (tests).
func (n *notifier) count(id string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.waiters[id])
}
