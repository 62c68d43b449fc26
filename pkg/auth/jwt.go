package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// DefaultRolesClaim is the claim that names a token's roles.
const DefaultRolesClaim = "roles"

// DefaultAlgorithms are the signature algorithms accepted by default. "none" and
// the HMAC algorithms are never accepted: a JWKS publishes public keys only.
var DefaultAlgorithms = []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512, oidc.PS256, oidc.EdDSA}

// JWTConfig configures the acceptance of an identity provider's tokens.
type JWTConfig struct {
	// Issuer is the "iss" every token must carry (OIDC_ISSUER); empty: no JWTs.
	Issuer string
	// Audience is the "aud" every token must contain (OIDC_AUDIENCE); required.
	Audience string
	// JWKSURL is where the signing keys are (OIDC_JWKS_URL); empty: discovered at
	// start from Issuer's /.well-known/openid-configuration.
	JWKSURL string
	// RolesClaim is the claim naming the token's roles (a string or a list of
	// strings); empty means DefaultRolesClaim.
	RolesClaim string
	// Algorithms accepted; empty means DefaultAlgorithms.
	Algorithms []string
	// HTTPClient fetches the discovery document and the JWKS; nil means a client
	// with a 10 s timeout.
	HTTPClient *http.Client
	// Now is the clock for expiry; nil means time.Now.
	Now func() time.Time
}

type jwtVerifier struct {
	cfg JWTConfig
	v   *oidc.IDTokenVerifier
}

func newJWTVerifier(ctx context.Context, cfg JWTConfig) (*jwtVerifier, error) {
	if cfg.Audience == "" {
		return nil, errors.New("auth: OIDC_AUDIENCE is required with OIDC_ISSUER")
	}
	if cfg.RolesClaim == "" {
		cfg.RolesClaim = DefaultRolesClaim
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = DefaultAlgorithms
	}
	for _, alg := range cfg.Algorithms {
		if !slices.Contains(DefaultAlgorithms, alg) {
			return nil, fmt.Errorf("auth: JWT algorithm %q: want some of %v", alg, DefaultAlgorithms)
		}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	// go-oidc takes its HTTP client from the context; the key set keeps the
	// context's values only, never its cancellation.
	cctx := oidc.ClientContext(context.WithoutCancel(ctx), cfg.HTTPClient)
	oc := &oidc.Config{ClientID: cfg.Audience, SupportedSigningAlgs: cfg.Algorithms, Now: cfg.Now}
	var v *oidc.IDTokenVerifier
	if cfg.JWKSURL != "" {
		v = oidc.NewVerifier(cfg.Issuer, oidc.NewRemoteKeySet(cctx, cfg.JWKSURL), oc)
	} else {
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		p, err := oidc.NewProvider(oidc.ClientContext(dctx, cfg.HTTPClient), cfg.Issuer)
		if err != nil {
			return nil, fmt.Errorf("OIDC_ISSUER %s: discovery: %w (or set OIDC_JWKS_URL)", cfg.Issuer, err)
		}
		v = p.VerifierContext(cctx, oc)
	}
	return &jwtVerifier{cfg: cfg, v: v}, nil
}

// verify checks the token and maps its roles to a principal: the union of the
// roles' models, admin if any role is, the first role's limits, and the first
// role as the metrics label.
func (j *jwtVerifier) verify(ctx context.Context, raw string, kr *Keyring) (*Principal, error) {
	tok, err := j.v.Verify(ctx, raw)
	if err != nil {
		var exp *oidc.TokenExpiredError
		if errors.As(err, &exp) {
			return nil, &Error{Code: CodeExpired, Msg: "the token has expired", Err: err}
		}
		return nil, &Error{Code: CodeInvalid, Msg: "the token is not accepted (signature, issuer, audience or algorithm)", Err: err}
	}
	if tok.Subject == "" {
		return nil, &Error{Code: CodeInvalid, Msg: "the token has no subject (sub)"}
	}
	var claims map[string]json.RawMessage
	if err := tok.Claims(&claims); err != nil {
		return nil, &Error{Code: CodeInvalid, Msg: "the token's claims cannot be read", Err: err}
	}
	var roles []string
	if raw, ok := claims[j.cfg.RolesClaim]; ok {
		var one string
		if json.Unmarshal(raw, &one) == nil {
			roles = []string{one}
		} else if err := json.Unmarshal(raw, &roles); err != nil {
			return nil, &Error{Code: CodeInvalid, Msg: fmt.Sprintf("the token's %q claim must be a string or a list of strings", j.cfg.RolesClaim)}
		}
	}
	p := &Principal{Name: tok.Subject, Via: ViaJWT}
	for _, name := range roles {
		r, ok := kr.Role(name)
		if !ok {
			continue
		}
		if p.Label == "" {
			p.Label, p.Limits = r.Name, r.Limits
		}
		p.Admin = p.Admin || r.Admin
		for _, m := range r.Models {
			if !slices.Contains(p.Models, m) {
				p.Models = append(p.Models, m)
			}
		}
	}
	if p.Label == "" {
		return nil, &Error{Code: CodeNoRole, Msg: fmt.Sprintf("the token's %q claim names no role of the keys file", j.cfg.RolesClaim)}
	}
	return p, nil
}
