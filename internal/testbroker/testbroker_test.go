package testbroker

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dc "github.com/ory/dockertest/v3/docker"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/warren-farm/warren/internal/testdocker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// needsBroker skips a test that needs a RabbitMQ (the shared broker, or rabbitmq-server
// for a private node) under -short, which needs none; without -short it runs and fails
// when there is none.
func needsBroker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs RabbitMQ; runs without -short (make test)")
	}
}

// dial opens a connection that is closed at cleanup.
func dial(t *testing.T, url string) *amqp.Connection {
	t.Helper()
	c, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatalf("dial %s: %v", redact(url), err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func channel(t *testing.T, c *amqp.Connection) *amqp.Channel {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	return ch
}

func TestSharedBroker(t *testing.T) {
	needsBroker(t)
	t.Parallel()
	u := AMQPURL(t)
	if !strings.HasSuffix(u, "/") {
		t.Errorf("AMQPURL %q does not end in / (default vhost)", u)
	}
	c := dial(t, u)
	if c.IsClosed() {
		t.Fatal("connection closed")
	}
	b := shared(t)
	status, body, err := b.mgmt("GET", "/api/whoami", nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET /api/whoami on %s: %d %v %s", redact(ManagementURL(t)), status, err, body)
	}
	t.Logf("broker: %s (node %s), management %s, rabbitmqctl usable: %v", b.source, b.node, redact(ManagementURL(t)), NewVhost(t).cli != "")
}

func TestNewVhost(t *testing.T) {
	needsBroker(t)
	t.Parallel()
	var name string
	t.Run("sub/test", func(t *testing.T) {
		began := time.Now()
		v := NewVhost(t)
		t.Logf("NewVhost: %v", time.Since(began))
		name = v.Name
		if !strings.HasPrefix(v.Name, "warren-test-TestNewVhost_sub_test-") {
			t.Errorf("vhost name %q", v.Name)
		}
		if !strings.Contains(v.AMQPURL, "/"+v.Name) || v.ManagementURL != ManagementURL(t) {
			t.Errorf("vhost URLs %q %q", v.AMQPURL, v.ManagementURL)
		}
		ch := channel(t, dial(t, v.AMQPURL))
		if _, err := ch.QueueDeclare("q", false, false, false, false, nil); err != nil {
			t.Fatalf("declare in own vhost: %v", err)
		}
		// The queue is in the new vhost, not in "/".
		if _, ok := v.Queue(t, "q"); !ok {
			t.Fatal("queue q not found in the new vhost")
		}
		status, _, err := shared(t).mgmt("GET", "/api/queues/%2F/q", nil)
		if err != nil || status != http.StatusNotFound {
			t.Errorf("queue q visible in vhost /: %d %v", status, err)
		}
	})
	status, _, err := shared(t).mgmt("GET", "/api/vhosts/"+esc(name), nil)
	if err != nil || status != http.StatusNotFound {
		t.Errorf("vhost %q not deleted at cleanup: %d %v", name, status, err)
	}
}

// backends runs f once with rabbitmqctl (if it can reach the broker here)
// and once with the management API only; newVhost makes vhosts that use the
// backend under test.
func backends(t *testing.T, f func(t *testing.T, newVhost func(testing.TB) *Vhost)) {
	if NewVhost(t).cli != "" {
		t.Run("rabbitmqctl", func(t *testing.T) {
			t.Parallel()
			f(t, NewVhost)
		})
	} else {
		t.Log("rabbitmqctl cannot reach the broker: only the management API is tested")
	}
	t.Run("management", func(t *testing.T) {
		t.Parallel()
		f(t, func(t testing.TB) *Vhost {
			v := NewVhost(t)
			v.cli = ""
			return v
		})
	})
}

func TestCloseConnections(t *testing.T) {
	needsBroker(t)
	t.Parallel()
	backends(t, func(t *testing.T, newVhost func(testing.TB) *Vhost) {
		mine, other := newVhost(t), newVhost(t)
		c1 := dial(t, mine.AMQPURL)
		c1b := dial(t, mine.AMQPURL)
		c2 := dial(t, other.AMQPURL)
		closed1 := c1.NotifyClose(make(chan *amqp.Error, 1))
		closed1b := c1b.NotifyClose(make(chan *amqp.Error, 1))
		closed2 := c2.NotifyClose(make(chan *amqp.Error, 1))

		began := time.Now()
		mine.WaitConnections(t, 2, 15*time.Second)
		other.WaitConnections(t, 1, 15*time.Second)
		t.Logf("WaitConnections: %v", time.Since(began))

		began = time.Now()
		if n := mine.CloseConnections(t); n != 2 {
			t.Fatalf("CloseConnections = %d, want 2", n)
		}
		t.Logf("CloseConnections: %v", time.Since(began))
		for _, ch := range []chan *amqp.Error{closed1, closed1b} {
			select {
			case err := <-ch:
				if err == nil || err.Code != amqp.ConnectionForced {
					t.Errorf("NotifyClose: %v, want 320 CONNECTION_FORCED", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("NotifyClose did not fire within 10s")
			}
		}
		if got := mine.Connections(t); len(got) != 0 {
			t.Errorf("connections left in my vhost: %q", got)
		}

		// The other vhost's connection is untouched.
		select {
		case err := <-closed2:
			t.Fatalf("connection on the other vhost closed: %v", err)
		default:
		}
		if _, err := channel(t, c2).QueueDeclare("", false, true, true, false, nil); err != nil {
			t.Fatalf("other vhost's connection unusable: %v", err)
		}
		if got := other.Connections(t); len(got) != 1 {
			t.Errorf("other vhost connections: %q, want 1", got)
		}
		if n := mine.CloseConnections(t); n != 0 {
			t.Errorf("second CloseConnections = %d, want 0", n)
		}
	})
}

func TestWaitConnectionsFails(t *testing.T) {
	needsBroker(t)
	t.Parallel()
	v := NewVhost(t)
	ft := &fakeT{TB: t}
	runFatal(ft, func() { v.WaitConnections(ft, 1, 300*time.Millisecond) })
	if !ft.failed || !strings.Contains(ft.msg, "want >= 1") {
		t.Fatalf("WaitConnections with no connection: failed=%v %q", ft.failed, ft.msg)
	}
}

func TestQueueAndPolicies(t *testing.T) {
	needsBroker(t)
	t.Parallel()
	backends(t, func(t *testing.T, newVhost func(testing.TB) *Vhost) {
		v := newVhost(t)
		c := dial(t, v.AMQPURL)
		ch := channel(t, c)
		if _, ok := v.Queue(t, "missing"); ok {
			t.Error("Queue(missing) = true")
		}
		shared(t).mustMgmt(t, "PUT", "/api/policies/"+esc(v.Name)+"/limit-jobs",
			map[string]any{"pattern": "^jobs$", "apply-to": "queues", "definition": map[string]any{"max-length": 100}},
			http.StatusCreated, http.StatusNoContent)
		ps := v.Policies(t)
		if len(ps) != 1 || ps[0]["name"] != "limit-jobs" || ps[0]["pattern"] != "^jobs$" {
			t.Fatalf("Policies = %v", ps)
		}

		// Counters of classic queues are current with rabbitmqctl; those of
		// quorum queues lag up to 5s either way, so only check its record.
		if _, err := ch.QueueDeclare("qq", true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
			t.Fatal(err)
		}
		if qi, ok := v.Queue(t, "qq"); !ok || qi.Arguments["x-queue-type"] != "quorum" {
			t.Errorf("Queue(qq) = %+v, %v", qi, ok)
		}
		if _, err := ch.QueueDeclare("jobs", true, false, false, false, amqp.Table{"x-max-length": int32(5)}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			if err := ch.Publish("", "jobs", false, false, amqp.Publishing{Body: []byte("job")}); err != nil {
				t.Fatal(err)
			}
		}
		began := time.Now()
		qi := v.WaitQueue(t, "jobs", func(q QueueInfo) bool { return q.Ready == 3 && q.Policy == "limit-jobs" }, 20*time.Second)
		t.Logf("queue state visible after %v: %+v", time.Since(began), qi)
		if qi.Name != "jobs" || qi.Arguments["x-max-length"] != float64(5) || len(qi.Arguments) != 1 {
			t.Errorf("QueueInfo = %+v", qi)
		}

		if err := ch.Qos(1, 0, false); err != nil {
			t.Fatal(err)
		}
		if _, err := ch.Consume("jobs", "", false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		qi = v.WaitQueue(t, "jobs", func(q QueueInfo) bool { return q.Ready == 2 && q.Unacked == 1 && q.Consumers == 1 }, 20*time.Second)
		t.Logf("after consume: %+v", qi)
	})
}

func TestWatchLog(t *testing.T) {
	needsBroker(t)
	t.Parallel()
	began := time.Now()
	w := WatchLog(t)
	t.Logf("WatchLog: %v (%s)", time.Since(began), w.Path())
	v, quiet := NewVhost(t), NewVhost(t)

	ch := channel(t, dial(t, v.AMQPURL))
	if _, err := ch.QueueDeclare("q", false, false, false, false, amqp.Table{"x-max-length": int32(1)}); err != nil {
		t.Fatal(err)
	}
	_, err := ch.QueueDeclare("q", false, false, false, false, amqp.Table{"x-max-length": int32(2)})
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed {
		t.Fatalf("redeclare with other arguments: %v, want 406", err)
	}
	qch := channel(t, dial(t, quiet.AMQPURL))
	if _, err := qch.QueueDeclare("q", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}

	began = time.Now()
	since := w.Since()
	t.Logf("Since: %v, %d bytes", time.Since(began), len(since))
	if !strings.Contains(since, "Adding vhost '"+v.Name+"'") {
		t.Errorf("Since lacks the creation of %q:\n%s", v.Name, since)
	}
	errs := w.ErrorsFor(v.Name)
	if len(errs) != 1 || !strings.Contains(errs[0], "precondition_failed") || !strings.Contains(errs[0], "inequivalent arg 'x-max-length'") {
		t.Errorf("ErrorsFor(%s) = %q, want the precondition_failed entry", v.Name, errs)
	}
	if errs := w.ErrorsFor(quiet.Name); len(errs) != 0 {
		t.Errorf("ErrorsFor(%s) = %q, want none", quiet.Name, errs)
	}

	// A second watch starts after everything above.
	w2 := WatchLog(t)
	if errs := w2.ErrorsFor(v.Name); len(errs) != 0 {
		t.Errorf("new watch sees old errors: %q", errs)
	}
}

func TestSplitEntries(t *testing.T) {
	t.Parallel()
	text := `2026-11-24 05:15:03.820526+00:00 [error] <0.1037.0> Channel error on connection <0.1028.0> (127.0.0.1:53810 -> 127.0.0.1:5672, vhost: 'v', user: 'guest'), channel 1:
2026-11-24 05:15:03.820526+00:00 [error] <0.1037.0> operation queue.declare caused a channel exception precondition_failed: x
2026-11-24 05:15:03.822105+00:00 [info] <0.1010.0> closing AMQP connection <0.1010.0> (127.0.0.1:53800 -> 127.0.0.1:5672, vhost: 'v', user: 'guest')
`
	e := splitEntries(text)
	if len(e) != 2 || !strings.HasSuffix(e[0], "channel 1:\noperation queue.declare caused a channel exception precondition_failed: x") {
		t.Fatalf("splitEntries = %q", e)
	}
}

func TestWatchLogNotTheBrokersLog(t *testing.T) {
	needsBroker(t)
	saved := logProbeTimeout
	logProbeTimeout = 500 * time.Millisecond
	t.Cleanup(func() { logProbeTimeout = saved })
	other := filepath.Join(t.TempDir(), "rabbit.log")
	if err := os.WriteFile(other, []byte("not a broker log\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvBrokerLog, other)
	_, err := findLog(shared(t))
	if err == nil || !strings.Contains(err.Error(), "is not this broker's log") || !strings.Contains(err.Error(), EnvBrokerLog) {
		t.Fatalf("findLog with a foreign file: %v", err)
	}
	t.Logf("message: %v", err)
}

func TestResolveFailures(t *testing.T) {
	closed := closedPort(t)
	noDocker := func() (string, string, error) { return "", "", errors.New("no Docker engine answers") }
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	saved := defaultAMQPURL
	t.Cleanup(func() { defaultAMQPURL = saved })

	// Nothing anywhere.
	defaultAMQPURL = "amqp://guest:guest@" + closed + "/"
	_, err := resolve(resolveEnv{getenv: env(), docker: noDocker})
	if err == nil || !strings.Contains(err.Error(), "rabbitmq-server -detached") || !strings.Contains(err.Error(), "AMQP_URL=") || !strings.Contains(err.Error(), "Docker") {
		t.Errorf("no broker: %v", err)
	}
	t.Logf("no broker message:\n%v", err)

	// AMQP_URL set but dead: no fallback.
	_, err = resolve(resolveEnv{getenv: env(EnvAMQPURL, "amqp://guest:guest@"+closed+"/"), docker: noDocker})
	if err == nil || !strings.Contains(err.Error(), "AMQP_URL=") {
		t.Errorf("dead AMQP_URL: %v", err)
	}

	// Broker without management API.
	defaultAMQPURL = saved
	needsBroker(t)
	_, err = resolve(resolveEnv{getenv: env(EnvAMQPURL, AMQPURL(t), EnvManagementURL, "http://guest:guest@"+closed), docker: noDocker})
	if err == nil || !strings.Contains(err.Error(), "rabbitmq-plugins enable rabbitmq_management") {
		t.Errorf("no management: %v", err)
	}

	// The working setup resolves the same way as the shared one.
	// (MANAGEMENT_URL too: the Docker broker's is not on port 15672.)
	b, err := resolve(resolveEnv{getenv: env(EnvAMQPURL, AMQPURL(t), EnvManagementURL, ManagementURL(t)), docker: noDocker})
	if err != nil || b.node != shared(t).node || b.mgmtURL.String() != ManagementURL(t) {
		t.Errorf("resolve with AMQP_URL: %+v %v", b, err)
	}
}

func TestDockerUnavailable(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "docker.sock"))
	began := time.Now()
	_, _, err := dockerBroker()
	if err == nil || !strings.Contains(err.Error(), "no Docker engine answers") {
		t.Fatalf("dockerBroker without engine: %v", err)
	}
	t.Logf("%v after %v", err, time.Since(began))
}

func TestNodeRestart(t *testing.T) {
	needsBroker(t)
	t.Parallel()
	began := time.Now()
	n := StartNode(t)
	startNode := time.Since(began)
	if !strings.HasPrefix(n.Name, "warren-test-") || n.Port == 5672 || n.Dir == "" {
		t.Fatalf("node %+v", n)
	}
	c := dial(t, n.AMQPURL)
	ch := channel(t, c)
	if _, err := ch.QueueDeclare("durable", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("transient", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	conf, err := ch.PublishWithDeferredConfirm("", "durable", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("survivor")})
	if err != nil || !conf.Wait() {
		t.Fatalf("publish persistent: %v", err)
	}
	closed := c.NotifyClose(make(chan *amqp.Error, 1))

	began = time.Now()
	n.Stop(t)
	stop := time.Since(began)
	select {
	case err := <-closed:
		t.Logf("client saw: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("client connection not closed by Stop")
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", itoa(n.Port)), time.Second); err == nil {
		c.Close()
		t.Fatal("port still open after Stop")
	}
	if _, err := os.Stat(filepath.Join(n.Dir, "home", ".erlang.cookie")); err != nil {
		t.Errorf("private cookie: %v", err)
	}
	n.Stop(t) // idempotent

	began = time.Now()
	n.Start(t)
	start := time.Since(began)
	ch = channel(t, dial(t, n.AMQPURL))
	q, err := ch.QueueDeclarePassive("durable", true, false, false, false, nil)
	if err != nil || q.Messages != 1 {
		t.Fatalf("durable queue after restart: %+v %v", q, err)
	}
	msg, ok, err := ch.Get("durable", true)
	if err != nil || !ok || string(msg.Body) != "survivor" {
		t.Fatalf("get: %v %v %q", ok, err, msg.Body)
	}
	if _, err := ch.QueueDeclarePassive("transient", false, false, false, false, nil); err == nil {
		t.Error("transient queue survived the restart")
	}
	t.Logf("timings: StartNode %v, Stop %v, Start %v", startNode.Round(10*time.Millisecond), stop.Round(10*time.Millisecond), start.Round(10*time.Millisecond))

	// The shared broker was not touched.
	dial(t, AMQPURL(t))
}

func TestNodeCleanupLeavesNothing(t *testing.T) {
	needsBroker(t)
	t.Parallel()
	var n *Node
	var pid int
	t.Run("node", func(t *testing.T) {
		n = StartNode(t)
		pid = n.pid
		if n.image != "" && len(nodeContainers(t, n.Name)) != 1 {
			t.Errorf("node %s runs in Docker, but its container is not listed by its label", n.Name)
		}
	})
	if groupAlive(pid) {
		t.Errorf("processes of node group %d still alive after cleanup", pid)
	}
	if pids := killMatching("-home " + n.home()); len(pids) != 0 {
		t.Errorf("leftover node processes %v", pids)
	}
	if _, err := os.Stat(n.Dir); !os.IsNotExist(err) {
		t.Errorf("node dir not removed: %v", err)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", itoa(n.Port)), time.Second); err == nil {
		c.Close()
		t.Error("node port still open after cleanup")
	}
	if n.image != "" {
		if left := nodeContainers(t, n.Name); len(left) > 0 {
			t.Errorf("node %s's containers left after cleanup: %v", n.Name, left)
		}
	}
}

// nodeContainers lists the containers (any state) of the Docker node name.
func nodeContainers(t *testing.T, name string) []string {
	t.Helper()
	pool, err := testdocker.Pool()
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Client.HTTPClient.CloseIdleConnections()
	cs, err := pool.Client.ListContainers(dc.ListContainersOptions{All: true,
		Filters: map[string][]string{"label": {dockerNodeLabel + "=" + name}}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range cs {
		ids = append(ids, c.ID[:12]+" "+c.State)
	}
	return ids
}

// TestEpmdAnswers checks the probe that tells the Docker nodes' epmd from
// anything else listening on its port.
func TestEpmdAnswers(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	served := make(chan struct{})
	go func() { // one connection that answers an epmd's way (its port), one that does not
		defer close(served)
		for _, answer := range [][]byte{{0, 0, byte(port >> 8), byte(port)}, []byte("HTTP/1.1 400 Bad Request\r\n")} {
			c, err := l.Accept()
			if err != nil {
				return
			}
			req := make([]byte, 3)
			if _, err := io.ReadFull(c, req); err == nil && string(req) == "\x00\x01n" {
				_, _ = c.Write(answer)
			}
			c.Close()
		}
	}()
	if err := epmdAnswers(port); err != nil {
		t.Errorf("an epmd's answer: %v", err)
	}
	if err := epmdAnswers(port); err == nil || !strings.Contains(err.Error(), "not an epmd") {
		t.Errorf("another server's answer: %v, want not an epmd", err)
	}
	<-served
	l.Close()
	if err := epmdAnswers(port); err == nil {
		t.Error("nothing listening: no error")
	}
}

// ---- helpers ----

func itoa(i int) string { return strconv.Itoa(i) }

var sprintf = fmt.Sprintf

func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// fakeT records a Fatalf instead of failing the real test.
type fakeT struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = sprintf(format, args...)
	panic(fakeFatal{})
}

type fakeFatal struct{}

func runFatal(ft *fakeT, f func()) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(fakeFatal); !ok {
				panic(r)
			}
		}
	}()
	f()
}
