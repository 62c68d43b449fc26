package config

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The kinds below share their fields: Env names the variable, ReadBy says which
// binaries read it, Default is the one default (PerBinary, when set, replaces it for
// the binaries it names), and Usage is the text of the tables and of help. A
// default must satisfy the kind's bounds; the package's tests check every entry's.

// String is a text variable.
type String struct {
	Env       string
	ReadBy    Readers
	Default   string
	PerBinary map[string]string
	// Pattern, when set, must match the whole value (the empty value included).
	Pattern *regexp.Regexp
	Usage   string
}

// Int is an integer variable in [Min, Max].
type Int struct {
	Env       string
	ReadBy    Readers
	Default   int
	PerBinary map[string]int
	Min, Max  int
	Usage     string
}

// Uint64 is an unsigned 64-bit integer variable (any value from 0 to 2⁶⁴−1).
type Uint64 struct {
	Env       string
	ReadBy    Readers
	Default   uint64
	PerBinary map[string]uint64
	Usage     string
}

// Float is a number variable in (Above, AtMost]: strictly above Above, at most
// AtMost.
type Float struct {
	Env           string
	ReadBy        Readers
	Default       float64
	PerBinary     map[string]float64
	Above, AtMost float64
	// ZeroOK allows 0 as well, a value that turns something off.
	ZeroOK bool
	Usage  string
}

// Duration is a duration variable in Go syntax (10s, 250ms, 1h30m) of at least Min
// and, when Max is not zero, at most Max.
type Duration struct {
	Env       string
	ReadBy    Readers
	Default   time.Duration
	PerBinary map[string]time.Duration
	Min, Max  time.Duration
	Usage     string
}

// Bytes is a byte-count variable, a plain number or one with a unit ([ParseBytes]),
// of at least Min bytes.
type Bytes struct {
	Env       string
	ReadBy    Readers
	Default   int64
	PerBinary map[string]int64
	Min       int64
	Usage     string
}

// Enum is a variable whose value is one of Allowed, compared case-insensitively;
// Load returns it in lower case. Allowed values are lower case.
type Enum struct {
	Env       string
	ReadBy    Readers
	Default   string
	PerBinary map[string]string
	Allowed   []string
	Usage     string
}

// List is a comma-separated list of names. Load trims every item, drops empty ones
// and refuses an item that Pattern (when set) does not match and an item listed
// twice. The empty value is the empty list.
type List struct {
	Env       string
	ReadBy    Readers
	Default   []string
	PerBinary map[string][]string
	Pattern   *regexp.Regexp
	Usage     string
}

func defaultFor[T any](def T, per map[string]T, binary string) T {
	if v, ok := per[binary]; ok {
		return v
	}
	return def
}

// DefaultFor returns the default of the variable for binary.
func (e *String) DefaultFor(binary string) string { return defaultFor(e.Default, e.PerBinary, binary) }

// DefaultFor returns the default of the variable for binary.
func (e *Int) DefaultFor(binary string) int { return defaultFor(e.Default, e.PerBinary, binary) }

// DefaultFor returns the default of the variable for binary.
func (e *Uint64) DefaultFor(binary string) uint64 { return defaultFor(e.Default, e.PerBinary, binary) }

// DefaultFor returns the default of the variable for binary.
func (e *Float) DefaultFor(binary string) float64 { return defaultFor(e.Default, e.PerBinary, binary) }

// DefaultFor returns the default of the variable for binary.
func (e *Duration) DefaultFor(binary string) time.Duration {
	return defaultFor(e.Default, e.PerBinary, binary)
}

// DefaultFor returns the default of the variable for binary.
func (e *Bytes) DefaultFor(binary string) int64 { return defaultFor(e.Default, e.PerBinary, binary) }

// DefaultFor returns the default of the variable for binary.
func (e *Enum) DefaultFor(binary string) string { return defaultFor(e.Default, e.PerBinary, binary) }

// DefaultFor returns the default of the variable for binary (a copy).
func (e *List) DefaultFor(binary string) []string {
	return slices.Clone(defaultFor(e.Default, e.PerBinary, binary))
}

// Load returns the variable's value for l's binary. A bad value, or a variable the
// binary does not read, is recorded in l (see [Loader.Err]) and the default returned.
func (e *String) Load(l *Loader) string {
	return load(l, e, e.DefaultFor(l.binary), parseString, e.check)
}

