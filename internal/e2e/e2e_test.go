package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/warren-farm/warren/internal/testbroker"
)

// The seed README's test_services.sh: five calls (the lab had no assertions; these
// assert the lab's shapes).
func TestSeedReadmeCurlCalls(t *testing.T) {
	f := newFarm(t, 1, nil, nil)
	w := f.workers[0]

	r := f.do("GET", "/health", "")
	if r.Status != 200 || string(r.Body) != `{"service":"Service A","status":"healthy"}`+"\n" {
		t.Errorf("api /health: %d %s", r.Status, r.Body)
	}
	r = doChecked(t, nil, "GET", w.url("/health"), "")
	if r.Status != 200 || string(r.Body) != `{"service":"Service B","status":"healthy"}`+"\n" {
		t.Errorf("worker /health: %d %s", r.Status, r.Body)
	}
	r = f.do("POST", "/process", `{"data":"test","forward_to_model":false}`, "Content-Type", "application/json")
	if r.Status != 200 || string(r.Body) != `{"status":"Input logged successfully"}` {
		t.Errorf("forward_to_model=false: %d %s", r.Status, r.Body)
	}
	r = f.do("POST", "/process", `{"data":"test input","forward_to_model":true}`, "Content-Type", "application/json")
	checkPrediction(t, r, "test input", r.Header.Get("X-Request-ID"))
	r = doChecked(t, nil, "POST", w.url("/predict"), `{"input":"test"}`, "Content-Type", "application/json")
	m := r.json(t)
	if r.Status != 200 || m["prediction"] == nil || m["message"] == nil {
		t.Errorf("worker /predict: %d %s", r.Status, r.Body)
	}
	// The root pages too.
	if r := f.do("GET", "/", ""); r.json(t)["service"] != "Service A - Input Logger" {
		t.Errorf("api /: %s", r.Body)
	}
	if r := doChecked(t, nil, "GET", w.url("/"), ""); r.json(t)["service"] != "Service B - ML Prediction" {
		t.Errorf("worker /: %s", r.Body)
	}
	// The seed's other checks: predict without input is a 422 naming the field.
	r = doChecked(t, nil, "POST", w.url("/predict"), `{}`)
	if r.Status != 422 || !strings.Contains(string(r.Body), `"loc":["body","input"]`) {
		t.Errorf("worker /predict without input: %d %s", r.Status, r.Body)
	}
}

