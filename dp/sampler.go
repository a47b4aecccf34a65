package dp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"math/bits"
)

// rekeyBytes is how much keystream a Sampler draws from one AES-256 key
// before it takes a fresh key from its source (2^32 blocks).
const rekeyBytes = 1 << 36

// A Sampler draws exact integer noise. Its bits come from AES-256 in counter
// mode keyed with 32 bytes read from the source given to NewSampler
// (crypto/rand by default) and rekeyed from that source every 64 GiB, so a
// sampler is exactly as unpredictable as its source; reading the source once
// per key rather than once per sample is what makes exact sampling fast.
//
// A Sampler is not safe for concurrent use; give each goroutine its own.
type Sampler struct {
	src    io.Reader
	stream cipher.Stream
	buf    [4096]byte
	words  [1024]uint32
	pos    int
	used   uint64
}

// NewSampler returns a Sampler keyed from r, or from crypto/rand when r is
// nil. Only tests pass anything but nil (see dptest.Rand).
func NewSampler(r io.Reader) (*Sampler, error) {
	if r == nil {
		r = rand.Reader
	}
	s := &Sampler{src: r}
	if err := s.rekey(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Sampler) rekey() error {
	var key [32]byte
	if _, err := io.ReadFull(s.src, key[:]); err != nil {
		return fmt.Errorf("dp: reading sampler key: %w", err)
	}
	block, err := aes.NewCipher(key[:])
	clear(key[:])
	if err != nil {
		return fmt.Errorf("dp: internal error: %w", err)
	}
	s.stream = cipher.NewCTR(block, make([]byte, aes.BlockSize))
	s.used = 0
	s.pos = len(s.words)
	return nil
}

func (s *Sampler) refill() {
	if s.used >= rekeyBytes {
		if err := s.rekey(); err != nil {
			// The source failed: there is no safe randomness left. Panicking
			// is the only choice that does not release un-noised data; the
			// default source (crypto/rand) never fails.
			panic("dp: sampler randomness source failed: " + err.Error())
		}
	}
	clear(s.buf[:])
	s.stream.XORKeyStream(s.buf[:], s.buf[:])
	for i := range s.words {
		s.words[i] = binary.LittleEndian.Uint32(s.buf[4*i:])
	}
	clear(s.buf[:])
	s.pos = 0
	s.used += uint64(len(s.buf))
}

// u32 returns 32 uniform bits.
func (s *Sampler) u32() uint32 {
	if s.pos >= len(s.words) {
		s.refill()
	}
	w := s.words[s.pos]
	s.pos++
	return w
}

// u64 returns 64 uniform bits.
func (s *Sampler) u64() uint64 {
	return uint64(s.u32())<<32 | uint64(s.u32())
}

// uniform returns an exactly uniform integer in [0, n), n > 0, by Lemire's
// multiply-and-reject method ("Fast random integer generation in an
// interval", ACM TOMACS 2019, Alg. 5): the rejection makes it exact. Ranges
// that fit in 32 bits use 32 random bits.
func (s *Sampler) uniform(n uint64) uint64 {
	if n <= 1<<32 {
		m := uint64(s.u32()) * n
		if lo := uint32(m); uint64(lo) < n {
			thresh := uint32((1 << 32) % n) // = (2^32 − n) mod n; 0 when n = 2^32
			for lo < thresh {
				m = uint64(s.u32()) * n
				lo = uint32(m)
			}
		}
		return m >> 32
	}
	hi, lo := bits.Mul64(s.u64(), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(s.u64(), n)
		}
	}
	return hi
}

// bernoulli returns true with probability num/den exactly (num ≤ den, den > 0).
func (s *Sampler) bernoulli(num, den uint64) bool {
	return s.uniform(den) < num
}

// bernoulliExpFrac returns true with probability exp(−num/den) for
// 0 ≤ num ≤ den: CKS 2020 Algorithm 1, case γ ∈ [0, 1]. It draws A_k ~
// Bernoulli(γ/k) for k = 1, 2, … until one is 0 and returns whether the
// last k is odd. Bernoulli(γ/k) is drawn as Bernoulli(num/den) ∧
// Bernoulli(1/k), which is exact and never overflows.
func (s *Sampler) bernoulliExpFrac(num, den uint64) bool {
	k := uint64(1)
	for {
		var a bool
		if hi, prod := bits.Mul64(den, k); hi == 0 {
			a = s.uniform(prod) < num
		} else {
			a = s.bernoulli(num, den) && s.uniform(k) == 0
		}
		if !a {
			return k&1 == 1
		}
		k++
	}
}

// bernoulliExpMinusOne returns true with probability exp(−1):
// CKS 2020 Algorithm 1 with γ = 1, where Bernoulli(1/1) is always 1.
func (s *Sampler) bernoulliExpMinusOne() bool {
	k := uint64(2)
	for s.uniform(k) == 0 {
		k++
	}
	return k&1 == 1 // Algorithm 1 returns 1 when the first failure is at odd k
}

