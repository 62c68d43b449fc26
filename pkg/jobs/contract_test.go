package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"
)

// Opener opens a fresh, empty Store for one test, with the given TTL and
// clock, and closes it (and removes what it stored) in t.Cleanup. The clock
// is injected so that TTL and expiry tests move time instead of sleeping.
type Opener func(t *testing.T, ttl time.Duration, now func() time.Time) Store

// contractTTL is the TTL the contract suite runs with.
const contractTTL = time.Hour

// t0 is the fake clock's start: odd nanoseconds, to catch rounding.
var t0 = time.Date(2031, 3, 4, 5, 6, 7, 123456789, time.UTC)

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// waiterCounter is implemented by both stores for tests: how many Waits
// are subscribed to id, so a test can Apply once a Wait really waits.
type waiterCounter interface{ waiterCount(id string) int }

// RunContract runs the Store contract against the stores open makes. Every
// behaviour the Store interface documents is checked here, so both
// implementations behave the same.
func RunContract(t *testing.T, open Opener) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s Store, clk *fakeClock)
	}{
		{"CreateGet", testCreateGet},
		{"Idempotency", testIdempotency},
		{"IdempotencyKeyFreedByTTL", testIdempotencyKeyFreedByTTL},
		{"ConcurrentCreateSameKey", testConcurrentCreateSameKey},
		{"ApplyRunningThenFinal", testApplyRunningThenFinal},
		{"ApplyLateAndDuplicate", testApplyLateAndDuplicate},
		{"ApplyAttemptsMax", testApplyAttemptsMax},
		{"ApplyInvalidAndUnknown", testApplyInvalidAndUnknown},
		{"ApplyConcurrentFinals", testApplyConcurrentFinals},
		{"Cancel", testCancel},
		{"Delete", testDelete},
		{"Unpublished", testUnpublished},
		{"ExpireQueued", testExpireQueued},
		{"WaitWakesOnFinal", testWaitWakesOnFinal},
		{"WaitWakesOnCancelAndExpire", testWaitWakesOnCancelAndExpire},
		{"WaitTimeoutAndImmediate", testWaitTimeoutAndImmediate},
		{"WaitContextAndClose", testWaitContextAndClose},
		{"TTL", testTTL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			s := open(t, contractTTL, clk.Now)
			tc.fn(t, s, clk)
		})
	}
}

// ---- helpers ----

func mustCreate(t *testing.T, s Store, j *Job) *Job {
	t.Helper()
	existing, err := s.Create(context.Background(), j)
	if err != nil || existing != nil {
		t.Fatalf("Create(%s) = %v, %v; want nil, nil", j.ID, existing, err)
	}
	return j
}

func mustGet(t *testing.T, s Store, id string) *Job {
	t.Helper()
	j, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return j
}

func mustApply(t *testing.T, s Store, ev Event, wantChanged bool) *Job {
	t.Helper()
	j, changed, err := s.Apply(context.Background(), ev)
	if err != nil {
		t.Fatalf("Apply(%+v): %v", ev, err)
	}
	if changed != wantChanged {
		t.Fatalf("Apply(%s %s attempt %d) changed = %v, want %v", ev.Type, ev.Status, ev.Attempt, changed, wantChanged)
	}
	if j == nil || j.ID != ev.JobID {
		t.Fatalf("Apply returned job %+v, want id %s", j, ev.JobID)
	}
	return j
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

// view renders every field of j, internal ones included, for comparisons.
func view(j *Job) map[string]string {
	if j == nil {
		return nil
	}
	tm := func(t *time.Time) string {
		if t == nil {
			return "<nil>"
		}
		return t.Format(time.RFC3339Nano) + " " + t.Location().String()
	}
	e := "<nil>"
	if j.Error != nil {
		e = j.Error.Reason + ": " + j.Error.Message
	}
	return map[string]string{
		"ID": j.ID, "Status": string(j.Status), "CreatedAt": tm(&j.CreatedAt),
		"StartedAt": tm(j.StartedAt), "FinishedAt": tm(j.FinishedAt),
		"Attempts": fmt.Sprint(j.Attempts), "Result": string(j.Result), "Error": e,
		"RequestID": j.RequestID, "Input": fmt.Sprintf("%x", j.Input),
		"IdempotencyKey": j.IdempotencyKey, "BodyHash": j.BodyHash,
		"Published": fmt.Sprint(j.Published), "StartBy": tm(&j.StartBy), "Worker": j.Worker,
	}
}

func sameJob(t *testing.T, what string, got, want *Job) {
	t.Helper()
	g, w := view(got), view(want)
	if reflect.DeepEqual(g, w) {
		return
	}
	var diff []string
	for k := range w {
		if g[k] != w[k] {
			diff = append(diff, fmt.Sprintf("  %s: got %q, want %q", k, g[k], w[k]))
		}
	}
	sort.Strings(diff)
	t.Fatalf("%s: job differs:\n%s", what, bytesJoin(diff))
}

func bytesJoin(lines []string) string {
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

func ptr(t time.Time) *time.Time { return &t }

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// waitUntilWaiting returns once a Wait on id has subscribed in s.
func waitUntilWaiting(t *testing.T, s Store, id string, n int) {
	t.Helper()
	wc, ok := s.(waiterCounter)
	if !ok {
		t.Fatalf("%T does not implement waiterCount", s)
	}
	deadline := time.Now().Add(5 * time.Second)
	for wc.waiterCount(id) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d Wait(s) on %s not subscribed after 5s (have %d)", n, id, wc.waiterCount(id))
		}
		time.Sleep(time.Millisecond)
	}
}

