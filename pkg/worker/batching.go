package worker

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel/codes"

	"github.com/warren-farm/warren/pkg/batch"
	"github.com/warren-farm/warren/pkg/model"
)

// startBatchers starts s's batchers (sync, and jobs when it runs them) once the
// model is warm and before its queues are consumed; a model with MaxBatchSize of
// 1 or less has none.
func (w *Worker) startBatchers(s *served) {
	if s.spec.MaxBatchSize <= 1 || s.syncBatch.Load() != nil {
		return
	}
	mk := func(queueName string, concurrency int) *batch.Batcher {
		b, err := batch.New(batch.Config{MaxSize: s.spec.MaxBatchSize, MaxDelay: s.spec.MaxBatchDelay,
			Concurrency: concurrency, Expected: s.warmup, Predict: w.batchPredict(s),
			Observer: w.metrics.Batches(queueName, s.spec.Route)})
		if err != nil {
			panic(err) // New validated every value
		}
		return b
	}
	if s.spec.JobConcurrency > 0 {
		s.jobBatch.Store(mk(s.spec.Route.JobQueue(), s.spec.JobConcurrency))
	}
	s.syncBatch.Store(mk(s.spec.Route.RequestQueue(), s.concurrency))
}

// batchPredict is a batch's Predict call, in a model span (under the trace of the
// batch's first request).
func (w *Worker) batchPredict(s *served) batch.PredictFunc {
	return func(ctx context.Context, reqs []*model.Request) ([]*model.Response, error) {
		ctx, span := w.cfg.Tracing.StartModel(ctx, s.spec.Route.Model)
		defer span.End()
		resps, err := s.pred.Predict(ctx, reqs)
		if err != nil && span.IsRecording() {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		return resps, err
	}
}

// flushBatchers makes every batcher send its waiting partial batch at once (the
// drain began: nothing more is coming).
func (w *Worker) flushBatchers() {
	for _, s := range w.models {
		for _, p := range []*atomic.Pointer[batch.Batcher]{&s.syncBatch, &s.jobBatch} {
			if b := p.Load(); b != nil {
				b.Flush()
			}
		}
	}
}

// closeBatchers stops the batchers once the consumers have drained (no handler
// waits in them any more).
func (w *Worker) closeBatchers(ctx context.Context) {
	for _, s := range w.models {
		for _, p := range []*atomic.Pointer[batch.Batcher]{&s.syncBatch, &s.jobBatch} {
			if b := p.Load(); b != nil {
				if err := b.Close(ctx); err != nil {
					w.log.Warn("batcher close", "model", s.spec.Route.String(), "err", err)
				}
			}
		}
	}
}
