package testbroker

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// cliTimeout bounds every rabbitmqctl / rabbitmq-diagnostics invocation.
const cliTimeout = 30 * time.Second

// runCmd runs name with args, with a hard timeout. The command runs in its own
// process group which is SIGKILLed as a whole when the timeout expires, and
// the pipes are abandoned at most 2s later, so runCmd never leaves a goroutine
// or a process behind. It returns combined stdout+stderr.
func runCmd(timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = env
	}
	setProcessGroup(cmd)
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if cmd.Process != nil {
		// Whatever the outcome, nothing of this command may survive it.
		_ = killGroup(cmd.Process.Pid, syscall.SIGKILL)
	}
	if ctx.Err() != nil {
		return out.String(), fmt.Errorf("%s %s: timed out after %v: %v", name, strings.Join(args, " "), timeout, err)
	}
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}
