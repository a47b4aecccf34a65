//go:build unix

package main

import (
	"os/exec"
	"syscall"
)

// setProcessGroup starts cmd in a process group of its own, so that a
// terminal's Ctrl-C reaches only poc, which stops its processes in order,
// and signalGroup reaches anything the process started. Where the system
// has a parent-death signal (Linux), cmd is also killed if this process
// dies without stopping it (SIGKILL, a crash).
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setDeathSignal(cmd.SysProcAttr)
}

// signalGroup sends sig to the process group of a started cmd. A group
// that no longer exists is not an error.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, sig)
	}
}
