package onnxmodel

import (
	"fmt"

	"github.com/advancedclimatesystems/gonnx/onnx"

	"github.com/warren-farm/warren/pkg/model"
)

// datatypes maps ONNX tensor element types onto v2 datatypes. The others
// (complex, bfloat16, float8, 4-bit types) have no v2 datatype.
var datatypes = map[onnx.TensorProto_DataType]model.Datatype{
	onnx.TensorProto_FLOAT:   model.FP32,
	onnx.TensorProto_DOUBLE:  model.FP64,
	onnx.TensorProto_FLOAT16: model.FP16,
	onnx.TensorProto_INT8:    model.INT8,
	onnx.TensorProto_INT16:   model.INT16,
	onnx.TensorProto_INT32:   model.INT32,
	onnx.TensorProto_INT64:   model.INT64,
	onnx.TensorProto_UINT8:   model.UINT8,
	onnx.TensorProto_UINT16:  model.UINT16,
	onnx.TensorProto_UINT32:  model.UINT32,
	onnx.TensorProto_UINT64:  model.UINT64,
	onnx.TensorProto_BOOL:    model.BOOL,
	onnx.TensorProto_STRING:  model.BYTES,
}

// metadata describes the graph's inputs (less those that are initializers, which
// older exporters also list as inputs) and outputs.
func metadata(g *onnx.GraphProto) (model.Metadata, error) {
	md := model.Metadata{Platform: Platform}
	inits := make(map[string]bool, len(g.GetInitializer()))
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	for _, vi := range g.GetInput() {
		if inits[vi.GetName()] {
			continue
		}
		s, err := spec(vi)
		if err != nil {
			return md, fmt.Errorf("input %w", err)
		}
		if s.Shape == nil {
			return md, unsupported("input %q declares no shape: the onnx backend needs each input's rank (export with input shapes, -1 or a name for variable dimensions)", s.Name)
		}
		md.Inputs = append(md.Inputs, s)
	}
	if len(md.Inputs) == 0 {
		return md, unsupported("the graph has no inputs")
	}
	for _, vi := range g.GetOutput() {
		s, err := spec(vi)
		if err != nil {
			return md, fmt.Errorf("output %w", err)
		}
		md.Outputs = append(md.Outputs, s)
	}
	if len(md.Outputs) == 0 {
		return md, unsupported("the graph has no outputs")
	}
	return md, nil
}

// spec converts one graph input or output. A dimension with a symbolic name, or
// without a value, is -1. Shape is nil when the graph declares none.
func spec(vi *onnx.ValueInfoProto) (model.TensorSpec, error) {
	s := model.TensorSpec{Name: vi.GetName()}
	tt := vi.GetType().GetTensorType()
	if tt == nil {
		return s, unsupported("%q is not a tensor: sequences, maps and optionals are not supported", s.Name)
	}
	elem := onnx.TensorProto_DataType(tt.GetElemType())
	d, ok := datatypes[elem]
	if !ok {
		return s, unsupported("%q has element type %s, which has no v2 datatype", s.Name, elem)
	}
	s.Datatype = d
	if tt.GetShape() == nil {
		return s, nil
	}
	s.Shape = make([]int64, 0, len(tt.GetShape().GetDim()))
	for _, dim := range tt.GetShape().GetDim() {
		v := dim.GetDimValue()
		if v <= 0 || dim.GetDimParam() != "" {
			// gonnx treats a missing value as dynamic, and so does the backend.
			v = -1
		}
		s.Shape = append(s.Shape, v)
	}
	return s, nil
}

// batchable reports whether the requests of a batch can be joined along dimension
// 0: every input's and every output's first dimension is dynamic. An output that
// declares no shape makes the model unbatchable: its rows might not be the
// inputs' rows.
func batchable(md *model.Metadata) bool {
	for _, specs := range [][]model.TensorSpec{md.Inputs, md.Outputs} {
		for _, s := range specs {
			if len(s.Shape) == 0 || s.Shape[0] != -1 {
				return false
			}
		}
	}
	return true
}
