package httpmodel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/warren-farm/warren/pkg/model"
)

// StatusError is a model server's answer with a non-2xx status. It wraps the
// class the status means for the caller (see the package documentation):
// [model.ErrBadInput] for most 4xx, [model.ErrUnavailable] for 408, 429 and 503,
// nothing for 401, 403, 404, 405 and the other 5xx (a plain model error).
type StatusError struct {
	// Code is the HTTP status code.
	Code int
	// Message is the server's error message ({"error": …}, {"detail": …},
	// {"message": …} or the body's text), trimmed and at most 512 bytes.
	Message string
}

func (e *StatusError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = "(no message)"
	}
	status := strconv.Itoa(e.Code)
	if text := http.StatusText(e.Code); text != "" {
		status += " " + text
	}
	if e.class() == model.ErrBadInput {
		return fmt.Sprintf("the model server rejected the request (%s): %s", status, msg)
	}
	return fmt.Sprintf("the model server answered %s: %s", status, msg)
}

// Unwrap returns the error class of the status, or nil.
func (e *StatusError) Unwrap() error { return e.class() }

func (e *StatusError) class() error {
	switch {
	case e.Code == http.StatusRequestTimeout, e.Code == http.StatusTooManyRequests, e.Code == http.StatusServiceUnavailable:
		return model.ErrUnavailable
	case e.Code == http.StatusUnauthorized, e.Code == http.StatusForbidden, e.Code == http.StatusNotFound, e.Code == http.StatusMethodNotAllowed:
		// The URL, the model name or the credentials are wrong: the operator's
		// problem, not the caller's input.
		return nil
	case e.Code >= 400 && e.Code < 500:
		return model.ErrBadInput
	}
	return nil
}

// statusError returns nil for a 2xx reply and a *StatusError otherwise.
func statusError(r *reply) error {
	if r.code >= 200 && r.code < 300 {
		return nil
	}
	return &StatusError{Code: r.code, Message: errorMessage(r.body)}
}

// errorMessage extracts a server's error message from an error body: the "error"
// (v2), "detail" (FastAPI; a validation error list becomes "loc: msg; …") or
// "message" member of a JSON object, else the body's text; trimmed and bounded.
func errorMessage(body []byte) string {
	var w struct {
		Error   json.RawMessage `json:"error"`
		Detail  json.RawMessage `json:"detail"`
		Message json.RawMessage `json:"message"`
	}
	if json.Unmarshal(body, &w) == nil {
		for _, raw := range []json.RawMessage{w.Error, w.Detail, w.Message} {
			if s := describe(raw); s != "" {
				return snippet([]byte(s), maxMessage)
			}
		}
	}
	return snippet(body, maxMessage)
}

// describe renders one JSON error member as text: a string as is, a FastAPI
// validation list as "body.input: field required; …", anything else as compact
// JSON. Null or absent is "".
func describe(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var items []struct {
		Loc []any  `json:"loc"`
		Msg string `json:"msg"`
	}
	if json.Unmarshal(raw, &items) == nil && len(items) > 0 && items[0].Msg != "" {
		parts := make([]string, len(items))
		for i, it := range items {
			loc := make([]string, len(it.Loc))
			for j, l := range it.Loc {
				loc[j] = fmt.Sprint(l)
			}
			parts[i] = it.Msg
			if len(loc) > 0 {
				parts[i] = strings.Join(loc, ".") + ": " + it.Msg
			}
		}
		return strings.Join(parts, "; ")
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) == nil {
		return buf.String()
	}
	return string(raw)
}

// snippet renders at most n bytes of b as one line of text for an error: trimmed,
// valid UTF-8, control characters as spaces, "…" when cut; "(empty body)" for
// nothing, "(no printable text)" for control characters only.
func snippet(b []byte, n int) string {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return "(empty body)"
	}
	cut := len(b) > n
	if cut {
		b = b[:n]
		// Do not end inside a multi-byte character.
		if i := lastRuneStart(b); i < len(b) && !utf8.FullRune(b[i:]) {
			b = b[:i]
		}
	}
	s := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(string(b), "\uFFFD"))
	s = strings.TrimSpace(s)
	if s == "" {
		return "(no printable text)" // only control characters: never an empty message
	}
	if cut {
		s += "…"
	}
	return s
}

// lastRuneStart is the index of the start byte of b's last (possibly partial)
// character.
func lastRuneStart(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			return i
		}
	}
	return len(b)
}
