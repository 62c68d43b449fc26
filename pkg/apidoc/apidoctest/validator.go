// Package apidoctest checks real HTTP exchanges against warren's OpenAPI document, for
// tests. It lives apart from apidoc so the API binary does not link kin-openapi.
package apidoctest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/warren-farm/warren/pkg/apidoc"
)

// Validator checks real HTTP exchanges against the OpenAPI document with kin-openapi's
// openapi3filter. It is meant for tests that drive the real API. A Validator is safe
// for concurrent use.
type Validator struct {
	doc    *openapi3.T
	router routers.Router
	// Operations standing for routes the document does not list: any undocumented
	// path answers components.responses.NotFound, and any documented path called
	// with an undocumented method answers components.responses.MethodNotAllowed;
	// under /v2, V2NotFound and V2MethodNotAllowed (the protocol's error shape).
	notFound, methodNotAllowed     *openapi3.Operation
	v2NotFound, v2MethodNotAllowed *openapi3.Operation
	// slashPaths tells whether a documented path other than "/" ends with a slash.
	slashPaths bool
	// templates are the documented paths split at "/", to tell an undocumented
	// method on a templated path (405) from an undocumented path (404).
	templates [][]string
}

// NewValidator loads and validates the embedded document and builds a Validator.
//
// Requests are matched on their path alone, whatever host and port they went to: the
// document's servers, if any, are ignored.
func NewValidator() (*Validator, error) {
	doc, err := openapi3.NewLoader().LoadFromData(apidoc.Spec())
	if err != nil {
		return nil, fmt.Errorf("apidoc: loading the OpenAPI document: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("apidoc: invalid OpenAPI document: %w", err)
	}
	doc.Servers = nil
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("apidoc: building the router: %w", err)
	}
	v := &Validator{doc: doc, router: router}
	for p := range doc.Paths.Map() {
		v.slashPaths = v.slashPaths || (p != "/" && strings.HasSuffix(p, "/"))
		v.templates = append(v.templates, strings.Split(p, "/"))
	}
	if v.notFound, err = fallbackOperation(doc, "NotFound", http.StatusNotFound); err != nil {
		return nil, err
	}
	if v.methodNotAllowed, err = fallbackOperation(doc, "MethodNotAllowed", http.StatusMethodNotAllowed); err != nil {
		return nil, err
	}
	if v.v2NotFound, err = fallbackOperation(doc, "V2NotFound", http.StatusNotFound); err != nil {
		return nil, err
	}
	if v.v2MethodNotAllowed, err = fallbackOperation(doc, "V2MethodNotAllowed", http.StatusMethodNotAllowed); err != nil {
		return nil, err
	}
	return v, nil
}

func fallbackOperation(doc *openapi3.T, name string, status int) (*openapi3.Operation, error) {
	ref := doc.Components.Responses[name]
	if ref == nil || ref.Value == nil {
		return nil, fmt.Errorf("apidoc: the document has no components.responses.%s", name)
	}
	return &openapi3.Operation{Responses: openapi3.NewResponses(openapi3.WithStatus(status, ref))}, nil
}

