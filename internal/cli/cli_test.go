package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warren-farm/warren/internal/cli"
	"github.com/warren-farm/warren/pkg/config"
	"github.com/warren-farm/warren/pkg/tracing"
)

// testConfig stands for a binary's config type.
type testConfig struct {
	Concurrency int
	Models      []string
	Drain       time.Duration
	ID          string
}

func loadTest(l *config.Loader) testConfig {
	c := testConfig{
		Concurrency: config.Concurrency.Load(l),
		Models:      config.Models.Load(l),
		Drain:       config.DrainTimeout.Load(l),
		ID:          config.WorkerID.Load(l),
	}
	l.Check(c.Concurrency > 100, config.Concurrency, "more than this test allows")
	return c
}

type runFunc = func(context.Context, testConfig, *slog.Logger, *tracing.Tracing) error

// command is a worker whose run is fn.
func command(fn runFunc) cli.Command[testConfig] {
	return cli.Command[testConfig]{
		Name:     config.Worker,
		Summary:  "a test worker",
		Load:     loadTest,
		LogAttrs: func(c testConfig) []any { return []any{"worker_id", c.ID} },
		Run:      fn,
	}
}

// mustNotRun is a run that fails the test when called.
func mustNotRun(t *testing.T) runFunc {
	return func(context.Context, testConfig, *slog.Logger, *tracing.Tracing) error {
		t.Error("Run called")
		return nil
	}
}

type result struct {
	code           int
	stdout, stderr string
}

func execute[C any](c cli.Command[C], args []string, env map[string]string) result {
	var stdout, stderr strings.Builder
	code := c.Execute(cli.Process{Args: args, Getenv: func(k string) string { return env[k] }, Stdout: &stdout, Stderr: &stderr})
	return result{code, stdout.String(), stderr.String()}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"-help"}, {"--concurrency=2", "--help"}} {
		r := execute(command(mustNotRun(t)), args, nil)
		if r.code != cli.ExitOK || r.stderr != "" {
			t.Errorf("%q: exit %d, stderr %q", args, r.code, r.stderr)
		}
		for _, want := range []string{
			"worker: a test worker", "worker config [--all]", "worker healthcheck [/ready|/health]", "worker help",
			"CONCURRENCY ", "MODELS ", "HTTP_ADDR ", ":8001", "(empty)", "--amqp-url",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%q: help lacks %q:\n%s", args, want, r.stdout)
			}
		}
		if strings.Contains(r.stdout, "REQUEST_TIMEOUT") {
			t.Errorf("%q: the worker's help lists the api's REQUEST_TIMEOUT", args)
		}
	}
}

func TestUnknownFlagOrArgument(t *testing.T) {
	for args, want := range map[string]string{
		"--request-timeout=3s": "request-timeout", // the api's flag
		"--concurency=3":       "concurency",
		"serve":                `"serve"`,
	} {
		r := execute(command(mustNotRun(t)), []string{args}, nil)
		if r.code != cli.ExitConfig || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "`worker help`") {
			t.Errorf("%s: exit %d, stderr %q; want 2, naming %s and pointing at help", args, r.code, r.stderr, want)
		}
	}
}

func TestConfig(t *testing.T) {
	var worker, all strings.Builder
	config.PrintTable(&worker, config.Worker)
	config.PrintTable(&all, "")
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"config"}, cli.ExitOK, worker.String()},
		{[]string{"config", "--all"}, cli.ExitOK, all.String()},
		{[]string{"config", "--bogus"}, cli.ExitConfig, ""},
	} {
		r := execute(command(mustNotRun(t)), tc.args, map[string]string{"CONCURRENCY": "bad values do not matter here"})
		if r.code != tc.code || r.stdout != tc.out {
			t.Errorf("%q: exit %d, stdout:\n%s\nwant %d:\n%s", tc.args, r.code, r.stdout, tc.code, tc.out)
		}
	}
	if worker.String() == all.String() {
		t.Error("the worker's table is the whole table")
	}
}

