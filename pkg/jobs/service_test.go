package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/jobs/boltstore"
	"github.com/warren-farm/warren/pkg/jobs/redisstore"
	"github.com/warren-farm/warren/pkg/jobs/redisstore/redistest"
)

// The Service's tests run against both real stores; only the broker is a
// fake (fakePublisher): the lead's end-to-end tests cover the real one.

// ---- fakes ----

// fakePublisher records what the Service publishes and fails on demand.
type fakePublisher struct {
	mu        sync.Mutex
	ready     bool
	fail      []error // returned by the next PublishJob calls in turn (nil: succeed)
	block     bool    // PublishJob and PublishCancel wait for ctx to end (or release)
	release   chan struct{}
	attempts  []jobs.Message
	confirmed []jobs.Message
	cancels   []string
	cancelErr error
}

func newPublisher() *fakePublisher { return &fakePublisher{ready: true} }

func (p *fakePublisher) PublishJob(ctx context.Context, m jobs.Message) error {
	p.mu.Lock()
	p.attempts = append(p.attempts, m)
	var err error
	if len(p.fail) > 0 {
		err, p.fail = p.fail[0], p.fail[1:]
	}
	block := p.block
	p.mu.Unlock()
	if block {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the confirm: %w: %w", jobs.ErrUnconfirmed, ctx.Err())
		case <-p.release:
			return errors.New("released: the test ended")
		}
	}
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.confirmed = append(p.confirmed, m)
	p.mu.Unlock()
	return nil
}

func (p *fakePublisher) PublishCancel(ctx context.Context, id string) error {
	p.mu.Lock()
	block, err := p.block, p.cancelErr
	p.mu.Unlock()
	if block {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.release:
			return errors.New("released: the test ended")
		}
	}
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.cancels = append(p.cancels, id)
	p.mu.Unlock()
	return nil
}

func (p *fakePublisher) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ready
}

func (p *fakePublisher) set(fn func(p *fakePublisher)) {
	p.mu.Lock()
	fn(p)
	p.mu.Unlock()
}

// ids returns the job ids of the attempted and of the confirmed publishes.
func (p *fakePublisher) ids() (attempted, confirmed []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.attempts {
		attempted = append(attempted, m.ID)
	}
	for _, m := range p.confirmed {
		confirmed = append(confirmed, m.ID)
	}
	return attempted, confirmed
}

func (p *fakePublisher) lastAttempt(t *testing.T) jobs.Message {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.attempts) == 0 {
		t.Fatal("nothing was published")
	}
	return p.attempts[len(p.attempts)-1]
}

func (p *fakePublisher) cancelled() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.cancels)
}

// countObserver counts what the Service reports.
type countObserver struct {
	mu        sync.Mutex
	submitted int
	dead      int
	finished  map[jobs.Status]int
}

func (o *countObserver) Submitted() { o.mu.Lock(); o.submitted++; o.mu.Unlock() }
func (o *countObserver) DeadLettered() {
	o.mu.Lock()
	o.dead++
	o.mu.Unlock()
}
func (o *countObserver) Finished(s jobs.Status) {
	o.mu.Lock()
	if o.finished == nil {
		o.finished = map[jobs.Status]int{}
	}
	o.finished[s]++
	o.mu.Unlock()
}

// counts is "submitted=… dead=… <status>=…" for comparisons.
func (o *countObserver) counts() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := fmt.Sprintf("submitted=%d dead=%d", o.submitted, o.dead)
	for _, st := range jobs.FinalStatuses {
		if n := o.finished[st]; n > 0 {
			s += fmt.Sprintf(" %s=%d", st, n)
		}
	}
	return s
}

func (o *countObserver) want(t *testing.T, want string) {
	t.Helper()
	if got := o.counts(); got != want {
		t.Fatalf("observer counts %q, want %q", got, want)
	}
}

// ---- harness ----

type backend struct {
	name string
	open func(t *testing.T) jobs.Store
}

func openBolt(t *testing.T) jobs.Store {
	t.Helper()
	s, err := boltstore.OpenBolt(boltstore.BoltConfig{Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func openRedis(t *testing.T) jobs.Store {
	t.Helper()
	u := redistest.URL(t)
	s, err := redisstore.OpenRedis(context.Background(), redisstore.RedisConfig{URL: u, Prefix: redistest.Prefix(t, u)})
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

var backends = []backend{{"bolt", openBolt}, {"redis", openRedis}}

// forEachBackend runs fn as a subtest per backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, open func(t *testing.T) jobs.Store)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { fn(t, b.open) })
	}
}

// newService makes a Service on store and pub; edit, if not nil, changes
// the config first.
func newService(t *testing.T, store jobs.Store, pub jobs.Publisher, edit func(*jobs.ServiceConfig)) (*jobs.Service, *countObserver) {
	t.Helper()
	obs := &countObserver{}
	cfg := jobs.ServiceConfig{Store: store, Publisher: pub, Observer: obs}
	if edit != nil {
		edit(&cfg)
	}
	svc, err := jobs.NewService(cfg)
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	return svc, obs
}

// startRun runs svc.Run until t ends; the cleanup fails t unless Run
// returns nil within 5s of its ctx ending.
func startRun(t *testing.T, svc *jobs.Service) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return within 5s of its ctx ending")
		}
	})
}

// eventually polls cond until it holds, failing t after 10s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func get(t *testing.T, svc *jobs.Service, id string) *jobs.Job {
	t.Helper()
	j, err := svc.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return j
}

func submit(t *testing.T, svc *jobs.Service, sub jobs.Submission) *jobs.Job {
	t.Helper()
	j, replay, err := svc.Submit(context.Background(), sub)
	if err != nil || replay || j == nil {
		t.Fatalf("Submit = %+v, replay %v, %v; want a new job", j, replay, err)
	}
	return j
}

