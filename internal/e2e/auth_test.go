package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/api"
	"github.com/warren-farm/warren/pkg/auth"
	"github.com/warren-farm/warren/pkg/auth/authtest"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/worker"
)

// keygen runs the real binary's keygen and returns the secret and the keys-file
// entry it printed.
func keygen(t *testing.T, args ...string) (secret, entry string) {
	t.Helper()
	out, err := exec.Command(filepath.Join(binaries(t), "api"), append([]string{"keygen"}, args...)...).Output()
	if err != nil {
		t.Fatalf("api keygen %q: %v", args, err)
	}
	var b strings.Builder
	for line := range strings.SplitSeq(string(out), "\n") {
		if s, ok := strings.CutPrefix(line, "#"); ok {
			if s = strings.TrimSpace(s); strings.HasPrefix(s, "wrn_") {
				secret = s
			}
		} else if line != "" {
			b.WriteString(line + "\n")
		}
	}
	if secret == "" || b.Len() == 0 {
		t.Fatalf("api keygen printed no secret or entry:\n%s", out)
	}
	return secret, b.String()
}

func writeKeysFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func bearer(s string) []string { return []string{"Authorization", "Bearer " + s} }

// TestAuthKeys: keys made by `api keygen`, through the real binaries: 401 with
// WWW-Authenticate, 403 naming the model, open probes, job ownership, admin
// gating, the caller metric, the failure limit — and no secret in any log.
func TestAuthKeys(t *testing.T) {
	integration(t)
	ci, ciEntry := keygen(t, "--name", "ci", "--models", "seed")
	other, otherEntry := keygen(t, "--name", "second", "--models", "*")
	ops, opsEntry := keygen(t, "--name", "ops", "--admin")
	path := filepath.Join(t.TempDir(), "keys.yaml")
	writeKeysFile(t, path, "keys:\n"+ciEntry+otherEntry+opsEntry)
	f := newFarm(t, 1, []string{"API_KEYS_FILE=" + path, "ADMIN_API=on"}, nil)
	secrets := []string{ci, other, ops}

	// No key, a wrong key: 401 with the challenge.
	r := f.do("POST", "/process", `{"data":"hello"}`)
	if r.Status != 401 || r.Header.Get("WWW-Authenticate") != `Bearer realm="warren"` || r.json(t)["reason"] != "unauthorized" {
		t.Fatalf("no key: %d %v %s", r.Status, r.Header, r.Body)
	}
	r = f.do("POST", "/v2/models/seed/infer", seedV2Request, bearer("wrn_"+strings.Repeat("A", 43))...)
	if r.Status != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("a wrong key: %d %v %s", r.Status, r.Header, r.Body)
	}
	// Probes and metrics stay open.
	for _, p := range []string{"/health", "/ready", "/v2/health/live", "/v2/health/ready", "/metrics"} {
		if r := f.do("GET", p, ""); r.Status != 200 {
			t.Errorf("GET %s without a key: %d", p, r.Status)
		}
	}
	// The right key, as Bearer and as X-API-Key.
	if r := f.do("POST", "/process", `{"data":"hello"}`, bearer(ci)...); r.Status != 200 {
		t.Fatalf("ci on /process: %d %s", r.Status, r.Body)
	}
	if r := f.do("POST", "/v2/models/seed/infer", seedV2Request, "X-API-Key", ci); r.Status != 200 {
		t.Fatalf("ci on v2 seed with X-API-Key: %d %s", r.Status, r.Body)
	}
	// A model the key may not call: 403 naming it.
	r = f.do("POST", "/v2/models/digits/infer", digitsInputs(digitsVector{}), bearer(ci)...)
	if r.Status != 403 || !strings.Contains(string(r.Body), "model digits") {
		t.Fatalf("ci on digits: %d %s", r.Status, r.Body)
	}

	// Jobs: readable and cancellable by their owner and admins only.
	j := submitJob(t, f.spec, f.api, "job of ci", bearer(ci)...)
	if r := f.do("GET", "/jobs/"+j.ID, "", bearer(other)...); r.Status != 404 {
		t.Fatalf("another key reads ci's job: %d %s", r.Status, r.Body)
	}
	if r := f.do("DELETE", "/jobs/"+j.ID, "", bearer(other)...); r.Status != 404 {
		t.Fatalf("another key cancels ci's job: %d %s", r.Status, r.Body)
	}
	for _, k := range []string{ci, ops} {
		deadline := time.Now().Add(45 * time.Second)
		for {
			r := f.do("GET", "/jobs/"+j.ID+"?wait=1", "", bearer(k)...)
			if r.Status != 200 {
				t.Fatalf("GET own/admin job: %d %s", r.Status, r.Body)
			}
			if s := r.json(t)["status"]; s == "succeeded" {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("job not succeeded: %s", r.Body)
			}
		}
	}

	// Admin endpoints: an admin key only.
	put := `{"default_version":"1"}`
	if r := f.do("PUT", "/v2/models/seed/traffic", put, bearer(other)...); r.Status != 403 || !strings.Contains(string(r.Body), "not an admin") {
		t.Fatalf("a non-admin PUT traffic: %d %s", r.Status, r.Body)
	}
	if r := f.do("PUT", "/v2/models/seed/traffic", put, bearer(ops)...); r.Status != 200 {
		t.Fatalf("the admin PUT traffic: %d %s", r.Status, r.Body)
	}
	if r := f.do("DELETE", "/v2/models/seed/traffic", "", bearer(ops)...); r.Status != 200 {
		t.Fatalf("the admin DELETE traffic: %d %s", r.Status, r.Body)
	}

	// The caller metric: key names, bounded.
	if v := metric(t, f.api, "warren_auth_requests_total", map[string]string{"caller": "ci"}); v < 4 {
		t.Errorf("warren_auth_requests_total{caller=ci} = %v, want >= 4", v)
	}
	if v := metric(t, f.api, "warren_auth_failures_total", map[string]string{"reason": "missing"}); v < 1 {
		t.Errorf("warren_auth_failures_total{reason=missing} = %v", v)
	}

	// Too many failures from this address: 429 with Retry-After, unless a good key.
	for i := 0; i < 30; i++ {
		r = f.do("POST", "/process", `{"data":"x"}`, bearer(fmt.Sprintf("wrn_guess%02d", i))...)
		if r.Status == 429 {
			break
		}
	}
	if r.Status != 429 || r.Header.Get("Retry-After") == "" || r.json(t)["reason"] != "auth_limited" {
		t.Fatalf("after many failures: %d %v %s", r.Status, r.Header, r.Body)
	}
	if r := f.do("POST", "/process", `{"data":"x"}`, bearer(ci)...); r.Status != 200 {
		t.Fatalf("a good key from the limited address: %d %s", r.Status, r.Body)
	}

	// The logs name the callers and never carry a secret.
	logs := f.api.out.String()
	if !strings.Contains(logs, "caller=ci") || !strings.Contains(logs, "authentication failed") {
		t.Errorf("the API log does not name the caller ci or the failures:\n%.3000s", logs)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) || strings.Contains(logs, s[len("wrn_"):]) {
			t.Fatalf("a key's secret is in the API log")
		}
		for _, w := range f.workers {
			if strings.Contains(w.out.String(), s) {
				t.Fatalf("a key's secret is in a worker's log")
			}
		}
	}
}

