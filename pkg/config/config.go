// Package config holds warren's configuration table: every environment variable a
// binary reads, its default and its command-line flag twin, in one place.
//
// The table is the single source of truth: the binaries' `config` subcommand prints it,
// the README's configuration section is checked against it, and later checks (compose,
// Helm) use it to make sure a deployment sets only variables a binary really reads.
//
// Precedence for every setting: flag, then environment variable, then default.
// Packages other than cmd/* never read the environment; they receive typed config
// structs built by a [Loader].
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Binary names used in [Var.Binaries].
const (
	API    = "api"
	Worker = "worker"
)

// Var describes one environment variable.
type Var struct {
	Env      string   // environment variable name, e.g. AMQP_URL
	Binaries []string // which binaries read it (API, Worker)
	Defaults map[string]string
	Usage    string
}

// Flag returns the flag twin of the variable: lower case, dashes, e.g. --amqp-url.
func (v Var) Flag() string { return strings.ReplaceAll(strings.ToLower(v.Env), "_", "-") }

// Default returns the default for the binary.
func (v Var) Default(binary string) string {
	if d, ok := v.Defaults[binary]; ok {
		return d
	}
	return v.Defaults[""]
}

// ReadBy reports whether binary reads the variable.
func (v Var) ReadBy(binary string) bool {
	for _, b := range v.Binaries {
		if b == binary {
			return true
		}
	}
	return false
}

func both(d string) map[string]string { return map[string]string{"": d} }

// Vars is the configuration table. Later features append to it.
var Vars = []Var{
	{"AMQP_URL", []string{API, Worker}, both("amqp://guest:guest@localhost:5672/"),
		"RabbitMQ URL, including the vhost (amqp:// or amqps://)."},
	{"MANAGEMENT_URL", []string{API}, both("http://guest:guest@localhost:15672"),
		"RabbitMQ management API; the API applies the request-queue bound as a policy through it. Empty disables (the queue is then unbounded)."},
	{"HTTP_ADDR", []string{API, Worker}, map[string]string{API: ":8000", Worker: ":8001"},
		"HTTP listen address."},
	{"REQUEST_TIMEOUT", []string{API}, both("10s"),
		"Default deadline of a /process call (queue wait + model + reply)."},
	{"MAX_REQUEST_TIMEOUT", []string{API}, both("60s"),
		"Upper bound for a per-request X-Request-Timeout header; larger values are clamped."},
	{"BODY_LIMIT", []string{API, Worker}, both("1MiB"),
		"Largest request body accepted (bytes, or with KiB/MiB suffix); larger → 413."},
	{"QUEUE_MAX_LENGTH", []string{API}, both("10000"),
		"Bound on ready messages in the sync request queue (policy, overflow=reject-publish); a full queue → 503 queue_full. 0 disables the bound."},
	{"CONCURRENCY", []string{Worker}, both("4"),
		"Requests one worker process computes at once (handler goroutines)."},
	{"PREFETCH", []string{Worker}, both("0"),
		"Unacked deliveries the broker may push to one worker; 0 means equal to CONCURRENCY."},
	{"DRAIN_TIMEOUT", []string{API, Worker}, both("20s"),
		"On SIGTERM: how long in-flight work may take to finish before the process exits anyway."},
	{"MODEL_SEED", []string{Worker}, both("0"),
		"Seed mixed with the input hash; the same seed and input always give the same prediction."},
	{"MODEL_LATENCY", []string{Worker}, both("0s"),
		"Simulated service time added to every prediction (honours the request deadline)."},
	{"WORKER_ID", []string{Worker}, both(""),
		"Identity echoed in replies; empty means hostname-pid."},
	{"LOG_LEVEL", []string{API, Worker}, both("info"),
		"debug, info, warn or error."},
	{"LOG_FORMAT", []string{API, Worker}, both("text"),
		"text or json (json is the container default)."},
	{"SCALE_TARGET_UTILIZATION", []string{API}, both("0.7"),
		"Workers-needed estimate (GET /capacity, warren_workers_needed): the share of worker slots kept busy at the current arrival rate."},
	{"SCALE_TARGET_WAIT", []string{API}, both("1s"),
		"Workers-needed estimate: how fast a backlog of ready messages should be worked off."},
	{"DATA_DIR", []string{API}, both("data"),
		"Directory of the embedded job store (jobs.db, bbolt) used when REDIS_URL is empty. One API instance only."},
	{"REDIS_URL", []string{API}, both(""),
		"Job store for several API replicas (redis://host:6379/0); long-polls are woken across replicas through Redis pub/sub. Empty uses DATA_DIR."},
	{"REDIS_PREFIX", []string{API}, both("warren:"),
		"Prefix of every Redis key and pub/sub channel of the job store, so several farms can share one Redis."},
	{"JOB_TTL", []string{API}, both("24h"),
		"How long a finished job stays readable; after that GET /jobs/{id} is 404."},
	{"JOB_START_TIMEOUT", []string{API}, both("1h"),
		"A job not started this long after submission becomes expired. 0 means never."},
	{"MAX_WAIT", []string{API}, both("60s"),
		"Upper bound of ?wait= on GET /jobs/{id} and of Prefer: wait= on /process."},
	{"JOB_CONCURRENCY", []string{Worker}, both("1"),
		"Jobs one worker runs at once, on a connection, prefetch and handlers of their own (separate from CONCURRENCY). 0 turns the job path off."},
	{"JOB_MAX_ATTEMPTS", []string{Worker}, both("3"),
		"Times a job is started at most: model errors are retried until then, and redeliveries after crashes and drains count too. At most 20 (the queue's delivery limit)."},
	{"JOB_RETRY_BACKOFF", []string{Worker}, both("1s"),
		"Delay before the first retry of a failed job; doubles per attempt up to JOB_RETRY_BACKOFF_MAX."},
	{"JOB_RETRY_BACKOFF_MAX", []string{Worker}, both("30s"),
		"Longest retry delay."},
	{"JOB_RUN_TIMEOUT", []string{Worker}, both("15m"),
		"Longest run of one job. Keep it below the broker's consumer_timeout (30 min by default; deployments/rabbitmq/rabbitmq.conf sets 1 h)."},
	{"OTEL_EXPORTER_OTLP_ENDPOINT", []string{API, Worker}, both(""),
		"OpenTelemetry collector base URL (http://host:4318 for http/protobuf, http://host:4317 for grpc); traces are exported when set. Empty disables tracing at no cost. The SDK's other OTEL_* variables (headers, timeout, resource attributes) apply too."},
	{"OTEL_EXPORTER_OTLP_PROTOCOL", []string{API, Worker}, both("http/protobuf"),
		"http/protobuf or grpc."},
	{"OTEL_TRACES_SAMPLER_ARG", []string{API, Worker}, both("1"),
		"Share of new traces recorded (0 < ratio ≤ 1); a caller's traceparent keeps its own sampling decision."},
	{"OTEL_SERVICE_NAME", []string{API, Worker}, map[string]string{API: "warren-api", Worker: "warren-worker"},
		"service.name of the exported spans."},
}

