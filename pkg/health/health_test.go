package health

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestURL(t *testing.T) {
	for addr, want := range map[string]string{
		":8000":          "http://127.0.0.1:8000/ready",
		"0.0.0.0:8001":   "http://127.0.0.1:8001/ready",
		"[::]:8001":      "http://[::1]:8001/ready",
		"10.1.2.3:9000":  "http://10.1.2.3:9000/ready",
		"localhost:8000": "http://localhost:8000/ready",
	} {
		got, err := URL(addr, Ready)
		if err != nil || got != want {
			t.Errorf("URL(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
	for _, bad := range []string{"8000", "", "host:"} {
		if u, err := URL(bad, Ready); err == nil {
			t.Errorf("URL(%q) = %q, want an error", bad, u)
		}
	}
}

func TestParseArgs(t *testing.T) {
	if p, err := ParseArgs(nil); p != Ready || err != nil {
		t.Errorf("no args: %q %v", p, err)
	}
	if p, err := ParseArgs([]string{"/health"}); p != Live || err != nil {
		t.Errorf("/health: %q %v", p, err)
	}
	for _, bad := range [][]string{{"/metrics"}, {"/ready", "/health"}, {"--x"}} {
		if _, err := ParseArgs(bad); err == nil {
			t.Errorf("%v: want a usage error", bad)
		}
	}
}

// serve starts a loopback server whose /ready answers readyCode and /health 200,
// and returns its listen address in HTTP_ADDR form (":port").
func serve(t *testing.T, readyCode int) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(readyCode)
		_, _ = w.Write([]byte(`{"status":"draining"}`))
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return ":" + port
}

func TestCommand(t *testing.T) {
	ready := serve(t, http.StatusOK)
	draining := serve(t, http.StatusServiceUnavailable)
	var out, errb bytes.Buffer
	if code := Command(nil, ready, false, &out, &errb); code != 0 {
		t.Fatalf("ready server: exit %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	if code := Command(nil, draining, false, &out, &errb); code != 1 {
		t.Fatalf("503 /ready: exit %d, want 1", code)
	}
	if !strings.Contains(errb.String(), "503") || !strings.Contains(errb.String(), "draining") {
		t.Errorf("stderr should name the status and body: %q", errb.String())
	}
	// Liveness passes on the draining server: /health does not look at readiness.
	if code := Command([]string{"/health"}, draining, false, &out, &errb); code != 0 {
		t.Errorf("/health on a draining server: exit %d", code)
	}
	if code := Command([]string{"/nope"}, ready, false, &out, &errb); code != 2 {
		t.Errorf("bad argument: exit %d, want 2", code)
	}
}

func TestCheckNothingListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	if err := Check(t.Context(), Config{Addr: addr, Path: Ready, Timeout: time.Second}); err == nil {
		t.Fatal("want an error with nothing listening")
	}
}

func TestCheckTimeout(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }))
	t.Cleanup(func() { close(block); srv.Close() })
	err := Check(t.Context(), Config{Addr: srv.Listener.Addr().String(), Path: Ready, Timeout: 200 * time.Millisecond})
	if err == nil {
		t.Fatal("a server that never answers must fail the check")
	}
}

// An HTTPS listener (TLS_CERT_FILE) is probed over HTTPS, whatever names its
// certificate carries; a plain probe of it fails.
func TestCommandHTTPS(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	srv := httptest.NewTLSServer(mux) // a certificate for example.com, not for the loopback address
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	var out, errb bytes.Buffer
	if code := Command(nil, ":"+port, true, &out, &errb); code != 0 {
		t.Fatalf("https probe: exit %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	if code := Command(nil, ":"+port, false, &out, &errb); code != 1 {
		t.Errorf("plain probe of an HTTPS listener: exit %d, want 1", code)
	}
	if !strings.Contains(errb.String(), "http://127.0.0.1:"+port) {
		t.Errorf("stderr should name the URL: %q", errb.String())
	}
}
