package redisstore

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warren-farm/warren/pkg/jobs"
)

// The tests in this file need no database: they run under -short too.

func TestCeilMicros(t *testing.T) {
	base := time.Unix(100, 0)
	for _, tc := range []struct {
		t    time.Time
		want int64
	}{
		{base, 100_000_000},
		{base.Add(time.Nanosecond), 100_000_001},
		{base.Add(999 * time.Nanosecond), 100_000_001},
		{base.Add(1000 * time.Nanosecond), 100_000_001},
	} {
		if got := ceilMicros(tc.t); got != tc.want {
			t.Errorf("ceilMicros(%v) = %d, want %d", tc.t.Sub(base), got, tc.want)
		}
	}
}

func TestJobFromMapCorrupt(t *testing.T) {
	for _, m := range []map[string]string{
		{"id": "a"},                    // no status
		{"id": "a", "status": "weird"}, // unknown status
		{"id": "a", "status": "queued", "created": "x"},   // bad time
		{"id": "a", "status": "failed", "error": "{oops"}, // bad error JSON
		{"status": "queued", "created": "1"},              // no id
	} {
		if _, err := jobFromMap(m); err == nil {
			t.Errorf("jobFromMap(%v) accepted a corrupt hash", m)
		}
	}
}

// TestRelayNotices: notices reach the waiters of their job; a
// resubscription wakes every waiter; the relay ends when the channel closes.
// Every step is bounded: a lost notice fails the test instead of hanging it.
func TestRelayNotices(t *testing.T) {
	s := &RedisStore{waiters: jobs.NewNotifier(), log: slog.New(slog.DiscardHandler)}
	msgs := make(chan any, 4)
	s.wg.Add(1)
	go s.relayNotices(msgs)
	stopped := make(chan struct{})
	go func() { s.wg.Wait(); close(stopped) }()
	var closeOnce sync.Once
	closeMsgs := func() { closeOnce.Do(func() { close(msgs) }) }
	// After a failed step: stop the relay before the leak check. If it does
	// not stop, goleak reports it.
	defer closeMsgs()
	a, cancelA := s.waiters.Subscribe("a")
	defer cancelA()
	b, cancelB := s.waiters.Subscribe("b")
	defer cancelB()

	msgs <- &redis.Message{Channel: "c", Payload: "a"}
	recvNotice(t, a, "notice for a")
	select {
	case <-b:
		t.Fatal("the notice for a woke b")
	default:
	}
	msgs <- &redis.Subscription{Kind: "subscribe", Channel: "c", Count: 1}
	recvNotice(t, a, "resubscription: a")
	recvNotice(t, b, "resubscription: b")
	closeMsgs()
	recvNotice(t, stopped, "relay stop after its channel closed")
}

// noticeWithin bounds how long the unit tests wait for a notice, so a lost
// one fails the test instead of hanging it.
const noticeWithin = 5 * time.Second

// recvNotice fails t unless ch delivers (or is closed) within noticeWithin.
func recvNotice(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(noticeWithin):
		t.Fatalf("%s: no notice within %v", what, noticeWithin)
	}
}
