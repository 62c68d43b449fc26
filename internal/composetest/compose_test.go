// Package composetest runs the repository's docker-compose.yml for real: the images
// built from the Dockerfile, the broker, Redis and Prometheus from their images, and
// the farm driven over HTTP the way a user would, through `docker compose` itself.
//
// It needs a Docker engine, the compose and buildx CLI plugins and, on a machine that
// reaches no image registry, the stand-in images of scripts/compose-standins.sh;
// `make test-compose` provides all three and runs it. It runs only with
// WARREN_COMPOSE_TEST=1, so `go test ./...` stays as it is (docs/running.md).
package composetest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
)

const (
	// project is fixed, so a second run reuses the first run's build cache and
	// images, and a run cut short is cleaned up by the next one.
	project = "warren-composetest"
	// modelLatency is the seed model's service time (MODEL_LATENCY): long enough that
	// requests are still in flight when `docker compose down` starts.
	modelLatency = 3 * time.Second
	seedWorkers  = 3
)

// farm is one compose project of the test.
type farm struct {
	t        *testing.T
	root     string // the repository: the compose file's directory
	override string
	api      string // http://127.0.0.1:port
	prom     string
	key      string // the admin API key the API made on its first start
	client   *http.Client
}

func TestCompose(t *testing.T) {
	if os.Getenv("WARREN_COMPOSE_TEST") != "1" {
		t.Skip("WARREN_COMPOSE_TEST=1 runs the compose test (make test-compose)")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	override, err := filepath.Abs("testdata/compose.override.yml")
	if err != nil {
		t.Fatal(err)
	}
	f := &farm{t: t, root: root, override: override,
		// A new connection per request: an idle keep-alive connection closed by a
		// draining server must not count as a failed request.
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}

	// What a run cut short left behind.
	_, _ = f.compose(2*time.Minute, "down", "--volumes", "--remove-orphans")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := f.compose(time.Minute, "ps", "--all")
			t.Logf("docker compose ps --all:\n%s", out)
			out, _ = f.compose(time.Minute, "logs", "--no-color", "--tail", "40")
			t.Logf("docker compose logs --tail 40:\n%s", out)
		}
		if out, err := f.compose(3*time.Minute, "down", "--volumes", "--remove-orphans"); err != nil {
			t.Errorf("cleanup: %v\n%s", err, out)
		}
	})

	f.step("up --build --wait --scale worker-seed=3", func() {
		f.mustCompose(25*time.Minute, "up", "--build", "--detach", "--wait", "--wait-timeout", "600",
			"--scale", fmt.Sprintf("worker-seed=%d", seedWorkers))
	})
	f.api = "http://" + f.port("api", 8000)
	f.prom = "http://" + f.port("prometheus", 9090)
	f.checkLoopbackOnly()
	f.key = f.adminKey()

	f.step("/process answered by three distinct workers", func() {
		ids := f.processBatch(3 * seedWorkers * 4)
		if len(ids) != seedWorkers {
			t.Fatalf("/process answered by %d distinct workers %v, want %d", len(ids), keys(ids), seedWorkers)
		}
		t.Logf("worker_id → answers: %v", ids)
	})

	f.step("/v2/models/seed/infer answered by three distinct workers", func() {
		ips := f.containerIPs("worker-seed")
		before := f.consumed(ips)
		f.inferBatch(3 * seedWorkers * 4)
		after := f.consumed(ips)
		served := 0
		for ip := range after {
			if after[ip] > before[ip] {
				served++
			}
		}
		t.Logf("seed deliveries per worker before %v, after %v", before, after)
		if served != seedWorkers {
			t.Fatalf("/v2/models/seed/infer served by %d of the %d seed workers", served, seedWorkers)
		}
	})

	f.step("Prometheus lists three worker-seed targets found by DNS", func() {
		f.eventually(2*time.Minute, func() error { return f.dnsTargets("worker-seed", seedWorkers) })
	})

	f.step("kill worker-seed → 503 no_workers within a second", func() {
		start := time.Now()
		f.mustCompose(time.Minute, "kill", "worker-seed")
		killed := time.Now()
		t.Logf("docker compose kill worker-seed took %v", killed.Sub(start).Round(time.Millisecond))
		var last string
		for {
			code, reason, retryAfter := f.process("after kill")
			if code == http.StatusServiceUnavailable && reason == "no_workers" {
				if retryAfter == "" {
					t.Fatal("503 no_workers without Retry-After")
				}
				t.Logf("503 no_workers %v after the kill returned", time.Since(killed).Round(time.Millisecond))
				break
			}
			last = fmt.Sprintf("%d %s", code, reason)
			if time.Since(killed) > time.Second {
				t.Fatalf("a second after the kill /process still answers %s, want 503 no_workers", last)
			}
			time.Sleep(20 * time.Millisecond)
		}
		code, body, err := f.post("/v2/models/seed/infer", map[string]any{"inputs": []map[string]any{{
			"name": "data", "shape": []int{1}, "datatype": "BYTES", "data": []string{"after kill"}}}})
		if err != nil || code != http.StatusServiceUnavailable || !bytes.Contains(body, []byte(`"no_workers"`)) {
			t.Fatalf("seed infer with worker-seed killed: %d %s %v, want 503 no_workers", code, body, err)
		}
		// The other pool keeps serving its model.
		if code := f.inferDigits(); code != http.StatusOK {
			t.Fatalf("digits infer with worker-seed killed: %d, want 200", code)
		}
	})

	f.step("worker-seed back: up --wait --scale worker-seed=3", func() {
		f.mustCompose(5*time.Minute, "up", "--detach", "--wait", "--wait-timeout", "300",
			"--scale", fmt.Sprintf("worker-seed=%d", seedWorkers))
		f.eventually(time.Minute, func() error { return f.readyWorkers(seedWorkers) })
	})

	f.step("restart rabbitmq → the farm resumes by itself", func() {
		f.mustCompose(3*time.Minute, "restart", "rabbitmq")
		restarted := time.Now()
		f.eventually(3*time.Minute, func() error {
			if code, reason, _ := f.process("after restart"); code != http.StatusOK {
				return fmt.Errorf("/process %d %s", code, reason)
			}
			return nil
		})
		t.Logf("/process answered 200 %v after the restart returned", time.Since(restarted).Round(time.Millisecond))
		f.eventually(2*time.Minute, func() error { return f.readyWorkers(seedWorkers) })
		t.Logf("all %d seed workers back %v after the restart returned", seedWorkers, time.Since(restarted).Round(time.Millisecond))
		if ids := f.processBatch(3 * seedWorkers * 4); len(ids) != seedWorkers {
			t.Fatalf("after the restart /process answered by %d distinct workers %v, want %d", len(ids), keys(ids), seedWorkers)
		}
	})

	f.step("down drains: no in-flight request fails", func() {
		// Calls go on in waves (fewer at once than the seed pool's 12 slots) from
		// before down until it returns. Compose stops the services in dependency
		// order, so the API and the workers get SIGTERM at times the test learns only
		// afterwards, from the engine's events. Every call sent before the first of
		// those SIGTERMs (with a margin for it to reach the API) must be answered with
		// a prediction; calls sent later may be refused or answered 503, as a farm
		// that is going away should.
		const wave = 2 // calls a second; with MODEL_LATENCY 3s at most 8 at once
		type call struct {
			sent, done time.Time
			code       int
			err        error
		}
		var mu sync.Mutex
		var calls []call
		var wg sync.WaitGroup
		stop := make(chan struct{})
		fire := func() {
			for i := range wave {
				wg.Go(func() {
					c := call{sent: time.Now()}
					c.code, c.err = f.processOK(fmt.Sprintf("drain %d", i))
					c.done = time.Now()
					mu.Lock()
					calls = append(calls, c)
					mu.Unlock()
				})
			}
		}
		var waves sync.WaitGroup
		waves.Go(func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				fire()
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		})
		// Two waves in flight (the first still waiting for its answers), and time for
		// the second to be clearly before any SIGTERM.
		f.eventually(10*time.Second, func() error { return f.apiInFlight(2 * wave) })
		time.Sleep(500 * time.Millisecond)
		started := time.Now()
		out, err := f.compose(3*time.Minute, "down")
		close(stop)
		waves.Wait()
		wg.Wait()
		if err != nil {
			t.Fatalf("docker compose down: %v\n%s", err, out)
		}
		downTook := time.Since(started)
		terms := f.sigterms(started)
		first := time.Time{}
		for _, service := range []string{"api", "worker-seed"} {
			at, ok := terms[service]
			if !ok {
				t.Fatalf("no SIGTERM to %s in the engine's events during down (saw %v)", service, terms)
			}
			t.Logf("SIGTERM to %s %v after down started", service, at.Sub(started).Round(time.Millisecond))
			if first.IsZero() || at.Before(first) {
				first = at
			}
		}
		cutoff := first.Add(-300 * time.Millisecond)
		var counted, late int
		var failed []string
		lateOutcomes := map[string]int{}
		drained := map[string]int{}
		for _, c := range calls {
			if !c.sent.Before(cutoff) {
				late++
				lateOutcomes[outcome(c.code, c.err)]++
				continue
			}
			counted++
			if c.err != nil {
				failed = append(failed, fmt.Sprintf("sent %v before down: %v",
					started.Sub(c.sent).Round(time.Millisecond), c.err))
				continue
			}
			for service, at := range terms {
				if c.done.After(at) {
					drained[service]++
				}
			}
		}
		t.Logf("down took %v; %d calls sent before the first SIGTERM: %d failed, answered after the SIGTERM of each service %v; %d sent later: %v",
			downTook.Round(time.Millisecond), counted, len(failed), drained, late, lateOutcomes)
		if len(failed) > 0 {
			t.Fatalf("calls in flight during down failed: %v", failed)
		}
		for _, service := range []string{"api", "worker-seed"} {
			if drained[service] == 0 {
				t.Fatalf("no call was in flight when %s got SIGTERM: the drain went untested", service)
			}
		}
		if out := f.mustCompose(time.Minute, "ps", "--all", "--quiet"); strings.TrimSpace(out) != "" {
			t.Fatalf("containers left after down:\n%s", out)
		}
		// The project's own network (the compose file declares none: compose makes
		// <project>_default) goes with it; the test uses no other.
		nets, err := exec.Command("docker", "network", "ls", "--quiet", "--filter", "label=com.docker.compose.project="+project).CombinedOutput()
		if err != nil || strings.TrimSpace(string(nets)) != "" {
			t.Fatalf("networks of project %s left after down (%v):\n%s", project, err, nets)
		}
	})
}

