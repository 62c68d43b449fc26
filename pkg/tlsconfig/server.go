package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// DefaultCheckInterval is how often, at most, a [Reloader] looks at its files.
const DefaultCheckInterval = time.Second

// Reloader serves an HTTP listener's certificate pair and reads it again when its
// files change (a renewed certificate, a Kubernetes secret updated in place), so
// that no restart is needed.
//
// It has no goroutine: the handshake that finds the last look older than the check
// interval stats both files, and reads them again when either changed (modification
// time or size). A pair that does not load — a key that does not match its
// certificate, say, because only one of the two files was written yet — keeps the
// previous pair in service and is logged once; the next change is tried again.
type Reloader struct {
	certFile, keyFile string
	every             time.Duration
	log               *slog.Logger
	now               func() time.Time

	mu        sync.Mutex
	cert      *tls.Certificate
	stamp     [2]fileStamp // of the files last tried, loaded or not
	lastCheck time.Time
}

// ReloaderConfig configures a [Reloader].
type ReloaderConfig struct {
	// CertFile and KeyFile are the PEM certificate (chain) and its key. Required.
	CertFile, KeyFile string
	// CheckInterval bounds how often the files are looked at; zero means
	// DefaultCheckInterval.
	CheckInterval time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now (tests).
	Now func() time.Time
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// NewReloader loads the pair once; an error (naming the files) means the listener
// cannot start.
func NewReloader(cfg ReloaderConfig) (*Reloader, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("tlsconfig: a server needs both a certificate file and a key file")
	}
	r := &Reloader{certFile: cfg.CertFile, keyFile: cfg.KeyFile, every: cfg.CheckInterval, log: cfg.Logger, now: cfg.Now}
	if r.every <= 0 {
		r.every = DefaultCheckInterval
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	stamp, err := r.stat()
	if err != nil {
		return nil, err
	}
	cert, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cert, r.stamp, r.lastCheck = cert, stamp, r.now()
	return r, nil
}

// TLSConfig returns a server configuration that takes its certificate from r.
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}

// GetCertificate is tls.Config.GetCertificate: the current pair, looked at again
// first if the last look is older than the check interval.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.lastCheck) >= r.every {
		r.lastCheck = now
		r.check()
	}
	return r.cert, nil
}

// check reads the pair again if its files changed. r.mu is held.
func (r *Reloader) check() {
	stamp, err := r.stat()
	if err != nil {
		if stamp != r.stamp { // log a missing file once, not at every handshake
			r.stamp = stamp
			r.log.Error("TLS certificate files unreadable; still serving the previous certificate", "err", err)
		}
		return
	}
	if stamp == r.stamp {
		return
	}
	r.stamp = stamp
	cert, err := r.load()
	if err != nil {
		r.log.Error("TLS certificate pair changed but does not load; still serving the previous certificate",
			"cert_file", r.certFile, "key_file", r.keyFile, "err", err)
		return
	}
	r.cert = cert
	r.log.Info("TLS certificate reloaded", "cert_file", r.certFile, "subject", cert.Leaf.Subject.String(),
		"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
}

func (r *Reloader) stat() ([2]fileStamp, error) {
	var out [2]fileStamp
	var errs []error
	for i, f := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[i] = fileStamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return out, errors.Join(errs...)
}

func (r *Reloader) load() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("certificate pair %s, %s: %w", r.certFile, r.keyFile, err)
	}
	if cert.Leaf == nil { // set by LoadX509KeyPair since Go 1.23; kept for clarity
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certificate %s: %w", r.certFile, err)
		}
	}
	return &cert, nil
}
