package httpmodel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// python is the interpreter with python3-fastapi and python3-uvicorn (Debian's);
// WARREN_TEST_PYTHON overrides it.
var python = "/usr/bin/python3"

func init() {
	if p := os.Getenv("WARREN_TEST_PYTHON"); p != "" {
		python = p
	}
}

// The model server of testdata/server.py, started once for the package by the
// first test that needs it and stopped by TestMain.
var srv struct {
	once sync.Once
	url  string
	err  error
	cmd  *exec.Cmd
	done chan struct{}
	out  lockedBuffer
}

func TestMain(m *testing.M) {
	code := m.Run()
	stopServer()
	os.Exit(code)
}

// server returns the test server's base URL (http://127.0.0.1:port), starting it
// on first use. Under -short it skips the test; when the server cannot start
// (fastapi or uvicorn missing) it fails the test loudly.
func server(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the Python model server (testdata/server.py); skipped with -short")
	}
	srv.once.Do(func() { srv.err = startServer() })
	if srv.err != nil {
		t.Fatalf("the test model server: %v\nserver output:\n%s", srv.err, srv.out.String())
	}
	t.Cleanup(func() {
		if t.Failed() {
			if out := srv.out.Unseen(4 << 10); out != "" {
				t.Logf("model server output (new since last shown, at most 4 KiB):\n%s", out)
			}
		}
	})
	return srv.url
}

func startServer() error {
	if out, err := exec.Command(python, "-c", "import fastapi, uvicorn").CombinedOutput(); err != nil {
		return fmt.Errorf("%s cannot import fastapi and uvicorn; install python3-fastapi python3-uvicorn (apt-get install python3-fastapi python3-uvicorn): %v\n%s", python, err, out)
	}
	var err error
	for range 3 { // the free port may be taken before the server binds it
		if err = startServerOnce(); err == nil {
			return nil
		}
	}
	return err
}

func startServerOnce() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	cmd := exec.Command(python, "testdata/server.py", "--port", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = &srv.out, &srv.out
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s testdata/server.py: %w", python, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("testdata/server.py exited before it answered: %v", cmd.ProcessState)
		case <-time.After(100 * time.Millisecond):
		}
		if resp, err := http.Get(url + "/health"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				srv.url, srv.cmd, srv.done = url, cmd, done
				return nil
			}
		}
	}
	_ = cmd.Process.Kill()
	<-done
	return errors.New("testdata/server.py did not answer GET /health within 30s")
}

func stopServer() {
	if srv.cmd != nil {
		_ = srv.cmd.Process.Kill()
		<-srv.done
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// closedURL returns http://127.0.0.1:port with nothing listening on the port.
func closedURL(t *testing.T) string {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return "http://127.0.0.1:" + strconv.Itoa(port)
}

// lockedBuffer collects the server's output from two pipes.
type lockedBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	seen int // bytes already shown by Unseen
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Unseen returns the output not returned by Unseen before, at most its last n
// bytes (from a line start when it can).
func (b *lockedBuffer) Unseen(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()[b.seen:]
	b.seen = b.buf.Len()
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "…\n" + s
}

// rawJSON calls the test server directly (no httpmodel), for what the tests
// compare against.
func rawJSON(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}