type waitResult struct {
	j   *Job
	err error
	at  time.Time
}

func goWait(ctx context.Context, s Store, id string, timeout time.Duration) <-chan waitResult {
	ch := make(chan waitResult, 1)
	go func() {
		j, err := s.Wait(ctx, id, timeout)
		ch <- waitResult{j, err, time.Now()}
	}()
	return ch
}

func recvWait(t *testing.T, ch <-chan waitResult, within time.Duration) waitResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(within):
		t.Fatalf("Wait did not return within %v", within)
		return waitResult{}
	}
}

// ---- Create / Get ----

func testCreateGet(t *testing.T, s Store, clk *fakeClock) {
	ctx := context.Background()
	input := make([]byte, 256) // every byte value: the stores must be binary-safe
	for i := range input {
		input[i] = byte(i)
	}
	j := &Job{ID: "job-1", RequestID: "req-1", Input: input, BodyHash: "h1", StartBy: t0.Add(time.Minute)}
	mustCreate(t, s, j)
	if j.Status != Queued || !j.CreatedAt.Equal(t0) || j.Published {
		t.Fatalf("Create did not fill j: status %q created %v published %v", j.Status, j.CreatedAt, j.Published)
	}
	want := &Job{
		ID: "job-1", Status: Queued, CreatedAt: t0, RequestID: "req-1", Input: input,
		BodyHash: "h1", StartBy: t0.Add(time.Minute),
	}
	got := mustGet(t, s, "job-1")
	sameJob(t, "Get after Create", got, want)

	// The returned job is a copy.
	got.Input[0], got.Status = 0xff, Failed
	sameJob(t, "Get after changing a returned job", mustGet(t, s, "job-1"), want)

	// An explicit CreatedAt in another zone comes back in UTC, to the ns.
	loc := time.FixedZone("X", 3*3600)
	created := time.Date(2031, 1, 1, 10, 0, 0, 987654321, loc)
	mustCreate(t, s, &Job{ID: "job-2", CreatedAt: created})
	if g := mustGet(t, s, "job-2"); !g.CreatedAt.Equal(created) || g.CreatedAt.Location() != time.UTC || g.StartBy != (time.Time{}) {
		t.Fatalf("job-2 CreatedAt %v (%v), StartBy %v", g.CreatedAt, g.CreatedAt.Location(), g.StartBy)
	}

	_, err := s.Get(ctx, "nope")
	wantErr(t, "Get(unknown)", err, ErrNotFound)
	_, err = s.Create(ctx, &Job{ID: "job-1"})
	wantErr(t, "Create(existing id)", err, ErrConflict)
	_, err = s.Create(ctx, &Job{})
	wantErr(t, "Create(empty id)", err, ErrInvalidJob)

	wantErr(t, "MarkPublished(unknown)", s.MarkPublished(ctx, "nope"), ErrNotFound)
	for range 2 { // idempotent
		if err := s.MarkPublished(ctx, "job-1"); err != nil {
			t.Fatalf("MarkPublished: %v", err)
		}
	}
	want.Published = true
	sameJob(t, "Get after MarkPublished", mustGet(t, s, "job-1"), want)
}

// ---- idempotency ----

