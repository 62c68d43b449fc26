package onnxmodel

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sync"
	"testing"

	"github.com/warren-farm/warren/pkg/model"
)

// The committed digits model and its vectors (scripts/models/train_digits.py).
const (
	digitsModel   = "../../../models/digits/1/model.onnx"
	digitsVectors = "../../../models/digits/testdata/vectors.json"
	tolerance     = 1e-5
)

type vector struct {
	Index         int       `json:"index"`
	Label         int       `json:"label"`
	Predicted     int       `json:"predicted"`
	Input         []float64 `json:"input"`
	Probabilities []float64 `json:"probabilities"`
}

type vectorFile struct {
	Input   string   `json:"input"`
	Output  string   `json:"output"`
	Vectors []vector `json:"vectors"`
}

func loadVectors(t testing.TB) vectorFile {
	t.Helper()
	data, err := os.ReadFile(digitsVectors)
	if err != nil {
		t.Fatal(err)
	}
	var vf vectorFile
	if err := json.Unmarshal(data, &vf); err != nil {
		t.Fatal(err)
	}
	if len(vf.Vectors) < 16 {
		t.Fatalf("%s holds %d vectors; expected about 32", digitsVectors, len(vf.Vectors))
	}
	return vf
}

func loadDigits(t testing.TB, instances int) *Model {
	t.Helper()
	m, err := Load(Config{Path: digitsModel, Instances: instances})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// digitsRequest is one request holding the given vectors as rows.
func digitsRequest(id string, vs []vector) *model.Request {
	data := make([]float32, 0, 64*len(vs))
	for _, v := range vs {
		for _, x := range v.Input {
			data = append(data, float32(x))
		}
	}
	return &model.Request{ID: id, Inputs: []model.Tensor{{
		Name: "input", Datatype: model.FP32, Shape: []int64{int64(len(vs)), 64}, Data: data,
	}}}
}

// checkRows compares a probabilities output with the vectors' sklearn outputs and
// returns the largest absolute difference.
func checkRows(t *testing.T, out model.Tensor, vs []vector) float64 {
	t.Helper()
	if out.Name != "probabilities" || out.Datatype != model.FP32 {
		t.Fatalf("output %q %s, want probabilities FP32", out.Name, out.Datatype)
	}
	if len(out.Shape) != 2 || out.Shape[0] != int64(len(vs)) || out.Shape[1] != 10 {
		t.Fatalf("output shape %v, want [%d 10]", out.Shape, len(vs))
	}
	got := out.Data.([]float32)
	maxDiff := 0.0
	for r, v := range vs {
		row := got[r*10 : (r+1)*10]
		best := 0
		for c, p := range row {
			d := math.Abs(float64(p) - v.Probabilities[c])
			if !(d <= tolerance) { // also catches NaN
				t.Errorf("vector %d (index %d) class %d: %g, sklearn %g (diff %.3g > %g)", r, v.Index, c, p, v.Probabilities[c], d, tolerance)
			}
			maxDiff = math.Max(maxDiff, d)
			if p > row[best] {
				best = c
			}
		}
		if best != v.Predicted {
			t.Errorf("vector %d (index %d): argmax %d, sklearn predicted %d", r, v.Index, best, v.Predicted)
		}
		if (best == v.Label) != (v.Predicted == v.Label) {
			t.Errorf("vector %d (index %d): label %d, argmax %d, sklearn %d", r, v.Index, v.Label, best, v.Predicted)
		}
	}
	return maxDiff
}

func TestDigitsMetadata(t *testing.T) {
	m := loadDigits(t, 1)
	md := m.Metadata()
	want := model.Metadata{
		Platform: "onnx",
		Inputs:   []model.TensorSpec{{Name: "input", Datatype: model.FP32, Shape: []int64{-1, 64}}},
		Outputs:  []model.TensorSpec{{Name: "probabilities", Datatype: model.FP32, Shape: []int64{-1, 10}}},
	}
	if fmt.Sprint(md) != fmt.Sprint(want) {
		t.Fatalf("metadata %+v, want %+v", md, want)
	}
	md.Inputs[0].Shape[0] = 7 // a copy: must not change the model's
	if m.Metadata().Inputs[0].Shape[0] != -1 {
		t.Fatal("Metadata returned the model's own slices")
	}
	if !m.batchable {
		t.Fatal("the digits model should be batchable")
	}
}

// TestDigitsVectors checks every output element against sklearn's float64
// predict_proba, one request per vector and all vectors as one request.
func TestDigitsVectors(t *testing.T) {
	vf := loadVectors(t)
	m := loadDigits(t, 1)
	ctx := context.Background()
	maxDiff := 0.0
	for i, v := range vf.Vectors {
		resps, err := m.Predict(ctx, []*model.Request{digitsRequest(fmt.Sprint(i), []vector{v})})
		if err != nil {
			t.Fatal(err)
		}
		if len(resps) != 1 || resps[0].Err != nil || len(resps[0].Outputs) != 1 {
			t.Fatalf("vector %d: response %+v", i, resps)
		}
		maxDiff = math.Max(maxDiff, checkRows(t, resps[0].Outputs[0], []vector{v}))
	}
	resps, err := m.Predict(ctx, []*model.Request{digitsRequest("all", vf.Vectors)})
	if err != nil {
		t.Fatal(err)
	}
	if resps[0].Err != nil {
		t.Fatal(resps[0].Err)
	}
	maxDiff = math.Max(maxDiff, checkRows(t, resps[0].Outputs[0], vf.Vectors))
	t.Logf("%d vectors: max abs diff vs sklearn predict_proba %.3g", len(vf.Vectors), maxDiff)
}

// TestDigitsBatchSplit sends requests of different row counts in one batch and
// compares each answer with the answer to the same request alone.
func TestDigitsBatchSplit(t *testing.T) {
	vf := loadVectors(t)
	m := loadDigits(t, 1)
	ctx := context.Background()
	var batch []*model.Request
	var parts [][]vector
	from := 0
	for _, n := range []int{1, 3, 5, 2, 7} {
		parts = append(parts, vf.Vectors[from:from+n])
		batch = append(batch, digitsRequest(fmt.Sprint("r", n), vf.Vectors[from:from+n]))
		from += n
	}
	if groups := m.plan(batch, []int{0, 1, 2, 3, 4}); len(groups) != 1 {
		t.Fatalf("plan %v: want the 5 requests in one group", groups)
	}
	resps, err := m.Predict(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if err := model.CheckResponses(batch, resps); err != nil {
		t.Fatal(err)
	}
	for k, r := range batch {
		if resps[k].Err != nil {
			t.Fatalf("request %d: %v", k, resps[k].Err)
		}
		checkRows(t, resps[k].Outputs[0], parts[k])
		alone, err := m.Predict(ctx, []*model.Request{r})
		if err != nil {
			t.Fatal(err)
		}
		a, b := alone[0].Outputs[0].Data.([]float32), resps[k].Outputs[0].Data.([]float32)
		if len(a) != len(b) {
			t.Fatalf("request %d: %d elements batched, %d alone", k, len(b), len(a))
		}
		for i := range a {
			if math.Abs(float64(a[i]-b[i])) > 1e-6 {
				t.Fatalf("request %d element %d: %g batched, %g alone", k, i, b[i], a[i])
			}
		}
	}
}

// TestDigitsBadItem: an invalid request fails alone; the rest of the batch is
// answered.
func TestDigitsBadItem(t *testing.T) {
	vf := loadVectors(t)
	m := loadDigits(t, 1)
	bad := &model.Request{ID: "bad", Inputs: []model.Tensor{{
		Name: "input", Datatype: model.FP64, Shape: []int64{1, 64}, Data: make([]float64, 64),
	}}}
	short := &model.Request{ID: "short", Inputs: []model.Tensor{{
		Name: "input", Datatype: model.FP32, Shape: []int64{1, 63}, Data: make([]float32, 63),
	}}}
	batch := []*model.Request{digitsRequest("a", vf.Vectors[:2]), bad, nil, short, digitsRequest("b", vf.Vectors[2:3])}
	resps, err := m.Predict(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	if err := model.CheckResponses(batch, resps); err != nil {
		t.Fatal(err)
	}
	for _, k := range []int{1, 2, 3} {
		if !isBadInput(resps[k].Err) {
			t.Errorf("item %d: err %v, want a bad-input error", k, resps[k].Err)
		}
	}
	checkRows(t, resps[0].Outputs[0], vf.Vectors[:2])
	checkRows(t, resps[4].Outputs[0], vf.Vectors[2:3])
}

// TestDigitsConcurrent runs Predict from 8 goroutines on 3 instances (run it with
// -race) and checks every answer.
func TestDigitsConcurrent(t *testing.T) {
	vf := loadVectors(t)
	m := loadDigits(t, 3)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				from := (g*7 + i) % (len(vf.Vectors) - 4)
				n := 1 + (g+i)%4
				vs := vf.Vectors[from : from+n]
				resps, err := m.Predict(context.Background(), []*model.Request{digitsRequest("x", vs), digitsRequest("y", vs[:1])})
				if err != nil {
					errs <- err
					return
				}
				for k, want := range [][]vector{vs, vs[:1]} {
					if resps[k].Err != nil {
						errs <- resps[k].Err
						return
					}
					got := resps[k].Outputs[0].Data.([]float32)
					for r, v := range want {
						for c := range 10 {
							if d := math.Abs(float64(got[r*10+c]) - v.Probabilities[c]); !(d <= tolerance) {
								errs <- fmt.Errorf("goroutine %d: vector %d class %d off by %g", g, v.Index, c, d)
								return
							}
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkDigits measures Predict on the digits model: one image, 32 requests
// of one image each (joined into one run), and one request of 32 images.
func BenchmarkDigits(b *testing.B) {
	vf := loadVectors(b)
	m := loadDigits(b, 1)
	ctx := context.Background()
	cases := []struct {
		name  string
		batch []*model.Request
	}{
		{"batch=1", []*model.Request{digitsRequest("1", vf.Vectors[:1])}},
		{"batch=32", nil},
		{"rows=32", []*model.Request{digitsRequest("32", vf.Vectors[:32])}},
	}
	for i := range 32 {
		cases[1].batch = append(cases[1].batch, digitsRequest(fmt.Sprint(i), vf.Vectors[i:i+1]))
	}
	for _, c := range cases {
		items := 0
		for _, r := range c.batch {
			items += int(r.Inputs[0].Shape[0])
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resps, err := m.Predict(ctx, c.batch)
				if err != nil || resps[0].Err != nil {
					b.Fatal(err, resps[0].Err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*items), "ns/item")
		})
	}
}