// checkPrediction asserts a /process 200 with a model_prediction computed for input.
func checkPrediction(t *testing.T, r response, input, requestID string) map[string]any {
	t.Helper()
	if r.Status != 200 {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	m := r.json(t)
	if m["status"] != "Input logged successfully" {
		t.Fatalf("status field: %s", r.Body)
	}
	mp, _ := m["model_prediction"].(map[string]any)
	pred, _ := mp["prediction"].(map[string]any)
	sum := sha256.Sum256([]byte(input))
	switch {
	case pred == nil:
		t.Fatalf("no prediction: %s", r.Body)
	case mp["request_id"] != requestID:
		t.Fatalf("request_id %v, want %q", mp["request_id"], requestID)
	case mp["input_sha256"] != hex.EncodeToString(sum[:]):
		t.Fatalf("input digest %v is not the digest of %q: answer for another request", mp["input_sha256"], input)
	case pred["input_length"] != float64(utf8.RuneCountInString(input)):
		t.Fatalf("input_length %v for %q", pred["input_length"], input)
	}
	c, _ := pred["confidence"].(float64)
	msg := fmt.Sprintf("Predicted class: %s with %.1f%% confidence", pred["class"], c*100)
	if mp["message"] != msg || c < 0.7 || c > 0.99 {
		t.Fatalf("message %q / confidence %v", mp["message"], c)
	}
	if mp["worker_id"] == "" || mp["model"] == nil {
		t.Fatalf("no worker or model: %s", r.Body)
	}
	return mp
}

// The seed README's three manual scenarios.
func TestSeedScenarios(t *testing.T) {
	f := newFarm(t, 1, nil, nil)

	t.Run("different input lengths", func(t *testing.T) {
		for _, in := range []string{"hi", "this is a medium length input", "cat image data", "ünïcödé 🐇 input", strings.Repeat("x", 5000)} {
			r := f.do("POST", "/process", fmt.Sprintf(`{"data":%q}`, in))
			checkPrediction(t, r, in, r.Header.Get("X-Request-ID"))
		}
	})
	t.Run("invalid request format", func(t *testing.T) {
		r := f.do("POST", "/process", `{"forward_to_model":true}`)
		want := `{"detail":[{"type":"missing","loc":["body","data"],"msg":"Field required","input":{"forward_to_model":true}}]}`
		if r.Status != 422 || strings.TrimSpace(string(r.Body)) != want {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("model service unavailable", func(t *testing.T) {
		w := f.workers[0]
		w.signal(syscall.SIGTERM)
		if code := w.wait(30 * time.Second); code != 0 {
			t.Fatalf("worker exit code %d", code)
		}
		f.waitWorkers(0)
		begin := time.Now()
		r := f.do("POST", "/process", `{"data":"test input","forward_to_model":true}`)
		if el := time.Since(begin); el > time.Second {
			t.Errorf("no_workers answered after %s", el)
		}
		m := r.json(t)
		if r.Status != 503 || m["reason"] != "no_workers" || r.Header.Get("Retry-After") == "" {
			t.Fatalf("%d %v %s", r.Status, r.Header, r.Body)
		}
		if d, _ := m["detail"].(string); !strings.HasPrefix(d, "Model service is unavailable") {
			t.Errorf("detail %q", d)
		}
		// Logging without the model still works.
		if r := f.do("POST", "/process", `{"data":"x","forward_to_model":false}`); r.Status != 200 {
			t.Errorf("forward_to_model=false without workers: %d", r.Status)
		}
	})
}

func TestThousandConcurrentRequestsNoCrossTalk(t *testing.T) {
	f := newFarm(t, 2, nil, nil)
	const n = 1000
	var wg sync.WaitGroup
	workers := sync.Map{}
	gate := make(chan struct{}) // all 1000 start together, each on its own connection
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-gate
			input := fmt.Sprintf("input %d %x", i, sha256.Sum256([]byte(fmt.Sprint(i))))
			id := fmt.Sprintf("rid-%04d", i)
			r := doChecked(t, nil, "POST", f.api.url("/process"), fmt.Sprintf(`{"data":%q}`, input), "X-Request-ID", id)
			if r.Header.Get("X-Request-ID") != id {
				t.Errorf("X-Request-ID header %q, want %q", r.Header.Get("X-Request-ID"), id)
			}
			mp := checkPrediction(t, r, input, id)
			workers.Store(mp["worker_id"], true)
		}(i)
	}
	close(gate)
	wg.Wait()
	count := 0
	workers.Range(func(_, _ any) bool { count++; return true })
	if count != 2 {
		t.Errorf("answers came from %d workers, want both", count)
	}
}

func TestStatusContract(t *testing.T) {
	f := newFarm(t, 1, []string{"BODY_LIMIT=1KiB", "REQUEST_TIMEOUT=5s", "MAX_REQUEST_TIMEOUT=6s"}, []string{"MODEL_LATENCY=700ms"})

	cases := []struct {
		name, body string
		hdr        []string
		status     int
		contains   string
	}{
		{"ok without Content-Type", `{"data":"x"}`, nil, 200, `"model_prediction"`},
		{"ok with text/plain", `{"data":"x"}`, []string{"Content-Type", "text/plain"}, 200, `"model_prediction"`},
		{"lax bool", `{"data":"x","forward_to_model":"no"}`, nil, 200, `{"status":"Input logged successfully"}`},
		{"extra fields ignored", `{"data":"x","forward_to_model":0,"extra":[1]}`, nil, 200, `Input logged successfully`},
		{"empty data is valid", `{"data":"","forward_to_model":false}`, nil, 200, `Input logged`},
		{"too large", `{"data":"` + strings.Repeat("a", 2000) + `"}`, nil, 413, `"detail":"Request body too large`},
		{"malformed JSON", `{"data":`, nil, 422, `"type":"json_invalid"`},
		{"not an object", `["data"]`, nil, 422, `"type":"model_attributes_type"`},
		{"data not a string", `{"data":42}`, nil, 422, `{"type":"string_type","loc":["body","data"]`},
		{"data null", `{"data":null}`, nil, 422, `"string_type"`},
		{"bad bool", `{"data":"x","forward_to_model":"maybe"}`, nil, 422, `"loc":["body","forward_to_model"]`},
		{"both fields bad", `{"data":1,"forward_to_model":[]}`, nil, 422, `"loc":["body","forward_to_model"]`},
		{"bad timeout header", `{"data":"x"}`, []string{"X-Request-Timeout", "soon"}, 422, `"loc":["header","X-Request-Timeout"]`},
		{"negative timeout", `{"data":"x"}`, []string{"X-Request-Timeout", "-1"}, 422, `X-Request-Timeout`},
		{"deadline passes", `{"data":"x"}`, []string{"X-Request-Timeout", "0.3"}, 504, `"reason":"timeout"`},
		{"deadline as duration", `{"data":"x"}`, []string{"X-Request-Timeout", "300ms"}, 504, `"reason":"timeout"`},
		{"long timeout is clamped, still answers", `{"data":"x"}`, []string{"X-Request-Timeout", "3600"}, 200, `model_prediction`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			begin := time.Now()
			r := doChecked(t, f.spec, "POST", f.api.url("/process"), tc.body, tc.hdr...)
			if r.Status != tc.status || !strings.Contains(string(r.Body), tc.contains) {
				t.Fatalf("%d %s; want %d containing %s", r.Status, r.Body, tc.status, tc.contains)
			}
			if r.Header.Get("X-Request-ID") == "" {
				t.Error("no X-Request-ID")
			}
			if r.Status == 504 {
				if el := time.Since(begin); el < 250*time.Millisecond || el > 1500*time.Millisecond {
					t.Errorf("504 after %s, want at the 300ms deadline", el)
				}
			}
		})
	}
	if r := f.do("GET", "/nowhere", ""); r.Status != 404 || string(r.Body) != `{"detail":"Not Found"}`+"\n" {
		t.Errorf("404: %s", r.Body)
	}
	if r := f.do("GET", "/process", ""); r.Status != 405 || !strings.Contains(string(r.Body), "Method Not Allowed") {
		t.Errorf("405: %d %s", r.Status, r.Body)
	}
	// X-Request-ID: honoured when sane, replaced when not.
	r := f.do("POST", "/process", `{"data":"x","forward_to_model":false}`, "X-Request-ID", "abc-123")
	if r.Header.Get("X-Request-ID") != "abc-123" {
		t.Errorf("honoured id: %q", r.Header.Get("X-Request-ID"))
	}
	r = f.do("POST", "/process", `{"data":"x","forward_to_model":false}`, "X-Request-ID", "bad id\twith spaces")
	if id := r.Header.Get("X-Request-ID"); id == "" || strings.Contains(id, " ") {
		t.Errorf("replaced id: %q", id)
	}
	// The docs.
	if r := f.do("GET", "/openapi.json", ""); r.Status != 200 || r.json(t)["openapi"] == nil {
		t.Errorf("/openapi.json: %d", r.Status)
	}
	if r := doChecked(t, nil, "GET", f.api.url("/docs"), ""); r.Status != 200 || !strings.Contains(string(r.Body), "swagger") {
		t.Errorf("/docs: %d", r.Status)
	}
}

func TestQueueFullThroughTheAPI(t *testing.T) {
	// One slow worker with one slot, a bound of 2 ready messages.
	f := newFarm(t, 1, []string{"QUEUE_MAX_LENGTH=2"}, []string{"MODEL_LATENCY=3s", "CONCURRENCY=1"})
	waitPolicy(t, f)
	var wg sync.WaitGroup
	var mu sync.Mutex
	reasons := map[string]int{}
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := f.do("POST", "/process", fmt.Sprintf(`{"data":"q%d"}`, i), "X-Request-Timeout", "1s")
			mu.Lock()
			defer mu.Unlock()
			if r.Status == 503 {
				reasons[r.json(t)["reason"].(string)]++
			} else {
				reasons[fmt.Sprint(r.Status)]++
			}
		}(i)
	}
	wg.Wait()
	// 1 prefetched by the worker + 2 ready fit; 5 are turned away at once.
	if reasons["queue_full"] != 5 {
		t.Fatalf("outcomes %v, want 5 queue_full", reasons)
	}
}

