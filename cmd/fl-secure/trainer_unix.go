//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// openUpdate opens an update file for reading without following a
// symbolic link (open(2) O_NOFOLLOW) and without blocking on a FIFO
// (O_NONBLOCK, which does not change how a regular file reads).
func openUpdate(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s is not a regular file (a symbolic link)", path)
	}
	return f, err
}
