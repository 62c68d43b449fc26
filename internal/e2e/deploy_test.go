package e2e

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// makeRun is `make run` started as a user starts it: make, in a process group of its
// own (as a terminal runs it), on free loopback ports and in a vhost of its own.
type makeRun struct {
	t       *testing.T
	pgid    int
	out     *syncBuffer
	done    chan struct{}
	err     error // make's exit, once done is closed
	apiPort int
	base    int // the first worker's port
	targets string
	// apiPortTaken: the test itself listens on apiPort.
	apiPortTaken bool
}

// startMakeRun builds the binaries (so that timings below do not include a cold build),
// then starts `make run WORKERS=workers` with extra make variables and environment.
func startMakeRun(t *testing.T, workers int, makeVars []string, env ...string) *makeRun {
	t.Helper()
	integration(t)
	vh := testbroker.NewVhost(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if out, err := exec.Command("make", "-C", root, "--no-print-directory", "build", "BIN="+bin).CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	_, port, _ := net.SplitHostPort(freeAddr(t))
	m := &makeRun{t: t, out: &syncBuffer{}, done: make(chan struct{}), base: freePortRun(t, max(workers, 1)),
		targets: filepath.Join(dir, "targets.json")}
	for _, kv := range env { // a test may choose the API port (the last value wins)
		if p, ok := strings.CutPrefix(kv, "API_PORT="); ok {
			port = p
		}
	}
	m.apiPort, _ = strconv.Atoi(port)
	args := append([]string{"-C", root, "--no-print-directory", "run", "WORKERS=" + strconv.Itoa(workers), "BIN=" + bin}, makeVars...)
	cmd := exec.Command("make", args...)
	// Without API_ADDR and BIND: the defaults, whatever the caller's environment says.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "API_ADDR=") && !strings.HasPrefix(kv, "BIND=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env,
		"AMQP_URL="+vh.AMQPURL, "MANAGEMENT_URL="+vh.ManagementURL,
		"API_PORT="+port, "WORKER_PORT="+strconv.Itoa(m.base),
		"DATA_DIR="+filepath.Join(dir, "data"), "PROMETHEUS_TARGETS="+m.targets)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = m.out, m.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m.pgid = cmd.Process.Pid
	go func() { m.err = cmd.Wait(); close(m.done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-m.pgid, syscall.SIGKILL) // whatever is left, if the test failed early
		if t.Failed() {
			t.Logf("--- make run output ---\n%s", m.out.String())
		}
	})
	return m
}

func (m *makeRun) api() string { return fmt.Sprintf("http://127.0.0.1:%d", m.apiPort) }

