//go:build unix && !linux

package execmodel

import "syscall"

// sysProcAttr puts the child in a process group of its own. Outside Linux there
// is no parent-death signal: a child outlives a worker killed with SIGKILL.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
