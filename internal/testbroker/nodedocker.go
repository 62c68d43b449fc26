package testbroker

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"

	"github.com/warren-farm/warren/internal/testdocker"
)

// A private node runs in Docker when the local rabbitmq-server is not found (or
// testdocker.EnvNoLocal hides it): its container shares the host's network and
// process namespaces (--network host --pid host), runs as the test's own user,
// and has the node's Dir bind-mounted at the same path. Everything else is as
// for a local node: the same environment and files, ports on 127.0.0.1, Stop,
// Kill and Pause signal the container's processes by their host pids (the
// container's main process leads their process group), and the orphan sweep
// finds them by their environment. Only rabbitmqctl differs: it runs in the
// node's container (docker exec).
//
// The nodes find each other (clusters, rabbitmqctl) through an epmd of their
// own on port dockerEpmdPort, run in the container dockerEpmdName, shared by
// every test binary and kept between runs like the shared broker's container;
// an epmd started by a node's container would die with that node.
const (
	dockerEpmdName = "warren-testbroker-epmd"
	dockerEpmdPort = 4370
	// dockerNodeLabel marks the private nodes' containers (besides
	// warren-testbroker=1, which every test container carries).
	dockerNodeLabel = "warren-testbroker-node"
)

// dockerNodeImage is the image private nodes run in when the local RabbitMQ is
// not used: it checks that a local Docker engine answers and that it can run
// containers in the host's process namespace.
func dockerNodeImage() (string, error) {
	if h := os.Getenv("DOCKER_HOST"); h != "" && !strings.HasPrefix(h, "unix://") {
		return "", fmt.Errorf("DOCKER_HOST=%s: private nodes in Docker need the local engine (their processes are signalled by pid)", h)
	}
	pool, err := testdocker.Pool()
	if err != nil {
		return "", err
	}
	pool.Client.HTTPClient.CloseIdleConnections()
	return testdocker.RabbitMQImage, nil
}

// ensureDockerEpmd starts (or finds) the Docker nodes' epmd on
// 127.0.0.1:dockerEpmdPort.
func ensureDockerEpmd() error {
	if epmdAnswers(dockerEpmdPort) == nil {
		return nil
	}
	_, err := testdocker.Service{
		Name:        dockerEpmdName,
		Image:       testdocker.RabbitMQImage,
		HostNetwork: true,
		Entrypoint:  []string{"epmd", "-address", "127.0.0.1", "-port", strconv.Itoa(dockerEpmdPort)},
		Ready:       func(map[string]string) error { return epmdAnswers(dockerEpmdPort) },
	}.Start()
	return err
}

// epmdAnswers asks the epmd on 127.0.0.1:port for its node list (NAMES_REQ):
// it answers with its own port number first.
func epmdAnswers(port int) error {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte{0, 1, 'n'}); err != nil {
		return err
	}
	var got [4]byte
	if _, err := io.ReadFull(c, got[:]); err != nil {
		return fmt.Errorf("127.0.0.1:%d is not an epmd: %v", port, err)
	}
	if p := binary.BigEndian.Uint32(got[:]); p != uint32(port) {
		return fmt.Errorf("127.0.0.1:%d is not an epmd (NAMES_REQ answered %d)", port, p)
	}
	return nil
}

