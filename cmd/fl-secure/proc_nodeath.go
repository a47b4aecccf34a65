//go:build unix && !linux

package main

import "syscall"

// setDeathSignal does nothing where there is no parent-death signal: a
// child of a process killed outright lives on, and poc removes the
// directory of such a run when it next starts (pocStale).
func setDeathSignal(a *syscall.SysProcAttr) {}
