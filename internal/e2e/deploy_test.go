package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warren-farm/warren/internal/testbroker"
)

// runHealthcheck runs `<binary> healthcheck [args]` with HTTP_ADDR=addr, as Docker's
// HEALTHCHECK does, and returns its exit code and output.
func runHealthcheck(t *testing.T, binary, addr string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binaries(t), binary), append([]string{"healthcheck"}, args...)...)
	cmd.Env = append(os.Environ(), "HTTP_ADDR="+addr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("%s healthcheck: %v", binary, err)
		}
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// The images' HEALTHCHECK is the binaries' own subcommand: it must pass on a ready
// process, fail (exit 1) on one that is up but not ready and on a stopped one.
func TestHealthcheckSubcommand(t *testing.T) {
	f := newFarm(t, 1, nil, nil)
	if code, out := runHealthcheck(t, "api", f.api.addr); code != 0 {
		t.Errorf("api healthcheck on a ready API: exit %d: %s", code, out)
	}
	if code, out := runHealthcheck(t, "worker", f.workers[0].addr); code != 0 {
		t.Errorf("worker healthcheck on a ready worker: exit %d: %s", code, out)
	}

	// An API whose broker cannot be reached is alive but not ready.
	closed := freeAddr(t)
	api := startProc(t, "api", "AMQP_URL=amqp://guest:guest@"+closed+"/", "MANAGEMENT_URL=")
	code, out := runHealthcheck(t, "api", api.addr)
	if code != 1 || !strings.Contains(out, "503") {
		t.Errorf("api healthcheck without a broker: exit %d, want 1 naming the 503: %s", code, out)
	}
	if code, out := runHealthcheck(t, "api", api.addr, "/health"); code != 0 {
		t.Errorf("api healthcheck /health without a broker: exit %d: %s", code, out)
	}

	w := f.workers[0]
	w.signal(syscall.SIGTERM)
	if code := w.wait(30 * time.Second); code != 0 {
		t.Fatalf("worker exit code %d", code)
	}
	if code, out := runHealthcheck(t, "worker", w.addr); code != 1 {
		t.Errorf("worker healthcheck on a stopped worker: exit %d, want 1: %s", code, out)
	}
	if code, _ := runHealthcheck(t, "worker", w.addr, "/metrics"); code != 2 {
		t.Errorf("worker healthcheck /metrics: exit %d, want 2 (usage)", code)
	}
}

// freePortRun returns a port p such that p..p+n-1 are all free on loopback.
func freePortRun(t *testing.T, n int) int {
	t.Helper()
	for try := 0; try < 100; try++ {
		base := 20000 + rand.IntN(30000)
		ok := true
		for i := 0; i < n && ok; i++ {
			ln, err := net.Listen("tcp", ":"+strconv.Itoa(base+i))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no run of %d free ports", n)
	return 0
}

// `make run WORKERS=4` is the README's way to run the farm without Docker: the same
// topology as docker-compose.yml, as local processes. Started as a user starts it
// (make, in a process group of its own, as a terminal does), it must serve from all
// four workers, write the Prometheus targets, and stop everything on Ctrl-C.
func TestMakeRunWorkers(t *testing.T) {
	integration(t)
	const workers = 4
	vh := testbroker.NewVhost(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	apiAddr := freeAddr(t)
	base := freePortRun(t, workers)
	targets := filepath.Join(dir, "targets.json")

	cmd := exec.Command("make", "-C", root, "--no-print-directory", "run", "WORKERS="+strconv.Itoa(workers), "BIN="+filepath.Join(dir, "bin"))
	cmd.Env = append(os.Environ(),
		"AMQP_URL="+vh.AMQPURL, "MANAGEMENT_URL="+vh.ManagementURL,
		"API_ADDR="+apiAddr, "WORKER_PORT="+strconv.Itoa(base),
		"DATA_DIR="+filepath.Join(dir, "data"), "PROMETHEUS_TARGETS="+targets)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-pgid, syscall.SIGKILL) // whatever is left, if the test failed early
		if t.Failed() {
			t.Logf("--- make run output ---\n%s", out.String())
		}
	})

	// The build comes first; allow for a cold build cache.
	deadline := time.Now().Add(4 * time.Minute)
	api := "http://" + apiAddr
	for {
		var rb struct{ Workers int }
		if code, _, err := getJSON(api+"/ready", &rb); err == nil && code == 200 && rb.Workers == workers {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("make run exited early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("API not ready with %d workers in time", workers)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{"warren is starting", fmt.Sprintf("%d worker(s) on ports %d..%d", workers, base, base+workers-1), "curl"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("make run should print %q", want)
		}
	}

	// Every worker answers /process traffic, and its own /health and /metrics.
	seen := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				body := fmt.Sprintf(`{"data":"make run %d/%d"}`, g, i)
				resp, err := http.Post(api+"/process", "application/json", strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				var m struct {
					ModelPrediction struct {
						WorkerID string `json:"worker_id"`
					} `json:"model_prediction"`
				}
				err = json.NewDecoder(resp.Body).Decode(&m)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || m.ModelPrediction.WorkerID == "" {
					t.Errorf("/process: %d %+v %v", resp.StatusCode, m, err)
					return
				}
				mu.Lock()
				seen[m.ModelPrediction.WorkerID]++
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	for i := 0; i < workers; i++ {
		id := fmt.Sprintf("worker-%d", i)
		if seen[id] == 0 {
			t.Errorf("%s answered no request (answers by worker: %v)", id, seen)
		}
		for _, path := range []string{"/health", "/metrics"} {
			if code, err := get(fmt.Sprintf("http://127.0.0.1:%d%s", base+i, path)); err != nil || code != 200 {
				t.Errorf("%s %s: %d %v", id, path, code, err)
			}
		}
	}

	// The Prometheus file_sd targets name the API, all four workers and RabbitMQ.
	var groups []struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	raw, err := os.ReadFile(targets)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &groups); err != nil {
		t.Fatalf("targets file: %v\n%s", err, raw)
	}
	byRole := map[string][]string{}
	for _, g := range groups {
		byRole[g.Labels["__meta_warren_role"]] = g.Targets
	}
	if len(byRole["worker"]) != workers || len(byRole["api"]) != 1 || len(byRole["rabbitmq"]) != 1 {
		t.Errorf("targets by role: %v", byRole)
	}

	// Ctrl-C: the terminal sends SIGINT to the whole foreground process group.
	if err := syscall.Kill(-pgid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("make run did not stop within 60 s of Ctrl-C")
	}
	// Nothing of the group is left: every port is closed, no process remains.
	for _, addr := range append([]string{apiAddr}, workerAddrs(base, workers)...) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Ctrl-C", addr)
		}
	}
	if err := syscall.Kill(-pgid, 0); err == nil {
		t.Errorf("processes of make run's group are still alive after it exited")
	}
	if !strings.Contains(out.String(), "stopping") {
		t.Errorf("make run should say it is stopping")
	}
}

func workerAddrs(base, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("127.0.0.1:%d", base+i))
	}
	return out
}

func get(url string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}
