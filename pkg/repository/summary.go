package repository

import (
	"fmt"
	"net/url"
	"strings"
)

// Summary describes models in one line for the worker's startup log, one
// entry per model with its versions and the settings that matter, e.g.
//
//	3 models, 4 versions: digits v1,v2 (onnx model.onnx, concurrency 2, max_batch_size 32); lab v1 (http seed http://svc-b:8001/predict, concurrency 4); seed v1 (seed, concurrency 4)
//
// Passwords in URLs are redacted. models is expected sorted, as [Scan] returns it.
func Summary(models []Model) string {
	var entries []string
	nModels := 0
	for i := 0; i < len(models); {
		j := i
		var versions []string
		for ; j < len(models) && models[j].Name == models[i].Name; j++ {
			versions = append(versions, "v"+models[j].Version)
		}
		entries = append(entries, fmt.Sprintf("%s %s (%s)", models[i].Name, strings.Join(versions, ","), describe(models[i].Config)))
		nModels++
		i = j
	}
	return fmt.Sprintf("%s, %s: %s", plural(nModels, "model"), plural(len(models), "version"), strings.Join(entries, "; "))
}

// describe is a config's backend and notable settings.
func describe(c Config) string {
	var parts []string
	switch c.Backend {
	case BackendSeed:
		s := "seed"
		if c.Latency.Duration > 0 {
			s += " latency " + c.Latency.String()
		}
		if c.ItemLatency.Duration > 0 {
			s += " item_latency " + c.ItemLatency.String()
		}
		parts = append(parts, s)
	case BackendONNX:
		parts = append(parts, "onnx "+c.File)
	case BackendHTTP:
		s := "http " + c.Protocol + " " + redact(c.URL)
		if c.Protocol == ProtocolV2 {
			s += " model " + c.RemoteModel
			if c.RemoteVersion != "" {
				s += " version " + c.RemoteVersion
			}
		}
		parts = append(parts, s)
	}
	if c.Concurrency > 0 {
		parts = append(parts, fmt.Sprintf("concurrency %d", c.Concurrency))
	}
	if c.JobConcurrency != nil {
		parts = append(parts, fmt.Sprintf("job_concurrency %d", *c.JobConcurrency))
	}
	if c.MaxBatchSize > 0 {
		parts = append(parts, fmt.Sprintf("max_batch_size %d", c.MaxBatchSize))
	}
	if c.MaxBatchDelay.Duration > 0 {
		parts = append(parts, "max_batch_delay "+c.MaxBatchDelay.String())
	}
	if p := c.VersionPolicy; p.Latest != 1 {
		parts = append(parts, "version_policy "+p.String())
	}
	return strings.Join(parts, ", ")
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	return u.Redacted()
}

func plural(n int, what string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}
