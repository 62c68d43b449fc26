// Package jobstest is the contract suite of [jobs.Store]: every behaviour the
// interface documents, checked against a real backend. Each Store
// implementation runs it from its own tests:
//
//	func TestContract(t *testing.T) { jobstest.Run(t, openForTest) }
//
// It also exports the helpers the backends' own tests share (a settable
// clock, Must* wrappers, Wait helpers). It imports no backend, so backends'
// internal tests may import it.
package jobstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/jobs"
)

// Opener opens a fresh, empty Store for one test, with the given TTL and
// clock, and closes it (and removes what it stored) in t.Cleanup. The clock
// is injected so that TTL and expiry tests move time instead of sleeping.
type Opener func(t *testing.T, ttl time.Duration, now func() time.Time) jobs.Store

// contractTTL is the TTL the contract suite runs with.
const contractTTL = time.Hour

// Run runs the Store contract against the stores open makes, one fresh
// store per subtest. Every behaviour the Store interface documents is
// checked here, so both implementations behave the same. The stores must
// also implement [WaiterCounter].
func Run(t *testing.T, open Opener) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s jobs.Store, clk *Clock)
	}{
		{"CreateGet", testCreateGet},
		{"ModelVersionFormat", testModelVersionFormat},
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
		{"Meta", testMeta},
		{"MetaConcurrent", testMetaConcurrent},
		{"DeadLetters", testDeadLetters},
		{"DeadLetterPages", testDeadLetterPages},
		{"Replay", testReplay},
		{"DeadLettersTTLAndDelete", testDeadLettersTTLAndDelete},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := NewClock()
			s := open(t, contractTTL, clk.Now)
			tc.fn(t, s, clk)
		})
	}
}

// ---- Create / Get ----

func testCreateGet(t *testing.T, s jobs.Store, clk *Clock) {
	ctx := context.Background()
	input := make([]byte, 256) // every byte value: the stores must be binary-safe
	for i := range input {
		input[i] = byte(i)
	}
	j := &jobs.Job{ID: "job-1", RequestID: "req-1", Input: input, BodyHash: "h1", StartBy: T0.Add(time.Minute),
		Model: "m", Version: "2", Format: jobs.FormatV2}
	MustCreate(t, s, j)
	if j.Status != jobs.Queued || !j.CreatedAt.Equal(T0) || j.Published {
		t.Fatalf("Create did not fill j: status %q created %v published %v", j.Status, j.CreatedAt, j.Published)
	}
	want := &jobs.Job{
		ID: "job-1", Status: jobs.Queued, CreatedAt: T0, RequestID: "req-1", Input: input,
		BodyHash: "h1", StartBy: T0.Add(time.Minute), Model: "m", Version: "2", Format: jobs.FormatV2,
	}
	got := MustGet(t, s, "job-1")
	SameJob(t, "Get after Create", got, want)

	// The returned job is a copy.
	got.Input[0], got.Status = 0xff, jobs.Failed
	SameJob(t, "Get after changing a returned job", MustGet(t, s, "job-1"), want)

	// An explicit CreatedAt in another zone comes back in UTC, to the ns.
	loc := time.FixedZone("X", 3*3600)
	created := time.Date(2031, 1, 1, 10, 0, 0, 987654321, loc)
	MustCreate(t, s, &jobs.Job{ID: "job-2", CreatedAt: created})
	if g := MustGet(t, s, "job-2"); !g.CreatedAt.Equal(created) || g.CreatedAt.Location() != time.UTC || g.StartBy != (time.Time{}) {
		t.Fatalf("job-2 CreatedAt %v (%v), StartBy %v", g.CreatedAt, g.CreatedAt.Location(), g.StartBy)
	}

	_, err := s.Get(ctx, "nope")
	wantErr(t, "Get(unknown)", err, jobs.ErrNotFound)
	_, err = s.Create(ctx, &jobs.Job{ID: "job-1"})
	wantErr(t, "Create(existing id)", err, jobs.ErrConflict)
	_, err = s.Create(ctx, &jobs.Job{})
	wantErr(t, "Create(empty id)", err, jobs.ErrInvalidJob)

	wantErr(t, "MarkPublished(unknown)", s.MarkPublished(ctx, "nope"), jobs.ErrNotFound)
	for range 2 { // idempotent
		if err := s.MarkPublished(ctx, "job-1"); err != nil {
			t.Fatalf("MarkPublished: %v", err)
		}
	}
	want.Published = true
	SameJob(t, "Get after MarkPublished", MustGet(t, s, "job-1"), want)
}

// testModelVersionFormat: the model, its version, the format and the owner are
// stored with the job and survive every write (the outbox republishes by them;
// the API renders by them and shows a job to its owner only).
func testModelVersionFormat(t *testing.T, s jobs.Store, clk *Clock) {
	ctx := context.Background()
	target := func(id string) *jobs.Job {
		return &jobs.Job{ID: id, Model: "resnet-50", Version: "v1.2", Format: jobs.FormatV2, StartBy: T0.Add(time.Minute),
			IdempotencyKey: "K-" + id, BodyHash: "H", Owner: "key:ci-" + id}
	}
	check := func(what string, j *jobs.Job) {
		t.Helper()
		if j == nil || j.Model != "resnet-50" || j.Version != "v1.2" || j.Format != jobs.FormatV2 || j.Owner != "key:ci-"+j.ID {
			t.Fatalf("%s: model %q, version %q, format %q, owner %q; want resnet-50, v1.2, v2, key:ci-%s", what, j.Model, j.Version, j.Format, j.Owner, j.ID)
		}
	}
	for _, id := range []string{"pub", "run", "fin", "can", "exp", "out"} {
		MustCreate(t, s, target(id))
		check("Get after Create "+id, MustGet(t, s, id))
	}
	l, err := s.Unpublished(ctx, T0.Add(time.Second), 10)
	if err != nil || len(l) != 6 {
		t.Fatalf("Unpublished = %d jobs, %v", len(l), err)
	}
	for _, j := range l {
		check("Unpublished "+j.ID, j)
	}
	if err := s.MarkPublished(ctx, "pub"); err != nil {
		t.Fatal(err)
	}
	check("Get after MarkPublished", MustGet(t, s, "pub"))
	existing, err := s.Create(ctx, &jobs.Job{ID: "again", IdempotencyKey: "K-pub", BodyHash: "H", Owner: "key:other"})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	check("replay", existing)
	check("Apply running", MustApply(t, s, jobs.Event{JobID: "run", Type: jobs.EventRunning, Attempt: 1, At: T0}, true))
	check("Get after running", MustGet(t, s, "run"))
	check("Apply final", MustApply(t, s, jobs.Event{JobID: "fin", Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1, At: T0, Result: json.RawMessage(`1`)}, true))
	check("Get after final", MustGet(t, s, "fin"))
	j, err := s.Cancel(ctx, "can")
	if err != nil {
		t.Fatal(err)
	}
	check("Cancel", j)
	check("Get after Cancel", MustGet(t, s, "can"))
	if ids, err := s.ExpireQueued(ctx, T0.Add(time.Hour), 10); err != nil || !slices.Contains(ids, "exp") {
		t.Fatalf("ExpireQueued = %v, %v", ids, err)
	}
	check("Get after expiry", MustGet(t, s, "exp"))

	// Without them: empty, not some default.
	MustCreate(t, s, &jobs.Job{ID: "plain"})
	if j := MustGet(t, s, "plain"); j.Model != "" || j.Version != "" || j.Format != "" || j.Owner != "" {
		t.Fatalf("job created without a target: model %q, version %q, format %q, owner %q", j.Model, j.Version, j.Format, j.Owner)
	}
}

