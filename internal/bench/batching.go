package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/warren-farm/warren/pkg/batch"
	"github.com/warren-farm/warren/pkg/model"
)

// The batch phase measures dynamic batching: the same models with batching
// (max_batch_size BatchSize, max_batch_delay BatchDelay) and without
// (max_batch_size 1), served by the same worker of one farm, called in turn
// (unbatched, batched, unbatched, …) by closed loops of BatchConcurrency
// callers on POST /v2/models/<model>/infer:
//
//   - sim and sim1: the seed backend with a cost fixed per batch plus a little
//     per item (latency BatchLatency, item_latency BatchItemLatency): a model
//     whose batch costs about as much as one request, as a GPU's does;
//   - digits and digits1: the repository's digits ONNX model (its model.onnx),
//     whatever batching gains on a CPU.
//
// Both models of a pair have the models' concurrency BatchModelConcurrency. The
// worker's own metrics give each batched run's mean batch size and batch
// compute time; the p99 bound is max_batch_delay + 2 × that compute time.

// Model names of the batch phase's repository.
const (
	batchSim      = "sim"
	batchSim1     = "sim1"
	batchDigits   = "digits"
	batchDigits1  = "digits1"
	batchVariantB = "batched"
	batchVariant1 = "max_batch_size 1"
)

// BatchRow is one model and variant of the batch phase.
type BatchRow struct {
	Model, Variant string
	Served         string // the model name called
	MaxBatchSize   int
	Sum            *Summary
	// MeanBatch and MeanCompute are the worker's mean batch size and time per
	// Predict call over the measured runs (warm-up included).
	MeanBatch   float64
	MeanCompute time.Duration
	// InWorker is the API's histogram of the calls' time in the worker (a
	// handler taking the request to its reply: batch wait and compute
	// included), cumulative counts by upper bound, over the runs.
	InWorker map[float64]float64
}

// inWorkerShare returns the largest histogram bound at or under limit and the
// share of calls the worker answered within it (0, 0 when none).
func (r *BatchRow) inWorkerShare(limit time.Duration) (float64, float64) {
	total := r.InWorker[math.Inf(1)]
	best := 0.0
	for le := range r.InWorker {
		if le <= limit.Seconds() && le > best {
			best = le
		}
	}
	if total == 0 || best == 0 {
		return 0, 0
	}
	return best, r.InWorker[best] / total
}

// BatchRun is the batch phase's result.
type BatchRun struct {
	Rows []*BatchRow
	// Local are the simulated model's closed loops in this process, straight
	// on pkg/batch (no HTTP, no broker): max_batch_size 1, then batched.
	Local []*BatchLocalRow
}

// BatchLocalRow is one in-process closed loop of the batch phase.
type BatchLocalRow struct {
	MaxBatchSize int
	Res          *Result
	Batches      int64
	Items        int64
}

func (r *BatchRun) row(model, variant string) *BatchRow {
	for _, row := range r.Rows {
		if row.Model == model && row.Variant == variant {
			return row
		}
	}
	return nil
}

