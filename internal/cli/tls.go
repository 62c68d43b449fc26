package cli

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/warren-farm/warren/pkg/config"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/tlsconfig"
)

// LoadBroker reads AMQP_URL and its TLS settings (AMQP_CA_FILE, AMQP_CERT_FILE,
// AMQP_KEY_FILE, AMQP_SERVER_NAME) into the dial configuration both binaries use.
// TLS settings with a plain amqp:// URL are an error: a CA file that would be
// ignored must not look like protection.
func LoadBroker(l *config.Loader) queue.DialConfig {
	d := queue.DialConfig{
		URL:       config.AMQPURL.Load(l),
		Heartbeat: config.AMQPHeartbeat.Load(l),

		RequestQueueType: config.RequestQueueType.Load(l),
		TLS: tlsconfig.Client{
			CAFile:     config.AMQPCAFile.Load(l),
			CertFile:   config.AMQPCertFile.Load(l),
			KeyFile:    config.AMQPKeyFile.Load(l),
			ServerName: config.AMQPServerName.Load(l),
			Setting:    "AMQP",
		},
	}
	checkPair(l, config.AMQPCertFile, d.TLS.CertFile, config.AMQPKeyFile, d.TLS.KeyFile)
	us, err := queue.ParseURLs(d.URL)
	l.Check(err != nil, config.AMQPURL, fmt.Sprint(err))
	if err == nil && us[0].Scheme == "amqp" && !d.TLS.IsZero() {
		l.Check(true, config.AMQPURL, "is plain amqp:// but AMQP_CA_FILE, AMQP_CERT_FILE, AMQP_KEY_FILE or AMQP_SERVER_NAME is set: use amqps:// (or unset them)")
	}
	return d
}

// LoadRedisTLS reads REDIS_CA_FILE, REDIS_CERT_FILE and REDIS_KEY_FILE, for a
// rediss:// REDIS_URL.
func LoadRedisTLS(l *config.Loader, redisURL string) tlsconfig.Client {
	c := tlsconfig.Client{
		CAFile:   config.RedisCAFile.Load(l),
		CertFile: config.RedisCertFile.Load(l),
		KeyFile:  config.RedisKeyFile.Load(l),
		Setting:  "REDIS",
	}
	checkPair(l, config.RedisCertFile, c.CertFile, config.RedisKeyFile, c.KeyFile)
	if u, err := url.Parse(redisURL); err == nil && u.Scheme != "rediss" && !c.IsZero() {
		l.Check(true, config.RedisCAFile, "REDIS_CA_FILE, REDIS_CERT_FILE or REDIS_KEY_FILE is set but REDIS_URL is not rediss://: use rediss:// (or unset them)")
	}
	return c
}

// checkPair records an error when only one of a certificate and its key is set.
func checkPair(l *config.Loader, certEntry config.Entry, cert string, keyEntry config.Entry, key string) {
	certVar, keyVar := certEntry.Describe().Env, keyEntry.Describe().Env
	l.Check(cert != "" && key == "", keyEntry, "must be set when "+certVar+" is")
	l.Check(key != "" && cert == "", certEntry, "must be set when "+keyVar+" is")
}

// Listener is the HTTP listener of a binary: HTTP_ADDR, and HTTPS when
// TLS_CERT_FILE and TLS_KEY_FILE are set.
type Listener struct {
	Addr              string
	CertFile, KeyFile string
}

// LoadListener reads HTTP_ADDR, TLS_CERT_FILE and TLS_KEY_FILE.
func LoadListener(l *config.Loader) Listener {
	ln := Listener{
		Addr:     config.HTTPAddr.Load(l),
		CertFile: config.TLSCertFile.Load(l),
		KeyFile:  config.TLSKeyFile.Load(l),
	}
	checkPair(l, config.TLSCertFile, ln.CertFile, config.TLSKeyFile, ln.KeyFile)
	return ln
}

// HTTPS reports whether the listener serves HTTPS.
func (c Listener) HTTPS() bool { return c.CertFile != "" }

// Listen opens the listener. With TLS, the certificate pair is loaded now (a pair
// that does not load is a configuration error, exit 2) and served through a
// [tlsconfig.Reloader], which picks up a changed pair without a restart.
func (c Listener) Listen(log *slog.Logger) (net.Listener, error) {
	var tc *tls.Config
	if c.HTTPS() {
		r, err := tlsconfig.NewReloader(tlsconfig.ReloaderConfig{CertFile: c.CertFile, KeyFile: c.KeyFile, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("%w: TLS_CERT_FILE, TLS_KEY_FILE: %w", config.ErrInvalid, err)
		}
		tc = r.TLSConfig()
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return nil, fmt.Errorf("HTTP_ADDR: %w", err)
	}
	if tc == nil {
		log.Info("HTTP listener", "addr", ln.Addr().String(), "tls", false)
		return ln, nil
	}
	log.Info("HTTP listener", "addr", ln.Addr().String(), "tls", true, "cert_file", c.CertFile)
	return tls.NewListener(ln, tc), nil
}

// managementTimeout bounds one call to the management API (the policy's and the
// capacity estimate's).
const managementTimeout = 5 * time.Second

// ManagementClient returns the HTTP client for an https:// MANAGEMENT_URL on the
// broker of d: it trusts the system's roots plus AMQP_CA_FILE (the management
// listener is the broker's, and usually carries a certificate of the same CA). It
// returns nil — the packages' own default client — when there is nothing to add:
// a plain URL, or no AMQP_CA_FILE.
func ManagementClient(managementURL string, d queue.DialConfig) (*http.Client, error) {
	u, err := url.Parse(managementURL)
	if err != nil || u.Scheme != "https" || d.TLS.CAFile == "" {
		return nil, nil
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	pem, err := os.ReadFile(d.TLS.CAFile)
	if err != nil {
		return nil, fmt.Errorf("%w: AMQP_CA_FILE (for the https MANAGEMENT_URL): %w", config.ErrInvalid, err)
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: AMQP_CA_FILE (for the https MANAGEMENT_URL): %s: no PEM certificate", config.ErrInvalid, d.TLS.CAFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return &http.Client{Timeout: managementTimeout, Transport: tr}, nil
}
