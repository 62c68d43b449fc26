package queue_test

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warren-farm/warren/internal/testbroker"
)

// TestQuorumQueueGuaranteesOn310 checks, on the broker in use, what a quorum
// queue would keep of the sync request queue's guarantees (the request queue
// is classic; see README "A clustered broker"): overflow reject-publish
// (a publish beyond x-max-length is nacked) and per-message TTL (an expired
// request is dropped before a consumer gets it).
func TestQuorumQueueGuaranteesOn310(t *testing.T) {
	integration(t)
	vh := testbroker.NewVhost(t)
	conn, err := amqp.Dial(vh.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("qreq", true, false, false, false, amqp.Table{
		"x-queue-type": "quorum", "x-max-length": int32(2), "x-overflow": "reject-publish"}); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	var acks []bool
	for i := 0; i < 6; i++ {
		dc, err := ch.PublishWithDeferredConfirm("", "qreq", false, false, amqp.Publishing{Body: []byte{byte('a' + i)}})
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, dc.Wait())
	}
	t.Logf("quorum queue, x-max-length 2, reject-publish: confirms %v", acks)
	// Observed on 3.10.8: the limit is checked before each enqueue against the
	// count so far, and a confirmed publish may overshoot by one (the 3rd is
	// accepted, the 4th on refused) — unlike the classic queue's exact bound.
	accepted := 0
	for _, a := range acks {
		if a {
			accepted++
		}
	}
	if accepted < 2 || accepted > 3 || acks[len(acks)-1] {
		t.Errorf("reject-publish on a quorum queue: confirms %v, want 2 or 3 accepted, the rest nacked", acks)
	}

	// Per-message TTL.
	if _, err := ch.QueueDeclare("qttl", true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	dc, err := ch.PublishWithDeferredConfirm("", "qttl", false, false, amqp.Publishing{Body: []byte("old"), Expiration: "100"})
	if err != nil || !dc.Wait() {
		t.Fatalf("publish with expiration: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	_, ok, err := ch.Get("qttl", true)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("quorum queue, per-message TTL 100 ms, read after 500 ms: delivered=%v", ok)
	// Control: a message without expiration is delivered.
	if dc, err := ch.PublishWithDeferredConfirm("", "qttl", false, false, amqp.Publishing{Body: []byte("fresh")}); err != nil || !dc.Wait() {
		t.Fatalf("publish: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	if m, got, err := ch.Get("qttl", true); err != nil || !got || string(m.Body) != "fresh" {
		t.Errorf("control message without TTL: delivered=%v %q %v", got, m.Body, err)
	}
	if ok {
		t.Error("per-message TTL is not honoured by this broker's quorum queues: an expired request would reach a worker")
	}
}
