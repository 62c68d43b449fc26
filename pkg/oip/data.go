package oip

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/warren-farm/warren/pkg/model"
)

// decodeData reads a tensor's "data" (a JSON value: a scalar, a flat array or
// arrays nested to any depth, read row-major) into the Go slice type of dt. want is
// the element count the shape promises; more or fewer elements is an error, found
// before anything is allocated beyond want. maxDepth bounds the nesting.
func decodeData(raw []byte, dt model.Datatype, want, maxDepth int) (any, error) {
	s := &scanner{b: raw, maxDepth: maxDepth}
	// Reserve no more than raw can hold: an element takes at least one byte and a
	// separator, so a shape of 2^24 FP64 elements with one element of data costs
	// a few bytes, not 128 MiB. Up to want, append still grows as needed.
	want0 := want
	want = min(want, len(raw)/2+1)
	var finish func() any
	var add func(tok []byte, kind byte) error
	switch dt {
	case model.BOOL:
		v := make([]bool, 0, want)
		add = func(tok []byte, kind byte) error {
			if kind != 't' && kind != 'f' {
				return s.wrongKind(dt, tok)
			}
			v = append(v, kind == 't')
			return nil
		}
		finish = func() any { return v }
	case model.UINT8, model.UINT16, model.UINT32, model.UINT64:
		bits := dt.Size() * 8
		v := make([]uint64, 0, want)
		add = func(tok []byte, kind byte) error {
			if kind != 'n' {
				return s.wrongKind(dt, tok)
			}
			n, err := strconv.ParseUint(string(tok), 10, bits)
			if err != nil {
				return s.badNumber(dt, tok)
			}
			v = append(v, n)
			return nil
		}
		finish = func() any { return narrowUint(dt, v) }
	case model.INT8, model.INT16, model.INT32, model.INT64:
		bits := dt.Size() * 8
		v := make([]int64, 0, want)
		add = func(tok []byte, kind byte) error {
			if kind != 'n' {
				return s.wrongKind(dt, tok)
			}
			n, err := strconv.ParseInt(string(tok), 10, bits)
			if err != nil {
				return s.badNumber(dt, tok)
			}
			v = append(v, n)
			return nil
		}
		finish = func() any { return narrowInt(dt, v) }
	case model.FP16, model.FP32:
		v := make([]float32, 0, want)
		add = func(tok []byte, kind byte) error {
			if kind != 'n' {
				return s.wrongKind(dt, tok)
			}
			f, err := strconv.ParseFloat(string(tok), 32)
			if err != nil {
				return s.badNumber(dt, tok)
			}
			if dt == model.FP16 {
				f = float64(RoundHalf(float32(f)))
				if math.IsInf(f, 0) {
					return s.badNumber(dt, tok)
				}
			}
			v = append(v, float32(f))
			return nil
		}
		finish = func() any { return v }
	case model.FP64:
		v := make([]float64, 0, want)
		add = func(tok []byte, kind byte) error {
			if kind != 'n' {
				return s.wrongKind(dt, tok)
			}
			f, err := strconv.ParseFloat(string(tok), 64)
			if err != nil {
				return s.badNumber(dt, tok)
			}
			v = append(v, f)
			return nil
		}
		finish = func() any { return v }
	case model.BYTES:
		v := make([]string, 0, want)
		add = func(tok []byte, kind byte) error {
			if kind != 's' {
				return s.wrongKind(dt, tok)
			}
			str, err := unquote(tok)
			if err != nil {
				return err
			}
			v = append(v, str)
			return nil
		}
		finish = func() any { return v }
	default:
		return nil, fmt.Errorf("unknown datatype %q", dt)
	}
	n, err := s.walk(want0, add)
	if err != nil {
		return nil, err
	}
	if n != want0 {
		return nil, fmt.Errorf("data has %d elements, the shape says %d", n, want0)
	}
	return finish(), nil
}

func narrowUint(dt model.Datatype, v []uint64) any {
	switch dt {
	case model.UINT8:
		return convert[uint64, uint8](v)
	case model.UINT16:
		return convert[uint64, uint16](v)
	case model.UINT32:
		return convert[uint64, uint32](v)
	}
	return v
}

func narrowInt(dt model.Datatype, v []int64) any {
	switch dt {
	case model.INT8:
		return convert[int64, int8](v)
	case model.INT16:
		return convert[int64, int16](v)
	case model.INT32:
		return convert[int64, int32](v)
	}
	return v
}

func convert[F, T uint64 | int64 | uint8 | uint16 | uint32 | int8 | int16 | int32](v []F) []T {
	out := make([]T, len(v))
	for i, x := range v {
		out[i] = T(x)
	}
	return out
}

