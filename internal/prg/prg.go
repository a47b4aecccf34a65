// Package prg expands 128-bit seeds into masks over Z_{2^b} with the AES-128
// keystream in counter mode (NIST SP 800-38A, §6.5), the PRG that expands
// the seeds of Bonawitz et al., CCS 2017. Coordinate i of a mask is the little-endian word at byte
// offset i·b/8 of the keystream of AES-128-CTR under the seed with an all-zero
// initial counter block. Each seed is derived for one purpose in one round, so
// a (key, counter) pair is never reused.
//
// Masks for any coordinate range can be produced independently (the counter
// is set to the range's first block), which lets a server split a long vector
// across cores without keeping per-mask buffers of the vector's length.
package prg

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
)

// KeySize is the size of a mask seed in bytes.
const KeySize = 16

// chunk is the number of coordinates processed per keystream refill: small
// enough that the keystream buffer and the chunk of the destination stay in
// L1 cache while every mask is added to it, large enough to amortise the
// per-call overhead of the AES-CTR stream (about 85 ns per call here).
const chunk = 1024

// Mask names one keystream to add to, or subtract from, a vector.
type Mask struct {
	Key      [KeySize]byte
	Subtract bool
}

var zeros [chunk * 8]byte

// Apply adds (or subtracts) the keystream words of every mask to dst, where
// dst holds coordinates [offset, offset+len(dst)) of a vector over Z_{2^bits}.
// bits must be 32 or 64; entries of dst stay reduced modulo 2^bits.
func Apply(dst []uint64, bits int, offset int, masks []Mask) {
	apply(dst, nil, bits, offset, masks)
}

// ApplyFrom sets dst to src plus the masks, in one pass over memory, for
// coordinates [0, len(dst)). It returns the bitwise OR of all src words, so
// that the caller can check that src was reduced modulo 2^bits without a
// second pass; dst is only meaningful if it was. len(src) must equal
// len(dst).
func ApplyFrom(dst, src []uint64, bits int, masks []Mask) (or uint64) {
	if len(src) != len(dst) {
		panic("prg: internal error: ApplyFrom length mismatch")
	}
	return apply(dst, src, bits, 0, masks)
}

func apply(dst, src []uint64, bits int, offset int, masks []Mask) (or uint64) {
	w := wordSize(bits)
	if offset < 0 {
		panic("prg: internal error: negative offset")
	}
	if len(masks) == 0 || len(dst) == 0 {
		for _, x := range src {
			or |= x
		}
		copy(dst, src)
		return or
	}
	streams := make([]cipher.Stream, len(masks))
	for i := range masks {
		streams[i] = newStream(&masks[i].Key, offset*w)
	}
	buf := make([]byte, chunk*w)
	for lo := 0; lo < len(dst); lo += chunk {
		hi := min(lo+chunk, len(dst))
		d := dst[lo:hi]
		if src != nil {
			s := src[lo:hi]
			for _, x := range s {
				or |= x
			}
			copy(d, s)
		}
		b := buf[:len(d)*w]
		for i, s := range streams {
			s.XORKeyStream(b, zeros[:len(b)])
			if w == 4 {
				addKeystream32(d, b, masks[i].Subtract)
			} else {
				addWords64(d, b, masks[i].Subtract)
			}
		}
		if w == 4 { // reduce while the chunk is in cache
			for i := range d {
				d[i] &= 0xffffffff
			}
		}
	}
	clear(buf)
	return or
}

// AddWords adds the little-endian words of src (bits/8 bytes each) to dst,
// without reducing: for bits = 32 the entries of dst stay correct modulo
// 2^32 and may be reduced once at the end (2^32 divides 2^64). len(src)
// must be len(dst)·bits/8.
func AddWords(dst []uint64, src []byte, bits int) {
	if len(src) != len(dst)*wordSize(bits) {
		panic("prg: internal error: AddWords length mismatch")
	}
	if bits == 32 {
		addKeystream32(dst, src, false)
	} else {
		addWords64(dst, src, false)
	}
}

// ApplyParallel is Apply over the whole vector, split into one coordinate
// range per core (AES-CTR is seekable), for vectors long enough to gain from
// it. The working space is one small buffer per core.
func ApplyParallel(v []uint64, bits int, masks []Mask) {
	ApplyFromParallel(v, nil, bits, masks)
}

// ApplyFromParallel is ApplyFrom split across cores like ApplyParallel; src
// may be nil to mask dst in place.
func ApplyFromParallel(dst, src []uint64, bits int, masks []Mask) (or uint64) {
	if src != nil && len(src) != len(dst) {
		panic("prg: internal error: ApplyFrom length mismatch")
	}
	workers := max(1, min(runtime.GOMAXPROCS(0), len(dst)/65536))
	step := (len(dst) + workers - 1) / workers
	step = (step + 3) &^ 3 // whole AES blocks per range
	ors := make([]uint64, workers)
	var wg sync.WaitGroup
	for w, lo := 0, 0; lo < len(dst); w, lo = w+1, lo+step {
		hi := min(lo+step, len(dst))
		var s []uint64
		if src != nil {
			s = src[lo:hi]
		}
		wg.Go(func() { ors[w] = apply(dst[lo:hi], s, bits, lo, masks) })
	}
	wg.Wait()
	for _, o := range ors {
		or |= o
	}
	return or
}

