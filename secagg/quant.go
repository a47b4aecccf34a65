package secagg

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/fl-secure/fl-secure/internal/prg"
)

// QuantParams fixes the fixed-point encoding of real vectors into Z_{2^Bits}.
type QuantParams struct {
	// Clip is c > 0: each coordinate is clipped to [−c, c] before encoding.
	Clip float64
	// Scale is the number of grid points per unit; a coordinate x becomes an
	// integer near x·Scale. Zero selects the largest power of two for which
	// the sum cannot wrap the ring.
	Scale float64
	// Bits is the ring size b, 32 or 64.
	Bits int
	// MaxClients bounds how many encoded inputs are summed.
	MaxClients int
	// MaxWeight bounds each client's weight (its sample count); 1 for an
	// unweighted sum.
	MaxWeight uint64
}

// Quantizer encodes real vectors as weighted fixed-point vectors over
// Z_{2^b} whose sum over up to MaxClients clients never wraps, and decodes
// the sum. A client with weight w and update x contributes round(w·x·Scale)
// coordinate-wise, with unbiased stochastic rounding, plus w itself in an
// extra last coordinate, so the decoded sum gives Σ w·x and Σ w, and their
// ratio the weighted mean (FedAvg, McMahan et al. 2017, Algorithm 1).
type Quantizer struct {
	p QuantParams
}

// headroom is the bound every decoded sum must stay below: 2^(b−2), one bit
// short of the signed range, so float rounding in the bound check below
// cannot hide an overflow.
func headroom(bits int) float64 { return math.Ldexp(1, bits-2) }

// NewQuantizer checks p and returns its Quantizer.
func NewQuantizer(p QuantParams) (*Quantizer, error) {
	switch {
	case p.Bits != 32 && p.Bits != 64:
		return nil, fmt.Errorf("secagg: quantizer Bits = %d, want 32 or 64", p.Bits)
	case !(p.Clip > 0) || math.IsInf(p.Clip, 0):
		return nil, fmt.Errorf("secagg: quantizer Clip = %v, want a finite c > 0", p.Clip)
	case p.MaxClients < 1 || p.MaxClients > MaxClients:
		return nil, fmt.Errorf("secagg: quantizer MaxClients = %d, want 1 ≤ n ≤ %d", p.MaxClients, MaxClients)
	case p.MaxWeight < 1 || p.MaxWeight > 1<<32:
		return nil, fmt.Errorf("secagg: quantizer MaxWeight = %d, want 1 ≤ w ≤ 2^32", p.MaxWeight)
	case p.Scale < 0 || math.IsNaN(p.Scale) || math.IsInf(p.Scale, 0):
		return nil, fmt.Errorf("secagg: quantizer Scale = %v, want a finite value ≥ 0", p.Scale)
	}
	n, w := float64(p.MaxClients), float64(p.MaxWeight)
	if n*w >= headroom(p.Bits) {
		return nil, fmt.Errorf("secagg: quantizer MaxClients·MaxWeight = %v does not fit Z_2^%d", n*w, p.Bits)
	}
	if p.Scale == 0 {
		// Largest power of two with n·w·(c·S + 1) < 2^(b−2).
		s := headroom(p.Bits)/(n*w) - 1
		if s <= 0 {
			return nil, fmt.Errorf("secagg: quantizer has no room for any Scale with MaxClients = %d, MaxWeight = %d in Z_2^%d", p.MaxClients, p.MaxWeight, p.Bits)
		}
		p.Scale = math.Ldexp(1, int(math.Floor(math.Log2(s/p.Clip*(1-1e-9)))))
		// Keep the encoding exact in float64 (53-bit mantissa).
		if lim := math.Ldexp(1, 52) / (p.Clip * w); p.Scale > lim {
			p.Scale = math.Ldexp(1, int(math.Floor(math.Log2(lim))))
		}
		if p.Scale < math.SmallestNonzeroFloat64 || p.Scale*p.Clip < 1e-300 {
			return nil, fmt.Errorf("secagg: quantizer Clip = %v leaves no usable Scale", p.Clip)
		}
	}
	if bound := n * w * (p.Clip*p.Scale + 1); !(bound < headroom(p.Bits)) {
		return nil, fmt.Errorf("secagg: quantizer Scale = %v lets the sum of %d inputs (bound %.3g) wrap Z_2^%d; the bound must stay below 2^%d", p.Scale, p.MaxClients, bound, p.Bits, p.Bits-2)
	}
	return &Quantizer{p: p}, nil
}

