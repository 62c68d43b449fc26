package execmodel

import "syscall"

// processAlive reports whether pid exists and is not a zombie we failed to reap.
func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}
