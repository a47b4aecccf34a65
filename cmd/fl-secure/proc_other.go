//go:build !unix

package main

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcessGroup does nothing where there are no process groups.
func setProcessGroup(cmd *exec.Cmd) {}

// signalGroup stops the process of a started cmd: without process groups
// or SIGTERM, only a kill reaches it.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.Process != nil {
		cmd.Process.Signal(os.Kill)
	}
}
