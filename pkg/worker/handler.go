package worker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/codes"

	"github.com/warren-farm/warren/internal/lifecycle"
	"github.com/warren-farm/warren/pkg/batch"
	"github.com/warren-farm/warren/pkg/httperr"
	"github.com/warren-farm/warren/pkg/metrics"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/oip"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/reason"
)

// handler answers one model version's messages: a v2 inference request in, a v2
// inference response out. With a batcher (in bp once the model is warm) the
// request joins a batch; the handler waits for its own answer, and the consumer
// acks the message after publishing that answer, as without batching.
func (w *Worker) handler(s *served, bp *atomic.Pointer[batch.Batcher]) queue.Handler {
	return func(ctx context.Context, m *queue.Message) ([]byte, error) {
		req, id, err := oip.DecodeRequest(m.Body, w.cfg.Limits)
		if err != nil {
			return nil, classify(err)
		}
		if err := s.md.Validate(req); err != nil {
			return nil, classify(err)
		}
		req.ID = m.RequestID
		outs, err := w.predict(ctx, s, req, bp.Load())
		if err != nil {
			return nil, err
		}
		return oip.EncodeResponse(s.spec.Route.Model, s.spec.Route.Version, id, outs)
	}
}

// predict is the one model code path behind the queues and POST /predict: one
// request, its selected outputs, errors classified for the reply. With a batcher
// the request is computed in a batch.
func (w *Worker) predict(ctx context.Context, s *served, req *model.Request, b *batch.Batcher) ([]model.Tensor, error) {
	if b != nil {
		return w.predictBatched(ctx, s, req, b)
	}
	ctx, span := w.cfg.Tracing.StartModel(ctx, s.spec.Route.Model)
	defer span.End()
	start := time.Now()
	batch := []*model.Request{req}
	resps, err := s.pred.Predict(ctx, batch)
	s.modelMx.Observe(time.Since(start).Seconds())
	if err == nil {
		err = model.CheckResponses(batch, resps)
	}
	if err == nil {
		err = resps[0].Err
	}
	var outs []model.Tensor
	if err == nil {
		outs, err = model.Select(resps[0].Outputs, req.Outputs)
	}
	if err != nil {
		if span.IsRecording() {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil, err // the deadline passed or the drain gave up: not answered
		}
		return nil, classify(err)
	}
	return outs, nil
}

// predictBatched is predict through a batcher. A request whose deadline passed
// before its batch went is answered with a timeout (504) without reaching the
// model.
func (w *Worker) predictBatched(ctx context.Context, s *served, req *model.Request, b *batch.Batcher) ([]model.Tensor, error) {
	resp, err := b.Do(ctx, req)
	var outs []model.Tensor
	if err == nil {
		outs, err = model.Select(resp.Outputs, req.Outputs)
	}
	switch {
	case err == nil:
		return outs, nil
	case errors.Is(err, batch.ErrExpired):
		return nil, &queue.ReasonError{Reason: queue.ReasonTimeout, Err: fmt.Errorf("model %s: %w", s.spec.Route, err)}
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return nil, err // the deadline passed while computing or the drain gave up: not answered
	}
	return nil, classify(err)
}

// classify gives a model's or a decoder's error the reason its error reply carries.
func classify(err error) error {
	switch {
	case errors.Is(err, model.ErrBadInput), errors.Is(err, oip.ErrBadRequest):
		return &queue.ReasonError{Reason: queue.ReasonBadInput, Err: err}
	case errors.Is(err, model.ErrTimeout):
		return &queue.ReasonError{Reason: queue.ReasonTimeout, Err: err}
	}
	return &queue.ReasonError{Reason: queue.ReasonModelError, Err: err}
}

func (w *Worker) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = httperr.Handler(w.log)
	e.GET("/", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"service": "Service B - ML Prediction", "status": "running"})
	})
	e.GET("/health", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"service": "Service B", "status": "healthy"})
	})
	e.GET("/ready", w.ready)
	e.POST("/predict", w.predictHTTP)
	e.GET("/metrics", echo.WrapHandler(metrics.Handler(w.cfg.Registry)))
	metrics.NewHTTP(w.cfg.Registry).Instrument(e)
	return e
}

