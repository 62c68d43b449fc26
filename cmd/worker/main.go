// Command worker is warren's predictor worker: it serves the models of a model
// repository from RabbitMQ. Configuration comes from environment variables with
// flag twins; `worker help` and `worker config` print them.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/warren-farm/warren/internal/cli"
	"github.com/warren-farm/warren/pkg/config"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/model/onnxmodel"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/repository"
	"github.com/warren-farm/warren/pkg/tracing"
	"github.com/warren-farm/warren/pkg/worker"
)

func main() {
	cli.Command[settings]{
		Name:     config.Worker,
		Summary:  "warren's predictor worker: serves the models of a model repository from RabbitMQ",
		Load:     load,
		LogAttrs: func(s settings) []any { return []any{"worker_id", s.worker.WorkerID} },
		Run:      run,
	}.Main()
}

// settings is what the worker's variables say.
type settings struct {
	addr                        string
	repository                  string
	models                      []string
	concurrency, prefetch, jobs int
	seed                        uint64
	latency                     time.Duration
	worker                      worker.Config
}

func load(l *config.Loader) settings {
	s := settings{
		addr:        config.HTTPAddr.Load(l),
		repository:  config.ModelRepository.Load(l),
		models:      config.Models.Load(l),
		concurrency: config.Concurrency.Load(l),
		prefetch:    config.Prefetch.Load(l),
		jobs:        config.JobConcurrency.Load(l),
		seed:        config.ModelSeed.Load(l),
		latency:     config.ModelLatency.Load(l),
		worker: worker.Config{
			AMQP:         queue.DialConfig{URL: config.AMQPURL.Load(l)},
			WorkerID:     config.WorkerID.Load(l),
			DrainTimeout: config.DrainTimeout.Load(l),
			BodyLimit:    config.BodyLimit.Load(l),
			Jobs: worker.JobsConfig{
				MaxAttempts:     config.JobMaxAttempts.Load(l),
				RetryBackoff:    config.JobRetryBackoff.Load(l),
				RetryBackoffMax: config.JobRetryBackoffMax.Load(l),
				RunTimeout:      config.JobRunTimeout.Load(l),
			},
		},
	}
	l.Check(s.worker.Jobs.RetryBackoffMax < s.worker.Jobs.RetryBackoff, config.JobRetryBackoffMax, "must be at least JOB_RETRY_BACKOFF")
	if s.worker.WorkerID == "" {
		host, _ := os.Hostname()
		s.worker.WorkerID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	return s
}

func run(ctx context.Context, s settings, log *slog.Logger, tr *tracing.Tracing) error {
	repo, err := repository.Read(s.repository, s.models)
	if err != nil {
		return fmt.Errorf("%w: MODEL_REPOSITORY: %w", config.ErrInvalid, err)
	}
	log.Info("model repository", "dir", repo.Dir, "models", repository.Summary(repo.Models), "ignored", repo.Ignored)
	backends := repository.Backends{
		repository.BackendSeed: s.seedBackend,
		repository.BackendONNX: onnxBackend,
		repository.BackendHTTP: repository.HTTPBackend,
	}
	cfg := s.worker
	cfg.Logger, cfg.Tracing = log, tr
	for _, m := range repo.Models {
		b, ok := backends[m.Config.Backend]
		if !ok {
			return fmt.Errorf("%w: %s: backend: %q is not available in this worker", config.ErrInvalid, m.ConfigPath, m.Config.Backend)
		}
		if m.Config.Concurrency == 0 {
			m.Config.Concurrency = s.concurrency
		}
		spec := worker.ModelSpec{Route: m.Route(), Concurrency: m.Config.Concurrency, Prefetch: s.prefetch,
			JobConcurrency: s.jobs, MaxBatchSize: m.Config.MaxBatchSize, MaxBatchDelay: m.Config.MaxBatchDelay.Duration,
			Load: func(ctx context.Context) (model.Predictor, error) { return b(ctx, m) }}
		if m.Config.JobConcurrency != nil {
			spec.JobConcurrency = *m.Config.JobConcurrency
		}
		cfg.Models = append(cfg.Models, spec)
	}
	w, err := worker.New(cfg)
	if err != nil {
		return fmt.Errorf("%w: %w", config.ErrInvalid, err)
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR: %w", err)
	}
	if err := w.Run(ctx, ln); err != nil {
		if errors.Is(err, worker.ErrModel) {
			return fmt.Errorf("%w: %w", config.ErrInvalid, err)
		}
		return err
	}
	return nil
}

// seedBackend builds a seed model; MODEL_SEED and MODEL_LATENCY, when not zero,
// override every seed model's own seed and latency (tests and benchmarks).
func (s settings) seedBackend(ctx context.Context, m repository.Model) (model.Predictor, error) {
	if s.seed != 0 {
		m.Config.Seed = s.seed
	}
	if s.latency != 0 {
		m.Config.Latency = repository.Duration{Duration: s.latency}
	}
	return repository.SeedBackend(ctx, m)
}

// onnxBackend loads an onnx model with one instance per concurrent request.
func onnxBackend(_ context.Context, m repository.Model) (model.Predictor, error) {
	return onnxmodel.Load(onnxmodel.Config{Path: m.ModelFile(), Instances: max(m.Config.Concurrency, 1)})
}
