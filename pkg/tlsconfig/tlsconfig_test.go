package tlsconfig_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/tlsconfig"
	"github.com/warren-farm/warren/pkg/tlsconfig/tlstest"
)

func TestClientConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "good")
	client := ca.Client(t, "client")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c    tlsconfig.Client
		want []string
	}{
		{tlsconfig.Client{CAFile: filepath.Join(dir, "missing.pem"), Setting: "AMQP"}, []string{"AMQP_CA_FILE", "missing.pem", "no such file"}},
		{tlsconfig.Client{CAFile: notPEM, Setting: "AMQP"}, []string{"AMQP_CA_FILE", notPEM, "no PEM CERTIFICATE"}},
		{tlsconfig.Client{CertFile: client.CertFile, Setting: "REDIS"}, []string{"REDIS_CERT_FILE is set but REDIS_KEY_FILE is empty"}},
		{tlsconfig.Client{KeyFile: client.KeyFile, Setting: "AMQP"}, []string{"AMQP_KEY_FILE is set but AMQP_CERT_FILE is empty"}},
		{tlsconfig.Client{CertFile: client.CertFile, KeyFile: ca.File, Setting: "AMQP"}, []string{"AMQP_CERT_FILE, AMQP_KEY_FILE", ca.File}},
	} {
		if _, err := tc.c.Config(); err == nil {
			t.Errorf("%+v: no error", tc.c)
		} else {
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%+v: error %q does not say %q", tc.c, err, w)
				}
			}
		}
	}
	cfg, err := tlsconfig.Client{CAFile: ca.File, CertFile: client.CertFile, KeyFile: client.KeyFile, ServerName: "x"}.Config()
	if err != nil || cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.ServerName != "x" || cfg.InsecureSkipVerify {
		t.Errorf("full client config: %+v, %v", cfg, err)
	}
	if !(tlsconfig.Client{Setting: "AMQP"}).IsZero() || (tlsconfig.Client{ServerName: "x"}).IsZero() {
		t.Error("IsZero")
	}
}

// tlsServer accepts TLS connections on loopback with cfg, completes the handshake
// and writes "hi" on each; it stops at cleanup.
func tlsServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					_, _ = c.Write([]byte("hi"))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// dialRead dials addr with c's configuration, as a client of a link would, and
// reads the greeting: with TLS 1.3 a refused client certificate shows only there.
func dialRead(t *testing.T, c tlsconfig.Client, addr string) error {
	t.Helper()
	cfg, err := c.Config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return c.Explain(err, addr)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadFull(conn, make([]byte, 2))
	return c.Explain(err, addr)
}

