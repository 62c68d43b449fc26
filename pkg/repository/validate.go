package repository

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/model/httpmodel"
)

// validate checks the values of a parsed config, reporting each problem under
// its key. Keys of other backends were already rejected by parseConfig.
func (c *Config) validate(p *problems) {
	if c.MaxBatchSize < 0 || c.MaxBatchSize > MaxBatchSizeLimit {
		p.add("max_batch_size", fmt.Sprintf("must be between 0 and %d, got %d", MaxBatchSizeLimit, c.MaxBatchSize))
	}
	if d := c.MaxBatchDelay.Duration; d < 0 || d > MaxBatchDelayLimit {
		p.add("max_batch_delay", fmt.Sprintf("must be between 0 and %v, got %v", MaxBatchDelayLimit, d))
	} else if d > 0 && c.MaxBatchSize <= 1 {
		p.add("max_batch_delay", fmt.Sprintf("%v has no effect without a max_batch_size above 1 (got %d)", d, c.MaxBatchSize))
	}
	if c.Concurrency < 0 || c.Concurrency > MaxConcurrency {
		p.add("concurrency", fmt.Sprintf("must be between 1 and %d (absent or 0: the worker's CONCURRENCY), got %d", MaxConcurrency, c.Concurrency))
	}
	if j := c.JobConcurrency; j != nil && (*j < 0 || *j > MaxConcurrency) {
		p.add("job_concurrency", fmt.Sprintf("must be between 0 and %d, got %d", MaxConcurrency, *j))
	}
	switch c.Backend {
	case BackendSeed:
		if c.Latency.Duration < 0 {
			p.add("latency", fmt.Sprintf("must not be negative, got %v", c.Latency))
		}
		if c.ItemLatency.Duration < 0 {
			p.add("item_latency", fmt.Sprintf("must not be negative, got %v", c.ItemLatency))
		}
	case BackendONNX:
		if f := c.File; f != "" && (strings.ContainsAny(f, `/\`) || f == "." || f == "..") {
			p.add("file", fmt.Sprintf("%q: want a file name inside the version directory, not a path", f))
		}
	case BackendHTTP:
		c.HTTPOptions.validate(p)
	}
}

// validate checks an http model's keys, as package httpmodel will, so that a bad
// config fails at startup with the file's name rather than at load.
func (h *HTTPOptions) validate(p *problems) {
	switch h.Protocol {
	case ProtocolV2, ProtocolSeed:
	case "":
		p.add("protocol", "required (v2 or seed)")
	default:
		p.add("protocol", fmt.Sprintf("%q is not one of v2, seed", h.Protocol))
	}
	if h.URL == "" {
		p.add("url", "required (for protocol v2 the server's base URL, e.g. http://triton:8000; for seed the predict URL, e.g. http://svc-b:8001/predict)")
	} else if u, err := url.Parse(h.URL); err != nil {
		p.add("url", fmt.Sprintf("%q is not a URL: %v", h.URL, unwrapURLError(err)))
	} else {
		switch {
		case u.Scheme != "http" && u.Scheme != "https":
			p.add("url", fmt.Sprintf("%q: the scheme must be http or https", h.URL))
		case u.Host == "":
			p.add("url", fmt.Sprintf("%q has no host", h.URL))
		case u.Fragment != "":
			p.add("url", fmt.Sprintf("%q: a URL with a #fragment cannot be called", h.URL))
		case h.Protocol == ProtocolV2 && u.RawQuery != "":
			p.add("url", fmt.Sprintf("%q: a v2 base URL cannot have a query", h.URL))
		}
	}
	if h.Protocol == ProtocolSeed {
		if h.RemoteModel != "" {
			p.add("model", "only for protocol v2 (the seed protocol's url names the endpoint)")
		}
		if h.RemoteVersion != "" {
			p.add("version", "only for protocol v2 (the seed protocol's url names the endpoint)")
		}
		for _, k := range []struct {
			name  string
			specs []model.TensorSpec
		}{{"inputs", h.Inputs}, {"outputs", h.Outputs}} {
			if k.specs != nil {
				p.add(k.name, "only for protocol v2 (protocol seed has fixed tensors: data → class, confidence, input_length, message)")
			}
		}
	}
	if h.Protocol == ProtocolV2 {
		if (len(h.Inputs) == 0) != (len(h.Outputs) == 0) {
			key := "inputs"
			if len(h.Outputs) == 0 {
				key = "outputs"
			}
			p.add(key, "missing: declare both inputs and outputs, or neither (neither: the server's metadata is used)")
		}
		checkSpecs(p, "inputs", h.Inputs)
		checkSpecs(p, "outputs", h.Outputs)
	}
	if h.Timeout.Duration < 0 {
		p.add("timeout", fmt.Sprintf("must not be negative, got %v", h.Timeout))
	}
	if h.MaxConns < 0 || h.MaxConns > MaxConnsLimit {
		p.add("max_conns", fmt.Sprintf("must be between 1 and %d (absent or 0: %d), got %d", MaxConnsLimit, httpmodel.DefaultMaxConns, h.MaxConns))
	}
	if h.MaxResponseBytes < 0 {
		p.add("max_response_bytes", fmt.Sprintf("must not be negative, got %d", h.MaxResponseBytes))
	}
}

// checkSpecs checks declared tensors: named, unique, a v2 datatype, and
// dimensions of -1 (any size) or more.
func checkSpecs(p *problems, key string, specs []model.TensorSpec) {
	seen := make(map[string]bool, len(specs))
	for i, s := range specs {
		at := fmt.Sprintf("%s[%d]", key, i)
		switch {
		case s.Name == "":
			p.add(at+".name", "required")
		case seen[s.Name]:
			p.add(at+".name", fmt.Sprintf("%q is listed twice", s.Name))
		}
		seen[s.Name] = true
		if !s.Datatype.Valid() {
			ds := make([]string, len(model.Datatypes))
			for j, d := range model.Datatypes {
				ds[j] = string(d)
			}
			p.add(at+".datatype", fmt.Sprintf("%q is not one of %s", s.Datatype, strings.Join(ds, ", ")))
		}
		if s.Shape == nil {
			p.add(at+".shape", "required (a list of dimensions, -1 for any size, e.g. [-1, 4])")
		}
		for _, d := range s.Shape {
			if d < -1 {
				p.add(at+".shape", fmt.Sprintf("%v: a dimension is -1 (any size) or at least 0", s.Shape))
				break
			}
		}
	}
}

// unwrapURLError drops url.Error's repetition of the URL.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// setDefaults fills what config.yaml left out; name is the model's name.
func (c *Config) setDefaults(name string) {
	if c.VersionPolicy.Latest == 0 && !c.VersionPolicy.All && len(c.VersionPolicy.Specific) == 0 {
		c.VersionPolicy.Latest = 1
	}
	switch c.Backend {
	case BackendONNX:
		if c.File == "" {
			c.File = DefaultFile
		}
	case BackendHTTP:
		if c.Protocol == ProtocolV2 && c.RemoteModel == "" {
			c.RemoteModel = name
		}
	}
}
