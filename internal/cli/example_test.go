package cli_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/warren-farm/warren/internal/cli"
	"github.com/warren-farm/warren/pkg/config"
	"github.com/warren-farm/warren/pkg/tracing"
)

// workerConfig stands for the binary's own config type (cmd/worker's is
// worker.Config).
type workerConfig struct {
	ID           string
	Concurrency  int
	Models       []string
	DrainTimeout time.Duration
}

// loadWorker reads the binary's variables: typed, bounded by the table, every bad
// value recorded in l.
func loadWorker(l *config.Loader) workerConfig {
	c := workerConfig{
		ID:           config.WorkerID.Load(l),
		Concurrency:  config.Concurrency.Load(l),
		Models:       config.Models.Load(l),
		DrainTimeout: config.DrainTimeout.Load(l),
	}
	if c.ID == "" {
		host, _ := os.Hostname()
		c.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	return c
}

// runWorker serves until ctx is cancelled (SIGTERM), then drains.
func runWorker(ctx context.Context, cfg workerConfig, log *slog.Logger, tr *tracing.Tracing) error {
	// A real worker: load the model repository (a bad one returns an error wrapping
	// config.ErrInvalid: exit 2), listen on HTTP_ADDR, consume until ctx is done.
	fmt.Println("concurrency", cfg.Concurrency, "models", cfg.Models)
	return nil
}

// A main is the Command and a call to Main.
func ExampleCommand_Main() {
	cli.Command[workerConfig]{
		Name:     config.Worker,
		Summary:  "warren's worker: serves the models of a repository from RabbitMQ",
		Load:     loadWorker,
		LogAttrs: func(c workerConfig) []any { return []any{"worker_id", c.ID} },
		Run:      runWorker,
	}.Main()
}

// Execute is Main without the process: arguments, environment and output are
// given.
func ExampleCommand_Execute() {
	cmd := cli.Command[workerConfig]{Name: config.Worker, Summary: "warren's worker", Load: loadWorker, Run: runWorker}
	env := map[string]string{"MODELS": "digits, seed", "CONCURRENCY": "2"}
	p := cli.Process{
		Args:   []string{"--concurrency=8"}, // the flag beats CONCURRENCY
		Getenv: func(k string) string { return env[k] },
		Stdout: os.Stdout,
		Stderr: os.Stdout,
	}
	fmt.Println("exit", cmd.Execute(p))

	p.Args = []string{"--concurrency=0", "--drain-timeout=soon"}
	fmt.Println("exit", cmd.Execute(p))
	// Output:
	// concurrency 8 models [digits seed]
	// exit 0
	// worker: invalid configuration: CONCURRENCY="0": must be between 1 and 4096
	// worker: invalid configuration: DRAIN_TIMEOUT="soon": not a duration (e.g. 10s, 250ms, 1h30m)
	// exit 2
}
