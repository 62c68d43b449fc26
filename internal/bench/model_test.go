package bench

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/model/onnxmodel"
	"github.com/warren-farm/warren/pkg/oip"
)

// The repository's model repository, from this package's directory.
var testModels = filepath.Join("..", "..", "models")

// v2Server is a fake of the API's POST /v2/models/{name}/infer in front of a real
// predictor: it decodes the request with pkg/oip, checks it against the model's
// metadata, predicts and encodes the answer as the worker does, so a request the
// farm would refuse fails here too. It records every request's id and first
// input tensor's data.
type v2Server struct {
	*httptest.Server
	mu   sync.Mutex
	ids  []string
	data []any
	// mangle, if set, rewrites a 200's body.
	mangle func([]byte) []byte
}

func newV2Server(t *testing.T, name string, pred model.Predictor) *v2Server {
	t.Helper()
	md := pred.Metadata()
	s := &v2Server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v2/models/"+name+"/infer" {
			http.NotFound(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		req, id, err := oip.DecodeRequest(body, oip.Limits{})
		if err == nil {
			err = md.Validate(req)
		}
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":`+jsonString(err.Error())+`}`)
			return
		}
		s.mu.Lock()
		s.ids = append(s.ids, id)
		s.data = append(s.data, req.Inputs[0].Data)
		s.mu.Unlock()
		resps, err := pred.Predict(r.Context(), []*model.Request{req})
		if err != nil || resps[0].Err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		out, err := oip.EncodeResponse(name, "1", id, resps[0].Outputs)
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		s.mu.Lock()
		mangle := s.mangle
		s.mu.Unlock()
		if mangle != nil {
			out = mangle(out)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	}))
	t.Cleanup(s.Close)
	return s
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func loadTestDigits(t *testing.T, instances int) (*onnxmodel.Model, []DigitsVector) {
	t.Helper()
	file, n, err := digitsModelInfo(testModels)
	if err != nil {
		t.Fatal(err)
	}
	if instances == 0 {
		instances = n
	}
	m, err := onnxmodel.Load(onnxmodel.Config{Path: file, Instances: instances})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	vs, err := LoadDigitsVectors(filepath.Join(testModels, digitsModel, digitsVectorsFile))
	if err != nil {
		t.Fatal(err)
	}
	return m, vs
}

func TestSeedInferCaller(t *testing.T) {
	s := newV2Server(t, seedModel, model.NewSeed(model.SeedConfig{}))
	tr := NewHTTPTransport(3)
	defer tr.CloseIdleConnections()
	res, err := RunClosedLoop(context.Background(), LoopConfig{Concurrency: 3, Duration: 300 * time.Millisecond},
		SeedInferCaller(tr, s.URL+seedInferPath))
	if err != nil {
		t.Fatal(err)
	}
	if res.OK() == 0 || res.FailureCount() != 0 {
		t.Fatalf("ok %d, failures %v", res.OK(), res.Failures)
	}
	s.mu.Lock()
	seen := map[string]bool{}
	for _, d := range s.data {
		strs, ok := d.([]string)
		if !ok || len(strs) != 1 || !strings.HasPrefix(strs[0], "bench-") {
			t.Fatalf("input data %#v, want one string bench-<caller>-<seq>", d)
		}
		if seen[strs[0]] {
			t.Fatalf("input %q sent twice, want distinct data", strs[0])
		}
		seen[strs[0]] = true
	}
	s.mu.Unlock()

	// /process's input and v2's are the same string for the same caller and seq.
	var body []byte
	proc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ = io.ReadAll(r.Body)
		_, _ = io.WriteString(w, `{"model_prediction":{}}`)
	}))
	defer proc.Close()
	if got := ProcessCaller(tr, proc.URL)(7)(context.Background()); got != "" {
		t.Fatal(got)
	}
	if !strings.Contains(string(body), `"bench-7-1"`) {
		t.Errorf("/process body %s, want data bench-7-1", body)
	}

	// A 200 without the seed model's outputs is no success.
	s.setMangle(func([]byte) []byte { return []byte(`{"model_name":"seed","outputs":[]}`) })
	if got := SeedInferCaller(tr, s.URL+seedInferPath)(0)(context.Background()); got != "200-without-outputs" {
		t.Errorf("label %q", got)
	}
}

