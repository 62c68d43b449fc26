package repository

import (
	"reflect"
	"slices"
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
	want := Config{Backend: BackendSeed, Concurrency: DefaultConcurrency, VersionPolicy: VersionPolicy{Latest: 1}}
	if s := ms[i]; s.Version != "1" || !reflect.DeepEqual(s.Config, want) {
		t.Errorf("seed model %+v", s)
	}
	for _, m := range ms {
		if err := m.Route().Check(); err != nil {
			t.Error(err)
		}
	}
}
