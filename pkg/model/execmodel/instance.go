package execmodel

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/warren-farm/warren/pkg/model"
)

// maxLogLine bounds one logged line of a child's output; the rest of a longer
// line is logged as further lines.
const maxLogLine = 8 << 10

// tailLines is how many of a child's last stderr lines an error quotes.
const tailLines = 5

// instance is one running child. Only the caller holding it (from the free list,
// or start during the handshake) uses toChild and fromChild.
type instance struct {
	idx     int
	cmd     *exec.Cmd
	toChild *os.File // our end of fd 3
	fromChd *os.File // our end of fd 4
	reader  *bufio.Reader
	seq     uint64
	started time.Time
	// exited is closed once the child was reaped; waitErr is then its status.
	exited  chan struct{}
	waitErr error
	// output is the goroutines copying stdout and stderr to the log.
	output sync.WaitGroup

	mu     sync.Mutex
	reason string   // why we killed it, "" when we did not
	tail   []string // the last stderr lines
}

// childEnv is the child's environment: a few of the worker's variables, the
// protocol's, then the config's.
func childEnv(extra map[string]string) []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "PYTHONPATH"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	env = append(env, "WARREN_FD_IN=3", "WARREN_FD_OUT=4", "PYTHONUNBUFFERED=1")
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range extra {
			if !yield(k) {
				return
			}
		}
	}) {
		env = append(env, k+"="+extra[k])
	}
	return env
}

// spawn starts child idx. Its error is permanent (the command cannot be run).
func (m *Model) spawn(idx int) (*instance, error) {
	cmdR, cmdW, err := os.Pipe() // worker → child (fd 3)
	if err != nil {
		return nil, err
	}
	resR, resW, err := os.Pipe() // child → worker (fd 4)
	if err != nil {
		cmdR.Close()
		cmdW.Close()
		return nil, err
	}
	cmd := exec.Command(m.cfg.Command[0], m.cfg.Command[1:]...)
	cmd.Dir = m.cfg.WorkDir
	cmd.Env = childEnv(m.cfg.Env)
	cmd.ExtraFiles = []*os.File{cmdR, resW}
	cmd.SysProcAttr = sysProcAttr()
	stdout, err := cmd.StdoutPipe()
	var stderr io.ReadCloser
	if err == nil {
		stderr, err = cmd.StderrPipe()
	}
	if err == nil {
		err = cmd.Start()
	}
	// The child holds its ends now (or never will).
	cmdR.Close()
	resW.Close()
	if err != nil {
		cmdW.Close()
		resR.Close()
		return nil, fmt.Errorf("command: %q: %w", m.cfg.Command, err)
	}
	in := &instance{idx: idx, cmd: cmd, toChild: cmdW, fromChd: resR, reader: bufio.NewReaderSize(resR, 64<<10),
		started: time.Now(), exited: make(chan struct{})}
	log := m.log.With("instance", idx, "pid", cmd.Process.Pid)
	in.output.Add(2)
	go in.copyLog(log, "stdout", stdout)
	go in.copyLog(log, "stderr", stderr)
	go func() {
		// Wait only after the output is read to its end (exec.Cmd's rule for
		// StdoutPipe); a grandchild holding the pipes open delays the reaping,
		// not the restart: kill signals the whole process group.
		in.output.Wait()
		in.waitErr = cmd.Wait()
		in.toChild.Close()
		in.fromChd.Close()
		close(in.exited)
	}()
	return in, nil
}

