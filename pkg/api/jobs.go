package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warren-farm/warren/pkg/httperr"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/metrics"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/queue"
)

// JobsConfig configures the async job endpoints. Without a Store they are not
// served.
type JobsConfig struct {
	// Store keeps job state (an embedded bbolt file, or Redis for several API
	// replicas). The API owns it from New on and closes it when Run returns.
	Store jobs.Store
	// Names of the job path's queues; the zero value uses queue.DefaultJobQueue.
	Names queue.JobNames
	// MaxWait caps ?wait= and Prefer: wait=; zero means 60s.
	MaxWait time.Duration
	// StartTimeout: a job not started this long after submission expires; zero
	// means never.
	StartTimeout time.Duration
	// RecoverAfter: a stored job whose publish was never confirmed is republished
	// once it is this old (and, at start, every such job created before the process
	// started). Zero means 30s.
	RecoverAfter time.Duration
}

// jobView is a job as the API shows it.
type jobView struct {
	*jobs.Job
	Links jobLinks `json:"links"`
}

type jobLinks struct {
	Self string `json:"self"`
}

func viewOf(j *jobs.Job) jobView { return jobView{Job: j, Links: jobLinks{Self: "/jobs/" + j.ID}} }

const maxKeyLen = 255

// publishTimeout bounds the wait for the broker's confirm of a job submission (a
// fresh memory alarm would otherwise hold it indefinitely).
const publishTimeout = 10 * time.Second

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

// input is a validated /process or /jobs body.
type input struct {
	data    string
	forward bool
}

// readInput reads and validates the body shared by /process and /jobs.
func (s *Server) readInput(c echo.Context, ve *httperr.ValidationError) (input, error) {
	body, err := httperr.ReadBody(c.Request(), s.cfg.BodyLimit)
	if err != nil {
		return input{}, err
	}
	obj, err := httperr.Object(body)
	if err != nil {
		return input{}, err
	}
	data, _ := httperr.String(obj, "data", ve)
	forward := httperr.Bool(obj, "forward_to_model", true, ve)
	return input{data: data, forward: forward}, nil
}

// submit stores a job, publishes it and marks it published: the outbox order. On a
// failed publish the job is removed again, so nothing runs that the client was told
// failed. existing is set (with err nil) when key replays an earlier submission.
func (s *Server) submit(ctx context.Context, rid, data, key string) (j *jobs.Job, existing bool, err error) {
	payload, _ := jsonMarshal(model.RequestMessage{Data: data})
	sum := sha256.Sum256([]byte(data))
	now := time.Now().UTC()
	j = &jobs.Job{
		ID: "j" + strings.ToLower(rand.Text()), Status: jobs.Queued, CreatedAt: now,
		RequestID: rid, Input: payload, IdempotencyKey: key, BodyHash: hex.EncodeToString(sum[:]),
	}
	if s.cfg.Jobs.StartTimeout > 0 {
		j.StartBy = now.Add(s.cfg.Jobs.StartTimeout)
	}
	prev, err := s.store.Create(ctx, j)
	switch {
	case errors.Is(err, jobs.ErrKeyMismatch):
		return nil, false, &httperr.Error{Status: 422, Reason: "idempotency_key_reused", Err: err,
			Detail: "Idempotency-Key was already used with a different body"}
	case errors.Is(err, jobs.ErrInProgress):
		return nil, false, &httperr.Error{Status: 409, Reason: "in_progress", RetryAfter: 1, Err: err,
			Detail: "The first submission with this Idempotency-Key is still in progress; retry"}
	case err != nil:
		return nil, false, storeError(err)
	case prev != nil:
		return prev, true, nil
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	err = s.publishJob(pctx, j)
	cancel()
	if errors.Is(err, queue.ErrUnconfirmed) {
		// Sent, but neither confirmed nor refused: the job may be queued. It stays in
		// the store unpublished, so the outbox publishes it again later (a duplicate
		// delivery only repeats work; the first final state wins). A client that
		// retries with the same Idempotency-Key gets 409, then this job.
		s.log.Warn("job publish not confirmed; the outbox will publish it again", "job_id", j.ID, "err", err)
		return nil, false, &httperr.Error{Status: 503, Reason: "broker_unavailable", RetryAfter: 5, Err: err,
			Detail: "The broker did not confirm the job in time; it is kept and will be queued once the broker answers. Retry with the same Idempotency-Key to get it."}
	}
	if err != nil {
		// Definitely not queued: the client gets an error, so the job must not run.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if derr := s.store.Delete(dctx, j.ID); derr != nil {
			s.log.Warn("could not remove a job whose publish failed; the outbox will publish it", "job_id", j.ID, "err", derr)
		}
		cancel()
		return nil, false, statusFor(err)
	}
	s.metrics.JobSubmitted()
	return j, false, nil
}