func testIdempotency(t *testing.T, s Store, clk *fakeClock) {
	ctx := context.Background()
	first := mustCreate(t, s, &Job{ID: "a", IdempotencyKey: "K", BodyHash: "H", Input: []byte("x")})

	// Same key and body before the publish is confirmed: in progress.
	existing, err := s.Create(ctx, &Job{ID: "b", IdempotencyKey: "K", BodyHash: "H"})
	wantErr(t, "same key, same body, unpublished", err, ErrInProgress)
	if existing == nil || existing.ID != first.ID {
		t.Fatalf("in progress: existing = %+v, want job a", existing)
	}
	if _, err := s.Get(ctx, "b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused Create wrote job b (Get err %v)", err)
	}

	// Another body: mismatch, whether published or not.
	existing, err = s.Create(ctx, &Job{ID: "c", IdempotencyKey: "K", BodyHash: "H2"})
	wantErr(t, "same key, other body", err, ErrKeyMismatch)
	if existing == nil || existing.ID != "a" {
		t.Fatalf("mismatch: existing = %+v, want job a", existing)
	}

	if err := s.MarkPublished(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	existing, err = s.Create(ctx, &Job{ID: "d", IdempotencyKey: "K", BodyHash: "H"})
	if err != nil || existing == nil || existing.ID != "a" || !existing.Published || existing.Status != Queued {
		t.Fatalf("replay after publish = %+v, %v; want job a, nil", existing, err)
	}
	_, err = s.Create(ctx, &Job{ID: "e", IdempotencyKey: "K", BodyHash: "H2"})
	wantErr(t, "other body after publish", err, ErrKeyMismatch)

	// A running job (a worker reported on it, so it was published even if
	// the confirm was lost) is a replay too.
	mustCreate(t, s, &Job{ID: "r", IdempotencyKey: "KR", BodyHash: "H"})
	mustApply(t, s, Event{JobID: "r", Type: EventRunning, Attempt: 1, At: t0}, true)
	if existing, err = s.Create(ctx, &Job{ID: "r2", IdempotencyKey: "KR", BodyHash: "H"}); err != nil || existing.ID != "r" {
		t.Fatalf("replay of a running job = %+v, %v", existing, err)
	}

	// A job cancelled before its publish was confirmed is no longer in
	// progress: a replay shows the cancelled job.
	mustCreate(t, s, &Job{ID: "f", IdempotencyKey: "K2", BodyHash: "H"})
	if _, err := s.Cancel(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	existing, err = s.Create(ctx, &Job{ID: "g", IdempotencyKey: "K2", BodyHash: "H"})
	if err != nil || existing == nil || existing.ID != "f" || existing.Status != Cancelled {
		t.Fatalf("replay of cancelled unpublished job = %+v, %v", existing, err)
	}

	// Keys are independent of ids and of each other.
	mustCreate(t, s, &Job{ID: "h", IdempotencyKey: "K3", BodyHash: "H"})
}

func testIdempotencyKeyFreedByTTL(t *testing.T, s Store, clk *fakeClock) {
	ctx := context.Background()
	mustCreate(t, s, &Job{ID: "a", IdempotencyKey: "K", BodyHash: "H"})
	mustApply(t, s, Event{JobID: "a", Type: EventFinal, Status: Succeeded, Attempt: 1, At: t0}, true)

	clk.Set(t0.Add(contractTTL - time.Nanosecond))
	if existing, err := s.Create(ctx, &Job{ID: "b", IdempotencyKey: "K", BodyHash: "H"}); err != nil || existing == nil || existing.ID != "a" {
		t.Fatalf("replay just before TTL = %+v, %v", existing, err)
	}
	// Once the job is gone the key is free: a new job, with any body.
	clk.Set(t0.Add(contractTTL))
	mustCreate(t, s, &Job{ID: "c", IdempotencyKey: "K", BodyHash: "H2"})
	if existing, err := s.Create(ctx, &Job{ID: "d", IdempotencyKey: "K", BodyHash: "H2"}); !errors.Is(err, ErrInProgress) || existing.ID != "c" {
		t.Fatalf("key now names c: %+v, %v", existing, err)
	}
}

func testConcurrentCreateSameKey(t *testing.T, s Store, clk *fakeClock) {
	const n = 50
	type out struct {
		id       string
		existing *Job
		err      error
	}
	results := make(chan out, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			id := fmt.Sprintf("c%02d", i)
			existing, err := s.Create(context.Background(), &Job{ID: id, IdempotencyKey: "K", BodyHash: "H"})
			results <- out{id, existing, err}
		}()
	}
	close(start)
	wg.Wait()
	close(results)
	var winners []string
	var losers []out
	for r := range results {
		switch {
		case r.err == nil && r.existing == nil:
			winners = append(winners, r.id)
		case errors.Is(r.err, ErrInProgress) && r.existing != nil:
			losers = append(losers, r)
		default:
			t.Errorf("Create(%s) = %+v, %v; want created or ErrInProgress", r.id, r.existing, r.err)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d Creates with the same key created a job: %v; want exactly 1", len(winners), winners)
	}
	for _, l := range losers {
		if l.existing.ID != winners[0] {
			t.Errorf("Create(%s) returned existing %s, want the winner %s", l.id, l.existing.ID, winners[0])
		}
		if _, err := s.Get(context.Background(), l.id); !errors.Is(err, ErrNotFound) {
			t.Errorf("loser %s was stored (Get err %v)", l.id, err)
		}
	}
}

// ---- Apply ----

func testApplyRunningThenFinal(t *testing.T, s Store, clk *fakeClock) {
	mustCreate(t, s, &Job{ID: "a", StartBy: t0.Add(time.Minute), BodyHash: "H"})
	t1, t2 := t0.Add(time.Second), t0.Add(3*time.Second)

	j := mustApply(t, s, Event{JobID: "a", Type: EventRunning, At: t1, Attempt: 1, Worker: "w1"}, true)
	want := &Job{ID: "a", Status: Running, CreatedAt: t0, StartedAt: ptr(t1), Attempts: 1,
		BodyHash: "H", Published: true, StartBy: t0.Add(time.Minute), Worker: "w1"}
	sameJob(t, "after running", j, want)
	sameJob(t, "Get after running", mustGet(t, s, "a"), want)

	// The same event again changes nothing.
	mustApply(t, s, Event{JobID: "a", Type: EventRunning, At: t1, Attempt: 1, Worker: "w1"}, false)

	res := json.RawMessage(`{"prediction":{"class":"rabbit","confidence":0.82}}`)
	j = mustApply(t, s, Event{JobID: "a", Type: EventFinal, Status: Succeeded, At: t2, Attempt: 1, Worker: "w1", Result: res}, true)
	want.Status, want.FinishedAt, want.Result = Succeeded, ptr(t2), res
	sameJob(t, "after final", j, want)
	sameJob(t, "Get after final", mustGet(t, s, "a"), want)
	if !jsonEqual(j.Result, res) {
		t.Fatalf("result %s, want %s", j.Result, res)
	}

	// An event without At is stamped with the store's clock.
	mustCreate(t, s, &Job{ID: "b"})
	clk.Set(t0.Add(5 * time.Second))
	j = mustApply(t, s, Event{JobID: "b", Type: EventRunning, Attempt: 1}, true)
	if j.StartedAt == nil || !j.StartedAt.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("StartedAt = %v, want the store clock", j.StartedAt)
	}
}

