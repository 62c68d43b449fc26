package testdocker

import (
	"path/filepath"
	"strings"
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
