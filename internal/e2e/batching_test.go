package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/model"
)

// Dynamic batching keeps every answer with its caller: 1,000 concurrent callers —
// /process, v2 infer of the seed model with 1 to 3 strings, v2 infer of the
// digits ONNX model with different images, and jobs of both — against two real
// workers whose models batch (seed: max_batch_size 16, 5ms, a fixed cost per
// batch; digits: 32, 2ms, as shipped). Each answer is checked against its own
// input: the seed model's class, confidence and length per string (and the
// input's sha256 on /process), the digits model's ten probabilities. The workers'
// metrics then show that batches of more than one request really formed.
func TestBatchingKeepsAnswersWithTheirCallers(t *testing.T) {
	integration(t)
	repo := repository(t, map[string]string{
		"seed/config.yaml": "backend: seed\nmax_batch_size: 16\nmax_batch_delay: 5ms\nlatency: 10ms\nitem_latency: 100us\nconcurrency: 2\n",
	}, map[string]string{
		"digits/config.yaml":  "digits/config.yaml",
		"digits/1/model.onnx": "digits/1/model.onnx",
	})
	env := []string{"MODEL_REPOSITORY=" + repo, "MODELS=seed,digits", "JOB_CONCURRENCY=2"}
	f := newFarm(t, 2, nil, env)
	awaitModelWorkers(t, f.spec, f.api, digitsRoute, 2)
	vecs := digitsVectors(t)
	seed := model.NewSeed(model.SeedConfig{})

	const callers = 1000
	errs := make(chan error, callers)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := batchingCall(t, f, seed, vecs, i); err != nil {
				errs <- fmt.Errorf("caller %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 10 {
			t.Error(err)
		}
	}
	if n > 0 {
		t.Fatalf("%d of %d callers got a wrong or failed answer", n, callers)
	}
	t.Logf("%d mixed callers answered correctly in %v", callers, time.Since(start).Round(time.Millisecond))

	// Batches formed: the mean batch size of each model's request queue, over both
	// workers, is above 1.
	for _, m := range []string{"seed", "digits"} {
		var sum, count float64
		for _, w := range f.workers {
			s, c := batchSizeOf(t, w, m)
			sum, count = sum+s, count+c
		}
		if count == 0 || sum/count <= 1 {
			t.Errorf("%s: %v requests in %v batches: no batching happened", m, sum, count)
		} else {
			t.Logf("%s: %v requests in %v batches (mean %.1f)", m, sum, count, sum/count)
		}
	}
}

// batchingCall makes caller i's call (its kind chosen by i) and checks the answer
// against its input.
func batchingCall(t *testing.T, f *farm, seed *model.Seed, vecs []digitsVector, i int) error {
	input := func(k int) string { return fmt.Sprintf("caller %d item %d %s", i, k, strings.Repeat("x", i%37)) }
	switch i % 10 {
	case 0, 1, 2, 3: // /process
		in := input(0)
		r, err := tryDo(t, f.spec, "POST", f.api.url("/process"), fmt.Sprintf(`{"data":%q}`, in))
		if err != nil || r.Status != http.StatusOK {
			return fmt.Errorf("/process: %v %d %s", err, r.Status, r.Body)
		}
		var b struct {
			Pred json.RawMessage `json:"model_prediction"`
		}
		if err := json.Unmarshal(r.Body, &b); err != nil {
			return err
		}
		return checkLab(b.Pred, seed, in)
	case 4, 5, 6: // v2 infer of seed, 1 to 3 strings
		ins := make([]string, 1+i%3)
		for k := range ins {
			ins[k] = input(k)
		}
		data, _ := json.Marshal(ins)
		body := fmt.Sprintf(`{"id":"c%d","inputs":[{"name":"data","shape":[%d],"datatype":"BYTES","data":%s}]}`, i, len(ins), data)
		r, err := tryDo(t, f.spec, "POST", f.api.url("/v2/models/seed/infer"), body)
		if err != nil || r.Status != http.StatusOK {
			return fmt.Errorf("v2 seed: %v %d %s", err, r.Status, r.Body)
		}
		return checkSeedV2(r.Body, fmt.Sprintf("c%d", i), seed, ins)
	case 7, 8: // v2 infer of digits
		v := vecs[i%len(vecs)]
		body := fmt.Sprintf(`{"id":"c%d","inputs":%s}`, i, digitsInputs(v))
		r, err := tryDo(t, f.spec, "POST", f.api.url("/v2/models/digits/infer"), body)
		if err != nil || r.Status != http.StatusOK {
			return fmt.Errorf("v2 digits: %v %d %s", err, r.Status, r.Body)
		}
		return checkDigitsV2(r.Body, fmt.Sprintf("c%d", i), v)
	case 9: // a job: seed (the lab's body) or digits
		var body string
		v := vecs[i%len(vecs)]
		if i%20 == 9 {
			body = fmt.Sprintf(`{"data":%q}`, input(0))
		} else {
			body = `{"model":"digits","inputs":` + digitsInputs(v) + `}`
		}
		r, err := tryDo(t, f.spec, "POST", f.api.url("/jobs"), body)
		if err != nil || r.Status != http.StatusAccepted {
			return fmt.Errorf("POST /jobs: %v %d %s", err, r.Status, r.Body)
		}
		var j jobBody
		if err := json.Unmarshal(r.Body, &j); err != nil {
			return err
		}
		deadline := time.Now().Add(60 * time.Second)
		for !finalStatus(j.Status) {
			if time.Now().After(deadline) {
				return fmt.Errorf("job %s still %s after 60s", j.ID, j.Status)
			}
			r, err := tryDo(t, f.spec, "GET", f.api.url("/jobs/"+j.ID+"?wait=10s"), "")
			if err != nil || r.Status != http.StatusOK {
				return fmt.Errorf("GET /jobs/%s: %v %d %s", j.ID, err, r.Status, r.Body)
			}
			j = jobBody{}
			if err := json.Unmarshal(r.Body, &j); err != nil {
				return err
			}
		}
		if j.Status != "succeeded" {
			return fmt.Errorf("job %s: %s %+v", j.ID, j.Status, j.Error)
		}
		if i%20 == 9 {
			return checkLab(j.Result, seed, input(0))
		}
		return checkDigitsV2(j.Result, "", v)
	}
	return nil
}

