package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/queue"
)

// Bring your own model, end to end through the real binaries: a model repository
// with the built-in seed model, the shipped digits ONNX model, and models that live
// in a real Python model server (the lab's Service B protocol and the v2 protocol),
// called through the Open Inference Protocol.

// pythonServer starts the httpmodel package's FastAPI test server on a free
// loopback port and returns its base URL. It fails the test when Python cannot run
// it (install python3-fastapi python3-uvicorn).
func pythonServer(t *testing.T) string {
	t.Helper()
	return pythonServerOn(t, freeAddr(t))
}

// pythonServerOn is pythonServer on a given loopback address.
func pythonServerOn(t *testing.T, addr string) string {
	t.Helper()
	const python = "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import fastapi, uvicorn").CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import fastapi and uvicorn (apt-get install python3-fastapi python3-uvicorn): %v\n%s", python, err, out)
	}
	script, err := filepath.Abs("../../pkg/model/httpmodel/testdata/server.py")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(addr, ":")
	out := &syncBuffer{}
	cmd := exec.Command(python, script, "--port", port)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("--- python model server ---\n%s", out.String())
		}
	})
	waitHTTP(t, "http://"+addr+"/health", 20*time.Second)
	return "http://" + addr
}

// repository writes a model repository under a temp dir: files maps paths inside
// it to contents; copies maps paths inside it to files of the repository's own
// models/ directory.
func repository(t *testing.T, files map[string]string, copies map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, body := range files {
		write(t, filepath.Join(dir, p), []byte(body))
	}
	for p, src := range copies {
		b, err := os.ReadFile(filepath.Join(modelRepository(t), src))
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, p), b)
	}
	return dir
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// digitsVector is one committed test vector of the digits model.
type digitsVector struct {
	Input         []float64 `json:"input"`
	Label         int       `json:"label"`
	Probabilities []float64 `json:"probabilities"`
}

func digitsVectors(t *testing.T) []digitsVector {
	t.Helper()
	f, err := os.Open(filepath.Join(modelRepository(t), "digits/testdata/vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var doc struct {
		Vectors []digitsVector `json:"vectors"`
	}
	if err := json.NewDecoder(bufio.NewReader(f)).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Vectors) == 0 {
		t.Fatal("no digits vectors")
	}
	return doc.Vectors
}

