package bench

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ResponderCommand is the hidden subcommand that runs raw responders in a
// process of their own: `bench responder -url URL -queue Q -n 2 -prefetch 32`.
const ResponderCommand = "responder"

// ResponderMain runs raw responders until SIGINT/SIGTERM or until its standard
// input closes (the parent benchmark died). It prints "ready" on standard
// output once consuming. It returns the process exit code.
func ResponderMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(ResponderCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "AMQP URL (with the bench vhost)")
	queue := fs.String("queue", "", "request queue")
	n := fs.Int("n", 2, "responders (one connection each)")
	prefetch := fs.Int("prefetch", 32, "prefetch per responder")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *url == "" || *queue == "" {
		_, _ = fmt.Fprintln(stderr, "responder: -url and -queue are required")
		return 2
	}
	if err := checkLoopbackURL(*url); err != nil {
		_, _ = fmt.Fprintln(stderr, "responder:", err)
		return 2
	}
	r, err := StartResponders(*url, *queue, *n, *prefetch)
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "responder:", err)
		return 1
	}
	defer r.Close()
	_, _ = fmt.Fprintln(stdout, "ready")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		close(eof)
	}()
	select {
	case <-ctx.Done():
	case <-eof:
	}
	return 0
}

// ResponderProcess is a child process running ResponderMain.
type ResponderProcess struct {
	proc  *Proc
	stdin io.WriteCloser
}

// StartResponderProcess re-executes the running binary with the responder
// subcommand and waits until it reports ready.
func StartResponderProcess(ctx context.Context, url, queue string, n, prefetch int, logDir string) (*ResponderProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	args := []string{ResponderCommand, "-url", url, "-queue", queue, "-n", strconv.Itoa(n), "-prefetch", strconv.Itoa(prefetch)}
	var stdin io.WriteCloser
	var stdout io.ReadCloser
	p, err := StartProc("responder", exe, args, os.Environ(), logDir, func(cmd *exec.Cmd) error {
		var err error
		if stdin, err = cmd.StdinPipe(); err != nil {
			return err
		}
		stdout, err = cmd.StdoutPipe()
		return err
	})
	if err != nil {
		return nil, err
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("unexpected output %q", line)
		}
		ready <- err
		_, _ = io.Copy(io.Discard, stdout)
	}()
	rp := &ResponderProcess{proc: p, stdin: stdin}
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case err = <-ready:
	case <-t.C:
		err = errors.New("not ready after 30s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		rp.Stop()
		return nil, fmt.Errorf("responder process: %w\n%s", err, p.Tail(20))
	}
	return rp, nil
}

// Pid is the child's process id.
func (r *ResponderProcess) Pid() int { return r.proc.Pid() }

// Stop closes the child's standard input, signals it and waits for it.
func (r *ResponderProcess) Stop() {
	_ = r.stdin.Close()
	r.proc.Stop(10 * time.Second)
}
