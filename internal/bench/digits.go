package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/model/onnxmodel"
	"github.com/warren-farm/warren/pkg/oip"
	"github.com/warren-farm/warren/pkg/repository"
)

// The digits phase measures the repository's digits model (an ONNX MLP: 64
// FP32 pixels in, 10 probabilities out) two ways, with the same inputs (the
// held-out images of models/digits/testdata/vectors.json, one row per
// request):
//
//   - in process: this process loads the model with pkg/model/onnxmodel as the
//     worker does (one instance per concurrent request, the model's
//     concurrency) and runs closed loops of Predict alone, and of what the
//     worker does per message besides the broker (decode the v2 request,
//     check it against the metadata, Predict, encode the v2 response);
//   - through the farm: bin/api and DigitsWorkers bin/worker with
//     MODELS=digits, closed loops on POST /v2/models/digits/infer at each of
//     DigitsConcurrency, after a check that every vector's answer has
//     sklearn's predicted class.
//
// The in-process loops run before the farm starts, so nothing else of the
// bench competes with them.

// digitsVectorsFile is the vectors' path under the model's directory.
const digitsVectorsFile = "testdata/vectors.json"

// DigitsVector is one held-out image with sklearn's answer.
type DigitsVector struct {
	Index         int       `json:"index"`
	Label         int       `json:"label"`
	Predicted     int       `json:"predicted"`
	Input         []float64 `json:"input"`
	Probabilities []float64 `json:"probabilities"`
}