// waitModel waits until the API lists model/version as ready.
func (f *farm) waitModel(model, version string, ready bool) {
	f.t.Helper()
	deadline := time.Now().Add(45 * time.Second) // a model retried at load waits up to 30 s between tries
	path := "/v2/models/" + model + "/versions/" + version + "/ready"
	for {
		r := doChecked(f.t, nil, "GET", f.api.url(path), "")
		if (r.Status == 200) == ready && r.Status != 404 {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s ready=%v never seen: %d %s", path, ready, r.Status, r.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestModelsThroughTheFarm(t *testing.T) {
	integration(t)
	py := pythonServer(t)
	repo := repository(t, map[string]string{
		"seed/config.yaml":   "backend: seed\n",
		"lab/config.yaml":    "backend: http\nprotocol: seed\nurl: " + py + "/predict\n",
		"remote/config.yaml": "backend: http\nprotocol: v2\nurl: " + py + "\nmodel: double\n",
		"picky/config.yaml":  "backend: http\nprotocol: v2\nurl: " + py + "\n",
		"flaky/config.yaml":  "backend: http\nprotocol: v2\nurl: " + py + "\nmodel: unlucky\n",
		"slow/config.yaml":   "backend: http\nprotocol: v2\nurl: " + py + "\n",
	}, map[string]string{
		"digits/config.yaml":  "digits/config.yaml",
		"digits/1/model.onnx": "digits/1/model.onnx",
	})
	// Two pools: one for the in-process models, one for the models behind HTTP.
	f := newFarm(t, 0, nil, nil)
	f.addWorker("MODEL_REPOSITORY="+repo, "MODELS=seed,digits", "WORKER_ID=local")
	remote := f.addWorker("MODEL_REPOSITORY="+repo, "MODELS=lab,remote,picky,flaky,slow", "WORKER_ID=remote")
	for _, m := range []string{"seed", "digits", "lab", "remote", "picky", "flaky", "slow"} {
		f.waitModel(m, "1", true)
	}

	// Every model is listed with its live workers.
	r := f.do("GET", "/v2/models", "")
	var list struct {
		Models []struct {
			Name     string `json:"name"`
			Versions []struct {
				Version     string   `json:"version"`
				Platform    string   `json:"platform"`
				Ready       bool     `json:"ready"`
				Workers     int      `json:"workers"`
				AnnouncedBy []string `json:"announced_by"`
			} `json:"versions"`
		} `json:"models"`
	}
	if err := json.Unmarshal(r.Body, &list); err != nil || len(list.Models) != 7 {
		t.Fatalf("models: %v %s", err, r.Body)
	}
	for _, m := range list.Models {
		v := m.Versions[0]
		if !v.Ready || v.Workers != 1 || len(v.AnnouncedBy) != 1 {
			t.Errorf("%s: %+v", m.Name, v)
		}
	}

	// The shipped digits model answers what its training script computed.
	for i, vec := range digitsVectors(t)[:8] {
		row, _ := json.Marshal(vec.Input)
		r := f.do("POST", "/v2/models/digits/infer", fmt.Sprintf(`{"id":"v%d","inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":%s}]}`, i, row))
		var resp struct {
			ID           string `json:"id"`
			ModelVersion string `json:"model_version"`
			Outputs      []struct {
				Name  string    `json:"name"`
				Shape []int     `json:"shape"`
				Data  []float64 `json:"data"`
			} `json:"outputs"`
		}
		if err := json.Unmarshal(r.Body, &resp); err != nil || r.Status != 200 || len(resp.Outputs) != 1 {
			t.Fatalf("digits %d: %d %s", i, r.Status, r.Body)
		}
		if resp.ID != fmt.Sprintf("v%d", i) || resp.ModelVersion != "1" || resp.Outputs[0].Name != "probabilities" {
			t.Fatalf("digits %d: %s", i, r.Body)
		}
		best := 0
		for j, p := range resp.Outputs[0].Data {
			if math.Abs(p-vec.Probabilities[j]) > 1e-5 {
				t.Errorf("digits %d: probability %d = %v, the training script said %v", i, j, p, vec.Probabilities[j])
			}
			if p > resp.Outputs[0].Data[best] {
				best = j
			}
		}
		if best != vec.Label {
			t.Errorf("digits %d: argmax %d, label %d", i, best, vec.Label)
		}
	}
	// Several rows in one request, and a bad tensor named before anything is
	// published.
	r = f.do("POST", "/v2/models/digits/infer", `{"inputs":[{"name":"input","shape":[1,63],"datatype":"FP32","data":[`+strings.Repeat("0,", 62)+`0]}]}`)
	if m := r.json(t); r.Status != 400 || !strings.Contains(m["error"].(string), `input "input": shape [1 63]: dimension 1 must be 64`) {
		t.Errorf("bad digits tensor: %d %s", r.Status, r.Body)
	}

	// The lab's Service B behind warren: a seed-shaped model answering like the
	// built-in one, through v2 and, as DEFAULT_MODEL would, through its outputs.
	r = f.do("POST", "/v2/models/lab/infer", `{"inputs":[{"name":"data","shape":[2],"datatype":"BYTES","data":["cat image data","héllo"]}]}`)
	if r.Status != 200 || !strings.Contains(string(r.Body), `"name":"input_length","datatype":"INT64","shape":[2],"data":[14,5]`) {
		t.Errorf("lab model: %d %s", r.Status, r.Body)
	}
	// A v2 model server behind warren.
	r = f.do("POST", "/v2/models/remote/infer", `{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[[1.5,-2]]}]}`)
	if r.Status != 200 || !strings.Contains(string(r.Body), `"data":[3,-4]`) || r.json(t)["model_name"] != "remote" {
		t.Errorf("remote model: %d %s", r.Status, r.Body)
	}
	// The remote server's errors: its 400 is the caller's 400, its 500 a 502, and a
	// deadline shorter than its latency a 504 at the deadline, never a hang.
	r = f.do("POST", "/v2/models/picky/infer", `{"inputs":[{"name":"x","shape":[1],"datatype":"INT64","data":[-1]}]}`)
	if m := r.json(t); r.Status != 400 || m["reason"] != "bad_input" {
		t.Errorf("remote 400: %d %s", r.Status, r.Body)
	}
	r = f.do("POST", "/v2/models/flaky/infer", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[13]}]}`)
	if m := r.json(t); r.Status != 502 || m["reason"] != "model_error" {
		t.Errorf("remote 500: %d %s", r.Status, r.Body)
	}
	begin := time.Now()
	r = f.do("POST", "/v2/models/slow/infer", `{"parameters":{"sleep_ms":3000},"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`,
		"X-Request-Timeout", "500ms")
	if el := time.Since(begin); r.Status != 504 || el < 400*time.Millisecond || el > 2*time.Second {
		t.Errorf("slow remote, 500ms deadline: %d after %s: %s", r.Status, el, r.Body)
	}

	// 404 for what nobody serves, 503 for a known model without workers.
	if r := f.do("POST", "/v2/models/nothing/infer", `{"inputs":[]}`); r.Status != 404 || r.json(t)["reason"] != "not_found" {
		t.Errorf("unknown model: %d %s", r.Status, r.Body)
	}
	if r := f.do("GET", "/v2/models/digits/versions/7", ""); r.Status != 404 {
		t.Errorf("unknown version: %d %s", r.Status, r.Body)
	}
	remote.signal(syscall.SIGTERM)
	remote.wait(30 * time.Second)
	f.waitModel("lab", "1", false)
	r = f.do("POST", "/v2/models/lab/infer", `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["x"]}]}`)
	if m := r.json(t); r.Status != 503 || m["reason"] != "no_workers" || r.Header.Get("Retry-After") == "" {
		t.Errorf("known model, no workers: %d %s", r.Status, r.Body)
	}
	// The other pool still serves.
	if r := f.do("POST", "/process", `{"data":"still here"}`); r.Status != 200 {
		t.Errorf("/process with one pool gone: %d %s", r.Status, r.Body)
	}
}

