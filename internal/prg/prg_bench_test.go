package prg

import (
	"fmt"
	"testing"
)

var sink uint64

// BenchmarkApply measures mask expansion of k+1 masks into a vector of d
// coordinates over Z_{2^32}; BenchmarkKeystream is its baseline: the same
// number of raw AES-CTR keystream bytes with nothing added.
func BenchmarkApply(b *testing.B) {
	for _, d := range []int{100_000, 1_000_000} {
		for _, k := range []int{7, 20} {
			masks := make([]Mask, k+1)
			for i := range masks {
				masks[i].Key[0] = byte(i)
				masks[i].Subtract = i%2 == 1
			}
			v := make([]uint64, d)
			b.Run(fmt.Sprintf("d=%d/k=%d", d, k), func(b *testing.B) {
				b.SetBytes(int64((k + 1) * d * 4))
				b.ReportAllocs()
				for b.Loop() {
					Apply(v, 32, 0, masks)
				}
				sink += v[0]
			})
			b.Run(fmt.Sprintf("baseline-keystream/d=%d/k=%d", d, k), func(b *testing.B) {
				buf := make([]byte, d*4)
				zero := make([]byte, d*4)
				var key [KeySize]byte
				b.SetBytes(int64((k + 1) * d * 4))
				b.ReportAllocs()
				for b.Loop() {
					for i := 0; i <= k; i++ {
						key[0] = byte(i)
						newStream(&key, 0).XORKeyStream(buf, zero)
					}
				}
				sink += uint64(buf[0])
			})
		}
	}
}
