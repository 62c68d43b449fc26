package api

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warren-farm/warren/pkg/auth"
)

// authKeys writes a keys file with three keys and returns the authenticator and
// the secrets: canary-only (limits set), everything, and an admin.
func authKeys(t *testing.T) (a *auth.Authenticator, canary, all, admin string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("keys:\n")
	add := func(name string, isAdmin bool, models ...string) string {
		s, e, err := auth.NewKey(name, models, isAdmin)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(e.YAML())
		return s
	}
	canary, all, admin = add("canary-only", false, "canary"), add("everything", false, "*"), add("ops", true, "*")
	b.WriteString("  - name: limited\n    hash: " + auth.HashSecret("wrn_unused") + "\n    models: ['*']\n    limits: {rate: 3, burst: 5, concurrency: 2}\n")
	path := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(context.Background(), auth.Config{KeysFile: path})
	if err != nil {
		t.Fatal(err)
	}
	return a, canary, all, admin
}

func bearer(s string) []string { return []string{"Authorization", "Bearer " + s} }

func TestAuthRequiredWith401AndChallenge(t *testing.T) {
	a, canary, _, _ := authKeys(t)
	r := newTrafficRigAuth(t, AdminOn, a)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/process", `{"data":"x"}`},
		{"POST", "/v2/models/canary/infer", seedShaped},
		{"GET", "/v2/models", ""},
		{"GET", "/jobs/j1", ""},
		{"POST", "/jobs", `{"data":"x"}`},
		{"GET", "/v2/models/canary/traffic", ""},
		{"GET", "/no/such/route", ""},
	} {
		ans := r.do(t, c.method, c.path, c.body)
		if ans.code != http.StatusUnauthorized || ans.hdr.Get("WWW-Authenticate") != `Bearer realm="warren"` || ans.m["reason"] != "unauthorized" {
			t.Errorf("%s %s without a key: %d %q %s", c.method, c.path, ans.code, ans.hdr.Get("WWW-Authenticate"), ans.body)
		}
		if strings.HasPrefix(c.path, "/v2/") && ans.m["error"] == nil {
			t.Errorf("%s: a v2 error body wants \"error\": %s", c.path, ans.body)
		}
		wrong := r.do(t, c.method, c.path, c.body, bearer(auth.NewSecret())...)
		if wrong.code != http.StatusUnauthorized || !strings.Contains(wrong.hdr.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s %s with an unknown key: %d %q", c.method, c.path, wrong.code, wrong.hdr.Get("WWW-Authenticate"))
		}
	}
	// X-API-Key works as well as Bearer.
	if ans := r.do(t, "POST", "/v2/models/canary/versions/1/infer", seedShaped, "X-API-Key", canary); ans.code != http.StatusOK {
		t.Fatalf("X-API-Key: %d %s", ans.code, ans.body)
	}
	// The probes, metrics, capacity and docs stay open.
	for _, path := range []string{"/", "/health", "/ready", "/v2", "/v2/health/live", "/v2/health/ready", "/metrics", "/openapi.json", "/docs",
		"/docs/assets/swagger-ui.css", "/docs/assets/swagger-ui-bundle.js", "/capacity"} {
		if ans := r.do(t, "GET", path, ""); ans.code == http.StatusUnauthorized {
			t.Errorf("GET %s needs a key; want it open", path)
		}
	}
	if ans := r.do(t, "GET", "/docs/assets/swagger-ui.css", ""); ans.code != http.StatusOK {
		t.Errorf("the docs' style sheet: %d", ans.code)
	}
}

