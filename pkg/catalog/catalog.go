// Package catalog is the API's view of the models the farm serves: which model
// versions exist, their v2 metadata (to validate inputs before anything is
// published), which workers announced them, and which version an unversioned call
// goes to.
//
// Workers announce what they serve (pkg/queue's announcements); the catalog applies
// every announcement. Whether a version can answer right now is not the
// announcements' business but the broker's: the live consumer count of the
// version's request queue, read by the queue client. So a killed worker stops
// counting as soon as its connection is gone, not when its announcements stop.
//
// # Known, unknown, unavailable
//
// A model that no worker ever announced is unknown (404). A known model whose
// versions have no consumer is unavailable (503 no_workers). Known models are
// persisted in a [MetaStore] (the API's job store), so that after an API restart
// with no worker running a known model still answers 503, and jobs for it can still
// be queued.
//
// # Default version and traffic
//
// A call that names no version goes, by the default rule, to the highest version
// that has a live consumer; when none has, to the highest known version (which then
// answers 503). A model's [Traffic] settings change that: a default_version that
// takes the highest version's place while it is live, and weights that split the
// calls between versions (a canary), at random or by a sticky request header —
// always among the weighted versions that have a live consumer, so that no call is
// sent to a version nobody serves; when none of them is live, the default rule
// applies. The settings are kept in the MetaStore too, which every API replica
// re-reads ([Catalog.FollowTraffic]), so that a change made on one applies on all.
// docs/versions.md is the operator's guide.
package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/queue"
)

// Errors of [Catalog.Resolve].
var (
	ErrUnknownModel   = errors.New("unknown model")
	ErrUnknownVersion = errors.New("unknown model version")
)

// MetaStore persists the catalog (the job store implements it).
type MetaStore interface {
	PutMeta(ctx context.Context, key string, value []byte) error
	ListMeta(ctx context.Context, prefix string) (map[string][]byte, error)
}

// DefaultMaxRoutes bounds the model versions a catalog keeps.
const DefaultMaxRoutes = 1024

// Config configures a [Catalog].
type Config struct {
	// Workers returns a route's live consumer count, -1 while unknown (the queue
	// client's Workers). Required.
	Workers func(queue.Route) int
	// Store persists known model versions; nil keeps them in memory only.
	Store MetaStore
	// OnNew is called, outside any lock, for each model version seen for the first
	// time (the API starts watching its queue and creates its metrics series).
	OnNew func(queue.Route)
	// MaxRoutes bounds the model versions kept; zero means DefaultMaxRoutes. Further
	// ones are refused (and logged).
	MaxRoutes int
	// Logger; nil discards.
	Logger *slog.Logger
}

// Version is what the catalog knows of one model version.
type Version struct {
	Route queue.Route `json:"-"`
	// Metadata is the version's v2 metadata (Name is the model's, Versions this one).
	Metadata       model.Metadata `json:"metadata"`
	MaxBatchSize   int            `json:"max_batch_size"`
	Concurrency    int            `json:"concurrency"`
	JobConcurrency int            `json:"job_concurrency"`
	// Workers are the workers that announced it and were heard from recently.
	Workers []string `json:"-"`
	// Live is the request queue's consumer count, -1 while unknown.
	Live int `json:"-"`
}

// Ready reports whether the version has a live consumer.
func (v *Version) Ready() bool { return v.Live > 0 }

// Model is one model and its versions, oldest first.
type Model struct {
	Name     string
	Versions []Version
}

type entry struct {
	v       Version
	raw     []byte               // the announced metadata, to notice changes
	workers map[string]time.Time // worker → heard until
}

// Catalog is safe for concurrent use.
type Catalog struct {
	cfg Config
	mu  sync.RWMutex
	m   map[string]map[string]*entry // model → version → entry
	n   int
	// traffic holds the models' traffic settings (only those set), under mu.
	traffic map[string]Traffic
	// trafficMu orders the store's reads and writes of the traffic settings, so a
	// refresh never applies what it read before this replica's own write.
	trafficMu  sync.Mutex
	unreadable map[string]string // stored settings warned about (key → value), under trafficMu
}

