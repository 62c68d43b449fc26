package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The values of Config.Mode (AUTH).
const (
	// ModeAuto: authentication is on when a keys file or an issuer is configured;
	// with neither, it is off, which is allowed only on a loopback address.
	ModeAuto = "auto"
	// ModeNone: authentication is off on purpose, on any address (a warning at
	// start). A keys file or an issuer configured too is an error.
	ModeNone = "none"
)

// Modes lists the values of Config.Mode.
var Modes = []string{ModeAuto, ModeNone}

// DefaultPollInterval is how often the keys file is checked for changes.
const DefaultPollInterval = 2 * time.Second

// Config configures an [Authenticator].
type Config struct {
	// Mode is ModeAuto (also "") or ModeNone.
	Mode string
	// KeysFile is the keys file's path; empty: no API keys (and no roles).
	KeysFile string
	// InitAdmin, when set and KeysFile does not exist yet, makes a first admin
	// key of that name at start: KeysFile is written with its entry and the
	// secret goes to KeysFile+InitKeySuffix (both 0600), never to a log. This is
	// how a deployment ships with keys on and a generated secret (compose).
	InitAdmin string
	// JWT, when Issuer is set, accepts the identity provider's tokens.
	JWT JWTConfig
	// PollInterval is how often KeysFile is checked for changes; zero means
	// DefaultPollInterval.
	PollInterval time.Duration
	// Failures limits failed attempts per client address; zero values take
	// the FailureLimiter's defaults.
	Failures FailureConfig
	// Logger; nil discards.
	Logger *slog.Logger
}

// Why an attempt failed (Error.Code; the reason label of warren_auth_failures_total).
const (
	CodeMissing = "missing" // no credential
	CodeInvalid = "invalid" // unknown key, bad token (signature, issuer, audience, alg, format)
	CodeExpired = "expired" // an expired token
	CodeNoRole  = "no_role" // a valid token that names no role of the keys file
)

// Error is a failed authentication. Msg is safe to show the client.
type Error struct {
	Code string
	Msg  string
	Err  error // the cause, for logs; never shown to the client
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Authenticator checks credentials. Safe for concurrent use; the keys can be
// swapped (Reload) while requests are checked, none of which waits for it.
type Authenticator struct {
	cfg     Config
	log     *slog.Logger
	enabled bool
	keys    atomic.Pointer[Keyring]
	jwt     *jwtVerifier
	limiter *FailureLimiter

	reloadMu sync.Mutex
	lastSum  [sha256.Size]byte

	failures *prometheus.CounterVec
	reloads  *prometheus.CounterVec
	loaded   prometheus.Gauge
	calls    *prometheus.CounterVec
}

// New checks cfg, loads the keys file and sets up the JWT verifier. A keys file
// that does not load is an error here (at start), unlike at a reload.
func New(ctx context.Context, cfg Config) (*Authenticator, error) {
	if cfg.Mode == "" {
		cfg.Mode = ModeAuto
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Authenticator{cfg: cfg, log: cfg.Logger, limiter: NewFailureLimiter(cfg.Failures)}
	switch cfg.Mode {
	case ModeNone:
		if cfg.KeysFile != "" || cfg.JWT.Issuer != "" {
			return nil, errors.New("auth: AUTH=none but API_KEYS_FILE or OIDC_ISSUER is set: unset them, or AUTH")
		}
	case ModeAuto:
		a.enabled = cfg.KeysFile != "" || cfg.JWT.Issuer != ""
	default:
		return nil, fmt.Errorf("auth: mode %q: want one of %v", cfg.Mode, Modes)
	}
	if cfg.PollInterval < 0 {
		return nil, errors.New("auth: PollInterval must not be negative")
	}
	a.metrics()
	if cfg.KeysFile != "" && cfg.InitAdmin != "" {
		if err := initKeys(cfg.KeysFile, cfg.InitAdmin, a.log); err != nil {
			return nil, fmt.Errorf("API_KEYS_INIT: %w", err)
		}
	}
	if cfg.KeysFile != "" {
		data, err := readKeysFile(cfg.KeysFile)
		if err == nil {
			var kr *Keyring
			if kr, err = ParseKeys(data); err == nil {
				a.keys.Store(kr)
				a.lastSum = sha256.Sum256(data)
				a.loaded.Set(float64(kr.Len()))
			}
		}
		if err != nil {
			return nil, fmt.Errorf("API_KEYS_FILE %s: %w", cfg.KeysFile, err)
		}
	}
	if cfg.JWT.Issuer != "" {
		if cfg.KeysFile == "" {
			return nil, errors.New("auth: OIDC_ISSUER needs API_KEYS_FILE: its \"roles\" say what a token's roles may do")
		}
		v, err := newJWTVerifier(ctx, cfg.JWT)
		if err != nil {
			return nil, err
		}
		a.jwt = v
	}
	return a, nil
}

func (a *Authenticator) metrics() {
	a.failures = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "warren", Name: "auth_failures_total",
		Help: "Failed authentications by reason (missing, invalid, expired, no_role) and those refused for too many failures (limited)."},
		[]string{"reason"})
	a.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "warren", Name: "auth_keys_reloads_total",
		Help: "Reloads of the keys file by result (ok, error: the previous keys stay)."}, []string{"result"})
	a.loaded = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "warren", Name: "auth_keys",
		Help: "API keys loaded from the keys file."})
	a.calls = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "warren", Name: "auth_requests_total",
		Help: "Authenticated requests by caller: a key's or role's name from the keys file, anonymous (auth off), or other."},
		[]string{"caller"})
	for _, r := range []string{CodeMissing, CodeInvalid, CodeExpired, CodeNoRole, "limited"} {
		a.failures.WithLabelValues(r)
	}
	a.reloads.WithLabelValues("ok")
	a.reloads.WithLabelValues("error")
}

