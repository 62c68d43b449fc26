package jobs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnvRedisURL selects the Redis server of the integration tests; unset means
// redis://127.0.0.1:6379/0.
const EnvRedisURL = "REDIS_URL"

const howToGetRedis = `no Redis server for the pkg/jobs integration tests. Get one by either:
  - starting a local one:   redis-server --daemonize yes   (or: systemctl start redis-server)
  - pointing the tests at one: REDIS_URL=redis://host:6379/0
  - or run only the unit tests: go test -short ./pkg/jobs/`

var (
	redisProbeOnce sync.Once
	redisProbeURL  string
	redisProbeErr  error
)

// testRedisURL returns the Redis URL for integration tests. It skips under
// -short and otherwise fails the test (never skips) when Redis does not
// answer; the probe runs once per test binary.
func testRedisURL(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs Redis (runs without -short)")
	}
	redisProbeOnce.Do(func() {
		redisProbeURL = os.Getenv(EnvRedisURL)
		if redisProbeURL == "" {
			redisProbeURL = "redis://127.0.0.1:6379/0"
		}
		opt, err := redis.ParseURL(redisProbeURL)
		if err != nil {
			redisProbeErr = fmt.Errorf("%s=%s: %w", EnvRedisURL, redisProbeURL, err)
			return
		}
		c := redis.NewClient(opt)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := c.Ping(ctx).Err(); err != nil {
			redisProbeErr = fmt.Errorf("%s does not answer: %w", opt.Addr, err)
		}
	})
	if redisProbeErr != nil {
		t.Fatalf("%s\n(%v)", howToGetRedis, redisProbeErr)
	}
	return redisProbeURL
}

// testPrefix is a fresh key prefix; every key under it is deleted when t ends.
func testPrefix(t testing.TB, redisURL string) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "warren-test:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		opt, _ := redis.ParseURL(redisURL)
		c := redis.NewClient(opt)
		defer c.Close()
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("cleaning up %s*: %v", prefix, err)
			return
		}
		for len(keys) > 0 {
			n := min(len(keys), 500)
			if err := c.Del(ctx, keys[:n]...).Err(); err != nil {
				t.Errorf("cleaning up %s*: %v", prefix, err)
				return
			}
			keys = keys[n:]
		}
	})
	return prefix
}

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

func openRedisT(t *testing.T, ttl time.Duration, now func() time.Time) Store {
	t.Helper()
	u := testRedisURL(t)
	return openRedisPrefix(t, u, testPrefix(t, u), ttl, now)
}

func TestRedisContract(t *testing.T) {
	testRedisURL(t) // skip once under -short, fail once without Redis
	RunContract(t, openRedisT)
}

// TestRedisCrossReplicaWait: a Wait on replica A wakes when replica B (same
// Redis, same prefix) applies the final state, cancels or expires the job.
func TestRedisCrossReplicaWait(t *testing.T) {
	ctx := context.Background()
	u := testRedisURL(t)
	prefix := testPrefix(t, u)
	clk := newFakeClock()
	a := openRedisPrefix(t, u, prefix, time.Hour, clk.Now)
	b := openRedisPrefix(t, u, prefix, time.Hour, clk.Now)

	for _, tc := range []struct {
		name     string
		finalise func(id string) error
	}{
		{"apply", func(id string) error {
			_, _, err := b.Apply(ctx, Event{JobID: id, Type: EventFinal, Status: Succeeded, Attempt: 1, At: t0})
			return err
		}},
		{"cancel", func(id string) error { _, err := b.Cancel(ctx, id); return err }},
		{"expire", func(id string) error { _, err := b.ExpireQueued(ctx, t0.Add(time.Hour), 100); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "x-" + tc.name
			mustCreate(t, a, &Job{ID: id, StartBy: t0.Add(time.Minute)})
			ch := goWait(ctx, a, id, 10*time.Second)
			waitUntilWaiting(t, a, id, 1)
			if err := tc.finalise(id); err != nil {
				t.Fatal(err)
			}
			at := time.Now()
			r := recvWait(t, ch, 5*time.Second)
			if r.err != nil || !r.j.Status.Final() {
				t.Fatalf("Wait on A = %+v, %v", view(r.j), r.err)
			}
			if d := r.at.Sub(at); d > wakeWithin {
				t.Fatalf("A woke %v after B finalised the job, want <= %v", d, wakeWithin)
			}
		})
	}
}

// TestRedisKeyExpiry: a final job's hash and idempotency key get the TTL as
// a Redis expiry; unfinished ones have none; the indexes forget final jobs.
func TestRedisKeyExpiry(t *testing.T) {
	ctx := context.Background()
	u := testRedisURL(t)
	prefix := testPrefix(t, u)
	s := openRedisPrefix(t, u, prefix, time.Hour, nil)
	mustCreate(t, s, &Job{ID: "a", IdempotencyKey: "K", BodyHash: "H", StartBy: time.Now().Add(time.Hour)})
	mustCreate(t, s, &Job{ID: "q", IdempotencyKey: "KQ", BodyHash: "H", StartBy: time.Now().Add(time.Hour)})
	mustApply(t, s, Event{JobID: "a", Type: EventFinal, Status: Succeeded, Attempt: 1}, true)

	for key, want := range map[string]time.Duration{
		"job:a": time.Hour, "idem:K": time.Hour, "job:q": -1, "idem:KQ": -1,
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
	u := testRedisURL(t)
	prefix := testPrefix(t, u)
	s := openRedisPrefix(t, u, prefix, 200*time.Millisecond, nil)
	mustCreate(t, s, &Job{ID: "a", IdempotencyKey: "K", BodyHash: "H"})
	mustApply(t, s, Event{JobID: "a", Type: EventFinal, Status: Succeeded, Attempt: 1}, true)
	mustGet(t, s, "a")
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := s.rdb.Exists(ctx, prefix+"job:a", prefix+"idem:K").Result()
		if err != nil {
			t.Fatal(err)
		}
		if _, gerr := s.Get(ctx, "a"); n == 0 && errors.Is(gerr, ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("keys of a job finished 5s ago with TTL 200ms still exist (%d)", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mustCreate(t, s, &Job{ID: "b", IdempotencyKey: "K", BodyHash: "other"})
}

// TestRedisResubscribe: when the notice subscription's connection is killed
// and a job becomes final before go-redis resubscribes, the Wait still wakes
// (every waiter re-reads after a resubscription).
func TestRedisResubscribe(t *testing.T) {
	ctx := context.Background()
	u := testRedisURL(t)
	prefix := testPrefix(t, u)
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

	mustCreate(t, a, &Job{ID: "j"})
	ch := goWait(ctx, a, "j", 20*time.Second)
	waitUntilWaiting(t, a, "j", 1)

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
	mustApply(t, b, Event{JobID: "j", Type: EventFinal, Status: Succeeded, Attempt: 1}, true)
	r := recvWait(t, ch, 10*time.Second)
	if r.err != nil || r.j.Status != Succeeded {
		t.Fatalf("Wait after resubscription = %+v, %v", view(r.j), r.err)
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
