package jobs

import (
	"encoding/json"
	"fmt"
	"time"
)

// EventType is the kind of a worker [Event].
type EventType string

// The event types.
const (
	// EventRunning: a worker started an attempt.
	EventRunning EventType = "running"
	// EventFinal: a worker finished the job (succeeded, failed or expired).
	EventFinal EventType = "final"
)

// Event is a worker's report about a job: the message workers publish, as
// JSON, on the results queue, which the API consumes and applies with
// [Store.Apply]. Running events may be repeated or arrive
// after the final one; applying is idempotent. Its JSON is a wire format
// shared by every API and worker version of a deployment: add fields only
// with omitempty, never rename one.
type Event struct {
	JobID string    `json:"job_id"`
	Type  EventType `json:"type"`
	// Status of a final event: succeeded, failed or expired. Empty for running.
	Status Status `json:"status,omitempty"`
	// At is when it happened (the worker's clock); zero means "when applied".
	At time.Time `json:"at"`
	// Attempt is the attempt number (1 for the first delivery).
	Attempt int `json:"attempt"`
	// Worker identifies the worker that reports (logs, diagnostics).
	Worker string `json:"worker,omitempty"`
	// Result is the worker's answer (JSON) of a succeeded event.
	Result json.RawMessage `json:"result,omitempty"`
	// Error says why, for a failed or expired event.
	Error *Error `json:"error,omitempty"`
	// StartedAt is when the run that a final event ends began (the worker's
	// clock); nil when it did not run. It sets the job's StartedAt when the
	// running event has not been applied: the API applies events concurrently,
	// so a final event can be applied before the running one, which a final
	// job then ignores.
	StartedAt *time.Time `json:"started_at,omitempty"`
}

// Validate reports an event that can never apply (a poison message), wrapping
// [ErrInvalidEvent]: no job id, an unknown type, a status that does not fit
// the type, a negative attempt, a result that is not JSON, or an Error
// without a reason. The reason itself is not checked against [Reasons]:
// workers of another version may send new ones.
func (ev Event) Validate() error {
	switch {
	case ev.JobID == "":
		return fmt.Errorf("%w: empty job id", ErrInvalidEvent)
	case ev.Attempt < 0:
		return fmt.Errorf("%w: negative attempt %d", ErrInvalidEvent, ev.Attempt)
	case len(ev.Result) > 0 && !json.Valid(ev.Result):
		return fmt.Errorf("%w: result is not valid JSON", ErrInvalidEvent)
	case ev.Error != nil && ev.Error.Reason == "":
		return fmt.Errorf("%w: error without a reason", ErrInvalidEvent)
	}
	switch ev.Type {
	case EventRunning:
		if ev.Status != "" && ev.Status != Running {
			return fmt.Errorf("%w: running event with status %q", ErrInvalidEvent, ev.Status)
		}
	case EventFinal:
		if ev.Status != Succeeded && ev.Status != Failed && ev.Status != Expired {
			return fmt.Errorf("%w: final event with status %q (want succeeded, failed or expired)", ErrInvalidEvent, ev.Status)
		}
	default:
		return fmt.Errorf("%w: unknown type %q", ErrInvalidEvent, ev.Type)
	}
	return nil
}
