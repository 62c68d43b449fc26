package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/warren-farm/warren/pkg/httperr"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/reason"
)

// The dead-letter admin endpoints (docs/jobs.md, "Dead letters"): list, show,
// replay (same id) and discard the jobs the farm gave up delivering. All of
// them are behind ADMIN_API, like the traffic endpoint's changes: a dead
// letter's input is a client's data.
func (h *handlers) deadLetterRoutes(e *echo.Echo) {
	e.GET("/admin/deadletters", h.listDeadLetters, h.adminOnly)
	e.GET("/admin/deadletters/:id", h.getDeadLetter, h.adminOnly)
	e.POST("/admin/deadletters/:id/replay", h.replayDeadLetter, h.adminOnly)
	e.DELETE("/admin/deadletters/:id", h.discardDeadLetter, h.adminOnly)
}

// defaultDeadLetterPage is the page size without ?limit=.
const defaultDeadLetterPage = 100

// deadLetterView is a dead letter (or a replayed or discarded one) as the admin
// endpoints show it: the client's view plus what an operator needs — the last
// worker, the input's size (and, for one job, the input) and the earlier runs.
type deadLetterView struct {
	ID         string          `json:"id"`
	Status     jobs.Status     `json:"status"`
	Model      string          `json:"model,omitempty"`
	Version    string          `json:"model_version,omitempty"`
	CreatedAt  time.Time       `json:"created_at"`
	StartedAt  *time.Time      `json:"started_at"`
	FinishedAt *time.Time      `json:"finished_at"`
	Attempts   int             `json:"attempts"`
	Worker     string          `json:"worker,omitempty"`
	Error      *jobs.Error     `json:"error,omitempty"`
	RequestID  string          `json:"request_id,omitempty"`
	InputBytes int             `json:"input_bytes"`
	Input      json.RawMessage `json:"input,omitempty"`
	History    []jobs.PastRun  `json:"history"`
	Links      deadLinks       `json:"links"`
}

type deadLinks struct {
	Self   string `json:"self"`
	Job    string `json:"job"`
	Replay string `json:"replay"`
}

// deadViewOf renders j; withInput adds the input (as JSON when it is JSON, else
// as a JSON string).
func deadViewOf(j *jobs.Job, withInput bool) deadLetterView {
	v := deadLetterView{
		ID: j.ID, Status: j.Status, Model: j.Model, Version: j.Version, CreatedAt: j.CreatedAt,
		StartedAt: j.StartedAt, FinishedAt: j.FinishedAt, Attempts: j.Attempts, Worker: j.Worker, Error: j.Error,
		RequestID: j.RequestID, InputBytes: len(j.Input), History: j.History,
		Links: deadLinks{Self: "/admin/deadletters/" + j.ID, Job: "/jobs/" + j.ID, Replay: "/admin/deadletters/" + j.ID + "/replay"},
	}
	if v.History == nil {
		v.History = []jobs.PastRun{}
	}
	if withInput && len(j.Input) > 0 {
		if json.Valid(j.Input) {
			v.Input = json.RawMessage(j.Input)
		} else {
			v.Input, _ = json.Marshal(string(j.Input))
		}
	}
	return v
}

// deadLetterPage is GET /admin/deadletters.
type deadLetterPage struct {
	DeadLetters []deadLetterView `json:"dead_letters"`
	// Count is how many dead letters there are in all (every page).
	Count int `json:"count"`
	// Next is the ?after= of the next page; absent on the last.
	Next string `json:"next,omitempty"`
}

// listDeadLetters is GET /admin/deadletters[?limit=100&after=token], oldest first.
func (h *handlers) listDeadLetters(c echo.Context) error {
	ve := &httperr.ValidationError{}
	limit := defaultDeadLetterPage
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > jobs.MaxDeadLetterPage {
			ve.Add("value_error", "limit must be a whole number from 1 to "+strconv.Itoa(jobs.MaxDeadLetterPage), s, "query", "limit")
		} else {
			limit = n
		}
	}
	after := c.QueryParam("after")
	if _, _, err := jobs.ParseDeadCursor(after); err != nil {
		ve.Add("value_error", "after must be the next token of an earlier page", after, "query", "after")
	}
	if err := ve.OrNil(); err != nil {
		return err
	}
	ctx := c.Request().Context()
	js, next, err := h.jobs.DeadLetters(ctx, after, limit)
	if err != nil {
		return jobError(err, queue.Route{})
	}
	n, err := h.jobs.CountDeadLetters(ctx)
	if err != nil {
		return jobError(err, queue.Route{})
	}
	page := deadLetterPage{DeadLetters: make([]deadLetterView, len(js)), Count: n, Next: next}
	for i, j := range js {
		page.DeadLetters[i] = deadViewOf(j, false)
	}
	return c.JSON(http.StatusOK, page)
}

// getDeadLetter is GET /admin/deadletters/:id: one dead letter with its input.
func (h *handlers) getDeadLetter(c echo.Context) error {
	j, err := h.jobs.GetDeadLetter(c.Request().Context(), c.Param("id"))
	if err != nil {
		return h.deadLetterError(c, j, err)
	}
	return c.JSON(http.StatusOK, deadViewOf(j, true))
}

// replayDeadLetter is POST /admin/deadletters/:id/replay: the job is queued again
// under its id; 200 once the broker confirmed it.
func (h *handlers) replayDeadLetter(c echo.Context) error {
	j, err := h.jobs.Replay(c.Request().Context(), c.Param("id"))
	if errors.Is(err, jobs.ErrUnconfirmed) && j != nil {
		return httperr.Of(reason.BrokerUnavailable, "The job is queued again in the store, but the broker did not confirm its publish; the outbox publishes it once the broker answers. Do not replay it again: GET /jobs/"+j.ID+" shows it.", err)
	}
	if err != nil {
		return h.deadLetterError(c, j, err)
	}
	setJobHeaders(c, j)
	return c.JSON(http.StatusOK, deadViewOf(j, false))
}

// discardDeadLetter is DELETE /admin/deadletters/:id: the job is deleted; the
// answer is the job as it was.
func (h *handlers) discardDeadLetter(c echo.Context) error {
	j, err := h.jobs.Discard(c.Request().Context(), c.Param("id"))
	if err != nil {
		return h.deadLetterError(c, j, err)
	}
	return c.JSON(http.StatusOK, deadViewOf(j, false))
}

// deadLetterError answers a job that is not a dead letter with 409 (and the job's
// status), other errors as the job endpoints do.
func (h *handlers) deadLetterError(c echo.Context, j *jobs.Job, err error) error {
	if errors.Is(err, jobs.ErrConflict) && j != nil {
		why := string(j.Status)
		if j.Error != nil {
			why += " (" + string(j.Error.Reason) + ")"
		}
		b, _ := httperr.Marshal(map[string]any{
			"detail": "Only a dead letter (a job failed with delivery_limit or attempts_exhausted) can be shown, replayed or discarded here; job " + j.ID + " is " + why,
			"reason": reason.NotDeadLetter, "status": j.Status,
		})
		return c.JSONBlob(http.StatusConflict, b)
	}
	return jobError(err, queue.Route{})
}
