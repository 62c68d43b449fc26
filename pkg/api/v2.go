package api

import (
	"errors"
	"net/http"
	"runtime/debug"

	"github.com/labstack/echo/v4"

	"github.com/warren-farm/warren/internal/lifecycle"
	"github.com/warren-farm/warren/pkg/catalog"
	"github.com/warren-farm/warren/pkg/httperr"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/oip"
	"github.com/warren-farm/warren/pkg/reason"
)

// The Open Inference Protocol (v2) REST API. Health endpoints answer both forms of
// the specification: the status code (200 true, 4xx false: the older
// required_api.md, whose body is empty — use HEAD for that) and the newer JSON body
// ({"live": true}, {"ready": true}, {"name": …, "ready": true}).
func (h *handlers) v2Routes(e *echo.Echo) {
	e.GET("/v2", h.serverMetadata)
	for _, m := range []func(string, echo.HandlerFunc, ...echo.MiddlewareFunc) *echo.Route{e.GET, e.HEAD} {
		m("/v2/health/live", h.live)
		m("/v2/health/ready", h.serverReady)
		m("/v2/models/:name/ready", h.modelReady)
		m("/v2/models/:name/versions/:version/ready", h.modelReady)
	}
	e.GET("/v2/models", h.listModels)
	e.GET("/models", h.listModels)
	e.GET("/v2/models/:name", h.modelMetadata)
	e.GET("/v2/models/:name/versions/:version", h.modelMetadata)
	e.POST("/v2/models/:name/infer", h.infer)
	e.POST("/v2/models/:name/versions/:version/infer", h.infer)
}

// Extensions lists the protocol extensions warren adds (GET /v2).
var Extensions = []string{"warren_models", "warren_async"}

type serverMetadata struct {
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	Extensions []string `json:"extensions"`
}

func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func (h *handlers) serverMetadata(c echo.Context) error {
	return c.JSON(http.StatusOK, serverMetadata{Name: "warren", Version: buildVersion(), Extensions: Extensions})
}

// health answers a health endpoint in both forms.
func health(c echo.Context, ok bool, body any) error {
	status := http.StatusOK
	if !ok {
		status = http.StatusBadRequest // the specification: "a 4xx status code indicates false"
	}
	if c.Request().Method == http.MethodHead {
		return c.NoContent(status)
	}
	return c.JSON(status, body)
}

func (h *handlers) live(c echo.Context) error {
	return health(c, true, map[string]bool{"live": true})
}

// serverReady: ready while the API serves (reached the broker, not draining).
func (h *handlers) serverReady(c echo.Context) error {
	ok := h.state() == lifecycle.Ready
	return health(c, ok, map[string]bool{"ready": ok})
}

// resolve looks up the path's model (and version) in the catalog.
func (h *handlers) resolve(c echo.Context) (catalog.Version, error) {
	v, err := h.catalog.Resolve(c.Param("name"), c.Param("version"))
	if err != nil {
		return v, unknownModel(err)
	}
	return v, nil
}

// route is the version a call goes to: the path's version, else the one the
// model's traffic settings pick for this request (pkg/catalog's Pick: weights among
// live versions, sticky by a header when configured, else the default rule).
func (h *handlers) route(c echo.Context) (catalog.Version, error) {
	if c.Param("version") != "" {
		return h.resolve(c)
	}
	v, err := h.catalog.Pick(c.Param("name"), c.Request().Header.Get)
	if err != nil {
		return v, unknownModel(err)
	}
	return v, nil
}

type modelReadyBody struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	Ready   bool   `json:"ready"`
}

// modelReady: ready while a worker consumes the version's queue.
func (h *handlers) modelReady(c echo.Context) error {
	v, err := h.resolve(c)
	if err != nil {
		return err
	}
	return health(c, v.Ready(), modelReadyBody{Name: v.Route.Model, Version: c.Param("version"), Ready: v.Ready()})
}

// modelMetadata is the version's v2 metadata; without a version, the default
// version's, listing every known version.
func (h *handlers) modelMetadata(c echo.Context) error {
	v, err := h.resolve(c)
	if err != nil {
		return err
	}
	md := v.Metadata
	if c.Param("version") == "" {
		for _, m := range h.catalog.Models() {
			if m.Name == v.Route.Model {
				md.Versions = md.Versions[:0:0]
				for _, mv := range m.Versions {
					md.Versions = append(md.Versions, mv.Route.Version)
				}
			}
		}
	}
	return c.JSON(http.StatusOK, md)
}

// modelList is GET /v2/models (a warren extension) and GET /models.
type modelList struct {
	Models []modelEntry `json:"models"`
}

type modelEntry struct {
	Name string `json:"name"`
	// DefaultVersion is where a call without a version goes now.
	DefaultVersion string         `json:"default_version"`
	Versions       []versionEntry `json:"versions"`
}

type versionEntry struct {
	Version  string `json:"version"`
	Platform string `json:"platform"`
	Ready    bool   `json:"ready"`
	// Workers is the live consumer count of the version's queue; AnnouncedBy lists
	// the workers heard from recently.
	Workers      int      `json:"workers"`
	AnnouncedBy  []string `json:"announced_by"`
	MaxBatchSize int      `json:"max_batch_size"`
}

func (h *handlers) listModels(c echo.Context) error {
	out := modelList{Models: []modelEntry{}}
	who := caller(c.Request())
	for _, m := range h.catalog.Models() {
		if !who.MayCall(m.Name) {
			continue // a caller sees the models it may call, and only those
		}
		e := modelEntry{Name: m.Name, Versions: []versionEntry{}}
		if d, err := h.catalog.Resolve(m.Name, ""); err == nil {
			e.DefaultVersion = d.Route.Version
		}
		for _, v := range m.Versions {
			e.Versions = append(e.Versions, versionEntry{Version: v.Route.Version, Platform: v.Metadata.Platform,
				Ready: v.Ready(), Workers: max(v.Live, 0), AnnouncedBy: v.Workers, MaxBatchSize: v.MaxBatchSize})
		}
		out.Models = append(out.Models, e)
	}
	return c.JSON(http.StatusOK, out)
}

// infer is POST /v2/models/{name}[/versions/{v}]/infer: the version is the path's
// or the traffic settings' pick; the request is checked against that version's
// metadata before anything is published, then either called
// (the worker's v2 response is passed through as it is) or, with Prefer:
// respond-async, submitted as a job.
func (h *handlers) infer(c echo.Context) error {
	req := c.Request()
	if req.Header.Get("Inference-Header-Content-Length") != "" {
		return httperr.Of(reason.Invalid, "The binary tensor data extension is not supported: send the request as JSON", nil)
	}
	body, err := httperr.ReadBody(req, h.cfg.BodyLimit)
	if err != nil {
		return err
	}
	v, err := h.route(c)
	if err != nil {
		return err
	}
	in, _, err := oip.DecodeRequest(body, h.cfg.Limits)
	if err == nil {
		err = v.Metadata.Validate(in)
	}
	if err != nil {
		var ie *model.InputError
		if errors.As(err, &ie) || errors.Is(err, oip.ErrBadRequest) {
			return httperr.Of(reason.BadInput, err.Error(), err)
		}
		return err
	}
	ve := &httperr.ValidationError{}
	opts := h.callOptions(req, ve)
	if err := ve.OrNil(); err != nil {
		return err
	}
	if opts.async {
		return h.handOff(c, v, body, formatV2, opts.wait)
	}
	reply, err := h.call(c, v, body, opts.timeout)
	if err != nil {
		return err
	}
	return c.JSONBlob(http.StatusOK, reply.Body)
}
