//go:build !unix

package main

import "os/exec"

// setProcessGroup leaves cmd as it is: outside Unix only the command
// itself is killed when its context ends.
func setProcessGroup(cmd *exec.Cmd) {}
