package testbroker

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// LogWatch reads what the shared broker logs from a point in time on, so that
// a test can assert that the broker logged no error for its vhost (e.g. no
// channel exception precondition_failed / 406 from a queue redeclared with
// different arguments).
//
// The broker writes its log asynchronously (~100ms late here), so Since first
// makes the broker log a marker (one AMQP connection to "/", opened and
// closed) and waits for it: everything logged before Since was called is then
// in the returned text.
//
// Methods must be called from the test's goroutine: they fail the test with
// t.Fatalf when the log cannot be read.
type LogWatch struct {
	t      testing.TB
	b      *broker
	path   string
	offset int64
}

var (
	logOnce sync.Once
	logPath string
	logErr  error
)

// logSyncTimeout bounds the wait for the log marker in Since;
// logProbeTimeout the one deciding whether a file is the broker's log.
const logSyncTimeout = 10 * time.Second

var logProbeTimeout = 5 * time.Second

// WatchLog starts watching the shared broker's log file. The file is found
// through the management API (GET /api/nodes/{node}, field log_files) or the
// WARREN_BROKER_LOG environment variable, and is checked once to really
// receive this broker's log lines. When the broker's log is not readable on
// this machine (AMQP_URL pointing elsewhere, Docker) WatchLog fails t with an
// explanation: it never passes silently.
func WatchLog(t testing.TB) *LogWatch {
	t.Helper()
	b := shared(t)
	logOnce.Do(func() { logPath, logErr = findLog(b) })
	if logErr != nil {
		t.Fatalf("testbroker: WatchLog: %v", logErr)
	}
	st, err := os.Stat(logPath)
	if err != nil {
		t.Fatalf("testbroker: WatchLog: %v", err)
	}
	return &LogWatch{t: t, b: b, path: logPath, offset: st.Size()}
}

// Path is the broker log file being watched.
func (w *LogWatch) Path() string { return w.path }

// Since returns the text the broker appended to its log since WatchLog was
// called, including everything logged before this call (see LogWatch). If the
// log was rotated meanwhile, the new file's whole content is returned.
func (w *LogWatch) Since() string {
	w.t.Helper()
	if err := syncLog(w.b, w.path, logSyncTimeout); err != nil {
		w.t.Fatalf("testbroker: LogWatch: %v", err)
	}
	s, err := readFrom(w.path, w.offset)
	if err != nil {
		w.t.Fatalf("testbroker: LogWatch: %v", err)
	}
	return s
}

// Entries splits Since into log entries: a multi-line entry (the broker
// repeats the "<time> [<level>] <pid>" prefix on each of its lines) becomes
// one string with the prefix kept only on its first line.
func (w *LogWatch) Entries() []string {
	w.t.Helper()
	return splitEntries(w.Since())
}

// ErrorsFor returns the [error] entries logged since WatchLog that mention
// vhost (the broker writes vhost names in single quotes: "vhost: 'name'",
// "in vhost 'name'"). A test asserting "the broker logged no error for my
// vhost" checks that this is empty.
func (w *LogWatch) ErrorsFor(vhost string) []string {
	w.t.Helper()
	var out []string
	for _, e := range w.Entries() {
		if strings.Contains(firstLine(e), "[error]") && strings.Contains(e, "'"+vhost+"'") {
			out = append(out, e)
		}
	}
	return out
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// logPrefix returns the "<date> <time> [<level>] <pid> " prefix of a log line,
// or "" if the line has none.
func logPrefix(line string) string {
	// 2026-11-24 05:15:03.820526+00:00 [error] <0.1037.0> text
	f := strings.SplitN(line, " ", 5)
	if len(f) < 5 || !strings.HasPrefix(f[2], "[") || !strings.HasPrefix(f[3], "<") {
		return ""
	}
	return strings.Join(f[:4], " ") + " "
}

func splitEntries(text string) []string {
	var entries []string
	var cur strings.Builder
	var curPrefix string
	flush := func() {
		if cur.Len() > 0 {
			entries = append(entries, cur.String())
			cur.Reset()
		}
	}
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		p := logPrefix(line)
		switch {
		case p != "" && p == curPrefix:
			cur.WriteString("\n" + strings.TrimPrefix(line, p))
		case p == "" && cur.Len() > 0: // unprefixed continuation
			cur.WriteString("\n" + line)
		default:
			flush()
			curPrefix = p
			cur.WriteString(line)
		}
	}
	flush()
	return entries
}

