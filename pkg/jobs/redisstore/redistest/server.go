package redistest

import (
	"context"
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

	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"

	"github.com/warren-farm/warren/internal/testdocker"
)

// ServerOptions configures a private redis-server started by [StartServer].
type ServerOptions struct {
	// Password, when set, is required of every client (--requirepass).
	Password string
	// TLS, when set, makes the server TLS-only (--port 0 --tls-port).
	TLS *ServerTLS
}

// ServerTLS is the TLS of a private redis-server (PEM files).
type ServerTLS struct {
	CAFile, CertFile, KeyFile string
	// AuthClients is tls-auth-clients: "yes" (a client certificate signed by
	// CAFile is required), "optional" or "no".
	AuthClients string
}

// StartServer starts a throwaway redis-server on a free loopback port, with no
// persistence, and returns its address (127.0.0.1:port) once it accepts
// connections. It is killed when t ends. Without redis-server on PATH (or
// with WARREN_TEST_NO_LOCAL=1) it runs testdocker.RedisImage instead, the port
// published on 127.0.0.1. It fails t (never skips) when neither redis-server
// nor a Docker engine is there, or redis-server was built without TLS and TLS
// is asked for.
func StartServer(t testing.TB, o ServerOptions) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: starts a redis-server (runs without -short)")
	}
	bin, err := testdocker.LocalTool("redis-server")
	if err != nil {
		return startServerDocker(t, o, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	args := []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"), "--daemonize", "no"}
	if o.Password != "" {
		args = append(args, "--requirepass", o.Password)
	}
	if o.TLS != nil {
		auth := o.TLS.AuthClients
		if auth == "" {
			auth = "no"
		}
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(port),
			"--tls-cert-file", o.TLS.CertFile, "--tls-key-file", o.TLS.KeyFile,
			"--tls-ca-cert-file", o.TLS.CAFile, "--tls-auth-clients", auth)
	} else {
		args = append(args, "--port", strconv.Itoa(port))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("redistest: %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cancel()
			<-done
		}
		cancel()
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(10 * time.Second); ; {
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redistest: redis-server %s exited while starting:\n%s", strings.Join(args, " "), log)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: redis-server does not listen on %s after 10s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startServerDocker is StartServer in a container of testdocker.RedisImage.
func startServerDocker(t testing.TB, o ServerOptions, localErr error) string {
	t.Helper()
	pool, err := testdocker.Pool()
	if err != nil {
		t.Fatalf("redistest: no redis-server here (%v; apt-get install redis-server) and %v", localErr, err)
	}
	t.Cleanup(pool.Client.HTTPClient.CloseIdleConnections)
	args := []string{"--save", "", "--appendonly", "no", "--protected-mode", "no"}
	var mounts []string
	if o.Password != "" {
		args = append(args, "--requirepass", o.Password)
	}
	if o.TLS != nil {
		auth := o.TLS.AuthClients
		if auth == "" {
			auth = "no"
		}
		mounts = []string{o.TLS.CAFile + ":/tls/ca.pem", o.TLS.CertFile + ":/tls/cert.pem", o.TLS.KeyFile + ":/tls/key.pem"}
		args = append(args, "--port", "0", "--tls-port", "6379", "--tls-cert-file", "/tls/cert.pem",
			"--tls-key-file", "/tls/key.pem", "--tls-ca-cert-file", "/tls/ca.pem", "--tls-auth-clients", auth)
	} else {
		args = append(args, "--port", "6379")
	}
	repo, tag, _ := strings.Cut(testdocker.RedisImage, ":")
	res, err := pool.RunWithOptions(&dockertest.RunOptions{
		Repository:   repo,
		Tag:          tag,
		Entrypoint:   []string{"redis-server"},
		Cmd:          args,
		Mounts:       mounts,
		User:         "0", // reads the test's key file, which only its owner may
		ExposedPorts: []string{"6379/tcp"},
		PortBindings: map[dc.Port][]dc.PortBinding{"6379/tcp": {{HostIP: "127.0.0.1"}}},
		Labels:       map[string]string{"warren-testbroker": "1"},
	}, func(hc *dc.HostConfig) {
		hc.RestartPolicy = dc.NeverRestart()
		hc.PublishAllPorts = false // only 6379, on 127.0.0.1
	})
	if err != nil {
		t.Fatalf("redistest: no redis-server here (%v) and starting %s: %v", localErr, testdocker.RedisImage, err)
	}
	t.Cleanup(func() {
		if err := pool.Purge(res); err != nil {
			t.Errorf("redistest: removing container %s: %v", res.Container.Name, err)
		}
	})
	// The published port accepts connections (docker-proxy) before redis does:
	// wait for redis' own word.
	for deadline := time.Now().Add(30 * time.Second); ; {
		logs := testdocker.Logs(pool, res.Container.ID)
		if strings.Contains(logs, "Ready to accept connections") {
			break
		}
		if testdocker.Exited(pool, res.Container.ID) {
			t.Fatalf("redistest: %s %s exited while starting:\n%s", testdocker.RedisImage, strings.Join(args, " "), logs)
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: %s not ready after 30s:\n%s", testdocker.RedisImage, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return testdocker.HostPort(res, "6379/tcp")
}

// URLFor is a URL of the server at addr: rediss:// when tls, with the password.
func URLFor(addr, password string, tls bool) string {
	scheme := "redis"
	if tls {
		scheme = "rediss"
	}
	if password != "" {
		return fmt.Sprintf("%s://:%s@%s/0", scheme, password, addr)
	}
	return fmt.Sprintf("%s://%s/0", scheme, addr)
}