// New returns an empty catalog.
func New(cfg Config) (*Catalog, error) {
	if cfg.Workers == nil {
		return nil, errors.New("catalog: Workers is required")
	}
	if cfg.MaxRoutes == 0 {
		cfg.MaxRoutes = DefaultMaxRoutes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Catalog{cfg: cfg, m: map[string]map[string]*entry{}, traffic: map[string]Traffic{}, unreadable: map[string]string{}}, nil
}

const metaPrefix = "model/"

// maxIntervalMs bounds the announcement interval a worker may claim (workers
// announce every 10s by default).
const maxIntervalMs = int64(time.Hour / time.Millisecond)

// persisted is a version as stored.
type persisted struct {
	Metadata       json.RawMessage `json:"metadata"`
	MaxBatchSize   int             `json:"max_batch_size"`
	Concurrency    int             `json:"concurrency"`
	JobConcurrency int             `json:"job_concurrency"`
}

// Load reads the persisted model versions and traffic settings (call once, before
// serving).
func (c *Catalog) Load(ctx context.Context) (err error) {
	if c.cfg.Store == nil {
		return nil
	}
	kv, err := c.cfg.Store.ListMeta(ctx, metaPrefix)
	if err != nil {
		return fmt.Errorf("catalog: load: %w", err)
	}
	defer func() {
		if terr := c.RefreshTraffic(ctx); terr != nil {
			err = errors.Join(err, terr)
		}
	}()
	for k, val := range kv {
		name, version, ok := strings.Cut(strings.TrimPrefix(k, metaPrefix), "/")
		var p persisted
		if !ok || json.Unmarshal(val, &p) != nil {
			c.cfg.Logger.Warn("skipped an unreadable stored model version", "key", k)
			continue
		}
		c.apply(queue.ModelAnnouncement{Name: name, Version: version, Metadata: p.Metadata,
			MaxBatchSize: p.MaxBatchSize, Concurrency: p.Concurrency, JobConcurrency: p.JobConcurrency}, "", time.Time{}, false)
	}
	return nil
}

// Apply applies a worker's announcement: its model versions become known (with
// their latest metadata), and the worker is listed under each until it leaves or
// goes quiet for three of its announcement intervals.
func (c *Catalog) Apply(an queue.Announcement) {
	// Clamped to [1s, 1h] before multiplying: any peer can publish an announcement,
	// and a huge interval would overflow into a time already past.
	interval := min(max(an.IntervalMs, 1000), maxIntervalMs)
	until := time.Now().Add(3 * time.Duration(interval) * time.Millisecond)
	if an.State == queue.StateLeaving {
		c.mu.Lock()
		for _, vs := range c.m {
			for _, e := range vs {
				delete(e.workers, an.Worker)
			}
		}
		c.mu.Unlock()
		return
	}
	for _, ma := range an.Models {
		c.apply(ma, an.Worker, until, true)
	}
}

// apply records one model version; it persists it when it is new or its metadata
// changed (persist).
func (c *Catalog) apply(ma queue.ModelAnnouncement, worker string, until time.Time, persist bool) {
	r := queue.Route{Model: ma.Name, Version: ma.Version}
	if err := r.Check(); err != nil {
		c.cfg.Logger.Warn("ignored an announced model version", "err", err, "worker", worker)
		return
	}
	var md model.Metadata
	if err := json.Unmarshal(ma.Metadata, &md); err != nil {
		c.cfg.Logger.Warn("ignored an announced model version with unreadable metadata", "route", r.String(), "worker", worker, "err", err)
		return
	}
	md.Name, md.Versions = r.Model, []string{r.Version}

	c.mu.Lock()
	vs := c.m[r.Model]
	e, known := vs[r.Version]
	if !known {
		if c.n >= c.cfg.MaxRoutes {
			c.mu.Unlock()
			c.cfg.Logger.Warn("ignored an announced model version: the catalog is full", "route", r.String(), "max_routes", c.cfg.MaxRoutes)
			return
		}
		if vs == nil {
			vs = map[string]*entry{}
			c.m[r.Model] = vs
		}
		e = &entry{workers: map[string]time.Time{}}
		vs[r.Version] = e
		c.n++
	}
	changed := !bytes.Equal(e.raw, ma.Metadata) || e.v.MaxBatchSize != ma.MaxBatchSize ||
		e.v.Concurrency != ma.Concurrency || e.v.JobConcurrency != ma.JobConcurrency
	if known && changed && worker != "" && !bytes.Equal(e.raw, ma.Metadata) {
		c.cfg.Logger.Warn("a worker announced other metadata for a known model version; using the latest", "route", r.String(), "worker", worker)
	}
	e.raw = append(e.raw[:0], ma.Metadata...)
	e.v = Version{Route: r, Metadata: md, MaxBatchSize: ma.MaxBatchSize, Concurrency: ma.Concurrency, JobConcurrency: ma.JobConcurrency}
	if worker != "" {
		e.workers[worker] = until
	}
	c.mu.Unlock()

	if !known && c.cfg.OnNew != nil {
		c.cfg.OnNew(r)
	}
	if persist && changed && c.cfg.Store != nil {
		p, _ := json.Marshal(persisted{Metadata: ma.Metadata, MaxBatchSize: ma.MaxBatchSize, Concurrency: ma.Concurrency, JobConcurrency: ma.JobConcurrency})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := c.cfg.Store.PutMeta(ctx, metaPrefix+r.Model+"/"+r.Version, p); err != nil {
			c.cfg.Logger.Warn("could not persist a model version; it is known until this API restarts", "route", r.String(), "err", err)
		}
		cancel()
	}
}

// snapshot copies e with its live count and current workers.
func (c *Catalog) snapshot(e *entry, now time.Time) Version {
	v := e.v
	v.Live = c.cfg.Workers(v.Route)
	v.Workers = make([]string, 0, len(e.workers))
	for w, until := range e.workers {
		if now.Before(until) {
			v.Workers = append(v.Workers, w)
		}
	}
	slices.Sort(v.Workers)
	return v
}

// Resolve returns model name's version, or when version is empty the default
// rule's: the model's default_version (its [Traffic]) while it has a live consumer,
// else the highest version that has one, else the default_version, else the highest
// known version. Weights are not applied here (see [Catalog.Pick]). Errors:
// ErrUnknownModel / ErrUnknownVersion (wrapped, naming what is known).
func (c *Catalog) Resolve(name, version string) (Version, error) {
	now := time.Now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	vs, ok := c.m[name]
	if !ok {
		return Version{}, unknownModel(name)
	}
	if version != "" {
		e, ok := vs[version]
		if !ok {
			return Version{}, fmt.Errorf("%w: %s has no version %q (known: %s)", ErrUnknownVersion, name, version, strings.Join(sortedVersions(vs), ", "))
		}
		return c.snapshot(e, now), nil
	}
	return c.byDefault(vs, c.traffic[name].DefaultVersion, now), nil
}

func unknownModel(name string) error {
	return fmt.Errorf("%w: %q (no worker has announced it)", ErrUnknownModel, name)
}

// byDefault is the default rule among vs (not empty) with default version dv (""
// for none), under c.mu.
func (c *Catalog) byDefault(vs map[string]*entry, dv string, now time.Time) Version {
	var dflt, best, bestLive *Version
	if e, ok := vs[dv]; ok {
		s := c.snapshot(e, now)
		if s.Ready() {
			return s
		}
		dflt = &s
	}
	for _, v := range sortedVersions(vs) {
		s := c.snapshot(vs[v], now)
		best = &s
		if s.Ready() {
			bestLive = &s
		}
	}
	switch {
	case bestLive != nil:
		return *bestLive
	case dflt != nil:
		return *dflt
	}
	return *best
}

// Models returns every known model with its versions, sorted by name.
func (c *Catalog) Models() []Model {
	now := time.Now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]Model, 0, len(c.m))
	for name, vs := range c.m {
		m := Model{Name: name}
		for _, v := range sortedVersions(vs) {
			m.Versions = append(m.Versions, c.snapshot(vs[v], now))
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Model) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Routes returns every known model version.
func (c *Catalog) Routes() []queue.Route {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]queue.Route, 0, c.n)
	for _, vs := range c.m {
		for _, e := range vs {
			out = append(out, e.v.Route)
		}
	}
	slices.SortFunc(out, func(a, b queue.Route) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// VersionsOf returns model name's known versions, oldest first (nil when unknown).
func (c *Catalog) VersionsOf(name string) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if vs, ok := c.m[name]; ok {
		return sortedVersions(vs)
	}
	return nil
}

// sortedVersions returns the keys in numeric order.
func sortedVersions(vs map[string]*entry) []string {
	out := make([]string, 0, len(vs))
	for v := range vs {
		out = append(out, v)
	}
	slices.SortFunc(out, queue.CompareVersions)
	return out
}