func waitPolicy(t *testing.T, f *farm) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(f.vh.Policies(t)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the API did not apply the queue policy")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestWorkerSIGTERMAnswersInFlight(t *testing.T) {
	f := newFarm(t, 1, nil, []string{"MODEL_LATENCY=1500ms", "CONCURRENCY=2"})
	w := f.workers[0]
	results := make(chan response, 2)
	for i := 0; i < 2; i++ {
		go func(i int) {
			results <- doChecked(t, f.spec, "POST", f.api.url("/process"), fmt.Sprintf(`{"data":"drain %d"}`, i))
		}(i)
	}
	waitInFlight(t, w, 2)
	w.signal(syscall.SIGTERM)
	for i := 0; i < 2; i++ {
		if r := <-results; r.Status != 200 {
			t.Errorf("in-flight request during worker drain: %d %s", r.Status, r.Body)
		}
	}
	if code := w.wait(30 * time.Second); code != 0 {
		t.Errorf("worker exit code %d", code)
	}
}

func waitInFlight(t *testing.T, w *proc, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var r struct {
			InFlight int `json:"in_flight"`
		}
		resp, err := http.Get(w.url("/ready"))
		if err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if r.InFlight == n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker never had %d requests in flight", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAPISIGTERMAnswersInFlight(t *testing.T) {
	f := newFarm(t, 1, nil, []string{"MODEL_LATENCY=1500ms", "CONCURRENCY=2"})
	results := make(chan response, 2)
	for i := 0; i < 2; i++ {
		go func(i int) {
			results <- doChecked(t, f.spec, "POST", f.api.url("/process"), fmt.Sprintf(`{"data":"api drain %d"}`, i))
		}(i)
	}
	waitInFlight(t, f.workers[0], 2)
	f.api.signal(syscall.SIGTERM)
	// While draining: not ready, and new work is refused with 503 draining.
	deadline := time.Now().Add(time.Second)
	for {
		r := f.do("GET", "/ready", "")
		if r.Status == 503 && r.json(t)["status"] == "draining" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/ready while draining: %d %s", r.Status, r.Body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := f.do("POST", "/process", `{"data":"late"}`)
	if r.Status != 503 || r.json(t)["reason"] != "draining" || r.Header.Get("Retry-After") == "" {
		t.Errorf("new request while draining: %d %s", r.Status, r.Body)
	}
	for i := 0; i < 2; i++ {
		if r := <-results; r.Status != 200 {
			t.Errorf("in-flight request during API drain: %d %s", r.Status, r.Body)
		}
	}
	if code := f.api.wait(30 * time.Second); code != 0 {
		t.Errorf("api exit code %d", code)
	}
}

func TestAPIWithoutBroker(t *testing.T) {
	integration(t)
	spec := newFarmSpec(t)
	// Nothing listens on this port: the API starts, is not ready, and answers JSON 503s.
	dead := "amqp://guest:guest@" + freeAddr(t) + "/"
	api := startProc(t, "api", "AMQP_URL="+dead, "MANAGEMENT_URL=")
	r := doChecked(t, spec, "GET", api.url("/ready"), "")
	if r.Status != 503 || r.json(t)["status"] != "starting" {
		t.Errorf("/ready before any broker connection: %d %s", r.Status, r.Body)
	}
	r = doChecked(t, spec, "POST", api.url("/process"), `{"data":"x"}`)
	if r.Status != 503 || r.json(t)["reason"] != "broker_unavailable" || r.Header.Get("Retry-After") == "" {
		t.Errorf("/process without a broker: %d %s", r.Status, r.Body)
	}
	if r := doChecked(t, spec, "GET", api.url("/health"), ""); r.Status != 200 {
		t.Errorf("/health must stay static: %d", r.Status)
	}
}

func TestConfigSubcommandAndValidation(t *testing.T) {
	integration(t)
	dir := binaries(t)
	out, err := exec.Command(filepath.Join(dir, "api"), "config").Output()
	if err != nil || !strings.Contains(string(out), "`AMQP_URL`") || !strings.Contains(string(out), "`--request-timeout`") {
		t.Fatalf("api config: %v\n%s", err, out)
	}
	cmd := exec.Command(filepath.Join(dir, "worker"))
	cmd.Env = []string{"CONCURRENCY=0", "MODEL_LATENCY=fast", "LOG_FORMAT=xml", "HTTP_ADDR=127.0.0.1:0"}
	b, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("bad config: err %v, output %s", err, b)
	}
	for _, want := range []string{"CONCURRENCY", "MODEL_LATENCY", "LOG_FORMAT"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("validation output does not name %s:\n%s", want, b)
		}
	}
	cmd = exec.Command(filepath.Join(dir, "api"), "--request-timeout=20s", "--max-request-timeout=5s")
	cmd.Env = []string{"HTTP_ADDR=127.0.0.1:0"}
	b, _ = cmd.CombinedOutput()
	if !strings.Contains(string(b), "MAX_REQUEST_TIMEOUT") {
		t.Errorf("flag twins not validated: %s", b)
	}

	// help: usage on stdout, exit 0.
	for _, bin := range []string{"api", "worker"} {
		for _, arg := range []string{"--help", "-h", "help"} {
			out, err := exec.Command(filepath.Join(dir, bin), arg).Output()
			if err != nil || !strings.Contains(string(out), "AMQP_URL") {
				t.Errorf("%s %s: %v\n%s", bin, arg, err, out)
			}
		}
	}

	// A bad model repository fails the worker at start, naming the file and the key.
	repo := repository(t, map[string]string{
		"seed/config.yaml":   "backend: seed\nconcurency: 4\n",
		"digits/config.yaml": "backend: onnx\nmax_batch_size: -1\n",
	}, nil)
	cmd = exec.Command(filepath.Join(dir, "worker"))
	cmd.Env = []string{"MODEL_REPOSITORY=" + repo, "HTTP_ADDR=127.0.0.1:0", "AMQP_URL=amqp://guest:guest@127.0.0.1:1/"}
	b, err = cmd.CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("bad repository: err %v, output %s", err, b)
	}
	for _, want := range []string{"seed/config.yaml: concurency: unknown key (did you mean concurrency?)",
		"digits/config.yaml: max_batch_size: must be between 0 and 1024, got -1"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("bad repository: output does not say %q:\n%s", want, b)
		}
	}
	// So does a model the onnx backend cannot load.
	cmd = exec.Command(filepath.Join(dir, "worker"))
	cmd.Env = []string{"MODEL_REPOSITORY=" + repository(t, map[string]string{"m/config.yaml": "backend: onnx\n", "m/1/model.onnx": "not onnx"}, nil),
		"HTTP_ADDR=127.0.0.1:0", "AMQP_URL=amqp://guest:guest@127.0.0.1:1/"}
	b, err = cmd.CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(b), "model.onnx") {
		t.Errorf("unloadable model: err %v, output %s", err, b)
	}
}