// Collectors are the authenticator's metrics, for the API's registry.
func (a *Authenticator) Collectors() []prometheus.Collector {
	return []prometheus.Collector{a.failures, a.reloads, a.loaded, a.calls}
}

// Enabled reports whether credentials are required.
func (a *Authenticator) Enabled() bool { return a.enabled }

// Mode is the configured mode.
func (a *Authenticator) Mode() string { return a.cfg.Mode }

// anonymous is the caller when authentication is off: it may call every model;
// admin calls fall back to ADMIN_API's rule.
var anonymous = &Principal{Name: Anonymous, Via: ViaNone, Label: Anonymous, Models: []string{"*"}}

// Authenticate returns the caller of r. With authentication off it is the
// anonymous principal; otherwise a failure is an *Error.
func (a *Authenticator) Authenticate(r *http.Request) (*Principal, error) {
	if !a.enabled {
		a.calls.WithLabelValues(Anonymous).Inc()
		return anonymous, nil
	}
	cred, err := credential(r)
	if err != nil {
		return nil, err
	}
	var p *Principal
	kr := a.keys.Load()
	switch {
	case strings.HasPrefix(cred, KeyPrefix) && kr != nil:
		var ok bool
		if p, ok = kr.Lookup(cred); !ok {
			return nil, &Error{Code: CodeInvalid, Msg: "unknown API key"}
		}
	case a.jwt != nil && strings.Count(cred, ".") == 2:
		if p, err = a.jwt.verify(r.Context(), cred, kr); err != nil {
			return nil, err
		}
	default:
		return nil, &Error{Code: CodeInvalid, Msg: "the credential is neither a known API key nor an accepted token"}
	}
	a.calls.WithLabelValues(kr.Label(p.Label)).Inc()
	return p, nil
}

// AuthenticateKey is Authenticate for API keys only: the caller of r if r carries
// a valid key. It is what an address over its failure limit still gets checked
// for: a key costs one SHA-256 and no I/O, so a client with a good key behind the
// same proxy or NAT as a guesser is not locked out by it, while tokens (whose
// unknown key ids make the JWKS be fetched again) and guesses are refused unchecked.
func (a *Authenticator) AuthenticateKey(r *http.Request) (*Principal, bool) {
	if !a.enabled {
		return nil, false
	}
	cred, err := credential(r)
	kr := a.keys.Load()
	if err != nil || kr == nil || !strings.HasPrefix(cred, KeyPrefix) {
		return nil, false
	}
	p, ok := kr.Lookup(cred)
	if ok {
		a.calls.WithLabelValues(kr.Label(p.Label)).Inc()
	}
	return p, ok
}

// credential extracts the one credential of r: Authorization: Bearer, or X-API-Key.
func credential(r *http.Request) (string, error) {
	var bearer string
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return "", &Error{Code: CodeInvalid, Msg: "the Authorization header must be \"Bearer <key or token>\""}
		}
		bearer = strings.TrimSpace(tok)
	}
	key := strings.TrimSpace(r.Header.Get("X-API-Key"))
	switch {
	case bearer != "" && key != "" && bearer != key:
		return "", &Error{Code: CodeInvalid, Msg: "send one credential: Authorization and X-API-Key differ"}
	case bearer != "":
		return bearer, nil
	case key != "":
		return key, nil
	}
	return "", &Error{Code: CodeMissing, Msg: "authentication required: send \"Authorization: Bearer <key or token>\" or \"X-API-Key: <key>\""}
}

// Failed records a failed attempt from the client address ip, e for the metrics.
func (a *Authenticator) Failed(ip string, e *Error) {
	a.failures.WithLabelValues(e.Code).Inc()
	a.limiter.Fail(ip)
}

