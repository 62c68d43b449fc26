package httpmodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http/httptrace"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/warren-farm/warren/pkg/model"
)

func seedRequest(data ...string) *model.Request {
	return &model.Request{Inputs: []model.Tensor{{Name: model.SeedInput, Datatype: model.BYTES, Shape: []int64{int64(len(data))}, Data: data}}}
}

func fp32Request(name string, vals ...float32) *model.Request {
	return &model.Request{Inputs: []model.Tensor{{Name: name, Datatype: model.FP32, Shape: []int64{int64(len(vals))}, Data: vals}}}
}

func withParams(r *model.Request, kv ...any) *model.Request {
	r.Parameters = map[string]any{}
	for i := 0; i < len(kv); i += 2 {
		r.Parameters[kv[i].(string)] = kv[i+1]
	}
	return r
}

// predictErr predicts one request and returns the batch's or the item's error.
func predictErr(ctx context.Context, m *Model, r *model.Request) error {
	resps, err := m.Predict(ctx, []*model.Request{r})
	if err != nil {
		return err
	}
	if len(resps) != 1 {
		return fmt.Errorf("%d responses for 1 request", len(resps))
	}
	return resps[0].Err
}

// predict predicts a batch that must succeed, item by item.
func predict(t *testing.T, m *Model, batch ...*model.Request) []*model.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resps, err := m.Predict(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if err := model.CheckResponses(batch, resps); err != nil {
		t.Fatal(err)
	}
	for i, r := range resps {
		if r.Err != nil {
			t.Fatalf("item %d: %v", i, r.Err)
		}
	}
	return resps
}

func newModel(t *testing.T, cfg Config) *Model {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	return m
}

func v2Model(t *testing.T, name string, edit ...func(*Config)) *Model {
	t.Helper()
	cfg := Config{URL: server(t), Protocol: ProtocolV2, Model: name}
	for _, e := range edit {
		e(&cfg)
	}
	return newModel(t, cfg)
}

// plain reports whether err is a plain model error: none of the classes.
func plain(err error) bool {
	if err == nil {
		return false
	}
	for _, class := range []error{model.ErrBadInput, model.ErrUnavailable, model.ErrTimeout, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, class) {
			return false
		}
	}
	return true
}

func TestV2Metadata(t *testing.T) {
	url := server(t)
	_, body := rawJSON(t, "GET", url+"/v2/models/double", "")
	var want model.Metadata
	if err := json.Unmarshal(body, &want); err != nil {
		t.Fatal(err)
	}
	for _, version := range []string{"", "1"} {
		m := v2Model(t, "double", func(c *Config) { c.Version = version })
		md := m.Metadata()
		if md.Platform != "http/v2" || !reflect.DeepEqual(md.Inputs, want.Inputs) || !reflect.DeepEqual(md.Outputs, want.Outputs) {
			t.Fatalf("version %q: metadata %+v, the server's %+v", version, md, want)
		}
	}
	for _, tc := range []struct{ model, version, want string }{
		{"nosuch", "", "model 'nosuch' is not found"},
		{"double", "9", "model 'double' has no version '9'"},
	} {
		_, err := New(context.Background(), Config{URL: url, Protocol: ProtocolV2, Model: tc.model, Version: tc.version})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "404") {
			t.Errorf("%s/%s: %v, want a 404 naming it", tc.model, tc.version, err)
		}
		if errors.Is(err, model.ErrUnavailable) || errors.Is(err, model.ErrBadInput) {
			t.Errorf("%s/%s: %v: an unknown model is a permanent load error", tc.model, tc.version, err)
		}
	}
	// Not a v2 server at all: the lab's Service B answers 404 {"detail":"Not Found"}.
	_, err := New(context.Background(), Config{URL: url + "/predict", Protocol: ProtocolV2, Model: "double"})
	if err == nil || !strings.Contains(err.Error(), "404 Not Found: Not Found") {
		t.Errorf("metadata from a non-v2 URL: %v", err)
	}
}