// publishJob publishes j and records that the broker confirmed it.
func (s *Server) publishJob(ctx context.Context, j *jobs.Job) error {
	m := queue.JobMessage{ID: j.ID, RequestID: j.RequestID, Body: j.Input, StartBy: j.StartBy}
	if tr := s.cfg.Tracing; tr.Enabled() {
		m.Headers = amqp.Table{}
		tr.Inject(ctx, m.Headers)
	}
	if err := s.client.PublishJob(ctx, m); err != nil {
		return err
	}
	j.Published = true
	if err := s.store.MarkPublished(context.WithoutCancel(ctx), j.ID); err != nil {
		// The job is on the queue and will run; the flag only stops a republish.
		s.log.Warn("job published but not marked so; it may be published twice", "job_id", j.ID, "err", err)
	}
	return nil
}

// storeError is a 503 for a store failure; the cause is logged, never shown (it may
// name internal addresses).
func storeError(err error) error {
	return &httperr.Error{Status: 503, Reason: "store_unavailable", RetryAfter: 2, Err: err,
		Detail: "Job store is unavailable; retry"}
}

// postJob is POST /jobs.
func (s *Server) postJob(c echo.Context) error {
	ve := &httperr.ValidationError{}
	in, err := s.readInput(c, ve)
	if err != nil {
		return err
	}
	if !in.forward {
		ve.Add("value_error", "a job always runs the model: forward_to_model must be true or absent", false, "body", "forward_to_model")
	}
	key := c.Request().Header.Get("Idempotency-Key")
	if key != "" && !validKey(key) {
		ve.Add("value_error", "Idempotency-Key must be 1 to 255 printable ASCII characters", key, "header", "Idempotency-Key")
	}
	if err := ve.OrNil(); err != nil {
		return err
	}
	if !s.enter() {
		return statusFor(errDraining)
	}
	defer s.leave()
	rid := c.Response().Header().Get(echo.HeaderXRequestID)
	j, replay, err := s.submit(c.Request().Context(), rid, in.data, key)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/jobs/"+j.ID)
	if replay {
		c.Response().Header().Set("Idempotent-Replayed", "true")
		return c.JSON(http.StatusOK, viewOf(j))
	}
	return c.JSON(http.StatusAccepted, viewOf(j))
}

// getJob is GET /jobs/:id[?wait=30].
func (s *Server) getJob(c echo.Context) error {
	ve := &httperr.ValidationError{}
	wait := s.waitParam(c.QueryParam("wait"), ve, "query", "wait")
	if err := ve.OrNil(); err != nil {
		return err
	}
	id := c.Param("id")
	var j *jobs.Job
	var err error
	if wait > 0 {
		// A drain ends long polls at once with the job as it is (the client polls
		// again, on another replica).
		ctx, cancel := context.WithCancel(c.Request().Context())
		stop := context.AfterFunc(s.stopping, cancel)
		j, err = s.store.Wait(ctx, id, wait)
		stop()
		cancel()
		if err != nil && j != nil && s.draining.Load() {
			err = nil
		}
	} else {
		j, err = s.store.Get(c.Request().Context(), id)
	}
	if err != nil {
		return jobError(err)
	}
	return c.JSON(http.StatusOK, viewOf(j))
}

