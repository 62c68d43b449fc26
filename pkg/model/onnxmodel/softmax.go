package onnxmodel

import (
	"fmt"
	"math"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/advancedclimatesystems/gonnx/ops"
	"github.com/advancedclimatesystems/gonnx/ops/opset13"
	"gorgonia.org/tensor"
)

// getOperator is gonnx's opset-13 registry with Softmax replaced by [softmax].
func getOperator(opType string) (ops.Operator, error) {
	if opType == "Softmax" {
		return newSoftmax(), nil
	}
	return opset13.GetOperator(opType)
}

// softmax is ONNX opset 13's Softmax (along one axis, default -1), replacing
// gonnx's. gonnx calls gorgonia's kernel (tensor v0.9.24), which starts every
// row's maximum from the tensor's first element instead of the row's own: a row
// can overflow or underflow to NaN, and in a batch one request's values can turn
// another request's probabilities into NaN. It also starts a goroutine per row.
// This one subtracts each row's own maximum and sums in float64.
type softmax struct{ axis int }

func newSoftmax() *softmax { return &softmax{axis: -1} }

// String implements ops.Operator.
func (s *softmax) String() string { return "softmax operator" }

// Init implements ops.Operator: the only attribute is axis.
func (s *softmax) Init(n *onnx.NodeProto) error {
	for _, a := range n.GetAttribute() {
		if a.GetName() != "axis" {
			return ops.ErrInvalidAttribute(a.GetName(), s)
		}
		s.axis = int(a.GetI())
	}
	return nil
}

// GetMinInputs implements ops.Operator.
func (s *softmax) GetMinInputs() int { return 1 }

// GetMaxInputs implements ops.Operator.
func (s *softmax) GetMaxInputs() int { return 1 }

// GetInputTypeConstraints implements ops.Operator.
func (s *softmax) GetInputTypeConstraints() [][]tensor.Dtype {
	return [][]tensor.Dtype{{tensor.Float32, tensor.Float64}}
}

// ValidateInputs implements ops.Operator.
func (s *softmax) ValidateInputs(inputs []tensor.Tensor) ([]tensor.Tensor, error) {
	return ops.ValidateInputs(s, inputs)
}

// Apply implements ops.Operator.
func (s *softmax) Apply(inputs []tensor.Tensor) ([]tensor.Tensor, error) {
	x := inputs[0]
	if v, ok := x.(tensor.View); ok && v.IsMaterializable() {
		x = v.Materialize()
	}
	shape := x.Shape().Clone()
	rank := len(shape)
	if s.axis < -rank || s.axis >= rank {
		return nil, ops.ErrAxisOutOfRange(-rank, rank, s.axis)
	}
	axis := s.axis
	if axis < 0 {
		axis += rank
	}
	outer, inner := 1, 1
	for _, d := range shape[:axis] {
		outer *= d
	}
	for _, d := range shape[axis+1:] {
		inner *= d
	}
	n := outer * shape[axis] * inner
	var out any
	switch d := x.Data().(type) {
	case []float32:
		out = softmaxOf(d[:n], outer, shape[axis], inner)
	case []float64:
		out = softmaxOf(d[:n], outer, shape[axis], inner)
	default:
		return nil, fmt.Errorf("%s: unsupported input type %T", s, d)
	}
	return []tensor.Tensor{tensor.New(tensor.WithShape(shape...), tensor.WithBacking(out))}, nil
}

// softmaxOf computes the softmax of x, seen as [outer, dim, inner], along dim.
func softmaxOf[T float32 | float64](x []T, outer, dim, inner int) []T {
	y := make([]T, len(x))
	for o := range outer {
		for i := range inner {
			base := o*dim*inner + i
			m := x[base]
			for j := 1; j < dim; j++ {
				m = max(m, x[base+j*inner])
			}
			sum := 0.0
			for j := range dim {
				e := math.Exp(float64(x[base+j*inner] - m))
				y[base+j*inner] = T(e)
				sum += e
			}
			for j := range dim {
				k := base + j*inner
				y[k] = T(float64(y[k]) / sum)
			}
		}
	}
	return y
}
