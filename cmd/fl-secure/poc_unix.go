//go:build unix

package main

import (
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// pocStale reports whether dir is the directory of a poc run that no
// longer runs: a directory (not a symbolic link) of this user's, with a
// pid file of this user's beside it naming a process that does not exist
// (kill(2) with signal 0 fails with ESRCH). A process that exists, even
// another one that reuses the pid, keeps the directory.
func pocStale(dir string) (pid int, stale bool) {
	uid := uint32(os.Getuid())
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return 0, false
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != uid {
		return 0, false
	}
	f, err := os.OpenFile(dir+pocPidSuffix, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	fi, err = f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return 0, false
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != uid {
		return 0, false
	}
	b, err := io.ReadAll(io.LimitReader(f, 32))
	if err != nil {
		return 0, false
	}
	pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 || pid == os.Getpid() {
		return 0, false
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		return pid, false
	}
	return pid, true
}
