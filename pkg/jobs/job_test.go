package jobs

import (
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The tests in this file need no database: they run under -short too.

func TestStatusFinal(t *testing.T) {
	for _, tc := range []struct {
		s     Status
		final bool
	}{
		{Queued, false}, {Running, false}, {Succeeded, true}, {Failed, true},
		{Expired, true}, {Cancelled, true}, {"", false}, {"bogus", false},
	} {
		if got := tc.s.Final(); got != tc.final {
			t.Errorf("%q.Final() = %v, want %v", tc.s, got, tc.final)
		}
	}
}

func TestEventValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   Event
		ok   bool
	}{
		{"running", Event{JobID: "a", Type: EventRunning, Attempt: 1}, true},
		{"running with status running", Event{JobID: "a", Type: EventRunning, Status: Running}, true},
		{"succeeded", Event{JobID: "a", Type: EventFinal, Status: Succeeded, Result: json.RawMessage(`{"x":1}`)}, true},
		{"failed", Event{JobID: "a", Type: EventFinal, Status: Failed, Error: &Error{Reason: "model_error"}}, true},
		{"expired", Event{JobID: "a", Type: EventFinal, Status: Expired}, true},
		{"no id", Event{Type: EventRunning}, false},
		{"unknown type", Event{JobID: "a", Type: "done"}, false},
		{"final without status", Event{JobID: "a", Type: EventFinal}, false},
		{"final cancelled", Event{JobID: "a", Type: EventFinal, Status: Cancelled}, false},
		{"final queued", Event{JobID: "a", Type: EventFinal, Status: Queued}, false},
		{"running with final status", Event{JobID: "a", Type: EventRunning, Status: Succeeded}, false},
		{"negative attempt", Event{JobID: "a", Type: EventRunning, Attempt: -1}, false},
		{"bad result", Event{JobID: "a", Type: EventFinal, Status: Succeeded, Result: json.RawMessage(`{`)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.ev.Validate()
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalidEvent)) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestEventJSON pins the wire format workers publish.
func TestEventJSON(t *testing.T) {
	ev := Event{JobID: "j1", Type: EventFinal, Status: Failed, At: time.Date(2031, 1, 2, 3, 4, 5, 6, time.UTC),
		Attempt: 2, Worker: "w", Error: &Error{Reason: "model_error", Message: "boom"}}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"job_id":"j1","type":"final","status":"failed","at":"2031-01-02T03:04:05.000000006Z","attempt":2,"worker":"w","error":{"reason":"model_error","message":"boom"}}`
	if string(b) != want {
		t.Fatalf("Event JSON\n got %s\nwant %s", b, want)
	}
}

// TestJobJSON: the HTTP body fields only; started_at/finished_at are null
// until set; internal fields never appear.
func TestJobJSON(t *testing.T) {
	j := Job{ID: "j1", Status: Queued, CreatedAt: time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC),
		RequestID: "r", Input: []byte("secret"), IdempotencyKey: "k", BodyHash: "h", Published: true, Worker: "w"}
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"id":"j1","status":"queued","created_at":"2031-01-02T03:04:05Z","started_at":null,"finished_at":null,"attempts":0}`
	if string(b) != want {
		t.Fatalf("Job JSON\n got %s\nwant %s", b, want)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	started, finished := t0.Add(time.Second), t0.Add(2*time.Second)
	j := &Job{ID: "a", Status: Failed, CreatedAt: t0, StartedAt: &started, FinishedAt: &finished, Attempts: 3,
		Result: json.RawMessage(`{"a":[1,2]}`), Error: &Error{Reason: "r", Message: "m"}, RequestID: "req",
		Input: []byte{0, 1, 2, 255}, IdempotencyKey: "k", BodyHash: "h", Published: true, StartBy: t0.Add(time.Hour), Worker: "w"}
	data, err := encodeJob(j)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeJob(data)
	if err != nil {
		t.Fatal(err)
	}
	sameJob(t, "record round trip", got, j)
}

func TestIndexKeyOrder(t *testing.T) {
	a := indexKey(t0, "zzz")
	b := indexKey(t0.Add(time.Nanosecond), "aaa")
	if string(a) >= string(b) {
		t.Fatal("index keys do not sort by time first")
	}
	ns, id := splitIndexKey(b)
	if ns != t0.Add(time.Nanosecond).UnixNano() || id != "aaa" {
		t.Fatalf("splitIndexKey = %d, %q", ns, id)
	}
}

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

func TestNotifier(t *testing.T) {
	n := newNotifier()
	a, cancelA := n.subscribe("a")
	a2, cancelA2 := n.subscribe("a")
	b, cancelB := n.subscribe("b")
	n.notify("a")
	n.notify("a") // coalesced: one pending notice
	for _, ch := range []<-chan struct{}{a, a2} {
		select {
		case <-ch:
		default:
			t.Fatal("subscriber of a not notified")
		}
		select {
		case <-ch:
			t.Fatal("two notices pending")
		default:
		}
	}
	select {
	case <-b:
		t.Fatal("b notified for a")
	default:
	}
	n.notifyAll()
	recvNotice(t, a, "notifyAll: a")
	recvNotice(t, b, "notifyAll: b")
	cancelA()
	cancelA()
	if n.count("a") != 1 {
		t.Fatalf("count(a) = %d after one cancel", n.count("a"))
	}
	cancelA2()
	cancelB()
	if len(n.waiters) != 0 {
		t.Fatalf("waiters left: %v", n.waiters)
	}
	n.close()
	n.close()
	recvNotice(t, n.done, "close: done")
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

// TestRelayNotices: notices reach the waiters of their job; a
// resubscription wakes every waiter; the relay ends when the channel closes.
// Every step is bounded: a lost notice fails the test instead of hanging it.
func TestRelayNotices(t *testing.T) {
	s := &RedisStore{waiters: newNotifier(), log: slog.New(slog.DiscardHandler)}
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
	a, cancelA := s.waiters.subscribe("a")
	defer cancelA()
	b, cancelB := s.waiters.subscribe("b")
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
