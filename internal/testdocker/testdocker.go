// Package testdocker runs the third-party services of the integration tests in
// Docker containers (github.com/ory/dockertest) when they are not on this machine,
// so that `make test` needs only Go and a Docker engine. It imports no warren
// package, so any test helper may use it.
//
// A service container (RabbitMQ, Redis) is shared by every test binary of a run
// (go test ./... runs packages in parallel) and kept between runs to save its boot;
// its name is fixed and it carries the label warren-testbroker=1:
//
//	docker rm -f $(docker ps -aq --filter label=warren-testbroker=1)
//
// removes them all. Ports are published on 127.0.0.1 only.
//
// EnvNoLocal hides the local services from the helpers (testbroker, redistest, the
// Prometheus tests) for a proof run of the Docker path on a machine that has them:
// they then neither probe 127.0.0.1:5672 / 127.0.0.1:6379 nor look on PATH for
// rabbitmq-server, rabbitmqctl, redis-server, prometheus or promtool.
package testdocker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"
)

// EnvNoLocal, set to a non-empty value other than "0", hides the local services
// and tools from the test helpers (see the package documentation). Users never
// need it; scripts/ci-docker-only.sh sets it.
const EnvNoLocal = "WARREN_TEST_NO_LOCAL"

// NoLocal reports whether EnvNoLocal is set.
func NoLocal() bool {
	v := os.Getenv(EnvNoLocal)
	return v != "" && v != "0"
}

// The images the helpers run: the public names, which are also the tags of the
// stand-ins scripts/compose-standins.sh builds for engines that reach no registry.
const (
	RabbitMQImage   = "rabbitmq:3.10-management"
	RedisImage      = "redis:7.4.2-alpine"
	PrometheusImage = "prom/prometheus:v2.55.1"
)

// LocalTool returns the path of tool on PATH, or an error when it is not there
// or NoLocal hides it.
func LocalTool(tool string) (string, error) {
	if NoLocal() {
		return "", fmt.Errorf("%s=1 hides the local %s", EnvNoLocal, tool)
	}
	return exec.LookPath(tool)
}

// Pool connects to the Docker engine (DOCKER_HOST or the local socket) and checks
// that it answers within 5 s. Close the returned pool's idle connections when done
// (pool.Client.HTTPClient.CloseIdleConnections) so no goroutine outlives the test.
func Pool() (*dockertest.Pool, error) {
	pool, err := dockertest.NewPool("")
	if err != nil {
		return nil, fmt.Errorf("no Docker client: %v", err)
	}
	pool.Client.SetTimeout(5 * time.Second)
	if err := pool.Client.Ping(); err != nil {
		pool.Client.HTTPClient.CloseIdleConnections()
		return nil, fmt.Errorf("no Docker engine answers: %v", err)
	}
	pool.Client.SetTimeout(0) // image pulls take long
	return pool, nil
}

// Service describes a shared service container.
type Service struct {
	Name  string   // container name, e.g. warren-testbroker-redis
	Image string   // repository:tag
	Ports []string // container ports to publish on 127.0.0.1, e.g. "6379/tcp"
	// HostNetwork runs the container in the host's network namespace (Ports
	// are then not published: the service listens on the host's own ports, and
	// must be told to bind 127.0.0.1 only).
	HostNetwork bool
	Entrypoint  []string // optional, replaces the image's (and its command)
	Cmd         []string // optional command
	Env         []string // optional environment, KEY=value
	// Dirs are host directories bind-mounted at the same path in the
	// container, created (mode 0777: the image's user writes there) if missing.
	Dirs []string
	// Ready is retried (up to 2 minutes) with the published host:port of each
	// port until it returns nil.
	Ready func(addrs map[string]string) error
}

// Start starts the service's container, or reuses the running one of that name,
// and returns the published host:port of each of its ports once Ready passes.
func (s Service) Start() (map[string]string, error) {
	pool, err := Pool()
	if err != nil {
		return nil, err
	}
	defer pool.Client.HTTPClient.CloseIdleConnections()

	// Another test binary may be starting the same container: one that was
	// created moments ago is waited for, not replaced.
	var res *dockertest.Resource
	var lastErr error
	for attempt := 0; res == nil; attempt++ {
		if attempt == 300 { // 60 s
			return nil, fmt.Errorf("starting %s (container %s): %v", s.Image, s.Name, lastErr)
		}
		if attempt > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		r, found := pool.ContainerByName(s.Name)
		switch {
		case found && s.usable(r):
			res = r
		case found && r.Container.State.Status == "created" && time.Since(r.Container.Created) < 30*time.Second:
			lastErr = errors.New("created by another test binary, not started")
		case found:
			lastErr = fmt.Errorf("found %s, removed", r.Container.State.Status)
			_ = pool.RemoveContainerByName(s.Name)
		default:
			res, lastErr = s.run(pool)
			if lastErr != nil && !errors.Is(lastErr, dc.ErrContainerAlreadyExists) {
				// Not a race with another binary (a failed pull, say).
				return nil, fmt.Errorf("starting %s (container %s): %v", s.Image, s.Name, lastErr)
			}
		}
	}
	addrs := map[string]string{}
	for _, p := range s.Ports {
		addrs[p] = HostPort(res, p)
	}
	pool.MaxWait = 2 * time.Minute
	if s.Ready != nil {
		if err := pool.Retry(func() error { return s.Ready(addrs) }); err != nil {
			return nil, fmt.Errorf("container %s (%s) started but never became ready at %v: %v", s.Name, s.Image, addrs, err)
		}
	}
	return addrs, nil
}

