package config

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func newLoader(t *testing.T, binary string, args []string, vars map[string]string) *Loader {
	t.Helper()
	l, err := NewLoader(binary, args, env(vars))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestPrecedenceFlagEnvDefault(t *testing.T) {
	l := newLoader(t, API, []string{"--request-timeout=3s"}, map[string]string{"REQUEST_TIMEOUT": "5s", "BODY_LIMIT": "2MiB"})
	if d := RequestTimeout.Load(l); d != 3*time.Second {
		t.Errorf("flag should win: %s", d)
	}
	if b := BodyLimit.Load(l); b != 2<<20 {
		t.Errorf("env should win over default: %d", b)
	}
	if a := HTTPAddr.Load(l); a != ":8000" {
		t.Errorf("api default addr %q", a)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	w := newLoader(t, Worker, []string{"--concurrency", "7"}, nil)
	if a := HTTPAddr.Load(w); a != ":8001" {
		t.Errorf("worker default addr %q", a)
	}
	if n := Concurrency.Load(w); n != 7 {
		t.Errorf("--concurrency 7 (two arguments): %d", n)
	}
}

// An empty flag is a value (MANAGEMENT_URL's "empty disables"); an empty or blank
// environment variable is unset.
func TestEmptyFlagIsAValueEmptyEnvIsUnset(t *testing.T) {
	l := newLoader(t, API, []string{"--management-url="}, map[string]string{"DATA_DIR": "  ", "REDIS_PREFIX": ""})
	if s := ManagementURL.Load(l); s != "" {
		t.Errorf("--management-url= gave %q", s)
	}
	if s := DataDir.Load(l); s != "data" {
		t.Errorf("blank DATA_DIR gave %q, want the default", s)
	}
	if s := RedisPrefix.Load(l); s != "warren:" {
		t.Errorf("empty REDIS_PREFIX gave %q, want the default", s)
	}
}

func TestEveryBadValueIsNamed(t *testing.T) {
	l := newLoader(t, Worker, nil, map[string]string{
		"CONCURRENCY": "zero", "MODEL_LATENCY": "-5s", "BODY_LIMIT": "lots", "LOG_LEVEL": "loud",
		"PREFETCH": "70000", "MODEL_SEED": "-1", "MODELS": "a,a", "OTEL_TRACES_SAMPLER_ARG": "NaN",
	})
	// Read in an order unlike the table's: the report follows the table.
	LogLevel.Load(l)
	Concurrency.Load(l)
	ModelLatency.Load(l)
	BodyLimit.Load(l)
	Prefetch.Load(l)
	ModelSeed.Load(l)
	Models.Load(l)
	TracesSamplerArg.Load(l)
	err := l.Err()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	want := []string{
		`BODY_LIMIT="lots": not a byte size`,
		`CONCURRENCY="zero": not an integer`,
		`PREFETCH="70000": must be between 0 and 65535`,
		`MODELS="a,a": "a" is listed more than once`,
		`MODEL_SEED="-1": not an integer`,
		`MODEL_LATENCY="-5s": must be at least 0s`,
		`LOG_LEVEL="loud": must be one of debug, info, warn, error`,
		`OTEL_TRACES_SAMPLER_ARG="NaN": must be above 0 and at most 1`,
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d errors, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("error %d = %q, want it to contain %q", i, lines[i], w)
		}
	}
}

// A value read twice (say by internal/cli and by the binary) is reported once.
func TestBadValueReportedOnce(t *testing.T) {
	l := newLoader(t, Worker, nil, map[string]string{"CONCURRENCY": "0"})
	if n := Concurrency.Load(l); n != 0 {
		t.Errorf("a value out of bounds is still returned: %d", n)
	}
	Concurrency.Load(l)
	l.Check(true, Concurrency, "again")
	if err := l.Err(); err == nil || strings.Count(err.Error(), "CONCURRENCY") != 1 {
		t.Errorf("err = %v, want CONCURRENCY once", err)
	}
}

func TestUnknownFlagAndStrayArgument(t *testing.T) {
	_, err := NewLoader(API, []string{"--concurrency=3"}, nil)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "concurrency") || !strings.Contains(err.Error(), "api help") {
		t.Errorf("the API must refuse the worker's --concurrency, naming it and pointing at help: %v", err)
	}
	if _, err := NewLoader(API, []string{"serve"}, nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"serve"`) {
		t.Errorf("stray argument: %v", err)
	}
	for _, h := range []string{"-h", "--help", "-help"} {
		if _, err := NewLoader(Worker, []string{"--concurrency=2", h}, nil); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s: %v, want flag.ErrHelp", h, err)
		}
	}
	if _, err := NewLoader("scheduler", nil, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown binary: %v", err)
	}
}

// Reading an entry of the other binary is a bug in the caller; it is reported like
// a bad value (exit status 2), never a panic.
func TestOtherBinarysVariableIsAnErrorNotAPanic(t *testing.T) {
	l := newLoader(t, API, nil, map[string]string{"CONCURRENCY": "9"})
	if n := Concurrency.Load(l); n != Concurrency.Default {
		t.Errorf("got %d, want the default %d", n, Concurrency.Default)
	}
	err := l.Err()
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "CONCURRENCY is not a variable of the api binary") {
		t.Errorf("err = %v", err)
	}
	l.Check(true, Concurrency, "cross check") // no panic, no second error
	if got := l.Err(); got.Error() != err.Error() {
		t.Errorf("Check added to %v: %v", err, got)
	}
}

func TestEntryOutsideTheTableIsAnError(t *testing.T) {
	stray := &Int{Env: "STRAY", ReadBy: Both, Default: 1, Min: 0, Max: 2}
	l := newLoader(t, API, nil, map[string]string{"STRAY": "2"})
	if n := stray.Load(l); n != 1 {
		t.Errorf("got %d, want the default", n)
	}
	if err := l.Err(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "STRAY is not in config.Table") {
		t.Errorf("err = %v", err)
	}
}

func TestCheck(t *testing.T) {
	l := newLoader(t, API, []string{"--max-request-timeout=1s"}, nil)
	mx, rt := MaxRequestTimeout.Load(l), RequestTimeout.Load(l)
	l.Check(mx < rt, MaxRequestTimeout, "must be at least REQUEST_TIMEOUT")
	l.Check(rt > time.Hour, RequestTimeout, "unreachable")
	l.Check(true, DataDir, "must be set when REDIS_URL is empty")
	err := l.Err()
	for _, want := range []string{
		`MAX_REQUEST_TIMEOUT="1s": must be at least REQUEST_TIMEOUT`,
		`DATA_DIR="data" (the default): must be set when REDIS_URL is empty`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "unreachable") {
		t.Errorf("a passing check was recorded: %v", err)
	}
}

func TestEnumIsCaseInsensitive(t *testing.T) {
	l := newLoader(t, API, nil, map[string]string{"LOG_LEVEL": "DEBUG", "OTEL_EXPORTER_OTLP_PROTOCOL": "gRPC"})
	if s := LogLevel.Load(l); s != "debug" {
		t.Errorf("LOG_LEVEL=DEBUG gave %q", s)
	}
	if s := OTLPProtocol.Load(l); s != "grpc" {
		t.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=gRPC gave %q", s)
	}
	if err := l.Err(); err != nil {
		t.Error(err)
	}
}

func TestModelSeedTakesEveryUint64(t *testing.T) {
	l := newLoader(t, Worker, []string{"--model-seed=18446744073709551615"}, nil)
	if s := ModelSeed.Load(l); s != 1<<64-1 {
		t.Errorf("got %d", s)
	}
	if err := l.Err(); err != nil {
		t.Error(err)
	}
}

func TestFloatBounds(t *testing.T) {
	for in, ok := range map[string]bool{"1": true, "0.25": true, "0": false, "-0.5": false, "1.01": false, "Inf": false, "x": false} {
		l := newLoader(t, API, nil, map[string]string{"SCALE_TARGET_UTILIZATION": in})
		ScaleTargetUtilization.Load(l)
		if got := l.Err() == nil; got != ok {
			t.Errorf("SCALE_TARGET_UTILIZATION=%s: accepted %v, want %v (%v)", in, got, ok, l.Err())
		}
	}
}

func TestFloatZeroOK(t *testing.T) {
	for in, ok := range map[string]bool{"0": true, "0.5": true, "1000000": true, "-0.5": false, "-1": false, "1e7": false, "NaN": false} {
		l := newLoader(t, API, nil, map[string]string{"RATE_LIMIT": in})
		RateLimit.Load(l)
		if got := l.Err() == nil; got != ok {
			t.Errorf("RATE_LIMIT=%s: accepted %v, want %v (%v)", in, got, ok, l.Err())
		}
		if err := l.Err(); err != nil && !strings.Contains(err.Error(), "must be 0 (off), or above 0") {
			t.Errorf("RATE_LIMIT=%s: %v, want the error to say 0 is allowed", in, err)
		}
	}
}

func TestDurationBounds(t *testing.T) {
	stray := &Duration{Env: "STRAY", Min: time.Second, Max: time.Minute}
	for in, ok := range map[string]bool{"1s": true, "60s": true, "999ms": false, "61s": false} {
		d, err := parseDuration(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := stray.check(d) == nil; got != ok {
			t.Errorf("%s: accepted %v, want %v", in, got, ok)
		}
	}
	if _, err := parseDuration("10"); err == nil {
		t.Error("a duration without unit accepted")
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "1MiB": 1 << 20, "512KiB": 512 << 10, "1 MB": 1 << 20, "64B": 64, "2g": 2 << 30} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5MiB", "ten", "9223372036854775807GiB"} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) accepted", in)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 64: "64", 1 << 20: "1MiB", 1536: "1536", 512 << 10: "512KiB", 3 << 30: "3GiB", 1000: "1000"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
		if back, err := ParseBytes(FormatBytes(n)); err != nil || back != n {
			t.Errorf("ParseBytes(FormatBytes(%d)) = %d, %v", n, back, err)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", time.Millisecond: "1ms", 10 * time.Millisecond: "10ms", 20 * time.Second: "20s",
		time.Minute: "1m", 15 * time.Minute: "15m", 24 * time.Hour: "24h", 90 * time.Minute: "1h30m",
		time.Hour + time.Second: "1h0m1s", 1500 * time.Millisecond: "1.5s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
