package queue_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/queue"
)

func queueType(t *testing.T, vh *testbroker.Vhost, name string) string {
	t.Helper()
	qi, ok := vh.Queue(t, name)
	if !ok {
		t.Fatalf("queue %q does not exist", name)
	}
	if typ, ok := qi.Arguments["x-queue-type"].(string); ok {
		return typ
	}
	return queue.QueueTypeClassic
}

func withType(typ string) func(*queue.ConsumerConfig) {
	return func(c *queue.ConsumerConfig) { c.RequestQueueType = typ }
}

func newTypedClient(t *testing.T, url, typ string) *queue.Client {
	t.Helper()
	c, err := queue.NewClient(queue.ClientConfig{DialConfig: queue.DialConfig{URL: url, Name: "test-client " + t.Name(), RequestQueueType: typ}})
	if err != nil {
		t.Fatal(err)
	}
	c.Watch(route)
	return c
}

// REQUEST_QUEUE_TYPE=quorum: the request queue is a quorum queue, and calls,
// deadlines and the bound (reject-publish) work on it. (Per-message TTL on a quorum
// queue of 3.10: TestQuorumQueueGuaranteesOn310.)
func TestQuorumRequestQueue(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	vh := testbroker.NewVhost(t)
	if err := queue.ApplyPolicy(context.Background(), queue.PolicyConfig{
		ManagementURL: vh.ManagementURL, Vhost: vh.Name, MaxLength: 2,
	}); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(300 * time.Millisecond)
	w := newConsumer(t, vh.AMQPURL, rec.handle, func(c *queue.ConsumerConfig) {
		withType(queue.QueueTypeQuorum)(c)
		slots(1, 1)(c)
	})
	defer start(t, w.Run)()
	c := newTypedClient(t, vh.AMQPURL, queue.QueueTypeQuorum)
	defer start(t, c.Run)()
	waitFor(t, "worker", 10*time.Second, func() bool { return c.Workers(route) == 1 })
	if typ := queueType(t, vh, route.RequestQueue()); typ != queue.QueueTypeQuorum {
		t.Fatalf("request queue type %q, want quorum", typ)
	}
	if r, err := call(c, "q1", 5*time.Second); err != nil || r.Worker != "w-"+t.Name() {
		t.Fatalf("call: %v %+v", err, r)
	}

	// One in the handler, two ready (the bound; a quorum queue lets one more past
	// it, see TestQuorumQueueGuaranteesOn310); more are refused at once.
	var full, expired, ok atomic.Int64
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := call(c, fmt.Sprint("b", i), 400*time.Millisecond)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, queue.ErrQueueFull):
				full.Add(1)
			default:
				expired.Add(1)
			}
		}()
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	if full.Load() == 0 || ok.Load() == 0 {
		t.Errorf("ok %d, queue_full %d, others %d: want some of each", ok.Load(), full.Load(), expired.Load())
	}
	t.Logf("burst of 6 on a quorum queue bounded at 2: %d answered, %d queue_full, %d timed out", ok.Load(), full.Load(), expired.Load())
}

// A request queue that exists with the other type is used as it is: a changed
// REQUEST_QUEUE_TYPE (or replicas of two configs during a rollout) is a warning,
// never a crash loop.
func TestRequestQueueOfTheOtherTypeIsUsedAsItIs(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	for _, tc := range []struct{ existing, want string }{
		{queue.QueueTypeClassic, queue.QueueTypeQuorum},
		{queue.QueueTypeQuorum, queue.QueueTypeClassic},
	} {
		t.Run(tc.existing+"_wanted_"+tc.want, func(t *testing.T) {
			vh := testbroker.NewVhost(t)
			if _, err := queue.RetypeRequestQueue(context.Background(), queue.DialConfig{URL: vh.AMQPURL},
				route.RequestQueue(), tc.existing); err != nil {
				t.Fatal(err)
			}
			w := newConsumer(t, vh.AMQPURL, newRecorder(0).handle, withType(tc.want))
			stop := start(t, w.Run)
			c := newTypedClient(t, vh.AMQPURL, tc.want)
			stopClient := start(t, c.Run)
			waitFor(t, "worker", 10*time.Second, func() bool { return c.Workers(route) == 1 })
			for i := range 5 {
				if _, err := call(c, fmt.Sprint("m", i), 5*time.Second); err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
			}
			if n := w.Sessions(); n != 1 {
				t.Errorf("worker sessions %d, want 1 (no reconnect loop)", n)
			}
			if typ := queueType(t, vh, route.RequestQueue()); typ != tc.existing {
				t.Errorf("queue type %q, want the existing %q", typ, tc.existing)
			}
			stopClient()
			stop()
		})
	}
}

