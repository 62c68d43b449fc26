// Package bench is warren's benchmark: it measures the farm's POST /process path
// (bin/api in front of bin/worker processes) against a raw amqp091-go RPC loop
// through the same RabbitMQ broker, and shows how throughput scales with the
// number of workers when the model has a service time.
//
// # Method
//
// Every measurement is a closed loop: C goroutines each send a request, wait for
// its answer and send the next one at once (HTTP keep-alive for the farm, long-lived
// AMQP connections for the raw loop). A run starts with a warm-up whose completions
// are not counted, then a measured window of fixed length; only completions inside
// the window count, and only successes (HTTP 200 carrying a model_prediction, or an
// RPC reply with the right correlation id) feed the rate and the latency
// percentiles. Failures are counted separately by status.
//
// Farm and raw runs alternate (farm, raw, farm, raw, ...) so that drifts of the
// machine hit both sides alike, and the table reports the median of each side's
// runs.
//
// # Isolation
//
// The farm and the raw loop run in a vhost of their own, created through the
// RabbitMQ management API at start and deleted at exit (also on Ctrl-C), so other
// users of the broker see neither their queues nor their traffic. All traffic goes
// to loopback addresses; the benchmark refuses other hosts.
//
// # Layout
//
//   - stats.go: latency percentiles and medians.
//   - loop.go: the closed-loop runner shared by every measurement.
//   - httpload.go: the HTTP caller for POST /process.
//   - rawrpc.go, responder.go: the raw amqp091-go RPC loop and its responders.
//   - farm.go, proc.go: starting and stopping bin/api and bin/worker.
//   - mgmt.go, sysinfo.go, cpu.go: broker management, machine facts, CPU sampling.
//   - report.go: the printed tables and the target verdicts.
//   - bench.go: flags and the phases.
package bench
