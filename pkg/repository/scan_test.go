package repository

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/model"
)

func TestDefaults(t *testing.T) {
	jobs0, jobs8 := 0, 8
	tests := []struct {
		name  string
		files map[string]string
		want  []Model
	}{
		{"seed, nothing but the backend", map[string]string{"models/s/config.yaml": "backend: seed\n"}, []Model{{
			Name: "s", Version: "1", Dir: "models/s", ConfigPath: "models/s/config.yaml",
			Config: Config{Backend: "seed", Concurrency: 0, VersionPolicy: VersionPolicy{Latest: 1}},
		}}},
		{"seed, every key", map[string]string{"models/s/config.yaml": "backend: seed\nseed: 42\nlatency: 50ms\nconcurrency: 2\n" +
			"job_concurrency: 8\nmax_batch_size: 16\nversion_policy: {latest: 1}\n"}, []Model{{
			Name: "s", Version: "1", Dir: "models/s", ConfigPath: "models/s/config.yaml",
			Config: Config{Backend: "seed", Concurrency: 2, JobConcurrency: &jobs8, MaxBatchSize: 16, VersionPolicy: VersionPolicy{Latest: 1},
				SeedOptions: SeedOptions{Seed: 42, Latency: Duration{50 * time.Millisecond}}},
		}}},
		{"job_concurrency 0 is not absent", map[string]string{"models/s/config.yaml": "backend: seed\njob_concurrency: 0\nconcurrency: 0\nlatency: 0\n"}, []Model{{
			Name: "s", Version: "1", Dir: "models/s", ConfigPath: "models/s/config.yaml",
			Config: Config{Backend: "seed", Concurrency: 0, JobConcurrency: &jobs0, VersionPolicy: VersionPolicy{Latest: 1}},
		}}},
		{"null values are absent", map[string]string{"models/s/config.yaml": "backend: seed\njob_concurrency:\nversion_policy:\nlatency:\n"}, []Model{{
			Name: "s", Version: "1", Dir: "models/s", ConfigPath: "models/s/config.yaml",
			Config: Config{Backend: "seed", Concurrency: 0, VersionPolicy: VersionPolicy{Latest: 1}},
		}}},
		{"onnx", map[string]string{"models/digits/config.yaml": "backend: onnx\n", "models/digits/1/model.onnx": "x"}, []Model{{
			Name: "digits", Version: "1", Dir: "models/digits/1", ConfigPath: "models/digits/config.yaml",
			Config: Config{Backend: "onnx", Concurrency: 0, VersionPolicy: VersionPolicy{Latest: 1}, ONNXOptions: ONNXOptions{File: "model.onnx"}},
		}}},
		{"http v2: the remote model is the model's name", map[string]string{"models/lab/config.yaml": "backend: http\nprotocol: v2\nurl: http://triton:8000\n"}, []Model{{
			Name: "lab", Version: "1", Dir: "models/lab", ConfigPath: "models/lab/config.yaml",
			Config: Config{Backend: "http", Concurrency: 0, VersionPolicy: VersionPolicy{Latest: 1},
				HTTPOptions: HTTPOptions{URL: "http://triton:8000", Protocol: "v2", RemoteModel: "lab"}},
		}}},
		{"http v2, every key", map[string]string{"models/lab/config.yaml": "backend: http\nprotocol: v2\nurl: https://triton:8000/prefix\n" +
			"model: densenet\nversion: 3\ntimeout: 2s\nmax_conns: 32\nmax_response_bytes: 1024\n" +
			"inputs: [{name: x, datatype: FP32, shape: [-1, 4]}]\noutputs:\n  - name: probs\n    datatype: FP32\n    shape: [-1, 3]\n"}, []Model{{
			Name: "lab", Version: "1", Dir: "models/lab", ConfigPath: "models/lab/config.yaml",
			Config: Config{Backend: "http", Concurrency: 0, VersionPolicy: VersionPolicy{Latest: 1},
				HTTPOptions: HTTPOptions{URL: "https://triton:8000/prefix", Protocol: "v2", RemoteModel: "densenet", RemoteVersion: "3",
					Timeout: Duration{2 * time.Second}, MaxConns: 32, MaxResponseBytes: 1024,
					Inputs:  []model.TensorSpec{{Name: "x", Datatype: model.FP32, Shape: []int64{-1, 4}}},
					Outputs: []model.TensorSpec{{Name: "probs", Datatype: model.FP32, Shape: []int64{-1, 3}}}}},
		}}},
		{"http seed", map[string]string{"models/lab/config.yaml": "backend: http\nurl: http://svc-b:8001/predict\nprotocol: seed\n"}, []Model{{
			Name: "lab", Version: "1", Dir: "models/lab", ConfigPath: "models/lab/config.yaml",
			Config: Config{Backend: "http", Concurrency: 0, VersionPolicy: VersionPolicy{Latest: 1},
				HTTPOptions: HTTPOptions{URL: "http://svc-b:8001/predict", Protocol: "seed"}},
		}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			writeRepo(t, tc.files)
			got, err := Scan("models", nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestVersionPolicies(t *testing.T) {
	onnx := func(policy string) map[string]string {
		return map[string]string{
			"models/m/config.yaml":      "backend: onnx\n" + policy,
			"models/m/1/model.onnx":     "x",
			"models/m/2/model.onnx":     "x",
			"models/m/3/model.onnx":     "x",
			"models/m/10/model.onnx":    "x", // 10 is after 3
			"models/m/testdata/x.json":  "{}",
			"models/m/v4/model.onnx":    "x", // not numeric: ignored
			"models/m/1.5/model.onnx":   "x",
			"models/m/7":                "a file, not a directory",
			"models/m/README.md":        "",
			"models/m/.hidden/x":        "",
			"models/m/testdata/1/x.txt": "",
		}
	}
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"default: latest 1", onnx(""), []string{"m/10"}},
		{"latest 2", onnx("version_policy: {latest: 2}\n"), []string{"m/3", "m/10"}},
		{"latest more than there are", onnx("version_policy: {latest: 9}\n"), []string{"m/1", "m/2", "m/3", "m/10"}},
		{"specific", onnx("version_policy: {specific: [3, 1]}\n"), []string{"m/1", "m/3"}},
		{"all", onnx("version_policy:\n  all: true\n"), []string{"m/1", "m/2", "m/3", "m/10"}},
		{"seed without versions", map[string]string{"models/m/config.yaml": "backend: seed\nversion_policy: {latest: 3}\n"}, []string{"m/1"}},
		{"seed without versions, specific 1", map[string]string{"models/m/config.yaml": "backend: seed\nversion_policy: {specific: [1]}\n"}, []string{"m/1"}},
		{"seed with versions", map[string]string{"models/m/config.yaml": "backend: seed\nversion_policy: {all: true}\n", "models/m/2/": "", "models/m/5/": ""}, []string{"m/2", "m/5"}},
		{"only served versions need the file", map[string]string{"models/m/config.yaml": "backend: onnx\n", "models/m/1/": "", "models/m/2/model.onnx": "x"}, []string{"m/2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			writeRepo(t, tc.files)
			ms, err := Scan("models", nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := versions(ms); !slices.Equal(got, tc.want) {
				t.Fatalf("served %v, want %v", got, tc.want)
			}
			for _, m := range ms {
				dir := filepath.Join("models", m.Name, m.Version)
				if _, err := os.Stat(dir); err != nil {
					dir = filepath.Join("models", m.Name) // no version directory
				}
				if m.Dir != dir {
					t.Errorf("%s: Dir %q, want %q", m, m.Dir, dir)
				}
				if err := m.Route().Check(); err != nil {
					t.Errorf("%s: %v", m, err)
				}
				if m.Config.Backend == BackendONNX && m.ModelFile() != filepath.Join(dir, "model.onnx") {
					t.Errorf("%s: ModelFile %q", m, m.ModelFile())
				}
			}
		})
	}
}

func TestLayoutErrors(t *testing.T) {
	seed := "backend: seed\n"
	tests := []struct {
		name  string
		files map[string]string
		names []string
		want  []string
	}{
		{"no models", map[string]string{"models/README.md": "", "models/empty/": ""}, nil,
			[]string{`models: no models: want one subdirectory per model, each holding a config.yaml (e.g. models/seed/config.yaml with "backend: seed")`}},
		{"unknown names", map[string]string{"models/a/config.yaml": seed, "models/b/config.yaml": seed, "models/c/": ""}, []string{"b", "zz", "c"}, []string{
			`models: model "zz" is not in the repository (it has a, b)`,
			`models: model "c" is not in the repository (it has a, b)`,
		}},
		{"unknown name, empty repository", map[string]string{"models/": ""}, []string{"a"}, []string{`models: model "a" is not in the repository (it has none)`}},
		{"bad model name", map[string]string{"models/my.model/config.yaml": seed}, nil,
			[]string{`models/my.model: "my.model" is not a valid model name: want 1-64 letters, digits, '_' or '-', starting with a letter or digit`}},
		{"bad version directories", map[string]string{"models/m/config.yaml": seed, "models/m/0/": "", "models/m/01/": "", "models/m/12345678901/": ""}, nil, []string{
			"models/m/0: not a valid version directory: want a positive integer without leading zeros (1, 2, …), at most 10 digits",
			"models/m/01: not a valid version directory: want a positive integer without leading zeros (1, 2, …), at most 10 digits",
			"models/m/12345678901: not a valid version directory: want a positive integer without leading zeros (1, 2, …), at most 10 digits",
		}},
		{"config problems and version problems together", map[string]string{"models/m/config.yaml": "backend: seed\nconcurrency: -1\n", "models/m/0/": ""}, nil, []string{
			"models/m/config.yaml: concurrency: must be between 1 and 4096 (absent or 0: the worker's CONCURRENCY), got -1",
			"models/m/0: not a valid version directory: want a positive integer without leading zeros (1, 2, …), at most 10 digits",
		}},
		{"config.yaml is a directory", map[string]string{"models/m/config.yaml/": ""}, nil, []string{"models/m/config.yaml: is a directory; want the model's config file"}},
		{"every model's problems", map[string]string{
			"models/a/config.yaml": "backend: seed\nmax_batch_size: -1\n",
			"models/b/config.yaml": "backend: onnx\n",
			"models/c/config.yaml": seed,
		}, nil, []string{
			"models/a/config.yaml: max_batch_size: must be between 0 and 1024, got -1",
			"models/b: no version directory: an onnx model needs at least one, e.g. models/b/1/model.onnx",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			writeRepo(t, tc.files)
			ms, err := Scan("models", tc.names)
			if err == nil {
				t.Fatalf("Scan accepted it: %v", versions(ms))
			}
			checkMessages(t, err, tc.want)
		})
	}
}

func TestMissingRepository(t *testing.T) {
	writeRepo(t, map[string]string{"file": "x"})
	_, err := Scan("models", nil)
	checkMessages(t, err, []string{"models: no such directory; want the model repository: a directory with one subdirectory per model, each holding a config.yaml (see docs/model-repository.md)"})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%v does not wrap fs.ErrNotExist", err)
	}
	_, err = Scan("file", nil)
	checkMessages(t, err, []string{"file: not a directory; want the model repository: a directory with one subdirectory per model, each holding a config.yaml (see docs/model-repository.md)"})
}

func TestNamesAndIgnored(t *testing.T) {
	writeRepo(t, map[string]string{
		"models/a/config.yaml":      "backend: seed\n",
		"models/b/config.yaml":      "backend: seed\n",
		"models/broken/config.yaml": "backend: nope\n",
		"models/notes/README.md":    "not a model",
		"models/scripts/":           "",
		"models/.git/config.yaml":   "backend: seed\n",
		"models/README.md":          "",
	})
	r, err := Read("models", []string{"b", "a", "b"})
	if err != nil {
		t.Fatal(err) // broken is not selected, so not read
	}
	if got := versions(r.Models); !slices.Equal(got, []string{"a/1", "b/1"}) {
		t.Errorf("models %v", got)
	}
	if want := []string{"models/notes", "models/scripts"}; !slices.Equal(r.Ignored, want) {
		t.Errorf("ignored %v, want %v", r.Ignored, want)
	}
	// Without names every model is read.
	_, err = Scan("models", nil)
	checkMessages(t, err, []string{`models/broken/config.yaml: backend: "nope" is not one of seed, onnx, http, exec`})
	// A symbolic link to a model directory is a model.
	if err := os.Symlink("a", "models/c"); err != nil {
		t.Fatal(err)
	}
	ms, err := Scan("models", []string{"c"})
	if err != nil || len(ms) != 1 || ms[0].Dir != "models/c" {
		t.Fatalf("symlinked model: %v, %v", ms, err)
	}
}