// bernoulliExp returns true with probability exp(−γ) for γ = q + r/den,
// r < den: CKS 2020 Algorithm 1 (γ > 1 case: q independent Bernoulli(e^−1)
// draws must all succeed, then one Bernoulli(exp(−r/den))).
func (s *Sampler) bernoulliExp(q, r, den uint64) bool {
	for i := uint64(0); i < q; i++ {
		if !s.bernoulliExpMinusOne() {
			return false
		}
	}
	return s.bernoulliExpFrac(r, den)
}

// discreteLaplace returns a sample of the discrete Laplace distribution with
// scale t, P(x) ∝ exp(−|x|/t): CKS 2020 Algorithm 2 with s = 1.
func (s *Sampler) discreteLaplace(t uint64) int64 {
	for {
		u := s.uniform(t)
		if !s.bernoulliExpFrac(u, t) {
			continue
		}
		v := uint64(0)
		for s.bernoulliExpMinusOne() {
			v++
		}
		x := u + t*v
		neg := s.u32()&1 == 1
		if neg && x == 0 {
			continue
		}
		if neg {
			return -int64(x)
		}
		return int64(x)
	}
}

// A DiscreteGaussian samples N_Z(0, σ²), the distribution on the integers
// with P(x) ∝ exp(−x²/(2σ²)), exactly: Canonne, Kamath, Steinke, "The
// Discrete Gaussian for Differential Privacy", NeurIPS 2020, Algorithm 3,
// built on their Algorithms 1 and 2. σ² is an exact rational and every
// accept/reject decision is a comparison of integers; no floating-point
// value is ever computed on the way to a sample.
type DiscreteGaussian struct {
	// σ² = p/q in lowest terms; t = ⌊σ⌋ + 1.
	p, q, t uint64
	// Fast path: |Y|·t·q − p and 2·p·q·t² fit in 64 bits while
	// |Y| ≤ maxY; den = 2·p·q·t².
	den, maxY uint64
	// Exact path for large or finely-grained σ².
	bp, bq, bt, bden *big.Int
}

// maxSigma2 bounds σ²: beyond it no sample fits in an int64 with room to spare.
var maxSigma2 = new(big.Rat).SetInt64(1 << 60)

// NewDiscreteGaussian returns a sampler of N_Z(0, σ²) for the rational
// σ² = sigma2, which must be positive and at most 2^60.
func NewDiscreteGaussian(sigma2 *big.Rat) (*DiscreteGaussian, error) {
	if sigma2 == nil || sigma2.Sign() <= 0 {
		return nil, errors.New("dp: discrete Gaussian variance must be positive")
	}
	if sigma2.Cmp(maxSigma2) > 0 {
		return nil, fmt.Errorf("dp: discrete Gaussian variance %s is above 2^60", sigma2.FloatString(3))
	}
	g := &DiscreteGaussian{
		bp: new(big.Int).Set(sigma2.Num()),
		bq: new(big.Int).Set(sigma2.Denom()),
	}
	// t = ⌊σ⌋ + 1 = ⌊√⌊σ²⌋⌋ + 1.
	fl := new(big.Int).Quo(g.bp, g.bq)
	g.bt = fl.Sqrt(fl)
	g.bt.Add(g.bt, big.NewInt(1))
	g.bden = new(big.Int).Mul(g.bt, g.bt)
	g.bden.Mul(g.bden, g.bp)
	g.bden.Mul(g.bden, g.bq)
	g.bden.Lsh(g.bden, 1)
	if g.bden.BitLen() <= 63 {
		g.p, g.q, g.t, g.den = g.bp.Uint64(), g.bq.Uint64(), g.bt.Uint64(), g.bden.Uint64()
		// |Y|·t·q must not overflow: |Y| ≤ (2^63 − 1)/(t·q).
		g.maxY = (1<<63 - 1) / (g.t * g.q)
	}
	return g, nil
}

// NewDiscreteGaussianSigma returns a sampler of N_Z(0, σ²) for σ given as a
// float64, which is converted exactly (a float64 is a dyadic rational) before
// squaring; no rounding enters the sampler.
func NewDiscreteGaussianSigma(sigma float64) (*DiscreteGaussian, error) {
	if !(sigma > 0) || math.IsInf(sigma, 0) {
		return nil, fmt.Errorf("dp: discrete Gaussian σ must be positive and finite, got %v", sigma)
	}
	r := new(big.Rat).SetFloat64(sigma)
	return NewDiscreteGaussian(r.Mul(r, r))
}

// Sigma2 returns σ² as a float64, for reports.
func (g *DiscreteGaussian) Sigma2() float64 {
	f, _ := new(big.Rat).SetFrac(g.bp, g.bq).Float64()
	return f
}

