// Package model defines warren's predictor contract and its implementations.
//
// A [Predictor] takes a batch of inputs and returns one [Prediction] per input, in
// order. Workers call it with batches of one today; the contract takes batches so a
// model that gains from batching can be plugged in without touching the queue code.
//
// Implementations must honour the context: when its deadline passes, Predict returns
// promptly with the context's error and the caller answers the request as timed out.
package model

import (
	"context"
	"errors"
)

// Info names a model. It travels in every reply.
type Info struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Input is one item of a batch.
type Input struct {
	RequestID string // for logs and errors; never used to compute the prediction
	Data      string
}

// Prediction is the seed lab's answer: {"prediction":{...},"message":...}.
type Prediction struct {
	Class       string  `json:"class"`
	Confidence  float64 `json:"confidence"`
	InputLength int     `json:"input_length"`
}

// Output is one item of a batch's answer.
type Output struct {
	Prediction Prediction `json:"prediction"`
	Message    string     `json:"message"`
}

// Predictor is the contract every model implements. Predict is called concurrently
// from several goroutines and must be safe for that. It returns exactly len(in)
// outputs or an error that applies to the whole batch.
type Predictor interface {
	Info() Info
	Predict(ctx context.Context, in []Input) ([]Output, error)
}

// ErrBadInput marks an input the model can never handle (retrying is pointless).
var ErrBadInput = errors.New("bad model input")
