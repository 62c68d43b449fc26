package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// PolicyName is the name of the policy warren applies to the request queues.
const PolicyName = "warren-request-queues"

// PolicyPriority is the policy's priority. RabbitMQ applies only the highest-priority
// matching policy to a queue; a broader operator policy with a higher priority would
// replace warren's bound, so warren's is set high.
const PolicyPriority = 100

// PolicyConfig configures [ApplyPolicy].
type PolicyConfig struct {
	// ManagementURL is the management API base, e.g. http://guest:guest@localhost:15672.
	ManagementURL string
	// Vhost is the farm's vhost.
	Vhost string
	// MaxLength bounds the ready messages of every request queue (each model
	// version's, on its own), with overflow=reject-publish so a publish beyond it is
	// nacked (→ ErrQueueFull). Zero removes warren's policy.
	MaxLength int
	// Client is the HTTP client; nil means one with a 5s timeout.
	Client *http.Client
}

// ApplyPolicy sets (or, for MaxLength 0, deletes) the request queues' policy through
// the management API: it matches every queue named RequestQueuePrefix + anything. A policy, unlike x-arguments, can change on a live queue, so a
// new QUEUE_MAX_LENGTH never turns into a 406 redeclare crash loop.
func ApplyPolicy(ctx context.Context, cfg PolicyConfig) error {
	base, err := url.Parse(strings.TrimRight(cfg.ManagementURL, "/"))
	if err != nil || base.Host == "" {
		return fmt.Errorf("management URL %q: not an http(s) URL", cfg.ManagementURL)
	}
	hc := cfg.Client
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	user := base.User
	base.User = nil
	endpoint := base.String() + "/api/policies/" + url.PathEscape(cfg.Vhost) + "/" + url.PathEscape(PolicyName)

	method, body := http.MethodDelete, []byte(nil)
	if cfg.MaxLength > 0 {
		method = http.MethodPut
		body, _ = json.Marshal(map[string]any{
			"pattern":    "^" + regexp.QuoteMeta(RequestQueuePrefix),
			"apply-to":   "queues",
			"priority":   PolicyPriority,
			"definition": map[string]any{"max-length": cfg.MaxLength, "overflow": "reject-publish"},
		})
	}
	req, err := http.NewRequestWithContext(ctx, method, endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if user != nil {
		pw, _ := user.Password()
		req.SetBasicAuth(user.Username(), pw)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("management API: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode < 300:
		return nil
	case method == http.MethodDelete && resp.StatusCode == http.StatusNotFound:
		return nil
	default:
		return fmt.Errorf("management API %s %s: %s: %s", method, endpoint, resp.Status, bytes.TrimSpace(msg))
	}
}

// KeepPolicy applies the policy, retrying with capped backoff until it succeeds or
// ctx ends. A broker without the management plugin leaves the queue unbounded; that
// is logged loudly, not fatal.
func KeepPolicy(ctx context.Context, cfg PolicyConfig, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	backoff := 500 * time.Millisecond
	for {
		err := ApplyPolicy(ctx, cfg)
		if err == nil {
			log.Info("request queue policy applied", "policy", PolicyName, "pattern", "^"+regexp.QuoteMeta(RequestQueuePrefix), "vhost", cfg.Vhost, "max_length", cfg.MaxLength)
			return
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			return
		}
		log.Warn("request queue policy not applied; the queue is unbounded until it is", "err", err, "retry_in", backoff)
		if !sleepCtx(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}
