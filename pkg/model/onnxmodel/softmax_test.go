package onnxmodel

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"gorgonia.org/tensor"

	"github.com/warren-farm/warren/pkg/model"
)

// refSoftmax is the textbook softmax of each row (along the last axis), in float64.
func refSoftmax(x []float64, dim int) []float64 {
	y := make([]float64, len(x))
	for r := 0; r < len(x); r += dim {
		m := math.Inf(-1)
		for _, v := range x[r : r+dim] {
			m = math.Max(m, v)
		}
		sum := 0.0
		for j, v := range x[r : r+dim] {
			y[r+j] = math.Exp(v - m)
			sum += y[r+j]
		}
		for j := range dim {
			y[r+j] /= sum
		}
	}
	return y
}

func softmaxGraph(axis int64) graph {
	return graph{
		nodes:   []*onnx.NodeProto{node("Softmax", []string{"x"}, []string{"y"}, intAttr("axis", axis))},
		inputs:  []*onnx.ValueInfoProto{value("x", tFloat, "batch", 2)},
		outputs: []*onnx.ValueInfoProto{value("y", tFloat, "batch", 2)},
	}
}

// TestSoftmaxLargeLogits: rows whose values are far apart, from each other or from
// the tensor's first element, stay finite and correct (gorgonia's kernel returns
// NaN for each of these), and in a batch one request cannot spoil another's.
func TestSoftmaxLargeLogits(t *testing.T) {
	m := load(t, softmaxGraph(1), 1)
	for _, in := range [][]float32{
		{0, 0, 100, 0},
		{100, 0, 0, 0},
		{-1000, 1000, 1000, -1000},
		{3, 1, -2, 0.5},
	} {
		r := predict(t, m, &model.Request{Inputs: []model.Tensor{floats([]int64{2, 2}, in...)}})
		got := r[0].Outputs[0].Data.([]float32)
		x := make([]float64, len(in))
		for i, v := range in {
			x[i] = float64(v)
		}
		want := refSoftmax(x, 2)
		for i := range got {
			if d := math.Abs(float64(got[i]) - want[i]); !(d <= 1e-7) {
				t.Errorf("softmax(%v) = %v, want %v", in, got, want)
				break
			}
		}
	}
	big := &model.Request{Inputs: []model.Tensor{floats([]int64{1, 2}, 200, 0)}}
	small := &model.Request{Inputs: []model.Tensor{floats([]int64{1, 2}, 1, 0)}}
	r := predict(t, m, big, small)
	if got := show(r[1].Outputs[0]); got != "[0.7310586 0.26894143]" {
		t.Errorf("second request of the batch: %s, want [0.7310586 0.26894143]", got)
	}
}

// TestSoftmaxAxes compares every axis of a rank-3 tensor, float32 and float64,
// with the reference.
func TestSoftmaxAxes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	shape := []int{2, 3, 4}
	x := make([]float64, 24)
	for i := range x {
		x[i] = float64(float32(rng.NormFloat64() * 10)) // exact in float32 too
	}
	for axis := -3; axis < 3; axis++ {
		a := axis
		if a < 0 {
			a += 3
		}
		// The reference works on the last axis: move axis a there, compute, move back.
		perm := []int{0, 1, 2}
		perm[a], perm[2] = perm[2], perm[a]
		xt := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]float64(nil), x...)))
		if err := xt.T(perm...); err != nil {
			t.Fatal(err)
		}
		xt.Transpose()
		ref := tensor.New(tensor.WithShape(xt.Shape()...), tensor.WithBacking(refSoftmax(xt.Data().([]float64), xt.Shape()[2])))
		if err := ref.T(perm...); err != nil {
			t.Fatal(err)
		}
		ref.Transpose()
		want := ref.Data().([]float64)

		s := newSoftmax()
		s.axis = axis
		x32 := make([]float32, len(x))
		for i, v := range x {
			x32[i] = float32(v)
		}
		for _, in := range []tensor.Tensor{
			tensor.New(tensor.WithShape(shape...), tensor.WithBacking(x)),
			tensor.New(tensor.WithShape(shape...), tensor.WithBacking(x32)),
		} {
			out, err := s.Apply([]tensor.Tensor{in})
			if err != nil {
				t.Fatal(err)
			}
			if !out[0].Shape().Eq(in.Shape()) {
				t.Fatalf("axis %d: shape %v", axis, out[0].Shape())
			}
			tol := 1e-12
			got := make([]float64, len(want))
			switch d := out[0].Data().(type) {
			case []float64:
				copy(got, d)
			case []float32:
				tol = 1e-6
				for i, v := range d {
					got[i] = float64(v)
				}
			}
			for i := range want {
				if d := math.Abs(got[i] - want[i]); !(d <= tol) {
					t.Fatalf("axis %d %s: element %d = %g, want %g", axis, in.Dtype(), i, got[i], want[i])
				}
			}
		}
	}
	s := newSoftmax()
	s.axis = 3
	if _, err := s.Apply([]tensor.Tensor{tensor.New(tensor.WithShape(shape...), tensor.WithBacking(x))}); err == nil {
		t.Error("axis 3 of a rank-3 tensor accepted")
	}
}
