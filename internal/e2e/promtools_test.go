package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"

	"github.com/warren-farm/warren/internal/testdocker"
)

// promTools runs prometheus and promtool: the local binaries when both are on PATH,
// else the prom/prometheus image (testdocker.PrometheusImage, which has both) in
// Docker. WARREN_TEST_NO_LOCAL=1 leaves out the local ones.
type promTools struct {
	pool *dockertest.Pool // nil: the local binaries
}

// requireTools returns how to run prometheus and promtool. A full run (make test)
// fails here when neither the binaries nor a Docker engine is there, never skips;
// under -short, which needs no external tool, it returns nil and the caller leaves
// out what needs them.
func requireTools(t *testing.T) *promTools {
	t.Helper()
	var missing []string
	for _, tool := range []string{"prometheus", "promtool"} {
		if _, err := testdocker.LocalTool(tool); err != nil {
			missing = append(missing, err.Error())
		}
	}
	if len(missing) == 0 {
		return &promTools{}
	}
	pool, err := testdocker.Pool()
	if err == nil {
		t.Cleanup(pool.Client.HTTPClient.CloseIdleConnections)
		if _, err = pool.Client.InspectImage(testdocker.PrometheusImage); err != nil {
			// Pulled once, here, rather than by every container.
			repo, tag, _ := strings.Cut(testdocker.PrometheusImage, ":")
			err = pool.Client.PullImage(dc.PullImageOptions{Repository: repo, Tag: tag}, dc.AuthConfiguration{})
		}
		if err == nil {
			return &promTools{pool: pool}
		}
	}
	if testing.Short() {
		t.Logf("no prometheus and promtool (%s) nor %s in Docker (%v): -short leaves out the checks that run them (make test runs them)",
			strings.Join(missing, "; "), testdocker.PrometheusImage, err)
		return nil
	}
	t.Fatalf("the Prometheus tests need the real prometheus and promtool: on PATH "+
		"(Debian/Ubuntu: apt-get install prometheus; elsewhere: https://prometheus.io/download/), "+
		"or a Docker engine to run %s: %s; Docker: %v", testdocker.PrometheusImage, strings.Join(missing, "; "), err)
	return nil
}

// run starts a container of the prometheus image with the entrypoint, arguments and
// the directories bind-mounted at their own paths (so every path in the arguments and
// files means the same inside), as the current user, on the host's network (so a
// server in it listens on, and scrapes, this machine's loopback addresses: Linux
// engines only). It is removed when t ends.
func (p *promTools) run(t *testing.T, entrypoint string, args []string, workDir string, dirs ...string) *dockertest.Resource {
	t.Helper()
	var mounts []string
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			t.Fatal(err)
		}
		mounts = append(mounts, abs+":"+abs)
	}
	repo, tag, _ := strings.Cut(testdocker.PrometheusImage, ":")
	res, err := p.pool.RunWithOptions(&dockertest.RunOptions{
		Repository: repo,
		Tag:        tag,
		Entrypoint: []string{entrypoint},
		Cmd:        args,
		Mounts:     mounts,
		WorkingDir: workDir,
		User:       strconv.Itoa(os.Getuid()) + ":" + strconv.Itoa(os.Getgid()),
		Labels:     map[string]string{"warren-testbroker": "1"},
	}, func(hc *dc.HostConfig) {
		hc.NetworkMode = "host"
		hc.RestartPolicy = dc.NeverRestart()
	})
	if err != nil {
		t.Fatalf("starting %s %s in %s: %v", entrypoint, strings.Join(args, " "), testdocker.PrometheusImage, err)
	}
	t.Cleanup(func() {
		if err := p.pool.Purge(res); err != nil {
			t.Errorf("removing container %s: %v", res.Container.Name, err)
		}
	})
	return res
}

// promtool runs promtool in deployments/prometheus and fails t unless it succeeds.
func (p *promTools) promtool(t *testing.T, args ...string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join(deploymentsDir, "prometheus"))
	if err != nil {
		t.Fatal(err)
	}
	if p.pool == nil {
		cmd := exec.Command("promtool", args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	res := p.run(t, "promtool", args, dir, dir)
	code, err := p.pool.Client.WaitContainer(res.Container.ID)
	out := testdocker.Logs(p.pool, res.Container.ID)
	if err != nil || code != 0 {
		t.Fatalf("promtool %s (in %s): exit %d %v\n%s", strings.Join(args, " "), testdocker.PrometheusImage, code, err, out)
	}
	return out
}

// startPrometheus starts a prometheus with config, its data under dir, listening on a
// free loopback port, and waits until it is ready.
func (p *promTools) startPrometheus(t *testing.T, config, dir string) *prometheusServer {
	t.Helper()
	addr := freeAddr(t)
	args := []string{
		"--config.file=" + config,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr,
	}
	srv := &prometheusServer{base: "http://" + addr}
	var exited func() bool
	if p.pool == nil {
		out := &syncBuffer{}
		srv.logs = out.String
		cmd := exec.Command("prometheus", args...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		})
		exited = func() bool {
			select {
			case <-done:
				return true
			default:
				return false
			}
		}
	} else {
		// The config names the rule files by absolute path in deployments/prometheus.
		rules, err := filepath.Abs(filepath.Join(deploymentsDir, "prometheus"))
		if err != nil {
			t.Fatal(err)
		}
		res := p.run(t, "prometheus", args, dir, dir, rules)
		srv.logs = func() string { return testdocker.Logs(p.pool, res.Container.ID) }
		exited = func() bool { return testdocker.Exited(p.pool, res.Container.ID) }
	}
	// Registered after the stop: runs before it.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- prometheus log ---\n%s", srv.logs())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(srv.base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return srv
			}
		}
		if exited() {
			t.Fatalf("prometheus exited:\n%s", srv.logs())
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready within 30s (%v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