// A server whose metadata lists no tensors (MLServer without model-settings.json
// declarations): New says to declare them; declared, the model works.
func TestV2DeclaredMetadata(t *testing.T) {
	url := server(t)
	_, err := New(context.Background(), Config{URL: url, Protocol: ProtocolV2, Model: "bare"})
	if err == nil || !strings.Contains(err.Error(), "lists 0 inputs and 0 outputs; declare them in config.yaml") || errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("%v, want a permanent error asking for declared tensors", err)
	}
	in := []model.TensorSpec{{Name: "q", Datatype: model.INT32, Shape: []int64{-1, 1}}}
	m := v2Model(t, "bare", func(c *Config) { c.Inputs, c.Outputs = in, in })
	r := &model.Request{Inputs: []model.Tensor{{Name: "q", Datatype: model.INT32, Shape: []int64{2, 1}, Data: []int32{5, -6}}}}
	out := predict(t, m, r)[0].Outputs
	if len(out) != 1 || out[0].Name != "q" || !reflect.DeepEqual(out[0].Data, []int32{5, -6}) || !reflect.DeepEqual(out[0].Shape, []int64{2, 1}) {
		t.Fatalf("%+v", out)
	}
}

func TestV2InferNested(t *testing.T) {
	m := v2Model(t, "double")
	x1 := []float32{1, 2, 3, 4.5, -0.25, 1e6}
	x2 := []float32{0.1, 7}
	r1 := &model.Request{ID: "req-1", Inputs: []model.Tensor{{Name: "x", Datatype: model.FP32, Shape: []int64{3, 2}, Data: x1}}}
	r2 := &model.Request{ID: "req-2", Inputs: []model.Tensor{{Name: "x", Datatype: model.FP32, Shape: []int64{1, 2}, Data: x2}}}
	resps := predict(t, m, r1, r2)
	for i, x := range [][]float32{x1, x2} {
		outs := resps[i].Outputs
		if len(outs) != 2 || outs[0].Name != "y" || outs[1].Name != "sum" {
			t.Fatalf("item %d: outputs %+v", i, outs)
		}
		y, sum := outs[0].Data.([]float32), outs[1].Data.([]float64)
		rows := int64(len(x) / 2)
		if !reflect.DeepEqual(outs[0].Shape, []int64{rows, 2}) || !reflect.DeepEqual(outs[1].Shape, []int64{rows}) {
			t.Fatalf("item %d: shapes %v %v", i, outs[0].Shape, outs[1].Shape)
		}
		for j := range x {
			if y[j] != 2*x[j] {
				t.Errorf("item %d: y[%d] = %v, want %v", i, j, y[j], 2*x[j])
			}
		}
		for r := range rows {
			want := 2*float64(x[2*r]) + 2*float64(x[2*r+1])
			if math.Abs(sum[r]-want) > 1e-9*math.Max(1, math.Abs(want)) {
				t.Errorf("item %d: sum[%d] = %v, want %v", i, r, sum[r], want)
			}
		}
	}
}

func TestV2OutputSelection(t *testing.T) {
	m := v2Model(t, "double")
	x := []float32{1, 2, 3, 4}
	req := func(outputs ...string) *model.Request {
		return &model.Request{Outputs: outputs, Inputs: []model.Tensor{{Name: "x", Datatype: model.FP32, Shape: []int64{2, 2}, Data: x}}}
	}
	for _, sel := range [][]string{{"sum"}, {"sum", "y"}, {"y"}} {
		outs := predict(t, m, req(sel...))[0].Outputs
		var names []string
		for _, o := range outs {
			names = append(names, o.Name)
		}
		if !reflect.DeepEqual(names, sel) {
			t.Errorf("asked for %v, got %v", sel, names)
		}
	}
	if err := predictErr(context.Background(), m, req("nope")); !errors.Is(err, model.ErrBadInput) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown output: %v, want ErrBadInput naming it", err)
	}
}

func TestV2Bytes(t *testing.T) {
	m := v2Model(t, "echo")
	text := []string{"cat image data", "héllo wörld 🐇", "", `quote " and \ backslash`, "<&>", "line\nbreak\ttab"}
	r := &model.Request{Inputs: []model.Tensor{{Name: "text", Datatype: model.BYTES, Shape: []int64{int64(len(text))}, Data: text}}}
	out := predict(t, m, r)[0].Outputs
	if len(out) != 1 || !reflect.DeepEqual(out[0].Data, text) {
		t.Fatalf("echo: %+v", out)
	}
}

