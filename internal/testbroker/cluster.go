package testbroker

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ClusterNetTicktime is the Erlang net_ticktime (seconds) of StartCluster's
// nodes, lowered from the default 60 so that a paused (SIGSTOPped) node is
// declared down, and pause_minority acts, within ~10-15s instead of ~60-75s.
const ClusterNetTicktime = 10

// Cluster is a private RabbitMQ cluster of nodes on loopback (see Node), made
// by StartCluster. Its nodes share an Erlang cookie and run with
// cluster_partition_handling = pause_minority (what production uses) and
// net_ticktime = ClusterNetTicktime. Like Node, it is meant for the test's
// goroutine.
type Cluster struct {
	Nodes []*Node
}

// StartCluster starts size private nodes and joins the 2nd.. to the first
// (rabbitmqctl stop_app, join_cluster, start_app). Every node is stopped and
// whatever is left of its processes killed at cleanup.
func StartCluster(t testing.TB, size int) *Cluster {
	t.Helper()
	return StartClusterWith(t, size, NodeOptions{})
}

// StartClusterWith is StartCluster with extra configuration for every node
// (its Cookie is replaced by the cluster's).
func StartClusterWith(t testing.TB, size int, opts NodeOptions) *Cluster {
	t.Helper()
	if size < 1 {
		t.Fatalf("testbroker: StartCluster: size %d", size)
	}
	began := time.Now()
	opts.Cookie = strings.ToUpper(randHex(10))
	opts.ExtraConfig = "cluster_partition_handling = pause_minority\n" + opts.ExtraConfig
	opts.AdditionalErlArgs = fmt.Sprintf("-kernel net_ticktime %d ", ClusterNetTicktime) + opts.AdditionalErlArgs
	c := &Cluster{}
	for i := 0; i < size; i++ {
		c.Nodes = append(c.Nodes, StartNodeWith(t, opts))
	}
	first := c.Nodes[0]
	for _, n := range c.Nodes[1:] {
		n.Ctl(t, "stop_app")
		n.Ctl(t, "join_cluster", first.Name)
		n.Ctl(t, "start_app")
	}
	for _, n := range c.Nodes[1:] {
		n.Ctl(t, "await_startup")
	}
	running := c.RunningNodes(t, first)
	if len(running) != size {
		t.Fatalf("testbroker: StartCluster: %d nodes running after the joins, want %d: %v", len(running), size, running)
	}
	t.Logf("testbroker: cluster of %d nodes up after %v", size, time.Since(began).Round(10*time.Millisecond))
	return c
}

// URLs is the AMQP URL of every node, in order.
func (c *Cluster) URLs() []string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.AMQPURL
	}
	return urls
}

// Node is the node with the Erlang name, nil if none.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Running reports whether the node's process runs (started and neither
// stopped nor killed; a paused node runs).
func (n *Node) Running() bool { return n.pid != 0 }

// Paused reports whether the node is SIGSTOPped by Pause.
func (n *Node) Paused() bool { return n.paused }

// Live is a node that runs and is not paused, to ask questions of; it fails t
// if there is none.
func (c *Cluster) Live(t testing.TB) *Node {
	t.Helper()
	for _, n := range c.Nodes {
		if n.Running() && !n.paused {
			return n
		}
	}
	t.Fatalf("testbroker: no live node in the cluster")
	return nil
}

// RunningNodes lists the cluster's running nodes as the node via sees them
// (rabbitmqctl cluster_status).
func (c *Cluster) RunningNodes(t testing.TB, via *Node) []string {
	t.Helper()
	out := via.Ctl(t, "eval", "rabbit_nodes:all_running().")
	// e.g. ['a@localhost','b@localhost']
	out = strings.Trim(strings.TrimSpace(out), "[]")
	var names []string
	for _, f := range strings.Split(out, ",") {
		if f = strings.Trim(strings.TrimSpace(f), "'"); f != "" {
			names = append(names, f)
		}
	}
	return names
}

// Kill SIGKILLs the node's whole process group (a crash: no graceful
// shutdown, clients see their TCP connections reset) and reaps it. Start
// brings it back on its data.
func (n *Node) Kill(t testing.TB) {
	t.Helper()
	if n.pid == 0 {
		t.Fatalf("testbroker: Kill: node %s is not running", n.Name)
	}
	began := time.Now()
	_ = killGroup(n.pid, syscall.SIGKILL)
	n.paused = false
	select {
	case <-n.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("testbroker: node %s survives SIGKILL for 15s", n.Name)
	}
	if err := n.stop(); err != nil { // reap the rest of the group, wait for the port
		t.Fatalf("testbroker: after killing node %s: %v", n.Name, err)
	}
	t.Logf("testbroker: node %s killed in %v", n.Name, time.Since(began).Round(10*time.Millisecond))
}

