package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func writeKeys(t *testing.T, path string, entries ...KeyEntry) {
	t.Helper()
	var b strings.Builder
	b.WriteString("keys:\n")
	for _, e := range entries {
		b.WriteString(e.YAML())
	}
	if err := os.WriteFile(path+".tmp", []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil { // atomic, as an editor or a Secret does
		t.Fatal(err)
	}
}

func newKey(t *testing.T, name string, admin bool, models ...string) (string, KeyEntry) {
	t.Helper()
	s, e, err := NewKey(name, models, admin)
	if err != nil {
		t.Fatal(err)
	}
	return s, e
}

func authErr(t *testing.T, err error, code string) {
	t.Helper()
	var ae *Error
	if !errors.As(err, &ae) || ae.Code != code {
		t.Fatalf("err = %v, want an *Error with code %s", err, code)
	}
}

func TestAuthenticateKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.yaml")
	s1, e1 := newKey(t, "ci", false, "digits")
	writeKeys(t, path, e1)
	a, err := New(context.Background(), Config{KeysFile: path})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Enabled() {
		t.Fatal("not enabled with a keys file")
	}
	req := func(h ...string) *httptestReq { return newReq(h...) }
	for _, hs := range [][]string{{"Authorization", "Bearer " + s1}, {"Authorization", "bearer  " + s1}, {"X-API-Key", s1}, {"Authorization", "Bearer " + s1, "X-API-Key", s1}} {
		p, err := a.Authenticate(req(hs...).r)
		if err != nil || p.Name != "ci" || p.Via != ViaKey || p.Owner() != "key:ci" {
			t.Fatalf("%q: %+v, %v", hs, p, err)
		}
	}
	_, err = a.Authenticate(req().r)
	authErr(t, err, CodeMissing)
	for _, hs := range [][]string{
		{"Authorization", "Bearer " + NewSecret()},
		{"Authorization", "Basic " + s1},
		{"Authorization", "Bearer"},
		{"X-API-Key", "nope"},
		{"Authorization", "Bearer " + s1, "X-API-Key", NewSecret()},
		{"Authorization", "Bearer a.b.c"}, // a JWT, but JWTs are not configured
	} {
		_, err := a.Authenticate(req(hs...).r)
		authErr(t, err, CodeInvalid)
		if strings.Contains(err.Error(), s1) {
			t.Fatalf("the error repeats the secret: %v", err)
		}
	}
	if got := testutil.ToFloat64(a.calls.WithLabelValues("ci")); got != 4 {
		t.Fatalf("warren_auth_requests_total{caller=ci} = %v, want 4", got)
	}
}

type httptestReq struct{ r *http.Request }

func newReq(kv ...string) *httptestReq {
	r := httptest.NewRequest("GET", "/v2/models/digits/infer", nil)
	for i := 0; i+1 < len(kv); i += 2 {
		r.Header.Set(kv[i], kv[i+1])
	}
	return &httptestReq{r: r}
}