// The broker restarts (a private throwaway node, never the shared one): clients get
// JSON 503s while it is down, and the first 200 arrives within 5 s of it being back.
func TestBrokerRestartThroughTheBinaries(t *testing.T) {
	integration(t)
	node := testbroker.StartNode(t)
	spec := newFarmSpec(t)
	startProc(t, "worker", "AMQP_URL="+node.AMQPURL, "WORKER_ID=restart-w")
	api := startProc(t, "api", "AMQP_URL="+node.AMQPURL, "MANAGEMENT_URL=")
	waitReady := func() {
		deadline := time.Now().Add(15 * time.Second)
		for {
			r := doChecked(t, spec, "GET", api.url("/ready"), "")
			if r.Status == 200 && r.json(t)["workers"] == float64(1) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("not ready: %d %s", r.Status, r.Body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitReady()
	if r := doChecked(t, spec, "POST", api.url("/process"), `{"data":"before"}`); r.Status != 200 {
		t.Fatalf("before: %d %s", r.Status, r.Body)
	}

	node.Stop(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := doChecked(t, spec, "POST", api.url("/process"), `{"data":"down"}`)
		if r.Status == 503 && r.json(t)["reason"] == "broker_unavailable" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("while the broker is down: %d %s", r.Status, r.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Still in the load balancer: ready, with the broker reported down.
	if r := doChecked(t, spec, "GET", api.url("/ready"), ""); r.Status != 200 || r.json(t)["broker"] != "down" {
		t.Errorf("/ready while the broker is down: %d %s", r.Status, r.Body)
	}

	node.Start(t)
	back := time.Now()
	for {
		r := doChecked(t, spec, "POST", api.url("/process"), `{"data":"after"}`, "X-Request-Timeout", "2s")
		if r.Status == 200 {
			break
		}
		if time.Since(back) > 5*time.Second {
			t.Fatalf("no 200 within 5s of the broker being back; last %d %s", r.Status, r.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("first 200 %s after the broker was back", time.Since(back).Round(time.Millisecond))
}

// A worker SIGKILLed mid-request: the broker requeues its unacked request, the other
// worker takes it (its caller's reply queue is alive, so it is computed), and the
// caller still gets its 200 within the deadline.
func TestKilledWorkerRequestIsAnsweredByAnother(t *testing.T) {
	f := newFarm(t, 2, nil, []string{"MODEL_LATENCY=1s", "CONCURRENCY=1"})
	results := make(chan response, 2)
	for i := 0; i < 2; i++ {
		go func(i int) {
			results <- doChecked(t, f.spec, "POST", f.api.url("/process"), fmt.Sprintf(`{"data":"kill %d"}`, i))
		}(i)
	}
	waitInFlight(t, f.workers[0], 1)
	waitInFlight(t, f.workers[1], 1)
	f.workers[0].signal(syscall.SIGKILL)
	f.workers[0].wait(10 * time.Second)
	for i := 0; i < 2; i++ {
		r := <-results
		if r.Status != 200 {
			t.Fatalf("request after a worker was killed: %d %s", r.Status, r.Body)
		}
		if w := r.json(t)["model_prediction"].(map[string]any)["worker_id"]; w != "w1" {
			t.Errorf("answered by %v, want the surviving worker w1", w)
		}
	}
}
