// Package deploycheck holds no code: its tests load warren's deployment artefacts
// (Dockerfile, docker-compose.yml, the Helm chart) with the real parser or tool of
// each ecosystem and check them against the code's own configuration table.
//
// It is a module of its own (go.mod here; the service's module through a replace
// directive) so that those parsers — k8s.io/api, apiextensions-apiserver, BuildKit,
// compose-go — stay out of the service's go.mod and out of its `go vet ./...`. The
// Makefile's test targets run it: `cd internal/deploycheck && go test ./...`.
package deploycheck

import (
	"os"
	"path/filepath"
	"testing"
)

// repoRoot is the repository's top directory (two levels above this package).
func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Clean(filepath.Join(wd, "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found from %s: %v", wd, err)
	}
	return root
}