// ---- idempotency ----

func testIdempotency(t *testing.T, s jobs.Store, clk *Clock) {
	ctx := context.Background()
	first := MustCreate(t, s, &jobs.Job{ID: "a", IdempotencyKey: "K", BodyHash: "H", Input: []byte("x")})

	// Same key and body before the publish is confirmed: in progress.
	existing, err := s.Create(ctx, &jobs.Job{ID: "b", IdempotencyKey: "K", BodyHash: "H"})
	wantErr(t, "same key, same body, unpublished", err, jobs.ErrInProgress)
	if existing == nil || existing.ID != first.ID {
		t.Fatalf("in progress: existing = %+v, want job a", existing)
	}
	if _, err := s.Get(ctx, "b"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("a refused Create wrote job b (Get err %v)", err)
	}

	// Another body: mismatch, whether published or not.
	existing, err = s.Create(ctx, &jobs.Job{ID: "c", IdempotencyKey: "K", BodyHash: "H2"})
	wantErr(t, "same key, other body", err, jobs.ErrKeyMismatch)
	if existing == nil || existing.ID != "a" {
		t.Fatalf("mismatch: existing = %+v, want job a", existing)
	}

	if err := s.MarkPublished(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	existing, err = s.Create(ctx, &jobs.Job{ID: "d", IdempotencyKey: "K", BodyHash: "H"})
	if err != nil || existing == nil || existing.ID != "a" || !existing.Published || existing.Status != jobs.Queued {
		t.Fatalf("replay after publish = %+v, %v; want job a, nil", existing, err)
	}
	_, err = s.Create(ctx, &jobs.Job{ID: "e", IdempotencyKey: "K", BodyHash: "H2"})
	wantErr(t, "other body after publish", err, jobs.ErrKeyMismatch)

	// A running job (a worker reported on it, so it was published even if
	// the confirm was lost) is a replay too.
	MustCreate(t, s, &jobs.Job{ID: "r", IdempotencyKey: "KR", BodyHash: "H"})
	MustApply(t, s, jobs.Event{JobID: "r", Type: jobs.EventRunning, Attempt: 1, At: T0}, true)
	if existing, err = s.Create(ctx, &jobs.Job{ID: "r2", IdempotencyKey: "KR", BodyHash: "H"}); err != nil || existing.ID != "r" {
		t.Fatalf("replay of a running job = %+v, %v", existing, err)
	}

	// A job cancelled before its publish was confirmed is no longer in
	// progress: a replay shows the cancelled job.
	MustCreate(t, s, &jobs.Job{ID: "f", IdempotencyKey: "K2", BodyHash: "H"})
	if _, err := s.Cancel(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	existing, err = s.Create(ctx, &jobs.Job{ID: "g", IdempotencyKey: "K2", BodyHash: "H"})
	if err != nil || existing == nil || existing.ID != "f" || existing.Status != jobs.Cancelled {
		t.Fatalf("replay of cancelled unpublished job = %+v, %v", existing, err)
	}

	// Keys are independent of ids and of each other.
	MustCreate(t, s, &jobs.Job{ID: "h", IdempotencyKey: "K3", BodyHash: "H"})
}

func testIdempotencyKeyFreedByTTL(t *testing.T, s jobs.Store, clk *Clock) {
	ctx := context.Background()
	MustCreate(t, s, &jobs.Job{ID: "a", IdempotencyKey: "K", BodyHash: "H"})
	MustApply(t, s, jobs.Event{JobID: "a", Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1, At: T0}, true)

	clk.Set(T0.Add(contractTTL - time.Nanosecond))
	if existing, err := s.Create(ctx, &jobs.Job{ID: "b", IdempotencyKey: "K", BodyHash: "H"}); err != nil || existing == nil || existing.ID != "a" {
		t.Fatalf("replay just before TTL = %+v, %v", existing, err)
	}
	// Once the job is gone the key is free: a new job, with any body.
	clk.Set(T0.Add(contractTTL))
	MustCreate(t, s, &jobs.Job{ID: "c", IdempotencyKey: "K", BodyHash: "H2"})
	if existing, err := s.Create(ctx, &jobs.Job{ID: "d", IdempotencyKey: "K", BodyHash: "H2"}); !errors.Is(err, jobs.ErrInProgress) || existing.ID != "c" {
		t.Fatalf("key now names c: %+v, %v", existing, err)
	}
}

func testConcurrentCreateSameKey(t *testing.T, s jobs.Store, clk *Clock) {
	const n = 50
	type out struct {
		id       string
		existing *jobs.Job
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
			existing, err := s.Create(context.Background(), &jobs.Job{ID: id, IdempotencyKey: "K", BodyHash: "H"})
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
		case errors.Is(r.err, jobs.ErrInProgress) && r.existing != nil:
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
		if _, err := s.Get(context.Background(), l.id); !errors.Is(err, jobs.ErrNotFound) {
			t.Errorf("loser %s was stored (Get err %v)", l.id, err)
		}
	}
}

// ---- Apply ----

func testApplyRunningThenFinal(t *testing.T, s jobs.Store, clk *Clock) {
	MustCreate(t, s, &jobs.Job{ID: "a", StartBy: T0.Add(time.Minute), BodyHash: "H"})
	t1, t2 := T0.Add(time.Second), T0.Add(3*time.Second)

	j := MustApply(t, s, jobs.Event{JobID: "a", Type: jobs.EventRunning, At: t1, Attempt: 1, Worker: "w1"}, true)
	want := &jobs.Job{ID: "a", Status: jobs.Running, CreatedAt: T0, StartedAt: ptr(t1), Attempts: 1,
		BodyHash: "H", Published: true, StartBy: T0.Add(time.Minute), Worker: "w1"}
	SameJob(t, "after running", j, want)
	SameJob(t, "Get after running", MustGet(t, s, "a"), want)

	// The same event again changes nothing.
	MustApply(t, s, jobs.Event{JobID: "a", Type: jobs.EventRunning, At: t1, Attempt: 1, Worker: "w1"}, false)

	res := json.RawMessage(`{"prediction":{"class":"rabbit","confidence":0.82}}`)
	j = MustApply(t, s, jobs.Event{JobID: "a", Type: jobs.EventFinal, Status: jobs.Succeeded, At: t2, Attempt: 1, Worker: "w1", Result: res}, true)
	want.Status, want.FinishedAt, want.Result = jobs.Succeeded, ptr(t2), res
	SameJob(t, "after final", j, want)
	SameJob(t, "Get after final", MustGet(t, s, "a"), want)
	if !jsonEqual(j.Result, res) {
		t.Fatalf("result %s, want %s", j.Result, res)
	}

	// An event without At is stamped with the store's clock.
	MustCreate(t, s, &jobs.Job{ID: "b"})
	clk.Set(T0.Add(5 * time.Second))
	j = MustApply(t, s, jobs.Event{JobID: "b", Type: jobs.EventRunning, Attempt: 1}, true)
	if j.StartedAt == nil || !j.StartedAt.Equal(T0.Add(5*time.Second)) {
		t.Fatalf("StartedAt = %v, want the store clock", j.StartedAt)
	}
}

func testApplyLateAndDuplicate(t *testing.T, s jobs.Store, clk *Clock) {
	// Final first, then a late running: still final, nothing changes.
	MustCreate(t, s, &jobs.Job{ID: "a"})
	failErr := &jobs.Error{Reason: "model_error", Message: "boom"}
	final := jobs.Event{JobID: "a", Type: jobs.EventFinal, Status: jobs.Failed, At: T0.Add(time.Second), Attempt: 1, Worker: "w1", Error: failErr}
	j := MustApply(t, s, final, true)
	if j.Status != jobs.Failed || j.Error == nil || *j.Error != *failErr || j.StartedAt != nil || j.Result != nil {
		t.Fatalf("after final failed: %+v", View(j))
	}
	before := MustGet(t, s, "a")
	j = MustApply(t, s, jobs.Event{JobID: "a", Type: jobs.EventRunning, At: T0.Add(2 * time.Second), Attempt: 2, Worker: "w2"}, false)
	SameJob(t, "late running", j, before)

	// A second, different final: the first wins.
	j = MustApply(t, s, jobs.Event{JobID: "a", Type: jobs.EventFinal, Status: jobs.Succeeded, At: T0.Add(3 * time.Second), Attempt: 2, Result: json.RawMessage(`1`)}, false)
	SameJob(t, "second final", j, before)
	// A duplicate of the first: nothing either.
	j = MustApply(t, s, final, false)
	SameJob(t, "duplicate final", j, before)
	SameJob(t, "Get after duplicates", MustGet(t, s, "a"), before)

	// A final that carries its run's start, applied before the running event (the
	// API applies events concurrently): the start is kept, and the late running
	// event changes nothing.
	MustCreate(t, s, &jobs.Job{ID: "c"})
	started := T0.Add(500 * time.Millisecond)
	j = MustApply(t, s, jobs.Event{JobID: "c", Type: jobs.EventFinal, Status: jobs.Succeeded, At: T0.Add(time.Second),
		Attempt: 1, Worker: "w1", Result: json.RawMessage(`1`), StartedAt: &started}, true)
	if j.StartedAt == nil || !j.StartedAt.Equal(started) || j.FinishedAt == nil || !j.FinishedAt.Equal(T0.Add(time.Second)) {
		t.Fatalf("final with its start first: %+v", View(j))
	}
	SameJob(t, "Get after the final with its start", MustGet(t, s, "c"), j)
	MustApply(t, s, jobs.Event{JobID: "c", Type: jobs.EventRunning, At: started, Attempt: 1, Worker: "w1"}, false)
	// After a running event, the running event's start stays.
	MustCreate(t, s, &jobs.Job{ID: "d"})
	MustApply(t, s, jobs.Event{JobID: "d", Type: jobs.EventRunning, At: T0, Attempt: 1, Worker: "w1"}, true)
	j = MustApply(t, s, jobs.Event{JobID: "d", Type: jobs.EventFinal, Status: jobs.Succeeded, At: T0.Add(time.Second),
		Attempt: 1, Result: json.RawMessage(`1`), StartedAt: &started}, true)
	if j.StartedAt == nil || !j.StartedAt.Equal(T0) {
		t.Fatalf("final after running: StartedAt %v, want the running event's %v", j.StartedAt, T0)
	}

	// An expired final from a worker (deadline passed in its buffer).
	MustCreate(t, s, &jobs.Job{ID: "b"})
	j = MustApply(t, s, jobs.Event{JobID: "b", Type: jobs.EventFinal, Status: jobs.Expired, Attempt: 1, At: T0, Error: &jobs.Error{Reason: "timeout", Message: "deadline passed"}}, true)
	if j.Status != jobs.Expired || j.Error.Reason != "timeout" {
		t.Fatalf("worker-expired job: %+v", View(j))
	}
}

func testApplyAttemptsMax(t *testing.T, s jobs.Store, clk *Clock) {
	MustCreate(t, s, &jobs.Job{ID: "a"})
	t1 := T0.Add(time.Second)
	MustApply(t, s, jobs.Event{JobID: "a", Type: jobs.EventRunning, At: t1, Attempt: 1, Worker: "w1"}, true)
	// A redelivery: attempt 2 on another worker. StartedAt keeps the first.
	j := MustApply(t, s, jobs.Event{JobID: "a", Type: jobs.EventRunning, At: T0.Add(5 * time.Second), Attempt: 2, Worker: "w2"}, true)
	if !j.StartedAt.Equal(t1) || j.Attempts != 2 || j.Worker != "w2" {
		t.Fatalf("after attempt 2: %+v", View(j))
	}
	// A late running of attempt 1 changes nothing.
	j = MustApply(t, s, jobs.Event{JobID: "a", Type: jobs.EventRunning, At: T0.Add(6 * time.Second), Attempt: 1, Worker: "w1"}, false)
	if j.Attempts != 2 || j.Worker != "w2" {
		t.Fatalf("after late attempt 1: %+v", View(j))
	}
	// A final of a lower attempt keeps the max.
	j = MustApply(t, s, jobs.Event{JobID: "a", Type: jobs.EventFinal, Status: jobs.Succeeded, At: T0.Add(7 * time.Second), Attempt: 1, Worker: "w1"}, true)
	if j.Attempts != 2 || j.Status != jobs.Succeeded {
		t.Fatalf("final attempt 1 after 2: %+v", View(j))
	}
	// A final of a higher attempt raises it.
	MustCreate(t, s, &jobs.Job{ID: "b"})
	MustApply(t, s, jobs.Event{JobID: "b", Type: jobs.EventRunning, At: t1, Attempt: 1}, true)
	if j = MustApply(t, s, jobs.Event{JobID: "b", Type: jobs.EventFinal, Status: jobs.Failed, At: t1, Attempt: 3}, true); j.Attempts != 3 {
		t.Fatalf("final attempt 3: attempts %d", j.Attempts)
	}
}

func testApplyInvalidAndUnknown(t *testing.T, s jobs.Store, clk *Clock) {
	ctx := context.Background()
	_, _, err := s.Apply(ctx, jobs.Event{JobID: "nope", Type: jobs.EventRunning, Attempt: 1})
	wantErr(t, "Apply(unknown job)", err, jobs.ErrNotFound)
	MustCreate(t, s, &jobs.Job{ID: "a"})
	for _, ev := range []jobs.Event{
		{JobID: "", Type: jobs.EventRunning},
		{JobID: "a", Type: "started"},
		{JobID: "a", Type: jobs.EventFinal, Status: jobs.Queued},
		{JobID: "a", Type: jobs.EventFinal, Status: jobs.Cancelled},
		{JobID: "a", Type: jobs.EventFinal},
		{JobID: "a", Type: jobs.EventRunning, Status: jobs.Failed},
		{JobID: "a", Type: jobs.EventRunning, Attempt: -1},
		{JobID: "a", Type: jobs.EventFinal, Status: jobs.Succeeded, Result: json.RawMessage(`{not json`)},
		{JobID: "a", Type: jobs.EventFinal, Status: jobs.Failed, Error: &jobs.Error{Message: "no reason"}},
	} {
		_, _, err := s.Apply(ctx, ev)
		wantErr(t, fmt.Sprintf("Apply(%+v)", ev), err, jobs.ErrInvalidEvent)
	}
	if j := MustGet(t, s, "a"); j.Status != jobs.Queued {
		t.Fatalf("invalid events changed the job: %+v", View(j))
	}
	// A reason outside the vocabulary (a newer worker) is stored as sent.
	newer := &jobs.Error{Reason: "gpu_on_fire", Message: "the model's GPU is unwell"}
	j := MustApply(t, s, jobs.Event{JobID: "a", Type: jobs.EventFinal, Status: jobs.Failed, Attempt: 1, At: T0, Error: newer}, true)
	if j.Error == nil || *j.Error != *newer {
		t.Fatalf("Apply with a newer reason stored %+v", View(j))
	}
	if j := MustGet(t, s, "a"); j.Error == nil || *j.Error != *newer {
		t.Fatalf("Get after a newer reason: %+v", View(j))
	}
}

func testApplyConcurrentFinals(t *testing.T, s jobs.Store, clk *Clock) {
	const n = 20
	MustCreate(t, s, &jobs.Job{ID: "a"})
	type out struct {
		ev      jobs.Event
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
			ev := jobs.Event{JobID: "a", Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1, At: T0.Add(time.Duration(i) * time.Millisecond),
				Result: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
			if i%2 == 1 {
				ev.Status, ev.Result, ev.Error = jobs.Failed, nil, &jobs.Error{Reason: "model_error", Message: fmt.Sprint(i)}
			}
			<-start
			_, changed, err := s.Apply(context.Background(), ev)
			results <- out{ev, changed, err}
		}()
	}
	close(start)
	wg.Wait()
	close(results)
	var won []jobs.Event
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
	j := MustGet(t, s, "a")
	if j.Status != won[0].Status || !j.FinishedAt.Equal(won[0].At) || !bytes.Equal(j.Result, won[0].Result) {
		t.Fatalf("stored %+v, but the winning event was %+v", View(j), won[0])
	}
}

// ---- Cancel ----

func testCancel(t *testing.T, s jobs.Store, clk *Clock) {
	ctx := context.Background()
	MustCreate(t, s, &jobs.Job{ID: "q", StartBy: T0.Add(time.Minute)})
	clk.Set(T0.Add(2 * time.Second))
	j, err := s.Cancel(ctx, "q")
	if err != nil || j == nil || j.Status != jobs.Cancelled || j.FinishedAt == nil || !j.FinishedAt.Equal(T0.Add(2*time.Second)) {
		t.Fatalf("Cancel(queued) = %+v, %v", View(j), err)
	}
	SameJob(t, "Get after Cancel", MustGet(t, s, "q"), j)
	// Cancelled is final: again → conflict; a late running changes nothing;
	// it is neither in the outbox nor expired.
	j2, err := s.Cancel(ctx, "q")
	wantErr(t, "Cancel(cancelled)", err, jobs.ErrConflict)
	if j2 == nil || j2.Status != jobs.Cancelled {
		t.Fatalf("Cancel(cancelled) returned %+v", View(j2))
	}
	MustApply(t, s, jobs.Event{JobID: "q", Type: jobs.EventRunning, Attempt: 1, At: T0}, false)
	if l, _ := s.Unpublished(ctx, T0.Add(time.Hour), 10); len(l) != 0 {
		t.Fatalf("cancelled job still in the outbox: %v", l)
	}
	if ids, _ := s.ExpireQueued(ctx, T0.Add(time.Hour), 10); len(ids) != 0 {
		t.Fatalf("cancelled job expired: %v", ids)
	}

	MustCreate(t, s, &jobs.Job{ID: "r"})
	MustApply(t, s, jobs.Event{JobID: "r", Type: jobs.EventRunning, Attempt: 1, At: T0}, true)
	j, err = s.Cancel(ctx, "r")
	wantErr(t, "Cancel(running)", err, jobs.ErrConflict)
	if j == nil || j.Status != jobs.Running {
		t.Fatalf("Cancel(running) returned %+v", View(j))
	}
	if g := MustGet(t, s, "r"); g.Status != jobs.Running {
		t.Fatalf("Cancel(running) changed it to %s", g.Status)
	}

	MustCreate(t, s, &jobs.Job{ID: "f"})
	MustApply(t, s, jobs.Event{JobID: "f", Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1, At: T0}, true)
	j, err = s.Cancel(ctx, "f")
	wantErr(t, "Cancel(succeeded)", err, jobs.ErrConflict)
	if j == nil || j.Status != jobs.Succeeded {
		t.Fatalf("Cancel(succeeded) returned %+v", View(j))
	}

	_, err = s.Cancel(ctx, "nope")
	wantErr(t, "Cancel(unknown)", err, jobs.ErrNotFound)
}

// ---- Delete ----

func testDelete(t *testing.T, s jobs.Store, clk *Clock) {
	ctx := context.Background()
	MustCreate(t, s, &jobs.Job{ID: "a", IdempotencyKey: "K", BodyHash: "H", StartBy: T0.Add(time.Minute)})
	ch := GoWait(ctx, s, "a", 10*time.Second)
	WaitUntilWaiting(t, s, "a", 1)
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	at := time.Now()
	r := RecvWait(t, ch, 5*time.Second)
	wantErr(t, "Wait on a deleted job", r.Err, jobs.ErrNotFound)
	if r.At.Sub(at) > WakeWithin {
		t.Errorf("Wait returned %v after Delete", r.At.Sub(at))
	}
	_, err := s.Get(ctx, "a")
	wantErr(t, "Get(deleted)", err, jobs.ErrNotFound)
	wantErr(t, "Delete(deleted)", s.Delete(ctx, "a"), jobs.ErrNotFound)
	_, _, err = s.Apply(ctx, jobs.Event{JobID: "a", Type: jobs.EventRunning, Attempt: 1})
	wantErr(t, "Apply(deleted)", err, jobs.ErrNotFound)
	if l, err := s.Unpublished(ctx, T0.Add(time.Hour), 10); err != nil || len(l) != 0 {
		t.Fatalf("outbox after Delete = %v, %v", l, err)
	}
	if ids, err := s.ExpireQueued(ctx, T0.Add(time.Hour), 10); err != nil || len(ids) != 0 {
		t.Fatalf("ExpireQueued after Delete = %v, %v", ids, err)
	}
	// The key is free: the client may retry, even with another body.
	MustCreate(t, s, &jobs.Job{ID: "b", IdempotencyKey: "K", BodyHash: "H2"})

	// Deleting a job whose key was since given to another job keeps the key.
	MustApply(t, s, jobs.Event{JobID: "b", Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1, At: T0}, true)
	clk.Set(T0.Add(contractTTL))
	MustCreate(t, s, &jobs.Job{ID: "c", IdempotencyKey: "K", BodyHash: "H3"}) // b is past TTL
	if err := s.Delete(ctx, "b"); err != nil {
		t.Fatalf("Delete(b): %v", err)
	}
	if existing, err := s.Create(ctx, &jobs.Job{ID: "d", IdempotencyKey: "K", BodyHash: "H3"}); !errors.Is(err, jobs.ErrInProgress) || existing.ID != "c" {
		t.Fatalf("key K after deleting b = %+v, %v; want job c", existing, err)
	}
}

// ---- outbox ----

func testUnpublished(t *testing.T, s jobs.Store, clk *Clock) {
	ctx := context.Background()
	for i, id := range []string{"j1", "j2", "j3", "j4", "j5"} {
		MustCreate(t, s, &jobs.Job{ID: id, CreatedAt: T0.Add(time.Duration(i) * time.Second), Input: []byte(id)})
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
			if j.Published || j.Status != jobs.Queued || string(j.Input) != j.ID {
				t.Fatalf("Unpublished returned %+v", View(j))
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
		{T0.Add(10 * time.Second), 10, []string{"j1", "j3", "j5"}},
		{T0.Add(10 * time.Second), 2, []string{"j1", "j3"}},
		{T0.Add(2 * time.Second), 10, []string{"j1"}}, // createdBefore is exclusive
		{T0.Add(2*time.Second + time.Nanosecond), 10, []string{"j1", "j3"}},
		{T0.Add(2*time.Second - time.Nanosecond), 10, []string{"j1"}},
		{T0, 10, nil},
		{T0.Add(10 * time.Second), 0, nil},
	} {
		if got := ids(tc.before, tc.limit); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Unpublished(t0+%v, %d) = %v, want %v", tc.before.Sub(T0), tc.limit, got, tc.want)
		}
	}
	// A running event means a worker got it: out of the outbox.
	MustApply(t, s, jobs.Event{JobID: "j1", Type: jobs.EventRunning, Attempt: 1, At: T0}, true)
	if got := ids(T0.Add(10*time.Second), 10); !reflect.DeepEqual(got, []string{"j3", "j5"}) {
		t.Errorf("after running j1: %v", got)
	}
	// So does a final one.
	MustApply(t, s, jobs.Event{JobID: "j3", Type: jobs.EventFinal, Status: jobs.Failed, Attempt: 1, At: T0}, true)
	if got := ids(T0.Add(10*time.Second), 10); !reflect.DeepEqual(got, []string{"j5"}) {
		t.Errorf("after final j3: %v", got)
	}
}

// ---- ExpireQueued ----

func testExpireQueued(t *testing.T, s jobs.Store, clk *Clock) {
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
	MustCreate(t, s, &jobs.Job{ID: "e1", StartBy: T0.Add(time.Minute)})
	MustCreate(t, s, &jobs.Job{ID: "e2", StartBy: T0.Add(2 * time.Minute)})
	MustCreate(t, s, &jobs.Job{ID: "none"})
	MustCreate(t, s, &jobs.Job{ID: "run", StartBy: T0.Add(time.Minute)})
	MustApply(t, s, jobs.Event{JobID: "run", Type: jobs.EventRunning, Attempt: 1, At: T0}, true)
	MustCreate(t, s, &jobs.Job{ID: "pub", StartBy: T0.Add(time.Minute)})
	if err := s.MarkPublished(ctx, "pub"); err != nil {
		t.Fatal(err)
	}

	if got := expire(T0.Add(59*time.Second), 10); len(got) != 0 {
		t.Fatalf("expired too early: %v", got)
	}
	now := T0.Add(90 * time.Second)
	if got := expire(now, 10); !reflect.DeepEqual(got, []string{"e1", "pub"}) {
		t.Fatalf("ExpireQueued(t0+90s) = %v, want [e1 pub]", got)
	}
	j := MustGet(t, s, "e1")
	if j.Status != jobs.Expired || j.FinishedAt == nil || !j.FinishedAt.Equal(now) || j.Error == nil || j.Error.Reason != "expired" {
		t.Fatalf("expired job: %+v", View(j))
	}
	if got := expire(now, 10); len(got) != 0 {
		t.Fatalf("second ExpireQueued = %v, want none", got)
	}
	// StartBy == now is due; a job without StartBy or running never is.
	if got := expire(T0.Add(2*time.Minute), 10); !reflect.DeepEqual(got, []string{"e2"}) {
		t.Fatalf("ExpireQueued(t0+2m) = %v, want [e2]", got)
	}
	if got := expire(T0.Add(1000*time.Hour), 10); len(got) != 0 {
		t.Fatalf("ExpireQueued(far future) = %v", got)
	}
	// An expired job is final: later events change nothing, it left the outbox.
	MustApply(t, s, jobs.Event{JobID: "e1", Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1, At: now}, false)
	l, err := s.Unpublished(ctx, T0.Add(time.Hour), 10)
	if err != nil || len(l) != 1 || l[0].ID != "none" {
		t.Fatalf("outbox after expiry = %v, %v; want only the job without StartBy", l, err)
	}

	// limit bounds each call.
	for i := range 5 {
		MustCreate(t, s, &jobs.Job{ID: fmt.Sprintf("l%d", i), StartBy: T0.Add(time.Duration(i) * time.Millisecond)})
	}
	a := expire(T0.Add(time.Second), 2)
	b := expire(T0.Add(time.Second), 10)
	if len(a) != 2 || len(b) != 3 {
		t.Fatalf("limit 2 then 10: %v then %v", a, b)
	}
	if got := expire(T0.Add(time.Second), 0); got != nil {
		t.Fatalf("limit 0: %v", got)
	}
}

// ---- Wait ----

func testWaitWakesOnFinal(t *testing.T, s jobs.Store, clk *Clock) {
	ctx := context.Background()
	MustCreate(t, s, &jobs.Job{ID: "a"})
	const waiters = 5
	var chans []<-chan WaitResult
	for range waiters {
		chans = append(chans, GoWait(ctx, s, "a", 10*time.Second))
	}
	WaitUntilWaiting(t, s, "a", waiters)
	// A running event does not end the Wait.
	MustApply(t, s, jobs.Event{JobID: "a", Type: jobs.EventRunning, Attempt: 1, At: T0}, true)
	MustApply(t, s, jobs.Event{JobID: "a", Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1, At: T0, Result: json.RawMessage(`"ok"`)}, true)
	applied := time.Now()
	for _, ch := range chans {
		r := RecvWait(t, ch, 5*time.Second)
		if r.Err != nil || r.Job == nil || r.Job.Status != jobs.Succeeded || string(r.Job.Result) != `"ok"` {
			t.Fatalf("Wait = %+v, %v", View(r.Job), r.Err)
		}
		if d := r.At.Sub(applied); d > WakeWithin {
			t.Errorf("Wait returned %v after the final state, want <= %v", d, WakeWithin)
		}
	}
	if n := s.(WaiterCounter).Waiters("a"); n != 0 {
		t.Errorf("%d waiter(s) still subscribed after Wait returned", n)
	}
}

func testWaitWakesOnCancelAndExpire(t *testing.T, s jobs.Store, clk *Clock) {
	ctx := context.Background()
	MustCreate(t, s, &jobs.Job{ID: "c"})
	MustCreate(t, s, &jobs.Job{ID: "e", StartBy: T0.Add(time.Second)})
	wc := GoWait(ctx, s, "c", 10*time.Second)
	we := GoWait(ctx, s, "e", 10*time.Second)
	WaitUntilWaiting(t, s, "c", 1)
	WaitUntilWaiting(t, s, "e", 1)

	if _, err := s.Cancel(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	if r := RecvWait(t, wc, 5*time.Second); r.Err != nil || r.Job.Status != jobs.Cancelled || r.At.Sub(at) > WakeWithin {
		t.Fatalf("Wait on cancelled job = %+v, %v after %v", View(r.Job), r.Err, r.At.Sub(at))
	}
	if ids, err := s.ExpireQueued(ctx, T0.Add(time.Minute), 10); err != nil || len(ids) != 1 {
		t.Fatalf("ExpireQueued = %v, %v", ids, err)
	}
	at = time.Now()
	if r := RecvWait(t, we, 5*time.Second); r.Err != nil || r.Job.Status != jobs.Expired || r.At.Sub(at) > WakeWithin {
		t.Fatalf("Wait on expired job = %+v, %v after %v", View(r.Job), r.Err, r.At.Sub(at))
	}
}

func testWaitTimeoutAndImmediate(t *testing.T, s jobs.Store, clk *Clock) {
	ctx := context.Background()
	MustCreate(t, s, &jobs.Job{ID: "q"})

	// Timeout: the job as it is then, no error — including a running state
	// reached meanwhile (running events send no notice).
	const timeout = 150 * time.Millisecond
	start := time.Now()
	ch := GoWait(ctx, s, "q", timeout)
	WaitUntilWaiting(t, s, "q", 1)
	MustApply(t, s, jobs.Event{JobID: "q", Type: jobs.EventRunning, Attempt: 1, At: T0}, true)
	r := RecvWait(t, ch, 5*time.Second)
	if el := r.At.Sub(start); el < timeout {
		t.Errorf("Wait returned after %v, before its timeout %v", el, timeout)
	}
	if r.Err != nil || r.Job == nil || r.Job.Status != jobs.Running {
		t.Fatalf("Wait timeout = %+v, %v; want the running job", View(r.Job), r.Err)
	}

	// Already final: at once.
	MustApply(t, s, jobs.Event{JobID: "q", Type: jobs.EventFinal, Status: jobs.Failed, Attempt: 1, At: T0}, true)
	start = time.Now()
	j, err := s.Wait(ctx, "q", 10*time.Second)
	if err != nil || j.Status != jobs.Failed || time.Since(start) > WakeWithin {
		t.Fatalf("Wait(final) = %+v, %v after %v", View(j), err, time.Since(start))
	}

	// Unknown: at once.
	start = time.Now()
	_, err = s.Wait(ctx, "nope", 10*time.Second)
	wantErr(t, "Wait(unknown)", err, jobs.ErrNotFound)
	if time.Since(start) > WakeWithin {
		t.Fatalf("Wait(unknown) took %v", time.Since(start))
	}

	// timeout <= 0 is a Get.
	MustCreate(t, s, &jobs.Job{ID: "q2"})
	if j, err := s.Wait(ctx, "q2", 0); err != nil || j.Status != jobs.Queued {
		t.Fatalf("Wait(timeout 0) = %+v, %v", View(j), err)
	}
}

func testWaitContextAndClose(t *testing.T, s jobs.Store, clk *Clock) {
	MustCreate(t, s, &jobs.Job{ID: "a"})
	ctx, cancel := context.WithCancel(context.Background())
	ch := GoWait(ctx, s, "a", 10*time.Second)
	WaitUntilWaiting(t, s, "a", 1)
	cancel()
	at := time.Now()
	r := RecvWait(t, ch, 5*time.Second)
	if !errors.Is(r.Err, context.Canceled) || r.Job == nil || r.Job.Status != jobs.Queued || r.At.Sub(at) > WakeWithin {
		t.Fatalf("Wait after cancel = %+v, %v after %v; want the queued job and context.Canceled", View(r.Job), r.Err, r.At.Sub(at))
	}

	// Close wakes a Wait, which reports ErrClosed; a Wait after Close too.
	ch = GoWait(context.Background(), s, "a", 10*time.Second)
	WaitUntilWaiting(t, s, "a", 1)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	at = time.Now()
	r = RecvWait(t, ch, 5*time.Second)
	wantErr(t, "Wait during Close", r.Err, jobs.ErrClosed)
	if r.At.Sub(at) > WakeWithin {
		t.Errorf("Wait returned %v after Close", r.At.Sub(at))
	}
	_, err := s.Wait(context.Background(), "a", time.Second)
	wantErr(t, "Wait after Close", err, jobs.ErrClosed)
	_, err = s.Get(context.Background(), "a")
	wantErr(t, "Get after Close", err, jobs.ErrClosed)
	// Every other method too: a closed store is not a missing job.
	ctx = context.Background()
	_, err = s.Create(ctx, &jobs.Job{ID: "b"})
	wantErr(t, "Create after Close", err, jobs.ErrClosed)
	wantErr(t, "MarkPublished after Close", s.MarkPublished(ctx, "a"), jobs.ErrClosed)
	_, err = s.Unpublished(ctx, T0.Add(time.Hour), 10)
	wantErr(t, "Unpublished after Close", err, jobs.ErrClosed)
	_, _, err = s.Apply(ctx, jobs.Event{JobID: "a", Type: jobs.EventRunning, Attempt: 1})
	wantErr(t, "Apply after Close", err, jobs.ErrClosed)
	_, err = s.Cancel(ctx, "a")
	wantErr(t, "Cancel after Close", err, jobs.ErrClosed)
	wantErr(t, "Delete after Close", s.Delete(ctx, "a"), jobs.ErrClosed)
	_, err = s.ExpireQueued(ctx, T0.Add(time.Hour), 10)
	wantErr(t, "ExpireQueued after Close", err, jobs.ErrClosed)
	wantErr(t, "PutMeta after Close", s.PutMeta(context.Background(), "k", nil), jobs.ErrClosed)
	_, err = s.ListMeta(context.Background(), "")
	wantErr(t, "ListMeta after Close", err, jobs.ErrClosed)
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// ---- TTL ----

func testTTL(t *testing.T, s jobs.Store, clk *Clock) {
	ctx := context.Background()
	MustCreate(t, s, &jobs.Job{ID: "done"})
	MustApply(t, s, jobs.Event{JobID: "done", Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1, At: T0.Add(time.Second)}, true)
	MustCreate(t, s, &jobs.Job{ID: "queued"})
	MustCreate(t, s, &jobs.Job{ID: "running"})
	MustApply(t, s, jobs.Event{JobID: "running", Type: jobs.EventRunning, Attempt: 1, At: T0}, true)
	MustCreate(t, s, &jobs.Job{ID: "cancelled"})
	clk.Set(T0.Add(time.Second))
	if _, err := s.Cancel(ctx, "cancelled"); err != nil {
		t.Fatal(err)
	}

	clk.Set(T0.Add(time.Second + contractTTL - time.Nanosecond))
	MustGet(t, s, "done")
	MustGet(t, s, "cancelled")

	clk.Set(T0.Add(time.Second + contractTTL))
	_, err := s.Get(ctx, "done")
	wantErr(t, "Get(finished, at TTL)", err, jobs.ErrNotFound)
	_, err = s.Get(ctx, "cancelled")
	wantErr(t, "Get(cancelled, past TTL)", err, jobs.ErrNotFound)
	_, err = s.Wait(ctx, "done", time.Second)
	wantErr(t, "Wait(past TTL)", err, jobs.ErrNotFound)
	_, err = s.Cancel(ctx, "done")
	wantErr(t, "Cancel(past TTL)", err, jobs.ErrNotFound)
	_, _, err = s.Apply(ctx, jobs.Event{JobID: "done", Type: jobs.EventFinal, Status: jobs.Failed, Attempt: 1})
	wantErr(t, "Apply(past TTL)", err, jobs.ErrNotFound)

	// Unfinished jobs never expire by TTL.
	clk.Set(T0.Add(100 * contractTTL))
	if j := MustGet(t, s, "queued"); j.Status != jobs.Queued {
		t.Fatalf("queued job after 100 TTLs: %+v", View(j))
	}
	if j := MustGet(t, s, "running"); j.Status != jobs.Running {
		t.Fatalf("running job after 100 TTLs: %+v", View(j))
	}
}

// ---- meta ----

func testMeta(t *testing.T, s jobs.Store, clk *Clock) {
	ctx := context.Background()
	list := func(prefix string) map[string][]byte {
		t.Helper()
		m, err := s.ListMeta(ctx, prefix)
		if err != nil {
			t.Fatalf("ListMeta(%q): %v", prefix, err)
		}
		if m == nil {
			t.Fatalf("ListMeta(%q) returned a nil map", prefix)
		}
		return m
	}
	put := func(key string, value []byte) {
		t.Helper()
		if err := s.PutMeta(ctx, key, value); err != nil {
			t.Fatalf("PutMeta(%q): %v", key, err)
		}
	}
	keys := func(m map[string][]byte) []string {
		out := make([]string, 0, len(m))
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	if m := list(""); len(m) != 0 {
		t.Fatalf("ListMeta on an empty store = %v", keys(m))
	}

	binary := make([]byte, 256) // every byte value: the stores must be binary-safe
	for i := range binary {
		binary[i] = byte(i)
	}
	longKey := "k/" + string(bytes.Repeat([]byte("x"), jobs.MaxMetaKeyLen-2))
	entries := map[string][]byte{
		"models/resnet":            []byte(`{"platform":"onnx"}`),
		"models/resnet/versions/1": []byte(`{}`),
		"models/bert":              binary,
		"models/empty":             {},
		"other":                    []byte("x"),
		"glob*[a]?\\":              []byte("literal"),
		"globZ":                    []byte("z"),
		"\x00\xffbin":              []byte("binary key"),
		longKey:                    []byte("long"),
	}
	for k, v := range entries {
		put(k, v)
	}
	// Jobs and their keys are not meta (and the other way round).
	MustCreate(t, s, &jobs.Job{ID: "models/job", IdempotencyKey: "models/key", BodyHash: "H"})

	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"models/", []string{"models/bert", "models/empty", "models/resnet", "models/resnet/versions/1"}},
		{"models/resnet", []string{"models/resnet", "models/resnet/versions/1"}},
		{"models/resnet/versions/1", []string{"models/resnet/versions/1"}},
		{"models/resnet/versions/10", []string{}},
		{"glob*", []string{"glob*[a]?\\"}}, // the prefix is literal, not a pattern
		{"glob", []string{"glob*[a]?\\", "globZ"}},
		{"glob*[a]?\\", []string{"glob*[a]?\\"}},
		{"\x00", []string{"\x00\xffbin"}},
		{"k/", []string{longKey}},
		{"nope", []string{}},
	} {
		m := list(tc.prefix)
		if got := keys(m); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ListMeta(%q) keys = %q, want %q", tc.prefix, got, tc.want)
		}
		for k, v := range m {
			if !bytes.Equal(v, entries[k]) {
				t.Errorf("ListMeta(%q)[%q] = %q, want %q", tc.prefix, k, v, entries[k])
			}
		}
	}
	all := list("")
	if len(all) != len(entries) {
		t.Fatalf("ListMeta(\"\") has %d entries, want %d: %q", len(all), len(entries), keys(all))
	}
	if v := all["models/empty"]; v == nil || len(v) != 0 {
		t.Errorf("empty value listed as %#v, want an empty non-nil slice", v)
	}

	// Upsert; the returned values are copies.
	put("models/resnet", []byte(`{"platform":"onnx","v":2}`))
	got := list("models/resnet")
	if string(got["models/resnet"]) != `{"platform":"onnx","v":2}` {
		t.Fatalf("after upsert: %q", got["models/resnet"])
	}
	got["models/resnet"][0] = 'X'
	if v := list("models/resnet")["models/resnet"]; v[0] != '{' {
		t.Fatalf("changing a listed value changed the stored one: %q", v)
	}
	in := []byte("mine")
	put("caller", in)
	in[0] = 'X'
	if v := list("caller")["caller"]; string(v) != "mine" {
		t.Fatalf("changing the caller's slice after PutMeta changed the stored value: %q", v)
	}

	// Keys: 1 to MaxMetaKeyLen bytes.
	wantErr(t, "PutMeta(empty key)", s.PutMeta(ctx, "", []byte("x")), jobs.ErrInvalidMetaKey)
	wantErr(t, "PutMeta(key too long)", s.PutMeta(ctx, longKey+"y", []byte("x")), jobs.ErrInvalidMetaKey)
	if _, ok := list("")[longKey+"y"]; ok {
		t.Fatal("a refused key was stored")
	}

	// No TTL: the entries outlive any job.
	clk.Set(T0.Add(1000 * contractTTL))
	if m := list("models/"); len(m) != 4 {
		t.Fatalf("after 1000 TTLs: %q", keys(m))
	}
}

func testMetaConcurrent(t *testing.T, s jobs.Store, clk *Clock) {
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.PutMeta(context.Background(), fmt.Sprintf("c/%02d", i), []byte(fmt.Sprint(i)))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("PutMeta: %v", err)
		}
	}
	m, err := s.ListMeta(context.Background(), "c/")
	if err != nil || len(m) != n {
		t.Fatalf("ListMeta after %d concurrent puts = %d entries, %v", n, len(m), err)
	}
	for i := range n {
		if v := m[fmt.Sprintf("c/%02d", i)]; string(v) != fmt.Sprint(i) {
			t.Errorf("c/%02d = %q", i, v)
		}
	}
}

