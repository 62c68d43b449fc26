package oip

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/warren-farm/warren/pkg/model"
)

func TestDecodeRequestNestedAndFlat(t *testing.T) {
	body := `{"id":"42","parameters":{"p":1},"inputs":[
	 {"name":"a","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4.5]]},
	 {"name":"b","shape":[3],"datatype":"BYTES","data":["x","h\u00e9","<&>"]},
	 {"name":"c","shape":[2],"datatype":"UINT8","data":[0,255]},
	 {"name":"d","shape":[1],"datatype":"BOOL","data":[true]},
	 {"name":"e","shape":[],"datatype":"INT64","data":9007199254740993}],
	 "outputs":[{"name":"o"}]}`
	r, id, err := DecodeRequest([]byte(body), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if id != "42" || len(r.Inputs) != 5 || !reflect.DeepEqual(r.Outputs, []string{"o"}) {
		t.Fatalf("%q %+v", id, r)
	}
	want := []any{[]float32{1, 2, 3, 4.5}, []string{"x", "hé", "<&>"}, []uint8{0, 255}, []bool{true}, []int64{9007199254740993}}
	for i, w := range want {
		if !reflect.DeepEqual(r.Inputs[i].Data, w) {
			t.Errorf("input %d: %#v want %#v", i, r.Inputs[i].Data, w)
		}
	}
}

func TestDecodeRequestErrorsNameTheTensor(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}`, `input "x": data has 2 elements, the shape says 3`},
		{`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1,2]}]}`, `input "x": data has more elements than the shape's 1`},
		{`{"inputs":[{"name":"x","shape":[1],"datatype":"UINT8","data":[256]}]}`, `input "x": element 0 is not a valid UINT8`},
		{`{"inputs":[{"name":"x","shape":[1],"datatype":"INT32","data":[1.5]}]}`, `input "x": element 0 is not a valid INT32`},
		{`{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES","data":[1]}]}`, `input "x": element 0 is a number, a BYTES element must be a string`},
		{`{"inputs":[{"name":"x","shape":[1],"datatype":"FP99","data":[1]}]}`, `input "x": unknown datatype "FP99"`},
		{`{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]}`, `input "x": dimension 0 is -1`},
		{`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}`, `input "x": "data" is required`},
		{`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[[[1]]]}]}`, `input "x": data is nested deeper than its shape's 1 dimensions`},
		{"{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[\"\xff\"]}]}", `input "x": a string is not valid UTF-8`},
		{`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[NaN]}]}`, `invalid character 'N'`},
		{`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"parameters":{"p":[1]}}`, `"p" must be a string, number or boolean`},
		{`{"inputs":[{"name":"x","shape":[4294967296,4294967296],"datatype":"FP32","data":[1]}]}`, `more than 2147483647 elements`},
		{`{"inputs":"x"}`, `field "inputs" must be an array`},
		{`{}`, `"inputs" is required`},
		{`[1]`, `bad inference request`},
	} {
		_, _, err := DecodeRequest([]byte(tc.body), Limits{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant …%s…", tc.body, err, tc.want)
		}
		if err != nil && !errors.Is(err, ErrBadRequest) && !errors.Is(err, model.ErrBadInput) {
			t.Errorf("%s: %v is neither ErrBadRequest nor ErrBadInput", tc.body, err)
		}
	}
}

func TestResponseRoundTrip(t *testing.T) {
	outs := []model.Tensor{
		{Name: "p", Datatype: model.FP32, Shape: []int64{1, 3}, Data: []float32{0.1, 0.2, 0.7}},
		{Name: "l", Datatype: model.INT64, Shape: []int64{1}, Data: []int64{-3}},
		{Name: "s", Datatype: model.BYTES, Shape: []int64{2}, Data: []string{"a\"b", "<é>\n"}},
		{Name: "h", Datatype: model.FP16, Shape: []int64{1}, Data: []float32{RoundHalf(0.1)}},
	}
	b, err := EncodeResponse("m", "1", "x", outs)
	if err != nil {
		t.Fatal(err)
	}
	r, err := DecodeResponse(b, Limits{})
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if r.ModelName != "m" || r.ModelVersion != "1" || r.ID != "x" || !reflect.DeepEqual(r.Outputs, outs) {
		t.Fatalf("%s\n%+v", b, r)
	}
	if _, err := EncodeResponse("m", "", "", []model.Tensor{{Name: "n", Datatype: model.FP64, Shape: []int64{1}, Data: []float64{math.NaN()}}}); err == nil {
		t.Fatal("NaN encoded")
	}
}

