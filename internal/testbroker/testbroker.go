package testbroker

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warren-farm/warren/internal/testdocker"
)

// Environment variables understood by the package.
const (
	// EnvAMQPURL selects the broker (any vhost path is ignored: AMQPURL
	// returns the URL of vhost "/").
	EnvAMQPURL = "AMQP_URL"
	// EnvManagementURL selects the management API, e.g.
	// http://guest:guest@127.0.0.1:15672.
	EnvManagementURL = "MANAGEMENT_URL"
	// EnvBrokerLog names the broker's log file for WatchLog when it cannot
	// be found through the management API (e.g. a bind-mounted Docker log).
	EnvBrokerLog = "WARREN_BROKER_LOG"
	// EnvNoCLI, set to a non-empty value, stops the package from using
	// rabbitmqctl for connection and queue inspection (see Vhost).
	EnvNoCLI = "WARREN_TESTBROKER_NO_CLI"
)

// defaultAMQPURL is the broker tried when AMQP_URL is unset. A variable so
// the package's own tests can exercise the "no broker anywhere" path.
var defaultAMQPURL = "amqp://guest:guest@127.0.0.1:5672/"

// probeTimeout bounds the TCP+AMQP handshake used to detect a broker.
const probeTimeout = 2 * time.Second

// httpClient talks to the management API. Keep-alives are disabled so that no
// idle-connection goroutine outlives a request (goleak in callers' tests);
// the proxy is ignored so that HTTP_PROXY cannot hijack 127.0.0.1.
var httpClient = &http.Client{
	Timeout: 20 * time.Second,
	Transport: &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
		DialContext:       (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	},
}

// broker is the resolved shared broker.
type broker struct {
	amqpURL *url.URL // vhost "/" (path "/")
	mgmtURL *url.URL // scheme://host:port, user info kept for basic auth
	source  string   // how it was found, for messages
	node    string   // Erlang node name, from GET /api/overview
}

var (
	resolveOnce sync.Once
	resolved    *broker
	resolveErr  error
)

// shared returns the shared broker, resolving it on first use, or fails t.
func shared(t testing.TB) *broker {
	t.Helper()
	resolveOnce.Do(func() { resolved, resolveErr = resolve(resolveEnv{getenv: os.Getenv}) })
	if resolveErr != nil {
		t.Fatalf("testbroker: %v", resolveErr)
	}
	return resolved
}

// resolveEnv abstracts the process environment and the Docker fallback for
// the package's own tests.
type resolveEnv struct {
	getenv func(string) string
	// docker overrides the Docker fallback (nil: use dockertest).
	docker func() (amqpURL, mgmtURL string, err error)
}

const howToGetABroker = `no RabbitMQ broker available for the tests. Get one by either:
  - starting a local broker:   rabbitmq-server -detached   (or: systemctl start rabbitmq-server)
                               and enable its management API: rabbitmq-plugins enable rabbitmq_management
  - pointing the tests at one: AMQP_URL=amqp://user:pass@host:5672/ MANAGEMENT_URL=http://user:pass@host:15672
  - starting a Docker engine:  the tests then run ` + testdocker.RabbitMQImage + ` themselves`