func TestAuthModelsAre403NamingTheModel(t *testing.T) {
	a, canary, all, _ := authKeys(t)
	r := newTrafficRigAuth(t, AdminOn, a)
	if ans := r.do(t, "POST", "/v2/models/canary/versions/1/infer", seedShaped, bearer(canary)...); ans.code != http.StatusOK {
		t.Fatalf("canary key on canary: %d %s", ans.code, ans.body)
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v2/models/seed/infer", seedShaped},
		{"POST", "/v2/models/seed/versions/1/infer", seedShaped},
		{"GET", "/v2/models/seed", ""},
		{"GET", "/v2/models/seed/ready", ""},
		{"POST", "/process", `{"data":"x"}`}, // DEFAULT_MODEL is seed
		{"POST", "/jobs", `{"data":"x"}`},
		{"POST", "/jobs", `{"model":"seed","inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["x"]}]}`},
	} {
		ans := r.do(t, c.method, c.path, c.body, bearer(canary)...)
		if ans.code != http.StatusForbidden || ans.m["reason"] != "forbidden" || !strings.Contains(ans.body, "model seed") || !strings.Contains(ans.body, "canary-only") {
			t.Errorf("%s %s with the canary key: %d %s; want 403 naming model seed", c.method, c.path, ans.code, ans.body)
		}
		if ans := r.do(t, c.method, c.path, c.body, bearer(all)...); ans.code == http.StatusForbidden || ans.code == http.StatusUnauthorized {
			t.Errorf("%s %s with the everything key: %d %s", c.method, c.path, ans.code, ans.body)
		}
	}
}

func TestAuthModelListShowsTheCallersModels(t *testing.T) {
	a, canary, all, _ := authKeys(t)
	r := newTrafficRigAuth(t, AdminOn, a)
	names := func(key string) []string {
		ans := r.do(t, "GET", "/v2/models", "", bearer(key)...)
		if ans.code != http.StatusOK {
			t.Fatalf("GET /v2/models: %d %s", ans.code, ans.body)
		}
		var out []string
		for _, m := range ans.m["models"].([]any) {
			out = append(out, m.(map[string]any)["name"].(string))
		}
		return out
	}
	if got := names(canary); len(got) != 1 || got[0] != "canary" {
		t.Fatalf("the canary key sees %v", got)
	}
	if got := names(all); len(got) != 2 {
		t.Fatalf("the everything key sees %v", got)
	}
}

func TestAuthAdminEndpoints(t *testing.T) {
	a, canary, all, admin := authKeys(t)
	put := `{"weights":{"1":90,"2":10}}`
	r := newTrafficRigAuth(t, AdminOn, a)
	for _, k := range []string{canary, all} {
		if ans := r.do(t, "PUT", "/v2/models/canary/traffic", put, bearer(k)...); ans.code != http.StatusForbidden || !strings.Contains(ans.body, "not an admin") {
			t.Fatalf("a non-admin key: %d %s", ans.code, ans.body)
		}
		if ans := r.do(t, "DELETE", "/v2/models/canary/traffic", "", bearer(k)...); ans.code != http.StatusForbidden {
			t.Fatalf("a non-admin key, DELETE: %d %s", ans.code, ans.body)
		}
	}
	if ans := r.do(t, "PUT", "/v2/models/canary/traffic", put, bearer(admin)...); ans.code != http.StatusOK {
		t.Fatalf("the admin key: %d %s", ans.code, ans.body)
	}
	// ADMIN_API still applies: loopback refuses an admin from elsewhere; off refuses all.
	lb := newTrafficRigAuth(t, AdminLoopback, a)
	if ans := lb.doFrom(t, "10.0.0.9:4000", "PUT", "/v2/models/canary/traffic", put, bearer(admin)...); ans.code != http.StatusForbidden {
		t.Fatalf("loopback, admin from afar: %d %s", ans.code, ans.body)
	}
	if ans := lb.doFrom(t, "127.0.0.1:4000", "PUT", "/v2/models/canary/traffic", put, bearer(admin)...); ans.code != http.StatusOK {
		t.Fatalf("loopback, admin from here: %d %s", ans.code, ans.body)
	}
	if ans := lb.doFrom(t, "127.0.0.1:4000", "PUT", "/v2/models/canary/traffic", put, bearer(all)...); ans.code != http.StatusForbidden {
		t.Fatalf("loopback, a non-admin from here: %d %s", ans.code, ans.body)
	}
	off := newTrafficRigAuth(t, AdminOff, a)
	if ans := off.do(t, "PUT", "/v2/models/canary/traffic", put, bearer(admin)...); ans.code != http.StatusForbidden {
		t.Fatalf("off, the admin key: %d %s", ans.code, ans.body)
	}
}

