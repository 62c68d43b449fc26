// Package health is the `healthcheck` subcommand both binaries carry, so that a
// container image without a shell or curl can still probe its own process:
//
//	api healthcheck            # GET /ready on HTTP_ADDR's port; exit 0 on 2xx
//	worker healthcheck /health # liveness instead of readiness
//
// Docker's HEALTHCHECK and Compose's healthcheck run it; Kubernetes probes the same
// endpoints with httpGet.
//
// When the listener serves HTTPS (TLS_CERT_FILE), the probe speaks HTTPS to it and
// does not verify the certificate. That is deliberate and limited to this probe:
// it connects only to the process's own listen address (loopback for a wildcard
// one), sends nothing secret and trusts nothing it reads but a status code, while
// the certificate's names are the ones clients use (a service name, a public
// host), which the loopback address usually is not. The TLS handshake still has to
// succeed with the pair the process serves.
package health

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Paths a check may ask for.
const (
	Ready = "/ready"
	Live  = "/health"
)

// Config says what to probe.
type Config struct {
	// Addr is the process's listen address (HTTP_ADDR): ":8000", "0.0.0.0:8000",
	// "[::]:8001" or "10.0.0.5:8000". A wildcard or empty host is probed on loopback.
	Addr string
	// Path is Ready or Live.
	Path string
	// Timeout bounds the whole probe (default 3 s).
	Timeout time.Duration
	// HTTPS probes with TLS, without verifying the certificate (see the package
	// documentation for why that is safe here, and only here).
	HTTPS bool
}

// URL returns the address a probe of addr and path requests over plain HTTP.
func URL(addr, path string) (string, error) { return probeURL(addr, path, false) }

func probeURL(addr, path string, https bool) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("HTTP_ADDR %q: %w", addr, err)
	}
	if port == "" {
		return "", fmt.Errorf("HTTP_ADDR %q: no port", addr)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	scheme := "http://"
	if https {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(host, port) + path, nil
}

// Check probes once and returns nil when the endpoint answered 2xx.
func Check(ctx context.Context, cfg Config) error {
	if cfg.Path != Ready && cfg.Path != Live {
		return fmt.Errorf("unknown check %q: use %s or %s", cfg.Path, Ready, Live)
	}
	u, err := probeURL(cfg.Addr, cfg.Path, cfg.HTTPS)
	if err != nil {
		return err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	// A client of its own: no proxy from the environment, no keep-alive to leak.
	tr := &http.Transport{DisableKeepAlives: true}
	if cfg.HTTPS {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // the process's own address; see the package documentation
	}
	client := &http.Client{Transport: tr}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// ErrUsage is returned by ParseArgs for arguments it does not understand.
var ErrUsage = errors.New("usage: healthcheck [/ready|/health]")

// ParseArgs reads the subcommand's arguments (after "healthcheck"): none means
// readiness, or one of the two paths.
func ParseArgs(args []string) (string, error) {
	switch {
	case len(args) == 0:
		return Ready, nil
	case len(args) == 1 && (args[0] == Ready || args[0] == Live):
		return args[0], nil
	}
	return "", ErrUsage
}

// Command runs the subcommand: it probes addr (over HTTPS when https) and prints
// the outcome, returning the process exit code (0 healthy, 1 unhealthy, 2 usage).
func Command(args []string, addr string, https bool, stdout, stderr io.Writer) int {
	path, err := ParseArgs(args)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if err := Check(context.Background(), Config{Addr: addr, Path: path, HTTPS: https}); err != nil {
		fmt.Fprintln(stderr, "unhealthy:", err)
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}
