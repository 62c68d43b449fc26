// Package httperr gives warren's HTTP services one error model and the JSON shapes
// the seed lab's FastAPI services used, so existing clients keep working:
//
//   - {"detail": "..."} for 404, 405, 413 and 500;
//   - {"detail": "...", "reason": "..."} for the farm's answers with a reason (the
//     status contract: 502/503/504 and others; 503 also sets Retry-After);
//   - 422 {"detail": [{"type", "loc", "msg", "input"}]} for validation errors, in
//     pydantic v2's shape.
//
// Under the Open Inference Protocol's paths (/v2/…) errors take that protocol's
// shape instead: {"error": "...", "reason": "..."} (reason when there is one), and
// validation errors are 400s.
//
// Handlers return errors; [Handler] is the single place that turns them into
// responses.
package httperr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/warren-farm/warren/internal/jsonlimit"
	"github.com/warren-farm/warren/pkg/reason"
)

// Error is an HTTP error with the farm's JSON body.
type Error struct {
	Status int
	Detail string
	// Reason is the status contract's reason; reason.OK means none (omitted).
	Reason reason.Reason
	// RetryAfter is the Retry-After header in seconds; 0 means the reason's own.
	RetryAfter int
	Err        error // cause, for logs only
}

// Of returns an Error for r: r's status, the detail, and err as the cause.
func Of(r reason.Reason, detail string, err error) *Error {
	return &Error{Status: r.Status(), Reason: r, Detail: detail, Err: err}
}

func (e *Error) retryAfter() int {
	if e.RetryAfter > 0 {
		return e.RetryAfter
	}
	return e.Reason.RetryAfter()
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %v", e.Status, e.Detail, e.Err)
	}
	return fmt.Sprintf("%d %s", e.Status, e.Detail)
}

func (e *Error) Unwrap() error { return e.Err }

// Item is one pydantic-style validation error.
type Item struct {
	Type  string `json:"type"`
	Loc   []any  `json:"loc"`
	Msg   string `json:"msg"`
	Input any    `json:"input,omitempty"`
}

// ValidationError is a 422 with one or more items.
type ValidationError struct{ Items []Item }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Items))
	for i, it := range e.Items {
		parts[i] = fmt.Sprintf("%v: %s", it.Loc, it.Msg)
	}
	return "validation failed: " + strings.Join(parts, "; ")
}

// Add appends an item.
func (e *ValidationError) Add(typ, msg string, input any, loc ...any) {
	e.Items = append(e.Items, Item{Type: typ, Loc: loc, Msg: msg, Input: input})
}

// OrNil returns e if it has items, else nil.
func (e *ValidationError) OrNil() error {
	if len(e.Items) == 0 {
		return nil
	}
	return e
}

type detailBody struct {
	Detail string         `json:"detail"`
	Reason *reason.Reason `json:"reason,omitempty"`
}

type v2Body struct {
	Error  string         `json:"error"`
	Reason *reason.Reason `json:"reason,omitempty"`
}

// Marshal encodes v as JSON without escaping <, > and & (text travels verbatim in
// answers; the bodies are never embedded in HTML).
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// DefaultBodyLimit is the largest request body the binaries accept by default
// (BODY_LIMIT).
const DefaultBodyLimit = 1 << 20

// MaxHeaderBytes bounds a request's header lines, the binaries' http.Server
// MaxHeaderBytes (net/http's default is 1 MiB). Beyond it, net/http answers 431
// itself, as plain text: no handler runs.
const MaxHeaderBytes = 64 << 10

// V2Prefix is the path prefix whose errors take the Open Inference Protocol's shape.
const V2Prefix = "/v2"

// Handler returns Echo's central error handler. 5xx answers other than the farm's
// expected 503/504 are logged at WARN (502) or ERROR (500); the rest are not logged
// here, so an outage does not turn into a log flood.
func Handler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status, body := render(err, strings.HasPrefix(c.Request().URL.Path, V2Prefix+"/") || c.Request().URL.Path == V2Prefix)
		var he *Error
		if errors.As(err, &he) && he.retryAfter() > 0 {
			c.Response().Header().Set("Retry-After", strconv.Itoa(he.retryAfter()))
		}
		switch {
		case status == http.StatusInternalServerError:
			log.Error("request failed", "err", err, "path", c.Path(), "request_id", c.Response().Header().Get(echo.HeaderXRequestID))
		case status == http.StatusBadGateway:
			log.Warn("model error", "err", err, "request_id", c.Response().Header().Get(echo.HeaderXRequestID))
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(status)
			return
		}
		_ = c.JSON(status, body)
	}
}

func render(err error, v2 bool) (int, any) {
	status, body := renderDetail(err)
	if !v2 {
		return status, body
	}
	if status == http.StatusUnprocessableEntity {
		status = http.StatusBadRequest
	}
	switch b := body.(type) {
	case detailBody:
		return status, v2Body{Error: b.Detail, Reason: b.Reason}
	case map[string]any:
		var ve *ValidationError
		errors.As(err, &ve)
		return status, v2Body{Error: ve.Error()}
	}
	return status, body
}

