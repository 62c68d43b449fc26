package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/warren-farm/warren/pkg/catalog"
	"github.com/warren-farm/warren/pkg/httperr"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/reason"
)

// The values of [Config.AdminAPI] (ADMIN_API).
const (
	AdminOff      = "off"      // nobody may change the routing through the API
	AdminLoopback = "loopback" // clients on this host only, not through a proxy
	AdminOn       = "on"       // anyone who reaches the API
)

// AdminModes lists the values of Config.AdminAPI.
var AdminModes = []string{AdminOff, AdminLoopback, AdminOn}

// TrafficAdmin reads and changes where the calls that name no version go
// (pkg/catalog's traffic settings).
type TrafficAdmin interface {
	Traffic(name string) (catalog.Traffic, bool, error)
	SetTraffic(ctx context.Context, name string, t catalog.Traffic) error
	ResetTraffic(ctx context.Context, name string) error
	Split(name string) (map[string]float64, error)
}

// The traffic endpoint: GET shows a model's settings and the split they make now;
// PUT replaces them, DELETE returns the model to the default rule (both only as
// ADMIN_API allows). docs/versions.md is the guide.
func (h *handlers) trafficRoutes(e *echo.Echo) {
	e.GET("/v2/models/:name/traffic", h.getTraffic)
	e.PUT("/v2/models/:name/traffic", h.putTraffic, h.adminOnly)
	e.DELETE("/v2/models/:name/traffic", h.deleteTraffic, h.adminOnly)
}

// trafficBody is the traffic endpoint's answer.
type trafficBody struct {
	Model string `json:"model"`
	// Configured says whether the model has settings (false: the default rule).
	Configured     bool           `json:"configured"`
	Weights        map[string]int `json:"weights,omitempty"`
	StickyHeader   string         `json:"sticky_header,omitempty"`
	DefaultVersion string         `json:"default_version,omitempty"`
	// Split is the share of unversioned calls each version gets now.
	Split map[string]float64 `json:"split"`
}

func (h *handlers) writeTraffic(c echo.Context) error {
	name := c.Param("name")
	t, set, err := h.traffic.Traffic(name)
	if err != nil {
		return trafficError(err)
	}
	split, err := h.traffic.Split(name)
	if err != nil {
		return trafficError(err)
	}
	return c.JSON(http.StatusOK, trafficBody{Model: name, Configured: set, Weights: t.Weights,
		StickyHeader: t.StickyHeader, DefaultVersion: t.DefaultVersion, Split: split})
}

func (h *handlers) getTraffic(c echo.Context) error { return h.writeTraffic(c) }

// trafficRequest is PUT's body. Weights are read as raw JSON so that each can be
// refused by name unless it is a plain integer.
type trafficRequest struct {
	Weights        map[string]json.RawMessage `json:"weights"`
	StickyHeader   string                     `json:"sticky_header"`
	DefaultVersion string                     `json:"default_version"`
}

func (h *handlers) putTraffic(c echo.Context) error {
	body, err := httperr.ReadBody(c.Request(), h.cfg.BodyLimit)
	if err != nil {
		return err
	}
	t, err := decodeTraffic(body)
	if err != nil {
		return httperr.Of(reason.Invalid, "Invalid traffic settings: "+err.Error(), err)
	}
	if err := h.traffic.SetTraffic(c.Request().Context(), c.Param("name"), t); err != nil {
		return trafficError(err)
	}
	return h.writeTraffic(c)
}

func (h *handlers) deleteTraffic(c echo.Context) error {
	if err := h.traffic.ResetTraffic(c.Request().Context(), c.Param("name")); err != nil {
		return trafficError(err)
	}
	return h.writeTraffic(c)
}

// decodeTraffic reads PUT's body: a JSON object with weights (version → a
// non-negative integer), sticky_header and default_version, nothing else.
func decodeTraffic(body []byte) (catalog.Traffic, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req trafficRequest
	if err := dec.Decode(&req); err != nil {
		return catalog.Traffic{}, fmt.Errorf("the body is not a traffic object: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return catalog.Traffic{}, errors.New("the body has data after its JSON object")
	}
	t := catalog.Traffic{StickyHeader: req.StickyHeader, DefaultVersion: req.DefaultVersion}
	var problems []string
	if len(req.Weights) > 0 {
		t.Weights = make(map[string]int, len(req.Weights))
	}
	for _, v := range slices.Sorted(maps.Keys(req.Weights)) {
		raw := strings.TrimSpace(string(req.Weights[v]))
		w, err := strconv.ParseInt(raw, 10, 32)
		if err != nil || w < 0 {
			problems = append(problems, fmt.Sprintf("the weight of version %q must be an integer from 0 to %d, not %s", v, catalog.MaxWeight, raw))
			continue
		}
		t.Weights[v] = int(w)
	}
	if len(problems) > 0 {
		return t, errors.New(strings.Join(problems, "; "))
	}
	return t, nil
}

// trafficError maps the catalog's errors to the status contract.
func trafficError(err error) error {
	switch {
	case errors.Is(err, catalog.ErrUnknownModel):
		return unknownModel(err)
	case errors.Is(err, catalog.ErrInvalidTraffic):
		return httperr.Of(reason.Invalid, "Invalid traffic settings: "+strings.TrimPrefix(err.Error(), catalog.ErrInvalidTraffic.Error()+": "), err)
	case errors.Is(err, context.Canceled):
		return statusFor(err, queue.Route{})
	}
	// Whatever else failed is the store's write (the cause is logged, never shown).
	return httperr.Of(reason.StoreUnavailable, "The traffic settings cannot be stored now (the job store is unavailable); nothing changed; retry", err)
}

// adminOnly lets a call through as ADMIN_API says: always (on), never (off), or
// from a loopback address with no proxy's forwarding header (loopback), so that a
// reverse proxy on the same host does not make every client local. With
// authentication on, the caller must also be an admin.
func (h *handlers) adminOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if h.cfg.AdminAPI == AdminOff {
			return httperr.Of(reason.Forbidden, "The admin API is off (ADMIN_API=off)", nil)
		}
		// With authentication on, the admin endpoints need an admin key (or
		// role), whatever ADMIN_API allows besides.
		if h.auth != nil && h.auth.Enabled() {
			if p := caller(c.Request()); !p.Admin {
				return httperr.Of(reason.Forbidden, "Forbidden: "+p.Name+" is not an admin (admin: true in the keys file)", nil)
			}
		}
		if h.cfg.AdminAPI == AdminOn {
			return next(c)
		}
		req := c.Request()
		host, _, err := net.SplitHostPort(req.RemoteAddr)
		ip := net.ParseIP(host)
		if err != nil || ip == nil || !ip.IsLoopback() {
			return httperr.Of(reason.Forbidden, "The admin API answers clients on the API's own host only (ADMIN_API=loopback)", nil)
		}
		for _, f := range []string{"Forwarded", "X-Forwarded-For", "X-Real-Ip"} {
			if req.Header.Get(f) != "" {
				return httperr.Of(reason.Forbidden, "The admin API does not answer calls through a proxy (a "+f+" header) while ADMIN_API=loopback", nil)
			}
		}
		return next(c)
	}
}