func TestClientAgainstServer(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "good")
	other := tlstest.NewCA(t, dir, "other")
	server := ca.Server(t, "server")
	client := ca.Client(t, "client")
	stranger := other.Client(t, "stranger")
	pair, err := tls.LoadX509KeyPair(server.CertFile, server.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	open := tlsServer(t, &tls.Config{Certificates: []tls.Certificate{pair}})
	mutual := tlsServer(t, &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert})

	if err := dialRead(t, tlsconfig.Client{CAFile: ca.File, Setting: "AMQP"}, open); err != nil {
		t.Errorf("right CA: %v", err)
	}
	if err := dialRead(t, tlsconfig.Client{CAFile: ca.File, ServerName: "localhost", Setting: "AMQP"}, open); err != nil {
		t.Errorf("right CA, server name localhost: %v", err)
	}
	err = dialRead(t, tlsconfig.Client{CAFile: other.File, Setting: "AMQP"}, open)
	wantErr(t, "wrong CA", err, "TLS to "+open, "not signed by the CA in AMQP_CA_FILE "+other.File)
	err = dialRead(t, tlsconfig.Client{Setting: "AMQP"}, open)
	wantErr(t, "system roots", err, "TLS to "+open, "system's roots (AMQP_CA_FILE is empty)")
	err = dialRead(t, tlsconfig.Client{CAFile: ca.File, ServerName: "broker.example", Setting: "AMQP"}, open)
	wantErr(t, "wrong name", err, "TLS to "+open, `not valid for the name "broker.example"`, "AMQP_SERVER_NAME")

	if err := dialRead(t, tlsconfig.Client{CAFile: ca.File, CertFile: client.CertFile, KeyFile: client.KeyFile, Setting: "AMQP"}, mutual); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	err = dialRead(t, tlsconfig.Client{CAFile: ca.File, Setting: "AMQP"}, mutual)
	wantErr(t, "no client certificate", err, "TLS to "+mutual, "require a client certificate? AMQP_CERT_FILE, AMQP_KEY_FILE")
	err = dialRead(t, tlsconfig.Client{CAFile: ca.File, CertFile: stranger.CertFile, KeyFile: stranger.KeyFile, Setting: "AMQP"}, mutual)
	wantErr(t, "client certificate of another CA", err, "TLS to "+mutual, "is the client certificate "+stranger.CertFile+" signed by a CA the server trusts?")

	// A plain listener answering a TLS client.
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	go func() {
		c, err := plain.Accept()
		if err == nil {
			_, _ = c.Write([]byte("AMQP\x00\x00\x09\x01 and more bytes than a TLS record header"))
			time.Sleep(time.Second)
			c.Close()
		}
	}()
	err = dialRead(t, tlsconfig.Client{CAFile: ca.File, Setting: "AMQP"}, plain.Addr().String())
	wantErr(t, "plain listener", err, "did not answer TLS")

	// A server that hangs up as the connection opens (as a TLS 1.3 server refusing a
	// client certificate may look to a client that is writing).
	hangup, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hangup.Close()
	go func() {
		c, err := hangup.Accept()
		if err == nil {
			c.Close()
		}
	}()
	err = dialRead(t, tlsconfig.Client{CAFile: ca.File, Setting: "REDIS"}, hangup.Addr().String())
	wantErr(t, "hang-up", err, "TLS to "+hangup.Addr().String(), "closed the connection as it opened", "REDIS_CERT_FILE, REDIS_KEY_FILE")
}

func wantErr(t *testing.T, what string, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error", what)
		return
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %q does not say %q", what, err, p)
		}
	}
}

