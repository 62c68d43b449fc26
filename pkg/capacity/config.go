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
	DefaultInterval           = 5 * time.Second
	DefaultTargetUtilization  = 0.7
	DefaultTargetWait         = time.Second
	DefaultWindow             = time.Minute
	DefaultServiceTime        = 100 * time.Millisecond
	defaultHTTPTimeout        = 5 * time.Second
	maxWindow                 = time.Hour
	defaultVhost              = "/"
	managementResponseMaxSize = 1 << 20
)

// Config configures an [Estimator]. The zero value of every field but Queue means
// its default.
type Config struct {
	// ManagementURL is the RabbitMQ management API base, credentials in the URL,
	// e.g. http://guest:guest@127.0.0.1:15672. Empty disables the broker inputs
	// (publish rate, backlog, consumers): the estimate then rests on the local
	// inputs only and [Snapshot].Stale stays true.
	ManagementURL string
	// Vhost is the request queue's vhost; empty means "/".
	Vhost string
	// Queue is the request queue's name, e.g. "warren.requests". Required.
	Queue string
	// Interval is how often [Estimator.Run] reads the management API; default 5s.
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
	// DefaultServiceTime is S while no request has been answered yet (a farm that
	// starts at zero); default 100ms.
	DefaultServiceTime time.Duration
	// HTTPClient reads the management API; nil means a client of the estimator's
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
	if c.Queue == "" {
		errs = append(errs, errors.New("capacity: Queue is required"))
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
