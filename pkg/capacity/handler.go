package capacity

import (
	"encoding/json"
	"net/http"
)

// Handler serves the [Snapshot] as JSON on GET and HEAD (camelCase keys, e.g.
// {"workersNeeded":3,…}), for KEDA's metrics-api scaler (valueLocation:
// workersNeeded) and for people. It answers 200 even while the snapshot is stale,
// so that turned-away demand can still wake a farm at zero when the management
// API is down; other methods get 405.
func (e *Estimator) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			h.Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			_, _ = w.Write([]byte(`{"detail":"Method Not Allowed"}` + "\n"))
			return
		}
		body, err := json.Marshal(e.Snapshot())
		if err != nil { // cannot happen: the snapshot holds no NaN or Inf
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(append(body, '\n'))
		}
	})
}
