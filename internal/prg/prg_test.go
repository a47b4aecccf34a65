package prg

import (
	"crypto/aes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"testing"
)

// TestAESKAT checks the block cipher under the keystream against FIPS-197,
// Appendix C.1 (AES-128).
func TestAESKAT(t *testing.T) {
	key, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f")
	pt, _ := hex.DecodeString("00112233445566778899aabbccddeeff")
	want := "69c4e0d86a7b0430d8cdb78070b4c55a"
	b, _ := aes.NewCipher(key)
	out := make([]byte, 16)
	b.Encrypt(out, pt)
	if hex.EncodeToString(out) != want {
		t.Fatalf("AES-128: got %x, want %s", out, want)
	}
}

// reference computes coordinate i of the mask of key directly from the
// definition: word i of the concatenation of AES_K(0), AES_K(1), …
func reference(key *[KeySize]byte, bits, i int) uint64 {
	b, _ := aes.NewCipher(key[:])
	w := bits / 8
	var ctr, blk [16]byte
	var word [8]byte
	for j := 0; j < w; j++ {
		byteOff := i*w + j
		binary.BigEndian.PutUint64(ctr[8:], uint64(byteOff/16))
		b.Encrypt(blk[:], ctr[:])
		word[j] = blk[byteOff%16]
	}
	if w == 4 {
		return uint64(binary.LittleEndian.Uint32(word[:]))
	}
	return binary.LittleEndian.Uint64(word[:])
}

func TestApplyMatchesDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, bits := range []int{32, 64} {
		for trial := 0; trial < 20; trial++ {
			var m Mask
			for i := range m.Key {
				m.Key[i] = byte(r.Uint32())
			}
			m.Subtract = trial%2 == 1
			off := r.IntN(5000)
			n := r.IntN(3*chunk) + 1
			v := make([]uint64, n)
			orig := make([]uint64, n)
			for i := range v {
				v[i] = r.Uint64()
				if bits == 32 {
					v[i] &= 0xffffffff
				}
				orig[i] = v[i]
			}
			Apply(v, bits, off, []Mask{m})
			for _, i := range []int{0, 1, n / 2, n - 1} {
				want := orig[i] + reference(&m.Key, bits, off+i)
				if m.Subtract {
					want = orig[i] - reference(&m.Key, bits, off+i)
				}
				if bits == 32 {
					want &= 0xffffffff
				}
				if v[i] != want {
					t.Fatalf("bits %d offset %d coordinate %d: got %x want %x", bits, off, i, v[i], want)
				}
			}
		}
	}
}

func TestApplyRangesCompose(t *testing.T) {
	// Masking [0, n) at once equals masking any split of it by offsets, so
	// the server may expand ranges on different cores.
	masks := []Mask{{Key: [16]byte{1}}, {Key: [16]byte{2}, Subtract: true}, {Key: [16]byte{3}}}
	for _, bits := range []int{32, 64} {
		whole := make([]uint64, 10_000)
		Apply(whole, bits, 0, masks)
		parts := make([]uint64, 10_000)
		for _, cut := range [][2]int{{0, 7}, {7, 4099}, {4099, 4100}, {4100, 10_000}} {
			Apply(parts[cut[0]:cut[1]], bits, cut[0], masks)
		}
		for i := range whole {
			if whole[i] != parts[i] {
				t.Fatalf("bits %d: coordinate %d differs", bits, i)
			}
		}
	}
}

func TestAddThenSubtractCancels(t *testing.T) {
	v := make([]uint64, 777)
	k := [16]byte{9}
	Apply(v, 32, 3, []Mask{{Key: k}})
	Apply(v, 32, 3, []Mask{{Key: k, Subtract: true}})
	for i, x := range v {
		if x != 0 {
			t.Fatalf("coordinate %d = %d after +mask −mask", i, x)
		}
	}
}

// TestAccumulated expands thousands of seeded masks of varied sizes, offsets
// and rings and hashes all outputs; the constant pins the exact bytes of the
// mask expansion (a change to it would make old and new clients disagree).
func TestAccumulated(t *testing.T) {
	n := 2000
	want := "bcdf8ea25877cf1d55382083955d3f1fe718e991bf8e7633a3bdc8dd57ccc734"
	if testing.Short() {
		n = 200
		want = ""
	}
	// Trial parameters come from the keystream itself, so the constant
	// depends on AES and on this package only.
	r := NewReader(&[KeySize]byte{0xac})
	h := sha256.New()
	var buf [8]byte
	for trial := 0; trial < n; trial++ {
		var m Mask
		r.Read(m.Key[:])
		m.Subtract = r.Uint64n(2) == 1
		bits := 32 << r.Uint64n(2)
		v := make([]uint64, r.Uint64n(300)+1)
		Apply(v, bits, int(r.Uint64n(1000)), []Mask{m})
		for _, x := range v {
			binary.LittleEndian.PutUint64(buf[:], x)
			h.Write(buf[:])
		}
	}
	got := hex.EncodeToString(h.Sum(nil))
	if want != "" && got != want {
		t.Fatalf("accumulated hash %s, want %s", got, want)
	}
}

func TestUint64nUniform(t *testing.T) {
	// Chi-square test over 7 buckets, 70 000 draws, 6 degrees of freedom:
	// the critical value for a false-failure rate of 1e-6 is 37.0.
	r := NewReader(&[KeySize]byte{7})
	var counts [7]int
	for i := 0; i < 70_000; i++ {
		counts[r.Uint64n(7)]++
	}
	chi := 0.0
	for _, c := range counts {
		d := float64(c) - 10_000
		chi += d * d / 10_000
	}
	if chi > 37.0 {
		t.Fatalf("chi-square %.1f > 37.0: counts %v", chi, counts)
	}
}

func TestApplyFromMatchesApply(t *testing.T) {
	masks := []Mask{{Key: [16]byte{4}}, {Key: [16]byte{5}, Subtract: true}}
	for _, bits := range []int{32, 64} {
		src := make([]uint64, 3000)
		for i := range src {
			src[i] = uint64(i) * 0x9e3779b9 & 0xffffffff
		}
		want := append([]uint64(nil), src...)
		Apply(want, bits, 0, masks)
		got := make([]uint64, len(src))
		if or := ApplyFrom(got, src, bits, masks); or>>32 != 0 {
			t.Fatalf("or = %x", or)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("bits %d coordinate %d differs", bits, i)
			}
		}
		src[1234] = 1 << 40
		if or := ApplyFrom(got, src, bits, nil); or>>32 == 0 {
			t.Fatal("an out-of-range word was not reported")
		}
	}
}

func TestApplyFromParallelMatches(t *testing.T) {
	masks := []Mask{{Key: [16]byte{6}}, {Key: [16]byte{7}, Subtract: true}}
	for _, n := range []int{1, 5, 70_000, 300_001} {
		src := make([]uint64, n)
		for i := range src {
			src[i] = uint64(i) & 0xffffffff
		}
		want := make([]uint64, n)
		ApplyFrom(want, src, 32, masks)
		got := make([]uint64, n)
		ApplyFromParallel(got, src, 32, masks)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("n %d coordinate %d differs", n, i)
			}
		}
	}
}
