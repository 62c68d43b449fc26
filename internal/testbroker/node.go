package testbroker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warren-farm/warren/internal/testdocker"
)

// Node is a private, throwaway RabbitMQ node for tests that stop and restart
// the broker. It never touches the shared node: it has its own Erlang node
// name, AMQP and distribution ports (on 127.0.0.1 only), data, log, config,
// Erlang cookie (HOME) and an empty plugin list (so no management/prometheus
// listener competes for 15672/15692). Its management API is therefore not
// available: inspect it over AMQP. Its methods are meant for the test's
// goroutine (not safe for concurrent use).
//
// It runs the local RabbitMQ 3.10 (rabbitmq-server), or, where that is not
// found or testdocker.EnvNoLocal hides it, the same in a container of
// testdocker.RabbitMQImage that shares the host's network and processes (see
// nodedocker.go): the tests cannot tell the difference.
//
// Measured on the development machine (RabbitMQ 3.10.8, Erlang 25, 2 CPUs,
// go test -race): StartNode ~5s (fresh node until AMQP answers; 8-9s when two
// nodes boot at once), Stop ~1.1s (graceful SIGTERM shutdown until the port
// refuses), Start ~4.5s (restart on the existing data, durable queues
// recovered). Budget ~12s for a test that starts, stops and restarts a node.
type Node struct {
	Name    string // Erlang node name, warren-test-<random>@localhost
	AMQPURL string // amqp://guest:guest@127.0.0.1:<Port>/
	Port    int    // AMQP port, on 127.0.0.1
	Dir     string // everything the node writes lives here (a t.TempDir)

	distPort int
	script   string // the local rabbitmq-server; "" for a node in Docker
	image    string // the image of a node in Docker; "" for a local node
	opts     NodeOptions
	probeTLS *tls.Config // the readiness probe's, for a TLS node

	// Set while the node process runs (between Start and Stop).
	pid       int // leads the node's process group: the script (local) or the container's main process
	container string
	cmd       *exec.Cmd // local only
	out       *os.File  // local only
	cancel    context.CancelFunc
	done      chan struct{}
	waitErr   error
	paused    bool // SIGSTOPped by Pause, not yet resumed
}

const (
	nodeStartTimeout = 60 * time.Second
	nodeStopTimeout  = 60 * time.Second
	// nodeMaxLifetime caps a node process whatever happens to the test (the
	// exec timeout of the long-running rabbitmq-server command).
	nodeMaxLifetime = 2 * time.Hour
)

// serverScript finds the real rabbitmq-server script. Debian's
// /usr/sbin/rabbitmq-server is a wrapper that, run as root, switches to the
// rabbitmq user (who cannot write in a test's temporary dir) and redirects the
// output into the shared node's /var/log/rabbitmq/startup_log: it is bypassed.
func serverScript() (string, error) {
	if testdocker.NoLocal() {
		return "", fmt.Errorf("%s=1 hides the local rabbitmq-server", testdocker.EnvNoLocal)
	}
	const debianReal = "/usr/lib/rabbitmq/bin/rabbitmq-server"
	if _, err := os.Stat(debianReal); err == nil {
		return debianReal, nil
	}
	p, err := exec.LookPath("rabbitmq-server")
	if err != nil {
		return "", errors.New("rabbitmq-server not found on PATH (install RabbitMQ 3.10: apt-get install rabbitmq-server, " +
			"or the generic-unix tarball with its sbin directory on PATH)")
	}
	if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), "su rabbitmq") {
		return "", fmt.Errorf("%s is a wrapper that runs the broker as user rabbitmq, and the real script was not found at %s", p, debianReal)
	}
	return p, nil
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testbroker: finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartNode starts a private RabbitMQ node (see Node) and waits until it
// answers AMQP, failing t with the node's log tail if it does not within 60s.
// A t.Cleanup stops the node and kills whatever is left of its processes
// before its directory is removed. Should the test binary die without running
// its cleanups (killed by -timeout), the next StartNode anywhere on the
// machine kills the orphaned node (its processes carry the test binary's pid
// in WARREN_TESTBROKER_OWNER).
func StartNode(t testing.TB) *Node {
	t.Helper()
	return StartNodeWith(t, NodeOptions{})
}

