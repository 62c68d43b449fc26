// Package oip is warren's codec for the Open Inference Protocol (the KServe "v2"
// REST protocol, spoken by KServe, Triton, MLServer and TorchServe): the JSON
// inference request and response, model metadata, and the error body. The API
// decodes and validates what clients send, the worker decodes what it consumes and
// encodes its answers, and the http backend speaks it to remote model servers.
//
// # Tensor data
//
// A tensor's "data" is read row-major, flat or nested to any depth; its element
// count must equal the product of its shape. BOOL data are JSON booleans, BYTES data
// JSON strings (text: valid UTF-8), every other datatype JSON numbers that fit it
// (integers for the integer types; FP16 values are rounded to half precision).
// NaN and infinities cannot be written in JSON: a model output holding one is an
// error, never invalid JSON.
//
// # Limits
//
// [Limits] bounds what a decoder accepts (tensors per request, elements per
// tensor, nesting, name length), so no body can make a process allocate without
// bound; the HTTP body limit bounds the rest. A tensor's memory is reserved for
// no more elements than its "data" can hold, whatever its shape claims, and no
// document may nest deeper than [jsonlimit.MaxDepth] levels.
//
// # Errors never quote data
//
// Errors name the tensor, the element's index and what was wrong with it, never
// the element's value: they travel into error replies, job records, traces and
// logs, where a client's inputs must not appear.
package oip

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/warren-farm/warren/internal/jsonlimit"
	"github.com/warren-farm/warren/pkg/model"
)

// Limits bounds what a decoder accepts. The zero value of a field means its
// default.
type Limits struct {
	// MaxTensors per request or response; zero means 64.
	MaxTensors int
	// MaxElements per tensor; zero means 1<<24 (16,777,216).
	MaxElements int
	// MaxRank: dimensions per tensor shape (and so the data's nesting); zero means 16.
	MaxRank int
	// MaxNameLen for ids and tensor names; zero means 256.
	MaxNameLen int
}

func (l Limits) withDefaults() Limits {
	if l.MaxTensors == 0 {
		l.MaxTensors = 64
	}
	if l.MaxElements == 0 {
		l.MaxElements = 1 << 24
	}
	if l.MaxRank == 0 {
		l.MaxRank = 16
	}
	if l.MaxNameLen == 0 {
		l.MaxNameLen = 256
	}
	return l
}

// ErrBadRequest marks a body that is not a valid inference request (or response):
// malformed JSON, a missing field, a limit exceeded. Tensor-level problems are
// *model.InputError values, which name the tensor.
var ErrBadRequest = errors.New("bad inference request")

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// wireTensor is a tensor as it appears in JSON.
type wireTensor struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   model.Datatype  `json:"datatype"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data"`
}

