package queue

import (
	"cmp"
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
	// URL is the AMQP URL, vhost included, or several separated by commas: the
	// nodes of one cluster, with the same vhost, credentials and scheme. Each
	// (re)connect tries the next URL after a failure (round robin, from a random
	// one so that replicas spread over the nodes); the backoff applies after a
	// full round failed. Required.
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
	// RequestQueueType is the type the sync request queues are declared with:
	// [QueueTypeClassic] (empty means classic) or [QueueTypeQuorum]. A queue that
	// already exists with the other type is used as it is, with a warning
	// ([RetypeRequestQueue] converts it): a redeclare with another type fails with
	// 406, and a config change must never become a crash loop.
	RequestQueueType string
	// MinBackoff and MaxBackoff bound the reconnect delay; zero means 100ms and 2s.
	// The delay doubles after each failed attempt, with ±20% jitter, and resets once a
	// session was established.
	MinBackoff, MaxBackoff time.Duration
	// Logger; nil discards.
	Logger *slog.Logger

	// startAt picks the index of the first URL to dial; nil is rand.IntN
	// (tests fix it).
	startAt func(n int) int
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
	if strings.TrimSpace(c.URL) == "" {
		errs = append(errs, errors.New("queue: URL is required"))
	} else if _, err := ParseURLs(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("queue: URL: %w", err))
	}
	if err := c.checkTLS(); err != nil {
		errs = append(errs, err)
	}
	if c.MinBackoff < 0 || c.MaxBackoff < c.MinBackoff {
		errs = append(errs, errors.New("queue: need 0 <= MinBackoff <= MaxBackoff"))
	}
	switch c.RequestQueueType {
	case "", QueueTypeClassic, QueueTypeQuorum:
	default:
		errs = append(errs, fmt.Errorf("queue: RequestQueueType %q: want %q or %q", c.RequestQueueType, QueueTypeClassic, QueueTypeQuorum))
	}
	return errors.Join(errs...)
}

// SplitURLs splits a comma-separated list of AMQP URLs, trimming spaces.
func SplitURLs(list string) []string {
	var urls []string
	for _, u := range strings.Split(list, ",") {
		urls = append(urls, strings.TrimSpace(u))
	}
	return urls
}

// ParseURLs parses a comma-separated list of AMQP URLs (one URL is a list of
// one). Every URL must parse, and all must name the same vhost, user and
// scheme: they are nodes of one cluster. An error names the bad URL by its
// position and host, never by its password.
func ParseURLs(list string) ([]amqp.URI, error) {
	urls := SplitURLs(list)
	var out []amqp.URI
	var errs []error
	for i, s := range urls {
		which := fmt.Sprintf("URL %d of %d", i+1, len(urls))
		if len(urls) == 1 {
			which = "the URL"
		}
		if s == "" {
			errs = append(errs, fmt.Errorf("%s is empty (a stray comma?)", which))
			continue
		}
		u, err := amqp.ParseURI(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): %w", which, redact(s), err))
			continue
		}
		if len(out) > 0 {
			f := out[0]
			switch {
			case u.Vhost != f.Vhost:
				errs = append(errs, fmt.Errorf("%s (%s) names vhost %q, the first names %q: the URLs must be nodes of one cluster, with one vhost", which, u.Host, u.Vhost, f.Vhost))
			case u.Username != f.Username || u.Password != f.Password:
				errs = append(errs, fmt.Errorf("%s (%s) has other credentials than the first: the URLs must share them", which, u.Host))
			case u.Scheme != f.Scheme:
				errs = append(errs, fmt.Errorf("%s (%s) is %s://, the first is %s://: use one scheme", which, u.Host, u.Scheme, f.Scheme))
			}
		}
		out = append(out, u)
	}
	return out, errors.Join(errs...)
}

// redact is an unparsable URL for an error message: its user info dropped.
func redact(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return "no scheme://"
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = "…@" + rest[at+1:]
	}
	return scheme + "://" + rest
}

// ConnectionName returns "warren-<role> <host> pid <pid>", the connection_name every
// warren connection carries.
func ConnectionName(role string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("warren-%s %s pid %d", role, host, os.Getpid())
}

// Vhost returns the vhost named by an AMQP URL, or by a comma-separated list
// of them (which must agree, see ParseURLs).
func Vhost(url string) (string, error) {
	us, err := ParseURLs(url)
	if err != nil {
		return "", err
	}
	return us[0].Vhost, nil
}

// urlTLSParams are the query parameters with which amqp091-go reads TLS files
// from the URL; warren takes them from DialConfig.TLS instead.
var urlTLSParams = []string{"cacertfile", "certfile", "keyfile", "server_name_indication"}