// StartNodeWith is StartNode with extra broker configuration (see NodeOptions).
func StartNodeWith(t testing.TB, opts NodeOptions) *Node {
	t.Helper()
	script, err := serverScript()
	var image string
	if err != nil {
		var derr error
		if image, derr = dockerNodeImage(); derr != nil {
			t.Fatalf("testbroker: StartNode: %v; and no Docker fallback: %v", err, derr)
		}
		script = ""
	}
	if pids := sweepOrphans(); len(pids) > 0 {
		t.Logf("testbroker: killed processes %v of private nodes left behind by dead test binaries", pids)
	}
	dir := t.TempDir() // registered first, so removed after the node stopped
	n := &Node{
		Name:     "warren-test-" + randHex(4) + "@localhost",
		Port:     freePort(t),
		Dir:      dir,
		distPort: freePort(t),
		script:   script,
		image:    image,
		opts:     opts,
	}
	for n.distPort == n.Port {
		n.distPort = freePort(t)
	}
	n.AMQPURL = fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", n.Port)
	if opts.TLS != nil {
		n.AMQPURL = fmt.Sprintf("amqps://guest:guest@127.0.0.1:%d/", n.Port)
		if n.probeTLS, err = opts.probeTLS(); err != nil {
			t.Fatalf("testbroker: StartNode: TLS: %v", err)
		}
	}

	files := map[string]string{
		"rabbitmq.conf": "# warren testbroker private node\n" + opts.listenerConf(n.Port) +
			"log.console = false\nlog.file.level = info\n" + opts.confLines(),
		"enabled_plugins": "[].\n",
		// Replaces /etc/rabbitmq/rabbitmq-env.conf, which may name the
		// shared node (NODENAME=...).
		"rabbitmq-env.conf": "# warren testbroker private node: intentionally empty\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatalf("testbroker: StartNode: %v", err)
		}
	}
	for _, d := range []string{"home", "log", "mnesia", "conf.d"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatalf("testbroker: StartNode: %v", err)
		}
	}
	if opts.Cookie != "" {
		if err := os.WriteFile(filepath.Join(dir, "home", ".erlang.cookie"), []byte(opts.Cookie), 0o400); err != nil {
			t.Fatalf("testbroker: StartNode: cookie: %v", err)
		}
	}
	t.Cleanup(func() {
		if err := n.stop(); err != nil {
			t.Errorf("testbroker: stopping node %s: %v", n.Name, err)
		}
		if pids := killMatching("-home " + n.home()); len(pids) > 0 {
			t.Errorf("testbroker: node %s left processes %v behind (killed)", n.Name, pids)
			time.Sleep(200 * time.Millisecond) // let them die before the dir goes
		}
	})
	n.Start(t)
	return n
}

func (n *Node) home() string    { return filepath.Join(n.Dir, "home") }
func (n *Node) logFile() string { return filepath.Join(n.Dir, "log", "node.log") }

// env is the local node's environment: the test's, minus anything
// RabbitMQ/Erlang related, plus the node's private settings (nodeEnv).
func (n *Node) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "RABBITMQ_") || strings.HasPrefix(k, "ERL_") || k == "HOME" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, n.nodeEnv()...)
}