// Lookup returns the table entry for env.
func Lookup(env string) (Var, bool) {
	for _, v := range Vars {
		if v.Env == env {
			return v, true
		}
	}
	return Var{}, false
}

// For returns the variables binary reads, in table order.
func For(binary string) []Var {
	var out []Var
	for _, v := range Vars {
		if v.ReadBy(binary) {
			out = append(out, v)
		}
	}
	return out
}

// ErrInvalid wraps every validation error returned by a [Loader].
var ErrInvalid = errors.New("invalid configuration")

// Loader reads typed values for one binary from flags, then the environment, then
// defaults, collecting every bad value instead of stopping at the first.
type Loader struct {
	binary string
	values map[string]string
	errs   []error
}

// NewLoader parses args (without the program name) as flags for binary's variables and
// resolves every variable through getenv. Unknown flags are an error.
func NewLoader(binary string, args []string, getenv func(string) string) (*Loader, error) {
	fs := flag.NewFlagSet(binary, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	set := map[string]*string{}
	for _, v := range For(binary) {
		set[v.Env] = fs.String(v.Flag(), "", v.Usage)
	}
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%w: %v (run `%s config` for the list)", ErrInvalid, err, binary)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected argument %q", ErrInvalid, fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	l := &Loader{binary: binary, values: map[string]string{}}
	for _, v := range For(binary) {
		switch {
		case given[v.Flag()]:
			l.values[v.Env] = *set[v.Env]
		case getenv(v.Env) != "":
			l.values[v.Env] = getenv(v.Env)
		default:
			l.values[v.Env] = v.Default(binary)
		}
	}
	return l, nil
}

func (l *Loader) raw(env string) string {
	v, ok := Lookup(env)
	if !ok || !v.ReadBy(l.binary) {
		// A programming error: the table and the code disagree.
		panic(fmt.Sprintf("config: %s is not in the table for %s", env, l.binary))
	}
	return strings.TrimSpace(l.values[env])
}

func (l *Loader) fail(env, val, why string) {
	l.errs = append(l.errs, fmt.Errorf("%w: %s=%q: %s", ErrInvalid, env, val, why))
}

// String returns the value of env.
func (l *Loader) String(env string) string { return l.raw(env) }

// OneOf returns the value of env, which must be one of allowed (case-insensitive).
func (l *Loader) OneOf(env string, allowed ...string) string {
	s := strings.ToLower(l.raw(env))
	for _, a := range allowed {
		if s == a {
			return s
		}
	}
	l.fail(env, s, "must be one of "+strings.Join(allowed, ", "))
	return allowed[0]
}

// Duration returns env as a duration (Go syntax such as 10s or 250ms) of at least min.
func (l *Loader) Duration(env string, min time.Duration) time.Duration {
	s := l.raw(env)
	d, err := time.ParseDuration(s)
	if err != nil {
		l.fail(env, s, "not a duration (e.g. 10s, 250ms)")
		return 0
	}
	if d < min {
		l.fail(env, s, fmt.Sprintf("must be at least %s", min))
	}
	return d
}

// Float returns env as a number in (min, max].
func (l *Loader) Float(env string, min, max float64) float64 {
	s := l.raw(env)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		l.fail(env, s, "not a number")
		return 0
	}
	if f <= min || f > max {
		l.fail(env, s, fmt.Sprintf("must be above %g and at most %g", min, max))
	}
	return f
}

