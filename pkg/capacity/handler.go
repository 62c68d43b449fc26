package capacity

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/warren-farm/warren/pkg/queue"
)

// Handler serves the estimates as JSON (snake_case keys) on GET and HEAD, for
// KEDA's metrics-api scaler (valueLocation: workers_needed) and for people:
//
//   - GET /capacity: the [Summary], {"workers_needed":N,"stale":…,"models":[…]}
//     with one [Snapshot] per tracked route.
//   - GET /capacity?model=NAME: the [Snapshot] summed over that model's tracked
//     versions ([Farm.ModelSnapshot]).
//   - GET /capacity?model=NAME&version=V: that route's [Snapshot].
//
// It answers 200 even while a snapshot is stale, so that turned-away demand can
// still wake a pool at zero when the management API is down. A model (or model
// version) that is not tracked gets 404, a query value that is not a valid model
// name or version (or version without model, or a parameter given twice) 400,
// other methods 405; errors are {"detail":"…"}. Other query parameters are
// ignored. The path is not looked at: mount the handler where it belongs.
func (f *Farm) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSON(w, r, http.StatusMethodNotAllowed, detail{"Method Not Allowed"})
			return
		}
		status, body := f.answer(r.URL.RawQuery)
		writeJSON(w, r, status, body)
	})
}

// answer returns the status and body for a query string.
func (f *Farm) answer(rawQuery string) (int, any) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return http.StatusBadRequest, detail{"malformed query string"}
	}
	model, hasModel, msg := param(q, "model", queue.ValidModelName,
		"want 1-64 letters, digits, '_' or '-', starting with a letter or digit")
	if msg != "" {
		return http.StatusBadRequest, detail{msg}
	}
	version, hasVersion, msg := param(q, "version", queue.ValidVersion, "want a positive integer")
	if msg != "" {
		return http.StatusBadRequest, detail{msg}
	}
	switch {
	case hasVersion && !hasModel:
		return http.StatusBadRequest, detail{`query parameter "version" needs the query parameter "model"`}
	case hasVersion:
		if s, ok := f.Snapshot(queue.Route{Model: model, Version: version}); ok {
			return http.StatusOK, s
		}
		return http.StatusNotFound, detail{fmt.Sprintf("model %s version %s is not tracked", model, version)}
	case hasModel:
		if s, ok := f.ModelSnapshot(model); ok {
			return http.StatusOK, s
		}
		return http.StatusNotFound, detail{fmt.Sprintf("model %s is not tracked", model)}
	}
	return http.StatusOK, f.Summary()
}

// detail is the body of an error answer.
type detail struct {
	Detail string `json:"detail"`
}

// param returns query parameter name's value and whether it was given, or a
// message naming the parameter when it is given more than once or not valid.
func param(q url.Values, name string, valid func(string) bool, want string) (string, bool, string) {
	vs, ok := q[name]
	switch {
	case !ok:
		return "", false, ""
	case len(vs) != 1:
		return "", true, fmt.Sprintf("query parameter %q: given %d times, want once", name, len(vs))
	case !valid(vs[0]):
		return "", true, fmt.Sprintf("query parameter %q: %q: %s", name, vs[0], want)
	}
	return vs[0], true, ""
}

// writeJSON answers status with v as JSON, the body left out for HEAD.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // cannot happen: the answers hold no NaN or Inf
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(append(body, '\n'))
	}
}
