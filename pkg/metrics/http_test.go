package metrics

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestHTTPLabelsStayBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := NewHTTP(reg)
	e := echo.New()
	e.GET("/jobs/:id", func(c echo.Context) error { return c.String(200, c.Param("id")) })
	e.POST("/process", func(c echo.Context) error { return echo.NewHTTPError(http.StatusUnprocessableEntity, "bad") })
	h.Instrument(e)

	for _, r := range []struct{ method, path string }{
		{"GET", "/jobs/1"}, {"GET", "/jobs/2"}, {"POST", "/process"},
		{"GET", "/random/1"}, {"GET", "/random/2"}, {"BREW", "/process"}, {"GET", "/process"},
	} {
		e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(r.method, r.path, nil))
	}
	want := `
# HELP warren_http_requests_total HTTP requests by route template, method and status code.
# TYPE warren_http_requests_total counter
warren_http_requests_total{code="200",method="GET",route="/jobs/:id"} 2
warren_http_requests_total{code="200",method="POST",route="/process"} 0
warren_http_requests_total{code="404",method="GET",route="unmatched"} 2
warren_http_requests_total{code="405",method="GET",route="/process"} 1
warren_http_requests_total{code="405",method="other",route="/process"} 1
warren_http_requests_total{code="422",method="POST",route="/process"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "warren_http_requests_total"); err != nil {
		t.Fatal(err)
	}
	// Latency series: the two routes and "unmatched" created up front, plus the two
	// 405 method variants seen; never one per random path.
	if n := testutil.CollectAndCount(h.duration); n != 5 {
		t.Fatalf("duration series: %d, want 5", n)
	}
}