func wantIs(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

func apply(t *testing.T, svc *jobs.Service, ev jobs.Event) {
	t.Helper()
	if err := svc.Apply(context.Background(), ev); err != nil {
		t.Fatalf("Apply(%+v): %v", ev, err)
	}
}

var jobID = regexp.MustCompile(`^j[a-z2-7]{26}$`)

// ---- config ----

func TestNewService(t *testing.T) {
	valid := func() jobs.ServiceConfig {
		return jobs.ServiceConfig{Store: openBolt(t), Publisher: newPublisher()}
	}
	if _, err := jobs.NewService(valid()); err != nil {
		t.Fatalf("NewService(valid) = %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*jobs.ServiceConfig)
		want []string
	}{
		{"no store", func(c *jobs.ServiceConfig) { c.Store = nil }, []string{"Store is required"}},
		{"no publisher", func(c *jobs.ServiceConfig) { c.Publisher = nil }, []string{"Publisher is required"}},
		{"nothing", func(c *jobs.ServiceConfig) { *c = jobs.ServiceConfig{} }, []string{"Store is required", "Publisher is required"}},
		{"negative durations", func(c *jobs.ServiceConfig) {
			c.StartTimeout, c.RecoverAfter, c.PublishTimeout, c.RecoverEvery, c.ReapEvery = -1, -1, -1, -1, -1
		}, []string{"StartTimeout", "RecoverAfter", "PublishTimeout", "RecoverEvery", "ReapEvery"}},
		{"negative delivery limit", func(c *jobs.ServiceConfig) { c.DeliveryLimit = -1 }, []string{"DeliveryLimit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			tc.edit(&cfg)
			svc, err := jobs.NewService(cfg)
			if err == nil {
				t.Fatalf("NewService = %v, nil; want an error", svc)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// ---- Submit ----

func TestServiceSubmit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) jobs.Store) {
		ctx := context.Background()
		store := open(t)
		pub := newPublisher()
		svc, obs := newService(t, store, pub, nil)
		sub := jobs.Submission{RequestID: "req-1", Model: "resnet", Version: "2", Format: jobs.FormatV2,
			Input: []byte(`{"inputs":[1]}`), IdempotencyKey: "key-1"}

		t.Run("created", func(t *testing.T) {
			j := submit(t, svc, sub)
			if !jobID.MatchString(j.ID) || j.Status != jobs.Queued || !j.Published || !j.StartBy.IsZero() {
				t.Fatalf("submitted job: id %q, status %s, published %v, start by %v", j.ID, j.Status, j.Published, j.StartBy)
			}
			m := pub.lastAttempt(t)
			if m.ID != j.ID || m.RequestID != "req-1" || m.Model != "resnet" || m.Version != "2" ||
				string(m.Body) != `{"inputs":[1]}` || !m.StartBy.IsZero() {
				t.Fatalf("published %+v", m)
			}
			stored := get(t, svc, j.ID)
			if !stored.Published || stored.Model != "resnet" || stored.Version != "2" || stored.Format != jobs.FormatV2 ||
				stored.RequestID != "req-1" || string(stored.Input) != `{"inputs":[1]}` || stored.IdempotencyKey != "key-1" || stored.BodyHash == "" {
				t.Fatalf("stored job %+v", stored)
			}
			obs.want(t, "submitted=1 dead=0")
		})

		t.Run("replay", func(t *testing.T) {
			first, _ := pub.ids()
			j, replay, err := svc.Submit(ctx, sub)
			if err != nil || !replay || j == nil || j.ID != first[0] {
				t.Fatalf("Submit again = %+v, replay %v, %v; want job %s replayed", j, replay, err, first[0])
			}
			if again, _ := pub.ids(); len(again) != 1 {
				t.Fatalf("a replay published again: %v", again)
			}
			obs.want(t, "submitted=1 dead=0")
		})

		t.Run("key mismatch", func(t *testing.T) {
			for name, edit := range map[string]func(*jobs.Submission){
				"input":   func(s *jobs.Submission) { s.Input = []byte(`{"inputs":[2]}`) },
				"model":   func(s *jobs.Submission) { s.Model = "bert" },
				"version": func(s *jobs.Submission) { s.Version = "3" },
				"format":  func(s *jobs.Submission) { s.Format = jobs.FormatProcess },
			} {
				other := sub
				edit(&other)
				j, replay, err := svc.Submit(ctx, other)
				if !errors.Is(err, jobs.ErrKeyMismatch) || j != nil || replay {
					t.Errorf("same key, other %s: %+v, %v, %v; want ErrKeyMismatch", name, j, replay, err)
				}
			}
			if n, _ := pub.ids(); len(n) != 1 {
				t.Fatalf("a mismatch published: %v", n)
			}
		})

		t.Run("start timeout", func(t *testing.T) {
			svc, _ := newService(t, store, pub, func(c *jobs.ServiceConfig) { c.StartTimeout = time.Minute })
			j := submit(t, svc, jobs.Submission{Input: []byte("x")})
			if !j.StartBy.Equal(j.CreatedAt.Add(time.Minute)) {
				t.Fatalf("StartBy %v, CreatedAt %v; want a minute apart", j.StartBy, j.CreatedAt)
			}
			if m := pub.lastAttempt(t); !m.StartBy.Equal(j.StartBy) {
				t.Fatalf("published StartBy %v, want %v", m.StartBy, j.StartBy)
			}
		})
	})
}

// TestServiceSubmitUnconfirmed: a publish the broker never answered keeps
// the job (the key is in progress), and Run publishes it again.
func TestServiceSubmitUnconfirmed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) jobs.Store) {
		ctx := context.Background()
		store := open(t)
		pub := newPublisher()
		pub.fail = []error{fmt.Errorf("no confirm within 10s: %w", jobs.ErrUnconfirmed)}
		svc, obs := newService(t, store, pub, func(c *jobs.ServiceConfig) {
			c.RecoverAfter, c.RecoverEvery = time.Millisecond, 10*time.Millisecond
		})
		sub := jobs.Submission{RequestID: "r", Model: "m", Version: "1", Format: jobs.FormatProcess, Input: []byte("in"), IdempotencyKey: "k"}
		j, replay, err := svc.Submit(ctx, sub)
		if !errors.Is(err, jobs.ErrUnconfirmed) || j != nil || replay {
			t.Fatalf("Submit = %+v, %v, %v; want ErrUnconfirmed", j, replay, err)
		}
		kept := pub.lastAttempt(t)
		if !strings.Contains(err.Error(), kept.ID) {
			t.Errorf("error %q does not name the kept job %s", err, kept.ID)
		}
		if j := get(t, svc, kept.ID); j.Status != jobs.Queued || j.Published {
			t.Fatalf("kept job: %+v", j)
		}
		_, _, err = svc.Submit(ctx, sub)
		wantIs(t, "Submit with the key of the kept job", err, jobs.ErrInProgress)
		obs.want(t, "submitted=0 dead=0")

		startRun(t, svc)
		eventually(t, "the outbox republishes the kept job", func() bool {
			j, err := store.Get(ctx, kept.ID)
			return err == nil && j.Published
		})
		if _, confirmed := pub.ids(); !slices.Equal(confirmed, []string{kept.ID}) {
			t.Fatalf("confirmed publishes %v, want [%s]", confirmed, kept.ID)
		}
		if m := pub.lastAttempt(t); m.Model != "m" || m.Version != "1" || string(m.Body) != "in" || m.RequestID != "r" {
			t.Fatalf("republished %+v", m)
		}
		j, replay, err = svc.Submit(ctx, sub)
		if err != nil || !replay || j.ID != kept.ID {
			t.Fatalf("Submit after the republish = %+v, %v, %v; want a replay of %s", j, replay, err, kept.ID)
		}
	})
}