func TestV2Errors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t.Run("500", func(t *testing.T) {
		err := predictErr(ctx, v2Model(t, "fail"), fp32Request("x", 1))
		var se *StatusError
		if !plain(err) || !errors.As(err, &se) || se.Code != 500 || se.Message != "model 'fail' crashed: simulated failure" {
			t.Fatalf("%#v, want a plain StatusError 500 with the server's message", err)
		}
	})
	t.Run("400", func(t *testing.T) {
		m := v2Model(t, "picky")
		ok := &model.Request{Inputs: []model.Tensor{{Name: "x", Datatype: model.INT64, Shape: []int64{2}, Data: []int64{1, 2}}}}
		bad := &model.Request{Inputs: []model.Tensor{{Name: "x", Datatype: model.INT64, Shape: []int64{2}, Data: []int64{1, -3}}}}
		resps, err := m.Predict(ctx, []*model.Request{ok, bad, ok})
		if err != nil {
			t.Fatal(err)
		}
		if resps[0].Err != nil || resps[2].Err != nil || !reflect.DeepEqual(resps[2].Outputs[0].Data, []int64{1, 2}) {
			t.Fatalf("the good items: %+v %+v", resps[0], resps[2])
		}
		err = resps[1].Err
		if !errors.Is(err, model.ErrBadInput) || !strings.Contains(err.Error(), "picky: negative values are not allowed (got -3)") {
			t.Fatalf("%v, want ErrBadInput with the server's message", err)
		}
	})
	t.Run("not JSON", func(t *testing.T) {
		err := predictErr(ctx, v2Model(t, "garbage"), fp32Request("x", 1))
		if !plain(err) || !strings.Contains(err.Error(), "not a valid v2 inference response") || !strings.Contains(err.Error(), "this is not JSON") {
			t.Fatalf("%v, want a plain error quoting the body", err)
		}
	})
	for _, fault := range []struct{ name, want string }{
		{"shape", "data has 1 elements, the shape says 2"},
		{"missing", `output "y" is missing`},
		{"datatype", `output "y" is FP64, the metadata says FP32`},
		{"extra", `output "y" appears twice`},
	} {
		t.Run("wrong "+fault.name, func(t *testing.T) {
			err := predictErr(ctx, v2Model(t, "wrongshape"), withParams(fp32Request("x", 1), "fault", fault.name))
			// Never ErrBadInput: the server broke its answer, not the caller.
			if !plain(err) || !strings.Contains(err.Error(), fault.want) {
				t.Fatalf("%v, want a plain error with %q", err, fault.want)
			}
		})
	}
	t.Run("unknown remote model", func(t *testing.T) {
		spec := []model.TensorSpec{{Name: "x", Datatype: model.FP32, Shape: []int64{-1}}}
		m := v2Model(t, "gone", func(c *Config) { c.Inputs, c.Outputs = spec, spec })
		err := predictErr(ctx, m, fp32Request("x", 1))
		var se *StatusError
		if !plain(err) || !errors.As(err, &se) || se.Code != 404 || !strings.Contains(se.Message, "'gone' is not found") {
			t.Fatalf("%v, want a plain 404", err)
		}
	})
	t.Run("input checked before sending", func(t *testing.T) {
		m := v2Model(t, "double")
		for _, r := range []*model.Request{
			{Inputs: []model.Tensor{{Name: "x", Datatype: model.FP64, Shape: []int64{1, 2}, Data: []float64{1, 2}}}},
			{Inputs: []model.Tensor{{Name: "x", Datatype: model.FP32, Shape: []int64{1, 3}, Data: []float32{1, 2, 3}}}},
			{Inputs: []model.Tensor{{Name: "x", Datatype: model.FP32, Shape: []int64{1, 2}, Data: []float32{1, float32(math.NaN())}}}},
			{},
		} {
			if err := predictErr(ctx, m, r); !errors.Is(err, model.ErrBadInput) {
				t.Errorf("%+v: %v, want ErrBadInput", r.Inputs, err)
			}
		}
	})
}

