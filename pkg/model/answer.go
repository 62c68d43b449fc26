package model

import (
	"crypto/sha256"
	"encoding/hex"
)

// ModelRef names the model version that made an answer.
type ModelRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Answer is warren's answer to one seed-lab input: the lab's prediction and message,
// plus what identifies it. It is POST /process's model_prediction and a worker's
// POST /predict body.
type Answer struct {
	Output
	RequestID   string   `json:"request_id"`
	Model       ModelRef `json:"model"`
	WorkerID    string   `json:"worker_id"`
	InputSHA256 string   `json:"input_sha256"`
}

// AnswerInfo is what an Answer says besides the prediction.
type AnswerInfo struct {
	RequestID, Model, Version, WorkerID string
	// Input is the input text; the answer carries its SHA-256, never the text.
	Input string
}

// NewAnswer reads element i of a seed-shaped response into an Answer.
func NewAnswer(r *Response, i int, info AnswerInfo) (Answer, error) {
	o, err := SeedOutput(r, i)
	if err != nil {
		return Answer{}, err
	}
	sum := sha256.Sum256([]byte(info.Input))
	return Answer{Output: o, RequestID: info.RequestID, Model: ModelRef{Name: info.Model, Version: info.Version},
		WorkerID: info.WorkerID, InputSHA256: hex.EncodeToString(sum[:])}, nil
}
