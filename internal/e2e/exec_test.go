package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestExecBackendThroughTheFarm serves a Python model with the exec backend
// (package execmodel's test child, stdlib only) through the real binaries: it
// answers /v2 infer; killing its child mid-flight answers 502 at once, the
// worker restarts the child and answers again, and the child leaves with the
// worker.
func TestExecBackendThroughTheFarm(t *testing.T) {
	const python = "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Fatalf("%s is needed for the exec backend's test child: %v", python, err)
	}
	pyDir, err := filepath.Abs("../../python")
	if err != nil {
		t.Fatal(err)
	}
	child, err := os.ReadFile("../../pkg/model/execmodel/testdata/child.py")
	if err != nil {
		t.Fatal(err)
	}
	pids := t.TempDir()
	repo := repository(t, map[string]string{
		"pyecho/config.yaml": fmt.Sprintf("backend: exec\ncommand: [%s, child.py]\nenv: {PYTHONPATH: %q, PID_DIR: %q}\ninstances: 1\nload_timeout: 30s\n",
			python, pyDir, pids),
		"pyecho/child.py": string(child),
	}, nil)
	f := newFarm(t, 0, nil, nil)
	w := f.addWorker("MODEL_REPOSITORY="+repo, "MODELS=pyecho", "JOB_RETRY_BACKOFF=100ms")
	f.waitModel("pyecho", "1", true)

	infer := func(body string) response {
		return f.do("POST", "/v2/models/pyecho/infer", body)
	}
	r := infer(`{"id":"one","inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2,3.5]}]}`)
	if r.Status != 200 {
		t.Fatalf("infer: %d %s", r.Status, r.Body)
	}
	var out struct {
		ModelName string `json:"model_name"`
		Outputs   []struct {
			Name string    `json:"name"`
			Data []float64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatal(err)
	}
	if out.ModelName != "pyecho" || len(out.Outputs) != 2 || out.Outputs[0].Name != "y" || fmt.Sprint(out.Outputs[0].Data) != "[2 4 7]" {
		t.Fatalf("answer: %s", r.Body)
	}
	// The model's own refusal is the caller's 400.
	if r := infer(`{"parameters":{"mode":"bad_input"},"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`); r.Status != 400 || !strings.Contains(string(r.Body), "x must be positive") {
		t.Fatalf("bad_input: %d %s", r.Status, r.Body)
	}

	// Kill the child while it computes a slow request: 502 at once.
	pid := onlyPid(t, pids)
	type result struct {
		r  response
		at time.Duration
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		r := infer(`{"parameters":{"mode":"sleep","ms":8000},"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`)
		done <- result{r, time.Since(start)}
	}()
	time.Sleep(700 * time.Millisecond) // the request reaches the child
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill child %d: %v", pid, err)
	}
	res := <-done
	if res.r.Status != 502 || res.at > 4*time.Second {
		t.Fatalf("killed mid-flight: %d after %v: %s", res.r.Status, res.at, res.r.Body)
	}
	t.Logf("child killed mid-flight: 502 after %v: %s", res.at.Round(time.Millisecond), res.r.Body)

	// The worker restarts the child and answers again, without restarting itself.
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := infer(`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[21]}]}`)
		if r.Status == 200 && strings.Contains(string(r.Body), "42") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery: %d %s", r.Status, r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A job whose child is killed under it is retried, and succeeds on the
	// restarted child.
	pid = onlyPidExcept(t, pids, pid)
	j := submitBody(t, f.spec, f.api, `{"model":"pyecho","parameters":{"mode":"sleep","ms":1500},"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[5]}]}`)
	awaitJob(t, f.spec, f.api, j.ID, 10*time.Second, "running", func(j jobBody) bool { return j.Status == "running" })
	time.Sleep(300 * time.Millisecond) // the job reaches the child
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill child %d: %v", pid, err)
	}
	j = awaitJob(t, f.spec, f.api, j.ID, 30*time.Second, "finished", func(j jobBody) bool { return j.FinishedAt != nil })
	if j.Status != "succeeded" || j.Attempts < 2 || !strings.Contains(string(j.Result), "10") {
		t.Fatalf("job after its child was killed: %s, %d attempts, result %s, error %+v", j.Status, j.Attempts, j.Result, j.Error)
	}
	t.Logf("job retried after its child was killed: %s after %d attempts", j.Status, j.Attempts)
	killed := pid

	var ready struct {
		Status string `json:"status"`
	}
	if code, _, _ := getJSON(w.url("/ready"), &ready); code != 200 || ready.Status != "ready" {
		t.Fatalf("worker /ready after recovery: %d %+v", code, ready)
	}
	newPid := onlyPidExcept(t, pids, killed)

	// The child stops with the worker.
	w.signal(syscall.SIGTERM)
	if code := w.wait(30 * time.Second); code != 0 {
		t.Fatalf("worker exit code %d", code)
	}
	if syscall.Kill(newPid, 0) == nil {
		t.Fatalf("child %d outlived the worker", newPid)
	}
}

// onlyPid returns the pid of the one child that wrote its pid file in dir.
func onlyPid(t *testing.T, dir string) int {
	t.Helper()
	return onlyPidExcept(t, dir, 0)
}

// onlyPidExcept returns the pid of the one live child in dir (dead children's
// files stay).
func onlyPidExcept(t *testing.T, dir string, not int) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	var found []int
	for _, f := range files {
		pid, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(f), ".pid"))
		if err == nil && pid != not && syscall.Kill(pid, 0) == nil {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one child's pid in %s (besides %d), found %v", dir, not, found)
	}
	return found[0]
}
