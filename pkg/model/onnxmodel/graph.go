package onnxmodel

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/advancedclimatesystems/gonnx/ops/opset13"
)

// Opset is the one ONNX opset (default domain) the backend runs.
const Opset = 13

// ErrUnsupported marks a model this backend cannot run: another opset, an
// operator or attribute gonnx lacks, weights it cannot read, a tensor type v2
// cannot carry. Test with errors.Is.
var ErrUnsupported = errors.New("unsupported ONNX model")

type unsupportedError struct{ msg string }

func (e *unsupportedError) Error() string { return e.msg }
func (e *unsupportedError) Unwrap() error { return ErrUnsupported }

func unsupported(format string, args ...any) error {
	return &unsupportedError{msg: fmt.Sprintf(format, args...)}
}

// gonnx serves the default domain and two operators of ai.onnx.ml. Its operator
// lookup ignores the domain, so the check here keeps those two in their domain
// and refuses any other domain.
const domainML = "ai.onnx.ml"

var mlOperators = []string{"LinearRegressor", "Scaler"}

// SupportedOperators lists, sorted, the operator types the backend runs (gonnx
// v1.1.0's opset-13 registry). LinearRegressor and Scaler are in the ai.onnx.ml
// domain, the others in the default one.
func SupportedOperators() []string {
	names := opset13.GetOpNames()
	slices.Sort(names)
	return names
}

func isDefaultDomain(d string) bool { return d == "" || d == "ai.onnx" }

// check verifies the opset imports and the operators before gonnx sees the model,
// so that an unsupported model fails with a message that says what to change.
func check(mp *onnx.ModelProto) error {
	g := mp.GetGraph()
	if g == nil {
		return errors.New("the model has no graph")
	}
	if err := checkOpsets(mp.GetOpsetImport()); err != nil {
		return err
	}
	if err := checkOperators(g); err != nil {
		return err
	}
	if err := checkInitializers(g); err != nil {
		return err
	}
	return checkDataflow(g)
}

// initializerTypes are the element types gonnx v1.1.0 reads weights of. It reads
// others (FLOAT16 among them) as garbage or not at all.
var initializerTypes = map[onnx.TensorProto_DataType]bool{
	onnx.TensorProto_FLOAT: true, onnx.TensorProto_DOUBLE: true, onnx.TensorProto_BOOL: true,
	onnx.TensorProto_INT8: true, onnx.TensorProto_INT16: true, onnx.TensorProto_INT32: true, onnx.TensorProto_INT64: true,
	onnx.TensorProto_UINT8: true, onnx.TensorProto_UINT16: true, onnx.TensorProto_UINT32: true, onnx.TensorProto_UINT64: true,
}

func checkInitializers(g *onnx.GraphProto) error {
	for _, t := range g.GetInitializer() {
		dt := onnx.TensorProto_DataType(t.GetDataType())
		if !initializerTypes[dt] {
			return unsupported("initializer %q holds %s weights, which gonnx v1.1.0 cannot read; export float32 (or float64) weights", t.GetName(), dt)
		}
		if len(t.GetExternalData()) > 0 || t.GetDataLocation() == onnx.TensorProto_EXTERNAL {
			return unsupported("initializer %q keeps its data in an external file, which gonnx v1.1.0 cannot read; save the model with its weights inside", t.GetName())
		}
	}
	return nil
}

func checkOpsets(imports []*onnx.OperatorSetIdProto) error {
	found := false
	for _, imp := range imports {
		d, v := imp.GetDomain(), imp.GetVersion()
		switch {
		case isDefaultDomain(d):
			if v != Opset {
				return unsupported("opset %d is not supported: the onnx backend runs opset %d graphs; re-export with opset %d", v, Opset, Opset)
			}
			found = true
		case v > Opset:
			// gonnx picks its operator set by the highest version of any domain.
			return unsupported("opset import %s version %d is not supported: gonnx v1.1.0 accepts no opset version above %d", d, v, Opset)
		}
	}
	if !found {
		return unsupported("the model imports no default (ai.onnx) opset: the onnx backend runs opset %d graphs; re-export with opset %d", Opset, Opset)
	}
	return nil
}

func checkOperators(g *onnx.GraphProto) error {
	supported := SupportedOperators()
	var bad []string
	for _, n := range g.GetNode() {
		op, d := n.GetOpType(), n.GetDomain()
		name := op
		ok := false
		switch {
		case isDefaultDomain(d):
			ok = slices.Contains(supported, op) && !slices.Contains(mlOperators, op)
		case d == domainML:
			ok = slices.Contains(mlOperators, op)
			name = d + "." + op
		default:
			name = d + "." + op
		}
		if !ok && !slices.Contains(bad, name) {
			bad = append(bad, name)
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		what := "operator " + bad[0] + " is"
		if len(bad) > 1 {
			what = "operators " + strings.Join(bad, ", ") + " are"
		}
		return unsupported("%s not supported by the pure-Go onnx backend (gonnx v1.1.0); supported: %s (LinearRegressor and Scaler in ai.onnx.ml)",
			what, strings.Join(supported, ", "))
	}
	// gonnx reads the attributes only when it runs a node: read them now, so that an
	// attribute it does not handle fails the load, not the first request.
	for i, n := range g.GetNode() {
		op, err := getOperator(n.GetOpType())
		if err != nil {
			return fmt.Errorf("node %s: %w", nodeName(n, i), err)
		}
		if err := op.Init(n); err != nil {
			return unsupported("node %s: gonnx cannot run it: %v", nodeName(n, i), err)
		}
	}
	return nil
}

// checkDataflow verifies that gonnx, which runs the nodes in file order, finds
// every node's inputs and every graph output.
func checkDataflow(g *onnx.GraphProto) error {
	have := map[string]bool{"": true} // "" marks an omitted optional input
	for _, in := range g.GetInput() {
		have[in.GetName()] = true
	}
	for _, t := range g.GetInitializer() {
		have[t.GetName()] = true
	}
	for i, n := range g.GetNode() {
		for _, in := range n.GetInput() {
			if !have[in] {
				return fmt.Errorf("node %s reads %q before anything produces it (gonnx needs the nodes in topological order)", nodeName(n, i), in)
			}
		}
		for _, out := range n.GetOutput() {
			have[out] = true
		}
	}
	for _, out := range g.GetOutput() {
		if !have[out.GetName()] {
			return fmt.Errorf("graph output %q is produced by no node", out.GetName())
		}
	}
	return nil
}

func nodeName(n *onnx.NodeProto, i int) string {
	if n.GetName() != "" {
		return fmt.Sprintf("%q (%s)", n.GetName(), n.GetOpType())
	}
	return fmt.Sprintf("#%d (%s)", i, n.GetOpType())
}