// ---- dead letters ----

// deadEvent is the final event that makes a job a dead letter.
func deadEvent(id string, at time.Time, r jobs.Reason) jobs.Event {
	return jobs.Event{JobID: id, Type: jobs.EventFinal, Status: jobs.Failed, At: at, Attempt: 4, Worker: "w-" + id,
		Error: &jobs.Error{Reason: r, Message: "gave up on " + id}}
}

func deadIDs(t testing.TB, s jobs.Store, after string, limit int) []string {
	t.Helper()
	js, err := s.DeadLetters(context.Background(), after, limit)
	if err != nil {
		t.Fatalf("DeadLetters(%q, %d): %v", after, limit, err)
	}
	ids := []string{}
	for _, j := range js {
		ids = append(ids, j.ID)
	}
	return ids
}

func wantCount(t testing.TB, s jobs.Store, want int) {
	t.Helper()
	n, err := s.CountDeadLetters(context.Background())
	if err != nil || n != want {
		t.Fatalf("CountDeadLetters = %d, %v; want %d", n, err, want)
	}
}

func testDeadLetters(t *testing.T, s jobs.Store, clk *Clock) {
	ctx := context.Background()
	wantCount(t, s, 0)
	if ids := deadIDs(t, s, "", 10); len(ids) != 0 {
		t.Fatalf("empty store lists %v", ids)
	}
	// Only failures the farm gave up delivering are dead letters.
	for i, c := range []struct {
		id     string
		status jobs.Status
		reason jobs.Reason
	}{
		{"limit", jobs.Failed, jobs.ReasonDeliveryLimit},
		{"exhausted", jobs.Failed, jobs.ReasonAttemptsExhausted},
		{"model", jobs.Failed, jobs.ReasonModelError},
		{"badinput", jobs.Failed, jobs.ReasonBadInput},
		{"ok", jobs.Succeeded, ""},
		{"expired", jobs.Expired, jobs.ReasonExpired},
	} {
		MustCreate(t, s, &jobs.Job{ID: c.id, Input: []byte("in-" + c.id)})
		ev := jobs.Event{JobID: c.id, Type: jobs.EventFinal, Status: c.status, At: T0.Add(time.Duration(i+1) * time.Second), Attempt: 1}
		if c.reason != "" {
			ev.Error = &jobs.Error{Reason: c.reason, Message: "m"}
		}
		MustApply(t, s, ev, true)
	}
	MustCreate(t, s, &jobs.Job{ID: "queued"})
	if _, err := s.Cancel(ctx, "queued"); err != nil {
		t.Fatal(err)
	}
	if ids := deadIDs(t, s, "", 10); !slices.Equal(ids, []string{"limit", "exhausted"}) {
		t.Fatalf("dead letters %v, want [limit exhausted] (by finish time)", ids)
	}
	wantCount(t, s, 2)
	js, _ := s.DeadLetters(ctx, "", 10)
	if string(js[0].Input) != "in-limit" || js[0].Error.Reason != jobs.ReasonDeliveryLimit || js[0].Attempts != 1 {
		t.Fatalf("listed dead letter lost what a replay needs: %+v", View(js[0]))
	}
	// A later final event changes nothing: still one entry.
	MustApply(t, s, deadEvent("limit", T0.Add(time.Minute), jobs.ReasonDeliveryLimit), false)
	if ids := deadIDs(t, s, "", 10); !slices.Equal(ids, []string{"limit", "exhausted"}) {
		t.Fatalf("after a duplicate final: %v", ids)
	}
	if _, err := s.DeadLetters(ctx, "garbage", 10); !errors.Is(err, jobs.ErrInvalidCursor) {
		t.Fatalf("DeadLetters(bad token) = %v, want ErrInvalidCursor", err)
	}
	if ids := deadIDs(t, s, "", 0); len(ids) != 0 {
		t.Fatalf("limit 0 lists %v", ids)
	}
}

