package api

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/warren-farm/warren/pkg/catalog"
	"github.com/warren-farm/warren/pkg/httperr"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/reason"
)

// call makes one call to model version v with a v2 request body, within timeout,
// and records its outcome (metrics, capacity observations). A failure comes back
// already mapped by statusFor.
func (h *handlers) call(c echo.Context, v catalog.Version, body []byte, timeout time.Duration) (*queue.Reply, error) {
	m := h.metrics.Route(v.Route)
	if !h.enter() {
		m.Call(reason.Draining, 0, false)
		return nil, draining()
	}
	defer h.leave()
	release, err := h.limits.holdCall(c, timeout)
	if err != nil {
		return nil, err
	}
	defer release()
	start := time.Now()
	reply, err := h.calls.Call(c.Request().Context(), queue.Request{Route: v.Route, RequestID: requestIDOf(c),
		Body: body, Deadline: start.Add(timeout)})
	if err != nil {
		herr := statusFor(err, v.Route)
		r := reasonOf(herr)
		m.Call(r, time.Since(start), published(err))
		if r == reason.NoWorkers {
			h.capacity.ObserveTurnedAway(v.Route)
		}
		return nil, herr
	}
	m.Call(reason.OK, time.Since(start), true)
	m.Reply(reply.Timing)
	if _, compute, _, ok := reply.Timing.Stages(); ok {
		h.capacity.ObserveService(v.Route, compute, reply.Timing.Slots)
	}
	return reply, nil
}

// reasonOf is the reason of statusFor's answer (client_closed for a client that
// went away).
func reasonOf(err error) reason.Reason {
	var he *httperr.Error
	switch {
	case !errors.As(err, &he):
		return reason.ModelError
	case he.Status == 499:
		return reason.ClientClosed
	}
	return he.Reason
}

// published reports whether a failed call reached the broker (its duration then
// says something about the farm).
func published(err error) bool {
	var re *queue.RemoteError
	return errors.As(err, &re) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// statusFor is the one place that maps a failure of the farm or the job service to
// the status contract. r names the model version called (zero for job lookups).
func statusFor(err error, r queue.Route) error {
	var re *queue.RemoteError
	var he *httperr.Error
	switch {
	case errors.As(err, &he):
		return he
	case errors.Is(err, queue.ErrNoWorkers):
		return httperr.Of(reason.NoWorkers, "Model service is unavailable: no predictor worker is running"+forRoute(r), err)
	case errors.Is(err, queue.ErrQueueFull):
		return httperr.Of(reason.QueueFull, "Model service is unavailable: the request queue is full"+forRoute(r), err)
	case errors.Is(err, jobs.ErrStoreUnavailable):
		// The cause is logged, never shown (it may name internal addresses).
		return httperr.Of(reason.StoreUnavailable, "Job store is unavailable; retry", err)
	case errors.Is(err, queue.ErrBrokerUnavailable), errors.Is(err, queue.ErrClosed):
		return httperr.Of(reason.BrokerUnavailable, "Model service is unavailable: "+
			strings.TrimPrefix(err.Error(), queue.ErrBrokerUnavailable.Error()+": "), err)
	case errors.Is(err, context.DeadlineExceeded):
		return httperr.Of(reason.Timeout, "The model did not answer before the request's deadline", err)
	case errors.As(err, &re):
		switch re.Reason {
		case queue.ReasonBadInput:
			return httperr.Of(reason.BadInput, "Bad input: "+re.Message, err)
		case queue.ReasonTimeout:
			return httperr.Of(reason.Timeout, "The model gave up before the request's deadline: "+re.Message, err)
		}
		return httperr.Of(reason.ModelError, "Model error: "+re.Message, err)
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer.
		return &httperr.Error{Status: 499, Detail: "client closed request", Err: err}
	}
	return err
}

func forRoute(r queue.Route) string {
	if r.Model == "" {
		return ""
	}
	return " (model " + r.String() + ")"
}

// unknownModel is the answer for a model or version the catalog does not know.
func unknownModel(err error) error {
	return httperr.Of(reason.NotFound, "Model not found: "+strings.TrimPrefix(strings.TrimPrefix(err.Error(),
		catalog.ErrUnknownModel.Error()+": "), catalog.ErrUnknownVersion.Error()+": "), err)
}
