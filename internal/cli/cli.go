// Package cli is the prologue both warren binaries share, so that each main is only
// its wiring: a [Command] names the binary, loads its typed config and runs it.
//
// For a binary, [Command.Main] handles
//
//	help, -h, --help                  usage on stdout, exit 0
//	config [--all]                    the binary's variables (all with --all) as Markdown
//	healthcheck [/ready|/health]      probe HTTP_ADDR: exit 0 healthy, 1 unhealthy, 2 usage
//	<subcommand> …                    the binary's own (Command.Subcommands; the API's keygen)
//	[--flag=value …]                  run
//
// A run parses flags and the environment ([config.NewLoader]) into the binary's
// config through [Command.Load] and reports every bad value at once (exit 2); builds
// the logger from LOG_LEVEL and LOG_FORMAT and tracing from the OTEL_* variables;
// cancels the run's context on SIGINT or SIGTERM; and shuts tracing down (for at most
// 5 s) however the run ends. [Command.Run] returning nil exits 0; an error wrapping
// [config.ErrInvalid] — configuration found bad only once used, say a model
// repository that does not load — is printed plainly and exits 2; any other error is
// logged and exits 1.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/warren-farm/warren/pkg/config"
	"github.com/warren-farm/warren/pkg/health"
	"github.com/warren-farm/warren/pkg/tracing"
)

// Exit statuses of a binary.
const (
	ExitOK     = 0 // ran and stopped cleanly, or printed what was asked
	ExitError  = 1 // failed at run time (or unhealthy, for healthcheck)
	ExitConfig = 2 // bad configuration or usage
)

// tracingShutdownTimeout bounds the flush of buffered spans at exit: an
// unreachable collector must not hold the process up.
const tracingShutdownTimeout = 5 * time.Second

// Command is one of warren's binaries as its main wires it. C is the binary's own
// config type.
type Command[C any] struct {
	// Name is the binary: config.API or config.Worker.
	Name string
	// Summary is the first line of help, e.g. "warren's HTTP front door".
	Summary string
	// Load reads the binary's settings through l into its config. Bad values are
	// recorded in l (entries' Load, l.Check) and reported together before Run is
	// called. Command reads LOG_LEVEL, LOG_FORMAT and the OTEL_* variables itself;
	// Load may read them too. Nil means the binary has no settings of its own.
	Load func(l *config.Loader) C
	// LogAttrs, when set, returns attributes for every log line besides
	// "service"=Name, e.g. the worker's id.
	LogAttrs func(cfg C) []any
	// Run runs the binary until ctx is cancelled (SIGINT or SIGTERM), then drains and
	// returns. log writes to stderr; tr is on when OTEL_EXPORTER_OTLP_ENDPOINT is set,
	// and Command shuts it down after Run returns.
	Run func(ctx context.Context, cfg C, log *slog.Logger, tr *tracing.Tracing) error
	// Subcommands are the binary's own subcommands (the API's keygen), by name:
	// each gets the arguments after its name and returns the exit status.
	Subcommands []Subcommand
}

// Subcommand is one of a binary's own subcommands.
type Subcommand struct {
	Name  string
	Args  string // the synopsis after the name, for help
	Usage string // one line, for help
	Run   func(args []string, stdout, stderr io.Writer) int
}

// Process is what a run sees of its process: the arguments (without the program
// name), the environment and the two output streams.
type Process struct {
	Args           []string
	Getenv         func(string) string
	Stdout, Stderr io.Writer
}

// Main runs the command in this process (arguments, environment, stdout, stderr,
// signals) and exits with its status.
func (c Command[C]) Main() {
	os.Exit(c.Execute(Process{Args: os.Args[1:], Getenv: os.Getenv, Stdout: os.Stdout, Stderr: os.Stderr}))
}

