//go:build unix

package cli_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/warren-farm/warren/internal/cli"
	"github.com/warren-farm/warren/pkg/tracing"
)

// SIGTERM and SIGINT cancel the run's context. The test sends the real signal to its
// own process; a channel of its own is registered for it first, so that a prologue
// that forgot to listen fails the test instead of killing the test binary.
func TestSignalCancelsRun(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			guard := make(chan os.Signal, 1)
			signal.Notify(guard, sig)
			defer signal.Stop(guard)
			r := execute(command(func(ctx context.Context, _ testConfig, _ *slog.Logger, _ *tracing.Tracing) error {
				if ctx.Err() != nil {
					return errors.New("ctx done before the signal")
				}
				if err := syscall.Kill(os.Getpid(), sig); err != nil {
					return err
				}
				select {
				case <-ctx.Done():
					return nil // drained
				case <-time.After(10 * time.Second):
					return errors.New("ctx not cancelled 10 s after the signal")
				}
			}), nil, nil)
			if r.code != cli.ExitOK {
				t.Errorf("exit %d, stderr %q", r.code, r.stderr)
			}
		})
	}
}
