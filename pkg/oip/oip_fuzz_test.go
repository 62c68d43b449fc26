package oip

import (
	"encoding/json"
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/warren-farm/warren/pkg/model"
)

// The fuzz targets of the v2 codec. Each asserts properties, not just "no panic":
// a refused body is a 4xx-class error (ErrBadRequest or a tensor's InputError) of
// bounded size; an accepted one is well formed and survives encode → decode
// unchanged. Seeds live in testdata/fuzz/<target>/ and run with go test;
// make fuzz-smoke runs each target for a few seconds.

// maxErrLen bounds an error message, whatever the body: messages quote no data,
// and names and datatypes they quote are shortened.
const maxErrLen = 2048

var requestSeeds = []string{
	`{"id":"42","parameters":{"p":1,"q":"s","r":true},"inputs":[
	 {"name":"a","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4.5]]},
	 {"name":"b","shape":[3],"datatype":"BYTES","data":["x","h\u00e9","<&>"]},
	 {"name":"c","shape":[2],"datatype":"UINT8","data":[0,255]},
	 {"name":"d","shape":[1],"datatype":"BOOL","data":[true]},
	 {"name":"e","shape":[],"datatype":"INT64","data":9007199254740993}],
	 "outputs":[{"name":"o","parameters":{"binary_data":false}}]}`,
	`{"inputs":[{"name":"h","shape":[2],"datatype":"FP16","data":[65504,1e-8]},{"name":"f","shape":[1,1],"datatype":"FP64","data":[[-0.0]]}]}`,
	`{"inputs":[{"name":"i","shape":[3],"datatype":"INT8","data":[-128,127,0]},{"name":"u","shape":[1],"datatype":"UINT64","data":[18446744073709551615]}]}`,
	`{"inputs":[{"name":"x","shape":[16777216],"datatype":"FP64","data":[1]}]}`,
	`{"inputs":[{"name":"x","shape":[4294967296,4294967296],"datatype":"FP32","data":[1]}]}`,
	`{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]}`,
	`{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES","data":["\ud800"]}]}`,
	`{"id":"\u007f\u0001","inputs":[]}`,
	`{"inputs":[{"name":"x","shape":[0],"datatype":"INT16","data":[]}]}`,
	`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[`,
	`{}`, `null`, ``,
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkFastRequest(t, body)
		req, id, err := DecodeRequest(body, Limits{})
		if err != nil {
			checkRefusal(t, err)
			return
		}
		checkAccepted(t, req.Inputs)
		if len(req.Outputs) > 64 {
			t.Fatalf("%d outputs accepted; the limit is 64", len(req.Outputs))
		}
		enc, err := EncodeRequest(id, req)
		if err != nil {
			t.Fatalf("an accepted request does not encode: %v", err)
		}
		req2, id2, err := DecodeRequest(enc, Limits{})
		if err != nil {
			t.Fatalf("the encoding of an accepted request is refused: %v\n%s", err, enc)
		}
		if id2 != id || !reflect.DeepEqual(req2.Inputs, req.Inputs) || !reflect.DeepEqual(req2.Outputs, req.Outputs) ||
			!sameParams(req2.Parameters, req.Parameters) {
			t.Fatalf("round trip changed the request:\n%q %+v\n%q %+v", id, req, id2, req2)
		}
	})
}

var responseSeeds = []string{
	`{"model_name":"seed","model_version":"1","id":"r","outputs":[
	 {"name":"class","shape":[1],"datatype":"BYTES","data":["cat"]},
	 {"name":"confidence","shape":[1],"datatype":"FP64","data":[0.9]},
	 {"name":"input_length","shape":[1],"datatype":"INT64","data":[3]},
	 {"name":"message","shape":[1],"datatype":"BYTES","data":["Predicted class: cat with 90.0% confidence"]}]}`,
	`{"model_name":"digits","outputs":[{"name":"probabilities","datatype":"FP32","shape":[1,10],"data":[[0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1]]}]}`,
	`{"model_name":"x","outputs":[{"name":"o","shape":[1],"datatype":"UINT32","data":[4294967296]}]}`,
	`{"model_name":"x","outputs":null}`, `{"outputs":[{}]}`,
}

func FuzzDecodeResponse(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkFastResponse(t, body)
		r, err := DecodeResponse(body, Limits{})
		if err != nil {
			checkRefusal(t, err)
			return
		}
		checkAccepted(t, r.Outputs)
		enc, err := EncodeResponse(r.ModelName, r.ModelVersion, r.ID, r.Outputs)
		if err != nil {
			t.Fatalf("an accepted response does not encode: %v", err)
		}
		r2, err := DecodeResponse(enc, Limits{})
		if err != nil {
			t.Fatalf("the encoding of an accepted response is refused: %v\n%s", err, enc)
		}
		if r2.ModelName != r.ModelName || r2.ModelVersion != r.ModelVersion || r2.ID != r.ID ||
			!reflect.DeepEqual(r2.Outputs, r.Outputs) {
			t.Fatalf("round trip changed the response:\n%+v\n%+v", r, r2)
		}
	})
}