// sigterms is, per service, when the engine first sent one of its containers
// SIGTERM since the given time (docker events, filtered to the project).
func (f *farm) sigterms(since time.Time) map[string]time.Time {
	f.t.Helper()
	out, err := exec.Command("docker", "events", "--since", strconv.FormatInt(since.Add(-time.Second).Unix(), 10),
		"--until", strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10),
		"--filter", "label=com.docker.compose.project="+project, "--filter", "event=kill",
		"--format", "{{json .}}").Output()
	if err != nil {
		f.t.Fatalf("docker events: %v", err)
	}
	first := map[string]time.Time{}
	for line := range strings.Lines(string(out)) {
		var e struct {
			TimeNano int64 `json:"timeNano"`
			Actor    struct {
				Attributes map[string]string
			}
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			f.t.Fatalf("docker events: %v: %s", err, line)
		}
		at, service := time.Unix(0, e.TimeNano), e.Actor.Attributes["com.docker.compose.service"]
		if e.Actor.Attributes["signal"] != "15" || at.Before(since) {
			continue
		}
		if old, ok := first[service]; !ok || at.Before(old) {
			first[service] = at
		}
	}
	return first
}

// step runs one step of the scenario and logs how long it took.
func (f *farm) step(name string, fn func()) {
	f.t.Helper()
	start := time.Now()
	f.t.Logf("step %q", name)
	fn()
	f.t.Logf("step %q: ok in %v", name, time.Since(start).Round(time.Millisecond))
}

