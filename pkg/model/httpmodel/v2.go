package httpmodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/oip"
)

// fetchMetadata reads the remote model's v2 metadata from url.
func (m *Model) fetchMetadata(ctx context.Context, url string) (model.Metadata, error) {
	rep, err := m.roundTrip(ctx, http.MethodGet, url, nil)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			return model.Metadata{}, fmt.Errorf("model %q: reading its metadata from %s: %w", m.cfg.Model, url, err)
		}
		// Timeouts count as unavailable too: the worker retries loading.
		if errors.Is(err, model.ErrTimeout) {
			err = fmt.Errorf("%w: %w", model.ErrUnavailable, err)
		}
		return model.Metadata{}, fmt.Errorf("model %q: reading its metadata: %w", m.cfg.Model, err)
	}
	if err := statusError(rep); err != nil {
		if rep.code >= 500 || errors.Is(err, model.ErrUnavailable) {
			// A server that is starting, overloaded or broken now: retry loading.
			return model.Metadata{}, fmt.Errorf("%w: model %q: GET %s: %v", model.ErrUnavailable, m.cfg.Model, url, err)
		}
		// A wrong model name, version, URL or credentials: retrying will not help.
		return model.Metadata{}, fmt.Errorf("model %q: GET %s: %v", m.cfg.Model, url, err)
	}
	var w struct {
		Inputs  []model.TensorSpec `json:"inputs"`
		Outputs []model.TensorSpec `json:"outputs"`
	}
	if err := json.Unmarshal(rep.body, &w); err != nil {
		return model.Metadata{}, fmt.Errorf("model %q: GET %s: not v2 model metadata: %v; body: %s", m.cfg.Model, url, err, snippet(rep.body, maxSnippet))
	}
	for _, chk := range []error{
		model.CheckSpecs("inputs", w.Inputs),
		model.CheckSpecs("outputs", w.Outputs),
	} {
		if chk != nil {
			return model.Metadata{}, fmt.Errorf("model %q: GET %s: the server's metadata: %v", m.cfg.Model, url, chk)
		}
	}
	if len(w.Inputs) == 0 || len(w.Outputs) == 0 {
		// MLServer, for one, lists none unless model-settings.json declares them.
		return model.Metadata{}, fmt.Errorf("model %q: GET %s: the server's metadata lists %d inputs and %d outputs; declare them in config.yaml (inputs, outputs); body: %s",
			m.cfg.Model, url, len(w.Inputs), len(w.Outputs), snippet(rep.body, maxSnippet))
	}
	return model.Metadata{Platform: "http/v2", Inputs: w.Inputs, Outputs: w.Outputs}, nil
}

// inferV2 answers one request with one POST …/infer.
func (m *Model) inferV2(ctx context.Context, r *model.Request) ([]model.Tensor, error) {
	if err := m.md.Validate(r); err != nil {
		return nil, err
	}
	body, err := oip.EncodeRequest(r.ID, r)
	if err != nil {
		// Validate checked the tensors, so this is data JSON cannot carry (NaN, ±Inf)
		// or parameters it cannot encode.
		return nil, &model.InputError{Msg: fmt.Sprintf("cannot be sent to the model server as JSON: %v", err)}
	}
	rep, err := m.roundTrip(ctx, http.MethodPost, m.target, body)
	if err != nil {
		return nil, err
	}
	if err := statusError(rep); err != nil {
		return nil, err
	}
	resp, err := oip.DecodeResponse(rep.body, oip.Limits{})
	if err != nil {
		// %v, not %w: the decoder's errors are ErrBadInput for a request, but here
		// the server is at fault.
		return nil, fmt.Errorf("the model server's answer (%d) is not a valid v2 inference response: %v; body: %s", rep.code, err, snippet(rep.body, maxSnippet))
	}
	if resp.ID != "" && r.ID != "" && resp.ID != r.ID {
		return nil, fmt.Errorf("the model server answered request %q with the id %q", r.ID, resp.ID)
	}
	outs, err := m.pickOutputs(r, resp.Outputs)
	if err != nil {
		return nil, fmt.Errorf("the model server's answer does not fit the model's metadata: %w", err)
	}
	return outs, nil
}

// pickOutputs returns the outputs r asks for (all of the metadata's when it names
// none) from a server's answer, in that order, each checked against its spec:
// present once, the declared datatype, rank and fixed dimensions. Outputs nobody
// asked for are dropped (some servers ignore the selection).
func (m *Model) pickOutputs(r *model.Request, got []model.Tensor) ([]model.Tensor, error) {
	wanted := r.Outputs
	if len(wanted) == 0 {
		wanted = make([]string, len(m.md.Outputs))
		for i, s := range m.md.Outputs {
			wanted[i] = s.Name
		}
	}
	out := make([]model.Tensor, 0, len(wanted))
	for _, name := range wanted {
		spec := m.md.Output(name)
		if spec == nil {
			return nil, fmt.Errorf("output %q is not in the metadata", name)
		}
		var found *model.Tensor
		for i := range got {
			if got[i].Name != name {
				continue
			}
			if found != nil {
				return nil, fmt.Errorf("output %q appears twice", name)
			}
			found = &got[i]
		}
		if found == nil {
			return nil, fmt.Errorf("output %q is missing", name)
		}
		if found.Datatype != spec.Datatype {
			return nil, fmt.Errorf("output %q is %s, the metadata says %s", name, found.Datatype, spec.Datatype)
		}
		if err := matchShape(spec.Shape, found.Shape); err != nil {
			return nil, fmt.Errorf("output %q: %w", name, err)
		}
		out = append(out, *found)
	}
	return out, nil
}

// matchShape checks a concrete shape against a spec's (-1 matches any size).
func matchShape(spec, shape []int64) error {
	if len(shape) != len(spec) {
		return fmt.Errorf("shape %v has %d dimensions, the metadata says %d (%v)", shape, len(shape), len(spec), spec)
	}
	for i, d := range spec {
		if d >= 0 && shape[i] != d {
			return fmt.Errorf("shape %v: dimension %d must be %d (the metadata says %v)", shape, i, d, spec)
		}
	}
	return nil
}
