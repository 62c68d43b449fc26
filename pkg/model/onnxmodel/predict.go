package onnxmodel

import (
	"context"
	"fmt"
	"strings"

	"github.com/advancedclimatesystems/gonnx"

	"github.com/warren-farm/warren/pkg/model"
)

// Predict implements [model.Predictor]. Each request is validated against the
// metadata (an invalid one gets an [model.InputError] in its Response and does
// not stop the others); the valid ones are computed on one instance of the
// graph, joined into as few runs as their shapes allow (see the package
// documentation). It waits for a free instance until ctx ends, and checks ctx
// between runs; a single gonnx run cannot be interrupted.
func (m *Model) Predict(ctx context.Context, batch []*model.Request) ([]*model.Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	resps := make([]*model.Response, len(batch))
	var valid []int
	for i, r := range batch {
		if r == nil {
			resps[i] = &model.Response{Err: model.BadInput("", "no request")}
			continue
		}
		if err := m.md.Validate(r); err != nil {
			resps[i] = &model.Response{Err: err}
			continue
		}
		valid = append(valid, i)
	}
	if len(valid) == 0 {
		return resps, nil
	}
	g, err := m.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer m.release(g)
	for _, grp := range m.plan(batch, valid) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if len(grp) > 1 && m.runGroup(g, batch, grp, resps) {
			continue
		}
		for _, i := range grp {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			resps[i] = m.runOne(g, batch[i])
		}
	}
	return resps, nil
}

// plan splits the valid requests into groups that can run as one: when the model
// is batchable, requests whose inputs agree on the row count within the request
// and on every dimension after the first across requests. Otherwise every
// request is a group of its own. Groups keep the batch's order of first
// appearance.
func (m *Model) plan(batch []*model.Request, valid []int) [][]int {
	if !m.batchable {
		groups := make([][]int, len(valid))
		for k, i := range valid {
			groups[k] = []int{i}
		}
		return groups
	}
	var groups [][]int
	index := map[string]int{}
	for _, i := range valid {
		key, ok := m.shapeKey(batch[i])
		if !ok {
			groups = append(groups, []int{i})
			continue
		}
		if k, seen := index[key]; seen {
			groups[k] = append(groups[k], i)
			continue
		}
		index[key] = len(groups)
		groups = append(groups, []int{i})
	}
	return groups
}

// shapeKey is a validated request's inputs' shapes without their first
// dimension, in metadata order; false when its inputs disagree on the row count.
func (m *Model) shapeKey(r *model.Request) (string, bool) {
	var b strings.Builder
	rows := int64(-1)
	for _, s := range m.md.Inputs {
		shape := r.Input(s.Name).Shape
		if rows >= 0 && shape[0] != rows {
			return "", false
		}
		rows = shape[0]
		fmt.Fprint(&b, shape[1:], ";")
	}
	return b.String(), true
}

// runGroup computes several requests in one run: inputs joined along dimension 0,
// outputs split back by the requests' row counts. It reports false, leaving resps
// untouched, when the run fails or an output cannot be split by rows; the caller
// then runs the requests one at a time.
func (m *Model) runGroup(g *gonnx.Model, batch []*model.Request, grp []int, resps []*model.Response) bool {
	rows := make([]int, len(grp))
	total := 0
	for k, i := range grp {
		rows[k] = int(batch[i].Inputs[0].Shape[0])
		total += rows[k]
	}
	inputs := make([]model.Tensor, len(m.md.Inputs))
	for j, s := range m.md.Inputs {
		parts := make([]any, len(grp))
		var first *model.Tensor
		for k, i := range grp {
			t := batch[i].Input(s.Name)
			if first == nil {
				first = t
			}
			parts[k] = t.Data
		}
		shape := append([]int64{int64(total)}, first.Shape[1:]...)
		inputs[j] = model.Tensor{Name: s.Name, Datatype: s.Datatype, Shape: shape, Data: model.Concat(parts...)}
	}
	outs, err := m.run(g, inputs)
	if err != nil {
		return false
	}
	split := make([][]model.Tensor, len(grp))
	for k := range split {
		split[k] = make([]model.Tensor, len(outs))
	}
	for j, o := range outs {
		if len(o.Shape) == 0 || o.Shape[0] != int64(total) {
			return false
		}
		per := 0
		if total > 0 {
			per = o.Len() / total
		}
		from := 0
		for k := range grp {
			to := from + rows[k]*per
			shape := append([]int64{int64(rows[k])}, o.Shape[1:]...)
			split[k][j] = model.Tensor{Name: o.Name, Datatype: o.Datatype, Shape: shape, Data: model.Slice(o.Data, from, to)}
			from = to
		}
	}
	for k, i := range grp {
		resps[i] = respond(split[k], batch[i].Outputs)
	}
	return true
}

// runOne computes one request on its own; a failure is that request's error.
func (m *Model) runOne(g *gonnx.Model, r *model.Request) *model.Response {
	outs, err := m.run(g, r.Inputs)
	if err != nil {
		return &model.Response{Err: err}
	}
	return respond(outs, r.Outputs)
}

func respond(outs []model.Tensor, wanted []string) *model.Response {
	sel, err := model.Select(outs, wanted)
	if err != nil {
		return &model.Response{Err: err}
	}
	return &model.Response{Outputs: sel}
}

// run executes the graph once on validated inputs and returns every output, in
// metadata order. A panic inside gonnx or gorgonia (they panic on some shape
// errors) becomes an error.
func (m *Model) run(g *gonnx.Model, inputs []model.Tensor) (outs []model.Tensor, err error) {
	defer func() {
		if p := recover(); p != nil {
			outs, err = nil, fmt.Errorf("onnx model %s: gonnx panicked: %v", m.path, p)
		}
	}()
	in := make(gonnx.Tensors, len(inputs))
	for _, t := range inputs {
		in[t.Name] = toDense(t.Shape, t.Data)
	}
	res, err := g.Run(in)
	if err != nil {
		return nil, fmt.Errorf("onnx model %s: %w", m.path, err)
	}
	outs = make([]model.Tensor, len(m.md.Outputs))
	for j, s := range m.md.Outputs {
		if outs[j], err = fromDense(s, res[s.Name]); err != nil {
			return nil, fmt.Errorf("onnx model %s: %w", m.path, err)
		}
	}
	return outs, nil
}