// batchRepository writes the phase's model repository under dir.
func (b *bench) batchRepository(dir string) error {
	c := b.cfg
	common := fmt.Sprintf("concurrency: %d\n", c.BatchModelConcurrency)
	batched := fmt.Sprintf("max_batch_size: %d\nmax_batch_delay: %s\n", c.BatchSize, c.BatchDelay)
	sim := fmt.Sprintf("backend: seed\nlatency: %s\nitem_latency: %s\n", c.BatchLatency, c.BatchItemLatency)
	files := map[string]string{
		batchSim + "/config.yaml":     sim + common + batched,
		batchSim1 + "/config.yaml":    sim + common + "max_batch_size: 1\n",
		batchDigits + "/config.yaml":  "backend: onnx\n" + common + batched,
		batchDigits1 + "/config.yaml": "backend: onnx\n" + common + "max_batch_size: 1\n",
	}
	for p, body := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(body), 0o644); err != nil {
			return err
		}
	}
	onnx, err := os.ReadFile(filepath.Join(b.modelsDir, digitsModel, "1", "model.onnx"))
	if err != nil {
		return err
	}
	for _, m := range []string{batchDigits, batchDigits1} {
		if err := os.MkdirAll(filepath.Join(dir, m, "1"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, m, "1", "model.onnx"), onnx, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// batch runs the batch phase.
func (b *bench) batch(ctx context.Context) error {
	cfg := b.cfg
	vs, err := LoadDigitsVectors(filepath.Join(b.modelsDir, digitsModel, digitsVectorsFile))
	if err != nil {
		return err
	}
	repo, err := os.MkdirTemp("", "warren-bench-batch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(repo)
	if err := b.batchRepository(repo); err != nil {
		return err
	}
	run := &BatchRun{}
	b.rep.Batch = run
	// In process first, before the farm starts: the batcher's own latency, with
	// nothing of the transport in it.
	for _, size := range []int{1, cfg.BatchSize} {
		row, err := b.batchLocal(ctx, size)
		if err != nil {
			return err
		}
		run.Local = append(run.Local, row)
	}

	vurl, err := b.newVhost(ctx, b.vhost+"-batch")
	if err != nil {
		return err
	}
	models := strings.Join([]string{batchSim, batchSim1, batchDigits, batchDigits1}, ",")
	fc := FarmConfig{
		APIBin: b.apiBin, WorkerBin: b.workerBin, AMQPURL: vurl, ManagementURL: cfg.ManagementURL,
		LogDir: b.logDir, Name: "batch", ModelRepository: repo, Models: models, Model: batchSim,
		ReadyTimeout: 120 * time.Second,
	}
	_, _ = fmt.Fprintf(b.log, "bench: batch: starting bin/api and %d bin/worker (MODELS=%s)\n", cfg.BatchWorkers, models)
	farm, err := StartFarm(ctx, fc, cfg.BatchWorkers)
	if err != nil {
		return fmt.Errorf("start farm: %w", err)
	}
	defer farm.Stop()
	for _, m := range []string{batchSim, batchSim1, batchDigits, batchDigits1} {
		if err := waitModelReady(ctx, farm.BaseURL, m, cfg.BatchWorkers); err != nil {
			return err
		}
	}
	type pair struct{ model, batched, single string }
	for _, p := range []pair{{"simulated", batchSim, batchSim1}, {"digits (onnx)", batchDigits, batchDigits1}} {
		rows := map[string]*BatchRow{
			batchVariant1: {Model: p.model, Variant: batchVariant1, Served: p.single, MaxBatchSize: 1, Sum: &Summary{}},
			batchVariantB: {Model: p.model, Variant: batchVariantB, Served: p.batched, MaxBatchSize: cfg.BatchSize, Sum: &Summary{}},
		}
		run.Rows = append(run.Rows, rows[batchVariant1], rows[batchVariantB])
		var batchSum, batchCount, computeSum, computeCount float64
		for r := 1; r <= cfg.Runs; r++ {
			for _, v := range []string{batchVariant1, batchVariantB} {
				row := rows[v]
				url := farm.BaseURL + "/v2/models/" + row.Served + "/infer"
				before, err := farm.batchMetrics(ctx, row.Served)
				if err != nil {
					return err
				}
				stagesBefore, err := computeStage(ctx, farm.BaseURL, row.Served)
				if err != nil {
					return err
				}
				res, err := b.runFarmWith(ctx, farm, cfg.BatchConcurrency, func(rt http.RoundTripper) func(int) CallFunc {
					if row.Served == batchSim || row.Served == batchSim1 {
						return SeedInferCaller(rt, url)
					}
					return DigitsCaller(rt, url, vs)
				}, nil)
				if err != nil {
					return fmt.Errorf("%s c=%d run %d: %w", row.Served, cfg.BatchConcurrency, r, err)
				}
				after, err := farm.batchMetrics(ctx, row.Served)
				if err != nil {
					return err
				}
				stagesAfter, err := computeStage(ctx, farm.BaseURL, row.Served)
				if err != nil {
					return err
				}
				if row.InWorker == nil {
					row.InWorker = map[float64]float64{}
				}
				for le, n := range stagesAfter {
					row.InWorker[le] += n - stagesBefore[le]
				}
				row.Sum.Add(res)
				if v == batchVariantB {
					batchSum += after.batchSum - before.batchSum
					batchCount += after.batchCount - before.batchCount
					computeSum += after.computeSum - before.computeSum
					computeCount += after.computeCount - before.computeCount
				}
				b.progress(fmt.Sprintf("batch %s %s c=%d run %d/%d", row.Served, v, cfg.BatchConcurrency, r, cfg.Runs), res)
			}
		}
		if batchCount > 0 {
			rows[batchVariantB].MeanBatch = batchSum / batchCount
		}
		if computeCount > 0 {
			rows[batchVariantB].MeanCompute = time.Duration(computeSum / computeCount * float64(time.Second))
		}
	}
	return nil
}

// batchSteps is the batch phase's progress steps.
func (b *bench) batchSteps() int { return 2*2*b.cfg.Runs + 2 }

// batchLocal runs the simulated model through a pkg/batch batcher in this
// process: BatchConcurrency callers, each sending its own string and checking
// that the answer is its own (the input's length and the seed model's class).
func (b *bench) batchLocal(ctx context.Context, size int) (*BatchLocalRow, error) {
	cfg := b.cfg
	seed := model.NewSeed(model.SeedConfig{Latency: cfg.BatchLatency, ItemLatency: cfg.BatchItemLatency})
	row := &BatchLocalRow{MaxBatchSize: size}
	var batches, items atomic.Int64
	delay := cfg.BatchDelay
	if size == 1 {
		delay = 0
	}
	bt, err := batch.New(batch.Config{MaxSize: size, MaxDelay: delay, Concurrency: cfg.BatchModelConcurrency,
		Predict: func(ctx context.Context, reqs []*model.Request) ([]*model.Response, error) {
			batches.Add(1)
			items.Add(int64(len(reqs)))
			return seed.Predict(ctx, reqs)
		}})
	if err != nil {
		return nil, err
	}
	defer func() { _ = bt.Close(context.Background()) }()
	s := b.sampler(map[string]func() []int{})
	var usage *CPUUsage
	res, err := RunClosedLoop(ctx, b.loopConfig(cfg.BatchConcurrency, s, &usage), func(i int) CallFunc {
		var seq uint64
		return func(ctx context.Context) string {
			seq++
			in := "bench-" + strconv.Itoa(i) + "-" + strconv.FormatUint(seq, 10)
			resp, err := bt.Do(ctx, &model.Request{Inputs: []model.Tensor{{Name: model.SeedInput, Datatype: model.BYTES,
				Shape: []int64{1}, Data: []string{in}}}})
			if err != nil {
				if ctx.Err() != nil {
					return "cancelled"
				}
				return "error"
			}
			for _, o := range resp.Outputs {
				if o.Name == model.SeedInputLength {
					if n, ok := o.Data.([]int64); !ok || len(n) != 1 || n[0] != int64(len(in)) {
						return "wrong-answer"
					}
				}
			}
			return ""
		}
	})
	if err != nil {
		return nil, err
	}
	res.CPU = usage
	row.Res, row.Batches, row.Items = res, batches.Load(), items.Load()
	b.progress(fmt.Sprintf("batch in process, max_batch_size %d, c=%d", size, cfg.BatchConcurrency), res)
	return row, nil
}

// waitModelReady waits until the API says model's version 1 has n workers
// ready.
func waitModelReady(ctx context.Context, base, model string, n int) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		var rb readyBody
		if err := getJSONInto(ctx, base+"/ready", &rb); err == nil && rb.workersOf(model) >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("model %s never had %d ready worker(s)", model, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// getJSONInto GETs url and decodes its JSON body into into.
func getJSONInto(ctx context.Context, url string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	return json.NewDecoder(res.Body).Decode(into)
}

// batchCounters are one model's sums and counts in the workers' metrics.
type batchCounters struct {
	batchSum, batchCount, computeSum, computeCount float64
}

// batchMetrics sums model's batch size and model duration histograms over the
// farm's workers' /metrics.
func (f *Farm) batchMetrics(ctx context.Context, model string) (batchCounters, error) {
	var c batchCounters
	for _, addr := range f.WorkerAddrs() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
		if err != nil {
			return c, err
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return c, fmt.Errorf("worker metrics: %w", err)
		}
		err = parseBatchMetrics(res.Body, model, &c)
		_ = res.Body.Close()
		if err != nil {
			return c, err
		}
	}
	return c, nil
}

// parseBatchMetrics adds model's request-queue batch size and model duration
// sums and counts from a Prometheus text exposition to c.
func parseBatchMetrics(r io.Reader, model string, c *batchCounters) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	label := `model="` + model + `"`
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, label) {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		reqQueue := strings.Contains(line, `queue="warren.req.`)
		switch name {
		case "warren_worker_batch_size_sum":
			if reqQueue {
				c.batchSum += v
			}
		case "warren_worker_batch_size_count":
			if reqQueue {
				c.batchCount += v
			}
		case "warren_worker_model_duration_seconds_sum":
			c.computeSum += v
		case "warren_worker_model_duration_seconds_count":
			c.computeCount += v
		}
	}
	return sc.Err()
}

// computeStage reads the API's warren_rpc_stage_duration_seconds buckets of
// stage compute for model: cumulative counts by upper bound (+Inf included).
func computeStage(ctx context.Context, base, model string) (map[float64]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("API metrics: %w", err)
	}
	defer res.Body.Close()
	return parseComputeStage(res.Body, model)
}