func testApplyLateAndDuplicate(t *testing.T, s Store, clk *fakeClock) {
	// Final first, then a late running: still final, nothing changes.
	mustCreate(t, s, &Job{ID: "a"})
	failErr := &Error{Reason: "model_error", Message: "boom"}
	final := Event{JobID: "a", Type: EventFinal, Status: Failed, At: t0.Add(time.Second), Attempt: 1, Worker: "w1", Error: failErr}
	j := mustApply(t, s, final, true)
	if j.Status != Failed || j.Error == nil || *j.Error != *failErr || j.StartedAt != nil || j.Result != nil {
		t.Fatalf("after final failed: %+v", view(j))
	}
	before := mustGet(t, s, "a")
	j = mustApply(t, s, Event{JobID: "a", Type: EventRunning, At: t0.Add(2 * time.Second), Attempt: 2, Worker: "w2"}, false)
	sameJob(t, "late running", j, before)

	// A second, different final: the first wins.
	j = mustApply(t, s, Event{JobID: "a", Type: EventFinal, Status: Succeeded, At: t0.Add(3 * time.Second), Attempt: 2, Result: json.RawMessage(`1`)}, false)
	sameJob(t, "second final", j, before)
	// A duplicate of the first: nothing either.
	j = mustApply(t, s, final, false)
	sameJob(t, "duplicate final", j, before)
	sameJob(t, "Get after duplicates", mustGet(t, s, "a"), before)

	// An expired final from a worker (deadline passed in its buffer).
	mustCreate(t, s, &Job{ID: "b"})
	j = mustApply(t, s, Event{JobID: "b", Type: EventFinal, Status: Expired, Attempt: 1, At: t0, Error: &Error{Reason: "timeout", Message: "deadline passed"}}, true)
	if j.Status != Expired || j.Error.Reason != "timeout" {
		t.Fatalf("worker-expired job: %+v", view(j))
	}
}

func testApplyAttemptsMax(t *testing.T, s Store, clk *fakeClock) {
	mustCreate(t, s, &Job{ID: "a"})
	t1 := t0.Add(time.Second)
	mustApply(t, s, Event{JobID: "a", Type: EventRunning, At: t1, Attempt: 1, Worker: "w1"}, true)
	// A redelivery: attempt 2 on another worker. StartedAt keeps the first.
	j := mustApply(t, s, Event{JobID: "a", Type: EventRunning, At: t0.Add(5 * time.Second), Attempt: 2, Worker: "w2"}, true)
	if !j.StartedAt.Equal(t1) || j.Attempts != 2 || j.Worker != "w2" {
		t.Fatalf("after attempt 2: %+v", view(j))
	}
	// A late running of attempt 1 changes nothing.
	j = mustApply(t, s, Event{JobID: "a", Type: EventRunning, At: t0.Add(6 * time.Second), Attempt: 1, Worker: "w1"}, false)
	if j.Attempts != 2 || j.Worker != "w2" {
		t.Fatalf("after late attempt 1: %+v", view(j))
	}
	// A final of a lower attempt keeps the max.
	j = mustApply(t, s, Event{JobID: "a", Type: EventFinal, Status: Succeeded, At: t0.Add(7 * time.Second), Attempt: 1, Worker: "w1"}, true)
	if j.Attempts != 2 || j.Status != Succeeded {
		t.Fatalf("final attempt 1 after 2: %+v", view(j))
	}
	// A final of a higher attempt raises it.
	mustCreate(t, s, &Job{ID: "b"})
	mustApply(t, s, Event{JobID: "b", Type: EventRunning, At: t1, Attempt: 1}, true)
	if j = mustApply(t, s, Event{JobID: "b", Type: EventFinal, Status: Failed, At: t1, Attempt: 3}, true); j.Attempts != 3 {
		t.Fatalf("final attempt 3: attempts %d", j.Attempts)
	}
}

func testApplyInvalidAndUnknown(t *testing.T, s Store, clk *fakeClock) {
	ctx := context.Background()
	_, _, err := s.Apply(ctx, Event{JobID: "nope", Type: EventRunning, Attempt: 1})
	wantErr(t, "Apply(unknown job)", err, ErrNotFound)
	mustCreate(t, s, &Job{ID: "a"})
	for _, ev := range []Event{
		{JobID: "", Type: EventRunning},
		{JobID: "a", Type: "started"},
		{JobID: "a", Type: EventFinal, Status: Queued},
		{JobID: "a", Type: EventFinal, Status: Cancelled},
		{JobID: "a", Type: EventFinal},
		{JobID: "a", Type: EventRunning, Status: Failed},
		{JobID: "a", Type: EventRunning, Attempt: -1},
		{JobID: "a", Type: EventFinal, Status: Succeeded, Result: json.RawMessage(`{not json`)},
	} {
		_, _, err := s.Apply(ctx, ev)
		wantErr(t, fmt.Sprintf("Apply(%+v)", ev), err, ErrInvalidEvent)
	}
	if j := mustGet(t, s, "a"); j.Status != Queued {
		t.Fatalf("invalid events changed the job: %+v", view(j))
	}
}

