package capacity_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/warren-farm/warren/pkg/capacity"
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

// The API process owns the estimator: it runs the poller, feeds it from the
// reply path and serves the KEDA endpoint.
func ExampleEstimator() {
	est, err := capacity.New(capacity.Config{
		ManagementURL: "http://guest:guest@127.0.0.1:15672",
		Vhost:         "/",
		Queue:         "warren.requests",
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan struct{})
	go func() { defer close(done); est.Run(ctx) }()
	defer func() { stop(); <-done }()

	// On every reply: the worker's compute time and its CONCURRENCY.
	est.ObserveService(35*time.Millisecond, 4)
	// On every 503 no_workers.
	est.ObserveTurnedAway()

	mux := http.NewServeMux()
	mux.Handle("GET /capacity", est.Handler()) // valueLocation: workersNeeded
	_ = mux
}
