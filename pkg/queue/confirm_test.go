package queue_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/queue"
)

// TestEveryConfirmIsCounted: OnConfirm sees every answered call, also when the
// confirm and the reply are both in by the time the caller looks (a fast worker;
// select would pick the reply half the time and lose the confirm), and when the
// reply overtook the confirm. warren_publish_confirm_duration_seconds undercounted
// fast calls before.
func TestEveryConfirmIsCounted(t *testing.T) {
	integration(t)
	vh := testbroker.NewVhost(t)
	start(t, newConsumer(t, vh.AMQPURL, newRecorder(0).handle, nil).Run)
	var confirms atomic.Int64
	c, err := queue.NewClient(queue.ClientConfig{DialConfig: queue.DialConfig{URL: vh.AMQPURL, Name: "test-client " + t.Name()},
		OnConfirm: func(r queue.Route, d time.Duration) {
			if r == route && d > 0 {
				confirms.Add(1)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	c.Watch(route)
	start(t, c.Run)
	waitFor(t, "a worker", 10*time.Second, func() bool { return c.Workers(route) == 1 })

	// Several callers at once: a caller often runs again only once both are in.
	const callers, each, n = 8, 50, 8 * 50
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			for i := range each {
				if _, err := call(c, fmt.Sprintf("confirm-%d-%d", g, i), 10*time.Second); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// A confirm that came after its reply is counted just after the call returned.
	deadline := time.Now().Add(5 * time.Second)
	for confirms.Load() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := confirms.Load(); got != n {
		t.Errorf("OnConfirm called for %d of %d answered calls", got, n)
	}
}