// checkLab checks the lab's answer (/process's model_prediction, a lab job's
// result) against the seed model's prediction for in and in's sha256.
func checkLab(body []byte, seed *model.Seed, in string) error {
	var a struct {
		Prediction model.Prediction `json:"prediction"`
		SHA        string           `json:"input_sha256"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return fmt.Errorf("%w: %s", err, body)
	}
	sum := sha256.Sum256([]byte(in))
	if want := seed.PredictOne(in).Prediction; a.Prediction != want || a.SHA != hex.EncodeToString(sum[:]) {
		return fmt.Errorf("input %q: got %+v (sha %s), want %+v: %s", in, a.Prediction, a.SHA, want, body)
	}
	return nil
}

type v2Answer struct {
	ID      string `json:"id"`
	Outputs []struct {
		Name string          `json:"name"`
		Data json.RawMessage `json:"data"`
	} `json:"outputs"`
}

func (a *v2Answer) output(name string, into any) error {
	for _, o := range a.Outputs {
		if o.Name == name {
			return json.Unmarshal(o.Data, into)
		}
	}
	return fmt.Errorf("no output %q", name)
}

// checkSeedV2 checks a seed v2 answer (id, when not "") against the seed model's
// prediction for each input string.
func checkSeedV2(body []byte, id string, seed *model.Seed, ins []string) error {
	var a v2Answer
	if err := json.Unmarshal(body, &a); err != nil {
		return err
	}
	var classes []string
	var confs []float64
	var lens []int
	if err := errors.Join(a.output(model.SeedClass, &classes), a.output(model.SeedConfidence, &confs), a.output(model.SeedInputLength, &lens)); err != nil {
		return fmt.Errorf("%w: %s", err, body)
	}
	if (id != "" && a.ID != id) || len(classes) != len(ins) || len(confs) != len(ins) || len(lens) != len(ins) {
		return fmt.Errorf("answer of id %q with %d/%d/%d values for %d inputs (want id %q): %s", a.ID, len(classes), len(confs), len(lens), len(ins), id, body)
	}
	for k, in := range ins {
		want := seed.PredictOne(in).Prediction
		if classes[k] != want.Class || confs[k] != want.Confidence || lens[k] != want.InputLength {
			return fmt.Errorf("input %q: got %s %v %d, want %+v", in, classes[k], confs[k], lens[k], want)
		}
	}
	return nil
}

// checkDigitsV2 checks a digits v2 answer against the test vector's probabilities.
func checkDigitsV2(body []byte, id string, v digitsVector) error {
	var a v2Answer
	if err := json.Unmarshal(body, &a); err != nil {
		return err
	}
	var p []float64
	if err := a.output("probabilities", &p); err != nil {
		return fmt.Errorf("%w: %s", err, body)
	}
	if (id != "" && a.ID != id) || len(p) != len(v.Probabilities) {
		return fmt.Errorf("answer of id %q (want %q) with %d probabilities: %s", a.ID, id, len(p), body)
	}
	for k := range p {
		if math.Abs(p[k]-v.Probabilities[k]) > 1e-4 {
			return fmt.Errorf("probabilities %v, want those of its own image %v", p, v.Probabilities)
		}
	}
	return nil
}

// batchSizeOf reads a worker's warren_worker_batch_size sum and count for model m's
// request queue.
func batchSizeOf(t *testing.T, w *proc, m string) (sum, count float64) {
	t.Helper()
	resp, err := http.Get(w.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `model="`+m+`"`) || !strings.Contains(line, `queue="warren.req.`) {
			continue
		}
		field := strings.Fields(line)
		val, _ := strconv.ParseFloat(field[len(field)-1], 64)
		switch {
		case strings.HasPrefix(line, "warren_worker_batch_size_sum{"):
			sum += val
		case strings.HasPrefix(line, "warren_worker_batch_size_count{"):
			count += val
		}
	}
	return sum, count
}