// parseComputeStage is computeStage's parser of a Prometheus text exposition.
func parseComputeStage(r io.Reader, model string) (map[float64]float64, error) {
	out := map[float64]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "warren_rpc_stage_duration_seconds_bucket{") ||
			!strings.Contains(line, `model="`+model+`"`) || !strings.Contains(line, `stage="compute"`) {
			continue
		}
		_, rest, ok := strings.Cut(line, `le="`)
		if !ok {
			continue
		}
		leStr, _, _ := strings.Cut(rest, `"`)
		le, err := strconv.ParseFloat(leStr, 64) // "+Inf" parses as +Inf
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[le] += v
	}
	return out, sc.Err()
}

// PrintBatch prints the batch phase's table and verdicts.
func (r *Report) PrintBatch(w io.Writer) {
	d, c := r.Batch, r.Cfg
	if d == nil {
		return
	}
	p := func(format string, a ...any) { _, _ = fmt.Fprintf(w, format+"\n", a...) }
	p("batching: dynamic batching against max_batch_size 1, the same farm (bin/api + %d × bin/worker), called in turn,", c.BatchWorkers)
	p("  closed loop of %d callers on POST /v2/models/<model>/infer; each model's concurrency %d; batched: max_batch_size %d,", c.BatchConcurrency, c.BatchModelConcurrency, c.BatchSize)
	p("  max_batch_delay %v; %v warm-up, %v measured, median of %d run(s)", c.BatchDelay, c.Warmup, c.Duration, c.Runs)
	p("  simulated: the seed backend, latency %v per batch + item_latency %v per request; digits: models/digits/1/model.onnx", c.BatchLatency, c.BatchItemLatency)
	if len(d.Local) > 0 {
		p("  in process: the simulated model behind a pkg/batch batcher in this process, no HTTP and no broker:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		_, _ = fmt.Fprintln(tw, "max_batch_size\treq/s\tp50\tp99\tmean batch\tfailures\t")
		for _, row := range d.Local {
			mean := 0.0
			if row.Batches > 0 {
				mean = float64(row.Items) / float64(row.Batches)
			}
			_, _ = fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%.1f\t%s\t\n", row.MaxBatchSize, fmtRate(row.Res.RPS()), fmtDur(row.Res.Percentile(50)),
				fmtDur(row.Res.Percentile(99)), mean, fmtFailures(row.Res.Failures))
		}
		_ = tw.Flush()
		if n := len(d.Local); n == 2 && d.Local[0].Res.RPS() > 0 && d.Local[1].Batches > 0 {
			bat := d.Local[1]
			compute := c.BatchLatency + time.Duration(float64(c.BatchItemLatency)*float64(bat.Items)/float64(bat.Batches))
			bound := c.BatchDelay + 2*compute
			verdict := "MISS"
			if bat.Res.Percentile(99) <= bound {
				verdict = "PASS"
			}
			p("  in process: batching gives %s the throughput; batched p99 %s ≤ max_batch_delay + 2 × batch compute = %v + 2 × %s = %s [%s]",
				fmtRatio(bat.Res.RPS()/d.Local[0].Res.RPS()), fmtDur(bat.Res.Percentile(99)), c.BatchDelay, fmtDur(compute), fmtDur(bound), verdict)
		}
		p("  through the farm:")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "model\tvariant\treq/s\tp50\tp99\tmean batch\tbatch compute\tfailures\t")
	for _, row := range d.Rows {
		mb, mc := "1", "-"
		if row.Variant == batchVariantB {
			mb = strconv.FormatFloat(row.MeanBatch, 'f', 1, 64)
			mc = fmtDur(row.MeanCompute)
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", row.Model, row.Variant, fmtRate(row.Sum.RPS()),
			fmtDur(row.Sum.Percentile(50)), fmtDur(row.Sum.Percentile(99)), mb, mc, fmtFailures(row.Sum.Failures()))
	}
	_ = tw.Flush()
	for _, m := range []string{"simulated", "digits (onnx)"} {
		one, bat := d.row(m, batchVariant1), d.row(m, batchVariantB)
		if one == nil || bat == nil || one.Sum.RPS() == 0 {
			continue
		}
		ratio := bat.Sum.RPS() / one.Sum.RPS()
		line := fmt.Sprintf("  %s: batching gives %s the throughput of max_batch_size 1", m, fmtRatio(ratio))
		if m == "simulated" {
			verdict := "MISS"
			if ratio >= 4 {
				verdict = "PASS"
			}
			line += fmt.Sprintf(" [%s: target ≥ 4×]", verdict)
		}
		p("%s", line)
		if m == "simulated" && bat.MeanCompute > 0 {
			bound := c.BatchDelay + 2*bat.MeanCompute
			p99 := bat.Sum.Percentile(99)
			verdict := "MISS"
			if p99 <= bound {
				verdict = "PASS"
			}
			p("  %s: batched p99 %s ≤ max_batch_delay + 2 × batch compute = %v + 2 × %s = %s [%s]", m, fmtDur(p99), c.BatchDelay,
				fmtDur(bat.MeanCompute), fmtDur(bound), verdict)
			if le, share := bat.inWorkerShare(bound); le > 0 {
				p("  %s: in the worker (a handler taking the request → its reply; the API's compute stage): %.2f%% within %s,", m, 100*share,
					fmtDur(time.Duration(le*float64(time.Second))))
				p("    the histogram's nearest bound under the p99 bound")
			}
		}
	}
	p("")
}
