package httpmodel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warren-farm/warren/pkg/model"
)

// The protocols a Model speaks (Config.Protocol).
const (
	ProtocolV2   = "v2"
	ProtocolSeed = "seed"
)

const (
	// DefaultMaxConns is the connection pool size when Config.MaxConns is 0.
	DefaultMaxConns = 16
	// MaxConnsLimit bounds Config.MaxConns.
	MaxConnsLimit = 1024
	// DefaultMaxResponseBytes bounds a response body when Config.MaxResponseBytes
	// is 0: a larger answer is an error, never an allocation without bound.
	DefaultMaxResponseBytes = 64 << 20
	// maxMessage bounds a remote error message kept in a StatusError.
	maxMessage = 512
	// maxSnippet bounds the quote of an ill-formed answer in an error.
	maxSnippet = 200
	// maxDrain is how much of an unread body is discarded so that its connection
	// can be reused; a longer rest closes the connection instead.
	maxDrain = 64 << 10
)

// Config configures an http model. The keys named in errors are config.yaml's.
type Config struct {
	// URL is, for v2, the server's base URL (http://triton:8000, optionally with a
	// path prefix); for seed, the full predict URL (http://service-b:8001/predict).
	// The scheme must be http or https.
	URL string
	// Protocol is "v2" or "seed".
	Protocol string
	// Model and Version name the remote model (v2 only; Version is optional). The
	// caller sets Model to the local model's name when config.yaml names none.
	Model, Version string
	// Timeout bounds each call to the server; 0 means only the request's deadline.
	// When it expires first, the call fails with [model.ErrTimeout].
	Timeout time.Duration
	// MaxConns is the connection pool size (at most MaxConnsLimit): the most
	// connections open to the server at once, and kept alive when idle. 0 means
	// DefaultMaxConns.
	MaxConns int
	// Inputs and Outputs declare the model's metadata (v2 only, both or neither);
	// New then does not ask the server for it.
	Inputs, Outputs []model.TensorSpec
	// MaxResponseBytes bounds a response body; 0 means DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// Client, when set, is used instead of the Model's own pooled client (tests,
	// custom TLS). Its Transport's pool settings are then the caller's.
	Client *http.Client
}

// validate checks c, naming the config key of every problem.
func (c *Config) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.URL == "" {
		add("url: required (for v2 the server's base URL, e.g. http://triton:8000; for seed the predict URL)")
	} else if u, err := url.Parse(c.URL); err != nil {
		add("url: %w", err)
	} else {
		switch {
		case u.Scheme != "http" && u.Scheme != "https":
			add("url: %q: the scheme must be http or https", c.URL)
		case u.Host == "":
			add("url: %q has no host", c.URL)
		case u.Fragment != "":
			add("url: %q: a URL with a #fragment cannot be called", c.URL)
		case c.Protocol == ProtocolV2 && u.RawQuery != "":
			add("url: %q: a v2 base URL cannot have a query", c.URL)
		}
	}
	switch c.Protocol {
	case ProtocolV2:
		if c.Model == "" {
			add("model: required for protocol v2 (the remote model's name)")
		}
		if (len(c.Inputs) == 0) != (len(c.Outputs) == 0) {
			add("inputs, outputs: declare both or neither (neither: the server's metadata is used)")
		}
		if err := model.CheckSpecs("inputs", c.Inputs); err != nil {
			errs = append(errs, err)
		}
		if err := model.CheckSpecs("outputs", c.Outputs); err != nil {
			errs = append(errs, err)
		}
	case ProtocolSeed:
		if len(c.Inputs) > 0 || len(c.Outputs) > 0 {
			add("inputs, outputs: protocol seed has fixed tensors (data → class, confidence, input_length, message); remove them")
		}
	case "":
		add("protocol: required (v2 or seed)")
	default:
		add("protocol: %q is not one of v2, seed", c.Protocol)
	}
	if c.Timeout < 0 {
		add("timeout: %v is negative", c.Timeout)
	}
	if c.MaxConns < 0 || c.MaxConns > MaxConnsLimit {
		add("max_conns: %d is not between 0 (the default, %d) and %d", c.MaxConns, DefaultMaxConns, MaxConnsLimit)
	}
	if c.MaxResponseBytes < 0 {
		add("max_response_bytes: %d is negative", c.MaxResponseBytes)
	}
	return errors.Join(errs...)
}

// Model is a model served by a remote HTTP server. It is safe for concurrent use.
type Model struct {
	cfg       Config
	md        model.Metadata
	client    *http.Client
	transport *http.Transport // nil when Config.Client is used
	maxConns  int
	maxBody   int64
	// target is the seed predict URL or the v2 infer URL.
	target string
}

var _ model.Predictor = (*Model)(nil)

