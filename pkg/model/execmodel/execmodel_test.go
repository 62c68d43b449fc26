package execmodel

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/model"
)

// python is Debian's interpreter (the one with python3-sklearn); the test
// children need only the standard library.
const python = "/usr/bin/python3"

// logBuf is a concurrency-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testConfig runs testdata/child.py with env.
func testConfig(t *testing.T, env map[string]string) (Config, *logBuf) {
	t.Helper()
	if _, err := os.Stat(python); err != nil {
		t.Fatalf("%s is needed to run the test children: %v", python, err)
	}
	pyDir, err := filepath.Abs("../../../python")
	if err != nil {
		t.Fatal(err)
	}
	e := map[string]string{"PYTHONPATH": pyDir}
	for k, v := range env {
		e[k] = v
	}
	logs := &logBuf{}
	return Config{
		Name: "test/1", ModelName: "test", Version: "1",
		Command: []string{python, "child.py"}, Env: e, WorkDir: "testdata", ModelDir: "testdata",
		LoadTimeout: 10 * time.Second, StopTimeout: 2 * time.Second,
		RestartBackoff: 20 * time.Millisecond, RestartBackoffMax: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	}, logs
}

func newModel(t *testing.T, cfg Config) *Model {
	t.Helper()
	m, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func req(id string, mode string, xs ...float32) *model.Request {
	r := &model.Request{ID: id, Inputs: []model.Tensor{{Name: "x", Datatype: model.FP32, Shape: []int64{int64(len(xs))}, Data: xs}}}
	if mode != "" {
		r.Parameters = map[string]any{"mode": mode}
	}
	return r
}

func predict(t *testing.T, m *Model, timeout time.Duration, batch ...*model.Request) ([]*model.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return m.Predict(ctx, batch)
}

func wantY(t *testing.T, r *model.Response, want ...float32) {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("item error: %v", r.Err)
	}
	for _, o := range r.Outputs {
		if o.Name == "y" {
			got := o.Data.([]float32)
			if len(got) != len(want) {
				t.Fatalf("y = %v, want %v", got, want)
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("y = %v, want %v", got, want)
				}
			}
			return
		}
	}
	t.Fatalf("no output y in %+v", r.Outputs)
}