// TestHTTPBackendAgainstWarren: warren's own v2 API is a model server like any
// other: a farm whose model is another farm's model.
func TestHTTPBackendAgainstWarren(t *testing.T) {
	integration(t)
	inner := newFarm(t, 1, nil, nil)
	repo := repository(t, map[string]string{
		"seed/config.yaml":  "backend: seed\n",
		"proxy/config.yaml": "backend: http\nprotocol: v2\nurl: " + inner.api.url("") + "\nmodel: seed\nversion: 1\n",
	}, nil)
	outer := newFarm(t, 0, nil, nil)
	outer.addWorker("MODEL_REPOSITORY="+repo, "MODELS=proxy,seed")
	outer.waitModel("proxy", "1", true)

	body := `{"id":"p-1","inputs":[{"name":"data","shape":[3],"datatype":"BYTES","data":["a","bb","cat image data"]}],"outputs":[{"name":"class"},{"name":"input_length"}]}`
	direct := inner.do("POST", "/v2/models/seed/infer", body)
	proxied := outer.do("POST", "/v2/models/proxy/infer", body)
	if direct.Status != 200 || proxied.Status != 200 {
		t.Fatalf("direct %d %s; proxied %d %s", direct.Status, direct.Body, proxied.Status, proxied.Body)
	}
	d, p := direct.json(t), proxied.json(t)
	if p["model_name"] != "proxy" || p["id"] != "p-1" || fmt.Sprint(d["outputs"]) != fmt.Sprint(p["outputs"]) {
		t.Fatalf("the proxied answer differs:\n direct %s\nproxied %s", direct.Body, proxied.Body)
	}
	// The inner farm's errors cross it as the contract says: its 400 is a 400.
	r := outer.do("POST", "/v2/models/proxy/infer", `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["x"]}],"outputs":[{"name":"nope"}]}`)
	if r.Status != 400 {
		t.Errorf("bad output name through the proxy: %d %s", r.Status, r.Body)
	}
}

