package onnxmodel

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/advancedclimatesystems/gonnx/onnx"

	"github.com/warren-farm/warren/pkg/model"
)

func isBadInput(err error) bool { return errors.Is(err, model.ErrBadInput) }

// reluGraph is x[batch,3] -> Relu -> y[batch,3].
func reluGraph() graph {
	return graph{
		nodes:   []*onnx.NodeProto{node("Relu", []string{"x"}, []string{"y"})},
		inputs:  []*onnx.ValueInfoProto{value("x", tFloat, "batch", 3)},
		outputs: []*onnx.ValueInfoProto{value("y", tFloat, "batch", 3)},
	}
}

func loadErr(t *testing.T, path string) error {
	t.Helper()
	m, err := Load(Config{Path: path})
	if err == nil {
		m.Close()
		t.Fatalf("Load(%s) succeeded; want an error", path)
	}
	t.Logf("error: %v", err)
	return err
}

func mustContain(t *testing.T, err error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func TestLoadOpset17(t *testing.T) {
	g := reluGraph()
	g.opsets = map[string]int64{"": 17}
	path := g.write(t)
	err := loadErr(t, path)
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("not ErrUnsupported: %v", err)
	}
	mustContain(t, err, path+": opset 17 is not supported: the onnx backend runs opset 13 graphs; re-export with opset 13")
}

func TestLoadOpsetOtherDomain(t *testing.T) {
	g := reluGraph()
	g.opsets = map[string]int64{"": 13, "ai.onnx.ml": 3}
	m, err := Load(Config{Path: g.write(t)})
	if err != nil {
		t.Fatalf("ai.onnx.ml 3 beside opset 13 should load: %v", err)
	}
	m.Close()

	g.opsets = map[string]int64{"": 13, "com.example": 14}
	mustContain(t, loadErr(t, g.write(t)), "opset import com.example version 14 is not supported")

	g.opsets = map[string]int64{"ai.onnx.ml": 3}
	mustContain(t, loadErr(t, g.write(t)), "imports no default (ai.onnx) opset")
}

func TestLoadUnsupportedOperator(t *testing.T) {
	g := graph{
		nodes: []*onnx.NodeProto{
			node("Relu", []string{"x"}, []string{"r"}),
			node("ArgMax", []string{"r"}, []string{"y"}, intAttr("axis", 1)),
			node("ReduceMax", []string{"r"}, []string{"z"}),
			node("ArgMax", []string{"r"}, []string{"w"}),
		},
		inputs:  []*onnx.ValueInfoProto{value("x", tFloat, "batch", 3)},
		outputs: []*onnx.ValueInfoProto{value("y", tInt64, "batch", 1), value("z", tFloat, 1, 1), value("w", tInt64, "batch", 1)},
	}
	err := loadErr(t, g.write(t))
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("not ErrUnsupported: %v", err)
	}
	mustContain(t, err, "operators ArgMax, ReduceMax are not supported by the pure-Go onnx backend (gonnx v1.1.0); supported: Abs, Acos,", "Gemm", "Softmax")

	g.nodes = []*onnx.NodeProto{node("Relu", []string{"x"}, []string{"y"})}
	g.nodes[0].Domain = "com.microsoft"
	g.outputs = g.outputs[:1]
	mustContain(t, loadErr(t, g.write(t)), "operator com.microsoft.Relu is not supported")
}

func TestLoadBadAttribute(t *testing.T) {
	g := reluGraph()
	g.nodes = []*onnx.NodeProto{node("Gemm", []string{"x", "x"}, []string{"y"}, intAttr("transposeA", 1))}
	g.nodes[0].Name = "dense"
	mustContain(t, loadErr(t, g.write(t)), `node "dense" (Gemm): gonnx cannot run it`, "transposeA")
}