func renderDetail(err error) (int, any) {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return http.StatusUnprocessableEntity, map[string]any{"detail": ve.Items}
	}
	var he *Error
	if errors.As(err, &he) {
		b := detailBody{Detail: he.Detail}
		if he.Reason != reason.OK {
			r := he.Reason
			b.Reason = &r
		}
		return he.Status, b
	}
	var ee *echo.HTTPError
	if errors.As(err, &ee) {
		switch ee.Code {
		case http.StatusNotFound:
			return ee.Code, detailBody{Detail: "Not Found"}
		case http.StatusMethodNotAllowed:
			return ee.Code, detailBody{Detail: "Method Not Allowed"}
		case http.StatusRequestEntityTooLarge:
			r := reason.TooLarge
			return ee.Code, detailBody{Detail: "Request body too large", Reason: &r}
		}
		if ee.Code < 500 {
			return ee.Code, detailBody{Detail: fmt.Sprint(ee.Message)}
		}
	}
	return http.StatusInternalServerError, detailBody{Detail: "Internal Server Error"}
}

// ReadBody reads the request body up to limit bytes. A longer body is a 413 naming
// the limit.
func ReadBody(r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Detail: "could not read the request body", Err: err}
	}
	if int64(len(b)) > limit {
		return nil, tooLarge(limit)
	}
	return b, nil
}

func tooLarge(limit int64) error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Reason: reason.TooLarge, Detail: fmt.Sprintf("Request body too large: the limit is %d bytes", limit)}
}

// Object parses body as a JSON object, whatever the Content-Type says (as FastAPI
// does). Malformed JSON, and JSON nested deeper than jsonlimit.MaxDepth, is
// json_invalid; anything but an object is model_attributes_type.
func Object(body []byte) (map[string]json.RawMessage, error) {
	if jsonlimit.TooDeep(body, jsonlimit.MaxDepth) {
		ve := &ValidationError{}
		ve.Add("json_invalid", fmt.Sprintf("JSON decode error: nested deeper than %d levels", jsonlimit.MaxDepth), map[string]any{}, "body", 0)
		return nil, ve
	}
	// One decode into the object's fields; only a body that is not an object pays
	// for a second one, to show what it was.
	var m map[string]json.RawMessage
	err := json.Unmarshal(body, &m)
	var te *json.UnmarshalTypeError
	if err != nil && !errors.As(err, &te) {
		ve := &ValidationError{}
		ve.Add("json_invalid", "JSON decode error", map[string]any{}, "body", jsonErrorPos(body, err))
		return nil, ve
	}
	if err != nil || m == nil { // valid JSON, but not an object (null decodes to a nil map)
		var v any
		_ = json.Unmarshal(body, &v)
		ve := &ValidationError{}
		ve.Add("model_attributes_type", "Input should be a valid dictionary or object to extract fields from", v, "body")
		return nil, ve
	}
	return m, nil
}

func jsonErrorPos(body []byte, err error) int {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return int(se.Offset)
	}
	return len(body)
}

// String reads a required string field into ve's items on failure.
func String(obj map[string]json.RawMessage, name string, ve *ValidationError) (string, bool) {
	raw, ok := obj[name]
	if !ok {
		ve.Add("missing", "Field required", objectInput(obj), "body", name)
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil || string(raw) == "null" {
		ve.Add("string_type", "Input should be a valid string", anyOf(raw), "body", name)
		return "", false
	}
	// encoding/json replaces invalid UTF-8 with U+FFFD without a word: the caller's
	// bytes would silently change.
	if !utf8.Valid(raw) {
		ve.Add("string_unicode", "Input should be a valid string: invalid UTF-8", nil, "body", name)
		return "", false
	}
	return s, true
}

// Bool reads an optional boolean field with pydantic's lax rules: true/false, 0/1,
// and the strings true/false/yes/no/on/off/1/0/t/f/y/n in any case.
func Bool(obj map[string]json.RawMessage, name string, def bool, ve *ValidationError) bool {
	raw, ok := obj[name]
	if !ok {
		return def
	}
	var v any
	_ = json.Unmarshal(raw, &v)
	switch x := v.(type) {
	case bool:
		return x
	case float64:
		if x == 0 || x == 1 {
			return x == 1
		}
	case string:
		switch strings.ToLower(x) {
		case "true", "yes", "on", "1", "t", "y":
			return true
		case "false", "no", "off", "0", "f", "n":
			return false
		}
	}
	ve.Add("bool_parsing", "Input should be a valid boolean, unable to interpret input", v, "body", name)
	return def
}

func objectInput(obj map[string]json.RawMessage) map[string]any {
	out := make(map[string]any, len(obj))
	for k, v := range obj {
		out[k] = anyOf(v)
	}
	return out
}

func anyOf(raw json.RawMessage) any {
	var v any
	_ = json.Unmarshal(raw, &v)
	return v
}
