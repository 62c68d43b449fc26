// Package bench is warren's benchmark: it measures the farm's POST /process path
// (bin/api in front of bin/worker processes) against a raw amqp091-go RPC loop
// through the same RabbitMQ broker, the Open Inference Protocol path
// (POST /v2/models/seed/infer) against /process on the same farm, shows how
// throughput scales with the number of workers when the model has a service
// time, measures a real model (the repository's digits ONNX MLP) through the
// farm next to its own in-process cost, and measures the async job path
// (POST /jobs, GET /jobs/{id}?wait=): submit rate, completion rate against
// workers × JOB_CONCURRENCY / MODEL_LATENCY, and end-to-end latency.
//
// The workers serve the repository's model repository (MODEL_REPOSITORY set to
// the absolute path of its models/ directory): MODELS=seed for every farm but
// the digits phase's, which runs MODELS=digits.
//
// With -baseline-rev the /process comparison also runs the farm built from an
// earlier commit (git archive into a temporary directory, the Makefile's build
// flags), and with -otel the current farm with tracing exported to an OTLP/HTTP
// sink in the bench: the cost of the observability code, off and on.
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
// runs. The v2 phase's runs (farm-v2) join the same rotation, always beside the
// farm's /process runs on the same farm (after them in odd rounds, before them in
// even ones); its verdict is the median of the per-round ratios v2/process.
//
// The async phase is not a closed loop over a window: it submits a fixed number
// of jobs from a fixed number of concurrent callers, then long-polls every job
// until it is final (see async.go).
//
// # Isolation
//
// The farm and the raw loop run in a vhost of their own, created through the
// RabbitMQ management API at start and deleted at exit (also on Ctrl-C), so other
// users of the broker see neither their queues nor their traffic; every further
// farm (baseline, otel, each async store) gets a vhost of its own too. Each API's
// embedded job store lives in a temporary DATA_DIR, removed when the farm stops;
// the Redis variant of the async phase uses a unique REDIS_PREFIX whose keys are
// deleted afterwards. All traffic goes to loopback addresses; the benchmark
// refuses other hosts.
//
// # Layout
//
//   - stats.go: latency percentiles and medians.
//   - loop.go: the closed-loop runner shared by every measurement.
//   - httpload.go: the HTTP callers for POST /process and POST /v2/models/seed/infer.
//   - digits.go, modelreport.go: the digits phase (in process and through the
//     farm) and the v2 and digits tables.
//   - rawrpc.go, responder.go: the raw amqp091-go RPC loop and its responders.
//   - farm.go, proc.go: starting and stopping bin/api and bin/worker.
//   - baseline.go: building the binaries of an earlier commit (-baseline-rev).
//   - otlpsink.go: the OTLP/HTTP trace sink of the farm-otel variant.
//   - async.go, asyncreport.go: the async job phase and its tables.
//   - mgmt.go, sysinfo.go, cpu.go: broker management, machine facts, CPU sampling.
//   - report.go: the printed tables and the target verdicts.
//   - bench.go: flags and the phases.
package bench