func testApplyConcurrentFinals(t *testing.T, s Store, clk *fakeClock) {
	const n = 20
	mustCreate(t, s, &Job{ID: "a"})
	type out struct {
		ev      Event
		changed bool
		err     error
	}
	results := make(chan out, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev := Event{JobID: "a", Type: EventFinal, Status: Succeeded, Attempt: 1, At: t0.Add(time.Duration(i) * time.Millisecond),
				Result: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
			if i%2 == 1 {
				ev.Status, ev.Result, ev.Error = Failed, nil, &Error{Reason: "model_error", Message: fmt.Sprint(i)}
			}
			<-start
			_, changed, err := s.Apply(context.Background(), ev)
			results <- out{ev, changed, err}
		}()
	}
	close(start)
	wg.Wait()
	close(results)
	var won []Event
	for r := range results {
		if r.err != nil {
			t.Fatalf("Apply: %v", r.err)
		}
		if r.changed {
			won = append(won, r.ev)
		}
	}
	if len(won) != 1 {
		t.Fatalf("%d concurrent finals changed the job, want exactly 1", len(won))
	}
	j := mustGet(t, s, "a")
	if j.Status != won[0].Status || !j.FinishedAt.Equal(won[0].At) || !bytes.Equal(j.Result, won[0].Result) {
		t.Fatalf("stored %+v, but the winning event was %+v", view(j), won[0])
	}
}

// ---- Cancel ----

func testCancel(t *testing.T, s Store, clk *fakeClock) {
	ctx := context.Background()
	mustCreate(t, s, &Job{ID: "q", StartBy: t0.Add(time.Minute)})
	clk.Set(t0.Add(2 * time.Second))
	j, err := s.Cancel(ctx, "q")
	if err != nil || j == nil || j.Status != Cancelled || j.FinishedAt == nil || !j.FinishedAt.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("Cancel(queued) = %+v, %v", view(j), err)
	}
	sameJob(t, "Get after Cancel", mustGet(t, s, "q"), j)
	// Cancelled is final: again → conflict; a late running changes nothing;
	// it is neither in the outbox nor expired.
	j2, err := s.Cancel(ctx, "q")
	wantErr(t, "Cancel(cancelled)", err, ErrConflict)
	if j2 == nil || j2.Status != Cancelled {
		t.Fatalf("Cancel(cancelled) returned %+v", view(j2))
	}
	mustApply(t, s, Event{JobID: "q", Type: EventRunning, Attempt: 1, At: t0}, false)
	if l, _ := s.Unpublished(ctx, t0.Add(time.Hour), 10); len(l) != 0 {
		t.Fatalf("cancelled job still in the outbox: %v", l)
	}
	if ids, _ := s.ExpireQueued(ctx, t0.Add(time.Hour), 10); len(ids) != 0 {
		t.Fatalf("cancelled job expired: %v", ids)
	}

	mustCreate(t, s, &Job{ID: "r"})
	mustApply(t, s, Event{JobID: "r", Type: EventRunning, Attempt: 1, At: t0}, true)
	j, err = s.Cancel(ctx, "r")
	wantErr(t, "Cancel(running)", err, ErrConflict)
	if j == nil || j.Status != Running {
		t.Fatalf("Cancel(running) returned %+v", view(j))
	}
	if g := mustGet(t, s, "r"); g.Status != Running {
		t.Fatalf("Cancel(running) changed it to %s", g.Status)
	}

	mustCreate(t, s, &Job{ID: "f"})
	mustApply(t, s, Event{JobID: "f", Type: EventFinal, Status: Succeeded, Attempt: 1, At: t0}, true)
	j, err = s.Cancel(ctx, "f")
	wantErr(t, "Cancel(succeeded)", err, ErrConflict)
	if j == nil || j.Status != Succeeded {
		t.Fatalf("Cancel(succeeded) returned %+v", view(j))
	}

	_, err = s.Cancel(ctx, "nope")
	wantErr(t, "Cancel(unknown)", err, ErrNotFound)
}

// ---- Delete ----

