//go:build unix

package dp

import (
	"errors"
	"os"
	"syscall"
)

// lockFile takes an exclusive advisory lock (flock(2)) on f without
// waiting. The kernel releases it when f is closed or its process ends,
// so a crash leaves no stale lock behind. errLocked means another open
// file holds it, in this process or another.
func lockFile(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return errLocked
		default:
			return err
		}
	}
}

// syncDir fsyncs a directory, making the entries created or renamed in it
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
