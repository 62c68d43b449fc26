// Package config holds warren's configuration table: every environment variable a
// binary reads, as one typed entry with its readers, its default, its bounds and its
// usage text.
//
// # Entries
//
// Each variable is one exported entry — [AMQPURL], [Concurrency], [DrainTimeout] … —
// of a kind that says how its text is parsed: [String], [Int], [Uint64], [Float],
// [Duration], [Bytes], [Enum] or [List]. Reading is typed and never panics:
//
//	l, err := config.NewLoader(config.Worker, args, os.Getenv)
//	n := config.Concurrency.Load(l) // an int in [1, 4096]
//	…
//	if err := l.Err(); err != nil { … } // every bad value, each named
//
// [Table] lists every entry in the order of docs/configuration.md. The binaries'
// `config` subcommand prints it ([PrintTable]), docs/configuration.md is checked
// against it, and the deployment checks (compose, Helm) use [For] and [Lookup] to
// make sure a deployment sets only variables a binary really reads.
//
// # Precedence
//
// For every setting: its flag twin (--request-timeout), then the environment
// variable (REQUEST_TIMEOUT), then the entry's default. An empty environment
// variable counts as unset. Packages other than cmd/* and internal/cli never read
// the environment; they receive typed config structs built through a [Loader].
package config

import (
	"errors"
	"slices"
	"strings"
)

// Binary names: the names of the two commands and of their Dockerfile targets.
const (
	API    = "api"
	Worker = "worker"
)

// binaries lists the binary names in the order listings use.
func binaries() []string { return []string{API, Worker} }

// Readers is the set of binaries that read a variable.
type Readers uint8

// The reader sets an entry can have.
const (
	APIOnly    Readers = 1 << iota // read by the api only
	WorkerOnly                     // read by the worker only
	Both       = APIOnly | WorkerOnly
)

// Includes reports whether binary is one of r.
func (r Readers) Includes(binary string) bool {
	switch binary {
	case API:
		return r&APIOnly != 0
	case Worker:
		return r&WorkerOnly != 0
	}
	return false
}

// Names returns the binaries of r in the order API, Worker.
func (r Readers) Names() []string {
	var out []string
	for _, b := range binaries() {
		if r.Includes(b) {
			out = append(out, b)
		}
	}
	return out
}

// Entry is one variable of the table. The kinds of this package ([*String], [*Int],
// [*Duration] …) implement it; each also has a typed Load method.
type Entry interface {
	// Describe returns the entry as text, for listings and deployment checks.
	Describe() Var
	// key returns the variable's name and its readers.
	key() (env string, readBy Readers)
	// loadAny is the typed Load, boxed: for loops over the table.
	loadAny(l *Loader) any
}

// Var is an entry described as text: what listings print and what the deployment
// checks compare compose files, Dockerfiles and Helm charts with.
type Var struct {
	Env      string            // environment variable name, e.g. AMQP_URL
	Binaries []string          // the binaries that read it, in the order api, worker
	Defaults map[string]string // the default of each binary that reads it, as text the variable accepts
	Usage    string            // one or two sentences: meaning, unit, special values
}

// Flag returns the flag twin of the variable: lower case, dashes, e.g. amqp-url for
// --amqp-url.
func (v Var) Flag() string { return flagName(v.Env) }

// Default returns the default for binary as text ("" for a binary that does not
// read the variable, and for an empty default).
func (v Var) Default(binary string) string { return v.Defaults[binary] }

// ReadBy reports whether binary reads the variable.
func (v Var) ReadBy(binary string) bool { return slices.Contains(v.Binaries, binary) }

func flagName(env string) string { return strings.ReplaceAll(strings.ToLower(env), "_", "-") }

// describe builds the Var of an entry whose default for a binary formats as text.
func describe(env string, readBy Readers, usage string, text func(binary string) string) Var {
	v := Var{Env: env, Binaries: readBy.Names(), Defaults: map[string]string{}, Usage: usage}
	for _, b := range v.Binaries {
		v.Defaults[b] = text(b)
	}
	return v
}

// All returns every variable of the table, in table order.
func All() []Var {
	out := make([]Var, 0, len(Table))
	for _, e := range Table {
		out = append(out, e.Describe())
	}
	return out
}

// For returns the variables binary reads, in table order.
func For(binary string) []Var {
	var out []Var
	for _, e := range Table {
		if _, r := e.key(); r.Includes(binary) {
			out = append(out, e.Describe())
		}
	}
	return out
}

// Lookup returns the variable named env.
func Lookup(env string) (Var, bool) {
	if e, ok := lookupEntry(env); ok {
		return e.Describe(), true
	}
	return Var{}, false
}

func lookupEntry(env string) (Entry, bool) {
	for _, e := range Table {
		if name, _ := e.key(); name == env {
			return e, true
		}
	}
	return nil, false
}

// ErrInvalid wraps every configuration error: the ones a [Loader] collects, and
// those a binary finds later (a model repository that does not load, say), so that
// the process exits with status 2 and prints the error plainly.
var ErrInvalid = errors.New("invalid configuration")