func TestDigitsCaller(t *testing.T) {
	m, vs := loadTestDigits(t, 0)
	s := newV2Server(t, digitsModel, m)
	tr := NewHTTPTransport(4)
	defer tr.CloseIdleConnections()
	url := s.URL + "/v2/models/" + digitsModel + "/infer"
	res, err := RunClosedLoop(context.Background(), LoopConfig{Concurrency: 4, Duration: 300 * time.Millisecond},
		DigitsCaller(tr, url, vs))
	if err != nil {
		t.Fatal(err)
	}
	if res.OK() < len(vs) || res.FailureCount() != 0 {
		t.Fatalf("ok %d, failures %v", res.OK(), res.Failures)
	}
	s.mu.Lock()
	ids := map[string]bool{}
	for _, id := range s.ids {
		if ids[id] || !strings.HasPrefix(id, "bench-") {
			t.Fatalf("id %q repeated or malformed", id)
		}
		ids[id] = true
	}
	// Every vector was sent, as FP32 rows of 64.
	sent := map[float32]bool{}
	for _, d := range s.data {
		px, ok := d.([]float32)
		if !ok || len(px) != 64 {
			t.Fatalf("input %T of %d, want 64 FP32", d, len(px))
		}
		var sum float32
		for _, x := range px {
			sum += x * x
		}
		sent[sum] = true
	}
	s.mu.Unlock()
	distinct := map[float32]bool{}
	for _, v := range vs {
		var sum float32
		for _, x := range v.Input {
			sum += float32(x) * float32(x)
		}
		distinct[sum] = true
	}
	if len(sent) != len(distinct) {
		t.Errorf("%d distinct images sent, the file has %d", len(sent), len(distinct))
	}

	// An answer to another request is no success, nor one without probabilities.
	s.setMangle(func(b []byte) []byte { return []byte(strings.Replace(string(b), `"id":"bench-`, `"id":"other-`, 1)) })
	if got := DigitsCaller(tr, url, vs)(0)(context.Background()); got != "200-wrong-id" {
		t.Errorf("label %q, want 200-wrong-id", got)
	}
	s.setMangle(func(b []byte) []byte { return []byte(strings.Replace(string(b), "probabilities", "logits", 1)) })
	if got := DigitsCaller(tr, url, vs)(0)(context.Background()); got != "200-without-probabilities" {
		t.Errorf("label %q, want 200-without-probabilities", got)
	}
}

func TestCheckDigits(t *testing.T) {
	m, vs := loadTestDigits(t, 1)
	s := newV2Server(t, digitsModel, m)
	tr := NewHTTPTransport(1)
	defer tr.CloseIdleConnections()
	url := s.URL + "/v2/models/" + digitsModel + "/infer"
	ck := CheckDigits(context.Background(), tr, url, vs)
	if ck.Vectors != len(vs) || ck.Matched != len(vs) || len(ck.Failures) != 0 || ck.MaxDiff > 1e-5 {
		t.Fatalf("check %+v, want every vector matched within 1e-5", ck)
	}
	// An answer whose classes are rotated is caught.
	s.setMangle(func(b []byte) []byte {
		var r map[string]any
		_ = json.Unmarshal(b, &r)
		out := r["outputs"].([]any)[0].(map[string]any)
		d := out["data"].([]any)
		out["data"] = append(d[1:], d[0])
		b, _ = json.Marshal(r)
		return b
	})
	if ck := CheckDigits(context.Background(), tr, url, vs); ck.Matched == len(vs) || ck.MaxDiff < 0.1 {
		t.Errorf("rotated answers passed: %+v", ck)
	}
	s.setMangle(nil)
	if ck := CheckDigits(context.Background(), tr, s.URL+"/v2/models/nope/infer", vs[:2]); len(ck.Failures) != 2 || ck.Matched != 0 {
		t.Errorf("404s: %+v", ck)
	}
}