func (m *makeRun) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// waitReady waits until the API sees n workers, failing if make exits first.
func (m *makeRun) waitReady(n int) {
	m.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var rb struct{ Workers int }
		if code, _, err := getJSON(m.api()+"/ready", &rb); err == nil && code == 200 && rb.Workers == n {
			return
		}
		if m.exited() {
			m.t.Fatalf("make run exited early: %v", m.err)
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("API not ready with %d workers in time", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitOutput waits until make run's output has a line containing every one of parts.
func (m *makeRun) waitOutput(timeout time.Duration, parts ...string) string {
	m.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range strings.Split(m.out.String(), "\n") {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				return line
			}
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("make run printed no line with all of %q within %v", parts, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wait waits for make to exit and returns its exit code.
func (m *makeRun) wait(timeout time.Duration) int {
	m.t.Helper()
	select {
	case <-m.done:
	case <-time.After(timeout):
		m.t.Fatalf("make run still running after %v", timeout)
	}
	var ee *exec.ExitError
	if errors.As(m.err, &ee) {
		return ee.ExitCode()
	}
	if m.err != nil {
		m.t.Fatalf("make run: %v", m.err)
	}
	return 0
}

// interrupt is Ctrl-C: SIGINT to the whole foreground process group. Everything must
// stop within 60 s and nothing of the group may be left.
func (m *makeRun) interrupt(workers int) {
	m.t.Helper()
	if err := syscall.Kill(-m.pgid, syscall.SIGINT); err != nil {
		m.t.Fatal(err)
	}
	m.wait(60 * time.Second)
	m.assertGone(workers)
	if !strings.Contains(m.out.String(), "stopping") {
		m.t.Errorf("make run should say it is stopping")
	}
}

// assertGone checks that every port is closed and no process of the group is left.
func (m *makeRun) assertGone(workers int) {
	m.t.Helper()
	addrs := workerAddrs(m.base, workers)
	if !m.apiPortTaken {
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", m.apiPort))
	}
	for _, addr := range addrs {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			m.t.Errorf("%s still accepts connections after make run exited", addr)
		}
	}
	if err := syscall.Kill(-m.pgid, 0); err == nil {
		m.t.Errorf("processes of make run's group are still alive after it exited")
	}
}

// procs returns the live processes of make run's group by role: "api", or the worker's
// WORKER_ID ("worker-0", ...). Linux: read from /proc.
func (m *makeRun) procs() map[string]int {
	m.t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		m.t.Skipf("needs /proc: %v", err)
	}
	out := map[string]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
		i := strings.LastIndexByte(string(stat), ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[2] != strconv.Itoa(m.pgid) {
			continue
		}
		comm := strings.TrimSpace(string(stat[strings.IndexByte(string(stat), '(')+1 : i]))
		switch comm {
		case "api":
			out["api"] = pid
		case "worker":
			environ, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
			for _, kv := range strings.Split(string(environ), "\x00") {
				if id, ok := strings.CutPrefix(kv, "WORKER_ID="); ok {
					out[id] = pid
				}
			}
		}
	}
	return out
}

// `make run WORKERS=4` is the README's way to run the farm without Docker: the same
// topology as docker-compose.yml, as local processes. It must serve from all four
// workers, write the Prometheus targets, listen on 127.0.0.1 only by default, and stop
// everything on Ctrl-C.
func TestMakeRunWorkers(t *testing.T) {
	const workers = 4
	m := startMakeRun(t, workers, nil)
	m.waitReady(workers)
	api := m.api()
	m.waitOutput(10*time.Second, "warren is running, ready")
	for _, want := range []string{
		fmt.Sprintf("%d workers: worker-0..worker-%d on 127.0.0.1:%d..%d", workers, workers-1, m.base, m.base+workers-1),
		"curl", "listening on 127.0.0.1 only",
	} {
		if !strings.Contains(m.out.String(), want) {
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
			if code, err := get(fmt.Sprintf("http://127.0.0.1:%d%s", m.base+i, path)); err != nil || code != 200 {
				t.Errorf("%s %s: %d %v", id, path, code, err)
			}
		}
	}

	// The Prometheus file_sd targets name the API, all four workers and RabbitMQ.
	var groups []struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	raw, err := os.ReadFile(m.targets)
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

	// Loopback only by default: every port's listener is bound to 127.0.0.1, and the
	// API does not answer on the machine's other addresses.
	ports := []int{m.apiPort}
	for i := 0; i < workers; i++ {
		ports = append(ports, m.base+i)
	}
	for _, p := range ports {
		if got := listenAddrs(t, p); len(got) != 1 || got[0] != "127.0.0.1" {
			t.Errorf("port %d: listening on %v, want 127.0.0.1 only", p, got)
		}
	}
	if ip := nonLoopbackIP(); ip != "" {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(m.apiPort)), 2*time.Second); err == nil {
			c.Close()
			t.Errorf("the API answers on %s, a non-loopback address", ip)
		}
	} else {
		t.Log("no non-loopback address on this machine: checked the bound addresses only")
	}

	m.interrupt(workers)
}

// A worker that dies is reported and the farm keeps serving; with every worker gone the
// API stays up and answers 503 no_workers (the lab's "stop Service B" scenario), and
// make keeps running until Ctrl-C.
func TestMakeRunWorkerDies(t *testing.T) {
	m := startMakeRun(t, 2, nil)
	m.waitReady(2)
	m.waitOutput(10*time.Second, "warren is running")
	procs := m.procs()
	if procs["api"] == 0 || procs["worker-0"] == 0 || procs["worker-1"] == 0 {
		t.Fatalf("processes of make run: %v", procs)
	}

	if err := syscall.Kill(procs["worker-0"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m.waitOutput(10*time.Second, "worker-0", fmt.Sprintf("127.0.0.1:%d", m.base), "status 137", "SIGKILL", "1 of 2")
	m.waitReady(1)
	for i := 0; i < 10; i++ {
		r := postJSONProcess(t, m.api(), `{"data":"one worker left"}`)
		if r.status != 200 || r.workerID != "worker-1" {
			t.Fatalf("/process with worker-1 left: %d %s %s", r.status, r.workerID, r.body)
		}
	}
	if code, err := get(fmt.Sprintf("http://127.0.0.1:%d/health", m.base+1)); err != nil || code != 200 {
		t.Errorf("worker-1 /health: %d %v", code, err)
	}

	if err := syscall.Kill(procs["worker-1"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m.waitOutput(10*time.Second, "worker-1", "status 137", "0 of 2")
	m.waitOutput(time.Second, "no worker is running", "503 no_workers")
	// Once the API has seen the consumers go (it polls their count; a call published
	// before that waits for its deadline, as documented), /process answers 503 at once.
	m.waitReady(0)
	start := time.Now()
	if r := postJSONProcess(t, m.api(), `{"data":"no worker left"}`); r.status != 503 || r.reason != "no_workers" {
		t.Fatalf("/process with no worker: %d %s, want 503 no_workers", r.status, r.body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("503 no_workers took %v, want an answer at once", d)
	}
	if code, err := get(m.api() + "/health"); err != nil || code != 200 {
		t.Errorf("API /health with no worker: %d %v", code, err)
	}
	if m.exited() {
		t.Fatalf("make run exited when the workers died: %v", m.err)
	}
	if p := m.procs()["api"]; p != procs["api"] {
		t.Errorf("the API is not the one started (pid %d, was %d)", p, procs["api"])
	}
	m.interrupt(2)
}

// When the API dies, make run stops the workers and exits non-zero, saying why.
func TestMakeRunAPIDies(t *testing.T) {
	m := startMakeRun(t, 2, nil)
	m.waitReady(2)
	m.waitOutput(10*time.Second, "warren is running")
	if err := syscall.Kill(m.procs()["api"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := m.wait(60 * time.Second); code == 0 {
		t.Errorf("make run exited 0 after the API died")
	}
	m.waitOutput(0, "the API", "status 137", "SIGKILL")
	m.assertGone(2)
}

// A process that cannot start is a failure, never announced: make exits non-zero
// quickly (not after START_TIMEOUT, 30 s) with the reason and without the banner.
func TestMakeRunStartFailures(t *testing.T) {
	t.Run("api port taken", func(t *testing.T) {
		integration(t)
		// A listener that accepts and never answers: the port is taken before make starts.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		m := startMakeRun(t, 2, nil, "API_PORT="+strconv.Itoa(port))
		m.apiPortTaken = true
		m.checkStartFailure([]string{"already in use", fmt.Sprintf("127.0.0.1:%d", port)})
	})
	t.Run("bad worker setting", func(t *testing.T) {
		m := startMakeRun(t, 2, nil, "CONCURRENCY=lots")
		// run.sh names the worker and shows the worker's own error from its log.
		m.checkStartFailure([]string{"worker-", "exited with status 2 while starting"}, []string{"CONCURRENCY", "lots"})
	})
}

// checkStartFailure: make exits non-zero within 20 s, its output has a line with all of
// each group of parts and says warren did not start, and the success banner is absent.
func (m *makeRun) checkStartFailure(lines ...[]string) {
	m.t.Helper()
	start := time.Now()
	if code := m.wait(20 * time.Second); code == 0 {
		m.t.Errorf("make run exited 0 on a start failure")
	}
	m.t.Logf("make run failed after %v", time.Since(start).Round(time.Millisecond))
	for _, parts := range append(lines, []string{"run.sh: warren did not start."}) {
		m.waitOutput(0, parts...)
	}
	if strings.Contains(m.out.String(), "warren is running") {
		m.t.Errorf("make run announced a start that failed")
	}
	m.assertGone(2)
}

// WORKERS=0 starts the API alone and says so; /process answers 503 no_workers. BIND is
// a make variable: BIND=0.0.0.0 listens on every interface.
func TestMakeRunNoWorkers(t *testing.T) {
	m := startMakeRun(t, 0, []string{"BIND=0.0.0.0"})
	m.waitReady(0)
	m.waitOutput(10*time.Second, "warren is running, ready")
	m.waitOutput(0, "no worker started (WORKERS=0)", "503 no_workers")
	m.waitOutput(0, "listening on every interface")
	if out := m.out.String(); strings.Contains(out, "worker(s)") || strings.Contains(out, fmt.Sprintf("%d..%d", m.base, m.base-1)) {
		t.Errorf("WORKERS=0 output names a worker range:\n%s", out)
	}
	// Beyond loopback the API needs a key: the run made one and printed it.
	m.waitOutput(0, "API key of this run")
	key := regexp.MustCompile(`API key of this run[^:]*: (wrn_[A-Za-z0-9_-]+)`).FindStringSubmatch(m.out.String())
	if key == nil {
		t.Fatalf("no key in the banner:\n%s", m.out.String())
	}
	if r := postJSONProcess(t, m.api(), `{"data":"nobody home"}`); r.status != 401 {
		t.Errorf("/process without the run's key: %d %s, want 401", r.status, r.body)
	}
	r := postJSONProcess(t, m.api(), `{"data":"nobody home"}`, "Authorization", "Bearer "+key[1])
	if r.status != 503 || r.reason != "no_workers" {
		t.Errorf("/process with WORKERS=0: %d %s, want 503 no_workers", r.status, r.body)
	}
	if got := listenAddrs(t, m.apiPort); len(got) != 1 || (got[0] != "0.0.0.0" && got[0] != "::") {
		t.Errorf("BIND=0.0.0.0: the API listens on %v", got)
	}
	if ip := nonLoopbackIP(); ip != "" {
		if code, err := get("http://" + net.JoinHostPort(ip, strconv.Itoa(m.apiPort)) + "/health"); err != nil || code != 200 {
			t.Errorf("BIND=0.0.0.0: API on %s: %d %v", ip, code, err)
		}
	}
	m.interrupt(0)
}

type processAnswer struct {
	status           int
	reason, workerID string
	body             string
}

func postJSONProcess(t *testing.T, api, body string, hdr ...string) processAnswer {
	t.Helper()
	req, err := http.NewRequest("POST", api+"/process", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("/process: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m struct {
		Reason          string `json:"reason"`
		ModelPrediction struct {
			WorkerID string `json:"worker_id"`
		} `json:"model_prediction"`
	}
	_ = json.Unmarshal(b, &m)
	return processAnswer{status: resp.StatusCode, reason: m.Reason, workerID: m.ModelPrediction.WorkerID, body: string(b)}
}

// listenAddrs returns the local addresses of the TCP sockets listening on port, from
// /proc/net/tcp and tcp6 ("127.0.0.1", "0.0.0.0", "::", ...).
func listenAddrs(t *testing.T, port int) []string {
	t.Helper()
	var out []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Skipf("needs %s: %v", f, err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 4 || fields[3] != "0A" { // 0A: LISTEN
				continue
			}
			hexIP, hexPort, _ := strings.Cut(fields[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); err != nil || int(p) != port {
				continue
			}
			raw, err := hex.DecodeString(hexIP)
			if err != nil {
				t.Fatalf("%s: %q: %v", f, fields[1], err)
			}
			// The kernel prints the address as 32-bit words in host byte order.
			ip := make(net.IP, len(raw))
			for i := 0; i+4 <= len(raw); i += 4 {
				w := binary.NativeEndian.Uint32(raw[i : i+4])
				binary.BigEndian.PutUint32(ip[i:i+4], w)
			}
			out = append(out, ip.String())
		}
	}
	return out
}

// nonLoopbackIP returns an IPv4 address of this machine other than loopback and
// link-local, or "".
func nonLoopbackIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip := n.IP.To4(); ip != nil && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				return ip.String()
			}
		}
	}
	return ""
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
