package tlsconfig

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// HTTPErrorLog returns an http.Server.ErrorLog that writes to l, so that the few
// lines net/http logs itself stay in the process's log format (JSON in the
// images). A failed TLS handshake — a plain-HTTP client, a port scanner, a load
// balancer's TCP check — is the client's problem, not the server's, and frequent on
// an HTTPS listener: it is logged at debug level; anything else at warn.
func HTTPErrorLog(l *slog.Logger) *log.Logger {
	return log.New(errorLogWriter{l}, "", 0)
}

type errorLogWriter struct{ l *slog.Logger }

func (w errorLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if strings.HasPrefix(msg, "http: TLS handshake error") {
		level = slog.LevelDebug
	}
	w.l.Log(context.Background(), level, msg, "source", "net/http")
	return len(p), nil
}
