package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/jobs/boltstore"
)

// handOff is a Publisher that hands jobs to an in-process worker; warren's
// is pkg/queue, on RabbitMQ.
type handOff chan jobs.Message

func (h handOff) PublishJob(_ context.Context, m jobs.Message) error { h <- m; return nil }
func (h handOff) PublishCancel(context.Context, string) error        { return nil }
func (h handOff) Ready() bool                                        { return true }

// The API's side of a job: Submit (stored, published, confirmed), the
// worker's events through Apply (the results consumer), a long poll with
// Wait, and a client's retry with the same Idempotency-Key.
func ExampleService() {
	dir, _ := os.MkdirTemp("", "warren-jobs")
	defer os.RemoveAll(dir)
	store, err := boltstore.OpenBolt(boltstore.BoltConfig{Path: filepath.Join(dir, "jobs.db")})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	broker := make(handOff, 1)
	svc, err := jobs.NewService(jobs.ServiceConfig{Store: store, Publisher: broker, StartTimeout: time.Minute})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = svc.Run(ctx) }() // the outbox and the reaper
	defer func() { cancel(); <-stopped }()

	// A worker takes the job and reports on the results queue.
	go func() {
		m := <-broker
		_ = svc.Apply(ctx, jobs.Event{JobID: m.ID, Type: jobs.EventRunning, Attempt: 1, Worker: "worker-0"})
		_ = svc.Apply(ctx, jobs.Event{JobID: m.ID, Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1,
			Result: json.RawMessage(`{"class":"rabbit"}`)})
	}()

	sub := jobs.Submission{Model: "classifier", Format: jobs.FormatProcess, Input: []byte(`{"data":"cat"}`), IdempotencyKey: "client-key-1"}
	j, replay, err := svc.Submit(ctx, sub)
	fmt.Println(j.Status, replay, err)
	done, err := svc.Wait(ctx, j.ID, 30*time.Second)
	fmt.Println(done.Status, done.Model, string(done.Result), done.Attempts, err)
	again, replay, err := svc.Submit(ctx, sub)
	fmt.Println(again.ID == j.ID, replay, err)
	// Output:
	// queued false <nil>
	// succeeded classifier {"class":"rabbit"} 1 <nil>
	// true true <nil>
}
