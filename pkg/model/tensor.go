package model

import (
	"errors"
	"fmt"
	"math"
)

// Datatype is a tensor element type, spelled as the Open Inference Protocol (v2)
// spells it.
type Datatype string

// The v2 datatypes.
const (
	BOOL   Datatype = "BOOL"
	UINT8  Datatype = "UINT8"
	UINT16 Datatype = "UINT16"
	UINT32 Datatype = "UINT32"
	UINT64 Datatype = "UINT64"
	INT8   Datatype = "INT8"
	INT16  Datatype = "INT16"
	INT32  Datatype = "INT32"
	INT64  Datatype = "INT64"
	FP16   Datatype = "FP16"
	FP32   Datatype = "FP32"
	FP64   Datatype = "FP64"
	BYTES  Datatype = "BYTES"
)

// Datatypes lists every datatype, in the order the specification lists them.
var Datatypes = []Datatype{BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES}

// Valid reports whether d is one of [Datatypes].
func (d Datatype) Valid() bool {
	for _, x := range Datatypes {
		if d == x {
			return true
		}
	}
	return false
}

// Size is the size of one element in bytes (the binary tensor encoding), 0 for
// BYTES, whose elements vary in length.
func (d Datatype) Size() int {
	switch d {
	case BOOL, UINT8, INT8:
		return 1
	case UINT16, INT16, FP16:
		return 2
	case UINT32, INT32, FP32:
		return 4
	case UINT64, INT64, FP64:
		return 8
	}
	return 0
}

// Tensor is a named, typed, shaped array. Data holds the elements in row-major
// order as the Go slice type of its Datatype:
//
//	BOOL []bool    UINT8 []uint8    UINT16 []uint16  UINT32 []uint32  UINT64 []uint64
//	INT8 []int8    INT16 []int16    INT32 []int32    INT64 []int64
//	FP16 []float32 (values rounded to half precision on the wire)
//	FP32 []float32 FP64 []float64   BYTES []string (each element any byte string)
//
// [Tensor.Check] verifies that the pairing holds and that the shape's element count
// equals the data's length.
type Tensor struct {
	Name     string
	Datatype Datatype
	Shape    []int64
	Data     any
	// Parameters are the tensor's v2 parameters (string, number or bool values);
	// nil when none.
	Parameters map[string]any
}

// Len returns the number of elements in Data (0 for nil or an unknown type).
func (t *Tensor) Len() int {
	switch d := t.Data.(type) {
	case []bool:
		return len(d)
	case []uint8:
		return len(d)
	case []uint16:
		return len(d)
	case []uint32:
		return len(d)
	case []uint64:
		return len(d)
	case []int8:
		return len(d)
	case []int16:
		return len(d)
	case []int32:
		return len(d)
	case []int64:
		return len(d)
	case []float32:
		return len(d)
	case []float64:
		return len(d)
	case []string:
		return len(d)
	}
	return 0
}

// dataMatches reports whether Data's Go type is the one of Datatype.
func (t *Tensor) dataMatches() bool {
	switch t.Data.(type) {
	case []bool:
		return t.Datatype == BOOL
	case []uint8:
		return t.Datatype == UINT8
	case []uint16:
		return t.Datatype == UINT16
	case []uint32:
		return t.Datatype == UINT32
	case []uint64:
		return t.Datatype == UINT64
	case []int8:
		return t.Datatype == INT8
	case []int16:
		return t.Datatype == INT16
	case []int32:
		return t.Datatype == INT32
	case []int64:
		return t.Datatype == INT64
	case []float32:
		return t.Datatype == FP32 || t.Datatype == FP16
	case []float64:
		return t.Datatype == FP64
	case []string:
		return t.Datatype == BYTES
	}
	return false
}

// MaxElements bounds the element count of one tensor's shape (2^31-1), so a shape
// can never overflow an int or make a decoder allocate without bound. Decoders
// apply their own, lower, limits on top.
const MaxElements = math.MaxInt32

// NumElements returns the product of shape's dimensions. Every dimension must be
// non-negative (a concrete shape has no -1) and the product at most MaxElements.
func NumElements(shape []int64) (int, error) {
	n := int64(1)
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("dimension %d is %d: a tensor's shape has no negative dimensions", i, d)
		}
		if d > 0 && n > MaxElements/d {
			return 0, fmt.Errorf("shape %v has more than %d elements", shape, MaxElements)
		}
		n *= d
	}
	return int(n), nil
}

// Check verifies that t is well formed: a name, a known datatype, a concrete shape,
// Data of the datatype's Go type, and as many elements as the shape says.
func (t *Tensor) Check() error {
	switch {
	case t.Name == "":
		return errors.New("tensor without a name")
	case !t.Datatype.Valid():
		return fmt.Errorf("tensor %q: unknown datatype %q", t.Name, t.Datatype)
	case !t.dataMatches():
		return fmt.Errorf("tensor %q: data of type %T does not hold %s elements", t.Name, t.Data, t.Datatype)
	}
	n, err := NumElements(t.Shape)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	if n != t.Len() {
		return fmt.Errorf("tensor %q: shape %v has %d elements but data has %d", t.Name, t.Shape, n, t.Len())
	}
	return nil
}

// Slice returns elements [from, to) of Data as a new slice header of the same type
// (sharing the backing array), for splitting a batched tensor.
func Slice(data any, from, to int) any {
	switch d := data.(type) {
	case []bool:
		return d[from:to:to]
	case []uint8:
		return d[from:to:to]
	case []uint16:
		return d[from:to:to]
	case []uint32:
		return d[from:to:to]
	case []uint64:
		return d[from:to:to]
	case []int8:
		return d[from:to:to]
	case []int16:
		return d[from:to:to]
	case []int32:
		return d[from:to:to]
	case []int64:
		return d[from:to:to]
	case []float32:
		return d[from:to:to]
	case []float64:
		return d[from:to:to]
	case []string:
		return d[from:to:to]
	}
	return nil
}

// Concat appends the elements of parts (all of the same Go slice type) into one
// new slice, for joining tensors into a batch. It returns nil for no parts or mixed
// types.
func Concat(parts ...any) any {
	if len(parts) == 0 {
		return nil
	}
	switch parts[0].(type) {
	case []bool:
		return concat[bool](parts)
	case []uint8:
		return concat[uint8](parts)
	case []uint16:
		return concat[uint16](parts)
	case []uint32:
		return concat[uint32](parts)
	case []uint64:
		return concat[uint64](parts)
	case []int8:
		return concat[int8](parts)
	case []int16:
		return concat[int16](parts)
	case []int32:
		return concat[int32](parts)
	case []int64:
		return concat[int64](parts)
	case []float32:
		return concat[float32](parts)
	case []float64:
		return concat[float64](parts)
	case []string:
		return concat[string](parts)
	}
	return nil
}

func concat[T any](parts []any) any {
	n := 0
	for _, p := range parts {
		s, ok := p.([]T)
		if !ok {
			return nil
		}
		n += len(s)
	}
	out := make([]T, 0, n)
	for _, p := range parts {
		out = append(out, p.([]T)...)
	}
	return out
}