// waitHealthy waits until the model reports healthy and answers.
func waitHealthy(t *testing.T, m *Model) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := m.Healthy()
		if err == nil {
			resps, err := predict(t, m, 5*time.Second, req("probe", "", 1))
			if err == nil {
				wantY(t, resps[0], 2)
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the model did not recover: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHappyPath(t *testing.T) {
	cfg, logs := testConfig(t, nil)
	m := newModel(t, cfg)
	md := m.Metadata()
	if md.Platform != "python/test" || len(md.Inputs) != 1 || md.Inputs[0].Name != "x" || len(md.Outputs) != 2 {
		t.Fatalf("metadata = %+v", md)
	}
	if err := m.Healthy(); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
	resps, err := predict(t, m, 5*time.Second, req("a", "", 1, 2, 3))
	if err != nil {
		t.Fatal(err)
	}
	wantY(t, resps[0], 2, 4, 6)
	// Requested outputs are selected, in order.
	r := req("b", "", 5)
	r.Outputs = []string{"n"}
	resps, err = predict(t, m, 5*time.Second, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(resps[0].Outputs) != 1 || resps[0].Outputs[0].Name != "n" {
		t.Fatalf("outputs = %+v, want n only", resps[0].Outputs)
	}
	// The load's print() went to the log, tagged with the model.
	waitLog(t, logs, "stdout noise at load", "model=test/1")
}

// waitLog waits until the log holds every one of want: the children's output is
// logged as it comes, independently of the answers.
func waitLog(t *testing.T, logs *logBuf, want ...string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		s := logs.String()
		all := true
		for _, w := range want {
			all = all && strings.Contains(s, w)
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log lacks %q:\n%s", want, s)
		}
	}
}

func TestBatchOfSeveral(t *testing.T) {
	cfg, _ := testConfig(t, map[string]string{"MAX_BATCH": "2"})
	m := newModel(t, cfg)
	if m.MaxBatchSize() != 2 {
		t.Fatalf("MaxBatchSize = %d, want 2", m.MaxBatchSize())
	}
	batch := []*model.Request{req("a", "", 1), req("b", "", 2, 3), req("c", "", 4), req("d", "", 5), req("e", "", 6)}
	resps, err := predict(t, m, 5*time.Second, batch...)
	if err != nil {
		t.Fatal(err)
	}
	if len(resps) != 5 {
		t.Fatalf("%d responses", len(resps))
	}
	want := [][]float32{{2}, {4, 6}, {8}, {10}, {12}}
	for i := range resps {
		wantY(t, resps[i], want[i]...)
	}
	// n is the size of the frame the child saw: 2, 2, 1 (max_batch_size 2).
	for i, wantN := range []int64{2, 2, 2, 2, 1} {
		var n int64 = -1
		for _, o := range resps[i].Outputs {
			if o.Name == "n" {
				n = o.Data.([]int64)[0]
			}
		}
		if n != wantN {
			t.Fatalf("item %d was in a frame of %d, want %d", i, n, wantN)
		}
	}
}

func TestPerItemErrors(t *testing.T) {
	cfg, _ := testConfig(t, nil)
	m := newModel(t, cfg)
	bad := &model.Request{ID: "misfit", Inputs: []model.Tensor{{Name: "z", Datatype: model.FP32, Shape: []int64{1}, Data: []float32{1}}}}
	resps, err := predict(t, m, 5*time.Second, req("ok", "", 1), req("err", "item_error", 1), req("bad", "bad_input", 1), bad)
	if err != nil {
		t.Fatal(err)
	}
	wantY(t, resps[0], 2)
	if e := resps[1].Err; e == nil || errors.Is(e, model.ErrBadInput) || !strings.Contains(e.Error(), "item failed on purpose") {
		t.Fatalf("item_error: %v", e)
	}
	if e := resps[2].Err; !errors.Is(e, model.ErrBadInput) || !strings.Contains(e.Error(), "x must be positive") {
		t.Fatalf("bad_input: %v", e)
	}
	if e := resps[3].Err; !errors.Is(e, model.ErrBadInput) || !strings.Contains(e.Error(), `"z"`) {
		t.Fatalf("misfit: %v", e)
	}
	// A whole-batch failure is the batch's error; the child stays up.
	_, err = predict(t, m, 5*time.Second, req("x", "batch_error", 1))
	if err == nil || errors.Is(err, model.ErrUnavailable) || !strings.Contains(err.Error(), "the whole batch failed on purpose") {
		t.Fatalf("batch_error: %v", err)
	}
	resps, err = predict(t, m, 5*time.Second, req("after", "", 7))
	if err != nil {
		t.Fatal(err)
	}
	wantY(t, resps[0], 14)
}

func TestCrashMidBatch(t *testing.T) {
	cfg, logs := testConfig(t, nil)
	m := newModel(t, cfg)
	start := time.Now()
	_, err := predict(t, m, 10*time.Second, req("ok", "", 1), req("boom", "crash", 1))
	if !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the crash took %v to report, want at once", d)
	}
	if !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "crashing on purpose") {
		t.Fatalf("the error does not say how the child died: %v", err)
	}
	waitHealthy(t, m)
	waitLog(t, logs, "child exited; restarting it")
}

func TestHangPastDeadline(t *testing.T) {
	cfg, _ := testConfig(t, nil)
	m := newModel(t, cfg)
	start := time.Now()
	_, err := predict(t, m, 300*time.Millisecond, req("slow", "hang", 1))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the hang took %v to fail, want about the 300ms deadline", d)
	}
	waitHealthy(t, m)
}

func TestGarbageFrame(t *testing.T) {
	cfg, _ := testConfig(t, nil)
	m := newModel(t, cfg)
	_, err := predict(t, m, 10*time.Second, req("g", "garbage", 1))
	if !errors.Is(err, model.ErrUnavailable) || !strings.Contains(err.Error(), "protocol error") {
		t.Fatalf("err = %v, want ErrUnavailable with a protocol error", err)
	}
	waitHealthy(t, m)
}

func TestExitAtLoad(t *testing.T) {
	cfg, _ := testConfig(t, map[string]string{"EXIT_AT_LOAD": "1"})
	_, err := New(context.Background(), cfg)
	if !errors.Is(err, model.ErrUnavailable) || !strings.Contains(err.Error(), "exit status 2") || !strings.Contains(err.Error(), "exiting at load on purpose") {
		t.Fatalf("err = %v, want ErrUnavailable naming the exit and the stderr", err)
	}
	cfg, _ = testConfig(t, map[string]string{"FAIL_LOAD": "1"})
	_, err = New(context.Background(), cfg)
	if !errors.Is(err, model.ErrUnavailable) || !strings.Contains(err.Error(), "weights.bin is missing") {
		t.Fatalf("err = %v, want ErrUnavailable with load's exception", err)
	}
	// A command that cannot run is permanent.
	cfg, _ = testConfig(t, nil)
	cfg.Command = []string{"/nonexistent/python"}
	_, err = New(context.Background(), cfg)
	if err == nil || errors.Is(err, model.ErrUnavailable) || !strings.Contains(err.Error(), "command") {
		t.Fatalf("err = %v, want a permanent command error", err)
	}
}