// TestOneModelsBacklogDoesNotDelayAnother: each model version has its own queue and
// handler slots, so a model buried in work does not slow another model's calls
// down, even on the same worker.
func TestOneModelsBacklogDoesNotDelayAnother(t *testing.T) {
	integration(t)
	repo := repository(t, map[string]string{
		"seed/config.yaml":     "backend: seed\n",
		"slowpoke/config.yaml": "backend: seed\nlatency: 2s\nconcurrency: 1\n",
	}, nil)
	f := newFarm(t, 0, nil, nil)
	f.addWorker("MODEL_REPOSITORY="+repo, "MODELS=seed,slowpoke")
	f.waitModel("slowpoke", "1", true)
	f.waitWorkers(1)

	var wg sync.WaitGroup
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req, _ := http.NewRequest("POST", f.api.url("/v2/models/slowpoke/infer"),
				strings.NewReader(fmt.Sprintf(`{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["%d"]}]}`, i)))
			req.Header.Set("X-Request-Timeout", "60s")
			if resp, err := client.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}(i)
	}
	slow := queue.Route{Model: "slowpoke", Version: "1"}.RequestQueue()
	f.vh.WaitQueue(t, slow, func(q testbroker.QueueInfo) bool { return q.Ready >= 20 }, 15*time.Second)
	var worst time.Duration
	for i := 0; i < 20; i++ {
		begin := time.Now()
		r := f.do("POST", "/process", fmt.Sprintf(`{"data":"quick %d"}`, i))
		if r.Status != 200 {
			t.Fatalf("/process behind another model's backlog: %d %s", r.Status, r.Body)
		}
		worst = max(worst, time.Since(begin))
	}
	if worst > time.Second {
		t.Errorf("the slowest /process took %s while another model had a backlog", worst)
	}
	t.Logf("slowest of 20 /process calls with %s backed up: %s", slow, worst.Round(time.Millisecond))
	f.vh.DeleteQueue(t, slow) // the backed-up calls end (503s), the test need not wait for them
	wg.Wait()
}

// TestAModelThatCannotLoadDoesNotBlockTheOthers: a worker serves each model as soon
// as it is warm; a model whose server is down is retried while the others answer,
// and the worker reports ready only once every model is.
func TestAModelThatCannotLoadDoesNotBlockTheOthers(t *testing.T) {
	integration(t)
	addr := freeAddr(t) // nothing listens there yet
	repo := repository(t, map[string]string{
		"seed/config.yaml": "backend: seed\n",
		"lab/config.yaml":  "backend: http\nprotocol: seed\nurl: http://" + addr + "/predict\n",
	}, nil)
	f := newFarm(t, 0, nil, nil)
	w := f.addWorker("MODEL_REPOSITORY="+repo, "MODELS=seed,lab")
	f.waitWorkers(1)
	if r := f.do("POST", "/process", `{"data":"served while lab is down"}`); r.Status != 200 {
		t.Fatalf("/process while another model cannot load: %d %s", r.Status, r.Body)
	}
	r := doChecked(t, nil, "GET", w.url("/ready"), "")
	if r.Status != 503 || !strings.Contains(string(r.Body), `"name":"lab","version":"1","status":"loading"`) {
		t.Fatalf("worker /ready while lab cannot load: %d %s", r.Status, r.Body)
	}
	if r := f.do("POST", "/v2/models/lab/infer", `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["x"]}]}`); r.Status == 200 {
		t.Fatalf("lab answered before its server was up: %s", r.Body)
	}

	pythonServerOn(t, addr)
	f.waitModel("lab", "1", true)
	if r := f.do("POST", "/v2/models/lab/infer", `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["x"]}]}`); r.Status != 200 {
		t.Fatalf("lab once its server is up: %d %s", r.Status, r.Body)
	}
	waitHTTP(t, w.url("/ready"), 30*time.Second)
}
