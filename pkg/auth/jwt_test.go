package auth_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/auth"
	"github.com/warren-farm/warren/pkg/auth/authtest"
)

const rolesFile = `
roles:
  - name: readers
    models: [digits]
    limits: {rate: 2, burst: 4}
  - name: ops
    models: ['seed*']
    admin: true
`

func jwtAuth(t *testing.T, idp *authtest.IdP, discover bool) *auth.Authenticator {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(path, []byte(rolesFile), 0o600); err != nil {
		t.Fatal(err)
	}
	jc := auth.JWTConfig{Issuer: idp.Issuer(), Audience: "warren"}
	if !discover {
		jc.JWKSURL = idp.JWKSURL()
	}
	a, err := auth.New(context.Background(), auth.Config{KeysFile: path, JWT: jc})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func bearer(a *auth.Authenticator, tok string) (*auth.Principal, error) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return a.Authenticate(r)
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var ae *auth.Error
	if !errors.As(err, &ae) || ae.Code != code {
		t.Fatalf("err = %v, want code %s", err, code)
	}
}

func TestJWT(t *testing.T) {
	idp := authtest.NewIdP(t)
	for _, discover := range []bool{false, true} {
		a := jwtAuth(t, idp, discover)
		p, err := bearer(a, idp.Token(authtest.Claims{Subject: "alice", Audience: "warren", Roles: "readers"}))
		if err != nil {
			t.Fatalf("discover=%v: %v", discover, err)
		}
		if p.Name != "alice" || p.Via != auth.ViaJWT || p.Owner() != "jwt:alice" || p.Label != "readers" || p.Admin ||
			!p.MayCall("digits") || p.MayCall("seed") || p.Limits != (auth.Limits{Rate: 2, Burst: 4}) {
			t.Fatalf("principal %+v", p)
		}
	}
	a := jwtAuth(t, idp, false)
	// Several roles: the union of models, admin if any is.
	p, err := bearer(a, idp.Token(authtest.Claims{Subject: "bob", Audience: "warren", Roles: []string{"unknown", "readers", "ops"}}))
	if err != nil || !p.Admin || !p.MayCall("digits") || !p.MayCall("seed2") || p.Label != "readers" {
		t.Fatalf("two roles: %+v %v", p, err)
	}
	good := authtest.Claims{Subject: "alice", Audience: "warren", Roles: "readers"}
	for name, c := range map[string]struct {
		tok  string
		code string
	}{
		"expired":        {idp.Token(authtest.Claims{Subject: "alice", Audience: "warren", Roles: "readers", Expiry: time.Now().Add(-time.Minute)}), auth.CodeExpired},
		"wrong audience": {idp.Token(authtest.Claims{Subject: "alice", Audience: "someone-else", Roles: "readers"}), auth.CodeInvalid},
		"wrong issuer":   {idp.Token(authtest.Claims{Subject: "alice", Audience: "warren", Issuer: "https://evil.example", Roles: "readers"}), auth.CodeInvalid},
		"alg none":       {idp.NoneToken(good), auth.CodeInvalid},
		"alg HS256":      {idp.HMACToken(good, []byte("the public key, say, as an HMAC secret")), auth.CodeInvalid},
		"no roles":       {idp.Token(authtest.Claims{Subject: "alice", Audience: "warren"}), auth.CodeNoRole},
		"unknown role":   {idp.Token(authtest.Claims{Subject: "alice", Audience: "warren", Roles: "root"}), auth.CodeNoRole},
		"roles a number": {idp.Token(authtest.Claims{Subject: "alice", Audience: "warren", Roles: 7}), auth.CodeInvalid},
		"no subject":     {idp.Token(authtest.Claims{Audience: "warren", Roles: "readers"}), auth.CodeInvalid},
		"garbage":        {"a.b.c", auth.CodeInvalid},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := bearer(a, c.tok)
			wantCode(t, err, c.code)
		})
	}
}

func TestJWTRotation(t *testing.T) {
	idp := authtest.NewIdP(t)
	a := jwtAuth(t, idp, false)
	claims := authtest.Claims{Subject: "alice", Audience: "warren", Roles: "readers"}
	old := idp.Token(claims)
	if _, err := bearer(a, old); err != nil {
		t.Fatal(err)
	}
	fetches := idp.Fetch.Load()
	// Cached: more verifications fetch nothing.
	for range 5 {
		if _, err := bearer(a, old); err != nil {
			t.Fatal(err)
		}
	}
	if n := idp.Fetch.Load(); n != fetches {
		t.Fatalf("JWKS fetched %d more times for known keys; want cached", n-fetches)
	}
	idp.Rotate()
	// go-oidc's key set answers a re-fetch's waiters before it stores the keys and
	// clears its in-flight fetch (RemoteKeySet.keysFromRemote, v3.21.0): for a
	// moment after a fetch, a verification may still see the keys from before it,
	// or join the finished fetch. So each step is checked as "within a second",
	// what a client retrying once would see; it is not a fixed delay.
	within := func(what string, ok func() error) {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for {
			err := ok()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// A token of the new key has an unknown kid: the verifier re-fetches the JWKS.
	fresh := idp.Token(claims)
	within("a token of the rotated key", func() error { _, err := bearer(a, fresh); return err })
	if idp.Fetch.Load() == fetches {
		t.Fatal("the JWKS was not re-fetched on rotation")
	}
	// The old key is gone from the JWKS: its tokens no longer verify.
	within("a token of the old key after the rotation", func() error {
		_, err := bearer(a, old)
		var ae *auth.Error
		if errors.As(err, &ae) && ae.Code == auth.CodeInvalid {
			return nil
		}
		return fmt.Errorf("err = %v, want code %s", err, auth.CodeInvalid)
	})
}
