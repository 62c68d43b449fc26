package httpmodel

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/model"
)

func TestConfigValidationNamesTheKey(t *testing.T) {
	ok := Config{URL: "http://127.0.0.1:1", Protocol: ProtocolSeed}
	spec := []model.TensorSpec{{Name: "x", Datatype: model.FP32, Shape: []int64{-1}}}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no url", func(c *Config) { c.URL = "" }, "url: required"},
		{"bad scheme", func(c *Config) { c.URL = "ftp://svc-b/predict" }, `url: "ftp://svc-b/predict": the scheme must be http or https`},
		{"no scheme", func(c *Config) { c.URL = "svc-b:8001/predict" }, "url: "},
		{"no host", func(c *Config) { c.URL = "http:///predict" }, "has no host"},
		{"unparsable", func(c *Config) { c.URL = "http://[::1" }, "url: "},
		{"fragment", func(c *Config) { c.URL = "http://svc-b/predict#x" }, "url: "},
		{"v2 query", func(c *Config) { c.Protocol, c.Model, c.URL = ProtocolV2, "m", "http://triton:8000/?x=1" }, "url: "},
		{"no protocol", func(c *Config) { c.Protocol = "" }, "protocol: required (v2 or seed)"},
		{"bad protocol", func(c *Config) { c.Protocol = "grpc" }, `protocol: "grpc" is not one of v2, seed`},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "timeout: -1s is negative"},
		{"negative max_conns", func(c *Config) { c.MaxConns = -1 }, "max_conns: -1"},
		{"huge max_conns", func(c *Config) { c.MaxConns = MaxConnsLimit + 1 }, "max_conns: "},
		{"negative max_response_bytes", func(c *Config) { c.MaxResponseBytes = -1 }, "max_response_bytes: "},
		{"v2 without model", func(c *Config) { c.Protocol = ProtocolV2 }, "model: required for protocol v2"},
		{"v2 inputs only", func(c *Config) { c.Protocol, c.Model, c.Inputs = ProtocolV2, "m", spec }, "inputs, outputs: declare both or neither"},
		{"v2 bad datatype", func(c *Config) {
			c.Protocol, c.Model, c.Outputs = ProtocolV2, "m", spec
			c.Inputs = []model.TensorSpec{{Name: "x", Datatype: "FP99", Shape: []int64{1}}}
		}, `inputs: tensor "x": unknown datatype "FP99"`},
		{"v2 bad dimension", func(c *Config) {
			c.Protocol, c.Model, c.Inputs = ProtocolV2, "m", spec
			c.Outputs = []model.TensorSpec{{Name: "y", Datatype: model.FP32, Shape: []int64{-2}}}
		}, `outputs: tensor "y": shape [-2]`},
		{"v2 duplicate", func(c *Config) {
			c.Protocol, c.Model, c.Outputs = ProtocolV2, "m", spec
			c.Inputs = append(spec, spec...)
		}, `inputs: tensor "x" is listed twice`},
		{"seed with tensors", func(c *Config) { c.Inputs, c.Outputs = spec, spec }, "inputs, outputs: protocol seed has fixed tensors"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			m, err := New(context.Background(), c)
			if err == nil {
				m.Close()
				t.Fatalf("New accepted %+v", c)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			if errors.Is(err, model.ErrUnavailable) {
				t.Fatalf("a config error is not retryable, got %v", err)
			}
		})
	}
	// Several problems are all reported.
	_, err := New(context.Background(), Config{URL: "ftp://x", Protocol: "grpc", Timeout: -1})
	for _, key := range []string{"url: ", "protocol: ", "timeout: "} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error %v does not name %q", err, key)
		}
	}
}

// A seed model and a v2 model with declared metadata need no server to load.
func TestNewWithoutServer(t *testing.T) {
	url := closedURL(t)
	seed, err := New(context.Background(), Config{URL: url + "/predict", Protocol: ProtocolSeed})
	if err != nil {
		t.Fatal(err)
	}
	defer seed.Close()
	md := seed.Metadata()
	if md.Platform != "http/seed" || !model.IsSeedShaped(&md) {
		t.Fatalf("seed metadata %+v", md)
	}
	in := []model.TensorSpec{{Name: "x", Datatype: model.FP32, Shape: []int64{-1, 2}}}
	out := []model.TensorSpec{{Name: "y", Datatype: model.FP32, Shape: []int64{-1, 2}}}
	v2, err := New(context.Background(), Config{URL: url, Protocol: ProtocolV2, Model: "double", Inputs: in, Outputs: out})
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	md = v2.Metadata()
	if md.Platform != "http/v2" || len(md.Inputs) != 1 || md.Inputs[0].Name != "x" || md.Outputs[0].Name != "y" {
		t.Fatalf("declared metadata %+v", md)
	}
	if v2.target != url+"/v2/models/double/infer" {
		t.Fatalf("infer URL %q", v2.target)
	}
	// Metadata returns a copy.
	md.Inputs[0].Name = "changed"
	if v2.Metadata().Inputs[0].Name != "x" {
		t.Fatal("Metadata shares its slices")
	}
}

func TestInferURL(t *testing.T) {
	spec := []model.TensorSpec{{Name: "x", Datatype: model.FP32, Shape: []int64{1}}}
	for _, tc := range []struct{ url, model, version, want string }{
		{"http://h:8000", "m", "", "http://h:8000/v2/models/m/infer"},
		{"http://h:8000/", "m", "3", "http://h:8000/v2/models/m/versions/3/infer"},
		{"https://h/prefix/", "a b/c", "", "https://h/prefix/v2/models/a%20b%2Fc/infer"},
	} {
		m, err := New(context.Background(), Config{URL: tc.url, Protocol: ProtocolV2, Model: tc.model, Version: tc.version, Inputs: spec, Outputs: spec})
		if err != nil {
			t.Fatal(err)
		}
		if m.target != tc.want {
			t.Errorf("%+v: %q, want %q", tc, m.target, tc.want)
		}
		m.Close()
	}
}

// A server that is down: New (v2 metadata) and Predict (both protocols) fail
// with ErrUnavailable.
func TestServerDown(t *testing.T) {
	url := closedURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := New(ctx, Config{URL: url, Protocol: ProtocolV2, Model: "double"})
	if !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("New: %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("New: %v does not say why", err)
	}
	seed, err := New(ctx, Config{URL: url + "/predict", Protocol: ProtocolSeed})
	if err != nil {
		t.Fatal(err)
	}
	defer seed.Close()
	if err := predictErr(ctx, seed, seedRequest("a", "b")); !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("seed Predict: %v, want ErrUnavailable", err)
	}
	spec := []model.TensorSpec{{Name: "x", Datatype: model.FP32, Shape: []int64{-1}}}
	v2, err := New(ctx, Config{URL: url, Protocol: ProtocolV2, Model: "slow", Inputs: spec, Outputs: spec})
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	if err := predictErr(ctx, v2, fp32Request("x", 1)); !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("v2 Predict: %v, want ErrUnavailable", err)
	}
}

// A peer that accepts and hangs up without answering: ErrUnavailable.
func TestConnectionClosedByPeer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 1024)
			_, _ = c.Read(buf) // the request's start, then hang up
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // a reset, not a clean close
			}
			c.Close()
		}
	}()
	m, err := New(context.Background(), Config{URL: "http://" + l.Addr().String() + "/predict", Protocol: ProtocolSeed})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := predictErr(ctx, m, seedRequest("a")); !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("%v, want ErrUnavailable", err)
	}
}
