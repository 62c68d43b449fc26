package jobstest

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

	"github.com/warren-farm/warren/pkg/jobs"
)

// T0 is where a [Clock] starts: odd nanoseconds, to catch rounding.
var T0 = time.Date(2031, 3, 4, 5, 6, 7, 123456789, time.UTC)

// Clock is a settable clock for a store's Now, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock set to T0.
func NewClock() *Clock { return &Clock{now: T0} }

// Now returns the time the clock is set to.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set sets the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// WaiterCounter is what the suite needs of a Store beyond [jobs.Store]: how
// many of its Waits are subscribed to id now, so that a test finalises a job
// only once a Wait really waits (and so tests the wake-up, not the first
// read). Both backends implement it.
type WaiterCounter interface{ Waiters(id string) int }

// WakeWithin is how soon after a final state a Wait must return.
const WakeWithin = 100 * time.Millisecond

// MustCreate creates j in s and fails t unless it was created.
func MustCreate(t testing.TB, s jobs.Store, j *jobs.Job) *jobs.Job {
	t.Helper()
	existing, err := s.Create(context.Background(), j)
	if err != nil || existing != nil {
		t.Fatalf("Create(%s) = %v, %v; want nil, nil", j.ID, existing, err)
	}
	return j
}

// MustGet returns job id of s, failing t if there is none.
func MustGet(t testing.TB, s jobs.Store, id string) *jobs.Job {
	t.Helper()
	j, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return j
}

// MustApply applies ev to s and fails t unless it succeeded with changed ==
// wantChanged.
func MustApply(t testing.TB, s jobs.Store, ev jobs.Event, wantChanged bool) *jobs.Job {
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

func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

// View renders every field of j, internal ones included, for comparisons
// and failure messages.
func View(j *jobs.Job) map[string]string {
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
		e = string(j.Error.Reason) + ": " + j.Error.Message
	}
	return map[string]string{
		"ID": j.ID, "Status": string(j.Status), "CreatedAt": tm(&j.CreatedAt),
		"StartedAt": tm(j.StartedAt), "FinishedAt": tm(j.FinishedAt),
		"Attempts": fmt.Sprint(j.Attempts), "Result": string(j.Result), "Error": e,
		"RequestID": j.RequestID, "Input": fmt.Sprintf("%x", j.Input),
		"IdempotencyKey": j.IdempotencyKey, "BodyHash": j.BodyHash,
		"Published": fmt.Sprint(j.Published), "StartBy": tm(&j.StartBy), "Worker": j.Worker,
		"Model": j.Model, "Version": j.Version, "Format": j.Format,
	}
}

// SameJob fails t, listing the differences, unless got and want agree in
// every field (internal ones included; times to the nanosecond and in UTC).
func SameJob(t testing.TB, what string, got, want *jobs.Job) {
	t.Helper()
	g, w := View(got), View(want)
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
	t.Fatalf("%s: job differs:\n%s", what, linesOf(diff))
}

func linesOf(lines []string) string {
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

// WaitUntilWaiting returns once n Waits on id have subscribed in s (a
// [WaiterCounter]); it fails t after 5s.
func WaitUntilWaiting(t testing.TB, s jobs.Store, id string, n int) {
	t.Helper()
	wc, ok := s.(WaiterCounter)
	if !ok {
		t.Fatalf("%T does not implement jobstest.WaiterCounter", s)
	}
	deadline := time.Now().Add(5 * time.Second)
	for wc.Waiters(id) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d Wait(s) on %s not subscribed after 5s (have %d)", n, id, wc.Waiters(id))
		}
		time.Sleep(time.Millisecond)
	}
}

// WaitResult is what a Wait started by [GoWait] returned, and when.
type WaitResult struct {
	Job *jobs.Job
	Err error
	At  time.Time
}

// GoWait runs s.Wait in a goroutine; its result arrives on the channel
// (buffered, so the goroutine ends even if nobody reads it).
func GoWait(ctx context.Context, s jobs.Store, id string, timeout time.Duration) <-chan WaitResult {
	ch := make(chan WaitResult, 1)
	go func() {
		j, err := s.Wait(ctx, id, timeout)
		ch <- WaitResult{j, err, time.Now()}
	}()
	return ch
}

// RecvWait returns the result from ch, failing t if none arrives within
// within.
func RecvWait(t testing.TB, ch <-chan WaitResult, within time.Duration) WaitResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(within):
		t.Fatalf("Wait did not return within %v", within)
		return WaitResult{}
	}
}