// LoadDigitsVectors reads a vectors.json file.
func LoadDigitsVectors(path string) ([]DigitsVector, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f struct {
		Vectors []DigitsVector `json:"vectors"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(f.Vectors) == 0 {
		return nil, fmt.Errorf("%s: no vectors", path)
	}
	for _, v := range f.Vectors {
		if len(v.Input) != 64 || len(v.Probabilities) != 10 {
			return nil, fmt.Errorf("%s: vector %d has %d inputs and %d probabilities, want 64 and 10", path, v.Index, len(v.Input), len(v.Probabilities))
		}
	}
	return f.Vectors, nil
}

// digitsInputs is the v2 "inputs" member for one vector as one row:
// `"inputs":[{"name":"input","datatype":"FP32","shape":[1,64],"data":[…]}]`.
func digitsInputs(v DigitsVector) []byte {
	b := []byte(`"inputs":[{"name":"input","datatype":"FP32","shape":[1,64],"data":[`)
	for i, x := range v.Input {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, float64(float32(x)), 'g', -1, 32)
	}
	return append(b, "]}]"...)
}

// digitsRequestBody is a whole v2 request for v with the given id.
func digitsRequestBody(v DigitsVector, id string) []byte {
	b := []byte(`{"id":` + strconv.Quote(id) + `,`)
	b = append(b, digitsInputs(v)...)
	return append(b, '}')
}

// DigitsCaller returns a CallFunc factory for POST /v2/models/digits/infer
// (url): caller i sends the vectors in turn, starting at vector i, each request
// with a distinct id ("bench-<caller>-<seq>"). A call succeeds on a 200 whose
// body echoes the request's id and holds the "probabilities" output.
func DigitsCaller(rt http.RoundTripper, url string, vs []DigitsVector) func(i int) CallFunc {
	tails := make([][]byte, len(vs))
	for k, v := range vs {
		tails[k] = append([]byte(`",`), digitsInputs(v)...)
		tails[k] = append(tails[k], '}')
	}
	return func(i int) CallFunc {
		prefix := `{"id":"bench-` + strconv.Itoa(i) + `-`
		var want []byte // `"id":"bench-<i>-<seq>"` of the request in flight
		return PostCaller(rt, url, func(int) BodyFunc {
			return func(body []byte, seq uint64) []byte {
				body = append(body, prefix...)
				body = strconv.AppendUint(body, seq, 10)
				want = append(append(want[:0], body[1:]...), '"')
				return append(body, tails[(i+int(seq)-1)%len(tails)]...)
			}
		}, func(resp []byte) string {
			switch {
			case !bytes.Contains(resp, want):
				return "200-wrong-id"
			case !bytes.Contains(resp, digitsOutput):
				return "200-without-probabilities"
			}
			return ""
		})(i)
	}
}

var digitsOutput = []byte(`"name":"probabilities"`)

// DigitsCheck is the outcome of sending every vector once through the farm.
type DigitsCheck struct {
	Vectors int
	// Matched is the answers whose largest probability is sklearn's
	// predicted class.
	Matched int
	// MaxDiff is the largest difference of a probability from sklearn's
	// float64 one.
	MaxDiff float64
	// Failures describes the answers that were not a 200 with 10 probabilities.
	Failures []string
}

// CheckDigits POSTs every vector once to url and compares the answers with
// sklearn's.
func CheckDigits(ctx context.Context, rt http.RoundTripper, url string, vs []DigitsVector) *DigitsCheck {
	out := &DigitsCheck{Vectors: len(vs)}
	hc := &http.Client{Transport: rt, Timeout: 10 * time.Second}
	for k, v := range vs {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(digitsRequestBody(v, "check-"+strconv.Itoa(k))))
		if err != nil {
			out.Failures = append(out.Failures, err.Error())
			continue
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := hc.Do(req)
		if err != nil {
			out.Failures = append(out.Failures, fmt.Sprintf("vector %d: %v", v.Index, err))
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		_ = res.Body.Close()
		if res.StatusCode != http.StatusOK {
			out.Failures = append(out.Failures, fmt.Sprintf("vector %d: %s %s", v.Index, res.Status, bytes.TrimSpace(body)))
			continue
		}
		probs, err := digitsProbabilities(body)
		if err != nil {
			out.Failures = append(out.Failures, fmt.Sprintf("vector %d: %v", v.Index, err))
			continue
		}
		best := 0
		for c, p := range probs {
			out.MaxDiff = math.Max(out.MaxDiff, math.Abs(p-v.Probabilities[c]))
			if p > probs[best] {
				best = c
			}
		}
		if best == v.Predicted {
			out.Matched++
		}
	}
	return out
}

// digitsProbabilities reads the 10 probabilities of a one-row v2 answer.
func digitsProbabilities(body []byte) ([]float64, error) {
	var r struct {
		Outputs []struct {
			Name  string    `json:"name"`
			Shape []int     `json:"shape"`
			Data  []float64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	for _, o := range r.Outputs {
		if o.Name == "probabilities" {
			if len(o.Data) != 10 {
				return nil, fmt.Errorf("probabilities has %d elements, want 10", len(o.Data))
			}
			return o.Data, nil
		}
	}
	return nil, fmt.Errorf("no probabilities output in %.200s", body)
}

// The in-process paths.
const (
	// LocalPredict is onnxmodel's Predict on a decoded one-row request.
	LocalPredict = "Predict"
	// LocalWorker is the worker's per-message work without the broker: decode
	// the v2 request, validate it, Predict, encode the v2 response.
	LocalWorker = "decode+Predict+encode"
)

// digitsLocalPaths in table order.
var digitsLocalPaths = []string{LocalPredict, LocalWorker}

// DigitsLocalRow is one in-process closed loop.
type DigitsLocalRow struct {
	Path       string
	Goroutines int
	Res        *Result
}

// DigitsFarmRow holds the farm's runs at one concurrency.
type DigitsFarmRow struct {
	Concurrency int
	Sum         *Summary
}

// DigitsRun is the digits phase's outcome.
type DigitsRun struct {
	ModelDir  string
	Instances int // the model's concurrency: onnx instances per worker
	Workers   int
	Vectors   int
	Local     []*DigitsLocalRow
	Check     *DigitsCheck
	Farm      []*DigitsFarmRow
}

// digitsModelInfo reads the digits model's file and concurrency from the
// repository at dir.
func digitsModelInfo(dir string) (file string, instances int, err error) {
	ms, err := repository.Scan(dir, []string{digitsModel})
	if err != nil {
		return "", 0, err
	}
	if len(ms) == 0 {
		return "", 0, fmt.Errorf("%s: no version of %s", dir, digitsModel)
	}
	m := ms[len(ms)-1] // the highest version, which the worker serves by default
	return m.ModelFile(), max(m.Config.Concurrency, 1), nil
}

// digitsGoroutines are the in-process loops' concurrencies: one, and the
// model's instance count.
func digitsGoroutines(instances int) []int {
	if instances <= 1 {
		return []int{1}
	}
	return []int{1, instances}
}

// localCaller returns the in-process CallFunc factory for path: caller i goes
// through the vectors like DigitsCaller.
func localCaller(m *onnxmodel.Model, path string, vs []DigitsVector) func(i int) CallFunc {
	md := m.Metadata()
	bodies := make([][]byte, len(vs))
	for k, v := range vs {
		bodies[k] = digitsRequestBody(v, "bench-local-"+strconv.Itoa(k))
	}
	return func(i int) CallFunc {
		// Each caller has its own requests: no two goroutines share a tensor.
		reqs := make([]*model.Request, len(vs))
		for k, v := range vs {
			data := make([]float32, 64)
			for j, x := range v.Input {
				data[j] = float32(x)
			}
			reqs[k] = &model.Request{Inputs: []model.Tensor{{Name: "input", Datatype: model.FP32, Shape: []int64{1, 64}, Data: data}}}
		}
		k := i
		return func(ctx context.Context) string {
			k = (k + 1) % len(vs)
			var req *model.Request
			var id string
			if path == LocalWorker {
				var err error
				if req, id, err = oip.DecodeRequest(bodies[k], oip.Limits{}); err != nil {
					return "decode"
				}
				if err := md.Validate(req); err != nil {
					return "validate"
				}
			} else {
				req = reqs[k]
			}
			batch := []*model.Request{req}
			resps, err := m.Predict(ctx, batch)
			if err == nil {
				err = model.CheckResponses(batch, resps)
			}
			if err == nil {
				err = resps[0].Err
			}
			if err != nil {
				if ctx.Err() != nil {
					return "canceled"
				}
				return "predict"
			}
			if path == LocalWorker {
				if _, err := oip.EncodeResponse(digitsModel, "1", id, resps[0].Outputs); err != nil {
					return "encode"
				}
			}
			return ""
		}
	}
}

// digits runs the digits phase.
func (b *bench) digits(ctx context.Context) error {
	cfg := b.cfg
	file, instances, err := digitsModelInfo(b.modelsDir)
	if err != nil {
		return err
	}
	vs, err := LoadDigitsVectors(filepath.Join(b.modelsDir, digitsModel, digitsVectorsFile))
	if err != nil {
		return err
	}
	run := &DigitsRun{ModelDir: filepath.Dir(file), Instances: instances, Workers: cfg.DigitsWorkers, Vectors: len(vs)}
	b.rep.Digits = run

	// In process, before the farm starts.
	m, err := onnxmodel.Load(onnxmodel.Config{Path: file, Instances: instances})
	if err != nil {
		return err
	}
	for _, path := range digitsLocalPaths {
		for _, g := range digitsGoroutines(instances) {
			s := b.sampler(map[string]func() []int{})
			var usage *CPUUsage
			res, err := RunClosedLoop(ctx, b.loopConfig(g, s, &usage), localCaller(m, path, vs))
			if err != nil {
				_ = m.Close()
				return err
			}
			res.CPU = usage
			run.Local = append(run.Local, &DigitsLocalRow{Path: path, Goroutines: g, Res: res})
			b.progress(fmt.Sprintf("digits in process, %s, %d goroutine(s)", path, g), res)
		}
	}
	_ = m.Close()

	// Through the farm.
	vurl, err := b.newVhost(ctx, b.vhost+"-digits")
	if err != nil {
		return err
	}
	fc := FarmConfig{
		APIBin: b.apiBin, WorkerBin: b.workerBin, AMQPURL: vurl, ManagementURL: cfg.ManagementURL,
		LogDir: b.logDir, Name: "digits", ModelRepository: b.modelsDir, Models: digitsModel, Model: digitsModel,
		ReadyTimeout: 120 * time.Second,
	}
	_, _ = fmt.Fprintf(b.log, "bench: digits: starting bin/api and %d bin/worker (MODELS=%s)\n", cfg.DigitsWorkers, digitsModel)
	farm, err := StartFarm(ctx, fc, cfg.DigitsWorkers)
	if err != nil {
		return fmt.Errorf("start farm: %w", err)
	}
	defer farm.Stop()
	url := farm.BaseURL + "/v2/models/" + digitsModel + "/infer"
	tr := NewHTTPTransport(1)
	run.Check = CheckDigits(ctx, tr, url, vs)
	tr.CloseIdleConnections()
	_, _ = fmt.Fprintf(b.log, "bench: digits: %d of %d vectors answered with sklearn's class through the farm (max |Δp| %.2g)%s\n",
		run.Check.Matched, run.Check.Vectors, run.Check.MaxDiff, failuresNote(run.Check.Failures))
	for _, c := range cfg.DigitsConcurrency {
		row := &DigitsFarmRow{Concurrency: c, Sum: &Summary{}}
		run.Farm = append(run.Farm, row)
		for r := 1; r <= cfg.Runs; r++ {
			res, err := b.runFarmWith(ctx, farm, c, func(rt http.RoundTripper) func(int) CallFunc {
				return DigitsCaller(rt, url, vs)
			}, nil)
			if err != nil {
				return fmt.Errorf("c=%d run %d: %w", c, r, err)
			}
			row.Sum.Add(res)
			b.progress(fmt.Sprintf("digits farm c=%-3d run %d/%d", c, r, cfg.Runs), res)
		}
	}
	return nil
}

func failuresNote(fs []string) string {
	if len(fs) == 0 {
		return ""
	}
	return fmt.Sprintf("; %d failed, first: %s", len(fs), fs[0])
}

// digitsSteps is the digits phase's progress steps.
func (b *bench) digitsSteps() int {
	n := len(b.cfg.DigitsConcurrency) * b.cfg.Runs
	_, instances, err := digitsModelInfo(b.modelsDir)
	if err != nil {
		instances = 1
	}
	return n + len(digitsLocalPaths)*len(digitsGoroutines(instances))
}
