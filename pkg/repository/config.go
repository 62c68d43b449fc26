package repository

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/model/httpmodel"
)

// The backends a config.yaml can name.
const (
	BackendSeed = "seed"
	BackendONNX = "onnx"
	BackendHTTP = "http"
)

// backendNames lists the backends in the order messages list them.
var backendNames = []string{BackendSeed, BackendONNX, BackendHTTP}

// Defaults and bounds of the config keys.
const (
	// ConfigFile is the name of a model's config file inside its directory.
	ConfigFile = "config.yaml"
	// MaxBatchSizeLimit bounds max_batch_size.
	MaxBatchSizeLimit = 1024
	// MaxBatchDelayLimit bounds max_batch_delay.
	MaxBatchDelayLimit = time.Minute
	// MaxConcurrency bounds concurrency and job_concurrency.
	MaxConcurrency = 4096
	// DefaultFile is an onnx model's file name when config.yaml gives none.
	DefaultFile = "model.onnx"
	// ImplicitVersion is the version a seed or http model without version
	// directories serves.
	ImplicitVersion = "1"
	// MaxConnsLimit bounds an http model's max_conns.
	MaxConnsLimit = httpmodel.MaxConnsLimit
)

// The protocols of an http model (protocol).
const (
	ProtocolV2   = httpmodel.ProtocolV2
	ProtocolSeed = httpmodel.ProtocolSeed
)

// Config is one model's config.yaml, with its defaults applied by [Scan]. Each
// field's comment names its key. Keys of the backend-specific option structs are
// errors in a config of another backend.
type Config struct {
	// Backend is "seed", "onnx" or "http" (backend, required).
	Backend string `json:"backend"`
	// MaxBatchSize is the largest batch of requests one Predict call gets
	// (max_batch_size, 0..1024): above 1, a worker's dynamic batcher gathers the
	// model's requests into batches (docs/model-repository.md); 0 or 1 computes
	// each request alone.
	MaxBatchSize int `json:"max_batch_size"`
	// MaxBatchDelay is how long a batch may wait to fill after its first request
	// arrived (max_batch_delay, 0..1m, default 0: only what is already waiting);
	// it needs a max_batch_size above 1.
	MaxBatchDelay Duration `json:"max_batch_delay"`
	// Concurrency is how many requests one worker computes at once for this model
	// (concurrency, 1..4096); 0 (absent) means the worker's CONCURRENCY.
	Concurrency int `json:"concurrency"`
	// JobConcurrency is how many jobs one worker runs at once for this model; nil
	// means the worker's own setting (JOB_CONCURRENCY), 0 that this worker runs no
	// jobs of this model (job_concurrency, 0..4096).
	JobConcurrency *int `json:"job_concurrency"`
	// VersionPolicy selects the version directories served (version_policy;
	// default latest: 1).
	VersionPolicy VersionPolicy `json:"version_policy"`

	SeedOptions `backend:"seed"`
	ONNXOptions `backend:"onnx"`
	HTTPOptions `backend:"http"`
}

// SeedOptions are the keys of backend seed.
type SeedOptions struct {
	// Seed is mixed into every prediction (seed, default 0).
	Seed uint64 `json:"seed"`
	// Latency is a simulated service time per batch (latency, default none).
	Latency Duration `json:"latency"`
	// ItemLatency is a simulated service time per request of a batch, added to
	// Latency (item_latency, default none).
	ItemLatency Duration `json:"item_latency"`
}

// ONNXOptions are the keys of backend onnx.
type ONNXOptions struct {
	// File is the model file's name inside each version directory (file, default
	// "model.onnx"); a name, not a path.
	File string `json:"file"`
}

// HTTPOptions are the keys of backend http (see docs/http-backend.md and
// package httpmodel).
type HTTPOptions struct {
	// URL is the server's base URL (v2) or its full predict URL (seed); http or
	// https (url, required).
	URL string `json:"url"`
	// Protocol is "v2" or "seed" (protocol, required: the two read url
	// differently, so no default guesses).
	Protocol string `json:"protocol"`
	// RemoteModel is the remote model's name (model, v2 only; default this
	// model's name).
	RemoteModel string `json:"model"`
	// RemoteVersion is the remote model's version (version, v2 only; default
	// none: the server's choice). Not to be confused with [Model.Version], the
	// version warren serves.
	RemoteVersion string `json:"version"`
	// Timeout bounds each call to the server (timeout, default 0: only the
	// request's deadline).
	Timeout Duration `json:"timeout"`
	// MaxConns is the connection pool size (max_conns, 0..1024; 0 means the
	// backend's default, 16).
	MaxConns int `json:"max_conns"`
	// MaxResponseBytes bounds an answer (max_response_bytes; 0 means the
	// backend's default, 64 MiB).
	MaxResponseBytes int64 `json:"max_response_bytes"`
	// Inputs and Outputs declare the model's metadata (inputs, outputs; v2 only,
	// both or neither; default: asked from the server).
	Inputs  []model.TensorSpec `json:"inputs"`
	Outputs []model.TensorSpec `json:"outputs"`
}

// VersionPolicy selects which version directories a model serves: exactly one of
// its fields is set (after defaults).
//
//	version_policy: {latest: 2}        # the 2 highest versions (default: latest: 1)
//	version_policy: {specific: [1, 3]} # exactly these; each must exist
//	version_policy: {all: true}        # every version directory
type VersionPolicy struct {
	Latest   int     `json:"latest,omitempty"`
	Specific []int64 `json:"specific,omitempty"`
	All      bool    `json:"all,omitempty"`
}

// String is the policy as config.yaml spells it.
func (p VersionPolicy) String() string {
	switch {
	case p.All:
		return "all"
	case len(p.Specific) > 0:
		s := make([]string, len(p.Specific))
		for i, v := range p.Specific {
			s[i] = fmt.Sprint(v)
		}
		return "specific [" + strings.Join(s, ", ") + "]"
	default:
		return fmt.Sprintf("latest %d", p.Latest)
	}
}

// Duration is a time.Duration written in config.yaml as a string such as "50ms"
// or "2s" (a bare 0 is accepted too).
type Duration struct{ time.Duration }

// UnmarshalJSON reads "50ms" or 0.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if string(b) == "0" {
		d.Duration = 0
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration such as \"50ms\" or \"2s\", got %s", snippet(b))
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as \"50ms\" or \"2s\", got %q", s)
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }
