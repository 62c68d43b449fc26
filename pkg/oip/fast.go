package oip

import (
	"encoding/json"

	"github.com/warren-farm/warren/pkg/model"
)

// The fast path of the wire decoding. Every request a worker takes and every reply
// the API reads is a v2 document that warren itself wrote: the same few keys, plain
// strings, integer shapes. Reading those with encoding/json's reflection cost a
// tenth of each process's CPU under load (BENCHMARKS.md, "Where the farm's CPU
// goes"). fastRequest and fastResponse read exactly that common form into the same
// wire structs and give up — returning false, with nothing to undo — on anything
// else: a key they do not know or that repeats, "parameters", an escape or a
// non-ASCII byte in a string, a non-integer shape, a null, trailing data, any
// syntax error. The caller then decodes the body with encoding/json as before, so
// every refusal and its message are exactly what they were. The fuzz targets check
// that whatever the fast path accepts, encoding/json reads the same way
// (FuzzDecodeRequest, FuzzDecodeResponse).

// fastReader is a cursor over one JSON document.
type fastReader struct {
	b []byte
	i int
}

func (r *fastReader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// byte consumes c (after white space) and reports whether it was there.
func (r *fastReader) byte(c byte) bool {
	r.ws()
	if r.i < len(r.b) && r.b[r.i] == c {
		r.i++
		return true
	}
	return false
}

// str reads a string of printable ASCII without escapes.
func (r *fastReader) str() (string, bool) {
	if !r.byte('"') {
		return "", false
	}
	start := r.i
	for r.i < len(r.b) {
		c := r.b[r.i]
		switch {
		case c == '"':
			s := string(r.b[start:r.i])
			r.i++
			return s, true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return "", false
		}
		r.i++
	}
	return "", false
}

// ints reads an array of integers that fit an int64 (no fraction, no exponent).
func (r *fastReader) ints() ([]int64, bool) {
	if !r.byte('[') {
		return nil, false
	}
	out := []int64{}
	if r.byte(']') {
		return out, true
	}
	for {
		r.ws()
		neg := r.i < len(r.b) && r.b[r.i] == '-'
		if neg {
			r.i++
		}
		start := r.i
		var v int64
		for r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9' {
			v = v*10 + int64(r.b[r.i]-'0')
			r.i++
		}
		n := r.i - start
		if n == 0 || n > 18 || (n > 1 && r.b[start] == '0') {
			return nil, false
		}
		if r.i < len(r.b) && (r.b[r.i] == '.' || r.b[r.i] == 'e' || r.b[r.i] == 'E') {
			return nil, false
		}
		if neg {
			v = -v
		}
		out = append(out, v)
		if r.byte(']') {
			return out, true
		}
		if !r.byte(',') {
			return nil, false
		}
	}
}

// value skips one JSON value of arrays, strings, numbers and literals (objects give
// up) and returns its bytes. It checks structure, not every detail of a number:
// decodeData reads the data strictly afterwards, and anything it refuses sends the
// body down the slow path.
func (r *fastReader) value(depth int) ([]byte, bool) {
	r.ws()
	start := r.i
	if r.i >= len(r.b) || depth > 64 {
		return nil, false
	}
	switch c := r.b[r.i]; {
	case c == '[':
		r.i++
		if r.byte(']') {
			return r.b[start:r.i], true
		}
		for {
			if _, ok := r.value(depth + 1); !ok {
				return nil, false
			}
			if r.byte(']') {
				return r.b[start:r.i], true
			}
			if !r.byte(',') {
				return nil, false
			}
		}
	case c == '"':
		if _, ok := r.str(); !ok {
			return nil, false
		}
	case c == '-' || (c >= '0' && c <= '9'):
		if !r.number() {
			return nil, false
		}
	default:
		for _, lit := range []string{"true", "false"} {
			if len(r.b)-r.i >= len(lit) && string(r.b[r.i:r.i+len(lit)]) == lit {
				r.i += len(lit)
				return r.b[start:r.i], true
			}
		}
		return nil, false
	}
	return r.b[start:r.i], true
}

