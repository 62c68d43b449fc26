package execmodel

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Defaults of the zero Config fields.
const (
	DefaultInstances         = 1
	DefaultLoadTimeout       = 60 * time.Second
	DefaultMaxFrameBytes     = 64 << 20
	DefaultStopTimeout       = 5 * time.Second
	DefaultRestartBackoff    = 100 * time.Millisecond
	DefaultRestartBackoffMax = 30 * time.Second
	DefaultStableAfter       = 10 * time.Second
	DefaultMaxFailures       = 5
	// MaxInstances bounds Config.Instances.
	MaxInstances = 256
)

// Config configures an exec model. The keys named in errors are config.yaml's.
type Config struct {
	// Name names the model in logs and errors ("digits/1").
	Name string
	// ModelName and Version go to the child in the load frame.
	ModelName, Version string
	// Command is the child's argv; Command[0] is looked up in PATH when it has no
	// slash, else taken relative to WorkDir.
	Command []string
	// Env is added to the child's minimal environment (see the package
	// documentation).
	Env map[string]string
	// WorkDir is the child's working directory (the model's directory).
	WorkDir string
	// ModelDir is the version's directory, sent in the load frame.
	ModelDir string
	// Instances is the number of children (1..MaxInstances); 0 means 1.
	Instances int
	// LoadTimeout bounds a child's start and load (until its ready frame); 0
	// means DefaultLoadTimeout.
	LoadTimeout time.Duration
	// MaxFrameBytes bounds a frame from a child; 0 means DefaultMaxFrameBytes.
	MaxFrameBytes int
	// StopTimeout is how long Close waits after SIGTERM before SIGKILL; 0 means
	// DefaultStopTimeout.
	StopTimeout time.Duration
	// RestartBackoff is the first delay before restarting a child; it doubles
	// after each fast failure up to RestartBackoffMax. 0 means the defaults.
	RestartBackoff, RestartBackoffMax time.Duration
	// StableAfter is how long a child must stay up for its restart count to reset;
	// MaxFailures fast failures in a row make the instance count as down. 0
	// means the defaults.
	StableAfter time.Duration
	MaxFailures int
	// Logger receives the children's output and the supervisor's events; nil
	// discards.
	Logger *slog.Logger
}

func (c *Config) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Command) == 0 || strings.TrimSpace(c.Command[0]) == "" {
		add("command: required (the child's argv, e.g. [python3, serve.py])")
	}
	for k := range c.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			add("env: %q is not a variable name", k)
		}
	}
	if c.Instances < 0 || c.Instances > MaxInstances {
		add("instances: must be between 1 and %d, got %d", MaxInstances, c.Instances)
	}
	if c.LoadTimeout < 0 {
		add("load_timeout: must not be negative, got %v", c.LoadTimeout)
	}
	if c.MaxFrameBytes < 0 {
		add("max_frame_bytes: must not be negative, got %d", c.MaxFrameBytes)
	}
	return errors.Join(errs...)
}

func (c *Config) setDefaults() {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Instances == 0 {
		c.Instances = DefaultInstances
	}
	def(&c.LoadTimeout, DefaultLoadTimeout)
	def(&c.StopTimeout, DefaultStopTimeout)
	def(&c.RestartBackoff, DefaultRestartBackoff)
	def(&c.RestartBackoffMax, DefaultRestartBackoffMax)
	def(&c.StableAfter, DefaultStableAfter)
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if c.MaxFailures == 0 {
		c.MaxFailures = DefaultMaxFailures
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Name == "" {
		c.Name = c.ModelName
	}
}
