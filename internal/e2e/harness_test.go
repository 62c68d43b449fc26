package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/apidoc/apidoctest"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// binaries builds bin/api and bin/worker once per test run, with the Makefile's
// build line.
func binaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "warren-e2e-bin-")
		if binErr != nil {
			return
		}
		for _, name := range []string{"api", "worker"} {
			cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(binDir, name), "../../cmd/"+name)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				binErr = fmt.Errorf("build %s: %v\n%s", name, err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// modelRepository is the repository's own models/ directory (absolute).
func modelRepository(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../models")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func integration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs RabbitMQ and the binaries; run without -short (make test)")
	}
}

// proc is a running warren binary.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	addr string
	out  *syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProc starts binary name with env (KEY=VALUE) on a free loopback port. It is
// stopped with SIGTERM (then SIGKILL) at cleanup; its log is printed if the test failed.
func startProc(t *testing.T, name string, env ...string) *proc {
	t.Helper()
	p := launch(t, name, "", "", env)
	waitHTTP(t, "http://"+p.addr+"/health", 10*time.Second)
	return p
}

// launch starts binary name listening on listen and reached on reach (both a
// free loopback port when empty) and does not wait for it. A job store of its
// own by default, and workers serve the repository's seed model (env may say
// otherwise: the last value wins). Cleanup stops it with SIGTERM (then SIGKILL)
// and prints its log if the test failed.
func launch(t *testing.T, name, listen, reach string, env []string) *proc {
	t.Helper()
	if listen == "" {
		listen = freeAddr(t)
	}
	if reach == "" {
		reach = listen
	}
	p := &proc{t: t, name: name, addr: reach, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(binaries(t), name))
	p.cmd.Env = append(os.Environ(), "HTTP_ADDR="+listen, "LOG_LEVEL=debug", "DATA_DIR="+t.TempDir(),
		"MODEL_REPOSITORY="+modelRepository(t), "MODELS=seed")
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("--- %s log ---\n%s", name, p.out.String())
		}
	})
	return p
}

func (p *proc) url(path string) string { return "http://" + p.addr + path }

func (p *proc) signal(s syscall.Signal) { _ = p.cmd.Process.Signal(s) }

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %s", p.name, timeout)
	}
	return p.cmd.ProcessState.ExitCode()
}

func waitHTTP(t *testing.T, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not answering 200 within %s (last: %v)", url, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// farm is an API plus workers in a vhost of their own.
type farm struct {
	t       *testing.T
	vh      *testbroker.Vhost
	api     *proc
	workers []*proc
	spec    *apidoctest.Validator
}

func newFarm(t *testing.T, workers int, apiEnv []string, workerEnv []string) *farm {
	t.Helper()
	integration(t)
	f := &farm{t: t, vh: testbroker.NewVhost(t)}
	v, err := apidoctest.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	f.spec = v
	for i := 0; i < workers; i++ {
		f.addWorker(workerEnv...)
	}
	f.api = startProc(t, "api", append([]string{"AMQP_URL=" + f.vh.AMQPURL, "MANAGEMENT_URL=" + f.vh.ManagementURL}, apiEnv...)...)
	f.waitWorkers(workers)
	return f
}

func (f *farm) addWorker(env ...string) *proc {
	w := startProc(f.t, "worker", append([]string{"AMQP_URL=" + f.vh.AMQPURL, fmt.Sprintf("WORKER_ID=w%d", len(f.workers))}, env...)...)
	f.workers = append(f.workers, w)
	return w
}

func (f *farm) waitWorkers(n int) {
	f.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var r struct {
			Workers int `json:"workers"`
		}
		code, _, _ := getJSON(f.api.url("/ready"), &r)
		if code == 200 && r.Workers == n {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("API never saw %d workers (last /ready %d %+v)", n, code, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// getJSON GETs url and decodes its JSON body into into.
func getJSON(url string, into any) (int, http.Header, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, json.Unmarshal(b, into)
}

// response is a finished exchange.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// do sends a request to the API and checks the exchange against the OpenAPI
// document; every response a test sees is thereby a contract test.
func (f *farm) do(method, path, body string, hdr ...string) response {
	f.t.Helper()
	return doChecked(f.t, f.spec, method, f.api.url(path), body, hdr...)
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}, Timeout: 60 * time.Second}

func doChecked(t *testing.T, spec *apidoctest.Validator, method, url, body string, hdr ...string) response {
	t.Helper()
	return doWith(t, client, spec, method, url, body, hdr...)
}

// doWith is doChecked over the HTTP client c.
func doWith(t *testing.T, c *http.Client, spec *apidoctest.Validator, method, url, body string, hdr ...string) response {
	t.Helper()
	x := send(t, c, spec, method, url, body, hdr...)
	if x.err != nil {
		t.Fatalf("%s %s: %v", method, url, x.err)
	}
	return response{Status: x.status, Header: x.header, Body: x.body}
}

// exchange is one request's answer and how long it took.
type exchange struct {
	status int
	header http.Header
	body   []byte
	took   time.Duration
	err    error
}

// send sends a request with c; spec, if not nil, checks the exchange against
// the OpenAPI document. A transport error is returned, not fatal: send may run
// on a goroutine of the test.
func send(t *testing.T, c *http.Client, spec *apidoctest.Validator, method, url, body string, hdr ...string) exchange {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return exchange{err: err, took: time.Since(start)}
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	x := exchange{status: resp.StatusCode, header: resp.Header, body: b, took: time.Since(start), err: err}
	if spec != nil {
		vreq, _ := http.NewRequest(method, url, strings.NewReader(body))
		vreq.Header = req.Header.Clone()
		if err := spec.Validate(vreq, []byte(body), resp, b); err != nil {
			t.Errorf("%s %s → %d does not match openapi.json: %v\nbody: %s", method, url, resp.StatusCode, err, b)
		}
	}
	return x
}

func newFarmSpec(t *testing.T) *apidoctest.Validator {
	t.Helper()
	v, err := apidoctest.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	return v
}
