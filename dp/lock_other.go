//go:build !unix

package dp

import "os"

// lockFile does nothing where flock(2) is not available: there, nothing
// keeps two writers from one ledger (SECURITY.md).
func lockFile(f *os.File) error { return nil }

// syncDir does nothing where directories cannot be fsync'ed portably: a
// rename there is as durable as the system makes it.
func syncDir(dir string) error { return nil }
