package repository

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/warren-farm/warren/pkg/model"
)

// fake is a predictor that records whether it was closed.
type fake struct {
	model.Predictor
	closed *[]string
	name   string
}

func (f fake) Close() error { *f.closed = append(*f.closed, f.name); return nil }

func TestLoad(t *testing.T) {
	writeRepo(t, map[string]string{
		"models/seed/config.yaml":  "backend: seed\nseed: 7\n",
		"models/multi/config.yaml": "backend: seed\nversion_policy: {all: true}\n",
		"models/multi/1/":          "",
		"models/multi/2/":          "",
		"models/lab/config.yaml":   "backend: http\nprotocol: seed\nurl: " + closedURL(t) + "/predict\n",
	})
	ms, err := Scan("models", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	loaded, err := Load(ctx, ms, Backends{BackendSeed: SeedBackend, BackendHTTP: HTTPBackend})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := Close(loaded); err != nil {
			t.Error(err)
		}
	}()
	if got := versions(modelsOf(loaded)); !slices.Equal(got, []string{"lab/1", "multi/1", "multi/2", "seed/1"}) {
		t.Fatalf("loaded %v", got)
	}
	for _, l := range loaded {
		if l.Metadata.Name != l.Name {
			t.Errorf("%s: metadata name %q", l.Model, l.Metadata.Name)
		}
		if !model.IsSeedShaped(&l.Metadata) {
			t.Errorf("%s: metadata %+v", l.Model, l.Metadata)
		}
	}
	if v := loaded[1].Metadata.Versions; !slices.Equal(v, []string{"1", "2"}) {
		t.Errorf("multi versions %v", v)
	}
	if p := loaded[0].Metadata.Platform; p != "http/seed" {
		t.Errorf("lab platform %q", p)
	}
	// The seed backend is the real seed model, with the config's seed.
	seed := loaded[3]
	req := &model.Request{Inputs: []model.Tensor{{Name: model.SeedInput, Datatype: model.BYTES, Shape: []int64{1}, Data: []string{"hello"}}}}
	resps, err := seed.Predictor.Predict(ctx, []*model.Request{req})
	if err != nil {
		t.Fatal(err)
	}
	got, err := model.SeedOutput(resps[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := model.NewSeed(model.SeedConfig{Seed: 7}).PredictOne("hello"); got != want {
		t.Errorf("seed model answered %+v, want %+v", got, want)
	}
}

func modelsOf(ls []Loaded) []Model {
	out := make([]Model, len(ls))
	for i, l := range ls {
		out[i] = l.Model
	}
	return out
}

func TestLoadUnknownBackend(t *testing.T) {
	writeRepo(t, map[string]string{
		"models/a/config.yaml":  "backend: seed\n",
		"models/d/config.yaml":  "backend: onnx\n",
		"models/d/1/model.onnx": "x",
		"models/e/config.yaml":  "backend: http\nprotocol: seed\nurl: http://b/predict\n",
	})
	ms, err := Scan("models", nil)
	if err != nil {
		t.Fatal(err)
	}
	called := false
	_, err = Load(context.Background(), ms, Backends{BackendSeed: func(ctx context.Context, m Model) (model.Predictor, error) {
		called = true
		return SeedBackend(ctx, m)
	}})
	checkMessages(t, err, []string{
		`models/d/config.yaml: backend: "onnx" is not available in this worker (it has seed)`,
		`models/e/config.yaml: backend: "http" is not available in this worker (it has seed)`,
	})
	if called {
		t.Error("a backend was called although others are missing")
	}
}

func TestLoadBackendErrors(t *testing.T) {
	writeRepo(t, map[string]string{
		"models/a/config.yaml": "backend: seed\n",
		"models/b/config.yaml": "backend: http\nprotocol: seed\nurl: http://b/predict\n",
		"models/c/config.yaml": "backend: seed\n",
		"models/d/config.yaml": "backend: http\nprotocol: seed\nurl: http://d/predict\n",
	})
	ms, err := Scan("models", nil)
	if err != nil {
		t.Fatal(err)
	}
	var closed []string
	down := errors.New("connection refused")
	_, err = Load(context.Background(), ms, Backends{
		BackendSeed: func(ctx context.Context, m Model) (model.Predictor, error) {
			p, _ := SeedBackend(ctx, m)
			return fake{Predictor: p, closed: &closed, name: m.Name}, nil
		},
		BackendHTTP: func(_ context.Context, m Model) (model.Predictor, error) {
			if m.Name == "d" {
				return nil, nil
			}
			return nil, errors.Join(model.ErrUnavailable, down)
		},
	})
	if err == nil {
		t.Fatal("Load succeeded")
	}
	msg := err.Error()
	for _, want := range []string{"b/1: backend http: model unavailable\nconnection refused", "d/1: backend http returned no predictor"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if !errors.Is(err, model.ErrUnavailable) || errors.Is(err, ErrInvalid) {
		t.Errorf("a backend's error keeps its class and is not ErrInvalid: %v", err)
	}
	if !slices.Equal(closed, []string{"a", "c"}) {
		t.Errorf("closed %v, want the loaded a and c", closed)
	}

	// A context that has ended loads nothing more.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Load(ctx, ms, Backends{BackendSeed: SeedBackend, BackendHTTP: HTTPBackend})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Load: %v", err)
	}
}

// closedURL returns the URL of a port nothing listens on.
func closedURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()
	return url
}

func TestHTTPConfig(t *testing.T) {
	writeRepo(t, map[string]string{"models/lab/config.yaml": "backend: http\nprotocol: v2\nurl: http://t:8000\nversion: 2\ntimeout: 1s\n" +
		"inputs: [{name: x, datatype: FP32, shape: [-1]}]\noutputs: [{name: out, datatype: FP32, shape: [-1]}]\n"})
	ms, err := Scan("models", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := HTTPConfig(ms[0])
	if c.URL != "http://t:8000" || c.Protocol != "v2" || c.Model != "lab" || c.Version != "2" || c.Timeout.Seconds() != 1 ||
		len(c.Inputs) != 1 || len(c.Outputs) != 1 {
		t.Errorf("httpmodel config %+v", c)
	}
	// Declared tensors: no server needed to load.
	loaded, err := Load(context.Background(), ms, Backends{BackendHTTP: HTTPBackend})
	if err != nil {
		t.Fatal(err)
	}
	if md := loaded[0].Metadata; md.Name != "lab" || md.Platform != "http/v2" || md.Inputs[0].Name != "x" {
		t.Errorf("metadata %+v", md)
	}
	if err := Close(loaded); err != nil {
		t.Error(err)
	}
}