// logBuffer is a goroutine-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// copyPair installs p as the listener's files, as a deployment would.
func copyPair(t *testing.T, p tlstest.Pair, certFile, keyFile string) {
	t.Helper()
	for src, dst := range map[string]string{p.CertFile: certFile, p.KeyFile: keyFile} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReloader(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "ca")
	first, second := ca.Server(t, "first"), ca.Server(t, "second")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	copyPair(t, first, certFile, keyFile)

	var logs logBuffer
	now := time.Unix(1_000_000, 0)
	var clock sync.Mutex
	tick := func(d time.Duration) { clock.Lock(); now = now.Add(d); clock.Unlock() }
	r, err := tlsconfig.NewReloader(tlsconfig.ReloaderConfig{
		CertFile: certFile, KeyFile: keyFile,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Now:    func() time.Time { clock.Lock(); defer clock.Unlock(); return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, r.TLSConfig())
	served := func() string {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := served(); got != "first" {
		t.Fatalf("serves %q, want first", got)
	}

	// A new pair is picked up at the first handshake after the check interval —
	// not before.
	copyPair(t, second, certFile, keyFile)
	future := time.Now().Add(time.Minute) // an mtime unlike the first pair's, however coarse the file system's clock
	for _, f := range []string{certFile, keyFile} {
		if err := os.Chtimes(f, future, future); err != nil {
			t.Fatal(err)
		}
	}
	tick(tlsconfig.DefaultCheckInterval / 2)
	if got := served(); got != "first" {
		t.Errorf("within the check interval: serves %q, want first still", got)
	}
	tick(tlsconfig.DefaultCheckInterval)
	if got := served(); got != "second" {
		t.Fatalf("after the change: serves %q, want second", got)
	}
	if !strings.Contains(logs.String(), "TLS certificate reloaded") {
		t.Errorf("no reload logged: %s", logs.String())
	}

	// Half a change (the key of another pair) keeps the second pair, and says so once.
	copyPair(t, tlstest.Pair{CertFile: second.CertFile, KeyFile: first.KeyFile}, certFile, keyFile)
	later := future.Add(time.Minute)
	if err := os.Chtimes(keyFile, later, later); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		tick(2 * tlsconfig.DefaultCheckInterval)
		if got := served(); got != "second" {
			t.Fatalf("after a bad pair: serves %q, want second", got)
		}
	}
	if n := strings.Count(logs.String(), "does not load"); n != 1 {
		t.Errorf("a bad pair logged %d times, want once:\n%s", n, logs.String())
	}
	// Missing files keep the pair too.
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	tick(2 * tlsconfig.DefaultCheckInterval)
	if got := served(); got != "second" {
		t.Fatalf("with the key file gone: serves %q", got)
	}
	if !strings.Contains(logs.String(), "unreadable") {
		t.Errorf("missing file not logged:\n%s", logs.String())
	}
	// And the first pair back in place is served again.
	copyPair(t, first, certFile, keyFile)
	tick(2 * tlsconfig.DefaultCheckInterval)
	if got := served(); got != "first" {
		t.Fatalf("after the repair: serves %q, want first", got)
	}
}

func TestNewReloaderErrors(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "ca")
	a, b := ca.Server(t, "a"), ca.Server(t, "b")
	if _, err := tlsconfig.NewReloader(tlsconfig.ReloaderConfig{CertFile: a.CertFile}); err == nil {
		t.Error("no key file: no error")
	}
	_, err := tlsconfig.NewReloader(tlsconfig.ReloaderConfig{CertFile: a.CertFile, KeyFile: b.KeyFile})
	wantErr(t, "mismatched pair", err, a.CertFile, b.KeyFile)
	_, err = tlsconfig.NewReloader(tlsconfig.ReloaderConfig{CertFile: filepath.Join(dir, "nope.pem"), KeyFile: b.KeyFile})
	wantErr(t, "missing file", err, "nope.pem")
}

// Hang-ups a client library reports only as text are explained too.
func TestExplainFlattenedHangups(t *testing.T) {
	c := tlsconfig.Client{CAFile: "/ca.pem", CertFile: "/client.pem", KeyFile: "/client-key.pem", Setting: "AMQP"}
	for _, msg := range []string{`Exception (501) Reason: "EOF"`, `Exception (501) Reason: "read tcp 1.2.3.4:1->5.6.7.8:5671: read: connection reset by peer"`,
		"write tcp 1.2.3.4:1->5.6.7.8:5671: write: broken pipe"} {
		err := c.Explain(errorString(msg), "broker:5671")
		wantErr(t, msg, err, "TLS to broker:5671: the server closed the connection as it opened", "is the client certificate /client.pem signed by a CA the server trusts?")
	}
	plain := errorString("Exception (403) Reason: \"username or password not allowed\"")
	if err := c.Explain(plain, "broker:5671"); err != error(plain) {
		t.Errorf("an error that is not TLS's was rewritten: %v", err)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

// net/http's own log lines go to slog: handshake failures at debug, the rest at warn.
func TestHTTPErrorLog(t *testing.T) {
	var logs logBuffer
	l := tlsconfig.HTTPErrorLog(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Printf("http: TLS handshake error from 127.0.0.1:5000: EOF")
	l.Printf("http: Accept error: too many open files; retrying in 5ms")
	out := logs.String()
	if !strings.Contains(out, `level=DEBUG msg="http: TLS handshake error from 127.0.0.1:5000: EOF" source=net/http`) {
		t.Errorf("handshake error:\n%s", out)
	}
	if !strings.Contains(out, `level=WARN msg="http: Accept error: too many open files; retrying in 5ms"`) {
		t.Errorf("other error:\n%s", out)
	}
}
