package httperr

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestBoolIsPydanticLax(t *testing.T) {
	for raw, want := range map[string]bool{
		`true`: true, `false`: false, `1`: true, `0`: false, `"yes"`: true, `"No"`: false, `"ON"`: true,
		`"off"`: false, `"t"`: true, `"F"`: false, `"y"`: true, `"n"`: false, `"1"`: true, `"0"`: false,
	} {
		ve := &ValidationError{}
		if got := Bool(map[string]json.RawMessage{"b": json.RawMessage(raw)}, "b", !want, ve); got != want || ve.OrNil() != nil {
			t.Errorf("Bool(%s) = %v, %v", raw, got, ve.OrNil())
		}
	}
	for _, raw := range []string{`2`, `"maybe"`, `null`, `[]`, `{}`, `0.5`, `""`} {
		ve := &ValidationError{}
		Bool(map[string]json.RawMessage{"b": json.RawMessage(raw)}, "b", true, ve)
		if len(ve.Items) != 1 || ve.Items[0].Type != "bool_parsing" {
			t.Errorf("Bool(%s) accepted", raw)
		}
	}
	if !Bool(map[string]json.RawMessage{}, "b", true, &ValidationError{}) {
		t.Error("default not applied")
	}
}

func TestObjectAndString(t *testing.T) {
	if _, err := Object([]byte(`{"a":`)); !strings.Contains(err.Error(), "JSON decode error") {
		t.Errorf("malformed: %v", err)
	}
	var ve *ValidationError
	for _, body := range []string{`"str"`, `null`, ` null `, `[{"data":"x"}]`, `1`, `true`} {
		ve = nil
		if _, err := Object([]byte(body)); !errors.As(err, &ve) || ve.Items[0].Type != "model_attributes_type" {
			t.Errorf("non-object %s: %v", body, err)
		}
	}
	// A syntax error anywhere, even after a valid object's start, is json_invalid.
	for _, body := range []string{`{"data":"x"} x`, `{"data":[1,}`, `nul`} {
		ve = nil
		if _, err := Object([]byte(body)); !errors.As(err, &ve) || ve.Items[0].Type != "json_invalid" {
			t.Errorf("malformed %s: %v", body, err)
		}
	}
	obj, err := Object([]byte(`{"s":"x","n":1,"nul":null}`))
	if err != nil {
		t.Fatal(err)
	}
	v := &ValidationError{}
	if s, ok := String(obj, "s", v); !ok || s != "x" {
		t.Error("string")
	}
	String(obj, "n", v)
	String(obj, "nul", v)
	String(obj, "missing", v)
	types := []string{}
	for _, it := range v.Items {
		types = append(types, it.Type)
	}
	if strings.Join(types, ",") != "string_type,string_type,missing" {
		t.Errorf("items %v", types)
	}
}

func TestReadBodyLimit(t *testing.T) {
	r := httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("a", 11)))
	r.ContentLength = -1 // chunked: the limit must hold without a length
	_, err := ReadBody(r, 10)
	var he *Error
	if !errors.As(err, &he) || he.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("err = %v", err)
	}
	r = httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("a", 10)))
	if b, err := ReadBody(r, 10); err != nil || len(b) != 10 {
		t.Fatalf("at the limit: %v", err)
	}
}