// scanner walks one JSON value of nested arrays and scalars.
type scanner struct {
	b        []byte
	i        int
	maxDepth int
	elems    int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// walk calls add for every scalar in document order and returns how many there
// were. It stops with an error as soon as more than limit were found.
func (s *scanner) walk(limit int, add func(tok []byte, kind byte) error) (int, error) {
	s.ws()
	if err := s.value(0, limit, add); err != nil {
		return 0, err
	}
	s.ws()
	if s.i != len(s.b) {
		return 0, fmt.Errorf("unexpected %q after the data", s.b[s.i])
	}
	return s.elems, nil
}

func (s *scanner) value(depth, limit int, add func([]byte, byte) error) error {
	if s.i >= len(s.b) {
		return fmt.Errorf("data ends early")
	}
	if s.b[s.i] == '[' {
		if depth >= s.maxDepth {
			return fmt.Errorf("data is nested deeper than its shape's %d dimensions", s.maxDepth)
		}
		s.i++
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == ']' {
			s.i++
			return nil
		}
		for {
			s.ws()
			if err := s.value(depth+1, limit, add); err != nil {
				return err
			}
			s.ws()
			if s.i >= len(s.b) {
				return fmt.Errorf("data ends inside an array")
			}
			switch s.b[s.i] {
			case ',':
				s.i++
			case ']':
				s.i++
				return nil
			default:
				return fmt.Errorf("unexpected %q in an array", s.b[s.i])
			}
		}
	}
	tok, kind, err := s.scalar()
	if err != nil {
		return err
	}
	s.elems++
	if s.elems > limit {
		return fmt.Errorf("data has more elements than the shape's %d", limit)
	}
	return add(tok, kind)
}

// scalar reads one scalar token: kind 'n' number, 's' string (quotes included),
// 't' true, 'f' false, 'z' null, 'o' an object.
func (s *scanner) scalar() ([]byte, byte, error) {
	start := s.i
	switch c := s.b[s.i]; {
	case c == '"':
		s.i++
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '\\':
				s.i += 2
				continue
			case '"':
				s.i++
				return s.b[start:s.i], 's', nil
			}
			s.i++
		}
		return nil, 0, fmt.Errorf("unterminated string in data")
	case c == '-' || (c >= '0' && c <= '9'):
		for s.i < len(s.b) && bytes.IndexByte([]byte("+-.eE0123456789"), s.b[s.i]) >= 0 {
			s.i++
		}
		return s.b[start:s.i], 'n', nil
	case bytes.HasPrefix(s.b[s.i:], []byte("true")):
		s.i += 4
		return s.b[start:s.i], 't', nil
	case bytes.HasPrefix(s.b[s.i:], []byte("false")):
		s.i += 5
		return s.b[start:s.i], 'f', nil
	case bytes.HasPrefix(s.b[s.i:], []byte("null")):
		s.i += 4
		return s.b[start:s.i], 'z', nil
	case c == '{':
		return s.b[s.i : s.i+1], 'o', nil
	}
	return nil, 0, fmt.Errorf("unexpected %q in data", s.b[s.i])
}

// wrongKind and badNumber describe an element by its kind, never its value (see
// the package documentation).
func (s *scanner) wrongKind(dt model.Datatype, tok []byte) error {
	what := map[model.Datatype]string{model.BOOL: "true or false", model.BYTES: "a string"}[dt]
	if what == "" {
		what = "a number"
	}
	return fmt.Errorf("element %d is %s, a %s element must be %s", s.elems-1, kindOf(tok), dt, what)
}

func (s *scanner) badNumber(dt model.Datatype, _ []byte) error {
	return fmt.Errorf("element %d is not a valid %s value (wrong kind of number, or out of range)", s.elems-1, dt)
}

// kindOf names a scalar token's JSON kind.
func kindOf(tok []byte) string {
	switch {
	case len(tok) == 0:
		return "empty"
	case tok[0] == '"':
		return "a string"
	case tok[0] == 't', tok[0] == 'f':
		return "a boolean"
	case tok[0] == 'n':
		return "null"
	case tok[0] == '{':
		return "an object"
	}
	return "a number"
}

func shorten(tok []byte) string {
	if len(tok) > 32 {
		return string(tok[:32]) + "…"
	}
	return string(tok)
}

// unquote decodes a JSON string token; the result must be valid UTF-8 (JSON
// strings are text; invalid UTF-8 would be silently replaced otherwise).
func unquote(tok []byte) (string, error) {
	if bytes.IndexByte(tok, '\\') < 0 {
		s := tok[1 : len(tok)-1]
		for _, c := range s {
			if c < 0x20 {
				return "", fmt.Errorf("control character in a string")
			}
		}
		if !utf8.Valid(s) {
			return "", fmt.Errorf("a string is not valid UTF-8")
		}
		return string(s), nil
	}
	if !utf8.Valid(tok) {
		return "", fmt.Errorf("a string is not valid UTF-8")
	}
	var str string
	if err := json.Unmarshal(tok, &str); err != nil {
		return "", fmt.Errorf("bad string: %v", err)
	}
	return str, nil
}

// RoundHalf rounds f to the nearest IEEE 754 half-precision value (ties to even),
// returned as a float32. Values beyond the half range become ±Inf.
func RoundHalf(f float32) float32 { return halfToFloat(floatToHalf(f)) }

func floatToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case b&0x7fffffff == 0:
		return sign
	case int32(b>>23&0xff) == 0xff: // Inf or NaN
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	case exp >= 0x1f:
		return sign | 0x7c00
	case exp <= 0:
		if exp < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint32(14 - exp)
		half := mant >> shift
		rem := mant & (1<<shift - 1)
		mid := uint32(1) << (shift - 1)
		if rem > mid || (rem == mid && half&1 == 1) {
			half++
		}
		return sign | uint16(half)
	}
	half := uint32(exp)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && half&1 == 1) {
		half++ // may carry into the exponent, which is right (up to Inf)
	}
	return sign | uint16(half)
}

func halfToFloat(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal
		for mant&0x400 == 0 {
			mant <<= 1
			exp--
		}
		exp++
		mant &= 0x3ff
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}