func resolve(env resolveEnv) (*broker, error) {
	b := &broker{}
	var amqpStr, mgmtStr string
	if s := env.getenv(EnvAMQPURL); s != "" {
		if err := probeAMQP(s); err != nil {
			return nil, fmt.Errorf("AMQP_URL=%s does not answer: %v\nfix AMQP_URL or unset it to use a local broker (rabbitmq-server -detached) or Docker", redact(s), err)
		}
		amqpStr, b.source = s, "AMQP_URL"
	} else if err := probeLocal(env); err == nil {
		amqpStr, b.source = defaultAMQPURL, "local broker at "+redact(defaultAMQPURL)
	} else {
		localErr := err
		dockerFn := env.docker
		if dockerFn == nil {
			dockerFn = dockerBroker
		}
		a, m, derr := dockerFn()
		if derr != nil {
			return nil, fmt.Errorf("%s\n(local broker %s: %v; Docker: %v)", howToGetABroker, redact(defaultAMQPURL), localErr, derr)
		}
		amqpStr, mgmtStr, b.source = a, m, "Docker container "+dockerContainerName
	}

	u, err := amqp.ParseURI(amqpStr)
	if err != nil {
		return nil, fmt.Errorf("invalid AMQP URL %s: %v", redact(amqpStr), err)
	}
	b.amqpURL = &url.URL{
		Scheme: u.Scheme,
		User:   url.UserPassword(u.Username, u.Password),
		Host:   net.JoinHostPort(u.Host, strconv.Itoa(u.Port)),
		Path:   "/",
	}
	if raw, err := url.Parse(amqpStr); err == nil {
		b.amqpURL.RawQuery = raw.RawQuery
	}

	if s := env.getenv(EnvManagementURL); s != "" {
		mgmtStr = s
	} else if mgmtStr == "" {
		mgmtStr = (&url.URL{
			Scheme: "http",
			User:   url.UserPassword(u.Username, u.Password),
			Host:   net.JoinHostPort(u.Host, "15672"),
		}).String()
	}
	mu, err := url.Parse(mgmtStr)
	if err != nil || mu.Host == "" {
		return nil, fmt.Errorf("invalid management URL %q (MANAGEMENT_URL): %v", mgmtStr, err)
	}
	if mu.User == nil {
		mu.User = url.UserPassword(u.Username, u.Password)
	}
	mu.Path, mu.RawPath, mu.RawQuery, mu.Fragment = strings.TrimSuffix(mu.Path, "/"), "", "", ""
	b.mgmtURL = mu

	var overview struct {
		Node            string `json:"node"`
		RabbitMQVersion string `json:"rabbitmq_version"`
	}
	status, body, err := b.mgmt("GET", "/api/overview", nil)
	switch {
	case err != nil:
		return nil, fmt.Errorf("the broker (%s) answers AMQP but its management API at %s does not: %v\n"+
			"Enable it with: rabbitmq-plugins enable rabbitmq_management (or set MANAGEMENT_URL)", b.source, redact(b.mgmtURL.String()), err)
	case status == http.StatusUnauthorized:
		return nil, fmt.Errorf("management API at %s refuses the credentials (401); set MANAGEMENT_URL=http://user:pass@host:port", redact(b.mgmtURL.String()))
	case status != http.StatusOK:
		return nil, fmt.Errorf("management API at %s: GET /api/overview: %d %s\n"+
			"Enable it with: rabbitmq-plugins enable rabbitmq_management (or set MANAGEMENT_URL)", redact(b.mgmtURL.String()), status, truncate(body))
	}
	if err := json.Unmarshal(body, &overview); err != nil || overview.Node == "" {
		return nil, fmt.Errorf("management API at %s: GET /api/overview: unexpected answer %q (is this the RabbitMQ management plugin?)", redact(b.mgmtURL.String()), truncate(body))
	}
	b.node = overview.Node
	return b, nil
}

// probeLocal probes the local broker at defaultAMQPURL, unless
// WARREN_TEST_NO_LOCAL hides it.
func probeLocal(env resolveEnv) error {
	if v := env.getenv(testdocker.EnvNoLocal); v != "" && v != "0" {
		return fmt.Errorf("%s=1 hides it", testdocker.EnvNoLocal)
	}
	return probeAMQP(defaultAMQPURL)
}

// probeAMQP checks that an AMQP handshake completes within probeTimeout.
func probeAMQP(s string) error {
	c, err := amqp.DialConfig(s, amqp.Config{Dial: amqp.DefaultDial(probeTimeout)})
	if err != nil {
		return err
	}
	return c.Close()
}

// AMQPURL returns the URL of the shared broker's default vhost "/", e.g.
// amqp://guest:guest@127.0.0.1:5672/. It fails t (never skips) when no broker
// can be found; see the package documentation for how one is found.
func AMQPURL(t testing.TB) string {
	t.Helper()
	return shared(t).amqpURL.String()
}

// ManagementURL returns the base URL of the shared broker's management HTTP
// API, with credentials, e.g. http://guest:guest@127.0.0.1:15672.
func ManagementURL(t testing.TB) string {
	t.Helper()
	return shared(t).mgmtURL.String()
}

