package auth

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseKeys: any keys file parses or is refused with an error, never a panic;
// an accepted one has at least one key or role, every key is found by no other
// secret than its own, and parsing it again gives the same keyring.
func FuzzParseKeys(f *testing.F) {
	_, e, err := NewKey("ci", []string{"digits", "seed*"}, true)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("keys:\n" + e.YAML()))
	f.Add([]byte("keys:\n" + e.YAML() + "roles:\n  - name: ops\n    models: ['*']\n    admin: true\n    limits: {rate: 5, burst: 10, concurrency: 2}\n"))
	f.Add([]byte(`{"keys":[{"name":"a","hash":"sha256:00","models":["*"]}]}`))
	f.Add([]byte("keys: []\nroles: []\n"))
	f.Add([]byte("keys:\n  - name: x\n    hash: md5:abc\n    limits: {rate: -1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		kr, err := ParseKeys(data)
		if err != nil {
			if kr != nil || err.Error() == "" {
				t.Fatalf("refused with a keyring or an empty error: %v", err)
			}
			return
		}
		if kr.Len() == 0 && len(kr.roles) == 0 {
			t.Fatal("accepted a keys file with no keys and no roles")
		}
		if _, ok := kr.Lookup(""); ok {
			t.Fatal("the empty secret matched a key")
		}
		if _, ok := kr.Lookup(KeyPrefix + "not-a-secret-of-this-file"); ok {
			t.Fatal("an unrelated secret matched a key")
		}
		again, err := ParseKeys(data)
		if err != nil || again.Len() != kr.Len() || len(again.roles) != len(kr.roles) {
			t.Fatalf("parsing again: %v (%d keys, %d roles; first %d, %d)", err, again.Len(), len(again.roles), kr.Len(), len(kr.roles))
		}
	})
}

// FuzzCredential: whatever Authorization and X-API-Key carry, Authenticate
// accepts exactly the one known key (as a Bearer credential or X-API-Key, with
// surrounding blanks) and refuses everything else with an *Error whose message
// never repeats what was sent.
func FuzzCredential(f *testing.F) {
	secret, e, err := NewKey("ci", []string{"*"}, false)
	if err != nil {
		f.Fatal(err)
	}
	path := filepath.Join(f.TempDir(), "keys.yaml")
	if err := os.WriteFile(path, []byte("keys:\n"+e.YAML()), 0o600); err != nil {
		f.Fatal(err)
	}
	a, err := New(context.Background(), Config{KeysFile: path})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("Bearer "+secret, "")
	f.Add("", secret)
	f.Add("bearer  "+secret+" ", " "+secret)
	f.Add("Bearer "+secret, secret+"x")
	f.Add("Basic dXNlcjpwYXNz", "")
	f.Add("Bearer a.b.c", "")
	f.Add("Bearer", "wrn_")
	f.Fuzz(func(t *testing.T, authz, xkey string) {
		r := httptest.NewRequest("POST", "/process", nil)
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		if xkey != "" {
			r.Header.Set("X-API-Key", xkey)
		}
		// What the request really carries (net/http drops a header it cannot hold).
		authz, xkey = r.Header.Get("Authorization"), r.Header.Get("X-API-Key")
		p, err := a.Authenticate(r)
		var ae *Error
		if err != nil {
			if p != nil || !errors.As(err, &ae) || ae.Code == "" {
				t.Fatalf("refused with %v, %v: want an *Error with a code and no principal", p, err)
			}
			for _, sent := range []string{strings.TrimSpace(authz), strings.TrimSpace(xkey)} {
				if len(sent) >= 8 && strings.Contains(err.Error(), sent) {
					t.Fatalf("the error %q repeats the credential %q", err, sent)
				}
			}
			return
		}
		if p == nil || p.Name != "ci" {
			t.Fatalf("accepted as %+v", p)
		}
		bearer := ""
		if s, tok, ok := strings.Cut(authz, " "); ok && strings.EqualFold(s, "Bearer") {
			bearer = strings.TrimSpace(tok)
		}
		if bearer != secret && strings.TrimSpace(xkey) != secret {
			t.Fatalf("accepted Authorization %q, X-API-Key %q: neither is the key", authz, xkey)
		}
	})
}
