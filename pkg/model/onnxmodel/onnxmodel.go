// Package onnxmodel is warren's "onnx" backend: it runs ONNX graphs in pure Go
// (no cgo) with github.com/advancedclimatesystems/gonnx v1.1.0 (MPL-2.0).
//
// gonnx runs opset-13 graphs made of its 50 operators (see [SupportedOperators]);
// the backend replaces one of them, Softmax, with its own (gorgonia's kernel lets
// one row's values turn another's into NaN).
// [Load] checks a model against both before it is used and names what does not
// fit: the opset, each unsupported operator, an unreadable file, a graph input or
// output of a type v2 cannot carry.
//
// # Concurrency
//
// gonnx does not document whether a *gonnx.Model may run concurrently, and its Conv
// reshapes shared initializers in place, so a [Model] holds a pool of
// [Config.Instances] independent gonnx models, each parsed from the file on its
// own. A Predict call takes one for its whole batch and waits for one, up to its
// context, when all are busy.
//
// # Batching
//
// When every input's and output's first dimension is dynamic (-1 in the
// metadata), Predict concatenates the batch's requests along that dimension, runs
// the graph once and splits every output back by the requests' row counts.
// Requests whose other dimensions differ run in separate groups; a model with a
// fixed (or undeclared) first dimension runs each request on its own. A group that
// fails, or whose outputs do not have one row per input row, is re-run one request
// at a time, so a request the graph cannot compute fails alone, in its
// [model.Response].
//
// gonnx computes in the graph's element types; the digits model (float32) matches
// scikit-learn's float64 probabilities within 2e-7.
package onnxmodel

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/advancedclimatesystems/gonnx"
	"github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"

	"github.com/warren-farm/warren/pkg/model"
)

// Platform is the v2 platform name of models this backend serves.
const Platform = "onnx"

// Config configures one ONNX model.
type Config struct {
	// Path is the model file (a version directory's model.onnx).
	Path string
	// Instances is how many Predict calls may compute at once; each has its own
	// copy of the graph and its weights. Zero means 1.
	Instances int
}

// Model is a loaded ONNX model. It implements [model.Predictor] and is safe for
// concurrent use.
type Model struct {
	path      string
	md        model.Metadata
	batchable bool
	pool      chan *gonnx.Model
	closed    chan struct{}
	closeOnce sync.Once
}

var _ model.Predictor = (*Model)(nil)

// ErrClosed is returned by Predict after Close. It wraps [model.ErrUnavailable].
var ErrClosed = fmt.Errorf("%w: the onnx model is closed", model.ErrUnavailable)

// Load reads, checks and instantiates the model at cfg.Path.
func Load(cfg Config) (*Model, error) {
	if cfg.Instances < 0 {
		return nil, fmt.Errorf("onnx model %s: instances must be 0 or more, not %d", cfg.Path, cfg.Instances)
	}
	n := cfg.Instances
	if n == 0 {
		n = 1
	}
	data, err := os.ReadFile(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("onnx model: %w", err)
	}
	mp := &onnx.ModelProto{}
	if err := proto.Unmarshal(data, mp); err != nil {
		return nil, fmt.Errorf("%s: not an ONNX model: %w", cfg.Path, err)
	}
	if err := check(mp); err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	md, err := metadata(mp.GetGraph())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	m := &Model{
		path:      cfg.Path,
		md:        md,
		batchable: batchable(&md),
		pool:      make(chan *gonnx.Model, n),
		closed:    make(chan struct{}),
	}
	for range n {
		// Each instance parses the bytes itself, so no two share a tensor.
		g, err := gonnx.NewModelFromBytes(data)
		if err != nil {
			return nil, fmt.Errorf("%s: gonnx: %w", cfg.Path, err)
		}
		g.GetOperator = getOperator
		m.pool <- g
	}
	return m, nil
}

// Metadata implements [model.Predictor]: the graph's inputs (initializers
// excluded) and outputs, with dynamic dimensions as -1. Name and Versions are
// left for the model repository to fill.
func (m *Model) Metadata() model.Metadata {
	return model.Metadata{
		Platform: m.md.Platform,
		Inputs:   cloneSpecs(m.md.Inputs),
		Outputs:  cloneSpecs(m.md.Outputs),
	}
}

// Close waits for the Predict calls in flight to finish and releases the model;
// Predict calls after it fail with [ErrClosed]. It always returns nil.
func (m *Model) Close() error {
	m.closeOnce.Do(func() {
		close(m.closed)
		for range cap(m.pool) {
			<-m.pool
		}
	})
	return nil
}

// acquire takes an instance from the pool, waiting until one is free, ctx ends or
// the model is closed.
func (m *Model) acquire(ctx context.Context) (*gonnx.Model, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case g := <-m.pool:
		select {
		case <-m.closed:
			m.pool <- g
			return nil, ErrClosed
		default:
			return g, nil
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-m.closed:
		return nil, ErrClosed
	}
}

func (m *Model) release(g *gonnx.Model) { m.pool <- g }

func cloneSpecs(specs []model.TensorSpec) []model.TensorSpec {
	out := make([]model.TensorSpec, len(specs))
	for i, s := range specs {
		out[i] = s
		if s.Shape != nil {
			out[i].Shape = append([]int64(nil), s.Shape...)
		}
	}
	return out
}
