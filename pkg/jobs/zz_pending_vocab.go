package jobs

// Temporary: the job vocabulary and publisher contract the job service (being
// extracted on another branch) defines. Removed when that branch is merged.

import (
	"context"
	"errors"
	"time"
)

type Publisher interface {
	PublishJob(ctx context.Context, m Message) error
	PublishCancel(ctx context.Context, id string) error
	Ready() bool
}

type Reason = string

const (
	ReasonModelError        = "model_error"
	ReasonBadMessage        = "bad_message"
	ReasonBadInput          = "bad_input"
	ReasonAttemptsExhausted = "attempts_exhausted"
	ReasonDeliveryLimit     = "delivery_limit"
	ReasonRunTimeout        = "run_timeout"
	ReasonExpired           = "expired"
	ReasonTimeout           = "timeout"
)

type Message struct {
	ID, RequestID, Model, Version string
	Body                          []byte
	StartBy                       time.Time
}

var ErrUnconfirmed = errors.New("jobs: publish not confirmed")

type DeadLetter struct{ JobID, Reason string }