// Keystream writes the raw keystream of key starting at byte offset into dst.
// It exists for known-answer tests and as the benchmark baseline.
func Keystream(dst []byte, key *[KeySize]byte, offset int) {
	newStream(key, offset).XORKeyStream(dst, make([]byte, len(dst)))
}

func wordSize(bits int) int {
	switch bits {
	case 32:
		return 4
	case 64:
		return 8
	}
	panic(fmt.Sprintf("prg: internal error: unsupported ring size 2^%d", bits))
}

// newStream returns an AES-128-CTR keystream positioned at byte offset.
func newStream(key *[KeySize]byte, offset int) cipher.Stream {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic("prg: internal error: " + err.Error())
	}
	var iv [aes.BlockSize]byte
	binary.BigEndian.PutUint64(iv[8:], uint64(offset/aes.BlockSize))
	s := cipher.NewCTR(block, iv[:])
	if skip := offset % aes.BlockSize; skip != 0 {
		var discard [aes.BlockSize]byte
		s.XORKeyStream(discard[:skip], discard[:skip])
	}
	return s
}

// addWords32 adds (or subtracts) the little-endian 32-bit words of b to d.
// The loops walk four coordinates at a time over re-sliced views so that the
// compiler proves every index in bounds; this loop and the AES keystream are
// the whole cost of masking.
func addWords32(d []uint64, b []byte, sub bool) {
	le := binary.LittleEndian
	if sub {
		for len(d) >= 4 && len(b) >= 16 {
			d[0] -= uint64(le.Uint32(b[0:4]))
			d[1] -= uint64(le.Uint32(b[4:8]))
			d[2] -= uint64(le.Uint32(b[8:12]))
			d[3] -= uint64(le.Uint32(b[12:16]))
			d, b = d[4:], b[16:]
		}
		for len(d) >= 1 && len(b) >= 4 {
			d[0] -= uint64(le.Uint32(b[0:4]))
			d, b = d[1:], b[4:]
		}
		return
	}
	for len(d) >= 4 && len(b) >= 16 {
		d[0] += uint64(le.Uint32(b[0:4]))
		d[1] += uint64(le.Uint32(b[4:8]))
		d[2] += uint64(le.Uint32(b[8:12]))
		d[3] += uint64(le.Uint32(b[12:16]))
		d, b = d[4:], b[16:]
	}
	for len(d) >= 1 && len(b) >= 4 {
		d[0] += uint64(le.Uint32(b[0:4]))
		d, b = d[1:], b[4:]
	}
}

// addWords64 is addWords32 for 64-bit words.
func addWords64(d []uint64, b []byte, sub bool) {
	le := binary.LittleEndian
	if sub {
		for len(d) >= 2 && len(b) >= 16 {
			d[0] -= le.Uint64(b[0:8])
			d[1] -= le.Uint64(b[8:16])
			d, b = d[2:], b[16:]
		}
		for len(d) >= 1 && len(b) >= 8 {
			d[0] -= le.Uint64(b[0:8])
			d, b = d[1:], b[8:]
		}
		return
	}
	for len(d) >= 2 && len(b) >= 16 {
		d[0] += le.Uint64(b[0:8])
		d[1] += le.Uint64(b[8:16])
		d, b = d[2:], b[16:]
	}
	for len(d) >= 1 && len(b) >= 8 {
		d[0] += le.Uint64(b[0:8])
		d, b = d[1:], b[8:]
	}
}

// Reader is an io.Reader over the AES-128-CTR keystream of a seed: a
// deterministic CSPRNG for values derived from public or secret seeds (the
// neighbour graph, stochastic rounding).
type Reader struct{ s cipher.Stream }

// NewReader returns a keystream reader for key, starting at offset 0.
func NewReader(key *[KeySize]byte) *Reader { return &Reader{s: newStream(key, 0)} }

// Seeded returns the keystream of a key made from seed and a one-byte
// domain, so that test packages seeded alike still draw different streams.
// For deterministic tests only.
func Seeded(seed uint64, domain byte) *Reader {
	var k [KeySize]byte
	binary.BigEndian.PutUint64(k[:], seed)
	k[KeySize-1] = domain
	return NewReader(&k)
}

// Read fills p with keystream; it never fails.
func (r *Reader) Read(p []byte) (int, error) {
	clear(p)
	r.s.XORKeyStream(p, p)
	return len(p), nil
}

// Uint64n returns a uniform integer in [0, n) by rejection sampling; n > 0.
func (r *Reader) Uint64n(n uint64) uint64 {
	if n == 0 {
		panic("prg: internal error: Uint64n(0)")
	}
	// Reject the top partial interval of 2^64 so that every residue is
	// equally likely.
	limit := -n % n // (2^64 − n) mod n = 2^64 mod n
	var b [8]byte
	for {
		r.Read(b[:])
		v := binary.LittleEndian.Uint64(b[:])
		if v >= limit {
			return v % n
		}
	}
}