// seedV2Request is a v2 request for the seed model.
const seedV2Request = `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["hello"]}]}`

// TestAuthReloadUnderLoad: the keys file changes (a key added, a bad file, a key
// removed, SIGHUP) while a key's calls keep coming: none of them fails.
func TestAuthReloadUnderLoad(t *testing.T) {
	integration(t)
	a, aEntry := keygen(t, "--name", "steady")
	b, bEntry := keygen(t, "--name", "added")
	c, cEntry := keygen(t, "--name", "hup")
	path := filepath.Join(t.TempDir(), "keys.yaml")
	writeKeysFile(t, path, "keys:\n"+aEntry)
	f := newFarm(t, 2, []string{"API_KEYS_FILE=" + path}, nil)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var sent, failed atomic.Int64
	var firstFail atomic.Value
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				r, err := tryDo(t, nil, "POST", f.api.url("/process"), `{"data":"load"}`, bearer(a)...)
				sent.Add(1)
				if err != nil || r.Status != 200 {
					failed.Add(1)
					firstFail.CompareAndSwap(nil, fmt.Sprintf("%d %s %v", r.Status, r.Body, err))
				}
			}
		}()
	}
	status := func(key string) int {
		r, err := tryDo(t, nil, "POST", f.api.url("/process"), `{"data":"probe"}`, bearer(key)...)
		if err != nil {
			t.Fatal(err)
		}
		return r.Status
	}
	await := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 30s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(300 * time.Millisecond)
	// Added: the file is re-read on change.
	writeKeysFile(t, path, "keys:\n"+aEntry+bEntry)
	await("the added key accepted", func() bool { return status(b) == 200 })
	// A bad file: the loaded keys stay.
	writeKeysFile(t, path, "keys:\n  - name: broken\n    hash: nope\n")
	await("the bad file reported", func() bool { return strings.Contains(f.api.out.String(), "keys file not reloaded") })
	if s := status(b); s != 200 {
		t.Fatalf("after a bad file, the added key: %d", s)
	}
	// Removed: b goes; SIGHUP reloads at once.
	writeKeysFile(t, path, "keys:\n"+aEntry+cEntry)
	f.api.signal(syscall.SIGHUP)
	await("the SIGHUP key accepted", func() bool { return status(c) == 200 })
	await("the removed key refused", func() bool { return status(b) != 200 })
	if !strings.Contains(f.api.out.String(), "SIGHUP: reloading the keys file") {
		t.Error("no SIGHUP line in the API log")
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	if failed.Load() != 0 || sent.Load() < 50 {
		t.Fatalf("under reloads: %d of %d calls failed (first: %v)", failed.Load(), sent.Load(), firstFail.Load())
	}
	t.Logf("%d calls with the steady key across a key added, a bad file and a SIGHUP reload, none failed", sent.Load())
	if v := metric(t, f.api, "warren_auth_keys_reloads_total", map[string]string{"result": "error"}); v < 1 {
		t.Errorf("warren_auth_keys_reloads_total{result=error} = %v", v)
	}
}