// Limited reports whether ip made too many failed attempts lately, and when it
// may try again.
func (a *Authenticator) Limited(ip string) (time.Duration, bool) { return a.limiter.Limited(ip) }

// Refused counts an attempt refused unchecked because its address is limited.
func (a *Authenticator) Refused() { a.failures.WithLabelValues("limited").Inc() }

// Reload re-reads the keys file. On any error the keys already loaded stay, the
// error is logged and counted, and returned. An unchanged file is a no-op.
func (a *Authenticator) Reload() error {
	if a.cfg.KeysFile == "" {
		return nil
	}
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	data, err := readKeysFile(a.cfg.KeysFile)
	var kr *Keyring
	if err == nil {
		sum := sha256.Sum256(data)
		if sum == a.lastSum {
			return nil
		}
		if kr, err = ParseKeys(data); err == nil {
			a.keys.Store(kr)
			a.lastSum = sum
			a.loaded.Set(float64(kr.Len()))
			a.reloads.WithLabelValues("ok").Inc()
			a.log.Info("keys file reloaded", "path", a.cfg.KeysFile, "keys", kr.Len(), "roles", len(kr.roles))
			return nil
		}
	}
	a.reloads.WithLabelValues("error").Inc()
	a.log.Error("keys file not reloaded; the previous keys stay", "path", a.cfg.KeysFile, "err", err)
	return err
}

// Run checks the keys file for changes every PollInterval until ctx ends.
// (Polling rather than inotify: it also sees a Kubernetes Secret's symlink swap
// and needs no dependency.)
func (a *Authenticator) Run(ctx context.Context) {
	if a.cfg.KeysFile == "" {
		return
	}
	t := time.NewTicker(a.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = a.Reload()
		}
	}
}

// Keyring is the keys loaded now (nil without a keys file).
func (a *Authenticator) Keyring() *Keyring { return a.keys.Load() }

// Label is the bounded metrics label of a principal.
func (a *Authenticator) Label(p *Principal) string {
	if p == nil {
		return Anonymous
	}
	if p.Via == ViaNone {
		return Anonymous
	}
	return a.keys.Load().Label(p.Label)
}

// InitKeySuffix names the file beside the keys file that holds the secret of the
// key InitAdmin made.
const InitKeySuffix = ".admin-key"

// initKeys writes a keys file with one admin key and the key's secret beside it,
// unless the keys file exists. The keys file appears whole and exclusively (a
// hard link of a finished temporary file), so of several replicas sharing the
// directory one writes it and the others read it complete.
func initKeys(path, name string, log *slog.Logger) error {
	if _, err := os.Stat(path); err == nil || !errors.Is(err, os.ErrNotExist) {
		return nil // there already (or unreadable: the load reports it)
	}
	secret, e, err := NewKey(name, []string{"*"}, true)
	if err != nil {
		return err
	}
	tmp := path + ".init-" + strings.ToLower(rand.Text()[:8])
	defer os.Remove(tmp + ".key")
	defer os.Remove(tmp)
	if err := os.WriteFile(tmp+".key", []byte(secret+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(tmp, []byte("# Made by API_KEYS_INIT; add keys with `api keygen`.\nkeys:\n"+e.YAML()), 0o600); err != nil {
		return err
	}
	// The secret first: once the keys file exists, its key's secret does too.
	if err := os.Rename(tmp+".key", path+InitKeySuffix); err != nil {
		return err
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			// Another replica won: its secret file may just have been replaced by
			// ours, which matches no key. Rare (replicas starting together on
			// an empty shared directory); the warning says what to do.
			log.Warn("keys file created by another replica at the same moment; if its admin-key file does not work, delete both files and restart one replica", "keys_file", path)
			return nil
		}
		return err
	}
	log.Warn("keys file created with a new admin key; its secret is in the file beside it (not in any log)",
		"keys_file", path, "secret_file", path+InitKeySuffix, "name", name)
	return nil
}

func readKeysFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxKeysFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxKeysFileSize {
		return nil, fmt.Errorf("over the limit of %d bytes", MaxKeysFileSize)
	}
	return bytes.Clone(data), nil
}

// CheckExposure is the rule for starting without authentication: allowed on a
// loopback address, or anywhere with AUTH=none (the caller logs a warning). addr
// is the address the API listens on (net.Listener.Addr().String()).
func (a *Authenticator) CheckExposure(addr string) error {
	if a.enabled || a.cfg.Mode == ModeNone {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("auth: listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() || host == "localhost" {
		return nil
	}
	return fmt.Errorf("the API listens on %s, beyond this host, with no authentication: set API_KEYS_FILE (or OIDC_ISSUER), or AUTH=none to run it open on purpose", addr)
}