// checkTLS checks that the URL and TLS agree, and that TLS's files load.
func (c *DialConfig) checkTLS() error {
	us, err := ParseURLs(c.URL)
	if err != nil {
		return nil // reported by validate
	}
	for _, u := range us {
		if u.CACertFile != "" || u.CertFile != "" || u.KeyFile != "" || u.ServerName != "" {
			return fmt.Errorf("queue: URL: TLS query parameters (%s) are not read: set the CA file, client certificate and server name in DialConfig.TLS (AMQP_CA_FILE, AMQP_CERT_FILE, AMQP_KEY_FILE, AMQP_SERVER_NAME)",
				strings.Join(urlTLSParams, ", "))
		}
	}
	if us[0].Scheme != "amqps" {
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
// role comes here); url is one of cfg.URL's.
func dial(cfg *DialConfig, url string) (*amqp.Connection, error) {
	u, err := amqp.ParseURI(url)
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
	conn, err := amqp.DialConfig(url, amqp.Config{
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
	pick := cfg.startAt
	if pick == nil {
		pick = rand.IntN
	}
	addrs := newRotation(SplitURLs(cfg.URL), pick)
	for ctx.Err() == nil {
		url, i := addrs.current()
		conn, err := dial(cfg, url)
		if err != nil {
			if addrs.failed() {
				log.Warn("broker connection failed", "err", err, "address", i+1, "of", addrs.len(), "retry_in", backoff)
				if !sleepCtx(ctx, jitter(backoff)) {
					return
				}
				backoff = min(backoff*2, cfg.MaxBackoff)
			} else {
				log.Warn("broker connection failed, trying the next address", "err", err, "address", i+1, "of", addrs.len())
			}
			continue
		}
		addrs.connected()
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
		// The node may be gone: the next connect starts at the next address.
		addrs.failed()
		if time.Since(started) > cfg.MaxBackoff {
			backoff = cfg.MinBackoff
		}
		if !sleepCtx(ctx, jitter(backoff)) {
			return
		}
		backoff = min(backoff*2, cfg.MaxBackoff)
	}
}

// rotation walks a list of broker addresses round robin, from a random one.
type rotation struct {
	urls  []string
	next  int // index of the address to dial
	tries int // failed dials since the last connect or full round
}

func newRotation(urls []string, intn func(int) int) *rotation {
	return &rotation{urls: urls, next: intn(len(urls))}
}

func (r *rotation) len() int { return len(r.urls) }

// current is the address to dial and its index.
func (r *rotation) current() (string, int) { return r.urls[r.next], r.next }

// failed moves to the next address after a failed dial (or a lost session);
// it reports whether a full round has failed, after which the caller backs off.
func (r *rotation) failed() bool {
	r.next = (r.next + 1) % len(r.urls)
	r.tries++
	if r.tries >= len(r.urls) {
		r.tries = 0
		return true
	}
	return false
}

// connected resets the round after a successful dial.
func (r *rotation) connected() { r.tries = 0 }

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

// Request queue types (DialConfig.RequestQueueType).
const (
	QueueTypeClassic = amqp.QueueTypeClassic
	QueueTypeQuorum  = amqp.QueueTypeQuorum
)

// requestQueueArgs are a request queue's x-arguments: none at all for a classic
// queue, so a changed bound never makes a redeclare fail with 406 (the bound is a
// policy; see the package doc), and only x-queue-type for a quorum one.
func requestQueueArgs(typ string) amqp.Table {
	if typ == QueueTypeQuorum {
		return amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}
	}
	return nil
}

// declareRequestQueue declares the sync request queue name as typ, on channels of
// its own (a refused declare closes its channel). When the queue exists with
// another type the broker refuses with 406; the queue is then used as it is (a
// passive declare checks that it exists) and log says so, so that a changed
// REQUEST_QUEUE_TYPE, or replicas of two configs during a rollout, never turn
// into a crash loop. [RetypeRequestQueue] converts such a queue.
func declareRequestQueue(conn *amqp.Connection, name, typ string, log *slog.Logger) (amqp.Queue, error) {
	ch, err := conn.Channel()
	if err != nil {
		return amqp.Queue{}, fmt.Errorf("open channel: %w", err)
	}
	q, err := ch.QueueDeclare(name, true, false, false, false, requestQueueArgs(typ))
	if err == nil {
		_ = ch.Close()
		return q, nil
	}
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed {
		return q, fmt.Errorf("declare queue %q: %w", name, err)
	}
	if ch, err = conn.Channel(); err != nil {
		return q, fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	if q, err = ch.QueueDeclarePassive(name, true, false, false, false, nil); err != nil {
		return q, fmt.Errorf("declare queue %q: %w", name, err)
	}
	if log != nil {
		log.Warn("the request queue exists with other arguments (another type?): using it as it is; RetypeRequestQueue (api queues retype) converts it",
			"queue", name, "want_type", cmp.Or(typ, QueueTypeClassic), "broker_said", ae.Reason)
	}
	return q, nil
}
