package jsonlimit

import (
	"strings"
	"testing"
)

func TestTooDeep(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, tc := range []struct {
		in   string
		max  int
		want bool
	}{
		{deep(64), 64, false},
		{deep(65), 64, true},
		{`{"a":[{"b":[1]}]}`, 4, false},
		{`{"a":[{"b":[1]}]}`, 3, true},
		{`"[[[[[[[["`, 1, false},       // brackets inside a string do not count
		{`["\"[[[[", "\\"]`, 1, false}, // nor after an escaped quote
		{`]]]]]][[`, 1, true},          // stray closers buy no depth back
		{``, 0, false},
	} {
		if got := TooDeep([]byte(tc.in), tc.max); got != tc.want {
			t.Errorf("TooDeep(%q, %d) = %v, want %v", tc.in, tc.max, got, tc.want)
		}
	}
}