func TestLoadTimeout(t *testing.T) {
	cfg, _ := testConfig(t, nil)
	cfg.Command = []string{python, "-c", "import time; time.sleep(60)"}
	cfg.LoadTimeout = 300 * time.Millisecond
	start := time.Now()
	_, err := New(context.Background(), cfg)
	if !errors.Is(err, model.ErrUnavailable) || !strings.Contains(err.Error(), "load_timeout") {
		t.Fatalf("err = %v, want ErrUnavailable naming load_timeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("New took %v", d)
	}
}

func TestStdoutNoiseHarmless(t *testing.T) {
	cfg, logs := testConfig(t, nil)
	m := newModel(t, cfg)
	resps, err := predict(t, m, 10*time.Second, req("n", "noise", 4))
	if err != nil {
		t.Fatal(err)
	}
	wantY(t, resps[0], 8)
	waitLog(t, logs, "noise 99", "more noise 99", "stream=stderr")
}

func TestInstancesServeConcurrently(t *testing.T) {
	cfg, _ := testConfig(t, nil)
	cfg.Instances = 3
	m := newModel(t, cfg)
	slow := func(id string) *model.Request {
		r := req(id, "sleep", 1)
		r.Parameters["ms"] = 400.0
		return r
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range 3 {
		wg.Go(func() { _, errs[i] = predict(t, m, 5*time.Second, slow(strconv.Itoa(i))) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 1100*time.Millisecond {
		t.Fatalf("3 calls of 400ms on 3 children took %v: not concurrent", d)
	}
}

func TestCrashLoopBackoffAndUnready(t *testing.T) {
	dir := t.TempDir()
	startLog := filepath.Join(dir, "starts")
	cfg, logs := testConfig(t, map[string]string{"EXIT_AFTER_READY_MS": "30", "START_LOG": startLog})
	cfg.MaxFailures = 3
	cfg.StableAfter = 5 * time.Second
	cfg.RestartBackoff = 100 * time.Millisecond
	cfg.RestartBackoffMax = 800 * time.Millisecond
	m := newModel(t, cfg)
	starts := func() []float64 {
		data, _ := os.ReadFile(startLog)
		var times []float64
		for _, l := range strings.Fields(string(data)) {
			f, _ := strconv.ParseFloat(l, 64)
			times = append(times, f)
		}
		return times
	}
	// Wait for 6 starts: the restart delays are then 100, 200, 400, 800, 800 ms.
	deadline := time.Now().Add(40 * time.Second)
	for len(starts()) < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d starts", len(starts()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Crash-looping: unhealthy, even in the moments a child is up.
	for range 30 {
		if err := m.Healthy(); err == nil {
			t.Fatal("healthy while the children keep dying")
		} else if !errors.Is(err, model.ErrUnavailable) {
			t.Fatalf("Healthy: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The starts are spaced by a growing, capped backoff. The child's own start
	// time is in every gap, so compare differences, not ratios.
	times := starts()
	first := times[2] - times[1]
	later := times[5] - times[4]
	if later-first < 0.45 {
		t.Fatalf("the restart gaps do not grow: %.3fs then %.3fs (%v)", first, later, times)
	}
	waitLog(t, logs, "child exited; restarting it")
}

func TestCloseStopsChildren(t *testing.T) {
	dir := t.TempDir()
	cfg, _ := testConfig(t, map[string]string{"PID_DIR": dir})
	cfg.Instances = 2
	m, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	pids, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	if len(pids) != 2 {
		t.Fatalf("%d children, want 2", len(pids))
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range pids {
		pid, _ := strconv.Atoi(strings.TrimSuffix(filepath.Base(p), ".pid"))
		if processAlive(pid) {
			t.Fatalf("child %d still alive after Close", pid)
		}
	}
	if _, err := predict(t, m, time.Second, req("late", "", 1)); !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("Predict after Close: %v", err)
	}
	if err := m.Healthy(); err == nil {
		t.Fatal("healthy after Close")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "command: required"},
		{Config{Command: []string{"x"}, Instances: -1}, "instances"},
		{Config{Command: []string{"x"}, Env: map[string]string{"A=B": "1"}}, "env"},
		{Config{Command: []string{"x"}, LoadTimeout: -1}, "load_timeout"},
	} {
		if _, err := New(context.Background(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}

func TestExpiredRequestSparesTheChild(t *testing.T) {
	dir := t.TempDir()
	cfg, _ := testConfig(t, map[string]string{"PID_DIR": dir})
	m := newModel(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Predict(ctx, []*model.Request{req("late", "", 1)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want the context's", err)
	}
	resps, err := predict(t, m, 5*time.Second, req("next", "", 2))
	if err != nil {
		t.Fatal(err)
	}
	wantY(t, resps[0], 4)
	if pids, _ := filepath.Glob(filepath.Join(dir, "*.pid")); len(pids) != 1 {
		t.Fatalf("%d children started, want 1 (the expired request killed one?)", len(pids))
	}
}
