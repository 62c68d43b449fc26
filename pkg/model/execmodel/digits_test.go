package execmodel_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/model/execmodel"
	"github.com/warren-farm/warren/pkg/model/onnxmodel"
	"github.com/warren-farm/warren/pkg/repository"
)

// TestPythonDigitsMatchesONNX serves examples/python-digits (scikit-learn in a
// child process, as its config.yaml says) and checks that its labels equal the
// onnx backend's argmax, and the committed vectors' expected classes, on every
// committed test vector. It needs Debian's python3-sklearn.
func TestPythonDigitsMatchesONNX(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: trains a scikit-learn model in a child process")
	}
	const python = "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import sklearn, numpy").CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import sklearn (apt-get install python3-sklearn): %v\n%s", python, err, out)
	}
	repo, err := repository.Read("../../../examples", []string{"python-digits"})
	if err != nil {
		t.Fatal(err)
	}
	m := repo.Models[0]
	cfg := repository.ExecConfig(m)
	if cfg.Command[0] != "python3" {
		t.Fatalf("config.yaml's command is %q", cfg.Command)
	}
	cfg.Command[0] = python // Debian's, with python3-sklearn
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ex, err := execmodel.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	ox, err := onnxmodel.Load(onnxmodel.Config{Path: "../../../models/digits/1/model.onnx"})
	if err != nil {
		t.Fatal(err)
	}

	data, err := os.ReadFile("../../../models/digits/testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vf struct {
		Vectors []struct {
			Predicted int64     `json:"predicted"`
			Input     []float32 `json:"input"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(data, &vf); err != nil {
		t.Fatal(err)
	}
	if len(vf.Vectors) < 10 {
		t.Fatalf("only %d vectors", len(vf.Vectors))
	}
	// One request per vector, all in one batch (the children take 32 a frame),
	// and the same vectors as one [N, 64] tensor to the onnx model.
	var batch []*model.Request
	var all []float32
	for i, v := range vf.Vectors {
		batch = append(batch, &model.Request{ID: string(rune('a' + i%26)), Inputs: []model.Tensor{{Name: "input", Datatype: model.FP32, Shape: []int64{1, 64}, Data: v.Input}}})
		all = append(all, v.Input...)
	}
	resps, err := ex.Predict(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	oresps, err := ox.Predict(ctx, []*model.Request{{ID: "onnx", Inputs: []model.Tensor{{Name: "input", Datatype: model.FP32, Shape: []int64{int64(len(vf.Vectors)), 64}, Data: all}}}})
	if err != nil || oresps[0].Err != nil {
		t.Fatal(err, oresps[0].Err)
	}
	oprob := oresps[0].Outputs[0].Data.([]float32)
	for i, v := range vf.Vectors {
		r := resps[i]
		if r.Err != nil {
			t.Fatalf("vector %d: %v", i, r.Err)
		}
		var label int64 = -1
		var prob []float32
		for _, o := range r.Outputs {
			switch o.Name {
			case "label":
				label = o.Data.([]int64)[0]
			case "probabilities":
				prob = o.Data.([]float32)
			}
		}
		want := argmax(oprob[i*10 : i*10+10])
		if label != want || label != v.Predicted || argmax(prob) != want {
			t.Errorf("vector %d: exec label %d (probabilities' argmax %d), onnx argmax %d, expected %d", i, label, argmax(prob), want, v.Predicted)
		}
	}
	t.Logf("%d vectors: the exec backend's labels equal the onnx backend's argmax", len(vf.Vectors))
}

func argmax(p []float32) int64 {
	best := 0
	for i := range p {
		if p[i] > p[best] {
			best = i
		}
	}
	return int64(best)
}
