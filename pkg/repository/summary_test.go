package repository

import "testing"

func TestSummary(t *testing.T) {
	writeRepo(t, map[string]string{
		"models/digits/config.yaml":  "backend: onnx\nconcurrency: 2\nmax_batch_size: 32\nversion_policy: {latest: 2}\n",
		"models/digits/1/model.onnx": "x",
		"models/digits/2/model.onnx": "x",
		"models/lab/config.yaml":     "backend: http\nprotocol: seed\nurl: http://user:secret@svc-b:8001/predict\njob_concurrency: 0\n",
		"models/tri/config.yaml":     "backend: http\nprotocol: v2\nurl: http://triton:8000\nmodel: densenet\nversion: 3\n",
		"models/seed/config.yaml":    "backend: seed\nlatency: 50ms\n",
		"models/py/config.yaml":      "backend: exec\ncommand: [python3, serve.py]\ninstances: 2\nload_timeout: 2m\n",
	})
	ms, err := Scan("models", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "5 models, 6 versions: digits v1,v2 (onnx model.onnx, concurrency 2, max_batch_size 32, version_policy latest 2); " +
		"lab v1 (http seed http://user:xxxxx@svc-b:8001/predict, job_concurrency 0); " +
		"py v1 (exec python3 serve.py, instances 2, load_timeout 2m0s); " +
		"seed v1 (seed latency 50ms); " +
		"tri v1 (http v2 http://triton:8000 model densenet version 3)"
	if got := Summary(ms); got != want {
		t.Errorf("Summary:\n got %s\nwant %s", got, want)
	}
	if got := Summary(ms[2:3]); got != "1 model, 1 version: lab v1 (http seed http://user:xxxxx@svc-b:8001/predict, job_concurrency 0)" {
		t.Errorf("Summary of one: %s", got)
	}
}
