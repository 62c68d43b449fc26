// Package authtest is a small identity provider for tests: it serves an OIDC
// discovery document and a JWKS on loopback and signs tokens with its current
// key, which Rotate replaces.
package authtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// IdP is a test identity provider.
type IdP struct {
	srv   *httptest.Server
	mu    sync.Mutex
	key   *ecdsa.PrivateKey
	kid   string
	n     int
	Fetch atomic.Int64 // JWKS requests served
}

// NewIdP starts an IdP on loopback; it stops when the test ends.
func NewIdP(t testing.TB) *IdP {
	t.Helper()
	p := &IdP{}
	p.Rotate()
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": p.Issuer(), "jwks_uri": p.JWKSURL(),
			"id_token_signing_alg_values_supported": []string{"ES256"}})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		p.Fetch.Add(1)
		p.mu.Lock()
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: p.kid, Algorithm: "ES256", Use: "sig"}}}
		p.mu.Unlock()
		_ = json.NewEncoder(w).Encode(set)
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

// Issuer is the IdP's issuer URL.
func (p *IdP) Issuer() string { return p.srv.URL }

// JWKSURL is where its keys are.
func (p *IdP) JWKSURL() string { return p.srv.URL + "/jwks" }

// Rotate replaces the signing key: tokens signed before no longer verify once a
// verifier re-fetches the JWKS.
func (p *IdP) Rotate() {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	p.key, p.kid = k, "k"+string(rune('0'+p.n%10))+"-"+rand.Text()[:6]
}

// Claims are a token's claims; zero fields take defaults in Token.
type Claims struct {
	Subject  string
	Audience string
	Issuer   string
	Expiry   time.Time
	Roles    any // a string or []string; nil: no roles claim
}

// Token signs claims with the current key. Defaults: issuer the IdP's, expiry in
// an hour.
func (p *IdP) Token(c Claims) string {
	p.mu.Lock()
	key, kid := p.key, p.kid
	p.mu.Unlock()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		panic(err)
	}
	tok, err := jwt.Signed(sig).Claims(p.claims(c)).Serialize()
	if err != nil {
		panic(err)
	}
	return tok
}

func (p *IdP) claims(c Claims) map[string]any {
	if c.Issuer == "" {
		c.Issuer = p.Issuer()
	}
	if c.Expiry.IsZero() {
		c.Expiry = time.Now().Add(time.Hour)
	}
	m := map[string]any{"iss": c.Issuer, "sub": c.Subject, "aud": c.Audience,
		"exp": c.Expiry.Unix(), "iat": time.Now().Add(-time.Minute).Unix()}
	if c.Roles != nil {
		m["roles"] = c.Roles
	}
	return m
}

// NoneToken is an unsigned token ("alg": "none") with the claims: it must never
// be accepted.
func (p *IdP) NoneToken(c Claims) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return strings.Join([]string{enc(map[string]string{"alg": "none", "typ": "JWT"}), enc(p.claims(c)), ""}, ".")
}

// HMACToken is the claims signed with HS256 under the current key id, secret
// the HMAC key: the algorithm-confusion attack; it must never be accepted.
func (p *IdP) HMACToken(c Claims, secret []byte) string {
	p.mu.Lock()
	kid := p.kid
	p.mu.Unlock()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: jose.JSONWebKey{Key: secret, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		panic(err)
	}
	tok, err := jwt.Signed(sig).Claims(p.claims(c)).Serialize()
	if err != nil {
		panic(err)
	}
	return tok
}