// deleteJob is DELETE /jobs/:id: cancels a queued job.
func (s *Server) deleteJob(c echo.Context) error {
	id := c.Param("id")
	j, err := s.store.Cancel(c.Request().Context(), id)
	if errors.Is(err, jobs.ErrConflict) && j != nil && j.Status == jobs.Cancelled {
		return c.JSON(http.StatusOK, viewOf(j)) // cancelling twice is not an error
	}
	if errors.Is(err, jobs.ErrConflict) && j != nil {
		return c.JSON(http.StatusConflict, map[string]any{
			"detail": "Only a queued job can be cancelled; this one is " + string(j.Status),
			"reason": "not_cancellable", "job": viewOf(j),
		})
	}
	if err != nil {
		return jobError(err)
	}
	s.metrics.JobFinished(string(jobs.Cancelled))
	// Tell the workers, so one that receives it skips it (best effort: the store
	// keeps it cancelled whatever a worker reports).
	if err := s.client.PublishCancel(c.Request().Context(), id); err != nil {
		s.log.Debug("cancel notice not published", "job_id", id, "err", err)
	}
	return c.JSON(http.StatusOK, viewOf(j))
}

func jobError(err error) error {
	if errors.Is(err, jobs.ErrNotFound) {
		return &httperr.Error{Status: 404, Reason: "not_found", Err: err,
			Detail: "Job not found (unknown id, or finished longer ago than JOB_TTL)"}
	}
	if errors.Is(err, context.Canceled) {
		return statusFor(err)
	}
	return storeError(err)
}

// waitParam parses a wait: seconds ("30", "2.5") or a Go duration ("30s"), capped at
// MaxWait. Empty means 0.
func (s *Server) waitParam(v string, ve *httperr.ValidationError, loc ...any) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	d, ok := parseSeconds(v, s.cfg.Jobs.MaxWait)
	if !ok || d < 0 {
		ve.Add("value_error", "wait must be a non-negative number of seconds (30) or a duration (30s)", v, loc...)
		return 0
	}
	return d
}

// preferAsync parses an RFC 7240 Prefer header: whether respond-async is asked for
// and the wait preference (seconds).
func preferAsync(h []string) (async bool, wait string) {
	for _, line := range h {
		for _, p := range strings.Split(line, ",") {
			p = strings.TrimSpace(p)
			name, val, _ := strings.Cut(p, "=")
			name = strings.ToLower(strings.TrimSpace(name))
			switch name {
			case "respond-async":
				async = true
			case "wait":
				wait = strings.Trim(strings.TrimSpace(val), `"`)
			}
		}
	}
	return async, wait
}

// processAsync serves POST /process with Prefer: respond-async: the request is a job
// from the start; the answer is /process's if it finishes within the wait, else 202.
func (s *Server) processAsync(c echo.Context, data, wait string, ve *httperr.ValidationError) error {
	d := s.waitParam(wait, ve, "header", "Prefer")
	if err := ve.OrNil(); err != nil {
		return err
	}
	if !s.enter() {
		return statusFor(errDraining)
	}
	defer s.leave()
	rid := c.Response().Header().Get(echo.HeaderXRequestID)
	ctx := c.Request().Context()
	j, _, err := s.submit(ctx, rid, data, "")
	if err != nil {
		return err
	}
	if d > 0 {
		// The job is queued whatever happens now: if the wait fails, the client still
		// gets its Location (202), never an error that would make it submit again.
		if done, err := s.store.Wait(ctx, j.ID, d); err == nil {
			j = done
		} else if ctx.Err() != nil {
			return statusFor(ctx.Err())
		}
	}
	switch j.Status {
	case jobs.Succeeded:
		return c.JSONBlob(http.StatusOK, processBody(j.Result))
	case jobs.Failed:
		msg := "job failed"
		if j.Error != nil {
			msg = j.Error.Reason + ": " + j.Error.Message
		}
		return &httperr.Error{Status: 502, Reason: metrics.ReasonModelError, Detail: "Model error: " + msg}
	}
	c.Response().Header().Set(echo.HeaderLocation, "/jobs/"+j.ID)
	c.Response().Header().Set("Preference-Applied", "respond-async")
	return c.JSON(http.StatusAccepted, viewOf(j))
}

