package api

import (
	"errors"
	"math"
	"net"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/warren-farm/warren/pkg/apidoc"
	"github.com/warren-farm/warren/pkg/auth"
	"github.com/warren-farm/warren/pkg/httperr"
	"github.com/warren-farm/warren/pkg/reason"
)

// openRoutes answer without credentials: the probes (an orchestrator has no key),
// the service banner, and what carries neither inputs nor answers — the metrics,
// the capacity estimate and the API's documentation (docs/security.md says why).
var openRoutes = map[string]bool{
	"/": true, "/health": true, "/ready": true, "/v2": true,
	"/v2/health/live": true, "/v2/health/ready": true,
	"/metrics": true, "/capacity": true, apidoc.SpecPath: true, apidoc.DocsPath: true, apidoc.DocsPath + "/": true,
}

// openRoute reports whether the route template needs no credential.
func openRoute(route string) bool {
	return openRoutes[route] || strings.HasPrefix(route, apidoc.AssetsPrefix)
}

// authenticate puts the caller on the request's context (auth.FromContext), or
// answers 401 (with WWW-Authenticate), 429 (too many failures from this address)
// or 403 (a model the caller may not call, for the routes that name one).
func (h *handlers) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if openRoute(c.Path()) {
			return next(c)
		}
		req := c.Request()
		ip := clientAddr(req)
		var p *auth.Principal
		var err error
		if d, limited := h.auth.Limited(ip); limited && h.auth.Enabled() {
			// Over the limit: only a valid API key is still checked (see
			// auth.AuthenticateKey); anything else is refused unchecked.
			var ok bool
			if p, ok = h.auth.AuthenticateKey(req); !ok {
				h.auth.Refused()
				h.cfg.Logger.Warn("authentication refused: too many failures from this address", "client", ip, "path", req.URL.Path)
				e := httperr.Of(reason.AuthLimited, "Too many failed authentications from this address; retry later", nil)
				e.RetryAfter = max(1, int(math.Ceil(d.Seconds())))
				return e
			}
		} else {
			p, err = h.auth.Authenticate(req)
		}
		if err != nil {
			var ae *auth.Error
			if !errors.As(err, &ae) {
				ae = &auth.Error{Code: auth.CodeInvalid, Msg: "the credential is not accepted", Err: err}
			}
			h.auth.Failed(ip, ae)
			// Never the credential itself: only why it failed.
			h.cfg.Logger.Info("authentication failed", "reason", ae.Code, "client", ip, "path", req.URL.Path,
				"request_id", requestIDOf(c), "err", ae.Error())
			c.Response().Header().Set("WWW-Authenticate", challenge(ae))
			return httperr.Of(reason.Unauthorized, "Unauthorized: "+ae.Msg, err)
		}
		ctx := auth.NewContext(req.Context(), p)
		req = req.WithContext(ctx)
		c.SetRequest(req)
		trace.SpanFromContext(ctx).SetAttributes(attribute.String("warren.caller", p.Name), attribute.String("warren.caller.via", p.Via))
		if h.auth.Enabled() {
			h.cfg.Logger.Debug("authenticated", "caller", p.Name, "via", p.Via, "path", req.URL.Path, "request_id", requestIDOf(c))
		}
		if name := c.Param("name"); name != "" && hasNameParam(c) {
			if err := mayCall(req, name); err != nil {
				return err
			}
		}
		return next(c)
	}
}

func hasNameParam(c echo.Context) bool {
	for _, n := range c.ParamNames() {
		if n == "name" {
			return true
		}
	}
	return false
}

// challenge is the WWW-Authenticate header of a 401 (RFC 6750: no error code when
// no credential came).
func challenge(e *auth.Error) string {
	if e.Code == auth.CodeMissing {
		return `Bearer realm="warren"`
	}
	desc := strings.NewReplacer(`"`, "'", `\`, "/").Replace(e.Msg)
	return `Bearer realm="warren", error="invalid_token", error_description="` + desc + `"`
}

// clientAddr is the address the connection came from. Forwarding headers are not
// believed: anyone can send them, and the failure limiter keyed on them would be
// no limit at all (behind a proxy, every client shares the proxy's budget).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// caller is the request's principal (the anonymous one when no authentication
// ran, as in the handlers' unit tests).
func caller(r *http.Request) *auth.Principal {
	if p, ok := auth.FromContext(r.Context()); ok {
		return p
	}
	return anonymousCaller
}

var anonymousCaller = &auth.Principal{Name: auth.Anonymous, Via: auth.ViaNone, Label: auth.Anonymous, Models: []string{"*"}}

// mayCall is 403 naming the model when the caller may not call it.
func mayCall(r *http.Request, model string) error {
	p := caller(r)
	if p.MayCall(model) {
		return nil
	}
	return httperr.Of(reason.Forbidden, "Forbidden: "+p.Name+" may not call model "+model, nil)
}

// mayRead says whether the caller may read or cancel a job of that owner: its
// own, any for an admin, and any when authentication is off (jobs made while it
// was off have no owner; once it is on, only admins see those).
func mayRead(r *http.Request, owner string) bool {
	p := caller(r)
	return p.Via == auth.ViaNone || p.Admin || owner == p.Owner()
}
