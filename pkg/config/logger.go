package config

import (
	"io"
	"log/slog"
)

// NewLogger builds the process logger from LOG_LEVEL and LOG_FORMAT values as
// [LogLevel] and [LogFormat] load them (one of [Levels], one of [Formats]); attrs are
// added to every line.
func NewLogger(w io.Writer, level, format string, attrs ...any) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h).With(attrs...)
}

// Levels and Formats are the accepted LOG_LEVEL and LOG_FORMAT values.
var (
	Levels  = []string{"debug", "info", "warn", "error"}
	Formats = []string{"text", "json"}
)
