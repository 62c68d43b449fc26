//go:build !linux

package httpmodel

import "os/exec"

// setDeathSignal does nothing where there is no parent-death signal; TestMain
// still stops the server.
func setDeathSignal(*exec.Cmd) {}
