package config

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestPrecedenceFlagEnvDefault(t *testing.T) {
	l, err := NewLoader(API, []string{"--request-timeout=3s"}, env(map[string]string{"REQUEST_TIMEOUT": "5s", "BODY_LIMIT": "2MiB"}))
	if err != nil {
		t.Fatal(err)
	}
	if d := l.Duration("REQUEST_TIMEOUT", 0); d != 3*time.Second {
		t.Errorf("flag should win: %s", d)
	}
	if b := l.Bytes("BODY_LIMIT", 0); b != 2<<20 {
		t.Errorf("env should win over default: %d", b)
	}
	if a := l.String("HTTP_ADDR"); a != ":8000" {
		t.Errorf("api default addr %q", a)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	w, _ := NewLoader(Worker, nil, env(nil))
	if a := w.String("HTTP_ADDR"); a != ":8001" {
		t.Errorf("worker default addr %q", a)
	}
}

func TestEveryBadValueIsNamed(t *testing.T) {
	l, err := NewLoader(Worker, nil, env(map[string]string{
		"CONCURRENCY": "zero", "MODEL_LATENCY": "-5s", "BODY_LIMIT": "lots", "LOG_LEVEL": "loud",
	}))
	if err != nil {
		t.Fatal(err)
	}
	l.Int("CONCURRENCY", 1, 10)
	l.Duration("MODEL_LATENCY", 0)
	l.Bytes("BODY_LIMIT", 1)
	l.OneOf("LOG_LEVEL", Levels...)
	err = l.Err()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	for _, name := range []string{"CONCURRENCY", "MODEL_LATENCY", "BODY_LIMIT", "LOG_LEVEL"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("%s not named in %v", name, err)
		}
	}
}

func TestUnknownFlagAndStrayArgument(t *testing.T) {
	if _, err := NewLoader(API, []string{"--concurrency=3"}, env(nil)); err == nil {
		t.Error("the API must not accept the worker's --concurrency")
	}
	if _, err := NewLoader(API, []string{"serve"}, env(nil)); err == nil {
		t.Error("stray argument accepted")
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "1MiB": 1 << 20, "512KiB": 512 << 10, "1 MB": 1 << 20, "64B": 64, "2g": 2 << 30} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5MiB", "ten"} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) accepted", in)
		}
	}
}

func TestUnknownVariablePanics(t *testing.T) {
	l, _ := NewLoader(API, nil, env(nil))
	defer func() {
		if recover() == nil {
			t.Fatal("reading a variable the table does not list for the binary must panic")
		}
	}()
	l.String("CONCURRENCY") // a worker variable
}

// The README's configuration table is the table in code.
func TestREADMEListsEveryVariable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	PrintTable(&sb, "")
	if !strings.Contains(string(b), sb.String()) {
		t.Fatalf("README.md does not contain the current configuration table; paste the output of `go run ./cmd/api config --all`:\n%s", sb.String())
	}
}
