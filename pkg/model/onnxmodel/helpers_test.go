package onnxmodel

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"
)

// Tiny graphs for the tests, built with gonnx's ONNX protobuf types and written
// to a temporary directory.

type graph struct {
	opsets  map[string]int64 // domain -> version; nil means {"": 13}
	nodes   []*onnx.NodeProto
	inputs  []*onnx.ValueInfoProto
	outputs []*onnx.ValueInfoProto
	inits   []*onnx.TensorProto
}

func (g graph) write(t testing.TB) string {
	t.Helper()
	mp := &onnx.ModelProto{
		IrVersion: 7,
		Graph: &onnx.GraphProto{
			Name:        "test",
			Node:        g.nodes,
			Input:       g.inputs,
			Output:      g.outputs,
			Initializer: g.inits,
		},
	}
	opsets := g.opsets
	if opsets == nil {
		opsets = map[string]int64{"": 13}
	}
	for d, v := range opsets {
		mp.OpsetImport = append(mp.OpsetImport, &onnx.OperatorSetIdProto{Domain: d, Version: v})
	}
	data, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func node(op string, inputs, outputs []string, attrs ...*onnx.AttributeProto) *onnx.NodeProto {
	return &onnx.NodeProto{OpType: op, Input: inputs, Output: outputs, Attribute: attrs}
}

func intAttr(name string, v int64) *onnx.AttributeProto {
	return &onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_INT, I: v}
}

// value declares a tensor input or output. Each dim is an int (a fixed size) or a
// string (a symbolic one); noShape leaves the shape out.
func value(name string, elem onnx.TensorProto_DataType, dims ...any) *onnx.ValueInfoProto {
	shape := &onnx.TensorShapeProto{}
	for _, d := range dims {
		switch d := d.(type) {
		case int:
			shape.Dim = append(shape.Dim, &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: int64(d)}})
		case string:
			shape.Dim = append(shape.Dim, &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimParam{DimParam: d}})
		}
	}
	return &onnx.ValueInfoProto{Name: name, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
		TensorType: &onnx.TypeProto_Tensor{ElemType: int32(elem), Shape: shape},
	}}}
}

func noShape(name string, elem onnx.TensorProto_DataType) *onnx.ValueInfoProto {
	return &onnx.ValueInfoProto{Name: name, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
		TensorType: &onnx.TypeProto_Tensor{ElemType: int32(elem)},
	}}}
}

func floatInit(name string, dims []int64, vals ...float32) *onnx.TensorProto {
	raw := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return &onnx.TensorProto{Name: name, Dims: dims, DataType: int32(onnx.TensorProto_FLOAT), RawData: raw}
}

const (
	tFloat  = onnx.TensorProto_FLOAT
	tDouble = onnx.TensorProto_DOUBLE
	tInt64  = onnx.TensorProto_INT64
)