// Load returns the variable's value for l's binary. A bad value, or a variable the
// binary does not read, is recorded in l (see [Loader.Err]) and the default returned.
func (e *Int) Load(l *Loader) int { return load(l, e, e.DefaultFor(l.binary), parseInt, e.check) }

// Load returns the variable's value for l's binary. A bad value, or a variable the
// binary does not read, is recorded in l (see [Loader.Err]) and the default returned.
func (e *Uint64) Load(l *Loader) uint64 { return load(l, e, e.DefaultFor(l.binary), parseUint64, nil) }

// Load returns the variable's value for l's binary. A bad value, or a variable the
// binary does not read, is recorded in l (see [Loader.Err]) and the default returned.
func (e *Float) Load(l *Loader) float64 {
	return load(l, e, e.DefaultFor(l.binary), parseFloat, e.check)
}

// Load returns the variable's value for l's binary. A bad value, or a variable the
// binary does not read, is recorded in l (see [Loader.Err]) and the default returned.
func (e *Duration) Load(l *Loader) time.Duration {
	return load(l, e, e.DefaultFor(l.binary), parseDuration, e.check)
}

// Load returns the variable's value for l's binary. A bad value, or a variable the
// binary does not read, is recorded in l (see [Loader.Err]) and the default returned.
func (e *Bytes) Load(l *Loader) int64 { return load(l, e, e.DefaultFor(l.binary), ParseBytes, e.check) }

// Load returns the variable's value for l's binary, in lower case. A bad value, or a
// variable the binary does not read, is recorded in l (see [Loader.Err]) and the
// default returned.
func (e *Enum) Load(l *Loader) string { return load(l, e, e.DefaultFor(l.binary), parseEnum, e.check) }

// Load returns the variable's names for l's binary (nil for the empty list). A bad
// value, or a variable the binary does not read, is recorded in l (see
// [Loader.Err]) and the default returned.
func (e *List) Load(l *Loader) []string {
	return load(l, e, e.DefaultFor(l.binary), parseList, e.check)
}

func parseString(s string) (string, error) { return s, nil }

func parseInt(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, errors.New("not an integer")
	}
	return n, nil
}

func parseUint64(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New("not an integer from 0 to 18446744073709551615")
	}
	return n, nil
}

func parseFloat(s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, errors.New("not a number")
	}
	return f, nil
}

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("not a duration (e.g. 10s, 250ms, 1h30m)")
	}
	return d, nil
}

func parseEnum(s string) (string, error) { return strings.ToLower(s), nil }

func parseList(s string) ([]string, error) {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out, nil
}

func (e *String) check(s string) error {
	if e.Pattern != nil && !e.Pattern.MatchString(s) {
		return fmt.Errorf("must match %s", e.Pattern)
	}
	return nil
}

func (e *Int) check(n int) error {
	if n < e.Min || n > e.Max {
		return fmt.Errorf("must be between %d and %d", e.Min, e.Max)
	}
	return nil
}

func (e *Float) check(f float64) error {
	if e.ZeroOK && f == 0 {
		return nil
	}
	if !(f > e.Above && f <= e.AtMost) { // also refuses NaN
		if e.ZeroOK {
			return fmt.Errorf("must be 0 (off), or above %g and at most %g", e.Above, e.AtMost)
		}
		return fmt.Errorf("must be above %g and at most %g", e.Above, e.AtMost)
	}
	return nil
}

func (e *Duration) check(d time.Duration) error {
	if d < e.Min {
		return fmt.Errorf("must be at least %s", formatDuration(e.Min))
	}
	if e.Max != 0 && d > e.Max {
		return fmt.Errorf("must be at most %s", formatDuration(e.Max))
	}
	return nil
}

func (e *Bytes) check(n int64) error {
	if n < e.Min {
		return fmt.Errorf("must be at least %d bytes", e.Min)
	}
	return nil
}

func (e *Enum) check(s string) error {
	if !slices.Contains(e.Allowed, s) {
		return fmt.Errorf("must be one of %s", strings.Join(e.Allowed, ", "))
	}
	return nil
}

func (e *List) check(items []string) error {
	var why []string
	for i, item := range items {
		if e.Pattern != nil && !e.Pattern.MatchString(item) {
			why = append(why, fmt.Sprintf("%q does not match %s", item, e.Pattern))
		}
		if slices.Index(items, item) < i && !slices.Contains(items[i+1:], item) {
			// Reported once, at its last repetition.
			why = append(why, fmt.Sprintf("%q is listed more than once", item))
		}
	}
	if len(why) > 0 {
		return errors.New(strings.Join(why, "; "))
	}
	return nil
}
