package model

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

func seedReq(data ...string) *Request {
	return &Request{Inputs: []Tensor{{Name: SeedInput, Datatype: BYTES, Shape: []int64{int64(len(data))}, Data: data}}}
}

func predictSeed(t *testing.T, m *Seed, data ...string) []Output {
	t.Helper()
	resps, err := m.Predict(context.Background(), []*Request{seedReq(data...)})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckResponses([]*Request{seedReq(data...)}, resps); err != nil {
		t.Fatal(err)
	}
	out := make([]Output, len(data))
	for i := range data {
		if out[i], err = SeedOutput(resps[0], i); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestSeedShapeAndDeterminism(t *testing.T) {
	m := NewSeed(SeedConfig{Seed: 7})
	md := m.Metadata()
	if !IsSeedShaped(&md) {
		t.Fatal("the seed model is not seed-shaped")
	}
	msg := regexp.MustCompile(`^Predicted class: (cat|dog|bird|fish|rabbit) with \d{2}\.\d% confidence$`)
	for _, data := range []string{"", "hi", "cat image data", "héllo wörld 🐇", "this is a medium length input"} {
		out := predictSeed(t, m, data, data)
		if out[0] != out[1] {
			t.Fatalf("%q: not deterministic within a batch: %+v", data, out)
		}
		if again := predictSeed(t, m, data); again[0] != out[0] {
			t.Fatalf("%q: not deterministic across calls", data)
		}
		p := out[0].Prediction
		if p.Confidence < 0.70 || p.Confidence > 0.99 || p.Confidence*100 != float64(int(p.Confidence*100+0.5)) {
			t.Errorf("%q: confidence %v outside [0.70,0.99] or not 2 decimals", data, p.Confidence)
		}
		if !msg.MatchString(out[0].Message) {
			t.Errorf("message %q", out[0].Message)
		}
	}
	// Code points, not bytes: the lab's len(); README's "cat image data" is 14.
	out := predictSeed(t, m, "cat image data", "héllo 🐇")
	if out[0].Prediction.InputLength != 14 || out[1].Prediction.InputLength != 7 {
		t.Fatalf("input_length = %d, %d; want 14, 7", out[0].Prediction.InputLength, out[1].Prediction.InputLength)
	}
}

func TestSeedSpreadsClasses(t *testing.T) {
	m := NewSeed(SeedConfig{Seed: 1})
	counts := map[string]int{}
	for i := 0; i < 1000; i++ {
		counts[m.PredictOne(string(rune('a'+i%26))+time.Duration(i).String()).Prediction.Class]++
	}
	for _, c := range Classes {
		if counts[c] < 120 {
			t.Fatalf("class %s chosen %d/1000 times: %v", c, counts[c], counts)
		}
	}
	other := NewSeed(SeedConfig{Seed: 2})
	diff := 0
	for i := 0; i < 100; i++ {
		d := time.Duration(i).String()
		if m.PredictOne(d) != other.PredictOne(d) {
			diff++
		}
	}
	if diff < 50 {
		t.Fatalf("MODEL_SEED changed only %d/100 predictions", diff)
	}
}

func TestSeedLatencyHonoursDeadline(t *testing.T) {
	m := NewSeed(SeedConfig{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := m.Predict(ctx, []*Request{seedReq("x")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestValidateNamesTheTensor(t *testing.T) {
	md := Metadata{Inputs: []TensorSpec{{Name: "x", Datatype: FP32, Shape: []int64{-1, 2}}}, Outputs: []TensorSpec{{Name: "y", Datatype: FP32, Shape: []int64{-1}}}}
	ok := &Request{Inputs: []Tensor{{Name: "x", Datatype: FP32, Shape: []int64{3, 2}, Data: make([]float32, 6)}}}
	if err := md.Validate(ok); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		r    Request
		want string
	}{
		{Request{}, `input "x": missing`},
		{Request{Inputs: []Tensor{{Name: "z", Datatype: FP32, Shape: []int64{1, 2}, Data: make([]float32, 2)}}}, `input "z": the model has no such input (its inputs: x)`},
		{Request{Inputs: []Tensor{{Name: "x", Datatype: FP64, Shape: []int64{1, 2}, Data: make([]float64, 2)}}}, `input "x": datatype FP64, the model expects FP32`},
		{Request{Inputs: []Tensor{{Name: "x", Datatype: FP32, Shape: []int64{2}, Data: make([]float32, 2)}}}, `input "x": shape [2] has 1 dimensions, the model expects 2`},
		{Request{Inputs: []Tensor{{Name: "x", Datatype: FP32, Shape: []int64{1, 3}, Data: make([]float32, 3)}}}, `input "x": shape [1 3]: dimension 1 must be 2`},
		{Request{Inputs: []Tensor{{Name: "x", Datatype: FP32, Shape: []int64{1, 2}, Data: make([]float32, 3)}}}, `input "x": shape [1 2] has 2 elements but data has 3`},
		{Request{Inputs: ok.Inputs, Outputs: []string{"q"}}, `requested output "q": the model has no such output (its outputs: y)`},
	} {
		err := md.Validate(&tc.r)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrBadInput) {
			t.Errorf("got %v, want …%s…", err, tc.want)
		}
	}
}

func TestWarmupRequestFits(t *testing.T) {
	for _, md := range []Metadata{SeedMetadata(), {Inputs: []TensorSpec{{Name: "x", Datatype: FP32, Shape: []int64{-1, 64}}, {Name: "b", Datatype: BOOL, Shape: []int64{2}}}}} {
		if err := md.Validate(WarmupRequest(&md)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSeedWithoutItsInput: a request without the "data" input (a caller that
// skipped validation) is a bad input, not a nil dereference.
func TestSeedWithoutItsInput(t *testing.T) {
	resps, err := NewSeed(SeedConfig{}).Predict(context.Background(), []*Request{{Inputs: []Tensor{{Name: "input", Datatype: FP32, Shape: []int64{1}, Data: []float32{1}}}}})
	if err != nil || len(resps) != 1 || !errors.Is(resps[0].Err, ErrBadInput) {
		t.Fatalf("resps %v, err %v", resps, err)
	}
}
