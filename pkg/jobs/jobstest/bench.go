package jobstest

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"runtime"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/jobs"
)

// benchConcurrency is the number of goroutines submitting at once, as in the
// issue's target (≥ 2,000 jobs/s at concurrency 64).
const benchConcurrency = 64

// BenchCreatePublish measures a store's share of a submission: Create (with
// an idempotency key, as a client retrying safely would send) then
// MarkPublished, from ~64 goroutines. It reports jobs/s. Backends run it
// from their BenchmarkCreatePublish:
//
//	go test -run '^$' -bench CreatePublish -benchtime 20000x ./pkg/jobs/...
func BenchCreatePublish(b *testing.B, s jobs.Store) {
	ctx := context.Background()
	input := []byte(`{"data":"cat image data","forward_to_model":true,"padding":"................................"}`)
	b.SetParallelism((benchConcurrency + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := newID()
			j := &jobs.Job{ID: id, RequestID: id, Input: input, IdempotencyKey: "key-" + id, BodyHash: "sha256:0123456789abcdef"}
			if existing, err := s.Create(ctx, j); err != nil || existing != nil {
				b.Errorf("Create: %v, %v", existing, err)
				return
			}
			if err := s.MarkPublished(ctx, id); err != nil {
				b.Errorf("MarkPublished: %v", err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
}

// BenchLifecycle measures every store write of one job's life: Create,
// MarkPublished, Apply(running), Apply(final), from ~64 goroutines. Backends
// run it from their BenchmarkLifecycle:
//
//	go test -run '^$' -bench Lifecycle -benchtime 20000x ./pkg/jobs/...
func BenchLifecycle(b *testing.B, s jobs.Store) {
	ctx := context.Background()
	input := []byte(`{"data":"cat image data"}`)
	result := []byte(`{"prediction":{"class":"rabbit","confidence":0.82,"input_length":14}}`)
	b.SetParallelism((benchConcurrency + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := newID()
			if _, err := s.Create(ctx, &jobs.Job{ID: id, Input: input, IdempotencyKey: "key-" + id, BodyHash: "h"}); err != nil {
				b.Error(err)
				return
			}
			if err := s.MarkPublished(ctx, id); err != nil {
				b.Error(err)
				return
			}
			if _, _, err := s.Apply(ctx, jobs.Event{JobID: id, Type: jobs.EventRunning, Attempt: 1, Worker: "w"}); err != nil {
				b.Error(err)
				return
			}
			if _, _, err := s.Apply(ctx, jobs.Event{JobID: id, Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1, Worker: "w", Result: result}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
}

// newID is a random 26-character id like the API's request ids.
func newID() string {
	var buf [16]byte
	_, _ = rand.Read(buf[:])
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(buf[:])
}
