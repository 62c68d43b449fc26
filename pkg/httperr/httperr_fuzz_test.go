package httperr

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzLabFields drives the lax field parsing of the seed lab's bodies (/process,
// POST /jobs {"data"}, the worker's /predict): whatever the body, the answer is a
// 422 with pydantic-shaped items of known types, rendered as valid JSON of
// bounded size, or the fields as JSON itself reads them.
func FuzzLabFields(f *testing.F) {
	for _, s := range []string{
		`{"data":"hello","forward_to_model":true}`, `{"data":"x","forward_to_model":"off"}`,
		`{"data":1}`, `{"data":null}`, `{}`, `[]`, `"s"`, `{"data":"\ud800"}`, "{\"data\":\"\xff\"}",
		`{"data":"a","forward_to_model":2}`, `{"data":"a","data":"b"}`, `{`, ``,
		`{"data":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		obj, err := Object(body)
		if err != nil {
			ve := checkItems(t, err, "json_invalid", "model_attributes_type")
			if len(ve.Items) != 1 {
				t.Fatalf("Object refused with %d items", len(ve.Items))
			}
			checkRendered(t, err, len(body))
			return
		}
		ve := &ValidationError{}
		s, ok := String(obj, "data", ve)
		if ok {
			var want string
			if err := json.Unmarshal(obj["data"], &want); err != nil || want != s || !utf8.ValidString(s) {
				t.Fatalf("String = %q, JSON reads %q (%v)", s, want, err)
			}
			if len(ve.Items) != 0 {
				t.Fatalf("String ok with items %v", ve.Items)
			}
		} else if len(ve.Items) != 1 {
			t.Fatalf("String refused with %d items", len(ve.Items))
		}
		n := len(ve.Items)
		Bool(obj, "forward_to_model", true, ve)
		if len(ve.Items) > n+1 {
			t.Fatalf("Bool added %d items", len(ve.Items)-n)
		}
		if err := ve.OrNil(); err != nil {
			checkItems(t, err, "missing", "string_type", "string_unicode", "bool_parsing")
			checkRendered(t, err, len(body))
		}
	})
}

func checkItems(t *testing.T, err error, types ...string) *ValidationError {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("%v (%T) is not a ValidationError", err, err)
	}
	for _, it := range ve.Items {
		if !slices.Contains(types, it.Type) || it.Msg == "" || len(it.Loc) == 0 || it.Loc[0] != "body" {
			t.Fatalf("unexpected item %+v", it)
		}
	}
	return ve
}

// checkRendered: both error shapes render as valid JSON, 422 (lab) or 400 (v2),
// no larger than a bound: the echoed input can grow by escaping (an invalid
// byte becomes U+FFFD's three) but not without bound.
func checkRendered(t *testing.T, err error, bodyLen int) {
	t.Helper()
	for _, v2 := range []bool{false, true} {
		status, body := render(err, v2)
		if want := map[bool]int{false: http.StatusUnprocessableEntity, true: http.StatusBadRequest}[v2]; status != want {
			t.Fatalf("v2=%v: status %d, want %d", v2, status, want)
		}
		b, merr := Marshal(body)
		if merr != nil || !json.Valid(b) {
			t.Fatalf("v2=%v: rendered body is not JSON (%v): %s", v2, merr, b)
		}
		if len(b) > 4*bodyLen+1024 {
			t.Fatalf("v2=%v: %d-byte answer to a %d-byte body", v2, len(b), bodyLen)
		}
	}
}

// TestObjectRefusesDeepJSON: nesting beyond jsonlimit.MaxDepth is a 422
// json_invalid naming the limit.
func TestObjectRefusesDeepJSON(t *testing.T) {
	_, err := Object([]byte(`{"data":` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + `}`))
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Items[0].Type != "json_invalid" || !strings.Contains(ve.Items[0].Msg, "nested deeper than 64 levels") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Object([]byte(`{"data":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}`)); err != nil {
		t.Fatalf("63 levels refused: %v", err)
	}
}