// Execute runs the command for p and returns the exit status. It listens for SIGINT
// and SIGTERM while Run runs.
func (c Command[C]) Execute(p Process) int {
	if c.Run == nil {
		fmt.Fprintf(p.Stderr, "%s: cli.Command has no Run\n", c.Name)
		return ExitError
	}
	if len(p.Args) > 0 {
		switch p.Args[0] {
		case "help", "-h", "-help", "--help":
			c.Usage(p.Stdout)
			return ExitOK
		case "config":
			return c.config(p)
		case "healthcheck":
			return c.healthcheck(p)
		}
		for _, sc := range c.Subcommands {
			if p.Args[0] == sc.Name {
				return sc.Run(p.Args[1:], p.Stdout, p.Stderr)
			}
		}
	}
	l, err := config.NewLoader(c.Name, p.Args, p.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		c.Usage(p.Stdout)
		return ExitOK
	}
	if err != nil {
		c.printErr(p.Stderr, err)
		return ExitConfig
	}
	var cfg C
	if c.Load != nil {
		cfg = c.Load(l)
	}
	level, format := config.LogLevel.Load(l), config.LogFormat.Load(l)
	tcfg := tracing.Config{
		ServiceName: config.ServiceName.Load(l),
		Endpoint:    config.OTLPEndpoint.Load(l),
		Protocol:    config.OTLPProtocol.Load(l),
		SampleRatio: config.TracesSamplerArg.Load(l),
	}
	if err := l.Err(); err != nil {
		c.printErr(p.Stderr, err)
		return ExitConfig
	}
	attrs := []any{"service", c.Name}
	if c.LogAttrs != nil {
		attrs = append(attrs, c.LogAttrs(cfg)...)
	}
	log := config.NewLogger(p.Stderr, level, format, attrs...)
	tcfg.Logger = log
	tr, err := tracing.New(context.Background(), tcfg)
	if err != nil {
		c.printErr(p.Stderr, fmt.Errorf("%s: %w", config.OTLPEndpoint.Env, err))
		return ExitConfig
	}
	defer shutdownTracing(tr, log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch err := c.Run(ctx, cfg, log, tr); {
	case err == nil:
		return ExitOK
	case errors.Is(err, config.ErrInvalid):
		c.printErr(p.Stderr, err)
		return ExitConfig
	default:
		log.Error(c.Name+" stopped with error", "err", err)
		return ExitError
	}
}

// config prints the binary's variables, or every variable with --all.
func (c Command[C]) config(p Process) int {
	switch args := p.Args[1:]; {
	case len(args) == 0:
		config.PrintTable(p.Stdout, c.Name)
	case len(args) == 1 && (args[0] == "--all" || args[0] == "-all"):
		config.PrintTable(p.Stdout, "")
	default:
		fmt.Fprintf(p.Stderr, "%s: usage: %s config [--all]\n", c.Name, c.Name)
		return ExitConfig
	}
	return ExitOK
}

// healthcheck probes the binary's own HTTP_ADDR: the image's HEALTHCHECK, which has
// no shell or curl to do it.
func (c Command[C]) healthcheck(p Process) int {
	l, err := config.NewLoader(c.Name, nil, p.Getenv)
	if err != nil {
		c.printErr(p.Stderr, err)
		return ExitConfig
	}
	addr := config.HTTPAddr.Load(l)
	if err := l.Err(); err != nil {
		c.printErr(p.Stderr, err)
		return ExitConfig
	}
	return health.Command(p.Args[1:], addr, p.Stdout, p.Stderr)
}

// printErr writes err to w, every line prefixed with the binary's name.
func (c Command[C]) printErr(w io.Writer, err error) {
	for line := range strings.SplitSeq(err.Error(), "\n") {
		fmt.Fprintf(w, "%s: %s\n", c.Name, line)
	}
}

// shutdownTracing flushes the spans still batched, for at most
// tracingShutdownTimeout.
func shutdownTracing(tr *tracing.Tracing, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), tracingShutdownTimeout)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		log.Warn("tracing shutdown", "err", err)
	}
}
