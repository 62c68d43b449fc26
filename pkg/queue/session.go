package queue

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warren-farm/warren/pkg/tlsconfig"
)

// DialConfig says how to reach the broker. Both the client and the consumer embed it.
type DialConfig struct {
	// URL is the AMQP URL, vhost included. Required.
	URL string
	// TLS is the CA, client certificate and server name of an amqps:// URL; the
	// zero value trusts the system's roots and expects the URL's host. The files
	// are read at every dial, so a renewed client certificate or CA is used from
	// the next reconnect on. Setting files for a plain amqp:// URL is an error,
	// and so are the TLS query parameters of amqp091-go's URLs (cacertfile …),
	// which these fields replace: nothing is ignored silently.
	TLS tlsconfig.Client
	// Name is the connection_name shown in the management UI and logs; empty means
	// ConnectionName("warren").
	Name string
	// Heartbeat for the AMQP connection; zero means 10s.
	Heartbeat time.Duration
	// MinBackoff and MaxBackoff bound the reconnect delay; zero means 100ms and 2s.
	// The delay doubles after each failed attempt, with ±20% jitter, and resets once a
	// session was established.
	MinBackoff, MaxBackoff time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

func (c *DialConfig) setDefaults(role string) {
	if c.Name == "" {
		c.Name = ConnectionName(role)
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 10 * time.Second
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func (c *DialConfig) validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("queue: URL is required"))
	} else if _, err := amqp.ParseURI(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("queue: URL: %w", err))
	}
	if err := c.checkTLS(); err != nil {
		errs = append(errs, err)
	}
	if c.MinBackoff < 0 || c.MaxBackoff < c.MinBackoff {
		errs = append(errs, errors.New("queue: need 0 <= MinBackoff <= MaxBackoff"))
	}
	return errors.Join(errs...)
}

// ConnectionName returns "warren-<role> <host> pid <pid>", the connection_name every
// warren connection carries.
func ConnectionName(role string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("warren-%s %s pid %d", role, host, os.Getpid())
}

// Vhost returns the vhost named by an AMQP URL.
func Vhost(url string) (string, error) {
	u, err := amqp.ParseURI(url)
	if err != nil {
		return "", err
	}
	return u.Vhost, nil
}

// urlTLSParams are the query parameters with which amqp091-go reads TLS files
// from the URL; warren takes them from DialConfig.TLS instead.
var urlTLSParams = []string{"cacertfile", "certfile", "keyfile", "server_name_indication"}

// checkTLS checks that the URL and TLS agree, and that TLS's files load.
func (c *DialConfig) checkTLS() error {
	u, err := amqp.ParseURI(c.URL)
	if err != nil {
		return nil // reported by validate
	}
	if u.CACertFile != "" || u.CertFile != "" || u.KeyFile != "" || u.ServerName != "" {
		return fmt.Errorf("queue: URL: TLS query parameters (%s) are not read: set the CA file, client certificate and server name in DialConfig.TLS (AMQP_CA_FILE, AMQP_CERT_FILE, AMQP_KEY_FILE, AMQP_SERVER_NAME)",
			strings.Join(urlTLSParams, ", "))
	}
	if u.Scheme != "amqps" {
		if !c.TLS.IsZero() {
			return errors.New("queue: TLS files or a server name are set but the URL is amqp:// (plain): use amqps://")
		}
		return nil
	}
	if _, err := c.TLS.Config(); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	return nil
}

// dialTimeout bounds the TCP connect; handshakeTimeout the TLS and AMQP
// handshakes after it, together: a peer that accepts and never answers must not
// hold a dial forever.
const (
	dialTimeout      = 5 * time.Second
	handshakeTimeout = 15 * time.Second
)

// dial is the one place a broker connection is made (every reconnect of every
// role comes here).
func dial(cfg *DialConfig) (*amqp.Connection, error) {
	u, err := amqp.ParseURI(cfg.URL)
	if err != nil {
		return nil, err
	}
	var tc *tls.Config
	if u.Scheme == "amqps" {
		// Built at every dial: the files may have been renewed, and amqp091-go
		// writes the server name into the config it is given.
		if tc, err = cfg.TLS.Config(); err != nil {
			return nil, err
		}
	}
	addr := net.JoinHostPort(u.Host, strconv.Itoa(u.Port))
	conn, err := amqp.DialConfig(cfg.URL, amqp.Config{
		Heartbeat:       cfg.Heartbeat,
		Properties:      amqp.Table{"connection_name": cfg.Name},
		TLSClientConfig: tc,
		Dial: func(network, addr string) (net.Conn, error) {
			c, err := net.DialTimeout(network, addr, dialTimeout)
			if err != nil {
				return nil, err
			}
			// amqp091-go clears the deadline once the connection is open.
			if err := c.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		},
	})
	if err != nil && tc != nil {
		if errors.Is(err, amqp.ErrClosed) {
			// The reader saw the connection end during the AMQP handshake and
			// amqp091-go kept no reason: over TLS that is most likely the server
			// refusing the client certificate after the handshake (TLS 1.3).
			err = fmt.Errorf("%w (the connection ended while opening: %w)", err, io.ErrUnexpectedEOF)
		}
		return nil, cfg.TLS.Explain(err, addr)
	}
	return conn, err
}

// runSessions is the reconnect loop shared by [Client] and [Consumer]. It dials, runs
// session (which owns the connection until the connection closes or ctx ends and
// must return only after every goroutine it started has stopped; when ctx ended, the
// session also owns closing the connection), and dials again
// with capped, jittered backoff. Each session gets the next generation number. It
// returns when ctx is done.
func runSessions(ctx context.Context, cfg *DialConfig,
	session func(ctx context.Context, conn *amqp.Connection, gen uint64) error) {
	log := cfg.Logger
	backoff := cfg.MinBackoff
	var gen uint64
	loggedVersion := false
	for ctx.Err() == nil {
		conn, err := dial(cfg)
		if err != nil {
			log.Warn("broker connection failed", "err", err, "retry_in", backoff)
			if !sleepCtx(ctx, jitter(backoff)) {
				return
			}
			backoff = min(backoff*2, cfg.MaxBackoff)
			continue
		}
		gen++
		if !loggedVersion {
			log.Info("connected to broker", "version", conn.Properties["version"], "product", conn.Properties["product"],
				"connection_name", cfg.Name, "generation", gen)
			loggedVersion = true
		} else {
			log.Info("reconnected to broker", "connection_name", cfg.Name, "generation", gen)
		}
		started := time.Now()
		err = session(ctx, conn, gen)
		if ctx.Err() != nil {
			// Stopping: the session owns the connection's last moments (a consumer
			// still has replies and acks to send while it drains).
			return
		}
		_ = conn.Close()
		log.Warn("broker session ended", "err", err, "generation", gen)
		if time.Since(started) > cfg.MaxBackoff {
			backoff = cfg.MinBackoff
		}
		if !sleepCtx(ctx, jitter(backoff)) {
			return
		}
		backoff = min(backoff*2, cfg.MaxBackoff)
	}
}

func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// sleepCtx waits d or until ctx is done; it reports whether the full wait happened.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// declareRequestQueue declares the sync request queue: durable, classic, with no
// x-arguments at all, so a changed bound never makes a redeclare fail with 406
// (the bound is a policy; see the package doc).
func declareRequestQueue(ch *amqp.Channel, name string) (amqp.Queue, error) {
	q, err := ch.QueueDeclare(name, true, false, false, false, nil)
	if err != nil {
		return q, fmt.Errorf("declare queue %q: %w", name, err)
	}
	return q, nil
}
