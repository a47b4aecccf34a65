//go:build !unix

package main

import (
	"fmt"
	"os"
)

// openUpdate opens an update file for reading; a symbolic link is
// refused by its own Lstat (there are no FIFOs to block on here).
func openUpdate(path string) (*os.File, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s is not a regular file (a symbolic link)", path)
	}
	return os.Open(path)
}