func TestLocalCaller(t *testing.T) {
	m, vs := loadTestDigits(t, 0)
	for _, path := range digitsLocalPaths {
		res, err := RunClosedLoop(context.Background(), LoopConfig{Concurrency: 2, Duration: 200 * time.Millisecond},
			localCaller(m, path, vs))
		if err != nil {
			t.Fatal(err)
		}
		if res.OK() < len(vs) || res.FailureCount() != 0 {
			t.Errorf("%s: ok %d, failures %v", path, res.OK(), res.Failures)
		}
	}
}

func TestDigitsModelInfo(t *testing.T) {
	file, n, err := digitsModelInfo(testModels)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(file) != "model.onnx" || n < 1 {
		t.Errorf("file %s, instances %d", file, n)
	}
	if got := digitsGoroutines(1); !slices.Equal(got, []int{1}) {
		t.Errorf("goroutines for 1 instance: %v", got)
	}
	if got := digitsGoroutines(2); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("goroutines for 2 instances: %v", got)
	}
	if _, _, err := digitsModelInfo(t.TempDir()); err == nil {
		t.Error("an empty repository must be an error")
	}
}

// summaryOf is a Summary of runs with the given rates (1 s windows, 1 ms each).
func summaryOf(rates ...int) *Summary {
	s := &Summary{}
	for _, n := range rates {
		r := &Result{Window: time.Second, Latencies: make([]time.Duration, n)}
		for i := range r.Latencies {
			r.Latencies[i] = time.Millisecond
		}
		s.Add(r)
	}
	return s
}

func TestV2TargetsAndReport(t *testing.T) {
	cfg := &Config{Phases: []string{PhaseV2}, Concurrency: []int{1, 16, 64}, Workers: 2, Runs: 3}
	rep := &Report{Cfg: cfg, Compare: []*CompareRow{
		// Paired ratios 1.00, 0.98, 1.02: median 1.00 although the medians differ.
		{Concurrency: 1, Variants: map[string]*Summary{VariantFarm: summaryOf(1000, 1000, 1000), VariantFarmV2: summaryOf(1000, 980, 1020)}},
		// 0.90, 0.93, 0.96: median 0.93.
		{Concurrency: 16, Variants: map[string]*Summary{VariantFarm: summaryOf(2000, 2000, 2000), VariantFarmV2: summaryOf(1800, 1860, 1920)}},
	}}
	got := map[string]Target{}
	for _, tg := range rep.Targets() {
		got[tg.Name] = tg
	}
	for name, want := range map[string]string{
		"v2 ≥ 0.95× /process req/s at concurrency 1":  "PASS",
		"v2 ≥ 0.95× /process req/s at concurrency 16": "MISS",
		"v2 ≥ 0.95× /process req/s at concurrency 64": NotMeasured,
	} {
		if got[name].Status != want {
			t.Errorf("%s: %+v, want %s", name, got[name], want)
		}
	}
	if d := got["v2 ≥ 0.95× /process req/s at concurrency 16"].Detail; !strings.Contains(d, "0.93×") || !strings.Contains(d, "3 all pairs") {
		t.Errorf("detail %q", d)
	}
	// The farm's /process runs of the v2 phase count for the farm's own targets.
	if tg := got["p99 at concurrency 16 under 15 ms"]; tg.Status != "PASS" {
		t.Errorf("p99 target %+v", tg)
	}
	if tg := got["farm ≥ 0.5× raw req/s at concurrency 64"]; !strings.Contains(tg.Detail, "raw phase") {
		t.Errorf("raw target %+v should blame the raw phase", tg)
	}
	var sb strings.Builder
	rep.PrintV2(&sb)
	for _, s := range []string{"/v2/models/seed/infer", "0.93×", "[0.90–0.96×]", "failures in the measured windows: none"} {
		if !strings.Contains(sb.String(), s) {
			t.Errorf("v2 report lacks %q:\n%s", s, sb.String())
		}
	}
	if (&Report{Cfg: &Config{Phases: []string{PhaseFarm}}}).v2Targets(func(bool) string { return "" }) != nil {
		t.Error("v2 targets without the v2 phase")
	}
}