// compose runs `docker compose` on the project with the override file.
func (f *farm) compose(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	full := append([]string{"compose", "--project-name", project,
		"--file", filepath.Join(f.root, "docker-compose.yml"), "--file", f.override, "--progress", "plain"}, args...)
	cmd := exec.CommandContext(ctx, "docker", full...)
	cmd.Dir = f.root
	// The run's settings, through the compose file's own variables.
	cmd.Env = append(os.Environ(), "MODEL_LATENCY="+modelLatency.String())
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("docker %s: timed out after %v: %w", strings.Join(args, " "), timeout, err)
	} else if err != nil {
		err = fmt.Errorf("docker %s: %w", strings.Join(args, " "), err)
	}
	return string(out), err
}

func (f *farm) mustCompose(timeout time.Duration, args ...string) string {
	f.t.Helper()
	out, err := f.compose(timeout, args...)
	if err != nil {
		f.t.Fatalf("%v\n%s", err, tail(out, 60))
	}
	return out
}

// port is the 127.0.0.1:port a service's container port is published on.
func (f *farm) port(service string, port int) string {
	f.t.Helper()
	out := strings.TrimSpace(f.mustCompose(time.Minute, "port", service, strconv.Itoa(port)))
	host, _, err := net.SplitHostPort(out)
	if err != nil || host != "127.0.0.1" {
		f.t.Fatalf("%s:%d published on %q, want 127.0.0.1:<port>", service, port, out)
	}
	return out
}