// TestAuthStartRule: beyond loopback, the API refuses to start without
// authentication unless AUTH=none says so (and warns).
func TestAuthStartRule(t *testing.T) {
	integration(t)
	port := strings.TrimPrefix(freeAddr(t), "127.0.0.1")
	cmd := exec.Command(filepath.Join(binaries(t), "api"))
	cmd.Env = append(os.Environ(), "HTTP_ADDR=0.0.0.0"+port, "DATA_DIR="+t.TempDir(), "AMQP_URL=amqp://guest:guest@127.0.0.1:1/")
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), "AUTH=none") {
		t.Fatalf("no auth on 0.0.0.0: exit %v, err %v:\n%s", cmd.ProcessState, err, out)
	}
	// AUTH=none on a non-loopback address: it starts, with a warning. (The
	// listener is 0.0.0.0; the test reaches it on loopback.)
	p := startProcAt(t, "api", "0.0.0.0"+port, "127.0.0.1"+port, "AUTH=none", "AMQP_URL=amqp://guest:guest@127.0.0.1:1/")
	if r := doChecked(t, nil, "POST", p.url("/process"), `{"data":"x","forward_to_model":false}`); r.Status != 200 {
		t.Fatalf("AUTH=none: %d %s", r.Status, r.Body)
	}
	if !strings.Contains(p.out.String(), "AUTH=none: authentication is off") {
		t.Errorf("no AUTH=none warning:\n%s", p.out.String())
	}
	// A bad keys file at start: a clear error, exit 2.
	bad := filepath.Join(t.TempDir(), "keys.yaml")
	writeKeysFile(t, bad, "keys:\n  - name: x\n    hash: sha256:00\n    models: ['*']\n")
	cmd = exec.Command(filepath.Join(binaries(t), "api"))
	cmd.Env = append(os.Environ(), "HTTP_ADDR=127.0.0.1:0", "DATA_DIR="+t.TempDir(), "API_KEYS_FILE="+bad)
	out, _ = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), "API_KEYS_FILE") || !strings.Contains(string(out), "64 hex digits") {
		t.Fatalf("a bad keys file: exit %d:\n%s", cmd.ProcessState.ExitCode(), out)
	}
}

