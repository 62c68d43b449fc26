package repository

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The repository shipped in models/ scans cleanly, and has the seed model.
func TestShippedRepository(t *testing.T) {
	ms, err := Scan("../../models", nil)
	if err != nil {
		for _, p := range Problems(err) {
			t.Error(p)
		}
		t.FailNow()
	}
	i := slices.IndexFunc(ms, func(m Model) bool { return m.Name == "seed" })
	if i < 0 {
		t.Fatalf("no seed model in %v", versions(ms))
	}
	want := Config{Backend: BackendSeed, VersionPolicy: VersionPolicy{Latest: 1}}
	if s := ms[i]; s.Version != "1" || !reflect.DeepEqual(s.Config, want) {
		t.Errorf("seed model %+v", s)
	}
	for _, m := range ms {
		if err := m.Route().Check(); err != nil {
			t.Error(err)
		}
	}
}

// docs/model-repository.md describes every key.
func TestDocsListEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/model-repository.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []string // the first cells of the tables
	for _, line := range strings.Split(string(doc), "\n") {
		if cells := strings.Split(line, "|"); len(cells) > 2 && cells[0] == "" {
			rows = append(rows, cells[1])
		}
	}
	for _, k := range keys {
		if !slices.ContainsFunc(rows, func(r string) bool { return strings.Contains(r, "`"+k.name+"`") }) {
			t.Errorf("docs/model-repository.md has no row for %s", k.name)
		}
	}
}
