package httpmodel

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzServerReply: what a model server answers, read as an error body and as the
// lab's prediction. An error message is one line of valid UTF-8 of bounded
// length, whatever the body (it goes into error replies and logs); an accepted
// prediction reads back the same from its own JSON.
func FuzzServerReply(f *testing.F) {
	for _, s := range []string{
		`{"prediction":{"class":"cat","confidence":0.9,"input_length":3},"message":"Predicted class: cat"}`,
		`{"detail":[{"loc":["body","input"],"msg":"field required","type":"missing"}]}`,
		`{"error":"bad tensor"}`, `{"message":{"nested":[1,2]}}`, `{"detail":null}`, "plain\x00text\n\tline",
		"\xff\xfe" + strings.Repeat("é", 400), `{"prediction":{"class":"cat"}}`, ``, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// Each byte of the cut text may become U+FFFD (3 bytes), plus "…".
		const bound = 3*maxMessage + len("…")
		msg := errorMessage(body)
		if msg == "" || len(msg) > bound || !utf8.ValidString(msg) || strings.ContainsFunc(msg, unicode.IsControl) {
			t.Fatalf("errorMessage = %q (%d bytes)", msg, len(msg))
		}
		out, err := decodeSeed(&reply{code: 200, body: body})
		if err != nil {
			if len(err.Error()) > 3*maxSnippet+1024 {
				t.Fatalf("a %d-byte error", len(err.Error()))
			}
			return
		}
		b, err := json.Marshal(out)
		if err != nil {
			t.Fatalf("an accepted prediction does not encode: %v", err)
		}
		out2, err := decodeSeed(&reply{code: 200, body: b})
		if err != nil || out2 != out {
			t.Fatalf("round trip: %+v → %s → %+v, %v", out, b, out2, err)
		}
	})
}
