package onnxmodel

import (
	"fmt"
	"reflect"

	"gorgonia.org/tensor"

	"github.com/warren-farm/warren/pkg/model"
)

// toDense wraps a checked model tensor's data, without copying, as a gorgonia
// tensor (gonnx's operators clone or allocate; they do not write their inputs).
func toDense(shape []int64, data any) tensor.Tensor {
	if len(shape) == 0 {
		return tensor.New(tensor.FromScalar(reflect.ValueOf(data).Index(0).Interface()))
	}
	dims := make([]int, len(shape))
	for i, d := range shape {
		dims[i] = int(d)
	}
	return tensor.New(tensor.WithShape(dims...), tensor.WithBacking(data))
}

// fromDense copies a graph output into a model tensor of the declared datatype.
func fromDense(spec model.TensorSpec, t tensor.Tensor) (model.Tensor, error) {
	out := model.Tensor{Name: spec.Name, Datatype: spec.Datatype}
	if t == nil {
		return out, fmt.Errorf("output %q: the graph produced no tensor", spec.Name)
	}
	if v, ok := t.(tensor.View); ok && v.IsMaterializable() {
		t = v.Materialize()
	}
	shape := t.Shape()
	out.Shape = make([]int64, len(shape))
	for i, d := range shape {
		out.Shape[i] = int64(d)
	}
	if shape.IsScalar() {
		out.Shape = []int64{}
	}
	n, err := model.NumElements(out.Shape)
	if err != nil {
		return out, fmt.Errorf("output %q: %w", spec.Name, err)
	}
	data, ok := cloneData(t.Data(), n)
	if !ok {
		return out, fmt.Errorf("output %q: gonnx returned %d elements of %T for shape %v", spec.Name, reflect.ValueOf(t.Data()).Len(), t.Data(), out.Shape)
	}
	out.Data = data
	if err := out.Check(); err != nil {
		return out, fmt.Errorf("output %q: the graph computed %s data but declares %s: %w", spec.Name, t.Dtype(), spec.Datatype, err)
	}
	return out, nil
}

// cloneData copies the first n elements of a gorgonia tensor's data (a slice, or
// a scalar for a rank-0 tensor) into a new slice.
func cloneData(data any, n int) (any, bool) {
	switch d := data.(type) {
	case []float32:
		return clone(d, n)
	case []float64:
		return clone(d, n)
	case []int64:
		return clone(d, n)
	case []int32:
		return clone(d, n)
	case []int16:
		return clone(d, n)
	case []int8:
		return clone(d, n)
	case []uint64:
		return clone(d, n)
	case []uint32:
		return clone(d, n)
	case []uint16:
		return clone(d, n)
	case []uint8:
		return clone(d, n)
	case []bool:
		return clone(d, n)
	case []string:
		return clone(d, n)
	}
	v := reflect.ValueOf(data)
	if !v.IsValid() || v.Kind() == reflect.Slice || n != 1 {
		return nil, false
	}
	// A scalar: make a one-element slice of its type.
	s := reflect.MakeSlice(reflect.SliceOf(v.Type()), 1, 1)
	s.Index(0).Set(v)
	return s.Interface(), true
}

func clone[T any](s []T, n int) (any, bool) {
	if len(s) < n {
		return nil, false
	}
	return append([]T(nil), s[:n]...), true
}