// startContainer runs the node in a new container and returns its id and the
// host pid of its main process (the rabbitmq-server script). The script's
// output goes to stdout.log in the node's directory.
func (n *Node) startContainer() (id string, pid int, err error) {
	if err := ensureDockerEpmd(); err != nil {
		return "", 0, fmt.Errorf("the nodes' epmd: %v", err)
	}
	pool, err := testdocker.Pool()
	if err != nil {
		return "", 0, err
	}
	defer pool.Client.HTTPClient.CloseIdleConnections()
	binds := []string{n.Dir + ":" + n.Dir}
	if tls := n.opts.TLS; tls != nil {
		seen := map[string]bool{n.Dir: true}
		for _, f := range []string{tls.CAFile, tls.CertFile, tls.KeyFile} {
			if d := filepath.Dir(f); !seen[d] {
				seen[d] = true
				binds = append(binds, d+":"+d+":ro")
			}
		}
	}
	repo, tag, _ := strings.Cut(n.image, ":")
	res, err := pool.RunWithOptions(&dockertest.RunOptions{
		Name:       "warren-testnode-" + randHex(6),
		Repository: repo,
		Tag:        tag,
		Entrypoint: []string{"sh", "-c", `exec rabbitmq-server >>"$1" 2>&1`, "sh", filepath.Join(n.Dir, "stdout.log")},
		Env:        n.nodeEnv(),
		WorkingDir: n.Dir,
		User:       hostUser(),
		Labels:     map[string]string{"warren-testbroker": "1", dockerNodeLabel: n.Name},
	}, func(hc *dc.HostConfig) {
		hc.NetworkMode = "host"
		hc.PidMode = "host"
		hc.Binds = binds
		hc.AutoRemove = true
		hc.RestartPolicy = dc.NeverRestart()
		hc.PublishAllPorts = false
	})
	if err != nil {
		return "", 0, fmt.Errorf("running %s: %v", n.image, err)
	}
	id, pid = res.Container.ID, res.Container.State.Pid
	// The pid must be ours to signal: an engine in another pid namespace (the
	// tests in a container, the engine on its host) gives one that is not.
	// Until runc's init has exec'd the entrypoint, the process has its env.
	mark := []byte(ownerEnv + "=" + strconv.Itoa(os.Getpid()) + "\x00")
	visible := func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		return pid > 0 && err == nil && bytes.Contains(b, mark)
	}
	for deadline := time.Now().Add(5 * time.Second); !visible() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if !visible() {
		c, err := pool.Client.InspectContainer(id)
		_ = pool.Client.RemoveContainer(dc.RemoveContainerOptions{ID: id, Force: true})
		if err != nil || !c.State.Running {
			return "", 0, fmt.Errorf("container %s (%s) exited at once", id[:12], n.image)
		}
		return "", 0, fmt.Errorf("container %s's main process (pid %d) is not visible here: the Docker engine must share this "+
			"machine's process namespace", id[:12], pid)
	}
	return id, pid, nil
}

// removeContainer removes the node's container, whatever its state (it is
// removed by itself when its main process ends; this is for the rest).
func removeContainer(id string) {
	pool, err := testdocker.Pool()
	if err != nil {
		return
	}
	defer pool.Client.HTTPClient.CloseIdleConnections()
	// Errors are expected: gone already, or its removal in progress.
	_ = pool.Client.RemoveContainer(dc.RemoveContainerOptions{ID: id, Force: true})
}

// watchPid returns once pid is gone, or kills its group when ctx ends first
// (the node's lifetime cap) and returns once it is gone.
func watchPid(ctx context.Context, pid int) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for processAlive(pid) {
		select {
		case <-ctx.Done():
			_ = killGroup(pid, syscall.SIGKILL)
			for i := 0; i < 250 && processAlive(pid); i++ {
				time.Sleep(20 * time.Millisecond)
			}
			return
		case <-tick.C:
		}
	}
}

// dockerCtl runs rabbitmqctl in the node's container, as the test's user (the
// node's Erlang cookie is readable by it only).
func (n *Node) dockerCtl(args ...string) (string, error) {
	if n.container == "" {
		return "", fmt.Errorf("node %s is not running (rabbitmqctl runs in its container)", n.Name)
	}
	// The environment through env(1): CreateExecOptions.Env needs the API
	// version the client has not negotiated.
	argv := append(append([]string{"env"}, n.nodeEnv()...), "rabbitmqctl", "-n", n.Name, "-q")
	return testdocker.Exec(n.container, hostUser(), cliTimeout, append(argv, args...)...)
}

// hostUser is the test's uid:gid, which a node's container runs as.
func hostUser() string { return fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid()) }
