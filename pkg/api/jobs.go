package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/warren-farm/warren/pkg/catalog"
	"github.com/warren-farm/warren/pkg/httperr"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/oip"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/reason"
)

// How a job's result is rendered (jobs.Job.Format).
const (
	formatV2      = "v2"      // the worker's v2 inference response, as is
	formatProcess = "process" // /process's model_prediction object
)

// jobView is a job as the API shows it.
type jobView struct {
	*jobs.Job
	// Result shadows the stored result: a v2 response, or for jobs submitted in the
	// seed lab's shape, the model_prediction object /process would have answered.
	Result json.RawMessage `json:"result,omitempty"`
	Links  jobLinks        `json:"links"`
}

type jobLinks struct {
	Self string `json:"self"`
}

// viewOf renders j for a client.
func (h *handlers) viewOf(j *jobs.Job) jobView {
	v := jobView{Job: j, Links: jobLinks{Self: "/jobs/" + j.ID}}
	if len(j.Result) > 0 {
		v.Result = json.RawMessage(j.Result)
		if j.Format == formatProcess || j.Format == "" { // "": a job stored before formats existed
			if a, err := jobAnswer(j); err == nil {
				v.Result = a
			} else {
				h.cfg.Logger.Warn("job result not in the seed lab's shape; shown as the model answered", "job_id", j.ID, "err", err)
			}
		}
	}
	return v
}

// jobAnswer is a seed-lab job's result as /process's model_prediction object.
func jobAnswer(j *jobs.Job) ([]byte, error) {
	req, _, err := oip.DecodeRequest(j.Input, oip.Limits{})
	if err != nil {
		return nil, err
	}
	in := req.Input(model.SeedInput)
	data, _ := in.Data.([]string)
	if in == nil || len(data) != 1 {
		return nil, errors.New("the job's input is not one seed-lab string")
	}
	resp, err := oip.DecodeResponse(j.Result, oip.Limits{})
	if err != nil {
		return nil, err
	}
	a, err := model.NewAnswer(&model.Response{Outputs: resp.Outputs}, 0, model.AnswerInfo{RequestID: j.RequestID,
		Model: j.Model, Version: j.Version, WorkerID: j.Worker, Input: data[0]})
	if err != nil {
		return nil, err
	}
	return httperr.Marshal(a)
}

func (h *handlers) writeJob(c echo.Context, status int, j *jobs.Job) error {
	b, err := httperr.Marshal(h.viewOf(j))
	if err != nil {
		return err
	}
	return c.JSONBlob(status, b)
}

func setJobHeaders(c echo.Context, j *jobs.Job) {
	c.Response().Header().Set(echo.HeaderLocation, "/jobs/"+j.ID)
}

const maxKeyLen = 255