type wireOutput struct {
	Name       string         `json:"name"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

type wireRequest struct {
	ID         string         `json:"id,omitempty"`
	Parameters map[string]any `json:"parameters,omitempty"`
	Inputs     []wireTensor   `json:"inputs"`
	Outputs    []wireOutput   `json:"outputs,omitempty"`
}

type wireResponse struct {
	ModelName    string         `json:"model_name"`
	ModelVersion string         `json:"model_version,omitempty"`
	ID           string         `json:"id,omitempty"`
	Parameters   map[string]any `json:"parameters,omitempty"`
	Outputs      []wireTensor   `json:"outputs"`
}

// DecodeRequest reads an inference request. It checks the JSON, the limits, every
// tensor's datatype, shape and data; it does not check the request against a
// model's metadata (see [model.Metadata.Validate]). The request's "id" is returned
// separately: the id to echo in the response.
func DecodeRequest(body []byte, lim Limits) (req *model.Request, id string, err error) {
	lim = lim.withDefaults()
	if jsonlimit.TooDeep(body, jsonlimit.MaxDepth) {
		return nil, "", bad("JSON nested deeper than %d levels", jsonlimit.MaxDepth)
	}
	var w wireRequest
	if fastRequest(body, &w) {
		if req, id, err := finishRequest(&w, lim); err == nil {
			return req, id, nil
		}
		w = wireRequest{} // refused: encoding/json's reading gives the error
	}
	if err := strictUnmarshal(body, &w); err != nil {
		return nil, "", bad("%s", err)
	}
	return finishRequest(&w, lim)
}

// finishRequest checks a request's wire form and converts it.
func finishRequest(w *wireRequest, lim Limits) (req *model.Request, id string, err error) {
	if len(w.ID) > lim.MaxNameLen {
		return nil, "", bad("id is longer than %d bytes", lim.MaxNameLen)
	}
	if err := checkParams("parameters", w.Parameters); err != nil {
		return nil, "", err
	}
	if w.Inputs == nil {
		return nil, "", bad(`"inputs" is required`)
	}
	if len(w.Inputs) > lim.MaxTensors || len(w.Outputs) > lim.MaxTensors {
		return nil, "", bad("more than %d inputs or outputs", lim.MaxTensors)
	}
	req = &model.Request{Parameters: w.Parameters, Inputs: make([]model.Tensor, len(w.Inputs))}
	for i := range w.Inputs {
		t, err := decodeTensor(&w.Inputs[i], lim)
		if err != nil {
			return nil, "", err
		}
		req.Inputs[i] = t
	}
	for _, o := range w.Outputs {
		if o.Name == "" {
			return nil, "", bad("an entry of \"outputs\" has no name")
		}
		if err := checkParams("outputs parameters", o.Parameters); err != nil {
			return nil, "", err
		}
		req.Outputs = append(req.Outputs, o.Name)
	}
	return req, w.ID, nil
}

// Response is a decoded inference response.
type Response struct {
	ModelName, ModelVersion, ID string
	Parameters                  map[string]any
	Outputs                     []model.Tensor
}

// DecodeResponse reads an inference response (from a remote v2 server, or a
// worker's reply).
func DecodeResponse(body []byte, lim Limits) (*Response, error) {
	lim = lim.withDefaults()
	if jsonlimit.TooDeep(body, jsonlimit.MaxDepth) {
		return nil, bad("JSON nested deeper than %d levels", jsonlimit.MaxDepth)
	}
	var w wireResponse
	if fastResponse(body, &w) {
		if r, err := finishResponse(&w, lim); err == nil {
			return r, nil
		}
		w = wireResponse{} // refused: encoding/json's reading gives the error
	}
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, bad("%s", err)
	}
	return finishResponse(&w, lim)
}

// finishResponse checks a response's wire form and converts it.
func finishResponse(w *wireResponse, lim Limits) (*Response, error) {
	if w.Outputs == nil {
		return nil, bad(`"outputs" is required`)
	}
	if len(w.Outputs) > lim.MaxTensors {
		return nil, bad("more than %d outputs", lim.MaxTensors)
	}
	r := &Response{ModelName: w.ModelName, ModelVersion: w.ModelVersion, ID: w.ID, Parameters: w.Parameters,
		Outputs: make([]model.Tensor, len(w.Outputs))}
	for i := range w.Outputs {
		t, err := decodeTensor(&w.Outputs[i], lim)
		if err != nil {
			return nil, err
		}
		r.Outputs[i] = t
	}
	return r, nil
}

func decodeTensor(w *wireTensor, lim Limits) (model.Tensor, error) {
	name := w.Name
	switch {
	case name == "":
		return model.Tensor{}, bad("a tensor has no name")
	case len(name) > lim.MaxNameLen:
		return model.Tensor{}, bad("a tensor name is longer than %d bytes", lim.MaxNameLen)
	case w.Shape == nil:
		return model.Tensor{}, model.BadInput(name, `"shape" is required`)
	case len(w.Shape) > lim.MaxRank:
		return model.Tensor{}, model.BadInput(name, "shape has more than %d dimensions", lim.MaxRank)
	case w.Datatype == "":
		return model.Tensor{}, model.BadInput(name, `"datatype" is required`)
	case !w.Datatype.Valid():
		return model.Tensor{}, model.BadInput(name, "unknown datatype %q (one of BOOL, UINT8…UINT64, INT8…INT64, FP16, FP32, FP64, BYTES)", shorten([]byte(w.Datatype)))
	case len(w.Data) == 0:
		return model.Tensor{}, model.BadInput(name, `"data" is required (the binary tensor extension is not supported)`)
	}
	if err := checkParams("parameters of "+strconv.Quote(name), w.Parameters); err != nil {
		return model.Tensor{}, err
	}
	n, err := model.NumElements(w.Shape)
	if err != nil {
		return model.Tensor{}, model.BadInput(name, "%s", err)
	}
	if n > lim.MaxElements {
		return model.Tensor{}, model.BadInput(name, "shape %v has %d elements; the limit is %d", w.Shape, n, lim.MaxElements)
	}
	data, err := decodeData(w.Data, w.Datatype, n, max(len(w.Shape), 1))
	if err != nil {
		return model.Tensor{}, model.BadInput(name, "%s", err)
	}
	return model.Tensor{Name: name, Datatype: w.Datatype, Shape: w.Shape, Data: data, Parameters: w.Parameters}, nil
}

// checkParams enforces the protocol's parameter values: strings, numbers, booleans.
func checkParams(where string, p map[string]any) error {
	for k, v := range p {
		switch v.(type) {
		case string, float64, bool, json.Number:
		default:
			return bad("%s: %q must be a string, number or boolean", where, shorten([]byte(k)))
		}
	}
	return nil
}

// strictUnmarshal decodes one JSON value into v; trailing data is an error.
func strictUnmarshal(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fmt.Errorf("field %q must be %s, not %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
		}
		return err
	}
	if dec.More() {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	case "bool":
		return "a boolean"
	}
	return "a number"
}

// EncodeRequest writes an inference request (the API's /process translation, and
// the http backend's calls to remote v2 servers).
func EncodeRequest(id string, r *model.Request) ([]byte, error) {
	b := make([]byte, 0, 256)
	b = append(b, '{')
	if id != "" {
		b = append(b, `"id":`...)
		b = appendString(b, id)
		b = append(b, ',')
	}
	if len(r.Parameters) > 0 {
		p, err := json.Marshal(r.Parameters)
		if err != nil {
			return nil, err
		}
		b = append(b, `"parameters":`...)
		b = append(b, p...)
		b = append(b, ',')
	}
	b = append(b, `"inputs":`...)
	b, err := appendTensors(b, r.Inputs)
	if err != nil {
		return nil, err
	}
	if len(r.Outputs) > 0 {
		b = append(b, `,"outputs":[`...)
		for i, o := range r.Outputs {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"name":`...)
			b = appendString(b, o)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

// EncodeResponse writes an inference response for model name/version, echoing id
// (omitted when empty).
func EncodeResponse(name, version, id string, outputs []model.Tensor) ([]byte, error) {
	b := make([]byte, 0, 256)
	b = append(b, `{"model_name":`...)
	b = appendString(b, name)
	if version != "" {
		b = append(b, `,"model_version":`...)
		b = appendString(b, version)
	}
	if id != "" {
		b = append(b, `,"id":`...)
		b = appendString(b, id)
	}
	b = append(b, `,"outputs":`...)
	b, err := appendTensors(b, outputs)
	if err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

func appendTensors(b []byte, ts []model.Tensor) ([]byte, error) {
	b = append(b, '[')
	for i := range ts {
		t := &ts[i]
		if err := t.Check(); err != nil {
			return nil, err
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendString(b, t.Name)
		b = append(b, `,"datatype":"`...)
		b = append(b, t.Datatype...)
		b = append(b, `","shape":[`...)
		for j, d := range t.Shape {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, d, 10)
		}
		b = append(b, ']')
		if len(t.Parameters) > 0 {
			p, err := json.Marshal(t.Parameters)
			if err != nil {
				return nil, err
			}
			b = append(b, `,"parameters":`...)
			b = append(b, p...)
		}
		b = append(b, `,"data":`...)
		var err error
		if b, err = appendData(b, t); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		b = append(b, '}')
	}
	return append(b, ']'), nil
}

// appendData writes Data as a flat JSON array.
func appendData(b []byte, t *model.Tensor) ([]byte, error) {
	b = append(b, '[')
	var err error
	switch d := t.Data.(type) {
	case []bool:
		b = each(b, d, strconv.AppendBool)
	case []uint8:
		b = each(b, d, func(b []byte, v uint8) []byte { return strconv.AppendUint(b, uint64(v), 10) })
	case []uint16:
		b = each(b, d, func(b []byte, v uint16) []byte { return strconv.AppendUint(b, uint64(v), 10) })
	case []uint32:
		b = each(b, d, func(b []byte, v uint32) []byte { return strconv.AppendUint(b, uint64(v), 10) })
	case []uint64:
		b = each(b, d, func(b []byte, v uint64) []byte { return strconv.AppendUint(b, v, 10) })
	case []int8:
		b = each(b, d, func(b []byte, v int8) []byte { return strconv.AppendInt(b, int64(v), 10) })
	case []int16:
		b = each(b, d, func(b []byte, v int16) []byte { return strconv.AppendInt(b, int64(v), 10) })
	case []int32:
		b = each(b, d, func(b []byte, v int32) []byte { return strconv.AppendInt(b, int64(v), 10) })
	case []int64:
		b = each(b, d, func(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) })
	case []float32:
		for i, v := range d {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("element %d is %v, which JSON cannot carry", i, v)
			}
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendFloat(b, float64(v), 'g', -1, 32)
		}
	case []float64:
		for i, v := range d {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("element %d is %v, which JSON cannot carry", i, v)
			}
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendFloat(b, v, 'g', -1, 64)
		}
	case []string:
		b = each(b, d, appendString)
	default:
		err = fmt.Errorf("data of type %T", t.Data)
	}
	return append(b, ']'), err
}

func each[T any](b []byte, vs []T, f func([]byte, T) []byte) []byte {
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = f(b, v)
	}
	return b
}

// appendString writes s as a JSON string without HTML escaping (<, >, & travel as
// they are). Invalid UTF-8 becomes U+FFFD, as encoding/json does.
func appendString(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if simple(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	_ = enc.Encode(s)
	return append(b, bytes.TrimRight(buf.Bytes(), "\n")...)
}

// simple reports whether s needs no escaping at all.
func simple(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return false
		}
	}
	return true
}
