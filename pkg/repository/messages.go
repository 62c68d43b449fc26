package repository

import (
	"bytes"
	"reflect"
	"strings"
)

// unknownKey explains an unknown top-level key, suggesting the closest known one.
func unknownKey(name, backend string, backendOK bool) string {
	if s := suggest(name); s != "" {
		return "unknown key (did you mean " + s + "?)"
	}
	if backendOK {
		return "unknown key (the keys of backend " + backend + ": " + strings.Join(keysOf(backend), ", ") + ")"
	}
	return "unknown key"
}

// suggest returns the known key closest to name: the same once case, '-' and '_'
// are ignored, or at most two edits away.
func suggest(name string) string {
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s))
	}
	best, bestD := "", 3
	for _, k := range keys {
		if norm(k.name) == norm(name) {
			return k.name
		}
		if d := distance(name, k.name); d < bestD {
			best, bestD = k.name, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// typeName says what a Go type looks like in YAML ("an integer", "a list of
// integers"), in the plural when plural is set ("integers").
func typeName(t reflect.Type, plural bool) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	one, many := "a mapping", "mappings"
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		one, many = "an integer", "integers"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		one, many = "a non-negative integer", "non-negative integers"
	case reflect.Float32, reflect.Float64:
		one, many = "a number", "numbers"
	case reflect.String:
		one, many = "a string", "strings"
	case reflect.Bool:
		one, many = "true or false", "booleans"
	case reflect.Slice, reflect.Array:
		one, many = "a list of "+typeName(t.Elem(), true), "lists"
	}
	if plural {
		return many
	}
	return one
}

// jsonKindName turns encoding/json's description of a value ("number -1",
// "array", "object") into YAML's words.
func jsonKindName(v string) string {
	switch {
	case v == "array":
		return "a list"
	case v == "object":
		return "a mapping"
	case v == "bool":
		return "a boolean"
	case v == "string":
		return "a string"
	}
	return v
}

// jsonKind names the kind of a JSON document.
func jsonKind(js []byte) string {
	if len(js) == 0 {
		return "nothing"
	}
	switch js[0] {
	case '[':
		return "a list"
	case '"':
		return "a string " + snippet(js)
	default:
		return snippet(js)
	}
}

// snippet quotes a JSON value for an error, bounded.
func snippet(b []byte) string {
	const limit = 60
	s := string(bytes.TrimSpace(b))
	switch {
	case strings.HasPrefix(s, "["):
		return "a list"
	case strings.HasPrefix(s, "{"):
		return "a mapping"
	case s == "null":
		return "nothing"
	}
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return s
}

// yamlMessage trims the converter's prefixes from a YAML error.
func yamlMessage(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "error converting YAML to JSON: ")
	s = strings.TrimPrefix(s, "yaml: ")
	return s
}
