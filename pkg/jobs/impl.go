package jobs

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// This file holds the rules every Store implementation shares, so that the
// backends (boltstore, redisstore) cannot drift apart. They are exported for
// Store implementations only; the rest of warren uses a Store or the
// Service. redisstore's Lua scripts mirror them and must stay in step: the
// contract suite (jobstest) checks every backend against the same
// expectations.

// ExpiredError is the Error that [Store.ExpireQueued] stores on the jobs it
// expires. For Store implementations.
func ExpiredError() *Error {
	return &Error{Reason: ReasonExpired, Message: "job was not started before its start-by time"}
}

// Visible reports whether a job may be shown at now: any unfinished job, and
// finished jobs for ttl after FinishedAt. A job that is not visible is
// ErrNotFound for every Store method. For Store implementations.
func Visible(j *Job, now time.Time, ttl time.Duration) bool {
	if !j.Status.Final() || j.FinishedAt == nil {
		return true
	}
	return now.Sub(*j.FinishedAt) < ttl
}

// ReplayOutcome decides what [Store.Create] returns for j when existing, a
// visible job, already holds j's idempotency key: ErrKeyMismatch,
// ErrInProgress or nil (a replay). For Store implementations.
func ReplayOutcome(existing, j *Job) error {
	switch {
	case existing.BodyHash != j.BodyHash:
		return ErrKeyMismatch
	case !existing.Published && !existing.Status.Final():
		return ErrInProgress
	}
	return nil
}

// PrepareCreate validates j for [Store.Create] and sets the fields Create
// sets: status queued, not Published, no progress, CreatedAt now if zero,
// times in UTC. For Store implementations.
func PrepareCreate(j *Job, now time.Time) error {
	if j.ID == "" {
		return fmt.Errorf("%w: empty id", ErrInvalidJob)
	}
	j.Status = Queued
	j.Published = false
	j.StartedAt, j.FinishedAt = nil, nil
	j.Attempts = 0
	j.Result, j.Error = nil, nil
	if j.CreatedAt.IsZero() {
		j.CreatedAt = now
	}
	j.CreatedAt = j.CreatedAt.UTC()
	if !j.StartBy.IsZero() {
		j.StartBy = j.StartBy.UTC()
	}
	return nil
}

// ApplyEvent applies a valid event (see [Event.Validate]) to j in place and
// reports whether it changed j, as [Store.Apply] documents; now stamps an
// event without At. It is the reference for redisstore's Lua script: both
// must stay in step. For Store implementations.
func ApplyEvent(j *Job, ev Event, now time.Time) bool {
	if j.Status.Final() {
		return false
	}
	at := ev.At
	if at.IsZero() {
		at = now
	}
	at = at.UTC()
	changed := false
	switch ev.Type {
	case EventRunning:
		if j.Status != Running {
			j.Status = Running
			changed = true
		}
		if j.StartedAt == nil {
			j.StartedAt = &at
			changed = true
		}
		if ev.Worker != "" && ev.Attempt >= j.Attempts && j.Worker != ev.Worker {
			j.Worker = ev.Worker
			changed = true
		}
		if ev.Attempt > j.Attempts {
			j.Attempts = ev.Attempt
			changed = true
		}
		if !j.Published {
			j.Published = true
			changed = true
		}
	case EventFinal:
		j.Status = ev.Status
		j.FinishedAt = &at
		if j.StartedAt == nil && ev.StartedAt != nil && !ev.StartedAt.IsZero() {
			st := ev.StartedAt.UTC()
			j.StartedAt = &st
		}
		if ev.Attempt > j.Attempts {
			j.Attempts = ev.Attempt
		}
		if ev.Worker != "" {
			j.Worker = ev.Worker
		}
		j.Result = cloneBytes(ev.Result)
		j.Error = cloneError(ev.Error)
		j.Published = true
		changed = true
	}
	return changed
}

// CheckMetaKey reports a key [Store.PutMeta] must refuse, wrapping
// ErrInvalidMetaKey. For Store implementations.
func CheckMetaKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrInvalidMetaKey)
	case len(key) > MaxMetaKeyLen:
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidMetaKey, len(key), MaxMetaKeyLen)
	}
	return nil
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

func cloneError(e *Error) *Error {
	if e == nil {
		return nil
	}
	c := *e
	return &c
}

// MaxHistory bounds [Job.History]: the oldest runs are dropped beyond it.
const MaxHistory = 32

// PrepareReplay makes dead letter j (see [IsDeadLetter]) queued again, in
// place, as [Store.Replay] documents: its run so far goes to History, its
// progress is cleared, it is not Published, and StartBy is startBy (zero:
// none). ErrConflict if j is not a dead letter. For Store implementations.
func PrepareReplay(j *Job, now, startBy time.Time) error {
	if !IsDeadLetter(j) {
		why := string(j.Status)
		if j.Error != nil {
			why += " (" + string(j.Error.Reason) + ")"
		}
		return fmt.Errorf("%w: job %s is %s, not a dead letter", ErrConflict, j.ID, why)
	}
	run := PastRun{Attempts: j.Attempts, Worker: j.Worker, Error: cloneError(j.Error), ReplayedAt: now.UTC()}
	if j.StartedAt != nil {
		t := j.StartedAt.UTC()
		run.StartedAt = &t
	}
	if j.FinishedAt != nil {
		run.FinishedAt = j.FinishedAt.UTC()
	}
	j.History = append(j.History, run)
	if len(j.History) > MaxHistory {
		j.History = append([]PastRun(nil), j.History[len(j.History)-MaxHistory:]...)
	}
	j.Status = Queued
	j.Published = false
	j.StartedAt, j.FinishedAt = nil, nil
	j.Attempts = 0
	j.Worker = ""
	j.Result, j.Error = nil, nil
	j.StartBy = time.Time{}
	if !startBy.IsZero() {
		j.StartBy = startBy.UTC()
	}
	return nil
}

// DeadCursor is the position after dead letter j in [Store.DeadLetters]'
// order (by FinishedAt, then id), as an opaque page token.
func DeadCursor(j *Job) string {
	var ns int64
	if j.FinishedAt != nil {
		ns = j.FinishedAt.UnixNano()
	}
	return strconv.FormatInt(ns, 10) + "." + j.ID
}

// ParseDeadCursor reads a [DeadCursor]; "" is the start (0, ""). An
// invalid token wraps ErrInvalidCursor.
func ParseDeadCursor(c string) (ns int64, id string, err error) {
	if c == "" {
		return 0, "", nil
	}
	n, rest, ok := strings.Cut(c, ".")
	v, perr := strconv.ParseInt(n, 10, 64)
	if !ok || perr != nil || v < 0 || rest == "" {
		return 0, "", fmt.Errorf("%w: %q", ErrInvalidCursor, c)
	}
	return v, rest, nil
}

// AfterCursor reports whether dead letter j comes after the cursor position
// (ns, id) in [Store.DeadLetters]' order. For Store implementations.
func AfterCursor(j *Job, ns int64, id string) bool {
	var jn int64
	if j.FinishedAt != nil {
		jn = j.FinishedAt.UnixNano()
	}
	return jn > ns || (jn == ns && j.ID > id)
}