// validKey: an Idempotency-Key of 1..255 printable ASCII characters.
func validKey(k string) bool {
	if k == "" || len(k) > maxKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// jobInput is what POST /jobs submits: a model version and a v2 request body.
type jobInput struct {
	v      catalog.Version
	body   []byte
	format string
}

// readJobInput reads POST /jobs's body: either the seed lab's {"data": …} (for
// DEFAULT_MODEL) or a v2 inference request with "model" (and optionally
// "version"): {"model": "digits", "inputs": [...]}.
func (h *handlers) readJobInput(c echo.Context, ve *httperr.ValidationError) (jobInput, error) {
	body, err := httperr.ReadBody(c.Request(), h.cfg.BodyLimit)
	if err != nil {
		return jobInput{}, err
	}
	obj, err := httperr.Object(body)
	if err != nil {
		return jobInput{}, err
	}
	_, hasInputs := obj["inputs"]
	_, hasModel := obj["model"]
	if !hasInputs && !hasModel {
		in, err := h.readLabInput(c, body, ve)
		if err != nil || ve.OrNil() != nil {
			return jobInput{}, err
		}
		if !in.forward {
			ve.Add("value_error", "a job always runs the model: forward_to_model must be true or absent", false, "body", "forward_to_model")
			return jobInput{}, nil
		}
		v, err := h.defaultModel(c.Request())
		if err != nil {
			return jobInput{}, err
		}
		payload, err := oip.EncodeRequest("", seedRequest(in.data))
		return jobInput{v: v, body: payload, format: formatProcess}, err
	}
	name, _ := httperr.String(obj, "model", ve)
	version := ""
	if _, ok := obj["version"]; ok {
		version, _ = httperr.String(obj, "version", ve)
	}
	if err := ve.OrNil(); err != nil {
		return jobInput{}, nil
	}
	if err := mayCall(c.Request(), name); err != nil {
		return jobInput{}, err
	}
	// A job that names no version is routed as a call would be, once, now.
	var v catalog.Version
	if version == "" {
		v, err = h.catalog.Pick(name, c.Request().Header.Get)
	} else {
		v, err = h.catalog.Resolve(name, version)
	}
	if err != nil {
		return jobInput{}, unknownModel(err)
	}
	req, _, err := oip.DecodeRequest(body, h.cfg.Limits)
	if err == nil {
		err = v.Metadata.Validate(req)
	}
	if err != nil {
		return jobInput{}, httperr.Of(reason.BadInput, "Bad input: "+err.Error(), err)
	}
	return jobInput{v: v, body: body, format: formatV2}, nil
}

// postJob is POST /jobs.
func (h *handlers) postJob(c echo.Context) error {
	ve := &httperr.ValidationError{}
	in, err := h.readJobInput(c, ve)
	if err != nil {
		return err
	}
	key := c.Request().Header.Get("Idempotency-Key")
	if key != "" && !validKey(key) {
		ve.Add("value_error", "Idempotency-Key must be 1 to 255 printable ASCII characters", key, "header", "Idempotency-Key")
	}
	if err := ve.OrNil(); err != nil {
		return err
	}
	return h.submit(c, in, key)
}

// submit submits a job and answers 202 (or 200 for a replayed Idempotency-Key).
func (h *handlers) submit(c echo.Context, in jobInput, key string) error {
	if !h.enter() {
		return draining()
	}
	defer h.leave()
	owner := caller(c.Request()).Owner()
	if key != "" && owner != "" {
		// Idempotency keys are global to the store: scoped to the caller, one
		// caller's key never replays (or blocks) another's job. A space cannot
		// occur in a client's key (validKey), so scoped keys cannot collide.
		key = owner + " " + key
	}
	j, replay, err := h.jobs.Submit(c.Request().Context(), jobs.Submission{RequestID: requestIDOf(c),
		Model: in.v.Route.Model, Version: in.v.Route.Version, Format: in.format, Input: in.body, IdempotencyKey: key,
		Owner: owner})
	if err != nil {
		return jobError(err, in.v.Route)
	}
	setJobHeaders(c, j)
	if replay {
		c.Response().Header().Set("Idempotent-Replayed", "true")
		return h.writeJob(c, http.StatusOK, j)
	}
	return h.writeJob(c, http.StatusAccepted, j)
}

// handOff serves a call with Prefer: respond-async: the request is a job from the
// start; the answer is the call's own (the v2 response, or /process's body) if the
// job finishes within wait, else 202 with the job and its Location.
func (h *handlers) handOff(c echo.Context, v catalog.Version, body []byte, format string, wait time.Duration) error {
	if !h.enter() {
		return draining()
	}
	defer h.leave()
	ctx := c.Request().Context()
	j, _, err := h.jobs.Submit(ctx, jobs.Submission{RequestID: requestIDOf(c), Model: v.Route.Model,
		Version: v.Route.Version, Format: format, Input: body, Owner: caller(c.Request()).Owner()})
	if err != nil {
		return jobError(err, v.Route)
	}
	if wait > 0 {
		// The job is queued whatever happens now: if the wait fails, the client still
		// gets its Location (202), never an error that would make it submit again.
		if done, err := h.jobs.Wait(ctx, j.ID, wait); err == nil {
			j = done
		} else if ctx.Err() != nil {
			return statusFor(ctx.Err(), v.Route)
		}
	}
	switch j.Status {
	case jobs.Succeeded:
		if format == formatV2 {
			return c.JSONBlob(http.StatusOK, j.Result)
		}
		a, err := jobAnswer(j)
		if err != nil {
			return httperr.Of(reason.ModelError, "Model error: the job's result cannot be read: "+err.Error(), err)
		}
		return c.JSONBlob(http.StatusOK, processBody(a))
	case jobs.Failed:
		return jobFailed(j)
	}
	setJobHeaders(c, j)
	c.Response().Header().Set("Preference-Applied", "respond-async")
	return h.writeJob(c, http.StatusAccepted, j)
}

// getJob is GET /jobs/:id[?wait=30].
func (h *handlers) getJob(c echo.Context) error {
	ve := &httperr.ValidationError{}
	wait := h.waitParam(c.QueryParam("wait"), ve, "query", "wait")
	if err := ve.OrNil(); err != nil {
		return err
	}
	id := c.Param("id")
	if err := h.ownJob(c, id); err != nil {
		return err
	}
	var j *jobs.Job
	var err error
	if wait > 0 {
		// A drain ends long polls at once with the job as it is (the client polls
		// again, on another replica).
		ctx, cancel := contextUntil(c.Request().Context(), h.stopping)
		j, err = h.jobs.Wait(ctx, id, wait)
		cancel()
		if err != nil && j != nil && ctx.Err() != nil && c.Request().Context().Err() == nil {
			err = nil
		}
	} else {
		j, err = h.jobs.Get(c.Request().Context(), id)
	}
	if err != nil {
		return jobError(err, queue.Route{})
	}
	return h.writeJob(c, http.StatusOK, j)
}

// deleteJob is DELETE /jobs/:id: cancels a queued job (idempotent).
func (h *handlers) deleteJob(c echo.Context) error {
	if err := h.ownJob(c, c.Param("id")); err != nil {
		return err
	}
	j, err := h.jobs.Cancel(c.Request().Context(), c.Param("id"))
	if errors.Is(err, jobs.ErrConflict) && j != nil {
		b, _ := httperr.Marshal(map[string]any{
			"detail": "Only a queued job can be cancelled; this one is " + string(j.Status),
			"reason": reason.NotCancellable, "job": h.viewOf(j),
		})
		return c.JSONBlob(http.StatusConflict, b)
	}
	if err != nil {
		return jobError(err, queue.Route{})
	}
	return h.writeJob(c, http.StatusOK, j)
}

// ownJob is nil when the caller may read and cancel the job, else the same 404
// as for an unknown job: another caller's job is not there for this one (not even
// its existence is told). A job's owner never changes, so the check holds for the
// Wait or Cancel that follows.
func (h *handlers) ownJob(c echo.Context, id string) error {
	j, err := h.jobs.Get(c.Request().Context(), id)
	if err != nil {
		return jobError(err, queue.Route{})
	}
	if !mayRead(c.Request(), j.Owner) {
		return jobError(jobs.ErrNotFound, queue.Route{})
	}
	return nil
}

// jobFailed is the answer to a hand-off (Prefer: respond-async) whose job failed
// within the wait: what the same request would have answered synchronously.
func jobFailed(j *jobs.Job) error {
	msg, r := "job failed", reason.ModelError
	if j.Error != nil {
		msg = string(j.Error.Reason) + ": " + j.Error.Message
		switch j.Error.Reason {
		case jobs.ReasonBadInput:
			return httperr.Of(reason.BadInput, "Bad input: "+j.Error.Message, errors.New(msg))
		case jobs.ReasonTimeout, jobs.ReasonRunTimeout:
			r = reason.Timeout
		}
	}
	if r == reason.Timeout {
		return httperr.Of(r, "The model gave up: "+msg, errors.New(msg))
	}
	return httperr.Of(r, "Model error: "+msg, errors.New(msg))
}

// jobError maps the job service's errors (and the farm's, for a publish) to the
// status contract.
func jobError(err error, r queue.Route) error {
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return httperr.Of(reason.NotFound, "Job not found (unknown id, or finished longer ago than JOB_TTL)", err)
	case errors.Is(err, jobs.ErrKeyMismatch):
		return httperr.Of(reason.IdempotencyKeyReused, "Idempotency-Key was already used with a different body", err)
	case errors.Is(err, jobs.ErrInProgress):
		return httperr.Of(reason.InProgress, "The first submission with this Idempotency-Key is still in progress; retry", err)
	case errors.Is(err, jobs.ErrUnconfirmed):
		return httperr.Of(reason.BrokerUnavailable, "The broker did not confirm the job in time; it is kept and will be queued once the broker answers. Retry with the same Idempotency-Key to get it.", err)
	case errors.Is(err, queue.ErrJobTopology):
		return httperr.Of(reason.JobsUnavailable, "Jobs cannot be submitted now: "+err.Error(), err)
	case errors.Is(err, context.DeadlineExceeded):
		// The publish itself ran out of time: the job was not queued (and removed).
		return httperr.Of(reason.BrokerUnavailable, "Model service is unavailable: the broker did not take the job in time; retry", err)
	}
	return statusFor(err, r)
}
