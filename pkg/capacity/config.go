package capacity

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"time"
)

// Defaults of [Config].
const (
	DefaultInterval          = 5 * time.Second
	DefaultTargetUtilization = 0.7
	DefaultTargetWait        = time.Second
	DefaultWindow            = time.Minute
	DefaultServiceTime       = 100 * time.Millisecond
	DefaultMaxRoutes         = 1024
	defaultHTTPTimeout       = 5 * time.Second
	maxWindow                = time.Hour
	defaultVhost             = "/"
)

// Config configures a [Farm]. The zero value of every field means its default.
type Config struct {
	// ManagementURL is the RabbitMQ management API base, credentials in the URL,
	// e.g. http://guest:guest@127.0.0.1:15672. Empty disables the broker inputs
	// (publish rate, backlog, consumers): the estimate then rests on the local
	// inputs only and [Snapshot].Stale stays true.
	ManagementURL string
	// Vhost is the vhost of the request queues; empty means "/".
	Vhost string
	// Interval is how often [Farm.Run] reads the management API (one request
	// for all the request queues); default 5s.
	Interval time.Duration
	// TargetUtilization is U, the share of a slot's time it should be busy, in
	// (0, 1]; default 0.7.
	TargetUtilization float64
	// TargetWait is W, the time within which the backlog should be drained;
	// default 1s.
	TargetWait time.Duration
	// Window is the averaging window of the rates and the mean service time,
	// between 1s and 1h; default 1m. Older observations stop counting.
	Window time.Duration
	// DefaultServiceTime is a route's S while none of its requests has been
	// answered yet (a model version that starts at zero); default 100ms.
	DefaultServiceTime time.Duration
	// MaxRoutes bounds the number of routes (model versions) tracked; further
	// ones are ignored and counted ([Farm.Ignored]); default 1024.
	MaxRoutes int
	// HTTPClient reads the management API; nil means a client of the farm's
	// own with a 5s timeout, whose idle connections Run closes when it returns.
	HTTPClient *http.Client
	// Logger receives the few state changes worth logging (management API
	// unreadable, readable again); nil discards.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Vhost == "" {
		c.Vhost = defaultVhost
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.TargetUtilization == 0 {
		c.TargetUtilization = DefaultTargetUtilization
	}
	if c.TargetWait == 0 {
		c.TargetWait = DefaultTargetWait
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.DefaultServiceTime == 0 {
		c.DefaultServiceTime = DefaultServiceTime
	}
	if c.MaxRoutes == 0 {
		c.MaxRoutes = DefaultMaxRoutes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// validate reports every bad field; it runs after setDefaults.
func (c *Config) validate() error {
	var errs []error
	if c.ManagementURL != "" {
		u, err := url.Parse(c.ManagementURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("capacity: ManagementURL %q: not an http(s) URL", redactURL(c.ManagementURL)))
		}
	}
	if c.Interval < 0 {
		errs = append(errs, errors.New("capacity: Interval must be positive"))
	}
	if math.IsNaN(c.TargetUtilization) || c.TargetUtilization <= 0 || c.TargetUtilization > 1 {
		errs = append(errs, errors.New("capacity: TargetUtilization must be in (0, 1]"))
	}
	if c.TargetWait < 0 {
		errs = append(errs, errors.New("capacity: TargetWait must be positive"))
	}
	if c.Window < time.Second || c.Window > maxWindow {
		errs = append(errs, errors.New("capacity: Window must be between 1s and 1h"))
	}
	if c.DefaultServiceTime < 0 {
		errs = append(errs, errors.New("capacity: DefaultServiceTime must be positive"))
	}
	if c.MaxRoutes < 0 {
		errs = append(errs, errors.New("capacity: MaxRoutes must be positive"))
	}
	return errors.Join(errs...)
}

// redactURL hides a URL's password for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
