// Package jsonlimit bounds the nesting of JSON documents a stranger sends, before
// any decoder sees them. encoding/json stops at 10,000 levels; warren's bodies
// never need more than a few dozen (a v2 tensor's data nests as deep as its shape
// has dimensions, at most 16), so anything deeper is refused early and cheaply.
package jsonlimit

// MaxDepth is the deepest nesting of arrays and objects a request body may have.
const MaxDepth = 64

// TooDeep reports whether b nests arrays and objects deeper than max. It is one
// pass over the bytes, skipping strings; it does not check that b is valid JSON
// (the decoder that runs next does).
func TooDeep(b []byte, max int) bool {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '[', '{':
			depth++
			if depth > max {
				return true
			}
		case ']', '}':
			if depth > 0 { // stray closers buy no depth back (the decoder refuses them anyway)
				depth--
			}
		}
	}
	return false
}