// TestServiceSubmitRefused: a publish that definitely failed deletes the job
// (it never runs) and frees its key; the error is the publisher's.
func TestServiceSubmitRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) jobs.Store) {
		ctx := context.Background()
		store := open(t)
		pub := newPublisher()
		errQueueFull := errors.New("queue full")
		pub.fail = []error{errQueueFull}
		svc, obs := newService(t, store, pub, nil)
		sub := jobs.Submission{Input: []byte("in"), IdempotencyKey: "k"}
		j, _, err := svc.Submit(ctx, sub)
		if err != errQueueFull || j != nil {
			t.Fatalf("Submit = %+v, %v; want the publisher's error unchanged", j, err)
		}
		refused := pub.lastAttempt(t)
		_, err = svc.Get(ctx, refused.ID)
		wantIs(t, "Get(refused job)", err, jobs.ErrNotFound)
		if l, err := store.Unpublished(ctx, time.Now().Add(time.Hour), 10); err != nil || len(l) != 0 {
			t.Fatalf("outbox after a refused publish = %v, %v", l, err)
		}
		j = submit(t, svc, sub) // the key is free
		if j.ID == refused.ID {
			t.Fatal("the retry reused the refused job's id")
		}
		obs.want(t, "submitted=1 dead=0")
	})
}

// TestServiceStoreDown: a failing store is ErrStoreUnavailable everywhere,
// with the cause kept; nothing is published.
func TestServiceStoreDown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) jobs.Store) {
		ctx := context.Background()
		store := open(t)
		pub := newPublisher()
		svc, obs := newService(t, store, pub, nil)
		j := submit(t, svc, jobs.Submission{Input: []byte("x")})
		if err := store.Close(); err != nil {
			t.Fatal(err)
		}
		_, _, err := svc.Submit(ctx, jobs.Submission{Input: []byte("y"), IdempotencyKey: "k"})
		wantIs(t, "Submit", err, jobs.ErrStoreUnavailable)
		wantIs(t, "Submit", err, jobs.ErrClosed)
		if n, _ := pub.ids(); len(n) != 1 {
			t.Fatalf("published with the store down: %v", n)
		}
		_, err = svc.Get(ctx, j.ID)
		wantIs(t, "Get", err, jobs.ErrStoreUnavailable)
		_, err = svc.Wait(ctx, j.ID, time.Second)
		wantIs(t, "Wait", err, jobs.ErrStoreUnavailable)
		_, err = svc.Cancel(ctx, j.ID)
		wantIs(t, "Cancel", err, jobs.ErrStoreUnavailable)
		err = svc.Apply(ctx, jobs.Event{JobID: j.ID, Type: jobs.EventRunning, Attempt: 1})
		wantIs(t, "Apply (the consumer requeues)", err, jobs.ErrStoreUnavailable)
		err = svc.ApplyDead(ctx, jobs.DeadLetter{JobID: j.ID, Reason: "delivery_limit"})
		wantIs(t, "ApplyDead (the consumer requeues)", err, jobs.ErrStoreUnavailable)
		wantIs(t, "PutMeta", svc.PutMeta(ctx, "k", nil), jobs.ErrStoreUnavailable)
		_, err = svc.ListMeta(ctx, "")
		wantIs(t, "ListMeta", err, jobs.ErrStoreUnavailable)
		obs.want(t, "submitted=1 dead=0") // a dead letter to requeue is not counted
	})
}

