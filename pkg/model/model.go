// Package model defines warren's predictor contract: named, typed tensors in and
// out, mapping one to one onto the Open Inference Protocol (v2), and the backends'
// common interface, [Predictor].
//
// A [Predictor] takes a batch of [Request]s and returns one [Response] per request,
// in order. Each request carries its own input tensors (whose first dimension may
// itself be a batch, when the model's metadata says so with a -1). Workers call
// Predict with one request today; the dynamic batcher calls it with several.
//
// Implementations must be safe for concurrent use and honour the context: when its
// deadline passes, Predict returns promptly with the context's error.
//
// Backends live in sub-packages or beside the worker (seed here, onnx, http and
// exec in their own packages); the model repository (pkg/repository) loads them from
// config.yaml files and names them.
package model

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// TensorSpec describes one input or output of a model: name, datatype and shape,
// where -1 marks a dimension of any size (typically the batch dimension).
type TensorSpec struct {
	Name     string   `json:"name"`
	Datatype Datatype `json:"datatype"`
	Shape    []int64  `json:"shape"`
}

// Metadata is a model's v2 metadata. Backends fill Platform, Inputs and Outputs;
// the model repository sets Name and Versions.
type Metadata struct {
	Name     string       `json:"name"`
	Versions []string     `json:"versions,omitempty"`
	Platform string       `json:"platform"`
	Inputs   []TensorSpec `json:"inputs"`
	Outputs  []TensorSpec `json:"outputs"`
}

// Request is one inference request: input tensors, the outputs wanted, and the
// request's v2 parameters.
type Request struct {
	// ID is the request id, for logs and errors; it never changes the result.
	ID     string
	Inputs []Tensor
	// Outputs names the outputs wanted, in order; empty means all of the model's.
	Outputs []string
	// Parameters are the request's v2 parameters; nil when none.
	Parameters map[string]any
}

// Input returns the input tensor called name, or nil.
func (r *Request) Input(name string) *Tensor {
	for i := range r.Inputs {
		if r.Inputs[i].Name == name {
			return &r.Inputs[i]
		}
	}
	return nil
}

// Response is the answer to one Request: its output tensors, or Err when this item
// failed while others of the batch did not.
type Response struct {
	Outputs []Tensor
	Err     error
}

// Predictor is the contract every backend implements.
type Predictor interface {
	// Metadata describes the model's inputs and outputs. It does not change while
	// the predictor is loaded.
	Metadata() Metadata
	// Predict answers a batch: exactly len(batch) responses, in order, or an error
	// that applies to the whole batch.
	Predict(ctx context.Context, batch []*Request) ([]*Response, error)
}

// Errors a backend returns (test with errors.Is; they are wrapped).
var (
	// ErrBadInput marks input the model can never handle: retrying is pointless and
	// the caller gets a 400. [InputError] wraps it.
	ErrBadInput = errors.New("bad model input")
	// ErrUnavailable marks a model that cannot answer now (a remote server is down, a
	// child process is restarting): the caller gets a 502 and a job is retried.
	ErrUnavailable = errors.New("model unavailable")
	// ErrTimeout marks a model that gave up before the request's deadline (a remote
	// server's own timeout): the caller gets a 504. A model stopped by the request's
	// deadline returns the context's error instead.
	ErrTimeout = errors.New("model timed out")
)

// InputError is a request that does not fit the model: it names the tensor (empty
// for the request as a whole) and wraps [ErrBadInput].
type InputError struct {
	Tensor string
	Msg    string
}

func (e *InputError) Error() string {
	if e.Tensor == "" {
		return e.Msg
	}
	return fmt.Sprintf("input %q: %s", e.Tensor, e.Msg)
}

func (e *InputError) Unwrap() error { return ErrBadInput }

// BadInput returns an [InputError] for tensor with a formatted message.
func BadInput(tensor, format string, args ...any) error {
	return &InputError{Tensor: tensor, Msg: fmt.Sprintf(format, args...)}
}

// Validate checks a request against the metadata before anything is published or
// computed: every declared input present once and nothing else, each with the
// declared datatype, the declared rank, the declared size in every fixed
// dimension, and as many data elements as its shape says; requested outputs must
// exist. The error is an [InputError] naming the first offending tensor.
func (m *Metadata) Validate(r *Request) error {
	seen := make(map[string]bool, len(r.Inputs))
	for i := range r.Inputs {
		t := &r.Inputs[i]
		if seen[t.Name] {
			return BadInput(t.Name, "given more than once")
		}
		seen[t.Name] = true
		spec := m.input(t.Name)
		if spec == nil {
			return BadInput(t.Name, "the model has no such input (its inputs: %s)", names(m.Inputs))
		}
		if t.Datatype != spec.Datatype {
			return BadInput(t.Name, "datatype %s, the model expects %s", t.Datatype, spec.Datatype)
		}
		if err := spec.matchShape(t.Shape); err != nil {
			return BadInput(t.Name, "%s", err)
		}
		if err := t.Check(); err != nil {
			return &InputError{Tensor: t.Name, Msg: strings.TrimPrefix(err.Error(), fmt.Sprintf("tensor %q: ", t.Name))}
		}
	}
	for _, spec := range m.Inputs {
		if !seen[spec.Name] {
			return BadInput(spec.Name, "missing: the model needs it (%s %v)", spec.Datatype, spec.Shape)
		}
	}
	for _, o := range r.Outputs {
		if m.output(o) == nil {
			return &InputError{Msg: fmt.Sprintf("requested output %q: the model has no such output (its outputs: %s)", o, names(m.Outputs))}
		}
	}
	return nil
}