// A request whose deadline passes while it waits for a batch (every model slot
// busy) is dropped by the worker's batcher: the caller gets 504, the model never
// sees it, and the worker counts it in warren_worker_batch_expired_total. A
// request already in the model is answered.
func TestBatchingDropsExpiredRequests(t *testing.T) {
	integration(t)
	repo := repository(t, map[string]string{
		"seed/config.yaml": "backend: seed\n",
		"slow/config.yaml": "backend: seed\nlatency: 1500ms\nmax_batch_size: 4\nconcurrency: 1\n",
	}, nil)
	f := newFarm(t, 0, nil, nil)
	w := f.addWorker("MODEL_REPOSITORY="+repo, "MODELS=seed,slow")
	f.waitModel("slow", "1", true)
	body := func(s string) string {
		return fmt.Sprintf(`{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":[%q]}]}`, s)
	}
	first := make(chan response, 1)
	go func() {
		r, err := tryDo(t, f.spec, "POST", f.api.url("/v2/models/slow/infer"), body("first"))
		if err != nil {
			t.Error(err)
		}
		first <- r
	}()
	// Wait until the first request is in the model (its batch of 1 went at once:
	// no max_batch_delay).
	deadline := time.Now().Add(10 * time.Second)
	for {
		if sum, _ := batchSizeOf(t, w, "slow"); sum == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first request never reached the model")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The only model slot is busy for 1.5 s: this one waits in the batcher and
	// expires there.
	r := f.do("POST", "/v2/models/slow/infer", body("late"), "X-Request-Timeout", "0.3")
	if r.Status != 504 || r.json(t)["reason"] != "timeout" {
		t.Fatalf("late request: %d %s", r.Status, r.Body)
	}
	if a := <-first; a.Status != 200 || !strings.Contains(string(a.Body), `"model_name":"slow"`) {
		t.Fatalf("first request: %d %s", a.Status, a.Body)
	}
	if sum, count := batchSizeOf(t, w, "slow"); sum != 1 || count != 1 {
		t.Errorf("the model computed %v requests in %v batches, want only the first", sum, count)
	}
	if n := metricOf(t, w, "warren_worker_batch_expired_total", "slow"); n != 1 {
		t.Errorf("warren_worker_batch_expired_total %v, want 1", n)
	}
}

// metricOf sums a worker's series of metric name for model m's request queue.
func metricOf(t *testing.T, w *proc, name, m string) float64 {
	t.Helper()
	resp, err := http.Get(w.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var sum float64
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, `model="`+m+`"`) || !strings.Contains(line, `queue="warren.req.`) {
			continue
		}
		field := strings.Fields(line)
		v, _ := strconv.ParseFloat(field[len(field)-1], 64)
		sum += v
	}
	return sum
}

// SIGTERM to a worker whose requests wait for their batch to fill (a long
// max_batch_delay) sends the batch at once: every request is answered long before
// the delay would have ended, and the worker exits 0.
func TestBatchingWorkerSIGTERMFlushes(t *testing.T) {
	integration(t)
	repo := repository(t, map[string]string{
		"seed/config.yaml": "backend: seed\nmax_batch_size: 8\nmax_batch_delay: 30s\nconcurrency: 1\n",
	}, nil)
	f := newFarm(t, 1, nil, []string{"MODEL_REPOSITORY=" + repo, "MODELS=seed"})
	w := f.workers[0]
	results := make(chan response, 3)
	for i := 0; i < 3; i++ {
		go func(i int) {
			results <- doChecked(t, f.spec, "POST", f.api.url("/process"), fmt.Sprintf(`{"data":"drain %d"}`, i))
		}(i)
	}
	t0 := time.Now()
	waitInFlight(t, w, 3)
	t.Logf("3 requests waiting in the batch after %v", time.Since(t0))
	start := time.Now()
	w.signal(syscall.SIGTERM)
	for i := 0; i < 3; i++ {
		if r := <-results; r.Status != 200 {
			t.Errorf("request waiting in a batch during the drain: %d %s", r.Status, r.Body)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("answered %v after SIGTERM: the drain did not flush the batch", d)
	}
	t.Logf("answered %v after SIGTERM", time.Since(start))
	if code := w.wait(30 * time.Second); code != 0 {
		t.Errorf("worker exit code %d", code)
	}
	t.Logf("worker exited %v after SIGTERM", time.Since(start))
}