// TestServiceContextEnded: the caller's ctx ending is its own error, not a
// store failure.
func TestServiceContextEnded(t *testing.T) {
	svc, _ := newService(t, openBolt(t), newPublisher(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := svc.Submit(ctx, jobs.Submission{Input: []byte("x")})
	if !errors.Is(err, context.Canceled) || errors.Is(err, jobs.ErrStoreUnavailable) {
		t.Fatalf("Submit with an ended ctx: %v", err)
	}
	_, err = svc.Get(ctx, "j")
	if !errors.Is(err, context.Canceled) || errors.Is(err, jobs.ErrStoreUnavailable) {
		t.Fatalf("Get with an ended ctx: %v", err)
	}
}

// ---- Get, Wait, Cancel ----

func TestServiceGetWait(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) jobs.Store) {
		ctx := context.Background()
		svc, _ := newService(t, open(t), newPublisher(), nil)
		_, err := svc.Get(ctx, "nope")
		if !errors.Is(err, jobs.ErrNotFound) || errors.Is(err, jobs.ErrStoreUnavailable) {
			t.Fatalf("Get(unknown) = %v; want ErrNotFound unchanged", err)
		}
		_, err = svc.Wait(ctx, "nope", time.Second)
		if !errors.Is(err, jobs.ErrNotFound) || errors.Is(err, jobs.ErrStoreUnavailable) {
			t.Fatalf("Wait(unknown) = %v; want ErrNotFound unchanged", err)
		}
		j := submit(t, svc, jobs.Submission{Input: []byte("x")})
		done := make(chan *jobs.Job, 1)
		go func() {
			j, err := svc.Wait(ctx, j.ID, 10*time.Second)
			if err != nil {
				t.Errorf("Wait: %v", err)
			}
			done <- j
		}()
		apply(t, svc, jobs.Event{JobID: j.ID, Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1, Result: []byte(`"ok"`)})
		select {
		case got := <-done:
			if got == nil || got.Status != jobs.Succeeded || string(got.Result) != `"ok"` {
				t.Fatalf("Wait = %+v", got)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Wait did not return within 5s of the final event")
		}
		// A short wait on an unfinished job: the job as it is, no error.
		q := submit(t, svc, jobs.Submission{Input: []byte("y")})
		if got, err := svc.Wait(ctx, q.ID, 10*time.Millisecond); err != nil || got.Status != jobs.Queued {
			t.Fatalf("Wait(queued, 10ms) = %+v, %v", got, err)
		}
	})
}

func TestServiceCancel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) jobs.Store) {
		ctx := context.Background()
		pub := newPublisher()
		svc, obs := newService(t, open(t), pub, nil)

		q := submit(t, svc, jobs.Submission{Input: []byte("q")})
		j, err := svc.Cancel(ctx, q.ID)
		if err != nil || j == nil || j.Status != jobs.Cancelled {
			t.Fatalf("Cancel(queued) = %+v, %v", j, err)
		}
		if got := pub.cancelled(); !slices.Equal(got, []string{q.ID}) {
			t.Fatalf("cancel notices %v, want [%s]", got, q.ID)
		}
		obs.want(t, "submitted=1 dead=0 cancelled=1")

		// Again: the same job, no error, no second notice or count.
		j, err = svc.Cancel(ctx, q.ID)
		if err != nil || j == nil || j.Status != jobs.Cancelled {
			t.Fatalf("Cancel(cancelled) = %+v, %v; want the job and no error", j, err)
		}
		if got := pub.cancelled(); len(got) != 1 {
			t.Fatalf("cancel notices after a second Cancel: %v", got)
		}
		obs.want(t, "submitted=1 dead=0 cancelled=1")

		r := submit(t, svc, jobs.Submission{Input: []byte("r")})
		apply(t, svc, jobs.Event{JobID: r.ID, Type: jobs.EventRunning, Attempt: 1})
		j, err = svc.Cancel(ctx, r.ID)
		if !errors.Is(err, jobs.ErrConflict) || j == nil || j.Status != jobs.Running {
			t.Fatalf("Cancel(running) = %+v, %v; want the job and ErrConflict", j, err)
		}
		f := submit(t, svc, jobs.Submission{Input: []byte("f")})
		apply(t, svc, jobs.Event{JobID: f.ID, Type: jobs.EventFinal, Status: jobs.Failed, Attempt: 1,
			Error: &jobs.Error{Reason: jobs.ReasonModelError, Message: "boom"}})
		j, err = svc.Cancel(ctx, f.ID)
		if !errors.Is(err, jobs.ErrConflict) || j == nil || j.Status != jobs.Failed {
			t.Fatalf("Cancel(failed) = %+v, %v; want the job and ErrConflict", j, err)
		}
		_, err = svc.Cancel(ctx, "nope")
		if !errors.Is(err, jobs.ErrNotFound) || errors.Is(err, jobs.ErrStoreUnavailable) {
			t.Fatalf("Cancel(unknown) = %v; want ErrNotFound unchanged", err)
		}
		if got := pub.cancelled(); len(got) != 1 {
			t.Fatalf("cancel notices for refused cancels: %v", got)
		}

		// The notice is a hint: its failure does not fail the cancel.
		pub.set(func(p *fakePublisher) { p.cancelErr = errors.New("broker away") })
		c := submit(t, svc, jobs.Submission{Input: []byte("c")})
		if j, err := svc.Cancel(ctx, c.ID); err != nil || j.Status != jobs.Cancelled {
			t.Fatalf("Cancel with the notice failing = %+v, %v", j, err)
		}
		obs.want(t, "submitted=4 dead=0 failed=1 cancelled=2")
	})
}

// ---- Apply, ApplyDead ----

func TestServiceApply(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) jobs.Store) {
		ctx := context.Background()
		svc, obs := newService(t, open(t), newPublisher(), nil)
		j := submit(t, svc, jobs.Submission{Input: []byte("x")})

		apply(t, svc, jobs.Event{JobID: j.ID, Type: jobs.EventRunning, Attempt: 1, Worker: "w"})
		if got := get(t, svc, j.ID); got.Status != jobs.Running || got.Attempts != 1 {
			t.Fatalf("after running: %+v", got)
		}
		obs.want(t, "submitted=1 dead=0")
		final := jobs.Event{JobID: j.ID, Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1, Result: []byte(`{"a":1}`)}
		apply(t, svc, final)
		obs.want(t, "submitted=1 dead=0 succeeded=1")
		// A duplicate, and a different late final: applied, not counted.
		apply(t, svc, final)
		apply(t, svc, jobs.Event{JobID: j.ID, Type: jobs.EventFinal, Status: jobs.Failed, Attempt: 2,
			Error: &jobs.Error{Reason: jobs.ReasonRunTimeout, Message: "late"}})
		obs.want(t, "submitted=1 dead=0 succeeded=1")
		if got := get(t, svc, j.ID); got.Status != jobs.Succeeded || string(got.Result) != `{"a":1}` {
			t.Fatalf("after a late final: %+v", got)
		}

		// Events that can never apply are dropped (nil: the consumer acks).
		for _, ev := range []jobs.Event{
			{JobID: "unknown", Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1},
			{JobID: j.ID, Type: "bogus"},
			{JobID: "", Type: jobs.EventRunning},
		} {
			if err := svc.Apply(ctx, ev); err != nil {
				t.Errorf("Apply(%+v) = %v; want it dropped", ev, err)
			}
		}
		obs.want(t, "submitted=1 dead=0 succeeded=1")
	})
}