// Int returns env as an integer in [min, max].
func (l *Loader) Int(env string, min, max int) int {
	s := l.raw(env)
	n, err := strconv.Atoi(s)
	if err != nil {
		l.fail(env, s, "not an integer")
		return 0
	}
	if n < min || n > max {
		l.fail(env, s, fmt.Sprintf("must be between %d and %d", min, max))
	}
	return n
}

// Int64 returns env as a 64-bit integer.
func (l *Loader) Int64(env string) int64 {
	s := l.raw(env)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		l.fail(env, s, "not an integer")
	}
	return n
}

// Bytes returns env as a byte count: a plain number or one with a B, KiB, MiB or GiB
// suffix (KB/MB/GB are read as the binary units too). It must be at least min.
func (l *Loader) Bytes(env string, min int64) int64 {
	s := l.raw(env)
	n, err := ParseBytes(s)
	if err != nil {
		l.fail(env, s, err.Error())
		return 0
	}
	if n < min {
		l.fail(env, s, fmt.Sprintf("must be at least %d bytes", min))
	}
	return n
}

// ParseBytes parses "1048576", "512KiB", "1MiB", "1 MB".
func ParseBytes(s string) (int64, error) {
	t := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), " ", ""))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("not a byte size (e.g. 1048576, 512KiB, 1MiB)")
	}
	return n * mult, nil
}

// Check adds a custom validation failure for env when bad is true.
func (l *Loader) Check(bad bool, env, why string) {
	if bad {
		l.fail(env, l.raw(env), why)
	}
}

// Err returns every validation failure, joined, or nil.
func (l *Loader) Err() error { return errors.Join(l.errs...) }

// PrintTable writes the table as Markdown: all variables, or only binary's when binary
// is not empty. The README's table is this output.
func PrintTable(w io.Writer, binary string) {
	fmt.Fprintln(w, "| variable | flag | binaries | default | meaning |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, v := range Vars {
		if binary != "" && !v.ReadBy(binary) {
			continue
		}
		fmt.Fprintf(w, "| `%s` | `--%s` | %s | %s | %s |\n", v.Env, v.Flag(), strings.Join(v.Binaries, ", "), defaults(v), v.Usage)
	}
}

func defaults(v Var) string {
	if len(v.Defaults) == 1 {
		return quoteDefault(v.Default(""))
	}
	keys := make([]string, 0, len(v.Defaults))
	for k := range v.Defaults {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+": "+quoteDefault(v.Defaults[k]))
	}
	return strings.Join(parts, "; ")
}

func quoteDefault(s string) string {
	if s == "" {
		return "(empty)"
	}
	return "`" + s + "`"
}
