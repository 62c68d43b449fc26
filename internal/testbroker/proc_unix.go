//go:build unix

package testbroker

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// setProcessGroup makes cmd the leader of a new process group, so that it and
// everything it forks (the Debian rabbitmqctl wrapper runs su, sh and an
// Erlang VM; rabbitmq-server runs sh, beam.smp and erl_child_setup) can be
// killed at once.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killGroup sends sig to the whole process group led by pid.
func killGroup(pid int, sig syscall.Signal) error {
	if pid <= 0 {
		return errors.New("no process")
	}
	return syscall.Kill(-pid, sig)
}

// groupAlive reports whether any process of the group led by pid still exists.
func groupAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(-pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// processAlive reports whether the process pid exists and has not exited (a
// zombie, exited but not yet reaped by its parent, counts as gone).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return !os.IsNotExist(err)
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// signalProcess sends sig to the single process pid.
func signalProcess(pid int, sig syscall.Signal) error {
	return syscall.Kill(pid, sig)
}

// killMatching SIGKILLs every process whose command line contains needle
// (scanning /proc; a no-op where /proc does not exist) and returns their pids.
// It never matches the calling process.
func killMatching(needle string) []int {
	if needle == "" {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var killed []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), needle) {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed = append(killed, pid)
			}
		}
	}
	return killed
}

// ownerEnv marks the processes of a private node with the pid of the test
// binary that started it.
const ownerEnv = "WARREN_TESTBROKER_OWNER"

// sweepOrphans SIGKILLs the processes of private nodes whose test binary is
// gone (a test binary killed by -timeout or a signal cannot run its cleanups,
// and the node, in its own process group, survives it). It returns their pids.
func sweepOrphans() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var killed []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(b), "\x00") {
			v, ok := strings.CutPrefix(kv, ownerEnv+"=")
			if !ok {
				continue
			}
			owner, err := strconv.Atoi(v)
			if err == nil && owner > 0 && errors.Is(syscall.Kill(owner, 0), syscall.ESRCH) {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					killed = append(killed, pid)
				}
			}
			break
		}
	}
	return killed
}
