package execmodel

import "syscall"

// sysProcAttr puts the child in a process group of its own (so that a stop
// reaches its own children too) and has the kernel kill it when the worker dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