func TestServiceApplyDead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) jobs.Store) {
		ctx := context.Background()
		svc, obs := newService(t, open(t), newPublisher(), func(c *jobs.ServiceConfig) { c.DeliveryLimit = 7 })

		if err := svc.ApplyDead(ctx, jobs.DeadLetter{Reason: "rejected"}); err != nil {
			t.Fatalf("ApplyDead(no job id) = %v; want it dropped", err)
		}
		obs.want(t, "submitted=0 dead=1")

		j := submit(t, svc, jobs.Submission{Input: []byte("x")})
		apply(t, svc, jobs.Event{JobID: j.ID, Type: jobs.EventRunning, Attempt: 3})
		if err := svc.ApplyDead(ctx, jobs.DeadLetter{JobID: j.ID, Reason: "delivery_limit"}); err != nil {
			t.Fatalf("ApplyDead: %v", err)
		}
		got := get(t, svc, j.ID)
		if got.Status != jobs.Failed || got.Error == nil || got.Error.Reason != jobs.ReasonDeliveryLimit ||
			!strings.Contains(got.Error.Message, "(delivery_limit)") || !strings.Contains(got.Error.Message, "more than 7 times") ||
			got.Attempts != 3 {
			t.Fatalf("dead-lettered job: %+v, error %+v", got, got.Error)
		}
		obs.want(t, "submitted=1 dead=2 failed=1")

		// A dead letter for a job that already finished changes nothing.
		if err := svc.ApplyDead(ctx, jobs.DeadLetter{JobID: j.ID, Reason: "rejected"}); err != nil {
			t.Fatalf("ApplyDead(final job): %v", err)
		}
		if again := get(t, svc, j.ID); !strings.Contains(again.Error.Message, "(delivery_limit)") {
			t.Fatalf("a second dead letter changed the job: %+v", again.Error)
		}
		// Without a reason from the broker, the message says so.
		k := submit(t, svc, jobs.Submission{Input: []byte("y")})
		if err := svc.ApplyDead(ctx, jobs.DeadLetter{JobID: k.ID}); err != nil {
			t.Fatal(err)
		}
		if e := get(t, svc, k.ID).Error; e == nil || !strings.Contains(e.Message, "(no reason given)") {
			t.Fatalf("dead letter without a reason: %+v", e)
		}
		obs.want(t, "submitted=2 dead=4 failed=2")
	})
}

// ---- Run ----

// TestServiceReaper: Run expires a job not started by its StartBy.
func TestServiceReaper(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) jobs.Store) {
		svc, obs := newService(t, open(t), newPublisher(), func(c *jobs.ServiceConfig) {
			c.StartTimeout, c.ReapEvery = 50*time.Millisecond, 10*time.Millisecond
		})
		startRun(t, svc)
		j := submit(t, svc, jobs.Submission{Input: []byte("x")})
		r := submit(t, svc, jobs.Submission{Input: []byte("r")})
		apply(t, svc, jobs.Event{JobID: r.ID, Type: jobs.EventRunning, Attempt: 1})
		eventually(t, "the reaper expires the queued job", func() bool { return get(t, svc, j.ID).Status == jobs.Expired })
		// The count follows the store's write.
		eventually(t, "the expiry is counted", func() bool { return obs.counts() == "submitted=2 dead=0 expired=1" })
		if e := get(t, svc, j.ID).Error; e == nil || e.Reason != jobs.ReasonExpired {
			t.Fatalf("expired job's error: %+v", e)
		}
		if st := get(t, svc, r.ID).Status; st != jobs.Running {
			t.Fatalf("the reaper touched a running job: %s", st)
		}
		obs.want(t, "submitted=2 dead=0 expired=1")
	})
}

// TestServiceRecoverEarlierProcess: jobs an earlier process stored but never
// published are republished as soon as Run starts, not RecoverAfter later.
func TestServiceRecoverEarlierProcess(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) jobs.Store) {
		ctx := context.Background()
		store := open(t)
		old := &jobs.Job{ID: "old", CreatedAt: time.Now().Add(-time.Second), Input: []byte("o"), Model: "m", Version: "v", RequestID: "r"}
		if _, err := store.Create(ctx, old); err != nil {
			t.Fatal(err)
		}
		pub := newPublisher()
		svc, obs := newService(t, store, pub, nil) // RecoverAfter 30s
		startRun(t, svc)
		eventually(t, "the earlier process's job is republished", func() bool {
			j, err := store.Get(ctx, "old")
			return err == nil && j.Published
		})
		if m := pub.lastAttempt(t); m.ID != "old" || string(m.Body) != "o" || m.Model != "m" || m.Version != "v" || m.RequestID != "r" {
			t.Fatalf("republished %+v", m)
		}
		obs.want(t, "submitted=0 dead=0")
	})
}

// TestServiceRunStops: Run returns nil once its ctx ends; a second Run at
// the same time is refused at once.
func TestServiceRunStops(t *testing.T) {
	svc, _ := newService(t, openBolt(t), newPublisher(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 2)
	for range 2 {
		go func() { done <- svc.Run(ctx) }()
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "already running") {
			t.Fatalf("the first Run to return (before its ctx ended) = %v; want already running", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("neither of two concurrent Runs was refused within 5s")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of its ctx ending")
	}
	// Stopped, it may run again (and returns at once on an ended ctx).
	if err := svc.Run(ctx); err != nil {
		t.Fatalf("Run after Run = %v", err)
	}
}

func TestServiceMeta(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) jobs.Store) {
		ctx := context.Background()
		svc, _ := newService(t, open(t), newPublisher(), nil)
		if err := svc.PutMeta(ctx, "models/resnet", []byte(`{"versions":["1"]}`)); err != nil {
			t.Fatal(err)
		}
		m, err := svc.ListMeta(ctx, "models/")
		if err != nil || len(m) != 1 || string(m["models/resnet"]) != `{"versions":["1"]}` {
			t.Fatalf("ListMeta = %q, %v", m, err)
		}
		err = svc.PutMeta(ctx, "", nil)
		if !errors.Is(err, jobs.ErrInvalidMetaKey) || errors.Is(err, jobs.ErrStoreUnavailable) {
			t.Fatalf("PutMeta(empty key) = %v; want ErrInvalidMetaKey unchanged", err)
		}
	})
}