// number reads a number with JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (r *fastReader) number() bool {
	digits := func() int {
		n := 0
		for r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9' {
			r.i++
			n++
		}
		return n
	}
	if r.i < len(r.b) && r.b[r.i] == '-' {
		r.i++
	}
	if r.i < len(r.b) && r.b[r.i] == '0' {
		r.i++
	} else if digits() == 0 {
		return false
	}
	if r.i < len(r.b) && r.b[r.i] == '.' {
		r.i++
		if digits() == 0 {
			return false
		}
	}
	if r.i < len(r.b) && (r.b[r.i] == 'e' || r.b[r.i] == 'E') {
		r.i++
		if r.i < len(r.b) && (r.b[r.i] == '+' || r.b[r.i] == '-') {
			r.i++
		}
		if digits() == 0 {
			return false
		}
	}
	// A number runs into the next structural byte or white space, never a letter
	// or digit (01, 1x).
	if r.i < len(r.b) {
		switch r.b[r.i] {
		case ',', ']', '}', ' ', '\t', '\n', '\r':
		default:
			return false
		}
	}
	return true
}

// object reads an object whose keys each appear at most once, calling field for
// each key with the reader at its value. seen is a bit per known key; field
// returns the key's bit (0 for an unknown key) and whether its value was read.
func (r *fastReader) object(field func(key string) (uint, bool)) bool {
	if !r.byte('{') {
		return false
	}
	if r.byte('}') {
		return true
	}
	var seen uint
	for {
		key, ok := r.str()
		if !ok || !r.byte(':') {
			return false
		}
		bit, ok := field(key)
		if !ok || bit == 0 || seen&bit != 0 {
			return false
		}
		seen |= bit
		if r.byte('}') {
			return true
		}
		if !r.byte(',') {
			return false
		}
	}
}

// end reports whether only white space is left.
func (r *fastReader) end() bool {
	r.ws()
	return r.i == len(r.b)
}

// tensors reads an array of tensors (name, shape, datatype, data; no parameters).
func (r *fastReader) tensors() ([]wireTensor, bool) {
	if !r.byte('[') {
		return nil, false
	}
	out := []wireTensor{}
	if r.byte(']') {
		return out, true
	}
	for {
		var t wireTensor
		ok := r.object(func(key string) (uint, bool) {
			var ok bool
			switch key {
			case "name":
				t.Name, ok = r.str()
				return 1, ok
			case "shape":
				t.Shape, ok = r.ints()
				return 2, ok
			case "datatype":
				var s string
				s, ok = r.str()
				t.Datatype = model.Datatype(s)
				return 4, ok
			case "data":
				var raw []byte
				raw, ok = r.value(0)
				t.Data = json.RawMessage(raw)
				return 8, ok
			}
			return 0, false
		})
		if !ok {
			return nil, false
		}
		out = append(out, t)
		if r.byte(']') {
			return out, true
		}
		if !r.byte(',') {
			return nil, false
		}
	}
}

// fastRequest reads body into w if it has the common form (see above).
func fastRequest(body []byte, w *wireRequest) bool {
	r := &fastReader{b: body}
	var v wireRequest
	ok := r.object(func(key string) (uint, bool) {
		var ok bool
		switch key {
		case "id":
			v.ID, ok = r.str()
			return 1, ok
		case "inputs":
			v.Inputs, ok = r.tensors()
			return 2, ok
		case "outputs":
			if !r.byte('[') {
				return 4, false
			}
			v.Outputs = []wireOutput{}
			if r.byte(']') {
				return 4, true
			}
			for {
				var o wireOutput
				if !r.object(func(key string) (uint, bool) {
					if key != "name" {
						return 0, false
					}
					var ok bool
					o.Name, ok = r.str()
					return 1, ok
				}) {
					return 4, false
				}
				v.Outputs = append(v.Outputs, o)
				if r.byte(']') {
					return 4, true
				}
				if !r.byte(',') {
					return 4, false
				}
			}
		}
		return 0, false
	})
	if !ok || !r.end() {
		return false
	}
	*w = v
	return true
}

// fastResponse reads body into w if it has the common form (see above).
func fastResponse(body []byte, w *wireResponse) bool {
	r := &fastReader{b: body}
	var v wireResponse
	ok := r.object(func(key string) (uint, bool) {
		var ok bool
		switch key {
		case "model_name":
			v.ModelName, ok = r.str()
			return 1, ok
		case "model_version":
			v.ModelVersion, ok = r.str()
			return 2, ok
		case "id":
			v.ID, ok = r.str()
			return 4, ok
		case "outputs":
			v.Outputs, ok = r.tensors()
			return 8, ok
		}
		return 0, false
	})
	if !ok || !r.end() {
		return false
	}
	*w = v
	return true
}
