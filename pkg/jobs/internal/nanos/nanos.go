// Package nanos converts times to and from Unix nanoseconds, the form both
// job stores keep them in, with 0 for "unset".
package nanos

import "time"

// Of is t as Unix nanoseconds, 0 for the zero time.
func Of(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// OfPtr is Of(*t), 0 for nil.
func OfPtr(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return Of(*t)
}

// Time is the inverse of Of, in UTC: the zero time for 0.
func Time(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// TimePtr is the inverse of OfPtr: nil for 0.
func TimePtr(n int64) *time.Time {
	if n == 0 {
		return nil
	}
	t := Time(n)
	return &t
}
