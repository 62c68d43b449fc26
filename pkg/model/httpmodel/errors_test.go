package httpmodel

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/warren-farm/warren/pkg/model"
)

func TestErrorMessage(t *testing.T) {
	long := strings.Repeat("é", 1000)
	for _, tc := range []struct{ body, want string }{
		{`{"error":"  model 'x' is not found \n"}`, "model 'x' is not found"},
		{`{"detail":"Not Found"}`, "Not Found"},
		{`{"detail":[{"loc":["body","input"],"msg":"field required","type":"value_error.missing"}]}`, "body.input: field required"},
		{`{"detail":[{"loc":["body",0],"msg":"a"},{"loc":[],"msg":"b"}]}`, "body.0: a; b"},
		{`{"detail":{"code":7,"why":"x"}}`, `{"code":7,"why":"x"}`},
		{`{"code":503,"type":"ServiceUnavailable","message":"Model not loaded"}`, "Model not loaded"},
		{`{"error":null,"message":"m"}`, "m"},
		{"Internal Server Error", "Internal Server Error"},
		{"<html>\n<body>bad\tgateway</body>\n</html>", "<html> <body>bad gateway</body> </html>"},
		{"", "(empty body)"},
		{"  \n", "(empty body)"},
		{"\xff\xfeoops", "\uFFFDoops"}, // a run of invalid bytes is one U+FFFD
		{`[1,2]`, "[1,2]"},
	} {
		if got := errorMessage([]byte(tc.body)); got != tc.want {
			t.Errorf("errorMessage(%q) = %q, want %q", tc.body, got, tc.want)
		}
	}
	got := errorMessage([]byte(`{"error":"` + long + `"}`))
	if len(got) > maxMessage+len("…") || !strings.HasSuffix(got, "…") || !utf8.ValidString(got) {
		t.Errorf("a long message is not bounded at a character boundary: %d bytes, %q…", len(got), got[:20])
	}
}

func TestSnippet(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"abcdef", 3, "abc…"},
		{"ab€def", 4, "ab…"}, // € is 3 bytes: not cut in half
		{"ab€def", 5, "ab€…"},
		{"a\x00b", 10, "a b"},
	} {
		if got := snippet([]byte(tc.in), tc.n); got != tc.want {
			t.Errorf("snippet(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestStatusErrorClass(t *testing.T) {
	for _, tc := range []struct {
		code int
		want error // nil: a plain model error
	}{
		{400, model.ErrBadInput}, {409, model.ErrBadInput}, {413, model.ErrBadInput}, {422, model.ErrBadInput},
		{401, nil}, {403, nil}, {404, nil}, {405, nil},
		{408, model.ErrUnavailable}, {429, model.ErrUnavailable}, {503, model.ErrUnavailable},
		{500, nil}, {502, nil}, {504, nil}, {301, nil},
	} {
		err := statusError(&reply{code: tc.code, body: []byte(`{"error":"why"}`)})
		var se *StatusError
		if !errors.As(err, &se) || se.Code != tc.code || se.Message != "why" {
			t.Fatalf("%d: %#v", tc.code, err)
		}
		for _, class := range []error{model.ErrBadInput, model.ErrUnavailable, model.ErrTimeout} {
			if errors.Is(err, class) != (class == tc.want) {
				t.Errorf("%d: errors.Is(%v, %v) = %v", tc.code, err, class, !(class == tc.want))
			}
		}
		if !strings.Contains(err.Error(), http.StatusText(tc.code)) || !strings.Contains(err.Error(), "why") {
			t.Errorf("%d: %q lacks the status or the message", tc.code, err)
		}
	}
	if got := statusError(&reply{code: 599}).Error(); got != "the model server answered 599: (empty body)" {
		t.Errorf("unknown status: %q", got)
	}
	if err := statusError(&reply{code: 200}); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeSeed(t *testing.T) {
	good := `{"prediction":{"class":"dog","confidence":0.92,"input_length":14},"message":"Predicted class: dog with 92.0% confidence"}`
	o, err := decodeSeed(&reply{code: 200, body: []byte(good)})
	if err != nil {
		t.Fatal(err)
	}
	want := model.Output{Prediction: model.Prediction{Class: "dog", Confidence: 0.92, InputLength: 14}, Message: "Predicted class: dog with 92.0% confidence"}
	if o != want {
		t.Fatalf("%+v", o)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"message":"m"}`, "no prediction;"},
		{`{"prediction":{"confidence":0.9,"input_length":1},"message":"m"}`, "no prediction.class"},
		{`{"prediction":{"class":"c","input_length":1},"message":"m"}`, "no prediction.confidence"},
		{`{"prediction":{"class":"c","confidence":0.9},"message":"m"}`, "no prediction.input_length"},
		{`{"prediction":{"class":"c","confidence":0.9,"input_length":1}}`, "no message"},
		{`{"prediction":{"class":"c","confidence":0.9,"input_length":1.5},"message":"m"}`, "input_length"},
		{`{"prediction":{"class":1,"confidence":0.9,"input_length":1},"message":"m"}`, "class"},
		{`<html>`, "invalid character"},
	} {
		_, err := decodeSeed(&reply{code: 200, body: []byte(tc.body)})
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, model.ErrBadInput) {
			t.Errorf("%s: %v, want a plain error with %q", tc.body, err, tc.want)
		}
	}
}
