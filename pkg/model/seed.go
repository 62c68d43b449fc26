package model

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
	"unicode/utf8"
)

// Classes the seed model chooses from.
var Classes = []string{"cat", "dog", "bird", "fish", "rabbit"}

// The seed model's tensors: one BYTES input, and the lab's answer as four outputs.
// Any model with these inputs and outputs (an http model speaking the lab's
// Service B protocol, say) can answer POST /process.
const (
	SeedInput       = "data"
	SeedClass       = "class"
	SeedConfidence  = "confidence"
	SeedInputLength = "input_length"
	SeedMessage     = "message"
)

// SeedMetadata is the seed model's metadata (Name and Versions are the
// repository's to set).
func SeedMetadata() Metadata {
	return Metadata{
		Platform: "warren_seed",
		Inputs:   []TensorSpec{{Name: SeedInput, Datatype: BYTES, Shape: []int64{-1}}},
		Outputs: []TensorSpec{
			{Name: SeedClass, Datatype: BYTES, Shape: []int64{-1}},
			{Name: SeedConfidence, Datatype: FP64, Shape: []int64{-1}},
			{Name: SeedInputLength, Datatype: INT64, Shape: []int64{-1}},
			{Name: SeedMessage, Datatype: BYTES, Shape: []int64{-1}},
		},
	}
}

// SeedConfig configures the seed lab's model.
type SeedConfig struct {
	// Seed is mixed with a hash of each input; the same seed and input always give
	// the same prediction, so a redelivered request gets the same answer.
	Seed uint64
	// Latency is a simulated service time per batch. Zero means none.
	Latency time.Duration
	// ItemLatency is a simulated service time per request of a batch, added to
	// Latency: a batch of n costs Latency + n × ItemLatency (the shape of a real
	// model's batch, whose fixed cost batching amortises). Zero means none.
	ItemLatency time.Duration
}

// Seed is the seed lab's "SimpleMlModel" ported to Go: a class from [Classes] and a
// confidence in [0.70, 0.99] rounded to two decimals, for each string of its "data"
// input. Unlike the original it is deterministic per input. The class still does
// not depend on what the input means.
type Seed struct{ cfg SeedConfig }

// NewSeed returns the seed model.
func NewSeed(cfg SeedConfig) *Seed { return &Seed{cfg: cfg} }

// Metadata implements [Predictor].
func (m *Seed) Metadata() Metadata { return SeedMetadata() }

// Predict implements [Predictor]. With a Latency or an ItemLatency it waits
// Latency + len(batch) × ItemLatency or until ctx is done.
func (m *Seed) Predict(ctx context.Context, batch []*Request) ([]*Response, error) {
	if d := m.cfg.Latency + time.Duration(len(batch))*m.cfg.ItemLatency; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	} else if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]*Response, len(batch))
	for i, r := range batch {
		in := r.Input(SeedInput)
		data, ok := in.Data.([]string)
		if in == nil || !ok {
			out[i] = &Response{Err: BadInput(SeedInput, "missing, or not BYTES")}
			continue
		}
		out[i] = m.predict(data, in.Shape)
	}
	return out, nil
}

func (m *Seed) predict(data []string, shape []int64) *Response {
	n := len(data)
	classes, msgs := make([]string, n), make([]string, n)
	confs, lens := make([]float64, n), make([]int64, n)
	for i, s := range data {
		o := m.PredictOne(s)
		classes[i], confs[i], msgs[i] = o.Prediction.Class, o.Prediction.Confidence, o.Message
		lens[i] = int64(o.Prediction.InputLength)
	}
	return &Response{Outputs: []Tensor{
		{Name: SeedClass, Datatype: BYTES, Shape: shape, Data: classes},
		{Name: SeedConfidence, Datatype: FP64, Shape: shape, Data: confs},
		{Name: SeedInputLength, Datatype: INT64, Shape: shape, Data: lens},
		{Name: SeedMessage, Datatype: BYTES, Shape: shape, Data: msgs},
	}}
}

// Prediction is the seed lab's prediction object.
type Prediction struct {
	Class       string  `json:"class"`
	Confidence  float64 `json:"confidence"`
	InputLength int     `json:"input_length"`
}

// Output is the seed lab's answer: {"prediction":{...},"message":...}.
type Output struct {
	Prediction Prediction `json:"prediction"`
	Message    string     `json:"message"`
}

// PredictOne answers one string.
func (m *Seed) PredictOne(data string) Output {
	sum := sha256.Sum256([]byte(data))
	r := rand.New(rand.NewPCG(m.cfg.Seed, binary.LittleEndian.Uint64(sum[:8])))
	class := Classes[r.IntN(len(Classes))]
	// The lab: round(random.uniform(0.7, 0.99), 2).
	conf := math.Round((0.7+r.Float64()*0.29)*100) / 100
	return Output{
		Prediction: Prediction{Class: class, Confidence: conf, InputLength: utf8.RuneCountInString(data)},
		Message:    fmt.Sprintf("Predicted class: %s with %.1f%% confidence", class, conf*100),
	}
}

// SeedOutput reads element i of a seed-shaped response (see [SeedMetadata]) back
// into the lab's answer. It fails when the response lacks one of the four outputs
// or has fewer than i+1 elements.
func SeedOutput(r *Response, i int) (Output, error) {
	var o Output
	var ok [4]bool
	for _, t := range r.Outputs {
		switch t.Name {
		case SeedClass:
			if d, k := t.Data.([]string); k && i < len(d) {
				o.Prediction.Class, ok[0] = d[i], true
			}
		case SeedConfidence:
			switch d := t.Data.(type) {
			case []float64:
				if i < len(d) {
					o.Prediction.Confidence, ok[1] = d[i], true
				}
			case []float32:
				if i < len(d) {
					o.Prediction.Confidence, ok[1] = math.Round(float64(d[i])*1e6)/1e6, true
				}
			}
		case SeedInputLength:
			if d, k := t.Data.([]int64); k && i < len(d) {
				o.Prediction.InputLength, ok[2] = int(d[i]), true
			}
		case SeedMessage:
			if d, k := t.Data.([]string); k && i < len(d) {
				o.Message, ok[3] = d[i], true
			}
		}
	}
	for j, name := range []string{SeedClass, SeedConfidence, SeedInputLength, SeedMessage} {
		if !ok[j] {
			return Output{}, fmt.Errorf("the model's answer has no %s output for item %d (not seed-shaped)", name, i)
		}
	}
	return o, nil
}

// IsSeedShaped reports whether md has the seed model's input and outputs, so that
// POST /process and a worker's POST /predict can call it.
func IsSeedShaped(md *Metadata) bool {
	want := SeedMetadata()
	if len(md.Inputs) != 1 || md.Inputs[0].Name != SeedInput || md.Inputs[0].Datatype != BYTES {
		return false
	}
	for _, o := range want.Outputs {
		if md.Output(o.Name) == nil {
			return false
		}
	}
	return true
}
