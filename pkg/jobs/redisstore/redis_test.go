package redisstore

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/jobs/jobstest"
	"github.com/warren-farm/warren/pkg/jobs/redisstore/redistest"
)

// openRedisPrefix opens a RedisStore on prefix, closed when t ends.
func openRedisPrefix(t testing.TB, redisURL, prefix string, ttl time.Duration, now func() time.Time) *RedisStore {
	t.Helper()
	s, err := OpenRedis(context.Background(), RedisConfig{URL: redisURL, Prefix: prefix, TTL: ttl, Now: now})
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

func openRedisT(t *testing.T, ttl time.Duration, now func() time.Time) jobs.Store {
	t.Helper()
	u := redistest.URL(t)
	return openRedisPrefix(t, u, redistest.Prefix(t, u), ttl, now)
}

func TestRedisContract(t *testing.T) {
	redistest.URL(t) // skip once under -short, fail once without Redis
	jobstest.Run(t, openRedisT)
}

// TestRedisCrossReplicaWait: a Wait on replica A wakes when replica B (same
// Redis, same prefix) applies the final state, cancels or expires the job.
func TestRedisCrossReplicaWait(t *testing.T) {
	ctx := context.Background()
	u := redistest.URL(t)
	prefix := redistest.Prefix(t, u)
	clk := jobstest.NewClock()
	a := openRedisPrefix(t, u, prefix, time.Hour, clk.Now)
	b := openRedisPrefix(t, u, prefix, time.Hour, clk.Now)

	for _, tc := range []struct {
		name     string
		finalise func(id string) error
	}{
		{"apply", func(id string) error {
			_, _, err := b.Apply(ctx, jobs.Event{JobID: id, Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1, At: jobstest.T0})
			return err
		}},
		{"cancel", func(id string) error { _, err := b.Cancel(ctx, id); return err }},
		{"expire", func(id string) error { _, err := b.ExpireQueued(ctx, jobstest.T0.Add(time.Hour), 100); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "x-" + tc.name
			jobstest.MustCreate(t, a, &jobs.Job{ID: id, StartBy: jobstest.T0.Add(time.Minute)})
			ch := jobstest.GoWait(ctx, a, id, 10*time.Second)
			jobstest.WaitUntilWaiting(t, a, id, 1)
			if err := tc.finalise(id); err != nil {
				t.Fatal(err)
			}
			at := time.Now()
			r := jobstest.RecvWait(t, ch, 5*time.Second)
			if r.Err != nil || !r.Job.Status.Final() {
				t.Fatalf("Wait on A = %+v, %v", jobstest.View(r.Job), r.Err)
			}
			if d := r.At.Sub(at); d > jobstest.WakeWithin {
				t.Fatalf("A woke %v after B finalised the job, want <= %v", d, jobstest.WakeWithin)
			}
		})
	}
}

// TestRedisKeyExpiry: a final job's hash and idempotency key get the TTL as
// a Redis expiry; unfinished ones and meta have none; the indexes forget
// final jobs.
func TestRedisKeyExpiry(t *testing.T) {
	ctx := context.Background()
	u := redistest.URL(t)
	prefix := redistest.Prefix(t, u)
	s := openRedisPrefix(t, u, prefix, time.Hour, nil)
	jobstest.MustCreate(t, s, &jobs.Job{ID: "a", IdempotencyKey: "K", BodyHash: "H", StartBy: time.Now().Add(time.Hour)})
	jobstest.MustCreate(t, s, &jobs.Job{ID: "q", IdempotencyKey: "KQ", BodyHash: "H", StartBy: time.Now().Add(time.Hour)})
	jobstest.MustApply(t, s, jobs.Event{JobID: "a", Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1}, true)
	if err := s.PutMeta(ctx, "models/m", []byte("{}")); err != nil {
		t.Fatal(err)
	}

	for key, want := range map[string]time.Duration{
		"job:a": time.Hour, "idem:K": time.Hour, "job:q": -1, "idem:KQ": -1, "meta": -1,
	} {
		got, err := s.rdb.PTTL(ctx, prefix+key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if want < 0 && got != -1 {
			t.Errorf("PTTL %s = %v, want no expiry", key, got)
		}
		if want > 0 && (got <= want-time.Minute || got > want) {
			t.Errorf("PTTL %s = %v, want about %v", key, got, want)
		}
	}
	for _, zset := range []string{"unpublished", "start_by"} {
		members, err := s.rdb.ZRange(ctx, prefix+zset, 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(members, ",") != "q" {
			t.Errorf("%s = %v, want [q]", zset, members)
		}
	}
}

// TestRedisRealExpiry: with a real clock and a short TTL, the finished job
// becomes not found and Redis deletes its keys.
func TestRedisRealExpiry(t *testing.T) {
	ctx := context.Background()
	u := redistest.URL(t)
	prefix := redistest.Prefix(t, u)
	s := openRedisPrefix(t, u, prefix, 200*time.Millisecond, nil)
	jobstest.MustCreate(t, s, &jobs.Job{ID: "a", IdempotencyKey: "K", BodyHash: "H"})
	jobstest.MustApply(t, s, jobs.Event{JobID: "a", Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1}, true)
	jobstest.MustGet(t, s, "a")
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := s.rdb.Exists(ctx, prefix+"job:a", prefix+"idem:K").Result()
		if err != nil {
			t.Fatal(err)
		}
		if _, gerr := s.Get(ctx, "a"); n == 0 && errors.Is(gerr, jobs.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("keys of a job finished 5s ago with TTL 200ms still exist (%d)", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	jobstest.MustCreate(t, s, &jobs.Job{ID: "b", IdempotencyKey: "K", BodyHash: "other"})
}

// TestRedisResubscribe: when the notice subscription's connection is killed
// and a job becomes final before go-redis resubscribes, the Wait still wakes
// (every waiter re-reads after a resubscription).
func TestRedisResubscribe(t *testing.T) {
	ctx := context.Background()
	u := redistest.URL(t)
	prefix := redistest.Prefix(t, u)
	name := strings.TrimSuffix(strings.ReplaceAll(prefix, ":", "-"), "-")
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := pu.Query()
	q.Set("client_name", name)
	pu.RawQuery = q.Encode()
	logs := &syncBuffer{}
	a, err := OpenRedis(ctx, RedisConfig{URL: pu.String(), Prefix: prefix, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := openRedisPrefix(t, u, prefix, time.Hour, nil)

	jobstest.MustCreate(t, a, &jobs.Job{ID: "j"})
	ch := jobstest.GoWait(ctx, a, "j", 20*time.Second)
	jobstest.WaitUntilWaiting(t, a, "j", 1)

	// Kill A's subscription connection, then finalise on B at once: the
	// notice is sent while A has no subscription.
	list, err := b.rdb.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, " name="+name+" ") && (strings.Contains(line, " sub=1 ") || strings.Contains(line, " flags=P ")) {
			for _, f := range strings.Fields(line) {
				if id, ok := strings.CutPrefix(f, "id="); ok {
					if err := b.rdb.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
						t.Fatal(err)
					}
					killed++
				}
			}
		}
	}
	if killed != 1 {
		t.Fatalf("killed %d subscription connections named %s, want 1:\n%s", killed, name, list)
	}
	jobstest.MustApply(t, b, jobs.Event{JobID: "j", Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1}, true)
	r := jobstest.RecvWait(t, ch, 10*time.Second)
	if r.Err != nil || r.Job.Status != jobs.Succeeded {
		t.Fatalf("Wait after resubscription = %+v, %v", jobstest.View(r.Job), r.Err)
	}
	// The resubscription was noticed (this is what wakes the waiters when
	// the notice fell in the gap).
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "subscription re-established") {
		if time.Now().After(deadline) {
			t.Fatalf("no resubscription logged; logs:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use (a log sink).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestRedisOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		cfg  RedisConfig
		want string
	}{
		{"no url", RedisConfig{}, "URL is required"},
		{"bad url", RedisConfig{URL: "http://x"}, "REDIS_URL"},
		{"negative TTL", RedisConfig{URL: "redis://127.0.0.1:6379/0", TTL: -1}, "negative"},
		{"unreachable", RedisConfig{URL: "redis://127.0.0.1:1/0?dial_timeout=200ms&max_retries=-1"}, "ping"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := OpenRedis(ctx, tc.cfg)
			if err == nil {
				s.Close()
				t.Fatal("OpenRedis succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %q, want it to mention %q", err, tc.want)
			}
		})
	}
}
