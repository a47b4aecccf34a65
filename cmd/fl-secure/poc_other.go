//go:build !unix

package main

// pocStale reports no directory as stale where fl-secure cannot tell
// whether a process still runs: a killed run's directory stays.
func pocStale(dir string) (pid int, stale bool) { return 0, false }
