package testbroker

import (
	"encoding/json"
	"net/http"
	"testing"
)

// Queues lists the names of the vhost's queues (GET /api/queues/{vhost}). The
// management API lists new queues with a short delay.
func (v *Vhost) Queues(t testing.TB) []string {
	t.Helper()
	_, data := v.b.mustMgmt(t, "GET", "/api/queues/"+esc(v.Name)+"?columns=name", nil, http.StatusOK)
	var qs []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(data, &qs); err != nil {
		t.Fatalf("testbroker: queues of %q: %v: %s", v.Name, err, truncate(data))
	}
	names := make([]string, len(qs))
	for i, q := range qs {
		names[i] = q.Name
	}
	return names
}

// DeleteQueue deletes a queue as an operator would with `rabbitmqctl delete_queue`,
// consumers or not. Unlike the management API, rabbitmqctl also deletes another
// connection's exclusive queue; its consumers get a basic.cancel, their channels stay
// open.
func (v *Vhost) DeleteQueue(t testing.TB, name string) {
	t.Helper()
	if _, ok := v.ctl(t, "delete_queue", "-p", v.Name, name); !ok {
		t.Fatalf("testbroker: DeleteQueue needs rabbitmqctl reaching the broker")
	}
}
