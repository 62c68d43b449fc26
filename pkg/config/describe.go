package config

import (
	"strconv"
	"strings"
	"time"
)

// Describe returns the entry as text.
func (e *String) Describe() Var { return describe(e.Env, e.ReadBy, e.Usage, e.DefaultFor) }

// Describe returns the entry as text.
func (e *Int) Describe() Var {
	return describe(e.Env, e.ReadBy, e.Usage, func(b string) string { return strconv.Itoa(e.DefaultFor(b)) })
}

// Describe returns the entry as text.
func (e *Uint64) Describe() Var {
	return describe(e.Env, e.ReadBy, e.Usage, func(b string) string { return strconv.FormatUint(e.DefaultFor(b), 10) })
}

// Describe returns the entry as text.
func (e *Float) Describe() Var {
	return describe(e.Env, e.ReadBy, e.Usage, func(b string) string { return formatFloat(e.DefaultFor(b)) })
}

// Describe returns the entry as text.
func (e *Duration) Describe() Var {
	return describe(e.Env, e.ReadBy, e.Usage, func(b string) string { return formatDuration(e.DefaultFor(b)) })
}

// Describe returns the entry as text.
func (e *Bytes) Describe() Var {
	return describe(e.Env, e.ReadBy, e.Usage, func(b string) string { return FormatBytes(e.DefaultFor(b)) })
}

// Describe returns the entry as text.
func (e *Enum) Describe() Var { return describe(e.Env, e.ReadBy, e.Usage, e.DefaultFor) }

// Describe returns the entry as text.
func (e *List) Describe() Var {
	return describe(e.Env, e.ReadBy, e.Usage, func(b string) string { return strings.Join(e.DefaultFor(b), ",") })
}

func (e *String) key() (string, Readers)   { return e.Env, e.ReadBy }
func (e *Int) key() (string, Readers)      { return e.Env, e.ReadBy }
func (e *Uint64) key() (string, Readers)   { return e.Env, e.ReadBy }
func (e *Float) key() (string, Readers)    { return e.Env, e.ReadBy }
func (e *Duration) key() (string, Readers) { return e.Env, e.ReadBy }
func (e *Bytes) key() (string, Readers)    { return e.Env, e.ReadBy }
func (e *Enum) key() (string, Readers)     { return e.Env, e.ReadBy }
func (e *List) key() (string, Readers)     { return e.Env, e.ReadBy }

func (e *String) loadAny(l *Loader) any   { return e.Load(l) }
func (e *Int) loadAny(l *Loader) any      { return e.Load(l) }
func (e *Uint64) loadAny(l *Loader) any   { return e.Load(l) }
func (e *Float) loadAny(l *Loader) any    { return e.Load(l) }
func (e *Duration) loadAny(l *Loader) any { return e.Load(l) }
func (e *Bytes) loadAny(l *Loader) any    { return e.Load(l) }
func (e *Enum) loadAny(l *Loader) any     { return e.Load(l) }
func (e *List) loadAny(l *Loader) any     { return e.Load(l) }

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// formatDuration is time.Duration's String without the zero tails: 24h, not
// 24h0m0s; 15m, not 15m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
