//go:build !unix

package dp

import "os"

// lockFile does nothing where flock(2) is not available: there, nothing
// keeps two writers from one ledger (SECURITY.md).
func lockFile(f *os.File) error { return nil }
