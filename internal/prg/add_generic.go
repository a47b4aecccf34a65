//go:build !amd64 || purego

package prg

// addKeystream32 adds (or subtracts) the little-endian 32-bit words of b to d.
func addKeystream32(d []uint64, b []byte, sub bool) { addWords32(d, b, sub) }
