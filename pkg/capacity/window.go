package capacity

import (
	"sync"
	"time"
)

// numBuckets is how many buckets a window is cut into: observations age out in
// steps of Window/numBuckets (1s for the default minute).
const numBuckets = 60

// ewmaWeight is the weight of a new observation in the recent mean service time
// used when the window holds none.
const ewmaWeight = 1.0 / 32

// bucket holds the observations of one Window/numBuckets slice of time.
type bucket struct {
	epoch        int64 // now / width when the bucket was last reset
	answered     int64
	serviceNanos int64
	turnedAway   int64
}

// window is a ring of buckets over the last Window. Its zero value is not
// usable: set width.
type window struct {
	width int64 // bucket width in ns, > 0

	mu           sync.Mutex
	buckets      [numBuckets]bucket
	recentMean   float64 // ns, moving average over all answers
	answeredEver bool    // recentMean is meaningful
	slots        int     // last reported slots per worker; 0 before the first
}

// windowTotals are a window's sums at one instant.
type windowTotals struct {
	answered     int64
	serviceNanos int64
	turnedAway   int64
	recentMean   time.Duration // valid if answeredEver
	answeredEver bool
	slots        int
}

func newWindow(d time.Duration) *window {
	return &window{width: max(int64(d)/numBuckets, 1)}
}

// current returns the bucket for now, reset if it last held an older slice.
// w.mu must be held.
func (w *window) current(now time.Time) *bucket {
	epoch := now.UnixNano() / w.width
	b := &w.buckets[epoch%numBuckets]
	if b.epoch != epoch {
		*b = bucket{epoch: epoch}
	}
	return b
}

func (w *window) observeService(now time.Time, d time.Duration, slots int) {
	d = max(d, 0)
	w.mu.Lock()
	b := w.current(now)
	b.answered++
	b.serviceNanos += int64(d)
	if !w.answeredEver {
		w.recentMean, w.answeredEver = float64(d), true
	} else {
		w.recentMean += ewmaWeight * (float64(d) - w.recentMean)
	}
	if slots > 0 {
		w.slots = slots
	}
	w.mu.Unlock()
}

func (w *window) observeTurnedAway(now time.Time) {
	w.mu.Lock()
	w.current(now).turnedAway++
	w.mu.Unlock()
}

// totals sums the buckets of the numBuckets slices up to and including now's.
func (w *window) totals(now time.Time) windowTotals {
	epoch := now.UnixNano() / w.width
	w.mu.Lock()
	defer w.mu.Unlock()
	t := windowTotals{recentMean: time.Duration(w.recentMean), answeredEver: w.answeredEver, slots: w.slots}
	for i := range w.buckets {
		b := &w.buckets[i]
		if b.epoch > epoch-numBuckets && b.epoch <= epoch {
			t.answered += b.answered
			t.serviceNanos += b.serviceNanos
			t.turnedAway += b.turnedAway
		}
	}
	return t
}