// mgmt performs one management API request. path is already escaped (use
// esc for each segment); body, if non-nil, is sent as JSON.
func (b *broker) mgmt(method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = strings.NewReader(string(j))
	}
	u := *b.mgmtURL
	u.User = nil
	req, err := http.NewRequest(method, u.String()+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if b.mgmtURL.User != nil {
		p, _ := b.mgmtURL.User.Password()
		req.SetBasicAuth(b.mgmtURL.User.Username(), p)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("X-Reason", "warren testbroker")
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// mustMgmt is mgmt that fails t unless the status is one of ok.
func (b *broker) mustMgmt(t testing.TB, method, path string, body any, ok ...int) (int, []byte) {
	t.Helper()
	status, data, err := b.mgmt(method, path, body)
	if err != nil {
		t.Fatalf("testbroker: management API %s %s: %v", method, path, err)
	}
	for _, s := range ok {
		if s == status {
			return status, data
		}
	}
	t.Fatalf("testbroker: management API %s %s: %d %s", method, path, status, truncate(data))
	return 0, nil
}

// esc escapes one path segment of a management API URL ("/" becomes %2F).
func esc(s string) string { return url.PathEscape(s) }

// user is the broker user the package authenticates as (and grants vhosts to).
func (b *broker) user() string { return b.amqpURL.User.Username() }

// Vhost is a private virtual host on the shared broker, deleted when the test
// ends. Everything a test declares inside it is invisible to other tests.
//
// Connection listing/closing and queue inspection use rabbitmqctl when it can
// reach the shared node (checked once, by looking for the first new vhost
// through it): rabbitmqctl sees connections and message counts immediately,
// whereas the management API only learns about them every
// collect_statistics_interval (5s by default), so new connections appear there
// after 0-5s and queue counters lag by as much. Without rabbitmqctl (Docker,
// remote broker, WARREN_TESTBROKER_NO_CLI=1) the management API is used and
// callers must poll (WaitConnections, WaitQueue); the Docker fallback lists
// connections with its container's rabbitmqctl (docker exec), fresh too.
type Vhost struct {
	Name          string // e.g. "warren-test-TestFoo_bar-1a2b3c4d"
	AMQPURL       string // amqp URL of this vhost (name path-escaped)
	ManagementURL string // base URL of the management API (same as ManagementURL)

	b   *broker
	cli string // node name for rabbitmqctl -n, "" to use the management API only
}

var nameUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// randHex returns 2n random hex digits.
func randHex(n int) string {
	p := make([]byte, n)
	if _, err := rand.Read(p); err != nil {
		panic(err)
	}
	return hex.EncodeToString(p)
}

// NewVhost creates a fresh vhost named "warren-test-<test name>-<random>"
// through the management API, grants the broker user full permissions on it,
// and registers a t.Cleanup that deletes it (which also closes any connection
// still open on it and deletes its queues).
func NewVhost(t testing.TB) *Vhost {
	t.Helper()
	b := shared(t)
	tn := nameUnsafe.ReplaceAllString(t.Name(), "_")
	if len(tn) > 60 {
		tn = tn[:60]
	}
	name := "warren-test-" + tn + "-" + randHex(4)
	b.mustMgmt(t, "PUT", "/api/vhosts/"+esc(name), map[string]any{"description": "warren test " + t.Name()}, http.StatusCreated, http.StatusNoContent)
	t.Cleanup(func() {
		status, data, err := b.mgmt("DELETE", "/api/vhosts/"+esc(name), nil)
		if err != nil || (status != http.StatusNoContent && status != http.StatusNotFound) {
			t.Errorf("testbroker: deleting vhost %q: %d %v %s", name, status, err, truncate(data))
		}
	})
	b.mustMgmt(t, "PUT", "/api/permissions/"+esc(name)+"/"+esc(b.user()),
		map[string]string{"configure": ".*", "write": ".*", "read": ".*"}, http.StatusCreated, http.StatusNoContent)

	u := *b.amqpURL
	u.Path = "/" + name
	u.RawPath = "/" + esc(name)
	cliOnce.Do(func() { cliNode = probeCLI(b, name) })
	return &Vhost{Name: name, AMQPURL: u.String(), ManagementURL: b.mgmtURL.String(), b: b, cli: cliNode}
}

// ctl runs rabbitmqctl -q args against the shared node: the local one when it
// reaches the node, else the Docker fallback's own, in its container (docker
// exec). Either sees connections at once, unlike the management API. ok is
// false when neither is there.
func (v *Vhost) ctl(t testing.TB, args ...string) (out string, ok bool) {
	t.Helper()
	switch {
	case v.cli != "":
		return cli(t, v.cli, args...), true
	case strings.HasPrefix(shared(t).source, "Docker"):
		return dockerCtl(t, args...), true
	}
	return "", false
}

// connNames lists the names ("127.0.0.1:40000 -> 127.0.0.1:5672") of this
// vhost's client connections.
func (v *Vhost) connNames(t testing.TB) []string {
	t.Helper()
	// list_connections has no vhost filter (-p is accepted and ignored).
	args := []string{"list_connections", "--formatter", "json", "name", "vhost"}
	if out, ok := v.ctl(t, args...); ok {
		var rows []struct {
			Name  string `json:"name"`
			Vhost string `json:"vhost"`
		}
		parseCLIJSON(t, out, &rows, args...)
		names := make([]string, 0, len(rows))
		for _, r := range rows {
			if r.Vhost == v.Name {
				names = append(names, r.Name)
			}
		}
		return names
	}
	_, data := v.b.mustMgmt(t, "GET", "/api/vhosts/"+esc(v.Name)+"/connections?columns=name", nil, http.StatusOK)
	var rows []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(data, &rows); err != nil {
		t.Fatalf("testbroker: listing connections of %q: %v: %s", v.Name, err, truncate(data))
	}
	names := make([]string, 0, len(rows))
	for _, r := range rows {
		names = append(names, r.Name)
	}
	return names
}

// Connections returns the names of the client connections currently open on
// this vhost, as the broker names them ("127.0.0.1:40000 -> 127.0.0.1:5672").
// See Vhost for how fresh the answer is.
func (v *Vhost) Connections(t testing.TB) []string {
	t.Helper()
	return v.connNames(t)
}

// WaitConnections waits until at least n client connections are open on this
// vhost and fails t if that does not happen within timeout.
func (v *Vhost) WaitConnections(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		names := v.connNames(t)
		if len(names) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testbroker: vhost %q has %d client connection(s) after %v, want >= %d: %q", v.Name, len(names), timeout, n, names)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// closeEval is the Erlang expression CloseConnections evaluates on the shared
// node through rabbitmqctl: close every client connection of the vhost and
// wait until their processes are gone, all in one (~0.4s) CLI call. It
// answers {Closed, StillAlive}. (Connections of this node only: the shared
// broker is a single node.) It must not contain '$', '`' or '\': Debian's
// rabbitmqctl wrapper passes it through sh -c "...".
const closeEval = `VH = <<%q/utf8>>,
Pids = [proplists:get_value(pid, C) || C <- rabbit_networking:connection_info_all([pid, vhost]), proplists:get_value(vhost, C) =:= VH],
Refs = [erlang:monitor(process, P) || P <- Pids],
_ = [rabbit_networking:close_connection(P, "testbroker CloseConnections") || P <- Pids],
Left = [R || R <- Refs, receive {'DOWN', R, process, _, _} -> false after 15000 -> true end],
{length(Pids), length(Left)}.`

var closeEvalResult = regexp.MustCompile(`\{(\d+),(\d+)\}`)

// closedCount reads closeEval's answer: the number of connections closed,
// failing t if any is still open.
func closedCount(t testing.TB, vhost, out string) int {
	t.Helper()
	m := closeEvalResult.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("testbroker: closing the connections of vhost %q: unexpected rabbitmqctl output %q", vhost, out)
	}
	if m[2] != "0" {
		t.Fatalf("testbroker: %s of the %s connection(s) of vhost %q still open 15s after closing them", m[2], m[1], vhost)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// CloseConnections force-closes every client connection of this vhost, and
// only of this vhost, the way a broker-side failure would: clients receive
// connection.close 320 CONNECTION_FORCED. It returns the number closed, once
// the broker has really dropped them (clients may already be reconnecting).
//
// Connections must be visible to the broker to be closed: call
// WaitConnections first when they were opened just before (mandatory without
// rabbitmqctl, as the management API learns of new connections up to 5s
// late).
func (v *Vhost) CloseConnections(t testing.TB) int {
	t.Helper()
	if !strings.ContainsAny(v.Name, "\"$`\\") {
		if out, ok := v.ctl(t, "eval", fmt.Sprintf(closeEval, v.Name)); ok {
			return closedCount(t, v.Name, out)
		}
	}

	before := v.connNames(t)
	n := 0
	for _, name := range before {
		status, data, err := v.b.mgmt("DELETE", "/api/connections/"+esc(name), nil)
		switch {
		case err != nil:
			t.Fatalf("testbroker: closing connection %q: %v", name, err)
		case status == http.StatusNoContent:
			n++
		case status == http.StatusNotFound: // closed meanwhile
		default:
			t.Fatalf("testbroker: closing connection %q: %d %s", name, status, truncate(data))
		}
	}
	// Wait until the closed connections are gone from the list (clients may
	// already have opened new ones: only the old names matter).
	deadline := time.Now().Add(15 * time.Second)
	for len(before) > 0 {
		now := map[string]bool{}
		for _, name := range v.connNames(t) {
			now[name] = true
		}
		var left []string
		for _, name := range before {
			if now[name] {
				left = append(left, name)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("testbroker: connections of vhost %q still open 15s after closing them: %q", v.Name, left)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return n
}

// QueueInfo describes a queue as the broker sees it.
type QueueInfo struct {
	Name      string
	Ready     int            // messages_ready
	Unacked   int            // messages_unacknowledged
	Consumers int            // consumers
	Policy    string         // effective policy name, "" if none
	Arguments map[string]any // declared x-arguments (numbers are float64)
}

// Queue returns the queue's current state, or false if the queue does not
// exist. It never touches the queue over AMQP (a passive declare of a missing
// or exclusive queue would log a channel error in the broker). See Vhost for
// how fresh the counters are; use WaitQueue to wait for a state.
func (v *Vhost) Queue(t testing.TB, name string) (QueueInfo, bool) {
	t.Helper()
	if v.cli != "" {
		var rows []struct {
			Name      string  `json:"name"`
			Ready     int     `json:"messages_ready"`
			Unacked   int     `json:"messages_unacknowledged"`
			Consumers int     `json:"consumers"`
			Policy    any     `json:"policy"`
			Arguments [][]any `json:"arguments"`
		}
		cliJSON(t, v.cli, &rows, "list_queues", "-p", v.Name, "--formatter", "json",
			"name", "messages_ready", "messages_unacknowledged", "consumers", "policy", "arguments")
		for _, r := range rows {
			if r.Name != name {
				continue
			}
			qi := QueueInfo{Name: r.Name, Ready: r.Ready, Unacked: r.Unacked, Consumers: r.Consumers, Arguments: map[string]any{}}
			if s, ok := r.Policy.(string); ok {
				qi.Policy = s
			}
			for _, a := range r.Arguments { // [key, amqp type, value]
				if len(a) == 3 {
					if k, ok := a[0].(string); ok {
						qi.Arguments[k] = a[2]
					}
				}
			}
			return qi, true
		}
		return QueueInfo{}, false
	}
	status, data := v.b.mustMgmt(t, "GET", "/api/queues/"+esc(v.Name)+"/"+esc(name), nil, http.StatusOK, http.StatusNotFound)
	if status == http.StatusNotFound {
		return QueueInfo{}, false
	}
	var q struct {
		Name      string         `json:"name"`
		Ready     int            `json:"messages_ready"`
		Unacked   int            `json:"messages_unacknowledged"`
		Consumers int            `json:"consumers"`
		Policy    any            `json:"policy"`
		Arguments map[string]any `json:"arguments"`
	}
	if err := json.Unmarshal(data, &q); err != nil {
		t.Fatalf("testbroker: queue %q in %q: %v: %s", name, v.Name, err, truncate(data))
	}
	qi := QueueInfo{Name: q.Name, Ready: q.Ready, Unacked: q.Unacked, Consumers: q.Consumers, Arguments: q.Arguments}
	if s, ok := q.Policy.(string); ok {
		qi.Policy = s
	}
	if qi.Arguments == nil {
		qi.Arguments = map[string]any{}
	}
	return qi, true
}

// WaitQueue polls Queue until cond holds for the queue (which must exist) and
// returns that state; it fails t after timeout, showing the last state.
func (v *Vhost) WaitQueue(t testing.TB, name string, cond func(QueueInfo) bool, timeout time.Duration) QueueInfo {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		qi, ok := v.Queue(t, name)
		if ok && cond(qi) {
			return qi
		}
		if time.Now().After(deadline) {
			t.Fatalf("testbroker: queue %q in vhost %q: condition not met after %v; last state: exists=%v %+v", name, v.Name, timeout, ok, qi)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Policies returns the policies defined on this vhost (GET
// /api/policies/{vhost}), each as the management API renders it: name,
// pattern, apply-to, definition, priority, vhost.
func (v *Vhost) Policies(t testing.TB) []map[string]any {
	t.Helper()
	_, data := v.b.mustMgmt(t, "GET", "/api/policies/"+esc(v.Name), nil, http.StatusOK)
	var ps []map[string]any
	if err := json.Unmarshal(data, &ps); err != nil {
		t.Fatalf("testbroker: policies of %q: %v: %s", v.Name, err, truncate(data))
	}
	return ps
}

// SetPolicy sets (creates or replaces) the policy name on this vhost for the
// queues whose names match pattern, with definition (e.g. {"max-length": 0,
// "overflow": "reject-publish"} makes the broker nack every publish to them).
func (v *Vhost) SetPolicy(t testing.TB, name, pattern string, priority int, definition map[string]any) {
	t.Helper()
	v.b.mustMgmt(t, "PUT", "/api/policies/"+esc(v.Name)+"/"+esc(name), map[string]any{
		"pattern": pattern, "apply-to": "queues", "priority": priority, "definition": definition,
	}, http.StatusCreated, http.StatusNoContent)
}

// DeletePolicy deletes the policy name of this vhost.
func (v *Vhost) DeletePolicy(t testing.TB, name string) {
	t.Helper()
	v.b.mustMgmt(t, "DELETE", "/api/policies/"+esc(v.Name)+"/"+esc(name), nil, http.StatusNoContent)
}

// ---- rabbitmqctl ----

var (
	cliOnce sync.Once
	// cliNode is the node name to pass to rabbitmqctl -n, or "" when
	// rabbitmqctl cannot reach the shared broker.
	cliNode string
)

// probeCLI returns b.node if `rabbitmqctl -n <node>` works and sees the vhost
// just created through the management API (proving it talks to the same
// broker), else "".
func probeCLI(b *broker, vhost string) string {
	if os.Getenv(EnvNoCLI) != "" || testdocker.NoLocal() || b.node == "" {
		return ""
	}
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		return ""
	}
	out, err := runCmd(cliTimeout, nil, "rabbitmqctl", "-n", b.node, "-q", "list_vhosts", "name")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == vhost {
			return b.node
		}
	}
	return ""
}

// cli runs rabbitmqctl against node, failing t on error.
func cli(t testing.TB, node string, args ...string) string {
	t.Helper()
	out, err := runCmd(cliTimeout, nil, "rabbitmqctl", append([]string{"-n", node, "-q"}, args...)...)
	if err != nil {
		t.Fatalf("testbroker: %v", err)
	}
	return out
}

// cliJSON runs a rabbitmqctl command with --formatter json and decodes its
// output (skipping any warning printed before the JSON) into dst.
func cliJSON(t testing.TB, node string, dst any, args ...string) {
	t.Helper()
	parseCLIJSON(t, cli(t, node, args...), dst, args...)
}

// parseCLIJSON decodes the JSON list in the output of rabbitmqctl args.
func parseCLIJSON(t testing.TB, out string, dst any, args ...string) {
	t.Helper()
	i := strings.Index(out, "[")
	if i < 0 {
		t.Fatalf("testbroker: rabbitmqctl %s: no JSON in output %q", strings.Join(args, " "), out)
	}
	if err := json.Unmarshal([]byte(out[i:]), dst); err != nil {
		t.Fatalf("testbroker: rabbitmqctl %s: %v in output %q", strings.Join(args, " "), err, out)
	}
}

// ---- helpers ----

func truncate(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 500 {
		s = s[:500] + "..."
	}
	return s
}

// redact hides the password of a URL for messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	return u.Redacted()
}