func TestResponseSizeLimit(t *testing.T) {
	m := v2Model(t, "echo", func(c *Config) { c.MaxResponseBytes = 2048 })
	big := strings.Repeat("x", 4096)
	r := func(s string) *model.Request {
		return &model.Request{Inputs: []model.Tensor{{Name: "text", Datatype: model.BYTES, Shape: []int64{1}, Data: []string{s}}}}
	}
	err := predictErr(context.Background(), m, r(big))
	if !plain(err) || !strings.Contains(err.Error(), "larger than 2048 bytes") {
		t.Fatalf("%v, want a plain error about the size", err)
	}
	// The model still works.
	if out := predict(t, m, r("small"))[0].Outputs; out[0].Data.([]string)[0] != "small" {
		t.Fatalf("%+v", out)
	}
}

func TestSeedProtocol(t *testing.T) {
	url := server(t)
	m := newModel(t, Config{URL: url + "/predict", Protocol: ProtocolSeed, MaxConns: 3})
	md := m.Metadata()
	if md.Platform != "http/seed" || !model.IsSeedShaped(&md) {
		t.Fatalf("metadata %+v", md)
	}
	r1 := seedRequest("cat image data", "héllo wörld 🐇", "")
	r2 := seedRequest(`<&> "quoted"`, "this is a medium length input")
	resps := predict(t, m, r1, r2)
	builtin, err := model.NewSeed(model.SeedConfig{}).Predict(context.Background(), []*model.Request{r1, r2})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range []*model.Request{r1, r2} {
		// The same tensors as the built-in seed backend: names, datatypes, shapes.
		if len(resps[i].Outputs) != len(builtin[i].Outputs) {
			t.Fatalf("item %d: %d outputs, the seed backend has %d", i, len(resps[i].Outputs), len(builtin[i].Outputs))
		}
		for k, o := range resps[i].Outputs {
			b := builtin[i].Outputs[k]
			if o.Name != b.Name || o.Datatype != b.Datatype || !reflect.DeepEqual(o.Shape, b.Shape) {
				t.Errorf("item %d output %d: %s %s %v, the seed backend's %s %s %v", i, k, o.Name, o.Datatype, o.Shape, b.Name, b.Datatype, b.Shape)
			}
		}
		for j, s := range r.Inputs[0].Data.([]string) {
			got, err := model.SeedOutput(resps[i], j)
			if err != nil {
				t.Fatal(err)
			}
			in, _ := json.Marshal(map[string]string{"input": s})
			code, body := rawJSON(t, "POST", url+"/predict", string(in))
			var want model.Output
			if err := json.Unmarshal(body, &want); err != nil || code != 200 {
				t.Fatalf("the server: %d %s %v", code, body, err)
			}
			if got != want {
				t.Errorf("%q: %+v, the server says %+v", s, got, want)
			}
			if got.Prediction.InputLength != utf8.RuneCountInString(s) {
				t.Errorf("%q: input_length %d, want %d code points", s, got.Prediction.InputLength, utf8.RuneCountInString(s))
			}
		}
	}
	// Output selection.
	r3 := seedRequest("a")
	r3.Outputs = []string{model.SeedMessage, model.SeedClass}
	outs := predict(t, m, r3)[0].Outputs
	if len(outs) != 2 || outs[0].Name != model.SeedMessage || outs[1].Name != model.SeedClass {
		t.Fatalf("selected outputs %+v", outs)
	}
}

