package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"math/rand/v2"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/warren-farm/warren/pkg/queue"
)

// ErrInvalidTraffic is returned (wrapped, naming every problem) by
// [Catalog.SetTraffic] for settings that cannot apply.
var ErrInvalidTraffic = errors.New("invalid traffic settings")

// Bounds of [Traffic].
const (
	// MaxWeight bounds one version's weight.
	MaxWeight = 1_000_000
	// MaxHeaderName bounds the length of StickyHeader.
	MaxHeaderName = 256
	// DefaultTrafficRefresh is how often [Catalog.FollowTraffic] re-reads the
	// settings when given no interval.
	DefaultTrafficRefresh = time.Second
)

// trafficPrefix is the meta key prefix of the settings: traffic/<model>. An empty
// value is a reset (the store never deletes meta entries).
const trafficPrefix = "traffic/"

// Traffic says where the calls to one model that name no version go. The zero
// value is the default rule: the highest version with a live consumer.
type Traffic struct {
	// Weights split the calls: each goes to one of the versions whose weight is
	// above zero and that have a live consumer, with a chance proportional to its
	// weight among them. When none of them is live, the default rule applies.
	Weights map[string]int `json:"weights,omitempty"`
	// StickyHeader names a request header whose value, when a call carries it,
	// chooses the version instead of chance: the same value lands on the same
	// version for the same weights and live versions. Needs Weights.
	StickyHeader string `json:"sticky_header,omitempty"`
	// DefaultVersion takes the place of "the highest version" in the default rule
	// while it has a live consumer.
	DefaultVersion string `json:"default_version,omitempty"`
}

// IsZero reports whether t sets nothing (the default rule).
func (t Traffic) IsZero() bool {
	return len(t.Weights) == 0 && t.StickyHeader == "" && t.DefaultVersion == ""
}

func (t Traffic) clone() Traffic {
	t.Weights = maps.Clone(t.Weights)
	return t
}

func (t Traffic) equal(u Traffic) bool {
	return maps.Equal(t.Weights, u.Weights) && t.StickyHeader == u.StickyHeader && t.DefaultVersion == u.DefaultVersion
}

// String is the settings for logs: "weights 1:90 2:10, sticky X-User-Id, default 1".
func (t Traffic) String() string {
	if t.IsZero() {
		return "the default rule"
	}
	var parts []string
	if len(t.Weights) > 0 {
		vs := slices.SortedFunc(maps.Keys(t.Weights), queue.CompareVersions)
		ws := make([]string, len(vs))
		for i, v := range vs {
			ws[i] = v + ":" + strconv.Itoa(t.Weights[v])
		}
		parts = append(parts, "weights "+strings.Join(ws, " "))
	}
	if t.StickyHeader != "" {
		parts = append(parts, "sticky "+t.StickyHeader)
	}
	if t.DefaultVersion != "" {
		parts = append(parts, "default "+t.DefaultVersion)
	}
	return strings.Join(parts, ", ")
}

// check returns what is wrong with t for a model whose known versions are known.
func (t Traffic) check(name string, known map[string]*entry) error {
	var problems []string
	unknown := map[string]bool{}
	if t.IsZero() {
		problems = append(problems, "set weights or default_version (DELETE resets the model to the default rule)")
	}
	sum := 0
	for _, v := range slices.SortedFunc(maps.Keys(t.Weights), queue.CompareVersions) {
		w := t.Weights[v]
		if _, ok := known[v]; !ok {
			unknown[v] = true
		}
		switch {
		case w < 0:
			problems = append(problems, fmt.Sprintf("the weight of version %q is negative (%d)", v, w))
		case w > MaxWeight:
			problems = append(problems, fmt.Sprintf("the weight of version %q is over %d (%d)", v, MaxWeight, w))
		default:
			sum += w
		}
	}
	if len(t.Weights) > 0 && sum == 0 {
		problems = append(problems, "the weights sum to 0: give at least one version a weight above 0")
	}
	if _, ok := known[t.DefaultVersion]; !ok && t.DefaultVersion != "" {
		unknown[t.DefaultVersion] = true
	}
	if len(unknown) > 0 {
		var quoted []string
		for _, v := range slices.SortedFunc(maps.Keys(unknown), queue.CompareVersions) {
			quoted = append(quoted, strconv.Quote(v))
		}
		problems = append(problems, fmt.Sprintf("%s has no version %s (known: %s)", name, strings.Join(quoted, ", "),
			strings.Join(sortedVersions(known), ", ")))
	}
	switch {
	case t.StickyHeader == "":
	case !validHeaderName(t.StickyHeader):
		problems = append(problems, fmt.Sprintf("sticky_header %q is not a header name (1 to %d letters, digits and !#$%%&'*+-.^_`|~)", t.StickyHeader, MaxHeaderName))
	case len(t.Weights) == 0:
		problems = append(problems, "sticky_header needs weights")
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidTraffic, strings.Join(problems, "; "))
	}
	return nil
}