func testDelete(t *testing.T, s Store, clk *fakeClock) {
	ctx := context.Background()
	mustCreate(t, s, &Job{ID: "a", IdempotencyKey: "K", BodyHash: "H", StartBy: t0.Add(time.Minute)})
	ch := goWait(ctx, s, "a", 10*time.Second)
	waitUntilWaiting(t, s, "a", 1)
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	at := time.Now()
	r := recvWait(t, ch, 5*time.Second)
	wantErr(t, "Wait on a deleted job", r.err, ErrNotFound)
	if r.at.Sub(at) > wakeWithin {
		t.Errorf("Wait returned %v after Delete", r.at.Sub(at))
	}
	_, err := s.Get(ctx, "a")
	wantErr(t, "Get(deleted)", err, ErrNotFound)
	wantErr(t, "Delete(deleted)", s.Delete(ctx, "a"), ErrNotFound)
	_, _, err = s.Apply(ctx, Event{JobID: "a", Type: EventRunning, Attempt: 1})
	wantErr(t, "Apply(deleted)", err, ErrNotFound)
	if l, err := s.Unpublished(ctx, t0.Add(time.Hour), 10); err != nil || len(l) != 0 {
		t.Fatalf("outbox after Delete = %v, %v", l, err)
	}
	if ids, err := s.ExpireQueued(ctx, t0.Add(time.Hour), 10); err != nil || len(ids) != 0 {
		t.Fatalf("ExpireQueued after Delete = %v, %v", ids, err)
	}
	// The key is free: the client may retry, even with another body.
	mustCreate(t, s, &Job{ID: "b", IdempotencyKey: "K", BodyHash: "H2"})

	// Deleting a job whose key was since given to another job keeps the key.
	mustApply(t, s, Event{JobID: "b", Type: EventFinal, Status: Succeeded, Attempt: 1, At: t0}, true)
	clk.Set(t0.Add(contractTTL))
	mustCreate(t, s, &Job{ID: "c", IdempotencyKey: "K", BodyHash: "H3"}) // b is past TTL
	if err := s.Delete(ctx, "b"); err != nil {
		t.Fatalf("Delete(b): %v", err)
	}
	if existing, err := s.Create(ctx, &Job{ID: "d", IdempotencyKey: "K", BodyHash: "H3"}); !errors.Is(err, ErrInProgress) || existing.ID != "c" {
		t.Fatalf("key K after deleting b = %+v, %v; want job c", existing, err)
	}
}

// ---- outbox ----

func testUnpublished(t *testing.T, s Store, clk *fakeClock) {
	ctx := context.Background()
	for i, id := range []string{"j1", "j2", "j3", "j4", "j5"} {
		mustCreate(t, s, &Job{ID: id, CreatedAt: t0.Add(time.Duration(i) * time.Second), Input: []byte(id)})
	}
	if err := s.MarkPublished(ctx, "j2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cancel(ctx, "j4"); err != nil {
		t.Fatal(err)
	}
	ids := func(before time.Time, limit int) []string {
		t.Helper()
		l, err := s.Unpublished(ctx, before, limit)
		if err != nil {
			t.Fatalf("Unpublished: %v", err)
		}
		var out []string
		for _, j := range l {
			if j.Published || j.Status != Queued || string(j.Input) != j.ID {
				t.Fatalf("Unpublished returned %+v", view(j))
			}
			out = append(out, j.ID)
		}
		return out
	}
	for _, tc := range []struct {
		before time.Time
		limit  int
		want   []string
	}{
		{t0.Add(10 * time.Second), 10, []string{"j1", "j3", "j5"}},
		{t0.Add(10 * time.Second), 2, []string{"j1", "j3"}},
		{t0.Add(2 * time.Second), 10, []string{"j1"}}, // createdBefore is exclusive
		{t0.Add(2*time.Second + time.Nanosecond), 10, []string{"j1", "j3"}},
		{t0.Add(2*time.Second - time.Nanosecond), 10, []string{"j1"}},
		{t0, 10, nil},
		{t0.Add(10 * time.Second), 0, nil},
	} {
		if got := ids(tc.before, tc.limit); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Unpublished(t0+%v, %d) = %v, want %v", tc.before.Sub(t0), tc.limit, got, tc.want)
		}
	}
	// A running event means a worker got it: out of the outbox.
	mustApply(t, s, Event{JobID: "j1", Type: EventRunning, Attempt: 1, At: t0}, true)
	if got := ids(t0.Add(10*time.Second), 10); !reflect.DeepEqual(got, []string{"j3", "j5"}) {
		t.Errorf("after running j1: %v", got)
	}
	// So does a final one.
	mustApply(t, s, Event{JobID: "j3", Type: EventFinal, Status: Failed, Attempt: 1, At: t0}, true)
	if got := ids(t0.Add(10*time.Second), 10); !reflect.DeepEqual(got, []string{"j5"}) {
		t.Errorf("after final j3: %v", got)
	}
}

// ---- ExpireQueued ----

