// Package redistest finds the Redis server of the integration tests and
// gives each test a key prefix of its own that is deleted when the test
// ends. It imports no warren package, so redisstore's own tests may use it.
//
// Integration tests are never skipped silently: without Redis they fail
// with instructions; only -short skips them.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnvURL selects the Redis server of the integration tests; unset means
// DefaultURL.
const EnvURL = "REDIS_URL"

// DefaultURL is the Redis server used when EnvURL is unset.
const DefaultURL = "redis://127.0.0.1:6379/0"

const howToGetRedis = `no Redis server for the job store's integration tests. Get one by either:
  - starting a local one:   redis-server --daemonize yes   (or: systemctl start redis-server)
  - pointing the tests at one: REDIS_URL=redis://host:6379/0
  - or run only the unit tests: go test -short ./pkg/jobs/...`

var (
	probeOnce sync.Once
	probeURL  string
	probeErr  error
)

// URL returns the Redis URL for integration tests. It skips t under -short
// and otherwise fails it (never skips) when Redis does not answer; the probe
// runs once per test binary.
func URL(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs Redis (runs without -short)")
	}
	probeOnce.Do(func() {
		probeURL = os.Getenv(EnvURL)
		if probeURL == "" {
			probeURL = DefaultURL
		}
		opt, err := redis.ParseURL(probeURL)
		if err != nil {
			probeErr = fmt.Errorf("%s=%s: %w", EnvURL, probeURL, err)
			return
		}
		c := redis.NewClient(opt)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := c.Ping(ctx).Err(); err != nil {
			probeErr = fmt.Errorf("%s does not answer: %w", opt.Addr, err)
		}
	})
	if probeErr != nil {
		t.Fatalf("%s\n(%v)", howToGetRedis, probeErr)
	}
	return probeURL
}

// Prefix returns a fresh key prefix ("warren-test:<random>:"); every key
// under it is deleted when t ends.
func Prefix(t testing.TB, redisURL string) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "warren-test:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		opt, err := redis.ParseURL(redisURL)
		if err != nil {
			t.Errorf("cleaning up %s*: %v", prefix, err)
			return
		}
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
