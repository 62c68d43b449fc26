package capacity_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/warren-farm/warren/pkg/capacity"
	"github.com/warren-farm/warren/pkg/queue"
)

// 50 requests/s of 80ms each, 20 waiting, 4 slots per worker:
// (50 × 0.08 / 0.7 + 20 × 0.08 / 1) / 4 = 1.83 → 2 workers.
func ExampleNeeded() {
	n := capacity.Needed(capacity.Inputs{
		ArrivalRate:       50,
		ServiceTime:       80 * time.Millisecond,
		Slots:             4,
		Ready:             20,
		TargetUtilization: 0.7,
		TargetWait:        time.Second,
	})
	fmt.Println(n)
	// Output: 2
}

// The API process owns the farm: it runs the poller, tracks the model versions
// it learns of, feeds the farm from the reply path and serves the KEDA endpoint.
func ExampleFarm() {
	farm, err := capacity.New(capacity.Config{
		ManagementURL: "http://guest:guest@127.0.0.1:15672",
		Vhost:         "/",
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan struct{})
	go func() { defer close(done); farm.Run(ctx) }()
	defer func() { stop(); <-done }()

	// When a worker announces a model version.
	digits := queue.Route{Model: "digits", Version: "1"}
	if err := farm.Track(digits); err != nil {
		log.Print(err) // over MaxRoutes, or not a valid route
	}
	// On every reply: the worker's compute time and its CONCURRENCY.
	farm.ObserveService(digits, 35*time.Millisecond, 4)
	// On every 503 no_workers.
	farm.ObserveTurnedAway(digits)

	// One ScaledObject per worker pool reads /capacity?model=<its model>
	// with valueLocation: workers_needed.
	mux := http.NewServeMux()
	mux.Handle("GET /capacity", farm.Handler())
	_ = mux
}

// Before any of its requests is answered, a route uses DefaultServiceTime and
// one slot per worker, and needs at least 1 worker once there is demand.
func ExampleFarm_Snapshot() {
	farm, err := capacity.New(capacity.Config{}) // no management API: local inputs only
	if err != nil {
		log.Fatal(err)
	}
	digits := queue.Route{Model: "digits", Version: "1"}
	_ = farm.Track(digits)
	s, _ := farm.Snapshot(digits)
	fmt.Println(s.Queue, s.WorkersNeeded, s.ServiceTime, s.ServiceTimeSource, s.SlotsPerWorker)

	farm.ObserveTurnedAway(digits) // a request found no worker
	s, _ = farm.Snapshot(digits)
	fmt.Println(s.WorkersNeeded)
	// Output:
	// warren.req.digits.v1 0 0.1 default 0
	// 1
}