// checkLoopbackOnly fails the test if any container publishes a port on anything
// but 127.0.0.1.
func (f *farm) checkLoopbackOnly() {
	f.t.Helper()
	out := f.mustCompose(time.Minute, "ps", "--format", "json")
	sc := bufio.NewScanner(strings.NewReader(out))
	n := 0
	for sc.Scan() {
		var c struct {
			Service    string
			Publishers []struct {
				URL           string
				PublishedPort int
			}
		}
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			f.t.Fatalf("docker compose ps --format json: %v: %s", err, sc.Text())
		}
		for _, p := range c.Publishers {
			if p.PublishedPort != 0 && p.URL != "127.0.0.1" {
				f.t.Errorf("%s publishes port %d on %q, want 127.0.0.1", c.Service, p.PublishedPort, p.URL)
			}
		}
		n++
	}
	if n == 0 {
		f.t.Fatal("docker compose ps lists no container")
	}
}

// containerIPs are the addresses of a service's containers on the project network.
func (f *farm) containerIPs(service string) []string {
	f.t.Helper()
	var ips []string
	for _, id := range strings.Fields(f.mustCompose(time.Minute, "ps", "--quiet", service)) {
		out, err := exec.Command("docker", "inspect", "--format",
			"{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", id).CombinedOutput()
		if err != nil {
			f.t.Fatalf("docker inspect %s: %v\n%s", id, err, out)
		}
		ips = append(ips, strings.Fields(string(out))...)
	}
	if len(ips) != seedWorkers {
		f.t.Fatalf("%s has addresses %v, want %d", service, ips, seedWorkers)
	}
	return ips
}

