// Package testbroker gives warren's tests a real RabbitMQ broker, isolated
// per test, and a private throwaway node for broker-restart tests.
//
// # Finding the shared broker
//
// The broker is resolved once per test binary, on first use:
//
//  1. AMQP_URL, if set (it must answer, or the test fails);
//  2. amqp://guest:guest@127.0.0.1:5672/, if an AMQP handshake completes
//     within 2s;
//  3. a Docker container running rabbitmq:3.10-management (via
//     github.com/ory/dockertest/v3), if a Docker engine answers a ping. The
//     container, named warren-testbroker-rabbitmq, is shared by all test
//     binaries and kept for the next run (docker rm -f it to get rid of it).
//
// Otherwise the test fails (tests never skip for lack of a broker) with a
// message explaining how to get one: rabbitmq-server -detached, AMQP_URL, or a
// Docker engine. The management API is MANAGEMENT_URL if set, else
// http://<AMQP credentials>@<AMQP host>:15672 (or the container's port); if it
// does not answer the test fails pointing at
// `rabbitmq-plugins enable rabbitmq_management`.
//
// # Isolation
//
// A test calls NewVhost and uses only Vhost.AMQPURL: its exchanges, queues,
// policies and connections live in a vhost of its own, deleted at cleanup.
// Vhost.CloseConnections drops the connections of that vhost only, so
// connection-loss tests can run while other packages use the same broker.
// Tests that stop the broker use StartNode, a private node with its own
// name, port, data and log, never the shared node. StartCluster joins such
// nodes into a cluster (shared cookie, pause_minority, net_ticktime 10 s) whose
// nodes can be stopped, SIGKILLed (Kill), SIGSTOPped (Pause/Resume) and
// restarted; QueueLeader and QueueHome say where a queue lives.
//
// A private node runs the local rabbitmq-server (Debian's real script,
// bypassing its su wrapper). Where there is none, or WARREN_TEST_NO_LOCAL hides
// it, it runs the same way in a container of rabbitmq:3.10-management that
// shares the host's network and process namespaces (a local Linux engine is
// needed): the node's directory is bind-mounted at its own path, the container
// runs as the test's user, its processes are signalled by their host pids,
// rabbitmqctl runs in it (docker exec), and the nodes register with an epmd of
// their own on 127.0.0.1:4370 (container warren-testbroker-epmd, kept between
// runs like the shared broker's).
//
// # Freshness of what the broker reports
//
// The management API aggregates statistics every collect_statistics_interval
// (5s by default): a new connection is listed 0-5s after it opened, and queue
// counters (messages_ready, ...) and even a new queue's policy lag as much.
// When rabbitmqctl can reach the shared node (the usual local setup; checked
// once per binary) the package asks rabbitmqctl instead, which answers
// immediately (~0.4s per call) - except for quorum queues, whose counters
// the broker itself refreshes only every 5s (quorum_tick_interval). Either
// way, use Vhost.WaitConnections and Vhost.WaitQueue rather than asserting on
// a single reading.
//
// # Timings (RabbitMQ 3.10.8 / Erlang 25, 2 CPUs, go test -race)
//
//   - NewVhost: 20-100ms (+ ~0.4s once per binary to probe rabbitmqctl)
//   - Vhost.WaitConnections / CloseConnections / Queue: ~0.4s per
//     rabbitmqctl call; with the management API only, a few ms per call but
//     WaitConnections takes 0-5s for new connections
//   - WatchLog: ~0.15s the first time per binary, then free; Since ~0.1-0.2s
//     (it waits for a marker line to reach the log file)
//   - StartNode: ~5s until a fresh node answers AMQP (8-9s when two nodes
//     boot at once)
//   - Node.Stop: ~1.1s until the port refuses (graceful shutdown)
//   - Node.Start: ~4.5s until the restarted node answers AMQP
//   - StartCluster(t, 3): 25-33s; Node.Kill ~1.5-2s; restarting a killed
//     node into the running cluster 10-24s
//   - a node in Docker: StartNode 5.1s alone (10-15s while other test
//     binaries ran), Stop 1.1-2.2s, Start 6.9-7.1s; StartCluster(t, 3) 57s
//     and Kill 0.5s while other test binaries ran
//
// # Goroutines and processes
//
// Nothing the package starts outlives the test that started it: management
// requests use no keep-alive connections, every command (rabbitmqctl, the
// node) runs in its own process group with a timeout and is reaped, and the
// goroutine waiting for a node process ends when the node is stopped, at the
// latest in the test's cleanup. Packages using goleak stay clean.
package testbroker
