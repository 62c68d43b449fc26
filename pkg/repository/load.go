package repository

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/warren-farm/warren/pkg/model"
)

// Backend builds the predictor of one model version. It may assume m's config
// is valid (Scan checked it). An error that wraps [model.ErrUnavailable] means
// the model may load later (a remote server is down).
type Backend func(ctx context.Context, m Model) (model.Predictor, error)

// Backends maps backend names ("seed", "onnx", "http", "exec") to their
// constructors. The worker supplies them; [SeedBackend], [HTTPBackend] and
// [ExecBackend] are ready-made.
type Backends map[string]Backend

// names lists the backends, sorted.
func (b Backends) names() []string { return slices.Sorted(maps.Keys(b)) }

// Loaded is a model version with its predictor.
type Loaded struct {
	Model
	Predictor model.Predictor
	// Metadata is the predictor's metadata with Name set to the model's name and
	// Versions to every version of the model loaded together with it.
	Metadata model.Metadata
}

// Load builds a predictor for every model version with the backend its config
// names. A backend missing from b is an [*Error] (wrapping [ErrInvalid]) naming
// the config file, reported for all models before anything is loaded. A backend's
// error is wrapped with the model version's name and backend, and the predictors
// already loaded are closed (see [Close]); the errors of every model are joined.
func Load(ctx context.Context, ms []Model, b Backends) ([]Loaded, error) {
	var errs []error
	for _, m := range ms {
		if b[m.Config.Backend] == nil {
			errs = append(errs, &Error{Path: m.ConfigPath, Key: "backend", Msg: fmt.Sprintf("%q is not available in this worker (it has %s)",
				m.Config.Backend, strings.Join(b.names(), ", "))})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	loaded := make([]Loaded, 0, len(ms))
	for _, m := range ms {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("%s: not loaded: %w", m, err))
			break
		}
		p, err := b[m.Config.Backend](ctx, m)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: backend %s: %w", m, m.Config.Backend, err))
		case p == nil:
			errs = append(errs, fmt.Errorf("%s: backend %s returned no predictor", m, m.Config.Backend))
		default:
			loaded = append(loaded, Loaded{Model: m, Predictor: p, Metadata: p.Metadata()})
		}
	}
	if len(errs) > 0 {
		if err := Close(loaded); err != nil {
			errs = append(errs, err)
		}
		return nil, errors.Join(errs...)
	}
	versions := make(map[string][]string)
	for _, l := range loaded {
		versions[l.Name] = append(versions[l.Name], l.Version)
	}
	for i := range loaded {
		l := &loaded[i]
		l.Metadata.Name = l.Name
		l.Metadata.Versions = slices.Clone(versions[l.Name])
	}
	return loaded, nil
}

// Close closes every predictor that has a Close method (Close() error or
// Close()), and returns their errors joined.
func Close(ls []Loaded) error {
	var errs []error
	for _, l := range ls {
		switch c := l.Predictor.(type) {
		case interface{ Close() error }:
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("%s: close: %w", l.Model, err))
			}
		case interface{ Close() }:
			c.Close()
		}
	}
	return errors.Join(errs...)
}