func TestDigitsReport(t *testing.T) {
	local := summaryOf(20000).Runs[0]
	local.CPU = &CPUUsage{Cores: map[string]float64{"bench": 1}, Machine: 1}
	farm := summaryOf(1500, 1600, 1400)
	for _, r := range farm.Runs {
		r.CPU = &CPUUsage{Cores: map[string]float64{"api": 0.4, "workers": 0.3, "bench": 0.3, "broker": 0.6}, Machine: 1.7, IRQ: 0.1}
	}
	run := &DigitsRun{ModelDir: "models/digits/1", Instances: 2, Workers: 1, Vectors: 32,
		Local: []*DigitsLocalRow{{Path: LocalWorker, Goroutines: 1, Res: local}},
		Check: &DigitsCheck{Vectors: 32, Matched: 32, MaxDiff: 1e-7},
		Farm:  []*DigitsFarmRow{{Concurrency: 4, Sum: farm}}}
	rep := &Report{Cfg: &Config{Phases: []string{PhaseDigits}, Runs: 3}, Digits: run}
	if rps, cpu := run.localRef(); rps != 20000 || cpu != 50 {
		t.Errorf("local reference %v/s, %v µs", rps, cpu)
	}
	var sb strings.Builder
	rep.PrintDigits(&sb)
	out := sb.String()
	// 0.3 worker cores at 1,500/s = 200 µs per inference, 4× the 50 µs in process;
	// the machine's 1.7 busy cores, all ours = 1,133 µs.
	for _, s := range []string{"1,500", "200", "4.00×", "1133", "32 of 32"} {
		if !strings.Contains(out, s) {
			t.Errorf("digits report lacks %q:\n%s", s, out)
		}
	}
	ts := rep.digitsTargets(func(ok bool) string { return map[bool]string{true: "PASS", false: "MISS"}[ok] })
	if len(ts) != 1 || ts[0].Status != "PASS" {
		t.Errorf("targets %+v", ts)
	}
	run.Check.Matched = 31
	if ts := rep.digitsTargets(func(ok bool) string { return map[bool]string{true: "PASS", false: "MISS"}[ok] }); ts[0].Status != "MISS" {
		t.Errorf("31 of 32 passed: %+v", ts)
	}
}

func TestParseFlagsModelPhases(t *testing.T) {
	cfg, err := ParseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Has(PhaseV2) || !cfg.Has(PhaseDigits) || !slices.Equal(cfg.DigitsConcurrency, []int{1, 4, 16}) || cfg.DigitsWorkers != 1 {
		t.Errorf("defaults: phases %v, digits %v × %d", cfg.Phases, cfg.DigitsConcurrency, cfg.DigitsWorkers)
	}
	cfg, err = ParseFlags([]string{"-phases", "v2,digits", "-digits-concurrency", "2,8", "-digits-workers", "2"}, io.Discard)
	if err != nil || !slices.Equal(cfg.DigitsConcurrency, []int{2, 8}) || cfg.DigitsWorkers != 2 || cfg.Has(PhaseFarm) {
		t.Errorf("%+v, %v", cfg, err)
	}
	if _, err := ParseFlags([]string{"-digits-workers", "0"}, io.Discard); err == nil {
		t.Error("-digits-workers 0 accepted")
	}
	b := &bench{cfg: &Config{Phases: []string{PhaseV2}, Concurrency: []int{1, 16}, Runs: 3}}
	if vs := b.variants(); !slices.Equal(vs, []string{VariantFarm, VariantFarmV2}) {
		t.Errorf("v2 variants %v", vs)
	}
	b.countSteps()
	if b.steps != 2*3*2 {
		t.Errorf("steps %d", b.steps)
	}
}