// copyLog logs each line of a child's stream.
func (in *instance) copyLog(log *slog.Logger, stream string, r io.Reader) {
	defer in.output.Done()
	br := bufio.NewReaderSize(r, maxLogLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			text := strings.TrimRight(string(bytes.ToValidUTF8(line, []byte("\uFFFD"))), "\r\n")
			log.Info("model output", "stream", stream, "line", text)
			if stream == "stderr" {
				in.mu.Lock()
				in.tail = append(in.tail, text)
				if len(in.tail) > tailLines {
					in.tail = in.tail[1:]
				}
				in.mu.Unlock()
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func (in *instance) dead() bool {
	select {
	case <-in.exited:
		return true
	default:
		return false
	}
}

// kill stops the child at once (SIGKILL to its process group) and unblocks any
// read or write in progress. The first reason is kept.
func (in *instance) kill(reason string) {
	in.mu.Lock()
	if in.reason == "" {
		in.reason = reason
	}
	in.mu.Unlock()
	_ = syscall.Kill(-in.cmd.Process.Pid, syscall.SIGKILL)
	now := time.Now()
	_ = in.toChild.SetDeadline(now)
	_ = in.fromChd.SetDeadline(now)
}

// terminate asks the child to stop (SIGTERM to its group), then kills it after
// grace; it returns once the child is reaped.
func (in *instance) terminate(grace time.Duration) {
	in.mu.Lock()
	if in.reason == "" {
		in.reason = "stopped"
	}
	in.mu.Unlock()
	_ = syscall.Kill(-in.cmd.Process.Pid, syscall.SIGTERM)
	// Closing our end of fd 3 tells a child blocked reading a frame to leave.
	_ = in.toChild.Close()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-in.exited:
		return
	case <-t.C:
	}
	in.kill("did not stop within the stop timeout after SIGTERM")
	<-in.exited
}

// describeExit says why the child is gone (or going): our reason, else its exit
// status, with its last stderr lines. It waits briefly for the reaping.
func (in *instance) describeExit() string {
	select {
	case <-in.exited:
	case <-time.After(time.Second):
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	var s string
	switch {
	case in.reason != "":
		s = "killed: " + in.reason
	case !in.dead():
		s = "still running"
	case in.waitErr == nil:
		s = "exited with status 0"
	default:
		s = in.waitErr.Error() // "exit status 3", "signal: killed"
	}
	if len(in.tail) > 0 {
		s += "; its last stderr: " + strings.Join(in.tail, " | ")
	}
	return s
}

// handshake sends the load frame and waits for ready, within the load timeout.
// Every error wraps model.ErrUnavailable (the child may load next time), and
// the child is killed.
func (m *Model) handshake(in *instance) (*childFrame, error) {
	fail := func(format string, args ...any) (*childFrame, error) {
		in.kill("failed to load")
		return nil, fmt.Errorf("%w: model %s: child %d (%s): %s", model.ErrUnavailable, m.cfg.Name, in.idx, in.cmd.Path, fmt.Sprintf(format, args...))
	}
	deadline := time.Now().Add(m.cfg.LoadTimeout)
	_ = in.toChild.SetWriteDeadline(deadline)
	_ = in.fromChd.SetReadDeadline(deadline)
	body, _ := json.Marshal(loadFrame{Type: "load", ModelDir: m.cfg.ModelDir, Name: m.cfg.ModelName, Version: m.cfg.Version, Instance: in.idx})
	err := writeFrame(in.toChild, body)
	var f *childFrame
	if err == nil {
		var b []byte
		if b, err = readFrame(in.reader, m.cfg.MaxFrameBytes); err == nil {
			f, err = decodeChildFrame(b)
		}
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fail("no ready frame within load_timeout (%v)", m.cfg.LoadTimeout)
	case errors.Is(err, errProtocol):
		return fail("%v", err)
	case err != nil:
		return fail("exited before it was ready (%s)", in.describeExit())
	case f.Type == "load_error":
		return fail("load failed: %s", f.Error)
	case f.Type != "ready":
		return fail("%v: the first frame is of type %q, want ready or load_error", errProtocol, f.Type)
	}
	if len(f.Inputs) == 0 || len(f.Outputs) == 0 {
		return fail("its ready frame declares %d inputs and %d outputs; both are needed", len(f.Inputs), len(f.Outputs))
	}
	if err := model.CheckSpecs("inputs", f.Inputs); err != nil {
		return fail("its ready frame: %v", err)
	}
	if err := model.CheckSpecs("outputs", f.Outputs); err != nil {
		return fail("its ready frame: %v", err)
	}
	if f.MaxBatchSize < 0 {
		return fail("its ready frame: max_batch_size %d is negative", f.MaxBatchSize)
	}
	_ = in.toChild.SetWriteDeadline(time.Time{})
	_ = in.fromChd.SetReadDeadline(time.Time{})
	return f, nil
}

// call sends one infer frame and reads its answer. On any error the child is
// killed (the supervisor restarts it) and must not be reused.
func (m *Model) call(ctx context.Context, in *instance, items [][]byte, ids []string) (*childFrame, error) {
	in.seq++
	var deadlineMS int64
	if d, ok := ctx.Deadline(); ok {
		deadlineMS = max(time.Until(d).Milliseconds(), 1)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"type":"infer","seq":%d,"deadline_ms":%d,"batch":[`, in.seq, deadlineMS)
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(it)
	}
	b.WriteString("]}")
	stop := context.AfterFunc(ctx, func() { in.kill("no answer before the request's deadline") })
	defer stop()
	err := writeFrame(in.toChild, b.Bytes())
	var f *childFrame
	if err == nil {
		var body []byte
		if body, err = readFrame(in.reader, m.cfg.MaxFrameBytes); err == nil {
			f, err = decodeChildFrame(body)
		}
	}
	if err == nil {
		switch {
		case f.Type != "result" && f.Type != "error":
			err = fmt.Errorf("%w: a frame of type %q, want result or error", errProtocol, f.Type)
		case f.Seq != in.seq:
			err = fmt.Errorf("%w: an answer to seq %d, want %d", errProtocol, f.Seq, in.seq)
		case f.Type == "result" && len(f.Results) != len(items):
			err = fmt.Errorf("%w: %d results for a batch of %d", errProtocol, len(f.Results), len(items))
		}
	}
	if err == nil && !stop() && ctx.Err() != nil {
		// The deadline passed as the answer came: the child is being killed.
		err = ctx.Err()
	}
	if err == nil {
		return f, nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		in.kill("no answer before the request's deadline")
		m.log.Warn("child killed: no answer before the request's deadline; restarting it", "instance", in.idx, "ids", ids)
		return nil, fmt.Errorf("model %s: child %d did not answer before the request's deadline (it is restarted): %w", m.cfg.Name, in.idx, ctxErr)
	}
	var why string
	if errors.Is(err, errProtocol) {
		in.kill(err.Error())
		why = in.describeExit()
	} else {
		// A broken pipe: the child is probably dead; say how it died.
		why = in.describeExit()
		in.kill("its pipes broke")
	}
	m.log.Warn("child failed mid-batch; restarting it", "instance", in.idx, "err", err, "exit", why, "ids", ids)
	return nil, fmt.Errorf("%w: model %s: child %d failed mid-batch (%v; %s); it is restarted", model.ErrUnavailable, m.cfg.Name, in.idx, err, why)
}