func TestSeedErrors(t *testing.T) {
	url := server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	seed := func(path string, edit ...func(*Config)) *Model {
		cfg := Config{URL: url + path, Protocol: ProtocolSeed}
		for _, e := range edit {
			e(&cfg)
		}
		return newModel(t, cfg)
	}
	t.Run("lab 422 shape", func(t *testing.T) {
		code, body := rawJSON(t, "POST", url+"/predict", `{}`)
		if code != 422 || errorMessage(body) != "body.input: field required" {
			t.Fatalf("the lab's missing input: %d %s → %q", code, body, errorMessage(body))
		}
	})
	t.Run("422 is bad input", func(t *testing.T) {
		m := seed("/strict/predict")
		long := strings.Repeat("a", 70)
		resps, err := m.Predict(ctx, []*model.Request{seedRequest("short", long), seedRequest("short")})
		if err != nil {
			t.Fatal(err)
		}
		err = resps[0].Err
		var se *StatusError
		if !errors.Is(err, model.ErrBadInput) || !errors.As(err, &se) || se.Code != 422 ||
			se.Message != "body.input: ensure this value has at most 64 characters" {
			t.Fatalf("%v, want ErrBadInput with FastAPI's detail", err)
		}
		if resps[1].Err != nil {
			t.Fatalf("the other item: %v", resps[1].Err)
		}
	})
	t.Run("wrong URL", func(t *testing.T) {
		err := predictErr(ctx, seed("/nosuch"), seedRequest("a"))
		var se *StatusError
		if !plain(err) || !errors.As(err, &se) || se.Code != 404 || se.Message != "Not Found" {
			t.Fatalf("%v, want a plain 404", err)
		}
	})
	for _, tc := range []struct{ fault, want string }{
		{"missing", "no prediction.confidence"},
		{"type", "input_length"},
		{"text", "Service B is having a bad day"},
	} {
		t.Run("broken "+tc.fault, func(t *testing.T) {
			err := predictErr(ctx, seed("/broken/predict?fault="+tc.fault), seedRequest("a"))
			if !plain(err) || !strings.Contains(err.Error(), "is not the lab's prediction") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want a plain error with %q", err, tc.want)
			}
		})
	}
	t.Run("too large", func(t *testing.T) {
		m := seed("/broken/predict?fault=big", func(c *Config) { c.MaxResponseBytes = 4096 })
		if err := predictErr(ctx, m, seedRequest("a")); !plain(err) || !strings.Contains(err.Error(), "larger than 4096 bytes") {
			t.Fatalf("%v", err)
		}
	})
	t.Run("not text", func(t *testing.T) {
		err := predictErr(ctx, seed("/predict"), seedRequest("ok", "\xff\xfe"))
		if !errors.Is(err, model.ErrBadInput) || !strings.Contains(err.Error(), "element 1 is not UTF-8") {
			t.Fatalf("%v", err)
		}
	})
}

func TestRequestDeadline(t *testing.T) {
	m := v2Model(t, "slow", func(c *Config) { c.Timeout = time.Minute })
	slow := func() *model.Request { return withParams(fp32Request("x", 1), "sleep_ms", 5000) }

	const deadline = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	_, err := m.Predict(ctx, []*model.Request{slow(), slow()})
	if elapsed := time.Since(start); elapsed > deadline+2*time.Second {
		t.Errorf("Predict returned %v after a %v deadline", elapsed, deadline)
	}
	if err != context.DeadlineExceeded {
		t.Fatalf("%v, want context.DeadlineExceeded itself", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	timer := time.AfterFunc(deadline, cancel)
	defer timer.Stop()
	start = time.Now()
	_, err = m.Predict(ctx, []*model.Request{slow()})
	if elapsed := time.Since(start); elapsed > deadline+2*time.Second {
		t.Errorf("Predict returned %v after a cancellation at %v", elapsed, deadline)
	}
	if err != context.Canceled {
		t.Fatalf("%v, want context.Canceled itself", err)
	}
}

func TestConfigTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	m := v2Model(t, "slow", func(c *Config) { c.Timeout = timeout })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err := predictErr(ctx, m, withParams(fp32Request("x", 1), "sleep_ms", 5000))
	if elapsed := time.Since(start); elapsed > timeout+2*time.Second {
		t.Errorf("Predict returned %v after a %v timeout", elapsed, timeout)
	}
	if !errors.Is(err, model.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v, want ErrTimeout and not the request's deadline", err)
	}
	// Within the timeout all is well.
	if out := predict(t, m, withParams(fp32Request("x", 7), "sleep_ms", 10))[0].Outputs; out[0].Data.([]float32)[0] != 7 {
		t.Fatalf("%+v", out)
	}
}

// connTrace counts the connections a context's calls dial, take from the pool and
// use (distinct local addresses, so connections opened before count too).
type connTrace struct {
	dials, gets, reused atomic.Int64
	mu                  sync.Mutex
	conns               map[string]bool
}

func (c *connTrace) ctx(parent context.Context) context.Context {
	return httptrace.WithClientTrace(parent, &httptrace.ClientTrace{
		ConnectStart: func(string, string) { c.dials.Add(1) },
		GotConn: func(info httptrace.GotConnInfo) {
			c.gets.Add(1)
			if info.Reused {
				c.reused.Add(1)
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.conns == nil {
				c.conns = map[string]bool{}
			}
			c.conns[info.Conn.LocalAddr().String()] = true
		},
	})
}

// used is the number of distinct connections the calls used.
func (c *connTrace) used() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.conns)
}

