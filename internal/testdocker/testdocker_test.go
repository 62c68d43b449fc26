package testdocker

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNoLocalHidesTools(t *testing.T) {
	t.Setenv(EnvNoLocal, "")
	if _, err := LocalTool("go"); err != nil {
		t.Fatalf("go not found on PATH: %v", err)
	}
	if _, err := LocalTool("warren-no-such-tool"); err == nil {
		t.Fatal("a missing tool was found")
	}
	t.Setenv(EnvNoLocal, "0")
	if NoLocal() {
		t.Fatal(EnvNoLocal + "=0 hides the local services")
	}
	t.Setenv(EnvNoLocal, "1")
	if !NoLocal() {
		t.Fatal(EnvNoLocal + "=1 does not hide the local services")
	}
	if p, err := LocalTool("go"); err == nil || !strings.Contains(err.Error(), EnvNoLocal) {
		t.Fatalf("LocalTool(go) with %s=1: %q, %v", EnvNoLocal, p, err)
	}
}

// Without an engine, Start fails fast and says so (the helpers then fail their
// test with how to get the service).
func TestNoEngine(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "docker.sock"))
	began := time.Now()
	_, err := Service{Name: "warren-testdocker-none", Image: RedisImage, Ports: []string{"6379/tcp"}}.Start()
	if err == nil || !strings.Contains(err.Error(), "no Docker engine answers") {
		t.Fatalf("Start without an engine: %v", err)
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("Start without an engine took %v", d)
	}
}

// Two test binaries starting the same service at once share one container: the
// one that loses the race waits for the other's instead of failing or
// replacing it. Runs where the Docker path is the one taken (EnvNoLocal, as
// scripts/ci-docker-only.sh sets it).
func TestConcurrentStartsShareOneContainer(t *testing.T) {
	if !NoLocal() {
		t.Skip("exercises the Docker path: runs with " + EnvNoLocal + "=1 (scripts/ci-docker-only.sh)")
	}
	name := fmt.Sprintf("warren-testdocker-race-%d", time.Now().UnixNano())
	s := Service{Name: name, Image: RedisImage, Ports: []string{"6379/tcp"},
		Ready: func(addrs map[string]string) error {
			c, err := net.DialTimeout("tcp", addrs["6379/tcp"], time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}}
	t.Cleanup(func() {
		pool, err := Pool()
		if err != nil {
			t.Error(err)
			return
		}
		defer pool.Client.HTTPClient.CloseIdleConnections()
		if err := pool.RemoveContainerByName(name); err != nil {
			t.Error(err)
		}
	})
	const n = 3
	addrs := make([]map[string]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { addrs[i], errs[i] = s.Start() })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("start %d: %v", i, errs[i])
		}
		if addrs[i]["6379/tcp"] != addrs[0]["6379/tcp"] {
			t.Errorf("start %d got %v, start 0 %v: two containers", i, addrs[i], addrs[0])
		}
	}
}