// ---- timing: testing/synctest moves a fake clock; nothing sleeps for real ----

// synctestService runs fn in a synctest bubble with a BoltStore and a
// Service made inside it (the store's and the Service's clocks are the
// bubble's). fn makes the Service with mk and starts its Run with run; Run
// is stopped (and must return nil) when fn returns, even by t.Fatal.
//
// The store's BatchDelay is 1ns: each bbolt write waits on a timer, which
// in a bubble fires only once every goroutine is blocked and the clock
// moves, so settle (sleep 1ms, then synctest.Wait) lets whatever Run is
// doing finish.
func synctestService(t *testing.T, pub *fakePublisher, edit func(*jobs.ServiceConfig),
	fn func(t *testing.T, store jobs.Store, mk func() (*jobs.Service, *countObserver), run func())) {
	synctest.Test(t, func(t *testing.T) {
		store, err := boltstore.OpenBolt(boltstore.BoltConfig{Path: filepath.Join(t.TempDir(), "jobs.db"), BatchDelay: time.Nanosecond})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close() // after Run stopped: defers run in reverse
		// Blocked publishes end with the test (made here: a bubble may only
		// block durably on its own channels).
		pub.set(func(p *fakePublisher) { p.release = make(chan struct{}) })
		defer close(pub.release)
		var svc *jobs.Service
		mk := func() (*jobs.Service, *countObserver) {
			var obs *countObserver
			svc, obs = newService(t, store, pub, edit)
			return svc, obs
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		started := false
		run := func() {
			started = true
			go func() { done <- svc.Run(ctx) }()
			settle()
		}
		defer func() {
			cancel()
			if started {
				if err := <-done; err != nil {
					t.Errorf("Run = %v", err)
				}
			}
		}()
		fn(t, store, mk, run)
	})
}

// within runs fn and fails t unless it returns within d of the bubble's
// clock (milliseconds of real time): a call that never returns fails the
// test instead of hanging it while the janitor's ticker moves the clock.
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

// settle lets the bubble's goroutines finish what they are doing (see
// synctestService): 1ms of fake time, then until all are blocked.
func settle() {
	time.Sleep(time.Millisecond)
	synctest.Wait()
}

func createAt(t *testing.T, store jobs.Store, id string) *jobs.Job {
	t.Helper()
	j := &jobs.Job{ID: id, Input: []byte(id), Model: "m"}
	if existing, err := store.Create(context.Background(), j); err != nil || existing != nil {
		t.Fatalf("Create(%s) = %v, %v", id, existing, err)
	}
	return j
}

func published(t *testing.T, store jobs.Store, id string) bool {
	t.Helper()
	j, err := store.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return j.Published
}

// TestServiceOutboxTiming: an earlier process's jobs go out in Run's first
// round; this process's unconfirmed job only RecoverAfter after its
// creation; a round stops at its first failure and the next one retries.
func TestServiceOutboxTiming(t *testing.T) {
	pub := newPublisher()
	synctestService(t, pub, nil, func(t *testing.T, store jobs.Store, mk func() (*jobs.Service, *countObserver), run func()) {
		for _, id := range []string{"old1", "old2", "old3"} {
			createAt(t, store, id)
			time.Sleep(time.Millisecond) // distinct creation times: the outbox goes oldest first
		}
		time.Sleep(time.Second)
		svc, obs := mk()
		pub.fail = []error{
			fmt.Errorf("no confirm: %w", jobs.ErrUnconfirmed), // this process's submission
			errors.New("refused"),                             // the first republish
		}
		_, _, err := svc.Submit(context.Background(), jobs.Submission{Input: []byte("new")})
		wantIs(t, "Submit", err, jobs.ErrUnconfirmed)
		kept := pub.lastAttempt(t).ID
		created := time.Now()
		time.Sleep(2 * time.Second)

		run()
		attempted, confirmed := pub.ids()
		if !slices.Equal(attempted, []string{kept, "old1"}) || len(confirmed) != 0 {
			t.Fatalf("first round: attempted %v, confirmed %v; want [%s old1] refused, then the round stopped", attempted, confirmed, kept)
		}
		time.Sleep(jobs.DefaultRecoverEvery)
		settle()
		if _, confirmed = pub.ids(); !slices.Equal(confirmed, []string{"old1", "old2", "old3"}) {
			t.Fatalf("second round confirmed %v, want [old1 old2 old3]", confirmed)
		}
		for _, id := range []string{"old1", "old2", "old3"} {
			if !published(t, store, id) {
				t.Fatalf("%s republished but not marked published", id)
			}
		}
		time.Sleep(time.Until(created.Add(jobs.DefaultRecoverAfter)) - 10*time.Millisecond)
		settle()
		if published(t, store, kept) {
			t.Fatalf("this process's job was republished before RecoverAfter (%v)", time.Since(created))
		}
		time.Sleep(jobs.DefaultRecoverEvery)
		settle()
		if !published(t, store, kept) {
			t.Fatalf("this process's job not republished %v after its creation", time.Since(created))
		}
		obs.want(t, "submitted=0 dead=0")
	})
}

// TestServiceOutboxWaitsForReady: no round while the Publisher is not Ready.
func TestServiceOutboxWaitsForReady(t *testing.T) {
	pub := newPublisher()
	pub.ready = false
	synctestService(t, pub, nil, func(t *testing.T, store jobs.Store, mk func() (*jobs.Service, *countObserver), run func()) {
		createAt(t, store, "old")
		time.Sleep(time.Second)
		mk()
		run()
		time.Sleep(time.Minute)
		settle()
		if attempted, _ := pub.ids(); len(attempted) != 0 {
			t.Fatalf("published while not Ready: %v", attempted)
		}
		pub.set(func(p *fakePublisher) { p.ready = true })
		time.Sleep(jobs.DefaultRecoverEvery)
		settle()
		if !published(t, store, "old") {
			t.Fatalf("not republished within RecoverEvery of becoming Ready")
		}
	})
}

// TestServiceRoundsPage: a backlog larger than one page goes out in one
// outbox round, and expires in one reaper round.
func TestServiceRoundsPage(t *testing.T) {
	const n = 7
	pub := newPublisher()
	synctestService(t, pub, func(c *jobs.ServiceConfig) { c.StartTimeout = 10 * time.Second },
		func(t *testing.T, store jobs.Store, mk func() (*jobs.Service, *countObserver), run func()) {
			for i := range n {
				createAt(t, store, fmt.Sprintf("old%d", i))
			}
			time.Sleep(time.Second)
			svc, obs := mk()
			jobs.SetBatchSizes(svc, 3, 3)
			var ids []string
			for range n {
				ids = append(ids, submit(t, svc, jobs.Submission{Input: []byte("x")}).ID)
			}
			run()
			if _, confirmed := pub.ids(); len(confirmed) != 2*n {
				t.Fatalf("after the first outbox round: %d confirmed publishes, want %d (%d submitted, %d republished)", len(confirmed), 2*n, n, n)
			}
			if l, err := store.Unpublished(context.Background(), time.Now(), 100); err != nil || len(l) != 0 {
				t.Fatalf("outbox after the first round: %d jobs, %v", len(l), err)
			}
			time.Sleep(11 * time.Second)
			settle()
			for _, id := range ids {
				if st := get(t, svc, id).Status; st != jobs.Expired {
					t.Fatalf("job %s is %s a reaper round after its StartBy", id, st)
				}
			}
			obs.want(t, fmt.Sprintf("submitted=%d dead=0 expired=%d", n, n))
		})
}

// TestServiceReaperTiming: a job is expired at the first reap after its
// StartBy, not before.
func TestServiceReaperTiming(t *testing.T) {
	pub := newPublisher()
	synctestService(t, pub, func(c *jobs.ServiceConfig) { c.StartTimeout = time.Minute },
		func(t *testing.T, store jobs.Store, mk func() (*jobs.Service, *countObserver), run func()) {
			svc, obs := mk()
			j := submit(t, svc, jobs.Submission{Input: []byte("x")})
			run()
			time.Sleep(time.Until(j.StartBy) - 10*time.Millisecond)
			settle()
			if st := get(t, svc, j.ID).Status; st != jobs.Queued {
				t.Fatalf("status %s before StartBy", st)
			}
			time.Sleep(jobs.DefaultReapEvery)
			settle()
			if got := get(t, svc, j.ID); got.Status != jobs.Expired || got.Error == nil || got.Error.Reason != jobs.ReasonExpired {
				t.Fatalf("a ReapEvery after StartBy: %+v", got)
			}
			obs.want(t, "submitted=1 dead=0 expired=1")
		})
}

// TestServicePublishTimeout: PublishTimeout bounds the wait for a confirm
// (the job is kept) and for a cancel notice (the cancel stands).
func TestServicePublishTimeout(t *testing.T) {
	pub := newPublisher()
	synctestService(t, pub, func(c *jobs.ServiceConfig) { c.PublishTimeout = 7 * time.Second },
		func(t *testing.T, store jobs.Store, mk func() (*jobs.Service, *countObserver), run func()) {
			svc, _ := mk()
			j := submit(t, svc, jobs.Submission{Input: []byte("x")})
			pub.set(func(p *fakePublisher) { p.block = true })

			start := time.Now()
			var err error
			within(t, time.Minute, "Submit", func() { _, _, err = svc.Submit(context.Background(), jobs.Submission{Input: []byte("y")}) })
			wantIs(t, "Submit", err, jobs.ErrUnconfirmed)
			if d := time.Since(start); d < 7*time.Second || d > 7*time.Second+time.Millisecond {
				t.Fatalf("Submit returned after %v, want PublishTimeout (7s)", d)
			}
			if published(t, store, pub.lastAttempt(t).ID) {
				t.Fatal("an unconfirmed job is marked published")
			}

			start = time.Now()
			var c *jobs.Job
			within(t, time.Minute, "Cancel", func() { c, err = svc.Cancel(context.Background(), j.ID) })
			if err != nil || c.Status != jobs.Cancelled {
				t.Fatalf("Cancel with a stuck notice = %+v, %v", c, err)
			}
			if d := time.Since(start); d < 7*time.Second || d > 7*time.Second+time.Millisecond {
				t.Fatalf("Cancel returned after %v, want PublishTimeout (7s)", d)
			}
		})
}

// TestServiceOnFinal: OnFinal hears the id of every job that became final
// through the Service (a worker's final, a dead letter, a cancel, the reaper),
// once, and a Submission may bring its own id.
func TestServiceOnFinal(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) jobs.Store) {
		ctx := context.Background()
		var mu sync.Mutex
		var finals []string
		svc, _ := newService(t, open(t), newPublisher(), func(c *jobs.ServiceConfig) {
			c.StartTimeout, c.ReapEvery = 50*time.Millisecond, 10*time.Millisecond
			c.OnFinal = func(id string) { mu.Lock(); finals = append(finals, id); mu.Unlock() }
		})
		got := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(finals) }

		id := jobs.NewID()
		if !jobID.MatchString(id) {
			t.Fatalf("NewID() = %q", id)
		}
		ok := submit(t, svc, jobs.Submission{ID: id, Input: []byte("a")})
		if ok.ID != id {
			t.Fatalf("job id %q, want the submission's %q", ok.ID, id)
		}
		dead := submit(t, svc, jobs.Submission{Input: []byte("b")})
		cancelled := submit(t, svc, jobs.Submission{Input: []byte("c")})
		final := jobs.Event{JobID: ok.ID, Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1, Result: []byte(`{}`)}
		apply(t, svc, final)
		apply(t, svc, final) // a duplicate is not final again
		if err := svc.ApplyDead(ctx, jobs.DeadLetter{JobID: dead.ID, Reason: "rejected"}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Cancel(ctx, cancelled.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Cancel(ctx, cancelled.ID); err != nil { // cancelling again: no second final
			t.Fatal(err)
		}
		if want := []string{ok.ID, dead.ID, cancelled.ID}; !slices.Equal(got(), want) {
			t.Fatalf("OnFinal heard %v, want %v", got(), want)
		}
		expired := submit(t, svc, jobs.Submission{Input: []byte("d")})
		startRun(t, svc)
		eventually(t, "OnFinal hears the reaper's expiry", func() bool { return len(got()) == 4 })
		if g := got(); g[3] != expired.ID {
			t.Fatalf("OnFinal heard %v, want the expired job %s last", g, expired.ID)
		}
	})
}