// New validates cfg and returns a Model. For v2 without declared Inputs and
// Outputs it reads the remote model's metadata; when the server cannot be reached
// (or answers 408, 429 or 5xx) the error wraps [model.ErrUnavailable], so the
// caller can retry loading. Other errors (a bad config, an unknown model) are
// permanent.
func New(ctx context.Context, cfg Config) (*Model, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m := &Model{cfg: cfg, maxConns: cfg.MaxConns, maxBody: cfg.MaxResponseBytes}
	if m.maxConns == 0 {
		m.maxConns = DefaultMaxConns
	}
	if m.maxBody == 0 {
		m.maxBody = DefaultMaxResponseBytes
	}
	if cfg.Client != nil {
		m.client = cfg.Client
	} else {
		m.transport = newTransport(m.maxConns)
		m.client = &http.Client{Transport: m.transport}
	}
	if cfg.Protocol == ProtocolSeed {
		m.target = cfg.URL
		m.md = model.SeedMetadata()
		m.md.Platform = "http/seed"
		return m, nil
	}
	base := strings.TrimRight(cfg.URL, "/") + "/v2/models/" + url.PathEscape(cfg.Model)
	if cfg.Version != "" {
		base += "/versions/" + url.PathEscape(cfg.Version)
	}
	m.target = base + "/infer"
	if len(cfg.Inputs) > 0 {
		m.md = model.Metadata{Platform: "http/v2", Inputs: slices.Clone(cfg.Inputs), Outputs: slices.Clone(cfg.Outputs)}
		return m, nil
	}
	md, err := m.fetchMetadata(ctx, base)
	if err != nil {
		m.Close()
		return nil, err
	}
	m.md = md
	return m, nil
}

// newTransport returns a keep-alive pool of at most n connections to one server.
func newTransport(n int) *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          n,
		MaxIdleConnsPerHost:   n,
		MaxConnsPerHost:       n,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Metadata implements [model.Predictor]. Platform is "http/v2" or "http/seed".
func (m *Model) Metadata() model.Metadata {
	md := m.md
	md.Inputs, md.Outputs = slices.Clone(md.Inputs), slices.Clone(md.Outputs)
	return md
}

// Close closes the idle connections of the Model's pool. Calls in flight finish;
// a later Predict opens new connections. Close always returns nil.
func (m *Model) Close() error {
	if m.transport != nil {
		m.transport.CloseIdleConnections()
	} else {
		m.client.CloseIdleConnections()
	}
	return nil
}

// Predict implements [model.Predictor]: one call per request (v2) or per input
// string (seed), at most MaxConns at once. An item's failure is its Response's
// Err; the batch fails only with the request context's error.
func (m *Model) Predict(ctx context.Context, batch []*model.Request) ([]*model.Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []*model.Response
	if m.cfg.Protocol == ProtocolSeed {
		out = m.predictSeed(ctx, batch)
	} else {
		out = make([]*model.Response, len(batch))
		m.parallel(len(batch), func(i int) {
			outs, err := m.inferV2(ctx, batch[i])
			out[i] = &model.Response{Outputs: outs, Err: err}
		})
	}
	if err := ctx.Err(); err != nil {
		for _, r := range out {
			if errors.Is(r.Err, err) {
				return nil, err
			}
		}
	}
	return out, nil
}

// parallel calls f(0) … f(n-1) on at most MaxConns goroutines and waits.
func (m *Model) parallel(n int, f func(i int)) {
	if n == 1 {
		f(0)
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, m.maxConns) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
}

// reply is a server's answer, read in full.
type reply struct {
	code int
	body []byte
}

// errCallTimeout is the cause of a call's context when Config.Timeout expired.
var errCallTimeout = errors.New("the configured timeout expired")

// errTooLarge is a body longer than MaxResponseBytes.
var errTooLarge = errors.New("the answer is too large")

// roundTrip sends one request and reads the answer's body (up to maxBody). Any
// status is returned; only failing to get an answer is an error, classified: the
// request context's own error as is, Config.Timeout as ErrTimeout, anything else
// that kept the answer from arriving as ErrUnavailable.
func (m *Model) roundTrip(ctx context.Context, method, target string, body []byte) (*reply, error) {
	callCtx, cancel := ctx, context.CancelFunc(func() {})
	if m.cfg.Timeout > 0 {
		callCtx, cancel = context.WithTimeoutCause(ctx, m.cfg.Timeout, errCallTimeout)
	}
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(callCtx, method, target, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, target, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "warren-httpmodel")
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, m.classify(ctx, callCtx, err)
	}
	defer func() {
		_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
		_ = resp.Body.Close()
	}()
	b, err := readLimited(resp.Body, resp.ContentLength, m.maxBody)
	if errors.Is(err, errTooLarge) {
		return nil, fmt.Errorf("%s %s: the answer (%s) is larger than %d bytes (max_response_bytes)", method, target, resp.Status, m.maxBody)
	}
	if err != nil {
		return nil, m.classify(ctx, callCtx, fmt.Errorf("%s %s: reading the answer (%s): %w", method, target, resp.Status, err))
	}
	return &reply{code: resp.StatusCode, body: b}, nil
}

// readLimited reads r to its end, failing with errTooLarge beyond limit bytes
// (at once when the declared length says so).
func readLimited(r io.Reader, length, limit int64) ([]byte, error) {
	if length > limit {
		return nil, errTooLarge
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errTooLarge
	}
	return b, nil
}

// classify turns a failure to get an answer into the error the caller tests:
// the request context's error exactly when it ended; ErrTimeout when
// Config.Timeout expired first (without wrapping the context error, which would
// read as the request's own deadline); ErrUnavailable for everything else that
// kept the answer away (refused, DNS, reset, TLS).
func (m *Model) classify(ctx, callCtx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if errors.Is(context.Cause(callCtx), errCallTimeout) {
		return fmt.Errorf("%w: no answer within timeout %v (%v)", model.ErrTimeout, m.cfg.Timeout, err)
	}
	var op *net.OpError
	var ne net.Error
	if !(errors.As(err, &op) && op.Op == "dial") && errors.As(err, &ne) && ne.Timeout() {
		// A transport-level timeout (TLS handshake, a custom Client's Timeout).
		return fmt.Errorf("%w: %v", model.ErrTimeout, err)
	}
	return fmt.Errorf("%w: %w", model.ErrUnavailable, err)
}
