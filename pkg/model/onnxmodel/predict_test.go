package onnxmodel

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/advancedclimatesystems/gonnx"
	"github.com/advancedclimatesystems/gonnx/onnx"

	"github.com/warren-farm/warren/pkg/model"
)

func load(t *testing.T, g graph, instances int) *Model {
	t.Helper()
	m, err := Load(Config{Path: g.write(t), Instances: instances})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// show prints a tensor's data with -0 as 0 (gonnx's Relu yields -0 for negative
// inputs; they compare equal).
func show(t model.Tensor) string {
	if d, ok := t.Data.([]float32); ok {
		c := make([]float32, len(d))
		for i, v := range d {
			c[i] = v + 0
		}
		return fmt.Sprint(c)
	}
	return fmt.Sprint(t.Data)
}

func floats(shape []int64, vals ...float32) model.Tensor {
	return model.Tensor{Name: "x", Datatype: model.FP32, Shape: shape, Data: vals}
}

func predict(t *testing.T, m *Model, batch ...*model.Request) []*model.Response {
	t.Helper()
	resps, err := m.Predict(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	if err := model.CheckResponses(batch, resps); err != nil {
		t.Fatal(err)
	}
	for i, r := range resps {
		if r.Err != nil {
			t.Fatalf("item %d: %v", i, r.Err)
		}
	}
	return resps
}

// twoOutputs is x[batch,n] -> relu = Relu(x), neg = Neg-by-Sub(0 - x).
func twoOutputs() graph {
	return graph{
		nodes: []*onnx.NodeProto{
			node("Relu", []string{"x"}, []string{"relu"}),
			node("Sub", []string{"zero", "x"}, []string{"neg"}),
		},
		inputs:  []*onnx.ValueInfoProto{value("x", tFloat, "batch", "n")},
		outputs: []*onnx.ValueInfoProto{value("relu", tFloat, "batch", "n"), value("neg", tFloat, "batch", "n")},
		inits:   []*onnx.TensorProto{floatInit("zero", []int64{1}, 0)},
	}
}

func TestOutputsSelection(t *testing.T) {
	m := load(t, twoOutputs(), 1)
	in := []model.Tensor{floats([]int64{1, 3}, -1, 2, -3)}
	resps := predict(t, m,
		&model.Request{Inputs: in},
		&model.Request{Inputs: in, Outputs: []string{"neg"}},
		&model.Request{Inputs: in, Outputs: []string{"neg", "relu"}},
	)
	names := func(ts []model.Tensor) string {
		s := ""
		for _, o := range ts {
			s += fmt.Sprintf("%s=%s ", o.Name, show(o))
		}
		return s
	}
	for i, want := range []string{
		"relu=[0 2 0] neg=[1 -2 3] ",
		"neg=[1 -2 3] ",
		"neg=[1 -2 3] relu=[0 2 0] ",
	} {
		if got := names(resps[i].Outputs); got != want {
			t.Errorf("request %d: %s, want %s", i, got, want)
		}
	}
	resps, err := m.Predict(context.Background(), []*model.Request{{Inputs: in, Outputs: []string{"nope"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !isBadInput(resps[0].Err) {
		t.Errorf("unknown output: %v, want a bad-input error", resps[0].Err)
	}
}

// TestGroups: requests whose trailing dimensions differ run in separate groups;
// each answer still matches the request's own.
func TestGroups(t *testing.T) {
	m := load(t, twoOutputs(), 1)
	a := &model.Request{ID: "a", Inputs: []model.Tensor{floats([]int64{1, 3}, -1, 2, -3)}}
	b := &model.Request{ID: "b", Inputs: []model.Tensor{floats([]int64{1, 2}, 5, -6)}}
	c := &model.Request{ID: "c", Inputs: []model.Tensor{floats([]int64{2, 3}, 7, -8, 9, -10, 11, -12)}}
	d := &model.Request{ID: "d", Inputs: []model.Tensor{floats([]int64{0, 2})}}
	batch := []*model.Request{a, b, c, d}
	if got := fmt.Sprint(m.plan(batch, []int{0, 1, 2, 3})); got != "[[0 2] [1 3]]" {
		t.Fatalf("plan %s, want [[0 2] [1 3]]", got)
	}
	resps := predict(t, m, batch...)
	want := []string{
		"[1 3] [0 2 0] [1 -2 3]",
		"[1 2] [5 0] [-5 6]",
		"[2 3] [7 0 9 0 11 0] [-7 8 -9 10 -11 12]",
		"[0 2] [] []",
	}
	for i, r := range resps {
		got := fmt.Sprint(r.Outputs[0].Shape, " ", show(r.Outputs[0]), " ", show(r.Outputs[1]))
		if got != want[i] {
			t.Errorf("request %s: %s, want %s", batch[i].ID, got, want[i])
		}
	}
}

// TestUnbatchable: a model with a fixed first dimension runs each request alone.
func TestUnbatchable(t *testing.T) {
	g := graph{
		nodes: []*onnx.NodeProto{node("Transpose", []string{"x"}, []string{"t"},
			&onnx.AttributeProto{Name: "perm", Type: onnx.AttributeProto_INTS, Ints: []int64{1, 0}})},
		inputs:  []*onnx.ValueInfoProto{value("x", tFloat, "batch", 2)},
		outputs: []*onnx.ValueInfoProto{value("t", tFloat, 2, "batch")},
	}
	m := load(t, g, 1)
	if m.batchable {
		t.Fatal("batchable with a fixed output dimension 0")
	}
	batch := []*model.Request{
		{Inputs: []model.Tensor{floats([]int64{1, 2}, 1, 2)}},
		{Inputs: []model.Tensor{floats([]int64{2, 2}, 1, 2, 3, 4)}},
	}
	if got := fmt.Sprint(m.plan(batch, []int{0, 1})); got != "[[0] [1]]" {
		t.Fatalf("plan %s", got)
	}
	resps := predict(t, m, batch...)
	for i, want := range []string{"[2 1] [1 2]", "[2 2] [1 3 2 4]"} {
		if got := fmt.Sprint(resps[i].Outputs[0].Shape, " ", show(resps[i].Outputs[0])); got != want {
			t.Errorf("request %d: %s, want %s", i, got, want)
		}
	}
}

// TestDoubles runs an FP64 graph with an initializer listed among its inputs.
func TestDoubles(t *testing.T) {
	g := graph{
		nodes:   []*onnx.NodeProto{node("Add", []string{"a", "w"}, []string{"sum"})},
		inputs:  []*onnx.ValueInfoProto{value("a", tDouble, "n", 2), value("w", tDouble, 2)},
		outputs: []*onnx.ValueInfoProto{value("sum", tDouble, "n", 2)},
		inits:   []*onnx.TensorProto{{Name: "w", Dims: []int64{2}, DataType: int32(tDouble), DoubleData: []float64{0.5, math.Pi}}},
	}
	m := load(t, g, 1)
	r1 := &model.Request{Inputs: []model.Tensor{{Name: "a", Datatype: model.FP64, Shape: []int64{1, 2}, Data: []float64{1, 2}}}}
	r2 := &model.Request{Inputs: []model.Tensor{{Name: "a", Datatype: model.FP64, Shape: []int64{2, 2}, Data: []float64{3, 4, 5, 6}}}}
	resps := predict(t, m, r1, r2)
	for i, want := range [][]float64{{1.5, 2 + math.Pi}, {3.5, 4 + math.Pi, 5.5, 6 + math.Pi}} {
		if got := resps[i].Outputs[0].Data.([]float64); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("request %d: %v, want %v", i, got, want)
		}
	}
}

// TestCancelWhileBusy: with every instance taken, Predict waits and returns the
// context's error when it ends; once an instance is free it answers again.
func TestCancelWhileBusy(t *testing.T) {
	m := load(t, reluGraph(), 2)
	var held []*gonnx.Model
	for range 2 {
		g, err := m.acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, g)
	}
	req := []*model.Request{{Inputs: []model.Tensor{floats([]int64{1, 3}, -1, 0, 1)}}}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := m.Predict(ctx, req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want context.DeadlineExceeded", err)
	}
	if waited := time.Since(start); waited < 40*time.Millisecond || waited > 5*time.Second {
		t.Errorf("returned after %v; want about 50ms", waited)
	}

	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := m.Predict(ctx, req); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("Predict returned %v while every instance was busy", err)
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}

	if _, err := m.Predict(ctx, req); !errors.Is(err, context.Canceled) {
		t.Fatalf("done ctx: err %v, want context.Canceled", err)
	}

	m.release(held[0])
	resps := predict(t, m, req...)
	if show(resps[0].Outputs[0]) != "[0 0 1]" {
		t.Errorf("got %v", resps[0].Outputs[0].Data)
	}
	m.release(held[1])
}

// TestClose: Close waits for a Predict in flight; later calls fail with ErrClosed.
func TestClose(t *testing.T) {
	m, err := Load(Config{Path: reluGraph().write(t), Instances: 1})
	if err != nil {
		t.Fatal(err)
	}
	g, err := m.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { m.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while an instance was in use")
	case <-time.After(20 * time.Millisecond):
	}
	m.release(g)
	<-closed
	req := []*model.Request{{Inputs: []model.Tensor{floats([]int64{1, 3}, -1, 0, 1)}}}
	_, err = m.Predict(context.Background(), req)
	if !errors.Is(err, ErrClosed) || !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("after Close: %v, want ErrClosed (model.ErrUnavailable)", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRunError: a request the graph cannot compute (here a MatMul whose inner
// dimensions disagree) fails alone, in its Response; the others are answered.
func TestRunError(t *testing.T) {
	g := graph{
		nodes:   []*onnx.NodeProto{node("MatMul", []string{"x", "w"}, []string{"y"})},
		inputs:  []*onnx.ValueInfoProto{value("x", tFloat, "batch", "n")},
		outputs: []*onnx.ValueInfoProto{value("y", tFloat, "batch", 1)},
		inits:   []*onnx.TensorProto{floatInit("w", []int64{3, 1}, 1, 10, 100)},
	}
	m := load(t, g, 1)
	ok1 := &model.Request{ID: "ok1", Inputs: []model.Tensor{floats([]int64{1, 3}, 1, 2, 3)}}
	bad1 := &model.Request{ID: "bad1", Inputs: []model.Tensor{floats([]int64{1, 4}, 1, 2, 3, 4)}}
	ok2 := &model.Request{ID: "ok2", Inputs: []model.Tensor{floats([]int64{2, 3}, 4, 5, 6, 7, 8, 9)}}
	bad2 := &model.Request{ID: "bad2", Inputs: []model.Tensor{floats([]int64{2, 4}, 1, 2, 3, 4, 5, 6, 7, 8)}}
	batch := []*model.Request{ok1, bad1, ok2, bad2}
	resps, err := m.Predict(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	if err := model.CheckResponses(batch, resps); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{1, 3} {
		if resps[i].Err == nil {
			t.Errorf("%s: no error", batch[i].ID)
		} else {
			t.Logf("%s: %v", batch[i].ID, resps[i].Err)
		}
	}
	for i, want := range map[int]string{0: "[321]", 2: "[654 987]"} {
		if resps[i].Err != nil {
			t.Fatalf("%s: %v", batch[i].ID, resps[i].Err)
		}
		if got := show(resps[i].Outputs[0]); got != want {
			t.Errorf("%s: %s, want %s", batch[i].ID, got, want)
		}
	}
}