// Every bad value is reported, the binary's and the ones the prologue reads.
func TestBadValuesExit2NamingEvery(t *testing.T) {
	r := execute(command(mustNotRun(t)), []string{"--drain-timeout=soon"}, map[string]string{
		"CONCURRENCY": "0", "MODELS": "digits,digits", "LOG_LEVEL": "loud",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_TRACES_SAMPLER_ARG": "2",
	})
	if r.code != cli.ExitConfig {
		t.Fatalf("exit %d, want 2; stderr:\n%s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	want := []string{"CONCURRENCY=", "DRAIN_TIMEOUT=", "MODELS=", "LOG_LEVEL=", "OTEL_EXPORTER_OTLP_PROTOCOL=", "OTEL_TRACES_SAMPLER_ARG="}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), r.stderr)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], "worker: invalid configuration: "+w) {
			t.Errorf("line %d = %q, want it to name %s", i, lines[i], w)
		}
	}
}

func TestLoadCheckExits2(t *testing.T) {
	r := execute(command(mustNotRun(t)), []string{"--concurrency=500"}, nil)
	if r.code != cli.ExitConfig || !strings.Contains(r.stderr, `CONCURRENCY="500": more than this test allows`) {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestRunGetsConfigLoggerAndTracing(t *testing.T) {
	called := false
	r := execute(command(func(ctx context.Context, c testConfig, log *slog.Logger, tr *tracing.Tracing) error {
		called = true
		if ctx.Err() != nil {
			t.Error("ctx done at the start")
		}
		if c.Concurrency != 8 || c.Drain != 5*time.Second || strings.Join(c.Models, "|") != "digits|seed" {
			t.Errorf("config %+v", c)
		}
		if tr == nil || tr.Enabled() {
			t.Errorf("tracing %v: want a disabled one without OTEL_EXPORTER_OTLP_ENDPOINT", tr)
		}
		log.Debug("hidden at info")
		log.Info("started", "n", 1)
		return nil
	}), []string{"--concurrency=8"}, map[string]string{
		"CONCURRENCY": "3", "DRAIN_TIMEOUT": "5s", "MODELS": " digits, seed", "WORKER_ID": "w-1", "LOG_FORMAT": "json",
	})
	if r.code != cli.ExitOK || !called || r.stdout != "" {
		t.Fatalf("exit %d, run called %v, stdout %q, stderr %q", r.code, called, r.stdout, r.stderr)
	}
	var line map[string]any
	if err := json.Unmarshal([]byte(r.stderr), &line); err != nil {
		t.Fatalf("stderr is not one JSON log line: %v\n%s", err, r.stderr)
	}
	if line["msg"] != "started" || line["service"] != "worker" || line["worker_id"] != "w-1" {
		t.Errorf("log line %v", line)
	}
}

func TestRunErrorExits1AndIsLogged(t *testing.T) {
	r := execute(command(func(context.Context, testConfig, *slog.Logger, *tracing.Tracing) error {
		return errors.New("listen tcp :8001: address already in use")
	}), nil, map[string]string{"LOG_FORMAT": "json"})
	if r.code != cli.ExitError {
		t.Fatalf("exit %d, want 1", r.code)
	}
	var line map[string]any
	if err := json.Unmarshal([]byte(r.stderr), &line); err != nil {
		t.Fatalf("stderr is not one JSON log line: %v\n%s", err, r.stderr)
	}
	if line["level"] != "ERROR" || line["err"] != "listen tcp :8001: address already in use" {
		t.Errorf("log line %v", line)
	}
}

// A configuration error found only once the run uses it (a model repository that
// does not load, say) exits 2 and is printed plainly, not as a log line.
func TestRunConfigErrorExits2(t *testing.T) {
	r := execute(command(func(context.Context, testConfig, *slog.Logger, *tracing.Tracing) error {
		return fmt.Errorf("MODEL_REPOSITORY %q: digits/config.yaml: %w: unknown backend %q", "models", config.ErrInvalid, "tensorflow")
	}), nil, map[string]string{"LOG_FORMAT": "json"})
	want := "worker: MODEL_REPOSITORY \"models\": digits/config.yaml: invalid configuration: unknown backend \"tensorflow\"\n"
	if r.code != cli.ExitConfig || r.stderr != want {
		t.Errorf("exit %d, stderr %q; want 2, %q", r.code, r.stderr, want)
	}
}

func TestNoRunExits1(t *testing.T) {
	if r := execute(cli.Command[testConfig]{Name: config.Worker}, nil, nil); r.code != cli.ExitError {
		t.Errorf("exit %d", r.code)
	}
}

// otlpCollector counts OTLP/HTTP trace exports.
func otlpCollector(t *testing.T) (url string, exports *atomic.Int32) {
	exports = new(atomic.Int32)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			exports.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(srv.Close)
	return srv.URL, exports
}

// Tracing is on with an endpoint, and shut down (its batch flushed) however the run
// ends: the batcher would otherwise hold the span for seconds.
func TestTracingIsShutDownAtExit(t *testing.T) {
	for name, tc := range map[string]struct {
		err  error
		code int
	}{
		"clean":        {nil, cli.ExitOK},
		"error":        {errors.New("boom"), cli.ExitError},
		"config error": {config.ErrInvalid, cli.ExitConfig},
	} {
		t.Run(name, func(t *testing.T) {
			url, exports := otlpCollector(t)
			r := execute(command(func(ctx context.Context, _ testConfig, _ *slog.Logger, tr *tracing.Tracing) error {
				if !tr.Enabled() {
					t.Error("tracing disabled with OTEL_EXPORTER_OTLP_ENDPOINT set")
				}
				_, span := tr.Tracer("cli-test").Start(ctx, "work")
				span.End()
				if n := exports.Load(); n != 0 {
					t.Errorf("%d exports before the end of the run", n)
				}
				return tc.err
			}), nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": url})
			if r.code != tc.code {
				t.Errorf("exit %d, want %d; stderr %q", r.code, tc.code, r.stderr)
			}
			if n := exports.Load(); n == 0 {
				t.Error("no span exported by the time Execute returned: tracing was not shut down")
			}
		})
	}
}

func TestBadTracingEndpointExits2(t *testing.T) {
	r := execute(command(mustNotRun(t)), nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"})
	if r.code != cli.ExitConfig || !strings.HasPrefix(r.stderr, "worker: OTEL_EXPORTER_OTLP_ENDPOINT: ") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestHealthcheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			http.Error(w, "draining", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	env := map[string]string{"HTTP_ADDR": ":" + port, "CONCURRENCY": "not read by healthcheck"}
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"healthcheck"}, 0, "ok\n"},
		{[]string{"healthcheck", "/ready"}, 0, "ok\n"},
		{[]string{"healthcheck", "/health"}, 1, ""},
		{[]string{"healthcheck", "/metrics"}, 2, ""},
	} {
		r := execute(command(mustNotRun(t)), tc.args, env)
		if r.code != tc.code || r.stdout != tc.out {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d", tc.args, r.code, r.stdout, r.stderr, tc.code)
		}
	}
}

func TestSubcommands(t *testing.T) {
	var got []string
	c := command(mustNotRun(t))
	c.Subcommands = []cli.Subcommand{{Name: "mint", Args: "--name NAME", Usage: "make a thing",
		Run: func(args []string, stdout, stderr io.Writer) int {
			got = args
			fmt.Fprintln(stdout, "minted")
			return 3
		}}}
	r := execute(c, []string{"mint", "--name", "x"}, nil)
	if r.code != 3 || r.stdout != "minted\n" || strings.Join(got, " ") != "--name x" {
		t.Fatalf("mint: exit %d, stdout %q, args %q", r.code, r.stdout, got)
	}
	if r := execute(c, []string{"help"}, nil); !strings.Contains(r.stdout, "worker mint --name NAME") || !strings.Contains(r.stdout, "make a thing") {
		t.Fatalf("help lacks the subcommand:\n%s", r.stdout)
	}
	// Not a subcommand: an argument the run refuses, as before.
	if r := execute(c, []string{"mintx"}, nil); r.code != cli.ExitConfig {
		t.Fatalf("an unknown word: exit %d", r.code)
	}
}
