package dp

import (
	"fmt"
	"math"
)

// ClipStats reports what clipping did, for logs and the ledger: how many
// vectors were seen and clipped, and their norms before clipping. It holds
// no data values.
type ClipStats struct {
	Count    int     // vectors seen
	Clipped  int     // vectors whose norm exceeded the bound
	MaxNorm  float64 // largest norm before clipping
	SumNorm  float64 // sum of norms before clipping
	SumScale float64 // sum of the factors applied (1 for unclipped vectors)
}

// Fraction returns the fraction of vectors clipped.
func (s ClipStats) Fraction() float64 {
	if s.Count == 0 {
		return 0
	}
	return float64(s.Clipped) / float64(s.Count)
}

// MeanNorm returns the mean norm before clipping.
func (s ClipStats) MeanNorm() float64 {
	if s.Count == 0 {
		return 0
	}
	return s.SumNorm / float64(s.Count)
}

// MeanScale returns the mean factor applied: 1 means nothing was clipped,
// 0.5 that vectors lost half their norm on average.
func (s ClipStats) MeanScale() float64 {
	if s.Count == 0 {
		return 1
	}
	return s.SumScale / float64(s.Count)
}

// String summarises the statistics.
func (s ClipStats) String() string {
	return fmt.Sprintf("clipped %d of %d (%.1f%%), mean norm %.4g, max norm %.4g, mean scale %.3f",
		s.Clipped, s.Count, 100*s.Fraction(), s.MeanNorm(), s.MaxNorm, s.MeanScale())
}

func (s *ClipStats) add(norm, scale float64) {
	s.Count++
	if scale < 1 {
		s.Clipped++
	}
	s.MaxNorm = max(s.MaxNorm, norm)
	s.SumNorm = min(s.SumNorm+norm, math.MaxFloat64) // saturating: a norm may be MaxFloat64
	s.SumScale += scale
}

// l2 returns the Euclidean norm of v, scaled to avoid overflow.
func l2(v []float64) float64 {
	var scale, ssq float64 = 0, 1
	for _, x := range v {
		if x == 0 {
			continue
		}
		a := math.Abs(x)
		if scale < a {
			ssq = 1 + ssq*(scale/a)*(scale/a)
			scale = a
		} else {
			ssq += (a / scale) * (a / scale)
		}
	}
	return scale * math.Sqrt(ssq)
}

// ClipL2 scales v in place so that its L2 norm is at most c (client-level
// DP: one hospital's whole update) and records what it did in stats (which
// may be nil). It returns an error for a non-positive bound or a vector with
// NaN or infinite entries, which no clipping can bound.
func ClipL2(v []float64, c float64, stats *ClipStats) error {
	if !(c > 0) || math.IsInf(c, 0) {
		return fmt.Errorf("dp: clipping norm must be positive and finite, got %v", c)
	}
	norm := l2(v)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		m := 0.0
		for _, x := range v {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return fmt.Errorf("dp: cannot clip a vector with NaN or infinite entries")
			}
			m = max(m, math.Abs(x))
		}
		// Finite entries whose norm overflows a float64: divide by the
		// largest first (exact direction, norm now at most √len), then
		// clip as usual; the norm is far above any finite c.
		for i := range v {
			v[i] /= m
		}
		if stats != nil {
			stats.add(math.MaxFloat64, 0)
		}
		scaleTo(v, l2(v), c)
		return nil
	}
	scale := 1.0
	if norm > c {
		scale = c / norm
		scaleTo(v, norm, c)
	}
	if stats != nil {
		stats.add(norm, scale)
	}
	return nil
}

// scaleTo scales v, of L2 norm norm > c, to norm at most c. Each entry is
// divided by the norm and then multiplied by c, never multiplied by c/norm,
// which can be subnormal (norm/c near 2^1074) and then carries too few bits
// to land near c. Rounding can leave the norm a few ulps above c; a few
// multiplications by slightly less than c/‖v‖ remove them, and should they
// not (no case is known), the zero vector is within the bound.
func scaleTo(v []float64, norm, c float64) {
	for i := range v {
		v[i] = v[i] / norm * c
	}
	for k := 1; k <= 64; k++ {
		n := l2(v)
		if n <= c {
			return
		}
		f := min(c/n, 1) * (1 - float64(k)*0x1p-52)
		for i := range v {
			v[i] *= f
		}
	}
	if l2(v) > c {
		clear(v)
	}
}

// SumClipped clips each per-example gradient to L2 norm c and returns their
// sum (record-level DP-SGD: Abadi et al., CCS 2016, Alg. 1), leaving the
// inputs unchanged. All gradients must have the same length. The sum has L2
// sensitivity c under add-remove and 2c under replace-one.
func SumClipped(grads [][]float64, c float64, stats *ClipStats) ([]float64, error) {
	if len(grads) == 0 {
		return nil, fmt.Errorf("dp: no gradients to clip")
	}
	d := len(grads[0])
	sum := make([]float64, d)
	buf := make([]float64, d)
	for i, g := range grads {
		if len(g) != d {
			return nil, fmt.Errorf("dp: gradient %d has length %d, want %d", i, len(g), d)
		}
		copy(buf, g)
		if err := ClipL2(buf, c, stats); err != nil {
			return nil, fmt.Errorf("dp: gradient %d: %w", i, err)
		}
		for j, x := range buf {
			sum[j] += x
		}
	}
	return sum, nil
}