// Validate checks one exchange: req as sent with body reqBody, and resp as received with
// body respBody (the bodies are passed separately because req.Body and resp.Body have
// usually been consumed; they are not read).
//
// It fails when:
//   - the response's status is not documented for the operation (an undocumented path
//     must answer 404, an undocumented method on a documented path 405, each in the
//     protocol's {"error"} shape under /v2);
//   - a response header declared as required is missing, or a declared header's value
//     does not match its schema;
//   - the response's Content-Type is not documented, or its body does not match the
//     schema;
//   - the request does not conform to the document (parameters, body) and the server
//     still answered with a status below 400. A non-conforming request that the server
//     rejects is expected, so only the response is checked then.
//
// The request body is checked as JSON whatever the request's Content-Type says, as the
// API parses it. A HEAD request is checked as the GET it mirrors, without a body; a
// 405 answer to HEAD is accepted too.
func (v *Validator) Validate(req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) error {
	if req == nil || req.URL == nil || resp == nil {
		return errors.New("apidoc: Validate needs a request with a URL and a response")
	}
	ctx := context.Background() // req's own context may be over by now
	r := req.Clone(ctx)
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	r.ContentLength = int64(len(reqBody))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(reqBody)), nil }
	if len(reqBody) > 0 {
		r.Header.Set("Content-Type", "application/json")
	}
	head := r.Method == http.MethodHead
	if head {
		r.Method = http.MethodGet
	}
	status := resp.StatusCode
	what := fmt.Sprintf("%s %s → %d", req.Method, req.URL.Path, status)
	if head && status == http.StatusMethodNotAllowed {
		return nil
	}

	route, pathParams, err := v.router.FindRoute(r)
	if !v.slashPaths && r.URL.Path != "/" && strings.HasSuffix(r.URL.Path, "/") {
		// kin-openapi's router ignores a trailing slash; Echo (like the document) does not.
		route, err = nil, &routers.RouteError{Reason: routers.ErrPathNotFound.Error()}
	}
	if err == nil && slices.Contains(slices.Collect(maps.Values(pathParams)), "") {
		// kin-openapi's router lets a path parameter match nothing (GET /jobs as GET
		// /jobs/{id}); Echo does not.
		route, err = nil, &routers.RouteError{Reason: routers.ErrPathNotFound.Error()}
	}
	if err != nil {
		var re *routers.RouteError
		if !errors.As(err, &re) {
			return fmt.Errorf("%s: finding the route: %w", what, err)
		}
		op, want := v.notFound, http.StatusNotFound
		// kin-openapi's router tells a wrong method only on a path without parameters.
		wrongMethod := re.Reason == routers.ErrMethodNotAllowed.Error() || v.documentedPath(r.URL.Path)
		if wrongMethod {
			op, want = v.methodNotAllowed, http.StatusMethodNotAllowed
		}
		if underV2(r.URL.Path) {
			op = v.v2NotFound
			if wrongMethod {
				op = v.v2MethodNotAllowed
			}
		}
		if status != want {
			return fmt.Errorf("%s: the document has no such operation (%s), so want status %d", what, re.Reason, want)
		}
		route = &routers.Route{Spec: v.doc, Path: r.URL.Path, PathItem: &openapi3.PathItem{}, Method: r.Method, Operation: op}
		return v.validateResponse(ctx, what, &openapi3filter.RequestValidationInput{Request: r, Route: route}, resp, respBody, head)
	}

	in := &openapi3filter.RequestValidationInput{
		Request:    r,
		PathParams: pathParams,
		Route:      route,
		// Whether a credential is good is the server's to say (its 401s are
		// validated as responses); the document only says which schemes exist.
		Options: &openapi3filter.Options{SkipSettingDefaults: true, MultiError: true,
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil && status < 400 {
		return fmt.Errorf("%s: the request does not conform to the document, yet the server accepted it: %w", what, err)
	}
	return v.validateResponse(ctx, what, in, resp, respBody, head)
}

// underV2 reports whether p is the Open Inference Protocol's: /v2 or below it, where
// errors take the protocol's shape (pkg/httperr).
func underV2(p string) bool { return p == "/v2" || strings.HasPrefix(p, "/v2/") }

// documentedPath reports whether p matches a documented path, whatever the method: a
// parameter matches one non-empty segment.
func (v *Validator) documentedPath(p string) bool {
	segs := strings.Split(p, "/")
	for _, t := range v.templates {
		if len(t) == len(segs) && matchSegments(t, segs) {
			return true
		}
	}
	return false
}

func matchSegments(template, segs []string) bool {
	for i, t := range template {
		if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") {
			if segs[i] == "" {
				return false
			}
		} else if t != segs[i] {
			return false
		}
	}
	return true
}

func (v *Validator) validateResponse(ctx context.Context, what string, in *openapi3filter.RequestValidationInput, resp *http.Response, body []byte, head bool) error {
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true, // an undocumented status is an error
			ExcludeResponseBody:   head,
			MultiError:            true,
		},
	}
	if out.Header == nil {
		out.Header = http.Header{}
	}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return fmt.Errorf("%s: the response does not conform to the document: %w", what, err)
	}
	return nil
}
