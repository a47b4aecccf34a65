//go:build amd64 && !purego

package prg

import "golang.org/x/sys/cpu"

var useAVX2 = cpu.X86.HasAVX2

// addKeystream32 adds (or subtracts) the little-endian 32-bit words of b to
// d. With AVX2 the bulk runs eight coordinates per iteration (vpmovzxdq +
// vpaddq/vpsubq); the remainder and other CPUs use the portable loop.
func addKeystream32(d []uint64, b []byte, sub bool) {
	n := min(len(d), len(b)/4) &^ 7
	if useAVX2 && n > 0 {
		if sub {
			subWords32AVX2(&d[0], &b[0], n)
		} else {
			addWords32AVX2(&d[0], &b[0], n)
		}
		d, b = d[n:], b[4*n:]
	}
	addWords32(d, b, sub)
}

//go:noescape
func addWords32AVX2(d *uint64, b *byte, n int)

//go:noescape
func subWords32AVX2(d *uint64, b *byte, n int)