// nodeEnv is the node's private settings; all of a Docker node's environment
// besides its image's.
func (n *Node) nodeEnv() []string {
	var env []string
	if n.image != "" {
		env = append(env, "ERL_EPMD_PORT="+strconv.Itoa(dockerEpmdPort))
	}
	if n.opts.TLS == nil {
		// A TLS node has no plain listener: these would make one.
		env = append(env, "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1", "RABBITMQ_NODE_PORT="+strconv.Itoa(n.Port))
	}
	return append(env,
		"HOME="+n.home(), // private Erlang cookie
		"RABBITMQ_NODENAME="+n.Name,
		"RABBITMQ_DIST_PORT="+strconv.Itoa(n.distPort),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(n.Dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(n.Dir, "log"),
		"RABBITMQ_LOGS="+n.logFile(),
		"RABBITMQ_PID_FILE="+filepath.Join(n.Dir, "node.pid"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(n.Dir, "rabbitmq.conf"),
		// Not /etc/rabbitmq/conf.d (an image's may enable plugins' settings).
		"RABBITMQ_CONFIG_FILES="+filepath.Join(n.Dir, "conf.d"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(n.Dir, "advanced.config"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(n.Dir, "enabled_plugins"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(n.Dir, "rabbitmq-env.conf"),
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}"+n.opts.erlArgs(),
		"ERL_EPMD_ADDRESS=127.0.0.1", // only used if this node has to start epmd
		ownerEnv+"="+strconv.Itoa(os.Getpid()),
	)
}

// Start starts the node again with the same name, port and data directory
// (durable queues and persistent messages survive) and waits until it answers
// AMQP. It fails t if the node is already running.
func (n *Node) Start(t testing.TB) {
	t.Helper()
	if n.pid != 0 {
		t.Fatalf("testbroker: node %s is already running", n.Name)
	}
	began := time.Now()
	var err error
	if n.image != "" {
		err = n.startDocker()
	} else {
		err = n.startLocal()
	}
	if err != nil {
		t.Fatalf("testbroker: starting node %s: %v\n%s", n.Name, err, n.logTail())
	}
	done := n.done

	deadline := time.Now().Add(nodeStartTimeout)
	for {
		select {
		case <-done:
			err := n.waitErr
			_ = n.stop() // reap and reset
			t.Fatalf("testbroker: node %s exited while starting (%v)\n%s", n.Name, err, n.logTail())
		default:
		}
		c, err := amqp.DialConfig(n.AMQPURL, amqp.Config{Dial: amqp.DefaultDial(time.Second), TLSClientConfig: n.probeTLS})
		if err == nil {
			_ = c.Close()
			t.Logf("testbroker: node %s answers AMQP on 127.0.0.1:%d after %v", n.Name, n.Port, time.Since(began).Round(10*time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			_ = n.stop()
			t.Fatalf("testbroker: node %s does not answer AMQP on 127.0.0.1:%d after %v: %v\n%s", n.Name, n.Port, nodeStartTimeout, err, n.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startLocal runs the local rabbitmq-server script as the leader of a new
// process group.
func (n *Node) startLocal() error {
	out, err := os.OpenFile(filepath.Join(n.Dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodeMaxLifetime)
	cmd := exec.CommandContext(ctx, n.script)
	cmd.Dir = n.Dir
	cmd.Env = n.env()
	cmd.Stdout, cmd.Stderr = out, out // files: no copying goroutine
	setProcessGroup(cmd)
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		out.Close()
		return fmt.Errorf("%s: %v", n.script, err)
	}
	done := make(chan struct{})
	n.pid, n.cmd, n.cancel, n.out, n.done, n.waitErr = cmd.Process.Pid, cmd, cancel, out, done, nil
	go func() {
		err := cmd.Wait()
		n.waitErr = err // read only after <-done
		close(done)
	}()
	return nil
}

// startDocker runs the node in a container (nodedocker.go); done closes when
// its main process is gone.
func (n *Node) startDocker() error {
	id, pid, err := n.startContainer()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodeMaxLifetime)
	done := make(chan struct{})
	n.pid, n.container, n.cancel, n.done, n.waitErr = pid, id, cancel, done, nil
	go func() {
		watchPid(ctx, pid)
		n.waitErr = fmt.Errorf("container %s ended", id[:12]) // read only after <-done
		close(done)
	}()
	return nil
}

// Stop stops the node completely: client connections are closed by the
// broker (connection.close 320 CONNECTION_FORCED, shutdown), the node's
// processes exit, and Stop returns once the AMQP port refuses connections.
// Stopping a stopped node does nothing.
func (n *Node) Stop(t testing.TB) {
	t.Helper()
	if n.pid == 0 {
		return
	}
	began := time.Now()
	if err := n.stop(); err != nil {
		t.Fatalf("testbroker: stopping node %s: %v\n%s", n.Name, err, n.logTail())
	}
	t.Logf("testbroker: node %s stopped in %v", n.Name, time.Since(began).Round(10*time.Millisecond))
}

// stop terminates the node process (gracefully, then by force), reaps every
// process of its group, and waits until the port refuses.
func (n *Node) stop() error {
	if n.pid == 0 {
		return nil
	}
	pid, done := n.pid, n.done
	var problems []string
	if n.paused {
		// A stopped process cannot handle SIGTERM.
		_ = killGroup(pid, syscall.SIGCONT)
		n.paused = false
	}

	// rabbitmq-server, run in the foreground, is a sh script whose TERM trap
	// forwards the signal to beam.smp, which then shuts down gracefully.
	_ = signalProcess(pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(nodeStopTimeout):
		problems = append(problems, fmt.Sprintf("no graceful stop within %v, killed", nodeStopTimeout))
		_ = killGroup(pid, syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			n.cancel() // last resort; Wait returns at most WaitDelay later
			<-done
		}
	}
	// beam.smp's helpers (erl_child_setup, inet_gethost) share the group.
	for i := 0; groupAlive(pid); i++ {
		if i == 0 {
			_ = killGroup(pid, syscall.SIGKILL)
		}
		if i > 100 {
			problems = append(problems, "processes of the node's group survive SIGKILL")
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.cancel()
	if n.out != nil {
		n.out.Close()
	}
	if n.container != "" {
		removeContainer(n.container)
	}
	n.pid, n.container, n.cmd, n.cancel, n.out = 0, "", nil, nil, nil

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(n.Port))
	for deadline := time.Now().Add(15 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			problems = append(problems, addr+" still accepts connections")
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// logTail returns the end of the node's log and stdout, for failure messages.
func (n *Node) logTail() string {
	var b strings.Builder
	for _, f := range []string{n.logFile(), filepath.Join(n.Dir, "stdout.log")} {
		data, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(&b, "--- %s: %v\n", f, err)
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		fmt.Fprintf(&b, "--- last lines of %s:\n%s\n", f, strings.Join(lines, "\n"))
	}
	return b.String()
}

// Ctl runs rabbitmqctl against this node (its own name and Erlang cookie), e.g.
// n.Ctl(t, "set_vm_memory_high_watermark", "0.000001") to raise a memory alarm.
func (n *Node) Ctl(t testing.TB, args ...string) string {
	t.Helper()
	var out string
	var err error
	if n.image != "" {
		out, err = n.dockerCtl(args...)
	} else {
		ctl := filepath.Join(filepath.Dir(n.script), "rabbitmqctl")
		out, err = runCmd(cliTimeout, n.env(), ctl, append([]string{"-n", n.Name, "-q"}, args...)...)
	}
	if err != nil {
		t.Fatalf("testbroker: rabbitmqctl %v on %s: %v\n%s", args, n.Name, err, out)
	}
	return out
}
