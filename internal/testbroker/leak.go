package testbroker

import "go.uber.org/goleak"

// LeakOptions are the goleak options for a test that uses this package: goroutines
// that existed when the test started are ignored, and so are the idle keep-alive
// connections of the management API client, which outlive a test by design.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	}
}