// checkRefusal: a refused body is a client error of bounded size.
func checkRefusal(t *testing.T, err error) {
	t.Helper()
	var ie *model.InputError
	if !errors.Is(err, ErrBadRequest) && !errors.As(err, &ie) {
		t.Fatalf("refusal %v (%T) is neither ErrBadRequest nor an InputError", err, err)
	}
	if len(err.Error()) > maxErrLen {
		t.Fatalf("error message of %d bytes (bound %d): %.200s…", len(err.Error()), maxErrLen, err)
	}
}

// checkAccepted: every accepted tensor is well formed and within the limits.
func checkAccepted(t *testing.T, ts []model.Tensor) {
	t.Helper()
	if len(ts) > 64 {
		t.Fatalf("%d tensors accepted; the limit is 64", len(ts))
	}
	for i := range ts {
		if err := ts[i].Check(); err != nil {
			t.Fatalf("accepted a malformed tensor: %v", err)
		}
		if ts[i].Len() > 1<<24 || len(ts[i].Shape) > 16 || len(ts[i].Name) > 256 {
			t.Fatalf("tensor %q beyond the limits: %d elements, rank %d", ts[i].Name, ts[i].Len(), len(ts[i].Shape))
		}
	}
}

// sameParams compares parameters, nil and empty alike (an empty object is not
// written back).
func sameParams(a, b map[string]any) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

// TestShapeDoesNotReserveMemory: a tensor whose shape promises 2^24 FP64 elements
// but whose data holds one is refused without reserving 128 MiB for it.
func TestShapeDoesNotReserveMemory(t *testing.T) {
	body := []byte(`{"inputs":[` + strings.Repeat(`{"name":"x","shape":[16777216],"datatype":"FP64","data":[1]},`, 7) +
		`{"name":"x","shape":[16777216],"datatype":"FP64","data":[1]}]}`)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, _, err := DecodeRequest(body, Limits{})
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "data has 1 elements, the shape says 16777216") {
		t.Fatalf("err = %v", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Fatalf("refusing %d bytes of body allocated %d bytes", len(body), got)
	}
}

// TestDecodeRefusesDeepJSON: nesting beyond jsonlimit.MaxDepth is refused before
// decoding, in requests and responses.
func TestDecodeRefusesDeepJSON(t *testing.T) {
	deep := []byte(`{"inputs":[],"parameters":{"p":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}`)
	if _, _, err := DecodeRequest(deep, Limits{}); err == nil || !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "nested deeper than 64 levels") {
		t.Fatalf("request: %v", err)
	}
	if _, err := DecodeResponse(deep, Limits{}); err == nil || !strings.Contains(err.Error(), "nested deeper than 64 levels") {
		t.Fatalf("response: %v", err)
	}
}

// TestErrorsDoNotQuoteData: the decoder's errors name the element, never its value.
func TestErrorsDoNotQuoteData(t *testing.T) {
	const marker = "S3CR3T-marker"
	for _, body := range []string{
		`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":["` + marker + `"]}]}`,
		`{"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[1234567890123]}]}`,
		`{"inputs":[{"name":"x","shape":[1],"datatype":"BOOL","data":["` + marker + `"]}]}`,
		`{"inputs":[{"name":"x","shape":[2],"datatype":"BYTES","data":["` + marker + `"]}]}`,
		`{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES","data":["` + marker + `", "` + marker + `"]}]}`,
	} {
		_, _, err := DecodeRequest([]byte(body), Limits{})
		if err == nil {
			t.Fatalf("%s accepted", body)
		}
		if strings.Contains(err.Error(), marker) || strings.Contains(err.Error(), "1234567890123") {
			t.Errorf("error quotes the data: %v", err)
		}
	}
}

// checkFastRequest: whatever the fast path reads, encoding/json reads the same way.
func checkFastRequest(t *testing.T, body []byte) {
	var fast, slow wireRequest
	if !fastRequest(body, &fast) {
		return
	}
	if err := strictUnmarshal(body, &slow); err != nil {
		t.Fatalf("the fast path read a body encoding/json refuses (%v):\n%q", err, body)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("the fast path read\n%+v\nencoding/json read\n%+v\nfrom %q", fast, slow, body)
	}
}

// checkFastResponse is checkFastRequest for responses.
func checkFastResponse(t *testing.T, body []byte) {
	var fast, slow wireResponse
	if !fastResponse(body, &fast) {
		return
	}
	if err := json.Unmarshal(body, &slow); err != nil {
		t.Fatalf("the fast path read a body encoding/json refuses (%v):\n%q", err, body)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("the fast path read\n%+v\nencoding/json read\n%+v\nfrom %q", fast, slow, body)
	}
}