func testExpireQueued(t *testing.T, s Store, clk *fakeClock) {
	ctx := context.Background()
	expire := func(now time.Time, limit int) []string {
		t.Helper()
		ids, err := s.ExpireQueued(ctx, now, limit)
		if err != nil {
			t.Fatalf("ExpireQueued: %v", err)
		}
		sort.Strings(ids)
		return ids
	}
	mustCreate(t, s, &Job{ID: "e1", StartBy: t0.Add(time.Minute)})
	mustCreate(t, s, &Job{ID: "e2", StartBy: t0.Add(2 * time.Minute)})
	mustCreate(t, s, &Job{ID: "none"})
	mustCreate(t, s, &Job{ID: "run", StartBy: t0.Add(time.Minute)})
	mustApply(t, s, Event{JobID: "run", Type: EventRunning, Attempt: 1, At: t0}, true)
	mustCreate(t, s, &Job{ID: "pub", StartBy: t0.Add(time.Minute)})
	if err := s.MarkPublished(ctx, "pub"); err != nil {
		t.Fatal(err)
	}

	if got := expire(t0.Add(59*time.Second), 10); len(got) != 0 {
		t.Fatalf("expired too early: %v", got)
	}
	now := t0.Add(90 * time.Second)
	if got := expire(now, 10); !reflect.DeepEqual(got, []string{"e1", "pub"}) {
		t.Fatalf("ExpireQueued(t0+90s) = %v, want [e1 pub]", got)
	}
	j := mustGet(t, s, "e1")
	if j.Status != Expired || j.FinishedAt == nil || !j.FinishedAt.Equal(now) || j.Error == nil || j.Error.Reason != "expired" {
		t.Fatalf("expired job: %+v", view(j))
	}
	if got := expire(now, 10); len(got) != 0 {
		t.Fatalf("second ExpireQueued = %v, want none", got)
	}
	// StartBy == now is due; a job without StartBy or running never is.
	if got := expire(t0.Add(2*time.Minute), 10); !reflect.DeepEqual(got, []string{"e2"}) {
		t.Fatalf("ExpireQueued(t0+2m) = %v, want [e2]", got)
	}
	if got := expire(t0.Add(1000*time.Hour), 10); len(got) != 0 {
		t.Fatalf("ExpireQueued(far future) = %v", got)
	}
	// An expired job is final: later events change nothing, it left the outbox.
	mustApply(t, s, Event{JobID: "e1", Type: EventFinal, Status: Succeeded, Attempt: 1, At: now}, false)
	l, err := s.Unpublished(ctx, t0.Add(time.Hour), 10)
	if err != nil || len(l) != 1 || l[0].ID != "none" {
		t.Fatalf("outbox after expiry = %v, %v; want only the job without StartBy", l, err)
	}

	// limit bounds each call.
	for i := range 5 {
		mustCreate(t, s, &Job{ID: fmt.Sprintf("l%d", i), StartBy: t0.Add(time.Duration(i) * time.Millisecond)})
	}
	a := expire(t0.Add(time.Second), 2)
	b := expire(t0.Add(time.Second), 10)
	if len(a) != 2 || len(b) != 3 {
		t.Fatalf("limit 2 then 10: %v then %v", a, b)
	}
	if got := expire(t0.Add(time.Second), 0); got != nil {
		t.Fatalf("limit 0: %v", got)
	}
}

// ---- Wait ----

// wakeWithin is how soon after a final state Wait must return.
const wakeWithin = 100 * time.Millisecond

func testWaitWakesOnFinal(t *testing.T, s Store, clk *fakeClock) {
	ctx := context.Background()
	mustCreate(t, s, &Job{ID: "a"})
	const waiters = 5
	var chans []<-chan waitResult
	for range waiters {
		chans = append(chans, goWait(ctx, s, "a", 10*time.Second))
	}
	waitUntilWaiting(t, s, "a", waiters)
	// A running event does not end the Wait.
	mustApply(t, s, Event{JobID: "a", Type: EventRunning, Attempt: 1, At: t0}, true)
	mustApply(t, s, Event{JobID: "a", Type: EventFinal, Status: Succeeded, Attempt: 1, At: t0, Result: json.RawMessage(`"ok"`)}, true)
	applied := time.Now()
	for _, ch := range chans {
		r := recvWait(t, ch, 5*time.Second)
		if r.err != nil || r.j == nil || r.j.Status != Succeeded || string(r.j.Result) != `"ok"` {
			t.Fatalf("Wait = %+v, %v", view(r.j), r.err)
		}
		if d := r.at.Sub(applied); d > wakeWithin {
			t.Errorf("Wait returned %v after the final state, want <= %v", d, wakeWithin)
		}
	}
	if n := s.(waiterCounter).waiterCount("a"); n != 0 {
		t.Errorf("%d waiter(s) still subscribed after Wait returned", n)
	}
}