// matchShape checks a concrete shape against the spec's (-1 matches any size).
func (s *TensorSpec) matchShape(shape []int64) error {
	if len(shape) != len(s.Shape) {
		return fmt.Errorf("shape %v has %d dimensions, the model expects %d (%v)", shape, len(shape), len(s.Shape), s.Shape)
	}
	for i, d := range s.Shape {
		if d >= 0 && shape[i] != d {
			return fmt.Errorf("shape %v: dimension %d must be %d (the model expects %v)", shape, i, d, s.Shape)
		}
	}
	return nil
}

func (m *Metadata) input(name string) *TensorSpec  { return find(m.Inputs, name) }
func (m *Metadata) output(name string) *TensorSpec { return find(m.Outputs, name) }

// Output returns the spec of the output called name, or nil.
func (m *Metadata) Output(name string) *TensorSpec { return m.output(name) }

func find(specs []TensorSpec, name string) *TensorSpec {
	for i := range specs {
		if specs[i].Name == name {
			return &specs[i]
		}
	}
	return nil
}

func names(specs []TensorSpec) string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Name
	}
	return strings.Join(out, ", ")
}

// Select returns the outputs a request asked for, in the order it asked, or all of
// them when it named none. A missing output is an error: the backend broke its
// metadata.
func Select(outputs []Tensor, wanted []string) ([]Tensor, error) {
	if len(wanted) == 0 {
		return outputs, nil
	}
	out := make([]Tensor, 0, len(wanted))
	for _, w := range wanted {
		found := false
		for i := range outputs {
			if outputs[i].Name == w {
				out = append(out, outputs[i])
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("the model produced no output %q", w)
		}
	}
	return out, nil
}

// CheckResponses verifies a backend's answer to a batch: one response per request,
// and every output tensor well formed. A backend that breaks this gets a clear
// model error instead of a hang or a crash further on.
func CheckResponses(batch []*Request, resps []*Response) error {
	if len(resps) != len(batch) {
		return fmt.Errorf("the model returned %d responses for a batch of %d", len(resps), len(batch))
	}
	for i, r := range resps {
		if r == nil {
			return fmt.Errorf("the model returned no response for item %d", i)
		}
		if r.Err != nil {
			continue
		}
		for j := range r.Outputs {
			if err := r.Outputs[j].Check(); err != nil {
				return fmt.Errorf("the model's output: %w", err)
			}
		}
	}
	return nil
}

// WarmupRequest builds a request that fits md: zeros (or "warmup" strings, or
// false) in every input, with each variable dimension set to 1. Workers run one
// before they report ready.
func WarmupRequest(md *Metadata) *Request {
	r := &Request{ID: "warmup"}
	for _, s := range md.Inputs {
		shape := make([]int64, len(s.Shape))
		n := 1
		for i, d := range s.Shape {
			if d < 0 {
				d = 1
			}
			shape[i] = d
			n *= int(d)
		}
		r.Inputs = append(r.Inputs, Tensor{Name: s.Name, Datatype: s.Datatype, Shape: shape, Data: zeros(s.Datatype, n)})
	}
	return r
}

func zeros(d Datatype, n int) any {
	switch d {
	case BOOL:
		return make([]bool, n)
	case UINT8:
		return make([]uint8, n)
	case UINT16:
		return make([]uint16, n)
	case UINT32:
		return make([]uint32, n)
	case UINT64:
		return make([]uint64, n)
	case INT8:
		return make([]int8, n)
	case INT16:
		return make([]int16, n)
	case INT32:
		return make([]int32, n)
	case INT64:
		return make([]int64, n)
	case FP16, FP32:
		return make([]float32, n)
	case FP64:
		return make([]float64, n)
	case BYTES:
		s := make([]string, n)
		for i := range s {
			s[i] = "warmup"
		}
		return s
	}
	return nil
}

// Zeros returns a zero-filled Data slice of n elements for datatype d (nil for an
// unknown datatype).
func Zeros(d Datatype, n int) any { return zeros(d, n) }

// CheckSpecs checks tensor specs a backend declares or fetches: named, unique, a
// known datatype, and dimensions of -1 or more. key prefixes the error.
func CheckSpecs(key string, specs []TensorSpec) error {
	seen := make(map[string]bool, len(specs))
	for _, s := range specs {
		switch {
		case s.Name == "":
			return fmt.Errorf("%s: a tensor has no name", key)
		case seen[s.Name]:
			return fmt.Errorf("%s: tensor %q is listed twice", key, s.Name)
		case !s.Datatype.Valid():
			return fmt.Errorf("%s: tensor %q: unknown datatype %q", key, s.Name, s.Datatype)
		case s.Shape == nil:
			return fmt.Errorf("%s: tensor %q has no shape", key, s.Name)
		}
		seen[s.Name] = true
		for _, d := range s.Shape {
			if d < -1 {
				return fmt.Errorf("%s: tensor %q: shape %v: a dimension is a size or -1", key, s.Name, s.Shape)
			}
		}
	}
	return nil
}
