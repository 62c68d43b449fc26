package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// checkLoopbackURL refuses URLs whose host is not a loopback address: the
// benchmark sends load only to this machine.
func checkLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("parse %q: %w", redact(raw), err)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%s: host %q is not a loopback address; the benchmark only sends traffic to this machine", redact(raw), host)
}

// redact hides a URL's password.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// WithVhost returns the AMQP URL amqpURL pointing at vhost.
func WithVhost(amqpURL, vhost string) (string, error) {
	u, err := url.Parse(amqpURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + vhost
	u.RawPath = "/" + url.PathEscape(vhost)
	return u.String(), nil
}

// Mgmt is a small client of the RabbitMQ management HTTP API.
type Mgmt struct {
	base *url.URL
	user string
	pass string
	hc   *http.Client
}

// NewMgmt parses a management URL such as http://guest:guest@127.0.0.1:15672.
func NewMgmt(raw string) (*Mgmt, error) {
	if err := checkLoopbackURL(raw); err != nil {
		return nil, err
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	m := &Mgmt{base: u, hc: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{Proxy: nil}}}
	if u.User != nil {
		m.user = u.User.Username()
		m.pass, _ = u.User.Password()
	}
	u.User = nil
	return m, nil
}

func (m *Mgmt) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	u := strings.TrimRight(m.base.String(), "/") + path
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	req.SetBasicAuth(m.user, m.pass)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := m.hc.Do(req)
	if err != nil {
		return fmt.Errorf("management %s %s: %w", method, path, err)
	}
	defer func() { _ = res.Body.Close() }()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("management %s %s: %s: %s", method, path, res.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("management %s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

// Overview is the part of /api/overview the report shows.
type Overview struct {
	RabbitMQVersion string `json:"rabbitmq_version"`
	ErlangVersion   string `json:"erlang_version"`
	ClusterName     string `json:"cluster_name"`
}

// Overview fetches /api/overview.
func (m *Mgmt) Overview(ctx context.Context) (Overview, error) {
	var o Overview
	err := m.do(ctx, http.MethodGet, "/api/overview", nil, &o)
	return o, err
}

// CreateVhost creates vhost and gives user (the URL's user) full permissions on it.
func (m *Mgmt) CreateVhost(ctx context.Context, vhost string) error {
	if err := m.do(ctx, http.MethodPut, "/api/vhosts/"+url.PathEscape(vhost), map[string]any{
		"description": "warren benchmark (temporary)",
	}, nil); err != nil {
		return err
	}
	return m.do(ctx, http.MethodPut, "/api/permissions/"+url.PathEscape(vhost)+"/"+url.PathEscape(m.user),
		map[string]string{"configure": ".*", "write": ".*", "read": ".*"}, nil)
}

// DeleteVhost deletes vhost (closing its connections and queues).
func (m *Mgmt) DeleteVhost(ctx context.Context, vhost string) error {
	return m.do(ctx, http.MethodDelete, "/api/vhosts/"+url.PathEscape(vhost), nil, nil)
}