// modelStatus is one model version on GET /ready.
type modelStatus struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Status   string `json:"status"` // loading, warming, ready, failed
	Problem  string `json:"problem,omitempty"`
	Platform string `json:"platform,omitempty"`
	InFlight int    `json:"in_flight"`
}

type readyBody struct {
	Status   string                  `json:"status"` // starting, ready, draining, stopped, not_consuming
	Broker   string                  `json:"broker"`
	InFlight int                     `json:"in_flight"`
	Models   []modelStatus           `json:"models"`
	Stats    queue.ConsumerStats     `json:"stats"`
	Jobs     *queue.JobConsumerStats `json:"jobs,omitempty"`
}

// ready is GET /ready: 200 only once every model is loaded and warm and the worker
// consumes; 503 while starting, draining or disconnected.
func (w *Worker) ready(c echo.Context) error {
	st := w.State()
	b := readyBody{Status: st.String(), Broker: "down", InFlight: w.consumer.InFlight(), Stats: w.consumer.Stats()}
	if w.consumer.Connected() {
		b.Broker = "up"
	}
	if w.jobs != nil {
		js := w.jobs.Stats()
		b.Jobs = &js
	}
	for _, s := range w.models {
		status, problem := s.get()
		b.Models = append(b.Models, modelStatus{Name: s.spec.Route.Model, Version: s.spec.Route.Version,
			Status: status, Problem: problem, Platform: s.md.Platform, InFlight: w.consumer.InFlightOf(s.spec.Route)})
	}
	if st == lifecycle.Ready && !w.consumer.Connected() {
		b.Status = "not_consuming"
	}
	if b.Status != "ready" {
		return c.JSON(http.StatusServiceUnavailable, b)
	}
	return c.JSON(http.StatusOK, b)
}

// seedModel is the model POST /predict calls: "seed" if this worker serves it,
// else the first seed-shaped model that is ready.
func (w *Worker) seedModel() *served {
	var first *served
	for _, s := range w.models {
		if status, _ := s.get(); status != "ready" || !model.IsSeedShaped(&s.md) {
			continue
		}
		if s.spec.Route.Model == "seed" {
			return s
		}
		if first == nil {
			first = s
		}
	}
	return first
}

// predictHTTP is the seed lab's POST /predict {"input": str}, answered by a
// seed-shaped model on this worker, through the same model code path as the queue.
func (w *Worker) predictHTTP(c echo.Context) error {
	b, err := httperr.ReadBody(c.Request(), w.cfg.BodyLimit)
	if err != nil {
		return err
	}
	obj, err := httperr.Object(b)
	if err != nil {
		return err
	}
	ve := &httperr.ValidationError{}
	input, _ := httperr.String(obj, "input", ve)
	if err := ve.OrNil(); err != nil {
		return err
	}
	s := w.seedModel()
	if s == nil {
		return &httperr.Error{Status: http.StatusServiceUnavailable, Reason: reason.NotReady,
			Detail: "This worker serves no ready model with the seed model's input and outputs"}
	}
	rid := c.Request().Header.Get(echo.HeaderXRequestID)
	if rid == "" {
		rid = rand.Text()
	}
	c.Response().Header().Set(echo.HeaderXRequestID, rid)
	req := &model.Request{ID: rid, Inputs: []model.Tensor{{Name: model.SeedInput, Datatype: model.BYTES, Shape: []int64{1}, Data: []string{input}}}}
	outs, err := w.predict(c.Request().Context(), s, req, s.syncBatch.Load())
	if errors.Is(err, batch.ErrClosed) {
		return &httperr.Error{Status: http.StatusServiceUnavailable, Reason: reason.Draining,
			Detail: "This worker is shutting down and takes no new work", Err: err}
	}
	if err != nil {
		return &httperr.Error{Status: http.StatusInternalServerError, Detail: "model error: " + err.Error(), Reason: reason.ModelError, Err: err}
	}
	a, err := model.NewAnswer(&model.Response{Outputs: outs}, 0, model.AnswerInfo{RequestID: rid,
		Model: s.spec.Route.Model, Version: s.spec.Route.Version, WorkerID: w.cfg.WorkerID, Input: input})
	if err != nil {
		return &httperr.Error{Status: http.StatusInternalServerError, Detail: "model error: " + err.Error(), Reason: reason.ModelError, Err: err}
	}
	out, _ := httperr.Marshal(a)
	return c.JSONBlob(http.StatusOK, out)
}