// consumed is each worker's warren_worker_messages_consumed_total for the seed
// model, read from its /metrics on the project network (through the Prometheus
// container, whose image has wget like the upstream one: the workers publish no
// port).
func (f *farm) consumed(ips []string) map[string]float64 {
	f.t.Helper()
	got := map[string]float64{}
	for _, ip := range ips {
		out := f.mustCompose(time.Minute, "exec", "-T", "prometheus", "wget", "-q", "-O", "-",
			"http://"+net.JoinHostPort(ip, "8001")+"/metrics")
		found := false
		for line := range strings.Lines(out) {
			if !strings.HasPrefix(line, "warren_worker_messages_consumed_total{") || !strings.Contains(line, `model="seed"`) {
				continue
			}
			fields := strings.Fields(line)
			v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
			if err != nil {
				f.t.Fatalf("worker %s: %q: %v", ip, line, err)
			}
			got[ip] += v
			found = true
		}
		if !found {
			f.t.Fatalf("worker %s /metrics has no warren_worker_messages_consumed_total for seed:\n%s", ip, tail(out, 20))
		}
	}
	return got
}

// processBatch sends n concurrent /process calls and counts the answers per worker.
func (f *farm) processBatch(n int) map[string]int {
	f.t.Helper()
	var mu sync.Mutex
	ids := map[string]int{}
	var errs []error
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var out struct {
				ModelPrediction struct {
					WorkerID string `json:"worker_id"`
				} `json:"model_prediction"`
			}
			code, body, err := f.post("/process", map[string]any{"data": fmt.Sprintf("compose test %d", i)})
			if err == nil && code == http.StatusOK {
				err = json.Unmarshal(body, &out)
			} else if err == nil {
				err = fmt.Errorf("/process: %d %s", code, body)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			ids[out.ModelPrediction.WorkerID]++
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		f.t.Fatalf("%d of %d /process calls failed, first: %v", len(errs), n, errs[0])
	}
	return ids
}

// inferBatch sends n concurrent Open Inference Protocol calls to the seed model.
func (f *farm) inferBatch(n int) {
	f.t.Helper()
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req := map[string]any{"id": strconv.Itoa(i), "inputs": []map[string]any{{
				"name": "data", "shape": []int{1}, "datatype": "BYTES", "data": []string{fmt.Sprintf("infer %d", i)}}}}
			var out struct {
				ID      string `json:"id"`
				Outputs []struct {
					Name string `json:"name"`
				} `json:"outputs"`
			}
			code, body, err := f.post("/v2/models/seed/infer", req)
			if err == nil && code == http.StatusOK {
				if err = json.Unmarshal(body, &out); err == nil && (out.ID != strconv.Itoa(i) || len(out.Outputs) == 0) {
					err = fmt.Errorf("infer %d: answer %s", i, body)
				}
			} else if err == nil {
				err = fmt.Errorf("infer: %d %s", code, body)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		f.t.Fatalf("%d of %d infer calls failed, first: %v", len(errs), n, errs[0])
	}
}

// inferDigits sends one image of zeros to the digits model (the other pool).
func (f *farm) inferDigits() int {
	f.t.Helper()
	code, body, err := f.post("/v2/models/digits/infer", map[string]any{"inputs": []map[string]any{{
		"name": "input", "shape": []int{1, 64}, "datatype": "FP32", "data": make([]float32, 64)}}})
	if err != nil {
		f.t.Fatal(err)
	}
	if code != http.StatusOK {
		f.t.Logf("digits infer: %d %s", code, body)
	}
	return code
}

// process sends one /process call and returns its status, reason and Retry-After.
func (f *farm) process(data string) (int, string, string) {
	f.t.Helper()
	body, _ := json.Marshal(map[string]any{"data": data})
	resp, err := f.send("/process", body)
	if err != nil {
		return 0, err.Error(), ""
	}
	defer resp.Body.Close()
	var out struct {
		Reason string `json:"reason"`
	}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out.Reason, resp.Header.Get("Retry-After")
}

// processOK sends one /process call; any answer but a prediction is an error.
func (f *farm) processOK(data string) (int, error) {
	code, body, err := f.post("/process", map[string]any{"data": data})
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK || !bytes.Contains(body, []byte(`"model_prediction"`)) {
		return code, fmt.Errorf("%d %s", code, body)
	}
	return code, nil
}

