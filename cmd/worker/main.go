// Command worker is warren's predictor worker. Configuration comes from environment
// variables with flag twins; `worker config` prints them.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/warren-farm/warren/pkg/config"
	"github.com/warren-farm/warren/pkg/health"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/tracing"
	"github.com/warren-farm/warren/pkg/worker"
)

func main() { os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr)) }

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "config" {
		// `config` prints this binary's variables; `config --all` the whole table.
		if len(args) > 1 && args[1] == "--all" {
			config.PrintTable(stdout, "")
		} else {
			config.PrintTable(stdout, config.Worker)
		}
		return 0
	}
	if len(args) > 0 && args[0] == "healthcheck" {
		// `healthcheck [/ready|/health]` probes this binary's own HTTP_ADDR: the
		// image's HEALTHCHECK, which has no shell or curl to do it.
		l, err := config.NewLoader(config.Worker, nil, getenv)
		if err != nil {
			fmt.Fprintln(stderr, "worker:", err)
			return 2
		}
		return health.Command(args[1:], l.String("HTTP_ADDR"), stdout, stderr)
	}
	l, err := config.NewLoader(config.Worker, args, getenv)
	if err != nil {
		fmt.Fprintln(stderr, "worker:", err)
		return 2
	}
	id := l.String("WORKER_ID")
	if id == "" {
		host, _ := os.Hostname()
		id = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	qcfg := queue.ConsumerConfig{
		DialConfig:   queue.DialConfig{URL: l.String("AMQP_URL")},
		WorkerID:     id,
		Concurrency:  l.Int("CONCURRENCY", 1, 4096),
		Prefetch:     l.Int("PREFETCH", 0, 65535),
		DrainTimeout: l.Duration("DRAIN_TIMEOUT", time.Millisecond),
	}
	jcfg := queue.JobConsumerConfig{
		Concurrency:     l.Int("JOB_CONCURRENCY", 0, 4096),
		MaxAttempts:     l.Int("JOB_MAX_ATTEMPTS", 1, queue.JobDeliveryLimit),
		RetryBackoff:    l.Duration("JOB_RETRY_BACKOFF", time.Millisecond),
		RetryBackoffMax: l.Duration("JOB_RETRY_BACKOFF_MAX", time.Millisecond),
		RunTimeout:      l.Duration("JOB_RUN_TIMEOUT", time.Millisecond),
	}
	l.Check(jcfg.RetryBackoffMax < jcfg.RetryBackoff, "JOB_RETRY_BACKOFF_MAX", "must be at least JOB_RETRY_BACKOFF")
	seed := model.SeedConfig{Seed: uint64(l.Int64("MODEL_SEED")), Latency: l.Duration("MODEL_LATENCY", 0)}
	bodyLimit := l.Bytes("BODY_LIMIT", 64)
	level, format := l.OneOf("LOG_LEVEL", config.Levels...), l.OneOf("LOG_FORMAT", config.Formats...)
	addr := l.String("HTTP_ADDR")
	tcfg := tracing.Config{
		ServiceName: l.String("OTEL_SERVICE_NAME"),
		Endpoint:    l.String("OTEL_EXPORTER_OTLP_ENDPOINT"),
		Protocol:    l.OneOf("OTEL_EXPORTER_OTLP_PROTOCOL", tracing.ProtocolHTTP, tracing.ProtocolGRPC),
		SampleRatio: l.Float("OTEL_TRACES_SAMPLER_ARG", 0, 1),
	}
	if err := l.Err(); err != nil {
		fmt.Fprintln(stderr, "worker:", err)
		return 2
	}
	log := config.NewLogger(stderr, level, format, "service", "worker", "worker_id", id)
	tcfg.Logger = log
	tr, err := tracing.New(context.Background(), tcfg)
	if err != nil {
		fmt.Fprintln(stderr, "worker: OTEL_EXPORTER_OTLP_ENDPOINT:", err)
		return 2
	}
	defer shutdownTracing(tr)

	w, err := worker.New(worker.Config{Queue: qcfg, Jobs: jcfg, BodyLimit: bodyLimit, Logger: log, Tracing: tr}, model.NewSeed(seed))
	if err != nil {
		fmt.Fprintln(stderr, "worker:", err)
		return 2
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("listen", "addr", addr, "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := w.Run(ctx, ln); err != nil {
		log.Error("worker stopped with error", "err", err)
		return 1
	}
	return 0
}

// shutdownTracing flushes spans still batched, for at most 5 seconds.
func shutdownTracing(tr *tracing.Tracing) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = tr.Shutdown(ctx)
}
