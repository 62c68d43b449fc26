package httpmodel

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"unicode/utf8"

	"github.com/warren-farm/warren/pkg/model"
)

// predictSeed answers a batch with one POST {"input": s} per string of every
// request's "data" input, all of them at most MaxConns at once.
func (m *Model) predictSeed(ctx context.Context, batch []*model.Request) []*model.Response {
	out := make([]*model.Response, len(batch))
	type task struct{ req, elem int }
	var tasks []task
	answers := make([][]model.Output, len(batch))
	errs := make([][]error, len(batch))
	for i, r := range batch {
		data, err := seedInput(&m.md, r)
		if err != nil {
			out[i] = &model.Response{Err: err}
			continue
		}
		answers[i] = make([]model.Output, len(data))
		errs[i] = make([]error, len(data))
		for j := range data {
			tasks = append(tasks, task{i, j})
		}
	}
	m.parallel(len(tasks), func(k int) {
		t := tasks[k]
		s := batch[t.req].Input(model.SeedInput).Data.([]string)[t.elem]
		answers[t.req][t.elem], errs[t.req][t.elem] = m.seedCall(ctx, s)
	})
	for i, r := range batch {
		if out[i] != nil {
			continue
		}
		if err := firstError(errs[i]); err != nil {
			out[i] = &model.Response{Err: err} // the first failure speaks for the request
			continue
		}
		outs, err := model.Select(seedTensors(answers[i], r.Input(model.SeedInput).Shape), r.Outputs)
		out[i] = &model.Response{Outputs: outs, Err: err}
	}
	return out
}

func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// seedInput checks r against the seed metadata and returns its strings, which
// must be text: the lab's protocol carries JSON strings.
func seedInput(md *model.Metadata, r *model.Request) ([]string, error) {
	if err := md.Validate(r); err != nil {
		return nil, err
	}
	data := r.Input(model.SeedInput).Data.([]string)
	for j, s := range data {
		if !utf8.ValidString(s) {
			return nil, model.BadInput(model.SeedInput, "element %d is not UTF-8 text, which the lab's protocol cannot carry", j)
		}
	}
	return data, nil
}

// seedCall sends one string to the lab's predict endpoint.
func (m *Model) seedCall(ctx context.Context, s string) (model.Output, error) {
	body, err := json.Marshal(struct {
		Input string `json:"input"`
	}{s})
	if err != nil {
		return model.Output{}, fmt.Errorf("encoding the seed request: %w", err)
	}
	rep, err := m.roundTrip(ctx, http.MethodPost, m.target, body)
	if err != nil {
		return model.Output{}, err
	}
	if err := statusError(rep); err != nil {
		return model.Output{}, err
	}
	return decodeSeed(rep)
}

// decodeSeed reads the lab's answer, {"prediction":{"class","confidence",
// "input_length"},"message"}; every field is required.
func decodeSeed(rep *reply) (model.Output, error) {
	var w struct {
		Prediction *struct {
			Class       *string  `json:"class"`
			Confidence  *float64 `json:"confidence"`
			InputLength *int64   `json:"input_length"`
		} `json:"prediction"`
		Message *string `json:"message"`
	}
	bad := func(format string, args ...any) (model.Output, error) {
		return model.Output{}, fmt.Errorf("the model server's answer (%d) is not the lab's prediction: %s; body: %s",
			rep.code, fmt.Sprintf(format, args...), snippet(rep.body, maxSnippet))
	}
	if err := json.Unmarshal(rep.body, &w); err != nil {
		return bad("%v", err)
	}
	switch p := w.Prediction; {
	case p == nil:
		return bad("no prediction")
	case p.Class == nil:
		return bad("no prediction.class")
	case p.Confidence == nil:
		return bad("no prediction.confidence")
	case p.InputLength == nil:
		return bad("no prediction.input_length")
	case w.Message == nil:
		return bad("no message")
	}
	p := w.Prediction
	return model.Output{
		Prediction: model.Prediction{Class: *p.Class, Confidence: *p.Confidence, InputLength: int(*p.InputLength)},
		Message:    *w.Message,
	}, nil
}

// seedTensors lays the lab's answers out as the seed model's outputs, each shaped
// like the input.
func seedTensors(answers []model.Output, shape []int64) []model.Tensor {
	n := len(answers)
	classes, msgs := make([]string, n), make([]string, n)
	confs, lens := make([]float64, n), make([]int64, n)
	for i, a := range answers {
		classes[i], confs[i], msgs[i] = a.Prediction.Class, a.Prediction.Confidence, a.Message
		lens[i] = int64(a.Prediction.InputLength)
	}
	return []model.Tensor{
		{Name: model.SeedClass, Datatype: model.BYTES, Shape: slices.Clone(shape), Data: classes},
		{Name: model.SeedConfidence, Datatype: model.FP64, Shape: slices.Clone(shape), Data: confs},
		{Name: model.SeedInputLength, Datatype: model.INT64, Shape: slices.Clone(shape), Data: lens},
		{Name: model.SeedMessage, Datatype: model.BYTES, Shape: slices.Clone(shape), Data: msgs},
	}
}
