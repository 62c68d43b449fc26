// Package apidoc is warren's HTTP contract: the hand-written OpenAPI 3.0.3 document that
// the API serves at /openapi.json, the interactive Swagger UI at /docs, and a [Validator]
// that checks real HTTP exchanges against the document.
//
// The document (openapi.json beside this file) is the source of truth for the API's
// routes, bodies, status codes and headers. Change it together with the handlers; the
// integration tests drive the real API through [Validator], so a drift on either side
// fails them.
//
// Swagger UI comes from the npm package swagger-ui-dist (see [SwaggerUIVersion] and
// swagger-ui/README.md). Every file the page loads is embedded in the binary and served
// by [Register]: /docs works without any outside network.
package apidoc

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"path"
	"time"

	"github.com/labstack/echo/v4"
)

// SwaggerUIVersion is the swagger-ui-dist release whose files are embedded.
const SwaggerUIVersion = "5.35.0"

// Routes served by [Register].
const (
	SpecPath     = "/openapi.json" // the OpenAPI document
	DocsPath     = "/docs"         // the Swagger UI page
	AssetsPrefix = "/docs/assets/" // the page's scripts, style sheet and icons
)

//go:embed openapi.json
var spec []byte

//go:embed swagger-ui/index.html swagger-ui/swagger-initializer.js
//go:embed swagger-ui/swagger-ui-bundle.js swagger-ui/swagger-ui.css
//go:embed swagger-ui/favicon-32x32.png swagger-ui/favicon-16x16.png
var uiFS embed.FS

// assetNames lists the files served under AssetsPrefix, by their name in swagger-ui/.
var assetNames = []string{
	"swagger-ui-bundle.js",
	"swagger-ui.css",
	"swagger-initializer.js",
	"favicon-32x32.png",
	"favicon-16x16.png",
}

// Cache policies: the page and the document are revalidated on every load (cheap, thanks
// to the ETag); the assets change only with a new binary, so an hour is safe.
const (
	cacheRevalidate = "no-cache"
	cacheAsset      = "public, max-age=3600"
)

// contentTypes is fixed here rather than taken from package mime, whose answers depend on
// the host's /etc/mime.types.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".png":  "image/png",
	".json": echo.MIMEApplicationJSON,
}

// Spec returns the raw OpenAPI JSON document (the embedded file pkg/apidoc/openapi.json).
// The caller owns the returned slice.
func Spec() []byte { return bytes.Clone(spec) }

// Register adds to e:
//
//   - GET and HEAD /openapi.json: the document, as application/json;
//   - GET and HEAD /docs: the Swagger UI page (GET /docs/ redirects to it);
//   - GET and HEAD /docs/assets/NAME: the page's embedded scripts, style sheet and icons.
//
// Every answer carries an ETag and honours If-None-Match. Paths under /docs/assets/ that
// are not assets are left to e's not-found handling.
func Register(e *echo.Echo) {
	specAsset := newAsset(SpecPath, spec, cacheRevalidate)
	e.GET(SpecPath, specAsset.serve)
	e.HEAD(SpecPath, specAsset.serve)

	index := newAsset("index.html", mustRead("index.html"), cacheRevalidate)
	e.GET(DocsPath, index.serve)
	e.HEAD(DocsPath, index.serve)
	// The page refers to its assets relative to /docs, which a trailing slash would break.
	e.GET(DocsPath+"/", func(c echo.Context) error {
		return c.Redirect(http.StatusTemporaryRedirect, "../docs")
	})

	for _, name := range assetNames {
		a := newAsset(name, mustRead(name), cacheAsset)
		e.GET(AssetsPrefix+name, a.serve)
		e.HEAD(AssetsPrefix+name, a.serve)
	}
}

func mustRead(name string) []byte {
	b, err := uiFS.ReadFile("swagger-ui/" + name)
	if err != nil {
		// Every name is listed in the go:embed lines above: a build-time fact.
		panic("apidoc: missing embedded file " + name + ": " + err.Error())
	}
	return b
}

// asset is one embedded file ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
	cache       string
}

func newAsset(name string, body []byte, cache string) *asset {
	ct, ok := contentTypes[path.Ext(name)]
	if !ok {
		panic("apidoc: no content type for " + name)
	}
	sum := sha256.Sum256(body)
	return &asset{
		body:        body,
		contentType: ct,
		etag:        `"` + hex.EncodeToString(sum[:16]) + `"`,
		cache:       cache,
	}
}

func (a *asset) serve(c echo.Context) error {
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, a.contentType)
	h.Set("ETag", a.etag)
	h.Set("Cache-Control", a.cache)
	h.Set(echo.HeaderXContentTypeOptions, "nosniff")
	// ServeContent answers HEAD, If-None-Match (304) and Range requests.
	http.ServeContent(c.Response(), c.Request(), "", time.Time{}, bytes.NewReader(a.body))
	return nil
}