func readFrom(path string, offset int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if st.Size() < offset { // rotated or truncated
		offset = 0
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return "", err
	}
	b, err := io.ReadAll(f)
	return string(b), err
}

// syncLog makes the broker log a line unique to this call and waits until it
// is in path: one AMQP connection to "/" that is opened and closed; the
// broker logs "closing AMQP connection <pid> (127.0.0.1:<our port> -> ...".
func syncLog(b *broker, path string, timeout time.Duration) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	start := st.Size()
	var marker, what string
	if strings.HasPrefix(b.source, "Docker") {
		// Through Docker's port forwarding the broker sees another port: the
		// marker is a refused login of a user name of this call's own.
		user := "warren-logmark-" + randHex(6)
		u := *b.amqpURL
		u.User = url.UserPassword(user, "x")
		c, err := amqp.DialConfig(u.String(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
		if err == nil {
			_ = c.Close()
			return fmt.Errorf("log marker: the broker let unknown user %s in", user)
		}
		marker, what = "user '"+user+"'", "refused login of user "+user
	} else {
		c, err := amqp.DialConfig(b.amqpURL.String(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
		if err != nil {
			return fmt.Errorf("log marker connection: %v", err)
		}
		_, port, _ := net.SplitHostPort(c.LocalAddr().String())
		if err := c.Close(); err != nil {
			return fmt.Errorf("log marker connection: %v", err)
		}
		marker, what = ":"+port+" -> ", "closing AMQP connection from local port "+port
	}
	deadline := time.Now().Add(timeout)
	for {
		s, err := readFrom(path, start)
		if err != nil {
			return err
		}
		for _, l := range strings.Split(s, "\n") {
			if (strings.Contains(l, "closing AMQP connection") || strings.Contains(l, "login refused")) && strings.Contains(l, marker) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the broker's log marker (%s) did not appear in %s within %v", what, path, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// findLog locates the broker's log file and checks it is this broker's.
func findLog(b *broker) (string, error) {
	explain := func(format string, args ...any) error {
		return fmt.Errorf("cannot read the log of the broker (%s, node %s): %s\n"+
			"WatchLog needs the broker to run on this machine (e.g. `rabbitmq-server -detached`, "+
			"unset AMQP_URL); for a Docker or remote broker set %s to a readable local copy of its log file "+
			"(e.g. a bind mount of /var/log/rabbitmq)",
			b.source, b.node, fmt.Sprintf(format, args...), EnvBrokerLog)
	}
	var candidates []string
	if p := os.Getenv(EnvBrokerLog); p != "" {
		candidates = []string{p}
	} else {
		status, data, err := b.mgmt("GET", "/api/nodes/"+esc(b.node)+"?memory=false&binary=false", nil)
		if err != nil || status != http.StatusOK {
			return "", explain("GET /api/nodes/%s: %d %v %s", b.node, status, err, truncate(data))
		}
		var node struct {
			LogFiles []string `json:"log_files"`
		}
		if err := json.Unmarshal(data, &node); err != nil {
			return "", explain("GET /api/nodes/%s: %v", b.node, err)
		}
		for _, f := range node.LogFiles {
			if strings.HasPrefix(f, "/") && !strings.Contains(f, "_upgrade") {
				candidates = append(candidates, f)
			}
		}
		if len(candidates) == 0 {
			return "", explain("the node logs to %q, none of which is a file", node.LogFiles)
		}
	}
	var problems []string
	for _, p := range candidates {
		st, err := os.Stat(p)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if !st.Mode().IsRegular() {
			problems = append(problems, p+": not a regular file")
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		f.Close()
		if err := syncLog(b, p, logProbeTimeout); err != nil {
			problems = append(problems, p+" exists here but is not this broker's log: "+err.Error())
			continue
		}
		return p, nil
	}
	return "", explain("%s", strings.Join(problems, "; "))
}
