package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Loader reads the variables of one binary: flag, then environment, then default.
// The entries' Load methods read through it; every bad value is recorded instead of
// stopping at the first, and [Loader.Err] reports them together. A Loader is not
// safe for concurrent use; it lives for the start of a process.
type Loader struct {
	binary string
	given  map[string]string // variable → value from its flag or the environment, trimmed
	loaded map[string]bool   // variables read through the loader
	errs   map[string]error  // the first error of each variable
}

// NewLoader parses args (without the program name) as flags of binary's variables
// and reads the environment through getenv (usually os.Getenv; nil means an empty
// environment). A flag the binary does not have, or an argument that is not a flag,
// is an error wrapping [ErrInvalid]; -h or --help returns [flag.ErrHelp].
func NewLoader(binary string, args []string, getenv func(string) string) (*Loader, error) {
	if binary != API && binary != Worker {
		return nil, fmt.Errorf("%w: unknown binary %q", ErrInvalid, binary)
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	fs := flag.NewFlagSet(binary, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	flags := map[string]*string{}
	for _, v := range For(binary) {
		flags[v.Env] = fs.String(v.Flag(), "", v.Usage)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, flag.ErrHelp
		}
		return nil, fmt.Errorf("%w: %w (run `%s help` for the flags)", ErrInvalid, err, binary)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected argument %q (run `%s help` for the usage)", ErrInvalid, fs.Arg(0), binary)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	l := &Loader{binary: binary, given: map[string]string{}, loaded: map[string]bool{}, errs: map[string]error{}}
	for _, v := range For(binary) {
		if set[v.Flag()] {
			l.given[v.Env] = strings.TrimSpace(*flags[v.Env])
		} else if s := strings.TrimSpace(getenv(v.Env)); s != "" {
			l.given[v.Env] = s
		}
	}
	return l, nil
}

// Binary returns the binary whose variables l reads.
func (l *Loader) Binary() string { return l.binary }

// load is the Load of every kind: the given text parsed, or the default, then
// checked.
func load[T any](l *Loader, e Entry, def T, parse func(string) (T, error), check func(T) error) T {
	raw, given, ok := l.lookup(e)
	if !ok {
		return def
	}
	v := def
	if given {
		p, err := parse(raw)
		if err != nil {
			l.fail(e, err.Error())
			return def
		}
		v = p
	}
	if check != nil {
		if err := check(v); err != nil {
			l.fail(e, err.Error())
		}
	}
	return v
}

// lookup returns the text given for e and whether there was any; ok is false, and an
// error recorded, when e is not an entry of l's binary.
func (l *Loader) lookup(e Entry) (raw string, given, ok bool) {
	env, readBy := e.key()
	l.loaded[env] = true
	switch {
	case !slices.Contains(Table, e):
		l.record(env, fmt.Errorf("%w: %s is not in config.Table (a bug: the code reads a variable the table does not list)", ErrInvalid, env))
		return "", false, false
	case !readBy.Includes(l.binary):
		l.record(env, fmt.Errorf("%w: %s is not a variable of the %s binary (a bug: the code reads a variable the table lists for %s only)",
			ErrInvalid, env, l.binary, strings.Join(readBy.Names(), ", ")))
		return "", false, false
	}
	raw, given = l.given[env]
	return raw, given, true
}

// text returns the value of e as the binary sees it, for error messages.
func (l *Loader) text(e Entry) string {
	env, _ := e.key()
	if raw, ok := l.given[env]; ok {
		return fmt.Sprintf("%q", raw)
	}
	return fmt.Sprintf("%q (the default)", e.Describe().Default(l.binary))
}

func (l *Loader) fail(e Entry, why string) {
	env, _ := e.key()
	l.record(env, fmt.Errorf("%w: %s=%s: %s", ErrInvalid, env, l.text(e), why))
}

// record keeps the first error of each variable: a value is reported once, however
// often it is read.
func (l *Loader) record(env string, err error) {
	if _, dup := l.errs[env]; !dup {
		l.errs[env] = err
	}
}

// Check records a failed cross-variable check on e — one that the entry's own bounds
// cannot express, such as MAX_REQUEST_TIMEOUT below REQUEST_TIMEOUT — when bad is
// true. The error names e and its value, then why.
func (l *Loader) Check(bad bool, e Entry, why string) {
	if !bad {
		return
	}
	if _, _, ok := l.lookup(e); ok {
		l.fail(e, why)
	}
}

// Err returns every error recorded so far, joined in table order (each wraps
// [ErrInvalid] and names its variable), or nil.
func (l *Loader) Err() error {
	envs := make([]string, 0, len(l.errs))
	for env := range l.errs {
		envs = append(envs, env)
	}
	slices.Sort(envs)
	slices.SortStableFunc(envs, func(a, b string) int { return tableIndex(a) - tableIndex(b) })
	errs := make([]error, len(envs))
	for i, env := range envs {
		errs[i] = l.errs[env]
	}
	return errors.Join(errs...)
}

// Unread returns the variables of l's binary that were never loaded through l, in
// table order: a binary's test can assert that it reads everything the table says
// it reads.
func (l *Loader) Unread() []string {
	var out []string
	for _, v := range For(l.binary) {
		if !l.loaded[v.Env] {
			out = append(out, v.Env)
		}
	}
	return out
}

// tableIndex is env's position in Table; names not in it sort last.
func tableIndex(env string) int {
	for i, e := range Table {
		if name, _ := e.key(); name == env {
			return i
		}
	}
	return len(Table)
}