// TestServiceReplayDiscard: a dead letter is listed, replayed under the same
// id with its input (published with a confirm, a fresh start-by time), and
// a second dead letter discarded; anything else is refused with ErrConflict.
func TestServiceReplayDiscard(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) jobs.Store) {
		ctx := context.Background()
		pub := newPublisher()
		svc, _ := newService(t, open(t), pub, func(c *jobs.ServiceConfig) { c.StartTimeout = time.Hour })
		a := submit(t, svc, jobs.Submission{Input: []byte("poison"), Model: "m", Version: "2"})
		b := submit(t, svc, jobs.Submission{Input: []byte("other")})
		ok := submit(t, svc, jobs.Submission{Input: []byte("fine")})
		apply(t, svc, jobs.Event{JobID: a.ID, Type: jobs.EventRunning, Attempt: 1, Worker: "w1"})
		if err := svc.ApplyDead(ctx, jobs.DeadLetter{JobID: a.ID, Reason: "delivery_limit"}); err != nil {
			t.Fatal(err)
		}
		apply(t, svc, jobs.Event{JobID: b.ID, Type: jobs.EventFinal, Status: jobs.Failed, Attempt: 4,
			Error: &jobs.Error{Reason: jobs.ReasonAttemptsExhausted, Message: "delivered 4 times"}})
		apply(t, svc, jobs.Event{JobID: ok.ID, Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1, Result: []byte(`1`)})

		page, next, err := svc.DeadLetters(ctx, "", 1)
		if err != nil || len(page) != 1 || next == "" {
			t.Fatalf("first page = %d jobs, next %q, %v", len(page), next, err)
		}
		page2, next2, err := svc.DeadLetters(ctx, next, 1)
		if err != nil || len(page2) != 1 || next2 != "" || page2[0].ID == page[0].ID {
			t.Fatalf("second page = %v, next %q, %v", page2, next2, err)
		}
		if _, _, err := svc.DeadLetters(ctx, "x", 10); !errors.Is(err, jobs.ErrInvalidCursor) {
			t.Fatalf("bad token: %v", err)
		}
		if n, err := svc.CountDeadLetters(ctx); n != 2 || err != nil {
			t.Fatalf("CountDeadLetters = %d, %v", n, err)
		}

		before := len(pub.confirmed)
		j, err := svc.Replay(ctx, a.ID)
		if err != nil {
			t.Fatalf("Replay: %v", err)
		}
		if j.ID != a.ID || j.Status != jobs.Queued || !j.Published || len(j.History) != 1 ||
			j.History[0].Error.Reason != jobs.ReasonDeliveryLimit || j.History[0].Worker != "w1" {
			t.Fatalf("replayed job %+v, history %+v", j, j.History)
		}
		m := pub.lastAttempt(t)
		if len(pub.confirmed) != before+1 || m.ID != a.ID || string(m.Body) != "poison" || m.Model != "m" || m.Version != "2" ||
			time.Until(m.StartBy) < 59*time.Minute {
			t.Fatalf("replay published %+v (confirmed %d → %d)", m, before, len(pub.confirmed))
		}
		if g := get(t, svc, a.ID); g.Status != jobs.Queued || !g.Published {
			t.Fatalf("stored after replay: %+v", g)
		}
		if _, err := svc.Replay(ctx, a.ID); !errors.Is(err, jobs.ErrConflict) {
			t.Fatalf("second Replay = %v, want ErrConflict", err)
		}
		if _, err := svc.Discard(ctx, ok.ID); !errors.Is(err, jobs.ErrConflict) {
			t.Fatalf("Discard(succeeded) = %v, want ErrConflict", err)
		}
		if g := get(t, svc, ok.ID); g.Status != jobs.Succeeded {
			t.Fatalf("a refused discard changed the job: %+v", g)
		}
		if _, err := svc.Discard(ctx, b.ID); err != nil {
			t.Fatalf("Discard: %v", err)
		}
		if _, err := svc.Get(ctx, b.ID); !errors.Is(err, jobs.ErrNotFound) {
			t.Fatalf("discarded job still readable: %v", err)
		}
		if _, err := svc.Replay(ctx, "nope"); !errors.Is(err, jobs.ErrNotFound) {
			t.Fatalf("Replay(unknown) = %v", err)
		}

		// A replay whose publish fails stays queued for the outbox.
		apply(t, svc, jobs.Event{JobID: a.ID, Type: jobs.EventFinal, Status: jobs.Failed, Attempt: 9,
			Error: &jobs.Error{Reason: jobs.ReasonAttemptsExhausted, Message: "again"}})
		pub.set(func(p *fakePublisher) { p.fail = []error{errors.New("connection refused")} })
		j, err = svc.Replay(ctx, a.ID)
		if !errors.Is(err, jobs.ErrUnconfirmed) || j == nil {
			t.Fatalf("Replay with a failing publish = %v, %v; want the job and ErrUnconfirmed", j, err)
		}
		if g := get(t, svc, a.ID); g.Status != jobs.Queued || g.Published || len(g.History) != 2 {
			t.Fatalf("after a failed replay publish: %+v", g)
		}
	})
}
