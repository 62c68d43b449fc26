package repository

import (
	"context"

	"github.com/warren-farm/warren/pkg/model"
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