// TestAuthJWT: an identity provider's tokens through the real API: discovery,
// roles, expired, wrong audience, alg none, and a key rotation.
func TestAuthJWT(t *testing.T) {
	integration(t)
	idp := authtest.NewIdP(t)
	path := filepath.Join(t.TempDir(), "keys.yaml")
	writeKeysFile(t, path, "keys: []\nroles:\n  - name: lab\n    models: [seed]\n  - name: elsewhere\n    models: [digits]\n")
	f := newFarm(t, 1, []string{"API_KEYS_FILE=" + path, "OIDC_ISSUER=" + idp.Issuer(), "OIDC_AUDIENCE=warren"}, nil)
	good := authtest.Claims{Subject: "alice@example.com", Audience: "warren", Roles: []string{"lab"}}
	tok := idp.Token(good)
	if r := f.do("POST", "/process", `{"data":"hi"}`, bearer(tok)...); r.Status != 200 {
		t.Fatalf("a good token: %d %s", r.Status, r.Body)
	}
	j := submitJob(t, f.spec, f.api, "alice's", bearer(tok)...)
	bob := idp.Token(authtest.Claims{Subject: "bob", Audience: "warren", Roles: "lab"})
	if r := f.do("GET", "/jobs/"+j.ID, "", bearer(bob)...); r.Status != 404 {
		t.Fatalf("bob reads alice's job: %d", r.Status)
	}
	if r := f.do("GET", "/jobs/"+j.ID, "", bearer(tok)...); r.Status != 200 {
		t.Fatalf("alice reads her job: %d %s", r.Status, r.Body)
	}
	if r := f.do("POST", "/process", `{"data":"hi"}`, bearer(idp.Token(authtest.Claims{Subject: "carol", Audience: "warren", Roles: "elsewhere"}))...); r.Status != 403 {
		t.Fatalf("a role without seed: %d %s", r.Status, r.Body)
	}
	for name, bad := range map[string]string{
		"expired":        idp.Token(authtest.Claims{Subject: "alice", Audience: "warren", Roles: "lab", Expiry: time.Now().Add(-time.Minute)}),
		"wrong audience": idp.Token(authtest.Claims{Subject: "alice", Audience: "other", Roles: "lab"}),
		"alg none":       idp.NoneToken(good),
		"no role":        idp.Token(authtest.Claims{Subject: "alice", Audience: "warren"}),
	} {
		r := f.do("POST", "/process", `{"data":"hi"}`, bearer(bad)...)
		if r.Status != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), "invalid_token") {
			t.Errorf("%s: %d %v %s", name, r.Status, r.Header, r.Body)
		}
	}
	idp.Rotate()
	if r := f.do("POST", "/process", `{"data":"hi"}`, bearer(idp.Token(good))...); r.Status != 200 {
		t.Fatalf("a token of the rotated key: %d %s", r.Status, r.Body)
	}
	if r := f.do("POST", "/process", `{"data":"hi"}`, bearer(tok)...); r.Status != 401 {
		t.Fatalf("a token of the retired key: %d %s", r.Status, r.Body)
	}
	logs := f.api.out.String()
	if strings.Contains(logs, tok) || strings.Contains(logs, strings.Split(tok, ".")[2]) {
		t.Fatal("a token is in the API log")
	}
	if v := metric(t, f.api, "warren_auth_requests_total", map[string]string{"caller": "lab"}); v < 2 {
		t.Errorf("warren_auth_requests_total{caller=lab} = %v", v)
	}
}

// startProcAt is startProc listening on listen and reached on reach.
func startProcAt(t *testing.T, name, listen, reach string, env ...string) *proc {
	t.Helper()
	p := launch(t, name, listen, reach, env)
	waitHTTP(t, "http://"+reach+"/health", 10*time.Second)
	return p
}

// TestAuthCallerInTraces: the API's server span of an authenticated call names
// the caller (never the key).
func TestAuthCallerInTraces(t *testing.T) {
	integration(t)
	// The keys file's watcher stops with the server, like every other goroutine.
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	vh := testbroker.NewVhost(t)
	atr, apiSpans := newTracing(t, "warren-api")
	secret, e, err := auth.NewKey("tracer", []string{"*"}, false)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "keys.yaml")
	writeKeysFile(t, path, "keys:\n"+e.YAML())
	authn, err := auth.New(context.Background(), auth.Config{KeysFile: path})
	if err != nil {
		t.Fatal(err)
	}
	p := runInProcess(t, vh, api.Config{Tracing: atr, Auth: authn}, worker.Config{WorkerID: "traced-auth",
		Models: []worker.ModelSpec{serve(seedRoute, model.NewSeed(model.SeedConfig{}), 1, 1)}})
	defer p.stop()
	traceID, parent := randomHex(16), randomHex(8)
	r := doChecked(t, newFarmSpec(t), "POST", p.base+"/v2/models/seed/infer", v2Seed("who"),
		"traceparent", "00-"+traceID+"-"+parent+"-01", "Authorization", "Bearer "+secret)
	if r.Status != 200 {
		t.Fatalf("POST: %d %s", r.Status, r.Body)
	}
	span := spansOf(t, "api", apiSpans, traceID, "POST /v2/models/:name/infer")["POST /v2/models/:name/infer"]
	if got := attrOf(span, "warren.caller"); got != "tracer" {
		t.Fatalf("warren.caller = %q, want tracer", got)
	}
	if got := attrOf(span, "warren.caller.via"); got != auth.ViaKey {
		t.Fatalf("warren.caller.via = %q", got)
	}
	for _, a := range span.Attributes {
		if strings.Contains(a.Value.String(), secret) {
			t.Fatalf("span attribute %s holds the key", a.Key)
		}
	}
}