// validHeaderName reports whether s is an HTTP field name (RFC 9110's token).
func validHeaderName(s string) bool {
	if s == "" || len(s) > MaxHeaderName {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0:
		default:
			return false
		}
	}
	return true
}

// Traffic returns model name's traffic settings, and whether any are set.
func (c *Catalog) Traffic(name string) (Traffic, bool, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if _, ok := c.m[name]; !ok {
		return Traffic{}, false, unknownModel(name)
	}
	t, ok := c.traffic[name]
	return t.clone(), ok, nil
}

// SetTraffic validates t against model name's known versions, stores it (every
// API replica sharing the store applies it within its refresh interval) and
// applies it here at once. Errors: ErrUnknownModel, ErrInvalidTraffic (naming every
// problem), or the store's.
func (c *Catalog) SetTraffic(ctx context.Context, name string, t Traffic) error {
	t = t.clone()
	if len(t.Weights) == 0 {
		t.Weights = nil
	}
	if validHeaderName(t.StickyHeader) {
		t.StickyHeader = textproto.CanonicalMIMEHeaderKey(t.StickyHeader)
	}
	c.mu.RLock()
	vs, ok := c.m[name]
	var err error
	if ok {
		err = t.check(name, vs)
	}
	c.mu.RUnlock()
	if !ok {
		return unknownModel(name)
	}
	if err != nil {
		return err
	}
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("catalog: traffic settings: %w", err)
	}
	return c.writeTraffic(ctx, name, b, t)
}

// ResetTraffic returns model name to the default rule, everywhere (see SetTraffic).
func (c *Catalog) ResetTraffic(ctx context.Context, name string) error {
	c.mu.RLock()
	_, ok := c.m[name]
	c.mu.RUnlock()
	if !ok {
		return unknownModel(name)
	}
	return c.writeTraffic(ctx, name, []byte{}, Traffic{})
}

// writeTraffic stores b as name's settings and applies t.
func (c *Catalog) writeTraffic(ctx context.Context, name string, b []byte, t Traffic) error {
	c.trafficMu.Lock() // no refresh reads the store between this write and its application
	defer c.trafficMu.Unlock()
	if c.cfg.Store != nil {
		if err := c.cfg.Store.PutMeta(ctx, trafficPrefix+name, b); err != nil {
			return fmt.Errorf("catalog: store the traffic settings of %s: %w", name, err)
		}
	}
	c.mu.Lock()
	old := c.traffic[name]
	if t.IsZero() {
		delete(c.traffic, name)
	} else {
		c.traffic[name] = t
	}
	c.mu.Unlock()
	if !old.equal(t) {
		c.cfg.Logger.Info("traffic settings changed", "model", name, "traffic", t.String(), "source", "this replica")
	}
	return nil
}

// RefreshTraffic re-reads every model's traffic settings from the store and
// applies them. Load calls it; [Catalog.FollowTraffic] calls it periodically.
func (c *Catalog) RefreshTraffic(ctx context.Context) error {
	if c.cfg.Store == nil {
		return nil
	}
	c.trafficMu.Lock()
	defer c.trafficMu.Unlock()
	kv, err := c.cfg.Store.ListMeta(ctx, trafficPrefix)
	if err != nil {
		return fmt.Errorf("catalog: read the traffic settings: %w", err)
	}
	next := make(map[string]Traffic, len(kv))
	for k, b := range kv {
		name := strings.TrimPrefix(k, trafficPrefix)
		if len(b) == 0 {
			continue // reset
		}
		var t Traffic
		if err := json.Unmarshal(b, &t); err != nil || !queue.ValidModelName(name) {
			if c.unreadable[k] != string(b) {
				c.unreadable[k] = string(b)
				c.cfg.Logger.Warn("ignored unreadable stored traffic settings; the model follows the default rule", "key", k, "err", err)
			}
			continue
		}
		delete(c.unreadable, k)
		next[name] = t
	}
	c.mu.Lock()
	old := c.traffic
	c.traffic = next
	c.mu.Unlock()
	for name, t := range next {
		if o, ok := old[name]; !ok || !o.equal(t) {
			c.cfg.Logger.Info("traffic settings changed", "model", name, "traffic", t.String(), "source", "store")
		}
	}
	for name := range old {
		if _, ok := next[name]; !ok {
			c.cfg.Logger.Info("traffic settings changed", "model", name, "traffic", Traffic{}.String(), "source", "store")
		}
	}
	return nil
}