// usable reports whether r, the container of the service's name, runs with
// its ports published.
func (s Service) usable(r *dockertest.Resource) bool {
	ok := r.Container.State.Running
	for _, p := range s.Ports {
		ok = ok && r.GetPort(p) != ""
	}
	return ok
}

// run creates and starts the service's container.
func (s Service) run(pool *dockertest.Pool) (*dockertest.Resource, error) {
	repo, tag, _ := strings.Cut(s.Image, ":")
	bindings := map[dc.Port][]dc.PortBinding{}
	for _, p := range s.Ports {
		bindings[dc.Port(p)] = []dc.PortBinding{{HostIP: "127.0.0.1"}}
	}
	var mounts []string
	for _, d := range s.Dirs {
		if err := os.MkdirAll(d, 0o777); err != nil {
			return nil, err
		}
		if err := os.Chmod(d, 0o777); err != nil {
			return nil, err
		}
		mounts = append(mounts, d+":"+d)
	}
	return pool.RunWithOptions(&dockertest.RunOptions{
		Name:         s.Name,
		Repository:   repo,
		Tag:          tag,
		Entrypoint:   s.Entrypoint,
		Cmd:          s.Cmd,
		Env:          s.Env,
		Mounts:       mounts,
		ExposedPorts: s.Ports,
		PortBindings: bindings,
		Labels:       map[string]string{"warren-testbroker": "1"},
	}, func(hc *dc.HostConfig) {
		hc.AutoRemove = true
		hc.RestartPolicy = dc.NeverRestart()
		hc.PublishAllPorts = false // only Ports, on 127.0.0.1
		if s.HostNetwork {
			hc.NetworkMode = "host"
		}
	})
}

// Exec runs cmd in the running container (a name or id) as user ("" for the
// image's), within timeout, and returns its output (stdout and stderr); a
// non-zero exit is an error that includes the output.
func Exec(container, user string, timeout time.Duration, cmd ...string) (string, error) {
	pool, err := Pool()
	if err != nil {
		return "", err
	}
	defer pool.Client.HTTPClient.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ex, err := pool.Client.CreateExec(dc.CreateExecOptions{
		Container:    container,
		Cmd:          cmd,
		User:         user,
		AttachStdout: true,
		AttachStderr: true,
		Context:      ctx,
	})
	if err != nil {
		return "", fmt.Errorf("%s in %s: %v", strings.Join(cmd, " "), container, err)
	}
	var out bytes.Buffer
	if err := pool.Client.StartExec(ex.ID, dc.StartExecOptions{OutputStream: &out, ErrorStream: &out, Context: ctx}); err != nil {
		return out.String(), fmt.Errorf("%s in %s: %v", strings.Join(cmd, " "), container, err)
	}
	st, err := pool.Client.InspectExec(ex.ID)
	if err != nil {
		return out.String(), err
	}
	if st.ExitCode != 0 {
		return out.String(), fmt.Errorf("%s in %s: exit %d: %s", strings.Join(cmd, " "), container, st.ExitCode, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// HostPort is the address a published port of res is reached at from the tests:
// 127.0.0.1:port, or the host of a tcp:// DOCKER_HOST.
func HostPort(res *dockertest.Resource, port string) string {
	host := "127.0.0.1"
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "tcp://") {
		if hh, _, err := net.SplitHostPort(strings.TrimPrefix(h, "tcp://")); err == nil {
			host = hh
		}
	}
	return net.JoinHostPort(host, res.GetPort(port))
}

// Logs returns the container's output so far (stdout and stderr).
func Logs(pool *dockertest.Pool, id string) string {
	var b strings.Builder
	_ = pool.Client.Logs(dc.LogsOptions{Container: id, OutputStream: &b, ErrorStream: &b, Stdout: true, Stderr: true})
	return b.String()
}

// Exited reports whether the container has stopped (or is gone).
func Exited(pool *dockertest.Pool, id string) bool {
	c, err := pool.Client.InspectContainer(id)
	return err != nil || !c.State.Running
}
