// Command api is warren's HTTP front door. Configuration comes from environment
// variables with flag twins; `api config` prints them.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/warren-farm/warren/pkg/api"
	"github.com/warren-farm/warren/pkg/capacity"
	"github.com/warren-farm/warren/pkg/config"
	"github.com/warren-farm/warren/pkg/health"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/tracing"
)

func main() { os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr)) }

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "config" {
		// `config` prints this binary's variables; `config --all` the whole table.
		if len(args) > 1 && args[1] == "--all" {
			config.PrintTable(stdout, "")
		} else {
			config.PrintTable(stdout, config.API)
		}
		return 0
	}
	if len(args) > 0 && args[0] == "healthcheck" {
		// `healthcheck [/ready|/health]` probes this binary's own HTTP_ADDR: the
		// image's HEALTHCHECK, which has no shell or curl to do it.
		l, err := config.NewLoader(config.API, nil, getenv)
		if err != nil {
			fmt.Fprintln(stderr, "api:", err)
			return 2
		}
		return health.Command(args[1:], l.String("HTTP_ADDR"), stdout, stderr)
	}
	l, err := config.NewLoader(config.API, args, getenv)
	if err != nil {
		fmt.Fprintln(stderr, "api:", err)
		return 2
	}
	cfg := api.Config{
		Queue:             queue.ClientConfig{DialConfig: queue.DialConfig{URL: l.String("AMQP_URL")}},
		ManagementURL:     l.String("MANAGEMENT_URL"),
		QueueMaxLength:    l.Int("QUEUE_MAX_LENGTH", 0, 1<<30),
		RequestTimeout:    l.Duration("REQUEST_TIMEOUT", time.Millisecond),
		MaxRequestTimeout: l.Duration("MAX_REQUEST_TIMEOUT", time.Millisecond),
		BodyLimit:         l.Bytes("BODY_LIMIT", 64),
		DrainTimeout:      l.Duration("DRAIN_TIMEOUT", time.Millisecond),
		Capacity: capacity.Config{
			TargetUtilization: l.Float("SCALE_TARGET_UTILIZATION", 0, 1),
			TargetWait:        l.Duration("SCALE_TARGET_WAIT", time.Millisecond),
		},
		Jobs: api.JobsConfig{
			MaxWait:      l.Duration("MAX_WAIT", 0),
			StartTimeout: l.Duration("JOB_START_TIMEOUT", 0),
		},
	}
	dataDir, redisURL, jobTTL := l.String("DATA_DIR"), l.String("REDIS_URL"), l.Duration("JOB_TTL", time.Second)
	redisPrefix := l.String("REDIS_PREFIX")
	l.Check(redisURL == "" && dataDir == "", "DATA_DIR", "must be set when REDIS_URL is empty")
	l.Check(cfg.MaxRequestTimeout < cfg.RequestTimeout, "MAX_REQUEST_TIMEOUT", "must be at least REQUEST_TIMEOUT")
	level, format := l.OneOf("LOG_LEVEL", config.Levels...), l.OneOf("LOG_FORMAT", config.Formats...)
	addr := l.String("HTTP_ADDR")
	tcfg := tracing.Config{
		ServiceName: l.String("OTEL_SERVICE_NAME"),
		Endpoint:    l.String("OTEL_EXPORTER_OTLP_ENDPOINT"),
		Protocol:    l.OneOf("OTEL_EXPORTER_OTLP_PROTOCOL", tracing.ProtocolHTTP, tracing.ProtocolGRPC),
		SampleRatio: l.Float("OTEL_TRACES_SAMPLER_ARG", 0, 1),
	}
	if err := l.Err(); err != nil {
		fmt.Fprintln(stderr, "api:", err)
		return 2
	}
	cfg.Logger = config.NewLogger(stderr, level, format, "service", "api")
	tcfg.Logger = cfg.Logger
	tr, err := tracing.New(context.Background(), tcfg)
	if err != nil {
		fmt.Fprintln(stderr, "api: OTEL_EXPORTER_OTLP_ENDPOINT:", err)
		return 2
	}
	defer shutdownTracing(tr)
	cfg.Tracing = tr

	store, err := openStore(redisURL, redisPrefix, dataDir, jobTTL, cfg.Logger)
	if err != nil {
		cfg.Logger.Error("job store", "err", err)
		return 1
	}
	cfg.Jobs.Store = store // the server closes it

	srv, err := api.New(cfg)
	if err != nil {
		_ = store.Close()
		fmt.Fprintln(stderr, "api:", err)
		return 2
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		cfg.Logger.Error("listen", "addr", addr, "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.Run(ctx, ln); err != nil {
		cfg.Logger.Error("api stopped with error", "err", err)
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

// openStore opens the Redis job store when redisURL is set, else the embedded one
// under dataDir.
func openStore(redisURL, redisPrefix, dataDir string, ttl time.Duration, log *slog.Logger) (jobs.Store, error) {
	if redisURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := jobs.OpenRedis(ctx, jobs.RedisConfig{URL: redisURL, Prefix: redisPrefix, TTL: ttl, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		log.Info("job store: redis", "url", redactURL(redisURL))
		return s, nil
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("DATA_DIR: %w", err)
	}
	path := filepath.Join(dataDir, "jobs.db")
	s, err := jobs.OpenBolt(jobs.BoltConfig{Path: path, TTL: ttl, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("DATA_DIR: %w", err)
	}
	log.Info("job store: embedded", "path", path)
	return s, nil
}

// redactURL drops the password from a URL for logging.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}