func TestRequestRoundTrip(t *testing.T) {
	in := &model.Request{Inputs: []model.Tensor{{Name: "data", Datatype: model.BYTES, Shape: []int64{1}, Data: []string{"cat image data"}}},
		Outputs: []string{"class"}, Parameters: map[string]any{"k": "v"}}
	b, err := EncodeRequest("id-1", in)
	if err != nil {
		t.Fatal(err)
	}
	got, id, err := DecodeRequest(b, Limits{})
	if err != nil || id != "id-1" || !reflect.DeepEqual(got, in) {
		t.Fatalf("%s\n%+v %v", b, got, err)
	}
}

func TestRoundHalf(t *testing.T) {
	for _, tc := range []struct{ in, want float32 }{
		{1, 1}, {0.1, 0.0999755859375}, {65504, 65504}, {65520, float32(math.Inf(1))}, {-2.5, -2.5},
		{5.960464477539063e-08, 5.960464477539063e-08}, {1e-9, 0},
	} {
		if got := RoundHalf(tc.in); got != tc.want {
			t.Errorf("RoundHalf(%v) = %v want %v", tc.in, got, tc.want)
		}
	}
}

// What warren writes itself takes the fast path: a seed request as the API encodes
// it, and the answers the seed and digits models give. (If this fails, the fast
// path no longer recognises the common form and every body pays for encoding/json
// again: correct, but slow.)
func TestFastPathTakesWhatWarrenWrites(t *testing.T) {
	req, err := EncodeRequest("", &model.Request{Inputs: []model.Tensor{
		{Name: "text", Datatype: model.BYTES, Shape: []int64{1}, Data: []string{"hello there"}}}})
	if err != nil {
		t.Fatal(err)
	}
	var wr wireRequest
	if !fastRequest(req, &wr) {
		t.Errorf("a seed request took the slow path: %s", req)
	}
	resp, err := EncodeResponse("seed", "1", "r1", []model.Tensor{
		{Name: "class", Datatype: model.BYTES, Shape: []int64{1}, Data: []string{"positive"}},
		{Name: "confidence", Datatype: model.FP64, Shape: []int64{1}, Data: []float64{0.87}},
		{Name: "input_length", Datatype: model.INT64, Shape: []int64{1}, Data: []int64{11}},
		{Name: "probabilities", Datatype: model.FP32, Shape: []int64{1, 3}, Data: []float32{0.25, 1e-7, -3.5e+20}},
		{Name: "ok", Datatype: model.BOOL, Shape: []int64{2}, Data: []bool{true, false}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var ws wireResponse
	if !fastResponse(resp, &ws) {
		t.Errorf("a seed answer took the slow path: %s", resp)
	}
	// And each reads the same as through encoding/json.
	checkFastRequest(t, req)
	checkFastResponse(t, resp)
	// Bodies outside the common form are left to encoding/json.
	for _, body := range []string{
		`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[01]}]}`,
		`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"inputs":[]}`,
		`{"Inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`,
		`{"inputs":[{"name":"x","shape":[1.0],"datatype":"FP32","data":[1]}]}`,
		`{"inputs":[{"name":"caf\u00e9","shape":[1],"datatype":"FP32","data":[1]}]}`,
		`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1],"parameters":{}}]}`,
		`{"inputs":[]} x`,
	} {
		var w wireRequest
		if fastRequest([]byte(body), &w) {
			t.Errorf("the fast path read %s", body)
		}
	}
}
