package repository

import (
	"strings"
	"testing"
)

const cfg = "models/m/config.yaml"

// TestConfigErrors checks every config.yaml problem's exact message: the file,
// the key, what is wrong.
func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name   string
		config string
		files  map[string]string // more files, beside models/m/config.yaml
		want   []string
	}{
		// The file as a whole.
		{"empty file", "", nil, []string{cfg + ": the file is empty; a config.yaml needs at least a backend (backend: seed, onnx or http)"}},
		{"comments only", "# backend: seed\n", nil, []string{cfg + ": the file is empty; a config.yaml needs at least a backend (backend: seed, onnx or http)"}},
		{"not YAML", "backend: seed\n  url: [\n", nil, []string{cfg + ": not valid YAML: line 2: mapping values are not allowed in this context"}},
		{"duplicate key", "backend: seed\nbackend: http\n", nil, []string{cfg + `: not valid YAML: unmarshal errors:` + "\n" + `  line 2: key "backend" already set in map`}},
		{"a list", "- backend: seed\n", nil, []string{cfg + ": want a mapping of keys (such as backend: seed), got a list"}},
		{"a string", "seed\n", nil, []string{cfg + `: want a mapping of keys (such as backend: seed), got a string "seed"`}},

		// backend.
		{"no backend", "concurrency: 2\n", nil, []string{cfg + ": backend: required (one of seed, onnx, http)"}},
		{"null backend", "backend:\n", nil, []string{cfg + ": backend: required (one of seed, onnx, http)"}},
		{"unknown backend", "backend: tensorflow\n", nil, []string{cfg + `: backend: "tensorflow" is not one of seed, onnx, http`}},
		{"backend not a string", "backend: [seed]\n", nil, []string{cfg + ": backend: want a string, got a list"}},
		{"unknown backend hides backend keys", "backend: onx\nfile: m.onnx\nconcurrency: -1\n", nil, []string{
			cfg + `: backend: "onx" is not one of seed, onnx, http`,
			cfg + ": concurrency: must be between 1 and 4096 (absent or 0: the worker's CONCURRENCY), got -1",
		}},

		// Unknown keys and keys of another backend.
		{"typo", "backend: seed\nconcurency: 2\n", nil, []string{cfg + ": concurency: unknown key (did you mean concurrency?)"}},
		{"camel case", "backend: seed\nmaxBatchSize: 2\n", nil, []string{cfg + ": maxBatchSize: unknown key (did you mean max_batch_size?)"}},
		{"wrong case", "backend: seed\nBackend: seed\n", nil, []string{cfg + ": Backend: unknown key (did you mean backend?)"}},
		{"unknown key", "backend: seed\ncolour: red\n", nil, []string{cfg + ": colour: unknown key (the keys of backend seed: backend, max_batch_size, max_batch_delay, concurrency, job_concurrency, version_policy, seed, latency, item_latency)"}},
		{"url on seed", "backend: seed\nurl: http://svc-b:8001/predict\n", nil, []string{cfg + ": url: only for backend http (this model's backend is seed)"}},
		{"file on http", "backend: http\nprotocol: seed\nurl: http://b/predict\nfile: m.onnx\n", nil, []string{cfg + ": file: only for backend onnx (this model's backend is http)"}},
		{"latency on onnx", "backend: onnx\nlatency: 5ms\n", map[string]string{"models/m/1/model.onnx": "x"}, []string{cfg + ": latency: only for backend seed (this model's backend is onnx)"}},

		// Types.
		{"string for int", "backend: seed\nmax_batch_size: lots\n", nil, []string{cfg + `: max_batch_size: want an integer, got "lots"`}},
		{"float for int", "backend: seed\nconcurrency: 1.5\n", nil, []string{cfg + ": concurrency: want an integer, got 1.5"}},
		{"negative seed", "backend: seed\nseed: -1\n", nil, []string{cfg + ": seed: want a non-negative integer, got -1"}},
		{"mapping for int", "backend: seed\njob_concurrency: {a: 1}\n", nil, []string{cfg + ": job_concurrency: want an integer, got a mapping"}},
		{"bare latency", "backend: seed\nlatency: 50\n", nil, []string{cfg + `: latency: want a duration such as "50ms" or "2s", got 50`}},
		{"bad latency", "backend: seed\nlatency: fast\n", nil, []string{cfg + `: latency: want a duration such as "50ms" or "2s", got "fast"`}},
		{"several problems", "backend: seed\nmax_batch_size: -1\nconcurrency: x\nurl: y\nfoo: 1\n", nil, []string{
			cfg + ": max_batch_size: must be between 0 and 1024, got -1",
			cfg + `: concurrency: want an integer, got "x"`,
			cfg + ": url: only for backend http (this model's backend is seed)",
			cfg + ": foo: unknown key (the keys of backend seed: backend, max_batch_size, max_batch_delay, concurrency, job_concurrency, version_policy, seed, latency, item_latency)",
		}},

		// Limits of every backend.
		{"max_batch_size negative", "backend: seed\nmax_batch_size: -1\n", nil, []string{cfg + ": max_batch_size: must be between 0 and 1024, got -1"}},
		{"max_batch_size too big", "backend: seed\nmax_batch_size: 1025\n", nil, []string{cfg + ": max_batch_size: must be between 0 and 1024, got 1025"}},
		{"concurrency negative", "backend: seed\nconcurrency: -1\n", nil, []string{cfg + ": concurrency: must be between 1 and 4096 (absent or 0: the worker's CONCURRENCY), got -1"}},
		{"concurrency too big", "backend: seed\nconcurrency: 4097\n", nil, []string{cfg + ": concurrency: must be between 1 and 4096 (absent or 0: the worker's CONCURRENCY), got 4097"}},
		{"job_concurrency negative", "backend: seed\njob_concurrency: -1\n", nil, []string{cfg + ": job_concurrency: must be between 0 and 4096, got -1"}},
		{"job_concurrency too big", "backend: seed\njob_concurrency: 5000\n", nil, []string{cfg + ": job_concurrency: must be between 0 and 4096, got 5000"}},

		// version_policy.
		{"policy latest 0", "backend: seed\nversion_policy: {latest: 0}\n", nil, []string{cfg + ": version_policy.latest: must be at least 1, got 0"}},
		{"policy latest string", "backend: seed\nversion_policy: {latest: two}\n", nil, []string{cfg + `: version_policy.latest: want an integer, got "two"`}},
		{"policy empty", "backend: seed\nversion_policy: {}\n", nil, []string{cfg + ": version_policy: want one of latest, specific or all (e.g. {latest: 1})"}},
		{"policy scalar", "backend: seed\nversion_policy: latest\n", nil, []string{cfg + `: version_policy: want a mapping, got "latest"`}},
		{"policy two keys", "backend: seed\nversion_policy: {latest: 1, all: true}\n", nil, []string{cfg + ": version_policy: all, latest: give only one"}},
		{"policy unknown key", "backend: seed\nversion_policy: {newest: 1}\n", nil, []string{cfg + ": version_policy.newest: unknown key (the keys are all, latest, specific)"}},
		{"policy all false", "backend: seed\nversion_policy: {all: false}\n", nil, []string{cfg + ": version_policy.all: must be true (to serve some versions, use latest or specific)"}},
		{"policy specific empty", "backend: seed\nversion_policy: {specific: []}\n", nil, []string{cfg + ": version_policy.specific: want a list of versions, e.g. [1, 3]"}},
		{"policy specific zero", "backend: seed\nversion_policy: {specific: [0, 1, 1]}\n", nil, []string{
			cfg + ": version_policy.specific: 0 is not a version (want positive integers)",
			cfg + ": version_policy.specific: version 1 is listed twice",
		}},
		{"policy specific not a list", "backend: seed\nversion_policy: {specific: 1}\n", nil, []string{cfg + ": version_policy.specific: want a list of integers, got 1"}},
		{"policy specific missing", "backend: onnx\nversion_policy: {specific: [1, 3]}\n", map[string]string{"models/m/1/model.onnx": "x", "models/m/2/model.onnx": "x"},
			[]string{cfg + ": version_policy.specific: version 3 does not exist (versions: 1, 2)"}},
		{"policy specific missing, no version directory", "backend: seed\nversion_policy: {specific: [2]}\n", nil,
			[]string{cfg + ": version_policy.specific: version 2 does not exist (the model has no version directory, so it serves version 1 only)"}},

		// seed.
		{"negative latency", "backend: seed\nlatency: -5ms\n", nil, []string{cfg + ": latency: must not be negative, got -5ms"}},

		// onnx.
		{"onnx without versions", "backend: onnx\n", map[string]string{"models/m/testdata/x": "x"}, []string{"models/m: no version directory: an onnx model needs at least one, e.g. models/m/1/model.onnx"}},
		{"onnx file missing", "backend: onnx\n", map[string]string{"models/m/1/model.onnx": "x", "models/m/2/other.onnx": "x"},
			[]string{cfg + `: file: "model.onnx" is missing from version 2 (models/m/2/model.onnx)`}},
		{"onnx custom file missing", "backend: onnx\nfile: net.onnx\nversion_policy: {all: true}\n", map[string]string{"models/m/1/model.onnx": "x", "models/m/2/net.onnx": "x"},
			[]string{cfg + `: file: "net.onnx" is missing from version 1 (models/m/1/net.onnx)`}},
		{"onnx file is a directory", "backend: onnx\n", map[string]string{"models/m/1/model.onnx/": ""}, []string{cfg + ": file: models/m/1/model.onnx is a directory, not a model file"}},
		{"onnx file with a path", "backend: onnx\nfile: ../1/model.onnx\n", map[string]string{"models/m/1/model.onnx": "x"},
			[]string{cfg + `: file: "../1/model.onnx": want a file name inside the version directory, not a path`}},
		{"onnx file dot-dot", "backend: onnx\nfile: ..\n", map[string]string{"models/m/1/model.onnx": "x"},
			[]string{cfg + `: file: "..": want a file name inside the version directory, not a path`}},

		// http.
		{"http nothing", "backend: http\n", nil, []string{
			cfg + ": protocol: required (v2 or seed)",
			cfg + ": url: required (for protocol v2 the server's base URL, e.g. http://triton:8000; for seed the predict URL, e.g. http://svc-b:8001/predict)",
		}},
		{"http bad protocol", "backend: http\nprotocol: grpc\nurl: http://triton:8000\n", nil, []string{cfg + `: protocol: "grpc" is not one of v2, seed`}},
		{"http bad scheme", "backend: http\nprotocol: seed\nurl: ftp://svc-b/predict\n", nil, []string{cfg + `: url: "ftp://svc-b/predict": the scheme must be http or https`}},
		{"http no scheme", "backend: http\nprotocol: seed\nurl: svc-b:8001/predict\n", nil, []string{cfg + `: url: "svc-b:8001/predict": the scheme must be http or https`}},
		{"http no host", "backend: http\nprotocol: seed\nurl: http:///predict\n", nil, []string{cfg + `: url: "http:///predict" has no host`}},
		{"http unparsable", "backend: http\nprotocol: seed\nurl: 'http://[::1'\n", nil, []string{cfg + `: url: "http://[::1" is not a URL: missing ']' in host`}},
		{"http fragment", "backend: http\nprotocol: seed\nurl: http://b/predict#x\n", nil, []string{cfg + `: url: "http://b/predict#x": a URL with a #fragment cannot be called`}},
		{"http v2 query", "backend: http\nprotocol: v2\nurl: http://triton:8000/?x=1\n", nil, []string{cfg + `: url: "http://triton:8000/?x=1": a v2 base URL cannot have a query`}},
		{"http url not a string", "backend: http\nprotocol: v2\nurl: [a]\n", nil, []string{cfg + ": url: want a string, got a list"}},
		{"http seed with v2 keys", "backend: http\nprotocol: seed\nurl: http://b/predict\nmodel: m\nversion: 2\ninputs: []\noutputs: [{name: out, datatype: FP32, shape: [1]}]\n", nil, []string{
			cfg + ": model: only for protocol v2 (the seed protocol's url names the endpoint)",
			cfg + ": version: only for protocol v2 (the seed protocol's url names the endpoint)",
			cfg + ": inputs: only for protocol v2 (protocol seed has fixed tensors: data → class, confidence, input_length, message)",
			cfg + ": outputs: only for protocol v2 (protocol seed has fixed tensors: data → class, confidence, input_length, message)",
		}},
		{"http v2 inputs only", "backend: http\nprotocol: v2\nurl: http://t:8000\ninputs: [{name: x, datatype: FP32, shape: [-1, 4]}]\n", nil,
			[]string{cfg + ": outputs: missing: declare both inputs and outputs, or neither (neither: the server's metadata is used)"}},
		{"http v2 bad tensors", "backend: http\nprotocol: v2\nurl: http://t:8000\n" +
			"inputs: [{name: x, datatype: FP99, shape: [-2]}, {name: x, datatype: FP32}]\n" +
			"outputs: [{datatype: FP32, shape: [1]}]\n", nil, []string{
			cfg + `: inputs[0].datatype: "FP99" is not one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES`,
			cfg + ": inputs[0].shape: [-2]: a dimension is -1 (any size) or at least 0",
			cfg + `: inputs[1].name: "x" is listed twice`,
			cfg + ": inputs[1].shape: required (a list of dimensions, -1 for any size, e.g. [-1, 4])",
			cfg + ": outputs[0].name: required",
		}},
		{"http tensor keys", "backend: http\nprotocol: v2\nurl: http://t:8000\n" +
			"inputs: [{name: x, type: FP32, shape: [1]}]\noutputs: {name: y}\n", nil, []string{
			cfg + ": inputs[0].type: unknown key (the keys are datatype, name, shape)",
			cfg + ": outputs: want a list of tensors ({name, datatype, shape}), got a mapping",
		}},
		{"http tensor shape type", "backend: http\nprotocol: v2\nurl: http://t:8000\n" +
			"inputs: [{name: x, datatype: FP32, shape: [a]}]\noutputs: [{name: out, datatype: FP32, shape: 3}]\n", nil, []string{
			cfg + ": inputs[0].shape: want a list of integers, got a string in it",
			cfg + ": outputs[0].shape: want a list of integers, got 3",
		}},
		{"YAML booleans", "backend: http\nprotocol: v2\nurl: http://t:8000\n" +
			"inputs: [{name: x, datatype: FP32, shape: [1]}]\noutputs: [{name: y, datatype: FP32, shape: [1]}]\n", nil, []string{
			cfg + ": outputs[0].name: want a string, got true (YAML reads y, n, yes, no, on, off, true and false as booleans: quote the value)",
		}},
		{"http limits", "backend: http\nprotocol: seed\nurl: http://b/predict\ntimeout: -1s\nmax_conns: 1025\nmax_response_bytes: -1\n", nil, []string{
			cfg + ": timeout: must not be negative, got -1s",
			cfg + ": max_conns: must be between 1 and 1024 (absent or 0: 16), got 1025",
			cfg + ": max_response_bytes: must not be negative, got -1",
		}},
		{"http version not a string", "backend: http\nprotocol: v2\nurl: http://t:8000\nversion: [1]\n", nil, []string{cfg + ": version: want a string, got a list"}},
		{"an ill-typed key is not also required", "backend: http\nprotocol: seed\nurl: 3\n", nil, []string{cfg + ": url: want a string, got 3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{cfg: tc.config}
			for k, v := range tc.files {
				files[k] = v
			}
			writeRepo(t, files)
			ms, err := Scan("models", nil)
			if err == nil {
				t.Fatalf("Scan accepted it: %v", versions(ms))
			}
			checkMessages(t, err, tc.want)
			for _, p := range Problems(err) {
				if !strings.HasPrefix(p.Error(), "models/m") {
					t.Errorf("problem %q does not name the file", p)
				}
			}
		})
	}
}