// processBody is /process's 200 body around a model prediction.
func processBody(prediction []byte) []byte {
	out := make([]byte, 0, len(prediction)+64)
	out = append(out, `{"status":"Input logged successfully","model_prediction":`...)
	out = append(out, prediction...)
	return append(out, '}')
}

// applyUpdate applies a worker's report to the store (the result consumer's handler).
func (s *Server) applyUpdate(ctx context.Context, u queue.JobUpdate) error {
	ev := jobs.Event{JobID: u.JobID, Type: jobs.EventType(u.Type), Status: jobs.Status(u.Status),
		At: u.At, Attempt: u.Attempt, Worker: u.Worker, Result: u.Result}
	if u.Error != nil {
		ev.Error = &jobs.Error{Reason: u.Error.Reason, Message: u.Error.Message}
	}
	j, changed, err := s.store.Apply(ctx, ev)
	switch {
	case errors.Is(err, jobs.ErrNotFound), errors.Is(err, jobs.ErrInvalidEvent):
		s.log.Debug("dropped a job update", "job_id", u.JobID, "err", err)
		return nil
	case err != nil:
		return err
	}
	if changed && j.Status.Final() {
		s.metrics.JobFinished(string(j.Status))
	}
	return nil
}

// applyDead marks a dead-lettered job failed.
func (s *Server) applyDead(ctx context.Context, d queue.DeadJob) error {
	s.metrics.JobDeadLettered()
	if d.JobID == "" {
		s.log.Warn("dead-lettered a job message without a job id", "reason", d.Reason)
		return nil
	}
	return s.applyUpdate(ctx, queue.JobUpdate{JobID: d.JobID, Type: queue.UpdateFinal, Status: queue.JobFailed,
		At: time.Now(), Error: &queue.JobError{Reason: queue.ReasonDeliveryLimit,
			Message: "the broker dead-lettered the job (" + d.Reason + "): delivered more than " +
				strconv.Itoa(queue.JobDeliveryLimit) + " times or unreadable"}})
}

// maintainJobs runs until ctx ends: it republishes jobs whose publish was never
// confirmed (the outbox) and expires queued jobs past their start-by time.
func (s *Server) maintainJobs(ctx context.Context, started time.Time) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	lastRecover := time.Time{}
	for {
		if st := s.client.State(); st.Connected && time.Since(lastRecover) >= 5*time.Second {
			lastRecover = time.Now()
			cutoff := time.Now().Add(-s.cfg.Jobs.RecoverAfter)
			if cutoff.Before(started) {
				cutoff = started // at start: every job of an earlier process at once
			}
			s.recoverUnpublished(ctx, cutoff)
		}
		if ids, err := s.store.ExpireQueued(ctx, time.Now(), 1000); err != nil {
			s.log.Warn("expiring queued jobs", "err", err)
		} else {
			for range ids {
				s.metrics.JobFinished(string(jobs.Expired))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) recoverUnpublished(ctx context.Context, createdBefore time.Time) {
	js, err := s.store.Unpublished(ctx, createdBefore, 1000)
	if err != nil {
		s.log.Warn("reading unpublished jobs", "err", err)
		return
	}
	for _, j := range js {
		if err := s.publishJob(ctx, j); err != nil {
			s.log.Warn("republishing a stored job failed; will retry", "job_id", j.ID, "err", err)
			return
		}
		s.log.Info("republished a stored job whose publish was never confirmed", "job_id", j.ID)
	}
}

// parseSeconds parses seconds ("30", "2.5") or a Go duration ("30s"), capped at
// limit before any conversion can overflow. ok is false if v is neither.
func parseSeconds(v string, limit time.Duration) (time.Duration, bool) {
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs != secs { // NaN
			return 0, false
		}
		if secs >= limit.Seconds() {
			return limit, true
		}
		return time.Duration(secs * float64(time.Second)), true
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, false
	}
	return min(d, limit), true
}