// Sample returns one draw of N_Z(0, σ²) using s's randomness.
func (g *DiscreteGaussian) Sample(s *Sampler) int64 {
	for {
		y := s.discreteLaplace(g.tValue())
		ay := uint64(y)
		if y < 0 {
			ay = uint64(-y)
		}
		if g.acceptFast(s, ay) {
			return y
		}
	}
}

func (g *DiscreteGaussian) tValue() uint64 {
	if g.den != 0 {
		return g.t
	}
	if g.bt.IsUint64() {
		return g.bt.Uint64()
	}
	panic("dp: internal error: t does not fit in 64 bits")
}

// acceptFast returns true with probability exp(−(|y| − σ²/t)²/(2σ²))
// = exp(−(|y|·t·q − p)² / (2·p·q·t²)), CKS 2020 Algorithm 3, step 5.
func (g *DiscreteGaussian) acceptFast(s *Sampler, ay uint64) bool {
	if g.den == 0 || ay > g.maxY {
		return g.acceptBig(s, ay)
	}
	a := ay * g.t * g.q
	var diff uint64
	if a >= g.p {
		diff = a - g.p
	} else {
		diff = g.p - a
	}
	hi, lo := bits.Mul64(diff, diff)
	if hi >= g.den {
		// γ ≥ 2^64: the answer is "reject" unless 2^64 draws of
		// Bernoulli(e^−1) in a row succeed, which never happens; loop
		// until one fails rather than pretending to count that far.
		for s.bernoulliExpMinusOne() {
		}
		return false
	}
	quo, rem := bits.Div64(hi, lo, g.den)
	return s.bernoulliExp(quo, rem, g.den)
}

// acceptBig is acceptFast in arbitrary precision.
func (g *DiscreteGaussian) acceptBig(s *Sampler, ay uint64) bool {
	a := new(big.Int).SetUint64(ay)
	a.Mul(a, g.bt)
	a.Mul(a, g.bq)
	a.Sub(a, g.bp)
	a.Mul(a, a)
	quo, rem := new(big.Int).QuoRem(a, g.bden, new(big.Int))
	if !quo.IsUint64() {
		for s.bernoulliExpMinusOne() {
		}
		return false
	}
	for i := uint64(0); i < quo.Uint64(); i++ {
		if !s.bernoulliExpMinusOne() {
			return false
		}
	}
	if g.bden.IsUint64() {
		return s.bernoulliExpFrac(rem.Uint64(), g.bden.Uint64())
	}
	// Algorithm 1 with Bernoulli(rem/den) drawn as a uniform big integer.
	k := uint64(1)
	for {
		if !(s.uniformBig(g.bden).Cmp(rem) < 0 && s.uniform(k) == 0) {
			return k&1 == 1
		}
		k++
	}
}

// uniformBig returns a uniform integer in [0, n) by rejection on the
// smallest enclosing power of two.
func (s *Sampler) uniformBig(n *big.Int) *big.Int {
	nbits := n.BitLen()
	nbytes := (nbits + 7) / 8
	buf := make([]byte, nbytes)
	x := new(big.Int)
	for {
		for i := 0; i < nbytes; i += 8 {
			w := s.u64()
			for j := 0; j < 8 && i+j < nbytes; j++ {
				buf[i+j] = byte(w >> (8 * j))
			}
		}
		if extra := nbytes*8 - nbits; extra > 0 {
			buf[0] &= 0xff >> extra
		}
		x.SetBytes(buf)
		if x.Cmp(n) < 0 {
			return x
		}
	}
}

// Fill fills dst with independent draws of N_Z(0, σ²).
func (g *DiscreteGaussian) Fill(s *Sampler, dst []int64) {
	for i := range dst {
		dst[i] = g.Sample(s)
	}
}

// AddToRing adds independent draws of N_Z(0, σ²) to each element of v
// modulo 2^bits (1 ≤ bits ≤ 64): the noise a client adds to its quantized
// update before masking it for secure aggregation.
func (g *DiscreteGaussian) AddToRing(s *Sampler, v []uint64, bits int) error {
	if bits < 1 || bits > 64 {
		return fmt.Errorf("dp: ring width %d bits is outside [1, 64]", bits)
	}
	mask := ^uint64(0)
	if bits < 64 {
		mask = 1<<bits - 1
	}
	for i := range v {
		v[i] = (v[i] + uint64(g.Sample(s))) & mask
	}
	return nil
}

// Bernoulli returns true with probability q (0 ≤ q ≤ 1), comparing a
// 53-bit uniform with q: for Poisson sampling of records, where q is a
// public rate and a 2^−53 bias is immaterial.
func (s *Sampler) Bernoulli(q float64) bool {
	return float64(s.u64()>>11)*0x1p-53 < q
}