// Pause SIGSTOPs the node's process group: it keeps its sockets open and
// answers nothing, like a node behind a partition or a frozen VM. Resume
// continues it; Stop, Kill and the cleanup resume or kill a paused node.
func (n *Node) Pause(t testing.TB) {
	t.Helper()
	if n.pid == 0 || n.paused {
		t.Fatalf("testbroker: Pause: node %s is not running or already paused", n.Name)
	}
	if err := killGroup(n.pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("testbroker: Pause %s: %v", n.Name, err)
	}
	n.paused = true
	t.Logf("testbroker: node %s paused (SIGSTOP)", n.Name)
}

// Resume SIGCONTs a node paused by Pause.
func (n *Node) Resume(t testing.TB) {
	t.Helper()
	if n.pid == 0 || !n.paused {
		t.Fatalf("testbroker: Resume: node %s is not paused", n.Name)
	}
	if err := killGroup(n.pid, syscall.SIGCONT); err != nil {
		t.Fatalf("testbroker: Resume %s: %v", n.Name, err)
	}
	n.paused = false
	t.Logf("testbroker: node %s resumed (SIGCONT)", n.Name)
}

// QueueLeader is the Erlang name of the node that leads the quorum queue
// (rabbitmqctl list_queues name leader, asked of a live node). It fails t if
// the queue does not exist; it returns "" while the queue has no leader.
func (c *Cluster) QueueLeader(t testing.TB, vhost, queue string) string {
	t.Helper()
	via := c.Live(t)
	out := via.Ctl(t, "list_queues", "-p", vhost, "--no-table-headers", "name", "leader")
	for _, l := range strings.Split(out, "\n") {
		f := strings.Split(strings.TrimRight(l, "\r"), "\t")
		if len(f) == 2 && f[0] == queue {
			if f[1] == "" || f[1] == "''" {
				return ""
			}
			return f[1]
		}
	}
	t.Fatalf("testbroker: QueueLeader: no queue %q in vhost %q on %s:\n%s", queue, vhost, via.Name, out)
	return ""
}

// QueueHome is the Erlang name of the node a classic queue lives on (the
// node of its process, rabbitmqctl list_queues name pid), asked of a live
// node; "" if the queue is not listed.
func (c *Cluster) QueueHome(t testing.TB, vhost, queue string) string {
	t.Helper()
	out := c.Live(t).Ctl(t, "list_queues", "-p", vhost, "--no-table-headers", "name", "pid")
	for _, l := range strings.Split(out, "\n") {
		f := strings.Split(strings.TrimRight(l, "\r"), "\t")
		if len(f) == 2 && f[0] == queue {
			// <warren-test-abcd@localhost.1700.123.0>
			pid := strings.TrimPrefix(f[1], "<")
			at := strings.Index(pid, "@")
			if at < 0 {
				return ""
			}
			if dot := strings.Index(pid[at:], "."); dot >= 0 {
				return pid[:at+dot]
			}
			return ""
		}
	}
	return ""
}

// Connections lists the client-given connection names
// (client_properties.connection_name, empty when a client gives none) of
// the connections open on the node itself, one per connection (rabbitmqctl
// list_connections would list the whole cluster's).
func (n *Node) Connections(t testing.TB) []string {
	t.Helper()
	out := n.Ctl(t, "eval", `[case lists:keyfind(<<"connection_name">>, 1, proplists:get_value(client_properties, rabbit_networking:connection_info(P, [client_properties]))) of {_, _, V} -> V; false -> <<>> end || P <- rabbit_networking:connections_local()].`)
	return parseBinList(out)
}

// parseBinList parses an Erlang list of binaries as printed by
// rabbitmqctl eval: [<<"a">>,<<"b">>].
func parseBinList(s string) []string {
	var names []string
	for {
		i := strings.Index(s, `<<"`)
		if i < 0 {
			return names
		}
		s = s[i+3:]
		j := strings.Index(s, `">>`)
		if j < 0 {
			return names
		}
		names = append(names, s[:j])
		s = s[j+3:]
	}
}