func testDeadLetterPages(t *testing.T, s jobs.Store, clk *Clock) {
	// 25 dead letters, several finishing in the same nanosecond: pages of 4
	// list each exactly once, in order.
	var want []string
	for i := range 25 {
		id := fmt.Sprintf("d%02d", 24-i) // ids against time order within a tick
		MustCreate(t, s, &jobs.Job{ID: id})
		MustApply(t, s, deadEvent(id, T0.Add(time.Duration(i/3)*time.Microsecond), jobs.ReasonDeliveryLimit), true)
	}
	for tick := range 9 {
		var ids []string
		for i := tick * 3; i < min(tick*3+3, 25); i++ {
			ids = append(ids, fmt.Sprintf("d%02d", 24-i))
		}
		sort.Strings(ids)
		want = append(want, ids...)
	}
	var got []string
	after := ""
	for range 20 {
		js, err := s.DeadLetters(context.Background(), after, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(js) > 4 {
			t.Fatalf("page of %d, limit 4", len(js))
		}
		for _, j := range js {
			got = append(got, j.ID)
		}
		if len(js) < 4 {
			break
		}
		after = jobs.DeadCursor(js[len(js)-1])
	}
	if !slices.Equal(got, want) {
		t.Fatalf("pages listed\n%v\nwant\n%v", got, want)
	}
	wantCount(t, s, 25)
}

func testReplay(t *testing.T, s jobs.Store, clk *Clock) {
	ctx := context.Background()
	MustCreate(t, s, &jobs.Job{ID: "a", Input: []byte("payload"), IdempotencyKey: "k", BodyHash: "H", RequestID: "r", Model: "m", Format: jobs.FormatV2})
	MustApply(t, s, jobs.Event{JobID: "a", Type: jobs.EventRunning, At: T0.Add(time.Second), Attempt: 1, Worker: "w1"}, true)
	MustApply(t, s, deadEvent("a", T0.Add(2*time.Second), jobs.ReasonAttemptsExhausted), true)

	clk.Set(T0.Add(time.Hour - time.Second)) // near the TTL: the replay must lift it
	startBy := T0.Add(2 * time.Hour)
	j, err := s.Replay(ctx, "a", startBy)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	want := &jobs.Job{ID: "a", Status: jobs.Queued, CreatedAt: T0, Input: []byte("payload"), IdempotencyKey: "k",
		BodyHash: "H", RequestID: "r", Model: "m", Format: jobs.FormatV2, StartBy: startBy}
	SameJob(t, "after Replay", j, want)
	got := MustGet(t, s, "a")
	SameJob(t, "Get after Replay", got, want)
	if len(got.History) != 1 {
		t.Fatalf("history %+v, want one run", got.History)
	}
	h := got.History[0]
	if h.Attempts != 4 || h.Worker != "w-a" || h.StartedAt == nil || !h.StartedAt.Equal(T0.Add(time.Second)) ||
		!h.FinishedAt.Equal(T0.Add(2*time.Second)) || h.Error == nil || h.Error.Reason != jobs.ReasonAttemptsExhausted ||
		!h.ReplayedAt.Equal(clk.Now()) {
		t.Fatalf("history entry %+v", h)
	}
	if ids := deadIDs(t, s, "", 10); len(ids) != 0 {
		t.Fatalf("a replayed job is still listed: %v", ids)
	}
	wantCount(t, s, 0)
	// Queued and unpublished: the outbox would publish it.
	un, err := s.Unpublished(ctx, clk.Now(), 10)
	if err != nil || len(un) != 1 || un[0].ID != "a" {
		t.Fatalf("Unpublished after Replay = %v, %v", un, err)
	}
	// The start-by time is the reaper's again.
	if ids, err := s.ExpireQueued(ctx, startBy.Add(-time.Second), 10); err != nil || len(ids) != 0 {
		t.Fatalf("expired before its new start-by: %v %v", ids, err)
	}
	// The idempotency key still names it, long past the old TTL.
	clk.Set(T0.Add(10 * time.Hour))
	if ex, err := s.Create(ctx, &jobs.Job{ID: "a2", IdempotencyKey: "k", BodyHash: "H"}); !errors.Is(err, jobs.ErrInProgress) || ex == nil || ex.ID != "a" {
		t.Fatalf("Create with the replayed job's key = %v, %v; want job a, ErrInProgress", ex, err)
	}
	// Not a dead letter any more: a second replay conflicts.
	if _, err := s.Replay(ctx, "a", time.Time{}); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("Replay(queued) = %v, want ErrConflict", err)
	}
	// It runs again and dies again: a second history entry.
	MustApply(t, s, jobs.Event{JobID: "a", Type: jobs.EventRunning, At: T0.Add(11 * time.Hour), Attempt: 1, Worker: "w2"}, true)
	MustApply(t, s, deadEvent("a", T0.Add(11*time.Hour+time.Second), jobs.ReasonDeliveryLimit), true)
	if ids := deadIDs(t, s, "", 10); !slices.Equal(ids, []string{"a"}) {
		t.Fatalf("dead again: %v", ids)
	}
	clk.Set(T0.Add(12 * time.Hour))
	if _, err := s.Replay(ctx, "a", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if j := MustGet(t, s, "a"); len(j.History) != 2 || j.History[1].Worker != "w-a" || !j.StartBy.IsZero() {
		t.Fatalf("second replay: start_by %v, history %+v", j.StartBy, j.History)
	}
	// Finishing after a replay: the first final of the new run wins.
	j = MustApply(t, s, jobs.Event{JobID: "a", Type: jobs.EventFinal, Status: jobs.Succeeded, At: T0.Add(13 * time.Hour), Attempt: 1, Result: json.RawMessage(`1`)}, true)
	if j.Status != jobs.Succeeded || len(j.History) != 2 {
		t.Fatalf("after the replayed run: %+v", View(j))
	}

	// Refusals.
	MustCreate(t, s, &jobs.Job{ID: "model"})
	MustApply(t, s, deadEvent("model", T0.Add(13*time.Hour), jobs.ReasonModelError), true)
	for _, id := range []string{"a", "model"} {
		if j, err := s.Replay(ctx, id, time.Time{}); !errors.Is(err, jobs.ErrConflict) || j == nil || j.ID != id {
			t.Fatalf("Replay(%s) = %v, %v; want the job and ErrConflict", id, j, err)
		}
	}
	if _, err := s.Replay(ctx, "nope", time.Time{}); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("Replay(unknown) = %v, want ErrNotFound", err)
	}
}

func testDeadLettersTTLAndDelete(t *testing.T, s jobs.Store, clk *Clock) {
	ctx := context.Background()
	for i, id := range []string{"x", "y", "z"} {
		MustCreate(t, s, &jobs.Job{ID: id})
		MustApply(t, s, deadEvent(id, T0.Add(time.Duration(i)*time.Minute), jobs.ReasonDeliveryLimit), true)
	}
	if err := s.Delete(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	if ids := deadIDs(t, s, "", 10); !slices.Equal(ids, []string{"x", "z"}) {
		t.Fatalf("after Delete(y): %v", ids)
	}
	wantCount(t, s, 2)
	clk.Set(T0.Add(contractTTL + 30*time.Second)) // x is past the TTL, z not
	if ids := deadIDs(t, s, "", 10); !slices.Equal(ids, []string{"z"}) {
		t.Fatalf("past x's TTL: %v", ids)
	}
	wantCount(t, s, 1)
	if _, err := s.Replay(ctx, "x", time.Time{}); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("Replay(past TTL) = %v, want ErrNotFound", err)
	}
}