func TestWorkerEnv(t *testing.T) {
	c := FarmConfig{AMQPURL: "amqp://127.0.0.1/v", ModelRepository: "/abs/models", Models: "seed",
		Env: []string{"MODELS=digits"}, WorkerEnv: []string{"MODEL_LATENCY=20ms"}}
	last := map[string]string{}
	for _, kv := range c.workerEnv("127.0.0.1:1") {
		k, v, _ := strings.Cut(kv, "=")
		last[k] = v // exec uses the last value of a duplicate key
	}
	if last["MODEL_REPOSITORY"] != "/abs/models" || last["MODELS"] != "digits" || last["MODEL_LATENCY"] != "20ms" {
		t.Errorf("worker env %v", last)
	}
	for _, kv := range c.env("127.0.0.1:1", nil) {
		if strings.HasPrefix(kv, "MODEL_REPOSITORY=") {
			t.Error("the API got MODEL_REPOSITORY")
		}
	}
}

func TestReadyWorkersOf(t *testing.T) {
	var rb readyBody
	if err := json.Unmarshal([]byte(`{"status":"ready","broker":"up","workers":0,"models":[
		{"name":"digits","version":"1","workers":1},{"name":"digits","version":"2","workers":2},{"name":"seed","version":"1","workers":0}]}`), &rb); err != nil {
		t.Fatal(err)
	}
	if rb.workersOf("") != 0 || rb.workersOf("digits") != 2 || rb.workersOf("seed") != 0 || rb.workersOf("nope") != 0 {
		t.Errorf("%+v", rb)
	}
	// A build from before the model repository reports only "workers".
	rb = readyBody{}
	_ = json.Unmarshal([]byte(`{"status":"ready","broker":"up","workers":2}`), &rb)
	if rb.workersOf("") != 2 {
		t.Errorf("old body: %+v", rb)
	}
}

func TestRoundOrder(t *testing.T) {
	vs := []string{VariantFarm, VariantFarmV2, VariantFarmBaseline, VariantRaw}
	for run := 1; run <= 8; run++ {
		order := roundOrder(vs, run)
		if len(order) != len(vs) {
			t.Fatalf("round %d: %v", run, order)
		}
		for _, v := range vs {
			if !slices.Contains(order, v) {
				t.Fatalf("round %d lacks %s: %v", run, v, order)
			}
		}
		i, j := slices.Index(order, VariantFarm), slices.Index(order, VariantFarmV2)
		if want := i + 1 - 2*((run+1)%2); j != want { // odd rounds: farm, v2; even: v2, farm
			t.Errorf("round %d: %v, farm-v2 not right %s farm", run, order, map[bool]string{true: "after", false: "before"}[run%2 == 1])
		}
	}
	// The rotation still moves the start for the other variants.
	if a, b := roundOrder(vs, 1), roundOrder(vs, 3); slices.Equal(a, b) {
		t.Errorf("rounds 1 and 3 in the same order %v", a)
	}
	// Without farm-v2 it is the plain rotation.
	plain := []string{VariantFarm, VariantRaw, VariantRawSep}
	if got := roundOrder(plain, 2); !slices.Equal(got, []string{VariantRaw, VariantRawSep, VariantFarm}) {
		t.Errorf("plain rotation %v", got)
	}
}

// setMangle changes how the server rewrites its answers, safely while it serves.
func (s *v2Server) setMangle(f func([]byte) []byte) {
	s.mu.Lock()
	s.mangle = f
	s.mu.Unlock()
}