func TestKeepAlive(t *testing.T) {
	const maxConns = 2
	url := server(t)
	v2 := v2Model(t, "picky", func(c *Config) { c.MaxConns = maxConns })
	seed := newModel(t, Config{URL: url + "/predict", Protocol: ProtocolSeed, MaxConns: maxConns})
	for _, tc := range []struct {
		name string
		m    *Model
		req  func(i int) *model.Request
	}{
		// Successes and 400s alternate: error answers must free their connection too.
		{"v2", v2, func(i int) *model.Request {
			return &model.Request{Inputs: []model.Tensor{{Name: "x", Datatype: model.INT64, Shape: []int64{1}, Data: []int64{int64(i%2*2 - 1)}}}}
		}},
		{"seed", seed, func(i int) *model.Request { return seedRequest(fmt.Sprint("call ", i)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr connTrace
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ctx = tr.ctx(ctx)
			for i := range 50 {
				err := predictErr(ctx, tc.m, tc.req(i))
				if tc.name == "v2" && i%2 == 0 {
					if !errors.Is(err, model.ErrBadInput) {
						t.Fatalf("call %d: %v, want ErrBadInput", i, err)
					}
				} else if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
			}
			t.Logf("50 calls: %d connections used, %d dialled, %d reuses", tr.used(), tr.dials.Load(), tr.reused.Load())
			if tr.gets.Load() != 50 || tr.used() > maxConns || tr.reused.Load() < 50-maxConns {
				t.Fatalf("50 sequential calls used %d connections (max_conns %d), reused one %d times", tr.used(), maxConns, tr.reused.Load())
			}
		})
	}
}

func TestConcurrentBatch(t *testing.T) {
	const maxConns, n = 3, 9
	url := server(t)
	m := v2Model(t, "slow", func(c *Config) { c.MaxConns = maxConns })
	group := fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())
	batch := make([]*model.Request, n)
	for i := range batch {
		batch[i] = withParams(fp32Request("x", float32(i), float32(-i)), "sleep_ms", 300, "group", group)
	}
	var tr connTrace
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resps, err := m.Predict(tr.ctx(ctx), batch)
	if err != nil {
		t.Fatal(err)
	}
	if err := model.CheckResponses(batch, resps); err != nil {
		t.Fatal(err)
	}
	for i, r := range resps {
		if r.Err != nil || !reflect.DeepEqual(r.Outputs[0].Data, []float32{float32(i), float32(-i)}) {
			t.Fatalf("item %d: %+v (answers out of order?)", i, r)
		}
	}
	_, body := rawJSON(t, "GET", url+"/testing/peak/"+group, "")
	var peak struct{ Peak int }
	if err := json.Unmarshal(body, &peak); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d requests, max_conns %d: at most %d in flight at the server, %d connections used", n, maxConns, peak.Peak, tr.used())
	if peak.Peak < 2 || peak.Peak > maxConns {
		t.Fatalf("%d requests in flight at once, want 2…%d (concurrent, bounded by max_conns)", peak.Peak, maxConns)
	}
	if tr.used() > maxConns {
		t.Fatalf("%d connections for max_conns %d", tr.used(), maxConns)
	}
}

// Many goroutines share one Model; the pool still holds at most MaxConns
// connections.
func TestConcurrentCallers(t *testing.T) {
	const maxConns = 2
	m := v2Model(t, "double", func(c *Config) { c.MaxConns = maxConns })
	var tr connTrace
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = tr.ctx(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 5 {
				v := float32(g*10 + i)
				r := &model.Request{Inputs: []model.Tensor{{Name: "x", Datatype: model.FP32, Shape: []int64{1, 2}, Data: []float32{v, 1}}}}
				resps, err := m.Predict(ctx, []*model.Request{r, r})
				if err == nil && resps[1].Err != nil {
					err = resps[1].Err
				}
				if err == nil && resps[1].Outputs[0].Data.([]float32)[0] != 2*v {
					err = fmt.Errorf("y = %v for x = %v", resps[1].Outputs[0].Data, v)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if tr.used() > maxConns {
		t.Fatalf("%d connections for max_conns %d", tr.used(), maxConns)
	}
}
