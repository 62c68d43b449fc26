//go:build unix

package testbroker

import (
	"slices"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestCluster starts a 3-node cluster, declares a quorum queue, finds its
// leader and connections per node, then kills the leader (the queue elects
// another and keeps its message), pauses and resumes a node, and restarts
// the killed one (it rejoins).
func TestCluster(t *testing.T) {
	needsBroker(t)
	c := StartCluster(t, 3)
	if got := c.RunningNodes(t, c.Nodes[2]); len(got) != 3 {
		t.Fatalf("running nodes seen by the 3rd: %v", got)
	}

	conn, err := amqp.DialConfig(c.Nodes[1].AMQPURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second),
		Properties: amqp.Table{"connection_name": "cluster-test"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("qq", true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := ch.PublishWithDeferredConfirm("", "qq", false, false, amqp.Publishing{Body: []byte("kept"), DeliveryMode: amqp.Persistent})
	if err != nil || !dc.Wait() {
		t.Fatalf("publish not confirmed: %v", err)
	}
	if got := c.Nodes[1].Connections(t); !slices.Contains(got, "cluster-test") {
		t.Errorf("connections on node 2 = %q, want cluster-test among them", got)
	}
	if got := c.Nodes[0].Connections(t); slices.Contains(got, "cluster-test") {
		t.Errorf("connections on node 1 = %q, must not list node 2's", got)
	}

	leader := c.QueueLeader(t, "/", "qq")
	ln := c.Node(leader)
	if ln == nil {
		t.Fatalf("leader %q is none of the cluster's nodes", leader)
	}
	ln.Kill(t)
	if ln.Running() {
		t.Fatal("killed node still running")
	}
	var next string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if next = c.QueueLeader(t, "/", "qq"); next != "" && next != leader {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new leader 30s after killing %s (got %q)", leader, next)
		}
	}
	t.Logf("leader %s killed, new leader %s", leader, next)

	// A node that is neither the new leader nor the killed one is paused and
	// resumed: the other two keep the quorum.
	var other *Node
	for _, n := range c.Nodes {
		if n.Name != leader && n.Name != next {
			other = n
		}
	}
	ln.Start(t)
	other.Pause(t)
	if !other.Paused() {
		t.Fatal("Paused false after Pause")
	}
	other.Resume(t)

	via := c.Node(next)
	v, err := amqp.DialConfig(via.AMQPURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	vch, err := v.Channel()
	if err != nil {
		t.Fatal(err)
	}
	m, ok, err := vch.Get("qq", true)
	if err != nil || !ok || string(m.Body) != "kept" {
		t.Fatalf("message after the leader's death: ok=%v err=%v body=%q", ok, err, m.Body)
	}
	for deadline := time.Now().Add(30 * time.Second); len(c.RunningNodes(t, via)) != 3; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("restarted node did not rejoin: %v", c.RunningNodes(t, via))
		}
	}
}
