// Package redistest finds the Redis server of the integration tests and
// gives each test a key prefix of its own that is deleted when the test
// ends.
//
// Redis is REDIS_URL if set, else the local one at DefaultURL, else a
// container of testdocker.RedisImage (warren-testbroker-redis) when a Docker
// engine answers; WARREN_TEST_NO_LOCAL=1 skips the local one. Integration tests
// are never skipped silently: without Redis they fail with instructions; only
// -short skips them. It imports no warren package but internal/testdocker
// (which imports none), so redisstore's own tests may use it.
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

	"github.com/warren-farm/warren/internal/testdocker"
)

// EnvURL selects the Redis server of the integration tests; unset means
// DefaultURL.
const EnvURL = "REDIS_URL"

// DefaultURL is the Redis server used when EnvURL is unset.
const DefaultURL = "redis://127.0.0.1:6379/0"

const howToGetRedis = `no Redis server for the job store's integration tests. Get one by either:
  - starting a local one:   redis-server --daemonize yes   (or: systemctl start redis-server)
  - pointing the tests at one: REDIS_URL=redis://host:6379/0
  - starting a Docker engine: the tests then run ` + testdocker.RedisImage + ` themselves
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
	probeOnce.Do(func() { probeURL, probeErr = resolve() })
	if probeErr != nil {
		t.Fatalf("%s\n(%v)", howToGetRedis, probeErr)
	}
	return probeURL
}

// dockerContainer is the shared Redis container of the Docker fallback.
const dockerContainer = "warren-testbroker-redis"

// resolve finds the Redis server: REDIS_URL, the local one, or Docker.
func resolve() (string, error) {
	if u := os.Getenv(EnvURL); u != "" {
		if err := ping(u); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvURL, u, err)
		}
		return u, nil
	}
	var localErr error
	if testdocker.NoLocal() {
		localErr = fmt.Errorf("%s=1 hides the local Redis", testdocker.EnvNoLocal)
	} else if localErr = ping(DefaultURL); localErr == nil {
		return DefaultURL, nil
	}
	var u string
	_, derr := testdocker.Service{
		Name:  dockerContainer,
		Image: testdocker.RedisImage,
		Ports: []string{"6379/tcp"},
		Cmd:   []string{"redis-server", "--save", "", "--appendonly", "no", "--protected-mode", "no"},
		Ready: func(addrs map[string]string) error {
			u = "redis://" + addrs["6379/tcp"] + "/0"
			return ping(u)
		},
	}.Start()
	if derr != nil {
		return "", fmt.Errorf("local %s: %v; Docker: %v", DefaultURL, localErr, derr)
	}
	return u, nil
}

// ping checks that the Redis at u answers within 3 s.
func ping(u string) error {
	opt, err := redis.ParseURL(u)
	if err != nil {
		return err
	}
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("%s does not answer: %w", opt.Addr, err)
	}
	return nil
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
