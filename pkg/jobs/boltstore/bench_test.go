package boltstore

import (
	"path/filepath"
	"testing"

	"github.com/warren-farm/warren/pkg/jobs/jobstest"
)

// BoltConfig.BatchDelay's default was chosen with these.
//
//	go test -run '^$' -bench . -benchtime 20000x ./pkg/jobs/boltstore/
func BenchmarkCreatePublish(b *testing.B) { jobstest.BenchCreatePublish(b, openBench(b)) }

func BenchmarkLifecycle(b *testing.B) { jobstest.BenchLifecycle(b, openBench(b)) }

func openBench(b *testing.B) *BoltStore {
	s, err := OpenBolt(BoltConfig{Path: filepath.Join(b.TempDir(), "jobs.db")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}