// Params returns the quantizer's parameters, with Scale filled in.
func (q *Quantizer) Params() QuantParams { return q.p }

// Length returns the secagg vector length for updates of dim coordinates:
// dim plus one for the weight.
func (q *Quantizer) Length(dim int) int { return dim + 1 }

// Encode clips x to [−Clip, Clip], scales it by weight·Scale, rounds each
// coordinate stochastically and without bias (Pr[round up] equals the
// fractional part), and appends weight. The rounding randomness is the
// AES-CTR keystream of a 128-bit seed read from rnd (crypto/rand if nil).
// NaN or infinite coordinates are refused.
func (q *Quantizer) Encode(x []float64, weight uint64, rnd io.Reader) ([]uint64, error) {
	if weight < 1 || weight > q.p.MaxWeight {
		return nil, fmt.Errorf("secagg: weight %d out of range [1, %d]", weight, q.p.MaxWeight)
	}
	for i, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("secagg: coordinate %d of the update is %v", i, v)
		}
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	var seed [prg.KeySize]byte
	if _, err := io.ReadFull(rnd, seed[:]); err != nil {
		return nil, fmt.Errorf("secagg: reading randomness: %w", err)
	}
	stream := prg.NewReader(&seed)
	clear(seed[:])

	mask := ringMask(q.p.Bits)
	ws := float64(weight) * q.p.Scale
	out := make([]uint64, len(x)+1)
	var buf [8 * 256]byte
	for lo := 0; lo < len(x); lo += 256 {
		hi := min(lo+256, len(x))
		stream.Read(buf[:8*(hi-lo)])
		for i := lo; i < hi; i++ {
			z := math.Max(-q.p.Clip, math.Min(q.p.Clip, x[i])) * ws
			f := math.Floor(z)
			// u is uniform on [0, 1) with 53 bits of precision.
			u := float64(binary.LittleEndian.Uint64(buf[8*(i-lo):])>>11) * 0x1p-53
			if u < z-f {
				f++
			}
			out[i] = uint64(int64(f)) & mask
		}
	}
	out[len(x)] = weight
	return out, nil
}

// Decode turns a sum of encoded vectors into Σ w·x (one float per model
// coordinate) and Σ w. It fails if the sum could not have come from at most
// MaxClients encodings.
func (q *Quantizer) Decode(sum []uint64) (weighted []float64, totalWeight uint64, err error) {
	if len(sum) < 1 {
		return nil, 0, fmt.Errorf("secagg: sum to decode is empty")
	}
	dim := len(sum) - 1
	tw := signed(sum[dim], q.p.Bits)
	if tw < 1 || uint64(tw) > uint64(q.p.MaxClients)*q.p.MaxWeight {
		return nil, 0, fmt.Errorf("secagg: decoded total weight %d out of range [1, %d]", tw, uint64(q.p.MaxClients)*q.p.MaxWeight)
	}
	limit := float64(tw)*(q.p.Clip*q.p.Scale) + float64(q.p.MaxClients)
	out := make([]float64, dim)
	for i := range out {
		v := float64(signed(sum[i], q.p.Bits))
		if math.Abs(v) > limit {
			return nil, 0, fmt.Errorf("secagg: decoded coordinate %d is out of range: the sum was not produced by this quantizer", i)
		}
		out[i] = v / q.p.Scale
	}
	return out, uint64(tw), nil
}

func ringMask(bits int) uint64 {
	if bits == 64 {
		return math.MaxUint64
	}
	return 1<<bits - 1
}

func signed(x uint64, bits int) int64 {
	if bits == 32 {
		return int64(int32(uint32(x)))
	}
	return int64(x)
}