func testWaitWakesOnCancelAndExpire(t *testing.T, s Store, clk *fakeClock) {
	ctx := context.Background()
	mustCreate(t, s, &Job{ID: "c"})
	mustCreate(t, s, &Job{ID: "e", StartBy: t0.Add(time.Second)})
	wc := goWait(ctx, s, "c", 10*time.Second)
	we := goWait(ctx, s, "e", 10*time.Second)
	waitUntilWaiting(t, s, "c", 1)
	waitUntilWaiting(t, s, "e", 1)

	if _, err := s.Cancel(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	if r := recvWait(t, wc, 5*time.Second); r.err != nil || r.j.Status != Cancelled || r.at.Sub(at) > wakeWithin {
		t.Fatalf("Wait on cancelled job = %+v, %v after %v", view(r.j), r.err, r.at.Sub(at))
	}
	if ids, err := s.ExpireQueued(ctx, t0.Add(time.Minute), 10); err != nil || len(ids) != 1 {
		t.Fatalf("ExpireQueued = %v, %v", ids, err)
	}
	at = time.Now()
	if r := recvWait(t, we, 5*time.Second); r.err != nil || r.j.Status != Expired || r.at.Sub(at) > wakeWithin {
		t.Fatalf("Wait on expired job = %+v, %v after %v", view(r.j), r.err, r.at.Sub(at))
	}
}

func testWaitTimeoutAndImmediate(t *testing.T, s Store, clk *fakeClock) {
	ctx := context.Background()
	mustCreate(t, s, &Job{ID: "q"})

	// Timeout: the job as it is then, no error — including a running state
	// reached meanwhile (running events send no notice).
	const timeout = 150 * time.Millisecond
	start := time.Now()
	ch := goWait(ctx, s, "q", timeout)
	waitUntilWaiting(t, s, "q", 1)
	mustApply(t, s, Event{JobID: "q", Type: EventRunning, Attempt: 1, At: t0}, true)
	r := recvWait(t, ch, 5*time.Second)
	if el := r.at.Sub(start); el < timeout {
		t.Errorf("Wait returned after %v, before its timeout %v", el, timeout)
	}
	if r.err != nil || r.j == nil || r.j.Status != Running {
		t.Fatalf("Wait timeout = %+v, %v; want the running job", view(r.j), r.err)
	}

	// Already final: at once.
	mustApply(t, s, Event{JobID: "q", Type: EventFinal, Status: Failed, Attempt: 1, At: t0}, true)
	start = time.Now()
	j, err := s.Wait(ctx, "q", 10*time.Second)
	if err != nil || j.Status != Failed || time.Since(start) > wakeWithin {
		t.Fatalf("Wait(final) = %+v, %v after %v", view(j), err, time.Since(start))
	}

	// Unknown: at once.
	start = time.Now()
	_, err = s.Wait(ctx, "nope", 10*time.Second)
	wantErr(t, "Wait(unknown)", err, ErrNotFound)
	if time.Since(start) > wakeWithin {
		t.Fatalf("Wait(unknown) took %v", time.Since(start))
	}

	// timeout <= 0 is a Get.
	mustCreate(t, s, &Job{ID: "q2"})
	if j, err := s.Wait(ctx, "q2", 0); err != nil || j.Status != Queued {
		t.Fatalf("Wait(timeout 0) = %+v, %v", view(j), err)
	}
}

func testWaitContextAndClose(t *testing.T, s Store, clk *fakeClock) {
	mustCreate(t, s, &Job{ID: "a"})
	ctx, cancel := context.WithCancel(context.Background())
	ch := goWait(ctx, s, "a", 10*time.Second)
	waitUntilWaiting(t, s, "a", 1)
	cancel()
	at := time.Now()
	r := recvWait(t, ch, 5*time.Second)
	if !errors.Is(r.err, context.Canceled) || r.j == nil || r.j.Status != Queued || r.at.Sub(at) > wakeWithin {
		t.Fatalf("Wait after cancel = %+v, %v after %v; want the queued job and context.Canceled", view(r.j), r.err, r.at.Sub(at))
	}

	// Close wakes a Wait, which reports ErrClosed; a Wait after Close too.
	ch = goWait(context.Background(), s, "a", 10*time.Second)
	waitUntilWaiting(t, s, "a", 1)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	at = time.Now()
	r = recvWait(t, ch, 5*time.Second)
	wantErr(t, "Wait during Close", r.err, ErrClosed)
	if r.at.Sub(at) > wakeWithin {
		t.Errorf("Wait returned %v after Close", r.at.Sub(at))
	}
	_, err := s.Wait(context.Background(), "a", time.Second)
	wantErr(t, "Wait after Close", err, ErrClosed)
	_, err = s.Get(context.Background(), "a")
	wantErr(t, "Get after Close", err, ErrClosed)
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// ---- TTL ----

func testTTL(t *testing.T, s Store, clk *fakeClock) {
	ctx := context.Background()
	mustCreate(t, s, &Job{ID: "done"})
	mustApply(t, s, Event{JobID: "done", Type: EventFinal, Status: Succeeded, Attempt: 1, At: t0.Add(time.Second)}, true)
	mustCreate(t, s, &Job{ID: "queued"})
	mustCreate(t, s, &Job{ID: "running"})
	mustApply(t, s, Event{JobID: "running", Type: EventRunning, Attempt: 1, At: t0}, true)
	mustCreate(t, s, &Job{ID: "cancelled"})
	clk.Set(t0.Add(time.Second))
	if _, err := s.Cancel(ctx, "cancelled"); err != nil {
		t.Fatal(err)
	}

	clk.Set(t0.Add(time.Second + contractTTL - time.Nanosecond))
	mustGet(t, s, "done")
	mustGet(t, s, "cancelled")

	clk.Set(t0.Add(time.Second + contractTTL))
	_, err := s.Get(ctx, "done")
	wantErr(t, "Get(finished, at TTL)", err, ErrNotFound)
	_, err = s.Get(ctx, "cancelled")
	wantErr(t, "Get(cancelled, past TTL)", err, ErrNotFound)
	_, err = s.Wait(ctx, "done", time.Second)
	wantErr(t, "Wait(past TTL)", err, ErrNotFound)
	_, err = s.Cancel(ctx, "done")
	wantErr(t, "Cancel(past TTL)", err, ErrNotFound)
	_, _, err = s.Apply(ctx, Event{JobID: "done", Type: EventFinal, Status: Failed, Attempt: 1})
	wantErr(t, "Apply(past TTL)", err, ErrNotFound)

	// Unfinished jobs never expire by TTL.
	clk.Set(t0.Add(100 * contractTTL))
	if j := mustGet(t, s, "queued"); j.Status != Queued {
		t.Fatalf("queued job after 100 TTLs: %+v", view(j))
	}
	if j := mustGet(t, s, "running"); j.Status != Running {
		t.Fatalf("running job after 100 TTLs: %+v", view(j))
	}
}
