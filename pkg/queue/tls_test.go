package queue_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/tlsconfig"
	"github.com/warren-farm/warren/pkg/tlsconfig/tlstest"
)

// A URL and TLS files that disagree, TLS parameters in the URL, and files that
// do not load are refused by New, never ignored.
func TestDialConfigTLSValidation(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "ca")
	for _, tc := range []struct {
		url  string
		tls  tlsconfig.Client
		want string
	}{
		{"amqp://guest:guest@127.0.0.1:5672/", tlsconfig.Client{CAFile: ca.File, Setting: "AMQP"}, "the URL is amqp:// (plain): use amqps://"},
		{"amqps://guest:guest@127.0.0.1:5671/?cacertfile=" + ca.File, tlsconfig.Client{}, "TLS query parameters"},
		{"amqps://guest:guest@127.0.0.1:5671/", tlsconfig.Client{CAFile: dir + "/nope.pem", Setting: "AMQP"}, "AMQP_CA_FILE: open " + dir + "/nope.pem"},
		{"amqps://guest:guest@127.0.0.1:5671/", tlsconfig.Client{CertFile: ca.File, Setting: "AMQP"}, "AMQP_CERT_FILE is set but AMQP_KEY_FILE is empty"},
	} {
		_, err := queue.NewClient(queue.ClientConfig{DialConfig: queue.DialConfig{URL: tc.url, TLS: tc.tls}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s with %+v: error %v, want one saying %q", tc.url, tc.tls, err, tc.want)
		}
	}
	if _, err := queue.NewClient(queue.ClientConfig{DialConfig: queue.DialConfig{URL: "amqps://guest:guest@127.0.0.1:5671/", TLS: tlsconfig.Client{CAFile: ca.File}}}); err != nil {
		t.Errorf("amqps with a CA: %v", err)
	}
}

// syncLog is a goroutine-safe log sink.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A private node that speaks only amqps and wants a client certificate: the
// client and a consumer with the right CA and certificates work over it; a wrong
// CA, a missing client certificate and a plain URL are refused, each with an
// error that says what to fix.
func TestTLSOnlyBroker(t *testing.T) {
	integration(t)
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "broker")
	other := tlstest.NewCA(t, dir, "other")
	server := ca.Server(t, "node")
	client := ca.Client(t, "warren")
	node := testbroker.StartNodeWith(t, testbroker.NodeOptions{TLS: &testbroker.NodeTLS{
		CAFile: ca.File, CertFile: server.CertFile, KeyFile: server.KeyFile,
		RequireClientCert: true, ClientCertFile: client.CertFile, ClientKeyFile: client.KeyFile,
	}})
	if !strings.HasPrefix(node.AMQPURL, "amqps://") {
		t.Fatalf("node URL %s", node.AMQPURL)
	}
	// TLS-only: the node's one AMQP listener speaks TLS.
	if st := node.Ctl(t, "status"); !strings.Contains(st, "protocol: amqp/ssl") || strings.Contains(st, "protocol: amqp,") {
		t.Fatalf("the node's listeners are not TLS-only:\n%s", st)
	}
	good := tlsconfig.Client{CAFile: ca.File, CertFile: client.CertFile, KeyFile: client.KeyFile, Setting: "AMQP"}
	host := fmt.Sprintf("127.0.0.1:%d", node.Port)

	t.Run("works", func(t *testing.T) {
		rec := newRecorder(0)
		start(t, newConsumer(t, node.AMQPURL, rec.handle, func(c *queue.ConsumerConfig) { c.TLS = good }).Run)
		c, err := queue.NewClient(queue.ClientConfig{DialConfig: queue.DialConfig{URL: node.AMQPURL, TLS: good}})
		if err != nil {
			t.Fatal(err)
		}
		c.Watch(route)
		start(t, c.Run)
		waitFor(t, "the worker over amqps", 15*time.Second, func() bool { return c.Workers(route) == 1 })
		for i := range 20 {
			id := fmt.Sprintf("tls-%d", i)
			r, err := call(c, id, 10*time.Second)
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			if want := fmt.Sprintf(`{"echo":%q,"request_id":%q}`, id, id); string(r.Body) != want {
				t.Fatalf("%s: %s", id, r.Body)
			}
		}
	})

	refused := func(t *testing.T, url string, tc tlsconfig.Client, want ...string) {
		t.Helper()
		var logs syncLog
		c, err := queue.NewClient(queue.ClientConfig{DialConfig: queue.DialConfig{URL: url, TLS: tc,
			Logger: slog.New(slog.NewTextHandler(&logs, nil)), MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		stop := start(t, c.Run)
		// Every attempt is logged; how a refusal surfaces varies between attempts
		// (TLS 1.3 refuses a client certificate after the client's handshake), so
		// wait for the first line that says everything asked.
		hasAll := func(line string) bool {
			for _, w := range want {
				if !strings.Contains(line, w) {
					return false
				}
			}
			return strings.Contains(line, "broker connection failed")
		}
		ok := false
		deadline := time.Now().Add(15 * time.Second)
		for !ok && time.Now().Before(deadline) {
			for _, line := range strings.Split(logs.String(), "\n") {
				ok = ok || hasAll(line)
			}
			time.Sleep(20 * time.Millisecond)
		}
		stop()
		if !ok {
			t.Errorf("no failed attempt logged saying %q:\n%s", want, logs.String())
		}
		line := logs.String()
		if strings.Contains(line, "connected to broker") {
			t.Errorf("connected anyway:\n%s", line)
		}
	}
	t.Run("wrong CA", func(t *testing.T) {
		bad := good
		bad.CAFile = other.File
		refused(t, node.AMQPURL, bad, "TLS to "+host, "not signed by the CA in AMQP_CA_FILE "+other.File)
	})
	t.Run("wrong server name", func(t *testing.T) {
		bad := good
		bad.ServerName = "rabbitmq.example"
		refused(t, node.AMQPURL, bad, "TLS to "+host, `not valid for the name \"rabbitmq.example\"`, "AMQP_SERVER_NAME")
	})
	t.Run("no client certificate", func(t *testing.T) {
		refused(t, node.AMQPURL, tlsconfig.Client{CAFile: ca.File, Setting: "AMQP"}, "TLS to "+host, "require a client certificate?")
	})
	t.Run("plain URL on the TLS port", func(t *testing.T) {
		refused(t, strings.Replace(node.AMQPURL, "amqps://", "amqp://", 1), tlsconfig.Client{})
	})
}