func TestLoadDataflow(t *testing.T) {
	g := reluGraph()
	g.nodes = []*onnx.NodeProto{
		node("Relu", []string{"h"}, []string{"y"}),
		node("Relu", []string{"x"}, []string{"h"}),
	}
	mustContain(t, loadErr(t, g.write(t)), `node #0 (Relu) reads "h" before anything produces it`)

	g = reluGraph()
	g.outputs = append(g.outputs, value("nothing", tFloat, 1))
	mustContain(t, loadErr(t, g.write(t)), `graph output "nothing" is produced by no node`)
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.onnx")
	err := loadErr(t, missing)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("not fs.ErrNotExist: %v", err)
	}
	mustContain(t, err, missing)

	junk := filepath.Join(dir, "junk.onnx")
	if err := os.WriteFile(junk, []byte("\xff\xff\xff this is not protobuf"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustContain(t, loadErr(t, junk), junk+": not an ONNX model")

	empty := filepath.Join(dir, "empty.onnx")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	mustContain(t, loadErr(t, empty), "the model has no graph")

	if _, err := Load(Config{Path: reluGraph().write(t), Instances: -1}); err == nil {
		t.Error("Instances -1 accepted")
	}
}

func TestLoadUnsupportedTypes(t *testing.T) {
	g := reluGraph()
	g.inputs = []*onnx.ValueInfoProto{value("x", onnx.TensorProto_COMPLEX64, "batch", 3)}
	mustContain(t, loadErr(t, g.write(t)), `input "x" has element type COMPLEX64, which has no v2 datatype`)

	g = reluGraph()
	g.inputs = []*onnx.ValueInfoProto{{Name: "x", Type: &onnx.TypeProto{Value: &onnx.TypeProto_SequenceType{SequenceType: &onnx.TypeProto_Sequence{}}}}}
	mustContain(t, loadErr(t, g.write(t)), `input "x" is not a tensor`)

	g = reluGraph()
	g.inputs = []*onnx.ValueInfoProto{noShape("x", tFloat)}
	mustContain(t, loadErr(t, g.write(t)), `input "x" declares no shape`)
}

// TestMetadata covers the datatype mapping, symbolic and unknown dimensions, an
// initializer listed among the inputs, and an output without a shape.
func TestMetadata(t *testing.T) {
	g := graph{
		nodes: []*onnx.NodeProto{
			node("Add", []string{"a", "w"}, []string{"sum"}),
			node("Cast", []string{"b"}, []string{"b64"}, intAttr("to", int64(onnx.TensorProto_INT64))),
			node("Not", []string{"c"}, []string{"notc"}),
		},
		inputs: []*onnx.ValueInfoProto{
			value("a", tDouble, "n", 2),
			value("w", tDouble, 2),
			value("b", onnx.TensorProto_INT32, 4, "m"),
			value("c", onnx.TensorProto_BOOL, 1),
			value("u8", onnx.TensorProto_UINT8, -1),
			value("i8", onnx.TensorProto_INT8, 0),
			value("h", onnx.TensorProto_FLOAT16, 2),
			value("s", onnx.TensorProto_STRING, 1),
		},
		outputs: []*onnx.ValueInfoProto{value("sum", tDouble, "n", 2), noShape("b64", tInt64), value("notc", onnx.TensorProto_BOOL, 1)},
		inits:   []*onnx.TensorProto{{Name: "w", Dims: []int64{2}, DataType: int32(tDouble), DoubleData: []float64{1, 2}}},
	}
	m, err := Load(Config{Path: g.write(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	md := m.Metadata()
	got := fmt.Sprint(md.Platform, md.Inputs, md.Outputs)
	want := fmt.Sprint("onnx",
		[]model.TensorSpec{
			{Name: "a", Datatype: model.FP64, Shape: []int64{-1, 2}},
			{Name: "b", Datatype: model.INT32, Shape: []int64{4, -1}},
			{Name: "c", Datatype: model.BOOL, Shape: []int64{1}},
			{Name: "u8", Datatype: model.UINT8, Shape: []int64{-1}},
			{Name: "i8", Datatype: model.INT8, Shape: []int64{-1}},
			{Name: "h", Datatype: model.FP16, Shape: []int64{2}},
			{Name: "s", Datatype: model.BYTES, Shape: []int64{1}},
		},
		[]model.TensorSpec{
			{Name: "sum", Datatype: model.FP64, Shape: []int64{-1, 2}},
			{Name: "b64", Datatype: model.INT64},
			{Name: "notc", Datatype: model.BOOL, Shape: []int64{1}},
		})
	if got != want {
		t.Fatalf("metadata\n got %s\nwant %s", got, want)
	}
	if m.batchable {
		t.Error("a model with fixed first dimensions should not be batchable")
	}
}

func TestLoadInitializers(t *testing.T) {
	g := reluGraph()
	g.nodes = []*onnx.NodeProto{node("Add", []string{"x", "w"}, []string{"y"})}
	g.inits = []*onnx.TensorProto{{Name: "w", Dims: []int64{3}, DataType: int32(onnx.TensorProto_FLOAT16), RawData: make([]byte, 6)}}
	err := loadErr(t, g.write(t))
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("not ErrUnsupported: %v", err)
	}
	mustContain(t, err, `initializer "w" holds FLOAT16 weights, which gonnx v1.1.0 cannot read`)

	g.inits = []*onnx.TensorProto{{Name: "w", Dims: []int64{3}, DataType: int32(tFloat), DataLocation: onnx.TensorProto_EXTERNAL,
		ExternalData: []*onnx.StringStringEntryProto{{Key: "location", Value: "weights.bin"}}}}
	mustContain(t, loadErr(t, g.write(t)), `initializer "w" keeps its data in an external file`)
}