func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.yaml")
	s1, e1 := newKey(t, "one", false, "*")
	s2, e2 := newKey(t, "two", true, "*")
	writeKeys(t, path, e1)
	a, err := New(context.Background(), Config{KeysFile: path, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ok := func(s string) bool { _, err := a.Authenticate(newReq("X-API-Key", s).r); return err == nil }
	if !ok(s1) || ok(s2) {
		t.Fatal("initial keys")
	}
	// Reload (SIGHUP's path): key two added, one removed.
	writeKeys(t, path, e2)
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if ok(s1) || !ok(s2) {
		t.Fatal("after reload: want only two")
	}
	// A bad file keeps the old keys, and says so.
	if err := os.WriteFile(path, []byte("keys:\n  - name: x\n    hash: sha256:zz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err == nil {
		t.Fatal("a bad file reloaded")
	}
	if !ok(s2) {
		t.Fatal("a bad file dropped the loaded keys")
	}
	if got := testutil.ToFloat64(a.reloads.WithLabelValues("error")); got != 1 {
		t.Fatalf("reloads{error} = %v", got)
	}
	// A missing file, too.
	_ = os.Remove(path)
	if err := a.Reload(); err == nil || !ok(s2) {
		t.Fatalf("missing file: err %v, key two still valid: %v", err, ok(s2))
	}
	// Run polls the file and picks up a change.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	writeKeys(t, path, e1, e2)
	deadline := time.Now().Add(5 * time.Second)
	for !ok(s1) {
		if time.Now().After(deadline) {
			t.Fatal("Run did not pick up the changed file")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := testutil.ToFloat64(a.loaded); got != 2 {
		t.Fatalf("warren_auth_keys = %v, want 2", got)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("keys: 3\n"), 0o600)
	for name, c := range map[string]struct {
		cfg  Config
		want string
	}{
		"missing file":        {Config{KeysFile: filepath.Join(dir, "none.yaml")}, "API_KEYS_FILE"},
		"bad file":            {Config{KeysFile: bad}, "API_KEYS_FILE"},
		"none with keys":      {Config{Mode: ModeNone, KeysFile: bad}, "AUTH=none"},
		"bad mode":            {Config{Mode: "maybe"}, "maybe"},
		"issuer without keys": {Config{JWT: JWTConfig{Issuer: "http://127.0.0.1:1", Audience: "x", JWKSURL: "http://127.0.0.1:1/jwks"}}, "needs API_KEYS_FILE"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(context.Background(), c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

func TestCheckExposure(t *testing.T) {
	off, _ := New(context.Background(), Config{})
	none, _ := New(context.Background(), Config{Mode: ModeNone})
	path := filepath.Join(t.TempDir(), "keys.yaml")
	_, e := newKey(t, "a", false, "*")
	writeKeys(t, path, e)
	on, err := New(context.Background(), Config{KeysFile: path})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		a    *Authenticator
		addr string
		ok   bool
	}{
		{off, "127.0.0.1:8000", true}, {off, "[::1]:8000", true}, {off, "localhost:8000", true},
		{off, "0.0.0.0:8000", false}, {off, "[::]:8000", false}, {off, "10.1.2.3:8000", false}, {off, ":8000", false},
		{none, "0.0.0.0:8000", true}, {on, "0.0.0.0:8000", true},
	} {
		err := c.a.CheckExposure(c.addr)
		if (err == nil) != c.ok {
			t.Errorf("mode %s enabled %v on %s: err %v, want ok %v", c.a.Mode(), c.a.Enabled(), c.addr, err, c.ok)
		}
	}
	if p, err := off.Authenticate(newReq().r); err != nil || p.Name != Anonymous || p.Owner() != "" || !p.MayCall("x") || p.Admin {
		t.Fatalf("auth off: %+v, %v", p, err)
	}
}

func TestFailureLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewFailureLimiter(FailureConfig{Burst: 3, Refill: time.Second, MaxClients: 2, Now: func() time.Time { return now }})
	for i := range 3 {
		if _, lim := l.Limited("a"); lim {
			t.Fatalf("limited after %d failures", i)
		}
		l.Fail("a")
	}
	d, lim := l.Limited("a")
	if !lim || d <= 0 || d > time.Second {
		t.Fatalf("after 3 failures: %v %v", d, lim)
	}
	if _, lim := l.Limited("b"); lim {
		t.Fatal("another address is limited")
	}
	now = now.Add(time.Second)
	if _, lim := l.Limited("a"); lim {
		t.Fatal("not refilled after Refill")
	}
	// Bounded: a third address evicts (a is not full, b is unknown: all go).
	l.Fail("b")
	l.Fail("c")
	if len(l.m) > 2 {
		t.Fatalf("%d addresses tracked, want at most 2", len(l.m))
	}
}

func TestInitAdmin(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.yaml")
	a, err := New(context.Background(), Config{KeysFile: path, InitAdmin: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := os.ReadFile(path + InitKeySuffix)
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Authenticate(newReq("Authorization", "Bearer "+strings.TrimSpace(string(secret))).r)
	if err != nil || p.Name != "admin" || !p.Admin || !p.MayCall("anything") {
		t.Fatalf("the generated key: %+v, %v", p, err)
	}
	for _, f := range []string{path, path + InitKeySuffix} {
		st, err := os.Stat(f)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", f, st.Mode(), err)
		}
	}
	keys, _ := os.ReadFile(path)
	if strings.Contains(string(keys), strings.TrimSpace(string(secret))) {
		t.Fatal("the keys file holds the secret")
	}
	// A second start keeps the file and the key.
	if _, err := New(context.Background(), Config{KeysFile: path, InitAdmin: "admin"}); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(path + InitKeySuffix)
	if string(again) != string(secret) {
		t.Fatal("a restart made a new key")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("%d files left in the directory, want 2", len(entries))
	}
}
