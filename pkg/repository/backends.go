package repository

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/model/execmodel"
	"github.com/warren-farm/warren/pkg/model/httpmodel"
)

// SeedBackend is the seed backend: [model.NewSeed] with the config's seed,
// latency and item_latency.
func SeedBackend(_ context.Context, m Model) (model.Predictor, error) {
	return model.NewSeed(model.SeedConfig{Seed: m.Config.Seed, Latency: m.Config.Latency.Duration,
		ItemLatency: m.Config.ItemLatency.Duration}), nil
}

// HTTPBackend is the http backend: [httpmodel.New] with the config's http keys
// (a v2 model without model: asks for the model of its own name). Close the
// predictor (see [Close]) to release its connections.
func HTTPBackend(ctx context.Context, m Model) (model.Predictor, error) {
	return httpmodel.New(ctx, HTTPConfig(m))
}

// HTTPConfig is the httpmodel configuration of an http model.
func HTTPConfig(m Model) httpmodel.Config {
	h := m.Config.HTTPOptions
	return httpmodel.Config{
		URL:              h.URL,
		Protocol:         h.Protocol,
		Model:            h.RemoteModel,
		Version:          h.RemoteVersion,
		Timeout:          h.Timeout.Duration,
		MaxConns:         h.MaxConns,
		MaxResponseBytes: h.MaxResponseBytes,
		Inputs:           h.Inputs,
		Outputs:          h.Outputs,
	}
}

// ExecBackend returns the exec backend: [execmodel.New] with the config's exec
// keys, the children's output and events going to log. Close the predictor (see
// [Close]) to stop its children.
func ExecBackend(log *slog.Logger) Backend {
	return func(ctx context.Context, m Model) (model.Predictor, error) {
		cfg := ExecConfig(m)
		cfg.Logger = log
		return execmodel.New(ctx, cfg)
	}
}

// ExecConfig is the execmodel configuration of an exec model: the children run
// in the model's directory (where its config.yaml is) and load the version's
// directory.
func ExecConfig(m Model) execmodel.Config {
	e := m.Config.ExecOptions
	return execmodel.Config{
		Name:        m.String(),
		ModelName:   m.Name,
		Version:     m.Version,
		Command:     e.Command,
		Env:         e.Env,
		WorkDir:     filepath.Dir(m.ConfigPath),
		ModelDir:    m.Dir,
		Instances:   e.Instances,
		LoadTimeout: e.LoadTimeout.Duration,
	}
}