// RetypeRequestQueue converts a live queue: under steady calls, the queue ends up
// quorum, the workers subscribe to it by themselves, and every call during the
// conversion is answered, refused with no_workers or queue_full, or (at most the calls in flight
// at the delete) times out at its deadline; none is computed twice. The gap is
// measured.
func TestRetypeRequestQueueUnderLoad(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	vh := testbroker.NewVhost(t)
	rec := newRecorder(2 * time.Millisecond)
	// Already configured for quorum (as the procedure says), on a classic queue.
	if _, err := queue.RetypeRequestQueue(context.Background(), queue.DialConfig{URL: vh.AMQPURL},
		route.RequestQueue(), queue.QueueTypeClassic); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		w := newConsumer(t, vh.AMQPURL, rec.handle, func(c *queue.ConsumerConfig) {
			withType(queue.QueueTypeQuorum)(c)
			slots(4, 4)(c)
			c.WorkerID = fmt.Sprintf("w%d", i)
		})
		defer start(t, w.Run)()
	}
	c := newTypedClient(t, vh.AMQPURL, queue.QueueTypeQuorum)
	defer start(t, c.Run)()
	waitFor(t, "workers", 10*time.Second, func() bool { return c.Workers(route) == 2 })

	ctx, cancel := context.WithCancel(context.Background())
	var okCalls, refused, lost, other atomic.Int64
	var otherErr atomic.Value
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				_, err := call(c, fmt.Sprintf("g%d-%d", g, i), 3*time.Second)
				switch {
				case err == nil:
					okCalls.Add(1)
				case errors.Is(err, queue.ErrNoWorkers), errors.Is(err, queue.ErrQueueFull):
					// The gap (returned unroutable), or the new queue not
					// taking publishes yet (nacked): refused at once.
					refused.Add(1)
					time.Sleep(5 * time.Millisecond)
				case errors.Is(err, context.DeadlineExceeded):
					lost.Add(1)
				default:
					other.Add(1)
					otherErr.Store(err.Error())
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	before := okCalls.Load()
	res, err := queue.RetypeRequestQueue(context.Background(), queue.DialConfig{URL: vh.AMQPURL},
		route.RequestQueue(), queue.QueueTypeQuorum)
	if err != nil {
		cancel()
		wg.Wait()
		t.Fatal(err)
	}
	waitFor(t, "workers on the new queue", 10*time.Second, func() bool {
		qi, ok := vh.Queue(t, route.RequestQueue())
		return ok && qi.Consumers == 2
	})
	mid := okCalls.Load()
	waitFor(t, "an answer from the new queue", 5*time.Second, func() bool { return okCalls.Load() > mid })
	cancel()
	wg.Wait()
	if !res.Converted {
		t.Fatalf("not converted: %+v", res)
	}
	if typ := queueType(t, vh, route.RequestQueue()); typ != queue.QueueTypeQuorum {
		t.Fatalf("queue type %q after the conversion", typ)
	}
	if other.Load() != 0 {
		t.Errorf("%d calls failed other than no_workers, queue_full or a timeout (last: %v)", other.Load(), otherErr.Load())
	}
	// RabbitMQ confirms a publish routed to a queue that is being deleted and then
	// drops it: only the calls in flight at the delete (one per caller at most) may
	// be lost, and their callers get their deadline, never a hang.
	if lost.Load() > 8 {
		t.Errorf("%d calls timed out: more than the 8 in flight at the delete", lost.Load())
	}
	if dup := rec.computedTwice(); len(dup) > 0 {
		t.Errorf("computed twice: %v", dup)
	}
	t.Logf("retype under 8 callers: waited %s for an empty queue, gap %s; %d answered before, %d in all; %d no_workers or queue_full, %d timed out",
		res.Waited, res.Gap, before, okCalls.Load(), refused.Load(), lost.Load())
	// Converting again is a no-op.
	if res, err := queue.RetypeRequestQueue(context.Background(), queue.DialConfig{URL: vh.AMQPURL},
		route.RequestQueue(), queue.QueueTypeQuorum); err != nil || res.Converted {
		t.Errorf("second conversion: %+v %v", res, err)
	}
}
