package auth

import (
	"context"
	"path"
)

// How a principal authenticated (Principal.Via).
const (
	ViaKey  = "key" // an API key of the keys file
	ViaJWT  = "jwt" // a JWT of the identity provider
	ViaNone = "none"
)

// Anonymous is the name of the caller when authentication is off, and the metrics
// label of calls that carried no valid credential.
const Anonymous = "anonymous"

// Limits are a caller's limits, as the keys file states them. They are parsed and
// checked here and enforced elsewhere (the rate limiter). Zero means no limit.
type Limits struct {
	// Rate is the sustained rate in requests per second.
	Rate float64 `json:"rate,omitempty"`
	// Burst is how many requests may come at once above Rate.
	Burst int `json:"burst,omitempty"`
	// Concurrency bounds the caller's requests in flight.
	Concurrency int `json:"concurrency,omitempty"`
}

// Principal is an authenticated caller.
type Principal struct {
	// Name is who the caller is: the key's name, or the token's subject. It goes
	// into logs, traces and job records; it is never a secret.
	Name string
	// Via is how the caller authenticated: ViaKey, ViaJWT or ViaNone (auth off).
	Via string
	// Label is the caller's metrics label: the key's name or the JWT's role, both
	// from the keys file, so the label's values are bounded.
	Label string
	// Admin: the caller may use the admin endpoints.
	Admin bool
	// Models are the globs (path.Match) of the models the caller may call.
	Models []string
	// Limits are the caller's limits.
	Limits Limits
}

// Owner is what a job record stores as the job's owner: a job is readable and
// cancellable only by the principal of the same Owner (or an admin). The prefix
// keeps a key named "alice" apart from a token whose subject is "alice".
func (p *Principal) Owner() string {
	if p == nil || p.Via == ViaNone {
		return ""
	}
	return p.Via + ":" + p.Name
}

// MayCall reports whether the caller may call the model.
func (p *Principal) MayCall(model string) bool {
	if p == nil {
		return false
	}
	for _, g := range p.Models {
		if ok, _ := path.Match(g, model); ok {
			return true
		}
	}
	return false
}

type ctxKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the caller of the request whose context ctx is; false when
// no authentication ran.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(*Principal)
	return p, ok && p != nil
}
