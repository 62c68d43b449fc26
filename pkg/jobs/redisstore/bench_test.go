package redisstore

import (
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/jobs/jobstest"
	"github.com/warren-farm/warren/pkg/jobs/redisstore/redistest"
)

// go test -run '^$' -bench . -benchtime 20000x ./pkg/jobs/redisstore/
func BenchmarkCreatePublish(b *testing.B) { jobstest.BenchCreatePublish(b, openBench(b)) }

func BenchmarkLifecycle(b *testing.B) { jobstest.BenchLifecycle(b, openBench(b)) }

func openBench(b *testing.B) *RedisStore {
	u := redistest.URL(b)
	return openRedisPrefix(b, u, redistest.Prefix(b, u), time.Hour, nil)
}