// FollowTraffic calls RefreshTraffic every interval (zero: DefaultTrafficRefresh)
// until ctx ends, so that settings written by another API replica apply here too.
// Without a store it returns at once. A failing store keeps the last settings read;
// the failure is logged once, and so is the recovery.
func (c *Catalog) FollowTraffic(ctx context.Context, every time.Duration) {
	if c.cfg.Store == nil {
		return
	}
	if every <= 0 {
		every = DefaultTrafficRefresh
	}
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, max(every, 2*time.Second))
		err := c.RefreshTraffic(rctx)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil && !failing:
			c.cfg.Logger.Warn("cannot read the traffic settings; keeping the last ones read", "err", err)
		case err == nil && failing:
			c.cfg.Logger.Info("traffic settings read again")
		}
		failing = err != nil
	}
}

// Pick returns the version a call to model name that names no version goes to:
// with weights, one of the weighted versions that have a live consumer, chosen by
// the sticky header's value (header returns a request header's value; nil means
// none) or else at random, in proportion to their weights; otherwise, or when none
// of them is live, the default rule of [Catalog.Resolve].
func (c *Catalog) Pick(name string, header func(string) string) (Version, error) {
	now := time.Now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	vs, ok := c.m[name]
	if !ok {
		return Version{}, unknownModel(name)
	}
	t := c.traffic[name]
	if live, total := c.weighted(vs, t); total > 0 {
		r := rand.Uint64()
		if t.StickyHeader != "" && header != nil {
			if key := header(t.StickyHeader); key != "" {
				r = stickyHash(name, key)
			}
		}
		// x = ⌊r / 2⁶⁴ · total⌋: a point of [0, total) that, for a sticky key, stays
		// in the same place of the split whatever the weights' scale. The versions
		// are laid out in version order, so moving weight from older versions to
		// newer ones moves sticky keys in that direction only.
		x, _ := bits.Mul64(r, total)
		for _, wv := range live {
			if x < wv.weight {
				return c.snapshot(vs[wv.version], now), nil
			}
			x -= wv.weight
		}
	}
	return c.byDefault(vs, t.DefaultVersion, now), nil
}

// Split returns the share of model name's unversioned calls each version gets
// now (versions that get none are left out): the weighted live versions', else the
// default rule's one version.
func (c *Catalog) Split(name string) (map[string]float64, error) {
	now := time.Now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	vs, ok := c.m[name]
	if !ok {
		return nil, unknownModel(name)
	}
	t := c.traffic[name]
	out := map[string]float64{}
	if live, total := c.weighted(vs, t); total > 0 {
		for _, wv := range live {
			out[wv.version] = float64(wv.weight) / float64(total)
		}
		return out, nil
	}
	out[c.byDefault(vs, t.DefaultVersion, now).Route.Version] = 1
	return out, nil
}

type weightedVersion struct {
	version string
	weight  uint64
}

// weighted returns t's versions with a weight above zero that are known and live,
// in version order, and the sum of their weights (under c.mu).
func (c *Catalog) weighted(vs map[string]*entry, t Traffic) ([]weightedVersion, uint64) {
	if len(t.Weights) == 0 {
		return nil, 0
	}
	var out []weightedVersion
	var total uint64
	for _, v := range sortedVersions(vs) {
		if w := t.Weights[v]; w > 0 && c.cfg.Workers(vs[v].v.Route) > 0 {
			out = append(out, weightedVersion{version: v, weight: uint64(w)})
			total += uint64(w)
		}
	}
	return out, total
}

// stickyHash maps a model and a sticky header's value to 64 well-mixed bits, the
// same on every API replica: FNV-1a, then MurmurHash3's finalizer.
func stickyHash(model, key string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for _, s := range []string{model, "\x00", key} {
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= prime
		}
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
