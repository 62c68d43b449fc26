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

// SeedConfig configures the seed lab's model.
type SeedConfig struct {
	// Seed is mixed with a hash of each input; the same seed and input always give
	// the same prediction, so a redelivered request gets the same answer.
	Seed uint64
	// Latency is a simulated service time per batch. Zero means none.
	Latency time.Duration
}

// Seed is the seed lab's "SimpleMlModel" ported to Go: a class from [Classes] and a
// confidence in [0.70, 0.99] rounded to two decimals. Unlike the original it is
// deterministic per input. The class still does not depend on what the input means.
type Seed struct{ cfg SeedConfig }

// NewSeed returns the seed model.
func NewSeed(cfg SeedConfig) *Seed { return &Seed{cfg: cfg} }

// Info implements [Predictor].
func (m *Seed) Info() Info { return Info{Name: "seed-animals", Version: "1.0.0"} }

// Predict implements [Predictor]. With a Latency it waits that long (once per batch)
// or until ctx is done.
func (m *Seed) Predict(ctx context.Context, in []Input) ([]Output, error) {
	if m.cfg.Latency > 0 {
		t := time.NewTimer(m.cfg.Latency)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	} else if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]Output, len(in))
	for i, x := range in {
		out[i] = m.predictOne(x.Data)
	}
	return out, nil
}

func (m *Seed) predictOne(data string) Output {
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
