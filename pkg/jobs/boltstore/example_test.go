package boltstore_test

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

// The API's side of a job: store, publish, mark published; apply the
// worker's events; a long-poll returns once the job is final.
func ExampleOpenBolt() {
	dir, _ := os.MkdirTemp("", "warren-jobs")
	defer os.RemoveAll(dir)
	store, err := boltstore.OpenBolt(boltstore.BoltConfig{Path: filepath.Join(dir, "jobs.db"), TTL: 24 * time.Hour})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	ctx := context.Background()

	j := &jobs.Job{ID: "j1", Input: []byte(`{"data":"cat"}`), IdempotencyKey: "client-key-1", BodyHash: "sha256-of-body"}
	if _, err := store.Create(ctx, j); err != nil {
		fmt.Println(err)
		return
	}
	// ... publish j.Input with a broker confirm, then:
	_ = store.MarkPublished(ctx, j.ID)

	// The same submission again is a replay of the first.
	prev, err := store.Create(ctx, &jobs.Job{ID: "j2", IdempotencyKey: "client-key-1", BodyHash: "sha256-of-body"})
	fmt.Println("replay of", prev.ID, err)

	// A worker's events arrive through the results queue.
	go func() {
		_, _, _ = store.Apply(ctx, jobs.Event{JobID: "j1", Type: jobs.EventRunning, Attempt: 1, Worker: "worker-0"})
		_, _, _ = store.Apply(ctx, jobs.Event{JobID: "j1", Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1,
			Result: json.RawMessage(`{"class":"rabbit"}`)})
	}()
	done, err := store.Wait(ctx, "j1", 30*time.Second)
	fmt.Println(done.Status, string(done.Result), done.Attempts, err)
	// Output:
	// replay of j1 <nil>
	// succeeded {"class":"rabbit"} 1 <nil>
}
