//go:build !unix

package testbroker

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// On non-Unix systems there are no process groups: only the direct child is
// signalled. StartNode is not supported there (rabbitmq-server is a shell
// script), but the rest of the package works.

func setProcessGroup(cmd *exec.Cmd) {}

func killGroup(pid int, sig syscall.Signal) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

func groupAlive(pid int) bool { return false }

func processAlive(pid int) bool { return false }

func signalProcess(pid int, sig syscall.Signal) error {
	return errors.New("signals are not supported on this OS")
}

func killMatching(needle string) []int { return nil }

const ownerEnv = "WARREN_TESTBROKER_OWNER"

func sweepOrphans() []int { return nil }
