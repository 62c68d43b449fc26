package repository

import (
	"errors"
	"strings"
)

// ErrInvalid marks every problem of the repository's layout or of a config.yaml:
// something the operator has to fix, so retrying is pointless (the worker exits
// with status 2). Test with errors.Is; every [*Error] wraps it.
var ErrInvalid = errors.New("invalid model repository")

// Error is one problem of the repository: the file or directory it is in, the
// config key when there is one (a dotted path such as "version_policy.latest" or
// "inputs[0].datatype"), and what is wrong. It wraps [ErrInvalid], and Err when
// a file system error caused it.
type Error struct {
	Path string
	Key  string
	Msg  string
	Err  error
}

// Error is "path: key: msg", or "path: msg" without a key.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns [ErrInvalid] and the cause, if any.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrInvalid}
	}
	return []error{ErrInvalid, e.Err}
}

// problems collects the errors of one file.
type problems struct {
	path string
	errs []error
	// done holds the top-level keys with a problem once parsing is over, so that
	// validation does not report them again (a url: 3 that did not decode is not
	// also "required").
	done map[string]bool
}

// add records a problem with key (may be empty), unless key's top-level key
// already has one from parsing.
func (p *problems) add(key, msg string) {
	if p.done[topKey(key)] {
		return
	}
	p.errs = append(p.errs, &Error{Path: p.path, Key: key, Msg: msg})
}

// seal marks the keys reported so far as done.
func (p *problems) seal() {
	p.done = make(map[string]bool)
	for _, err := range p.errs {
		if e, ok := err.(*Error); ok {
			p.done[topKey(e.Key)] = true
		}
	}
}

// topKey is the top-level key of a key path: "inputs" for "inputs[0].name".
func topKey(key string) string {
	if i := strings.IndexAny(key, ".["); i >= 0 {
		return key[:i]
	}
	return key
}

// Problems returns every problem err holds (it may be a join of joins), the
// [*Error]s and any other error, in order. It is for callers that log one line per
// problem.
func Problems(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		if _, isErr := err.(*Error); !isErr {
			var out []error
			for _, e := range j.Unwrap() {
				out = append(out, Problems(e)...)
			}
			return out
		}
	}
	return []error{err}
}
