package repository

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeRepo creates files under a new temporary directory and makes it the
// working directory, so that paths in messages read "models/…". A path ending in
// "/" is a directory.
func writeRepo(t *testing.T, files map[string]string) {
	t.Helper()
	t.Chdir(t.TempDir())
	for path, content := range files {
		if strings.HasSuffix(path, "/") {
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// messages returns the messages of every problem err holds, sorted, checking
// that each is an *Error wrapping ErrInvalid.
func messages(t *testing.T, err error) []string {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("error %v does not wrap ErrInvalid", err)
	}
	var out []string
	for _, e := range Problems(err) {
		var re *Error
		if !errors.As(e, &re) {
			t.Errorf("problem %v is not an *Error", e)
		}
		if !errors.Is(e, ErrInvalid) {
			t.Errorf("problem %v does not wrap ErrInvalid", e)
		}
		out = append(out, e.Error())
	}
	slices.Sort(out)
	return out
}

// versions lists "name/version" of ms.
func versions(ms []Model) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.String()
	}
	return out
}

// checkMessages compares problem messages with want (order does not matter).
func checkMessages(t *testing.T, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	got := messages(t, err)
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