func (f *farm) post(path string, v any) (int, []byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return 0, nil, err
	}
	resp, err := f.send(path, body)
	if err != nil {
		return 0, nil, fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// send POSTs a JSON body with the admin key: the compose file turns API keys on.
func (f *farm) send(path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, f.api+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+f.key)
	return f.client.Do(req)
}

// adminKey reads the admin key's secret the API wrote beside its keys file on its
// first start, the way docker-compose.yml tells a user to (`docker compose cp`, which
// writes a tar stream to stdout).
func (f *farm) adminKey() string {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", "compose", "--project-name", project,
		"--file", filepath.Join(f.root, "docker-compose.yml"), "--file", f.override,
		"cp", "api:/data/api-keys.yaml.admin-key", "-")
	cmd.Dir = f.root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		f.t.Fatalf("docker compose cp api:/data/api-keys.yaml.admin-key: %v\n%s", err, stderr.String())
	}
	tr := tar.NewReader(bytes.NewReader(out))
	if _, err := tr.Next(); err != nil {
		f.t.Fatalf("docker compose cp: reading the tar stream: %v", err)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		f.t.Fatalf("docker compose cp: reading the admin key: %v", err)
	}
	key := strings.TrimSpace(string(b))
	if key == "" {
		f.t.Fatal("the API's admin key file is empty")
	}
	return key
}

func (f *farm) getJSON(url string, v any) error {
	resp, err := f.client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return json.Unmarshal(b, v)
}

// readyWorkers: the API's /ready counts want live workers of the default model.
func (f *farm) readyWorkers(want int) error {
	var r struct {
		Status  string `json:"status"`
		Workers int    `json:"workers"`
	}
	if err := f.getJSON(f.api+"/ready", &r); err != nil {
		return err
	}
	if r.Workers != want {
		return fmt.Errorf("/ready: %d workers, want %d", r.Workers, want)
	}
	return nil
}

// apiInFlight: the API's warren_http_requests_in_flight counts at least want calls
// (the test sends no other calls meanwhile).
func (f *farm) apiInFlight(want int) error {
	resp, err := f.client.Get(f.api + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "warren_http_requests_in_flight ") {
			fields := strings.Fields(line)
			v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
			if err != nil {
				return err
			}
			if int(v) >= want {
				return nil
			}
			return fmt.Errorf("%d calls in flight, want %d", int(v), want)
		}
	}
	return errors.New("no warren_http_requests_in_flight in the API's /metrics")
}

// dnsTargets: Prometheus has want healthy warren-worker targets discovered under the
// DNS name.
func (f *farm) dnsTargets(name string, want int) error {
	var r struct {
		Data struct {
			ActiveTargets []struct {
				DiscoveredLabels map[string]string `json:"discoveredLabels"`
				Labels           map[string]string `json:"labels"`
				Health           string            `json:"health"`
				ScrapeURL        string            `json:"scrapeUrl"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := f.getJSON(f.prom+"/api/v1/targets?state=active", &r); err != nil {
		return err
	}
	var up, seen []string
	for _, tg := range r.Data.ActiveTargets {
		if tg.Labels["job"] != "warren-worker" || tg.DiscoveredLabels["__meta_dns_name"] != name {
			continue
		}
		seen = append(seen, tg.ScrapeURL+" "+tg.Health)
		if tg.Health == "up" {
			up = append(up, tg.ScrapeURL)
		}
	}
	if len(seen) != want || len(up) != want {
		return fmt.Errorf("Prometheus: %s targets %v, want %d up", name, seen, want)
	}
	f.t.Logf("Prometheus targets from DNS %s: %v", name, up)
	return nil
}

// eventually retries fn until it succeeds or the timeout passes.
func (f *farm) eventually(timeout time.Duration, fn func() error) {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// outcome names a call's result briefly: its status, or how the connection failed.
func outcome(code int, err error) string {
	switch {
	case code != 0:
		return strconv.Itoa(code)
	case err == nil:
		return "ok"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	}
	return err.Error()
}

func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
