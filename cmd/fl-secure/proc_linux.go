package main

import "syscall"

// setDeathSignal has the kernel send SIGKILL to the child when this
// process dies (prctl(2) PR_SET_PDEATHSIG). Strictly, the signal follows
// the death of the thread that started the child; the Go runtime ends a
// thread only when a goroutine locked to it exits, which fl-secure's
// goroutines that start processes never do.
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