func TestAuthJobOwnership(t *testing.T) {
	a, canary, all, admin := authKeys(t)
	r := newTrafficRigAuth(t, AdminOn, a)
	body := `{"model":"canary","version":"1","inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["x"]}]}`
	sub := r.do(t, "POST", "/jobs", body, append(bearer(canary), "Idempotency-Key", "k1")...)
	if sub.code != http.StatusAccepted {
		t.Fatalf("submit: %d %s", sub.code, sub.body)
	}
	id, _ := sub.m["id"].(string)
	if j := r.jobs.byID[id]; j == nil || j.Owner != "key:canary-only" {
		t.Fatalf("stored job %+v; want owner key:canary-only", j)
	}
	if got := r.jobs.subs[0].IdempotencyKey; got != "key:canary-only k1" {
		t.Fatalf("the idempotency key went to the store as %q; want it scoped to the caller", got)
	}
	for _, c := range []struct {
		key  string
		want int
	}{{canary, 200}, {admin, 200}, {all, 404}} {
		for _, path := range []string{"/jobs/" + id, "/jobs/" + id + "?wait=1"} {
			if ans := r.do(t, "GET", path, "", bearer(c.key)...); ans.code != c.want {
				t.Errorf("GET %s: %d %s; want %d", path, ans.code, ans.body, c.want)
			}
		}
	}
	other := r.do(t, "DELETE", "/jobs/"+id, "", bearer(all)...)
	unknown := r.do(t, "DELETE", "/jobs/jnosuch", "", bearer(all)...)
	if other.code != http.StatusNotFound || other.body != unknown.body {
		t.Fatalf("another caller's DELETE: %d %s; want the unknown job's 404 %s", other.code, other.body, unknown.body)
	}
	if j := r.jobs.byID[id]; j.Status != "queued" {
		t.Fatalf("another caller cancelled the job: %s", j.Status)
	}
	if ans := r.do(t, "DELETE", "/jobs/"+id, "", bearer(canary)...); ans.code != http.StatusOK {
		t.Fatalf("the owner's DELETE: %d %s", ans.code, ans.body)
	}
}

func TestAuthFailuresAreLimitedPerAddress(t *testing.T) {
	a, canary, _, _ := authKeys(t)
	r := newTrafficRigAuth(t, AdminOn, a)
	path := "/v2/models/canary/versions/1/infer"
	for i := range auth.DefaultFailureBurst {
		if ans := r.doFrom(t, "192.0.2.1:1000", "POST", path, seedShaped, bearer(auth.NewSecret())...); ans.code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, ans.code)
		}
	}
	for _, hdr := range [][]string{bearer(auth.NewSecret()), nil, bearer("a.b.c"),
		// A forwarding header does not buy a fresh budget.
		append(bearer(auth.NewSecret()), "X-Forwarded-For", "198.51.100.7")} {
		ans := r.doFrom(t, "192.0.2.1:1001", "POST", path, seedShaped, hdr...)
		if ans.code != http.StatusTooManyRequests || ans.hdr.Get("Retry-After") == "" || ans.m["reason"] != "auth_limited" {
			t.Fatalf("after %d failures, %q: %d Retry-After %q %s", auth.DefaultFailureBurst, hdr, ans.code, ans.hdr.Get("Retry-After"), ans.body)
		}
	}
	// A good key from the limited address still works: a guesser behind the
	// same proxy does not lock its clients out.
	if ans := r.doFrom(t, "192.0.2.1:1003", "POST", path, seedShaped, bearer(canary)...); ans.code != http.StatusOK {
		t.Fatalf("a good key from the limited address: %d %s", ans.code, ans.body)
	}
	if ans := r.doFrom(t, "192.0.2.2:1000", "POST", path, seedShaped, bearer(auth.NewSecret())...); ans.code != http.StatusUnauthorized {
		t.Fatalf("another address: %d %s", ans.code, ans.body)
	}
}

func TestPrincipalLimitsExposed(t *testing.T) {
	a, _, _, _ := authKeys(t)
	p, ok := a.Keyring().Lookup("wrn_unused")
	if !ok || p.Limits != (auth.Limits{Rate: 3, Burst: 5, Concurrency: 2}) {
		t.Fatalf("limits %+v %v", p, ok)
	}
}
