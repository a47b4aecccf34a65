package dp

import (
	"fmt"
	"math"
	"math/cmplx"

	"gonum.org/v1/gonum/dsp/fourier"
)

// DefaultInterval is the PLD accountant's default privacy-loss grid step,
// dp_accounting's value_discretization_interval.
const DefaultInterval = 1e-4

// maxGrid bounds the number of grid points of a composed PLD; when the
// default interval would need more, the accountant widens the interval for
// that event (still pessimistic, see doc.go) rather than run out of memory.
const maxGrid = 1 << 18

// maxSingle bounds the grid points of one step's PLD.
const maxSingle = 1 << 15

// tailMass is the probability mass cut from each tail after every
// convolution: lower-tail mass is moved up to the lowest kept loss and
// upper-tail mass to +∞, both pessimistic, so truncation can only raise δ,
// by at most tailMass per convolution.
const tailMass = 1e-15

// A PLDAccountant composes privacy loss distributions (Meiser and
// Mohammadi, CCS 2018; Koskela, Jälkö, Honkela, AISTATS 2020).
//
// Unsampled Gaussian steps are kept in closed form: the PLD of the Gaussian
// mechanism with multiplier z is N(μ, 2μ) with μ = 1/(2z²), and composing
// Gaussian PLDs adds their μ (Dong, Roth, Su 2019, Cor. 2; Balle and Wang
// 2018, Thm. 8 for its δ(ε)). Poisson-subsampled steps are discretized on a
// grid by the pessimistic connect-the-dots method (Doroshenko, Ghazi,
// Kamath, Kumar, Manurangsi, PETS 2022, §3), composed by FFT, and
// truncated only pessimistically. Both directions of add-remove are
// tracked (Zhu, Dong, Wang, AISTATS 2022, dominating pairs) and ε is the
// larger of the two.
type PLDAccountant struct {
	relation Neighbouring
	interval float64
	gaussMu  float64
	remove   *discretePLD
	add      *discretePLD
}

// NewPLDAccountant returns an empty PLD accountant for relation n with grid
// step interval (DefaultInterval when 0).
func NewPLDAccountant(n Neighbouring, interval float64) (*PLDAccountant, error) {
	if interval == 0 {
		interval = DefaultInterval
	}
	if !(interval > 0 && interval <= 0.1) {
		return nil, fmt.Errorf("dp: PLD grid interval must be in (0, 0.1], got %v", interval)
	}
	return &PLDAccountant{relation: n, interval: interval}, nil
}

// Name returns "pld".
func (a *PLDAccountant) Name() string { return "pld" }

// Relation returns the neighbouring relation of a's guarantees.
func (a *PLDAccountant) Relation() Neighbouring { return a.relation }

// Compose adds e to the accountant, or returns an error and leaves it
// unchanged.
func (a *PLDAccountant) Compose(e Event) error {
	if err := checkEvent(e, a.relation); err != nil {
		return err
	}
	if e.Mechanism != GaussianMechanism {
		return fmt.Errorf("%w: the PLD accountant covers the Gaussian mechanism; %s is accounted by its concentrated-DP bound with the rdp accountant", ErrUnsupported, e.Mechanism)
	}
	z := effectiveMultiplier(e, a.relation)
	if e.SamplingRate == 1 {
		a.gaussMu += float64(e.Count) / (2 * z * z)
		return nil
	}
	rm := subsampledPLD(z, e.SamplingRate, e.Count, false, a.interval)
	ad := subsampledPLD(z, e.SamplingRate, e.Count, true, a.interval)
	a.remove = rm.convolve(a.remove)
	a.add = ad.convolve(a.add)
	return nil
}

// Epsilon returns the ε of everything composed so far at δ, rounded up.
func (a *PLDAccountant) Epsilon(delta float64) (float64, error) {
	if err := checkDelta(delta); err != nil {
		return 0, err
	}
	if a.remove == nil {
		if a.gaussMu == 0 {
			return 0, nil
		}
		mu := a.gaussMu
		return epsilonFor(func(eps float64) float64 { return gaussianDelta(mu, eps) }, delta), nil
	}
	var eps float64
	for _, d := range []*discretePLD{a.remove, a.add} {
		if a.gaussMu > 0 {
			// Fold the closed-form Gaussian part into the grid.
			d = gaussianPLD(a.gaussMu, d.interval).convolve(d)
		}
		eps = max(eps, epsilonFor(d.delta, delta))
	}
	return eps, nil
}

// epsilonFor returns the smallest ε ≥ 0 with hs(ε) ≤ delta for a
// nonincreasing hockey-stick curve hs, by bisection, returning the upper end
// of the final bracket so the answer is never below the true one.
func epsilonFor(hs func(float64) float64, delta float64) float64 {
	if hs(0) <= delta {
		return 0
	}
	lo, hi := 0.0, 1.0
	for hs(hi) > delta {
		lo, hi = hi, 2*hi
		if hi > 1e12 {
			return math.Inf(1)
		}
	}
	for hi-lo > 1e-14*hi {
		mid := (lo + hi) / 2
		if hs(mid) > delta {
			lo = mid
		} else {
			hi = mid
		}
	}
	// δ(ε) is evaluated with a relative error near 1e-15; rounding ε up by
	// 1e-11 relative keeps the answer above the true one.
	return hi * (1 + 1e-11)
}

// gaussianDelta is δ(ε) for the privacy loss N(μ, 2μ) (Balle and Wang 2018,
// Thm. 8): Φ(−ε/√(2μ) + √(μ/2)) − e^ε Φ(−ε/√(2μ) − √(μ/2)), with the
// second term in log space so that large ε does not overflow.
func gaussianDelta(mu, eps float64) float64 {
	s := math.Sqrt(2 * mu)
	a := eps/s - s/2
	b := eps/s + s/2
	d := math.Exp(logPhiBar(a)) - math.Exp(eps+logPhiBar(b))
	return max(d, 0)
}

// logPhiBar returns log P(N(0,1) > x).
func logPhiBar(x float64) float64 {
	y := x / math.Sqrt2
	if y < 26 {
		return math.Log(0.5 * math.Erfc(y))
	}
	// erfc(y) = e^{−y²}/(y√π) · Σ_k (−1)^k (2k−1)!!/(2y²)^k; at y ≥ 26 ten
	// terms are exact to double precision.
	s, term := 1.0, 1.0
	for k := 1; k <= 10; k++ {
		term *= -float64(2*k-1) / (2 * y * y)
		s += term
	}
	return -y*y - math.Log(y*math.Sqrt(math.Pi)) + math.Log(s) + math.Log(0.5)
}

// phiBar returns P(N(0,1) > x).
func phiBar(x float64) float64 { return 0.5 * math.Erfc(x/math.Sqrt2) }

// A discretePLD is a privacy loss distribution on the grid
// {(offset+i)·interval}, with mass[i] at loss (offset+i)·interval and inf at +∞.
type discretePLD struct {
	interval float64
	offset   int
	mass     []float64
	inf      float64
	sm, se   []float64 // suffix sums for delta, built on first use
}

// delta returns δ(ε) = inf + Σ_j mass_j (1 − e^{ε − ε_j})_+ in O(1) after
// an O(n) pass that builds suffix sums SM_j = Σ_{k≥j} mass_k and
// SE_j = Σ_{k≥j} mass_k e^{ε_j − ε_k} (relative to ε_j so nothing
// overflows): δ(ε) = inf + SM_j − e^{ε−ε_j} SE_j for the first ε_j > ε.
func (d *discretePLD) delta(eps float64) float64 {
	n := len(d.mass)
	if d.sm == nil {
		d.sm = make([]float64, n+1)
		d.se = make([]float64, n+1)
		decay := math.Exp(-d.interval)
		for j := n - 1; j >= 0; j-- {
			d.sm[j] = d.sm[j+1] + d.mass[j]
			d.se[j] = d.mass[j] + decay*d.se[j+1]
		}
	}
	j := int(math.Floor(eps/d.interval)) + 1 - d.offset
	for j > 0 && float64(d.offset+j-1)*d.interval > eps {
		j--
	}
	for j < n && float64(d.offset+j)*d.interval <= eps {
		j++
	}
	if j >= n {
		return d.inf
	}
	j = max(j, 0)
	lj := float64(d.offset+j) * d.interval
	return d.inf + max(d.sm[j]-math.Exp(eps-lj)*d.se[j], 0)
}

// connectTheDots builds the pessimistic connect-the-dots PLD (Doroshenko et
// al. 2022, §3) of a pair whose hockey-stick curve is hs, on grid points
// lo..hi (in units of interval): the unique distribution on the grid whose
// δ(ε) equals hs at every grid point and is linear in e^ε between them, which
// lies above hs because hs is convex in e^ε. With D_j = hs(ε_{j+1}) − hs(ε_j)
// and r = e^interval,
//
//	mass_j = (D_j − r·D_{j−1}) / (r − 1),  inf = hs(ε_hi),
//
// and the lowest point takes the rest of the probability.
func connectTheDots(hs func(float64) float64, lo, hi int, interval float64) *discretePLD {
	n := hi - lo + 1
	h := make([]float64, n)
	for i := range h {
		h[i] = hs(float64(lo+i) * interval)
	}
	r := math.Exp(interval)
	rm1 := math.Expm1(interval)
	d := &discretePLD{interval: interval, offset: lo, mass: make([]float64, n), inf: h[n-1]}
	var rest float64
	for j := 1; j < n; j++ {
		dj := 0.0
		if j < n-1 {
			dj = h[j+1] - h[j]
		}
		m := (dj - r*(h[j]-h[j-1])) / rm1
		if m < 0 {
			m = 0 // rounding noise only: hs is convex in e^ε
		}
		d.mass[j] = m
		rest += m
	}
	d.mass[0] = max(1-d.inf-rest, 0)
	return d
}

// subsampledPLD returns the discretized PLD of count steps of the
// Poisson-subsampled Gaussian with multiplier z and rate q < 1, in the remove
// direction (P = (1−q)N(0, z²) + qN(1, z²) against Q = N(0, z²)) or the add
// direction (the pair reversed); Zhu, Dong, Wang 2022, Prop. 30.
func subsampledPLD(z, q float64, count int, add bool, interval float64) *discretePLD {
	s2 := z * z
	loss := func(x float64) float64 {
		// log(1 − q + q·e^{(2x−1)/(2z²)})
		u := math.Log(q) + (2*x-1)/(2*s2)
		a := math.Log1p(-q)
		if a < u {
			a, u = u, a
		}
		return a + math.Log1p(math.Exp(u-a))
	}
	const k = 9 // N(0,1) tails beyond 9 hold 1.1e-19; that mass goes to +∞
	var hs func(float64) float64
	var lmin, lmax float64
	if !add {
		hs = func(eps float64) float64 {
			if eps <= math.Log1p(-q) {
				return -math.Expm1(eps)
			}
			// x_ε with loss(x_ε) = ε; δ = q·Φ̄((x−1)/z) − (e^ε − 1 + q)·Φ̄(x/z).
			// log(e^ε − 1 + q), stable for large ε.
			lc := math.Log(math.Expm1(eps) + q)
			if eps > 1 {
				lc = eps + math.Log1p((q-1)*math.Exp(-eps))
			}
			x := s2*(lc-math.Log(q)) + 0.5
			d := q*phiBar((x-1)/z) - math.Exp(lc+logPhiBar(x/z))
			if !(d > 0) {
				return 0
			}
			return d
		}
		lmin, lmax = math.Log1p(-q), loss(1+k*z)
	} else {
		hs = func(eps float64) float64 {
			if eps >= -math.Log1p(-q) {
				return 0
			}
			// x' with 1 − q + q·e^{(2x'−1)/(2z²)} = e^{−ε};
			// δ = (1 − e^ε(1−q))·Φ(x'/z) − e^ε·q·Φ((x'−1)/z).
			c := (math.Expm1(-eps) + q) / q
			x := s2*math.Log(c) + 0.5
			d := (1-math.Exp(eps)*(1-q))*phiBar(-x/z) - math.Exp(eps)*q*phiBar((1-x)/z)
			if !(d > 0) {
				return 0
			}
			return d
		}
		lmin, lmax = -loss(k*z), -math.Log1p(-q)
	}
	// Widen the interval until one step fits in maxSingle points and the
	// composition in maxGrid.
	iv := interval
	for (lmax-lmin)/iv > maxSingle && iv < 1 {
		iv *= 2
	}
	for {
		lo := int(math.Floor(lmin / iv))
		hi := int(math.Ceil(lmax / iv))
		one := connectTheDots(hs, lo, hi, iv)
		wlo, whi := one.chernoffWindow(count)
		if whi-wlo+1 <= maxGrid || iv >= 1 {
			return one.selfCompose(count, wlo, whi)
		}
		iv *= 2
	}
}

// gaussianPLD discretizes the closed-form Gaussian PLD N(μ, 2μ).
func gaussianPLD(mu, interval float64) *discretePLD {
	s := math.Sqrt(2 * mu)
	lo := int(math.Floor((mu - 40*s) / interval))
	hi := int(math.Ceil((mu + 40*s) / interval))
	for hi-lo > maxGrid {
		interval *= 2
		lo = int(math.Floor((mu - 40*s) / interval))
		hi = int(math.Ceil((mu + 40*s) / interval))
	}
	return connectTheDots(func(e float64) float64 { return gaussianDelta(mu, e) }, lo, hi, interval)
}

// selfCompose returns the count-fold composition with one FFT each way:
// the transform of one step raised to the count-th power (as dp_accounting
// does). The FFT is circular, so the result is read through a window
// [lo, hi] that holds all but tailMass of each tail by a Chernoff bound,
// P(ΣL > u) ≤ e^{−tu}·M(t)^count for every t > 0 (and the mirror image
// below). Mass outside the window wraps into it; the upper part of that
// (at most tailMass) is also added to +∞, and any mass deficit goes to the
// lowest loss, so the result stays pessimistic.
func (d *discretePLD) selfCompose(count, lo, hi int) *discretePLD {
	if count == 1 {
		return d
	}
	width := hi - lo + 1
	n := 1
	for n < max(width, len(d.mass)) {
		n <<= 1
	}
	fft := fourier.NewFFT(n)
	x := make([]float64, n)
	copy(x, d.mass)
	c := fft.Coefficients(nil, x)
	for i := range c {
		c[i] = cmplx.Pow(c[i], complex(float64(count), 0))
	}
	fft.Sequence(x, c)
	out := &discretePLD{interval: d.interval, offset: lo, mass: make([]float64, width)}
	base := count * d.offset
	var tot float64
	for i := range out.mass {
		pos := ((lo-base+i)%n + n) % n
		out.mass[i] = max(x[pos]/float64(n), 0)
		tot += out.mass[i]
	}
	out.inf = -math.Expm1(float64(count)*math.Log1p(-d.inf)) + tailMass
	out.mass[0] += max(1-out.inf-tot, 0)
	return out.truncate()
}

// chernoffWindow returns grid indices lo ≤ hi such that count-fold
// composition puts at most tailMass below lo and above hi.
func (d *discretePLD) chernoffWindow(count int) (lo, hi int) {
	first, last := 0, len(d.mass)-1
	for first < last && d.mass[first] == 0 {
		first++
	}
	for last > first && d.mass[last] == 0 {
		last--
	}
	lmin := float64(d.offset+first) * d.interval
	lmax := float64(d.offset+last) * d.interval
	logTail := math.Log(tailMass)
	up, down := float64(count)*lmax, float64(count)*lmin
	for k := -12.0; k <= 6; k++ {
		t := math.Exp2(k)
		// log M(t) and log M(−t), shifted by the extreme losses.
		// The losses are on a grid, so e^{t(l_j − lmax)} is a power of
		// e^{−tΔ}: accumulate by Horner's rule from each end, no exp per point.
		r := math.Exp(-t * d.interval)
		var sp, sm float64
		for j := first; j <= last; j++ {
			sp = sp*r + d.mass[j]
		}
		for j := last; j >= first; j-- {
			sm = sm*r + d.mass[j]
		}
		logMp := t*lmax + math.Log(sp)
		logMm := -t*lmin + math.Log(sm)
		up = min(up, (float64(count)*logMp-logTail)/t)
		down = max(down, -(float64(count)*logMm-logTail)/t)
	}
	return int(math.Floor(down / d.interval)), int(math.Ceil(up / d.interval))
}

// convolve returns the composition of d and e (e may be nil). Grids of
// different intervals are brought to the coarser one by moving mass up
// (pessimistic).
func (d *discretePLD) convolve(e *discretePLD) *discretePLD {
	if e == nil {
		return d
	}
	if e.interval > d.interval {
		d = d.regrid(e.interval)
	} else if d.interval > e.interval {
		e = e.regrid(d.interval)
	}
	n := len(d.mass) + len(e.mass) - 1
	size := 1
	for size < n {
		size <<= 1
	}
	out := make([]float64, n)
	if int64(len(d.mass))*int64(len(e.mass)) <= 1<<16 {
		for i, a := range d.mass {
			if a == 0 {
				continue
			}
			for j, b := range e.mass {
				out[i+j] += a * b
			}
		}
	} else {
		fft := fourier.NewFFT(size)
		x := make([]float64, size)
		copy(x, d.mass)
		cx := fft.Coefficients(nil, x)
		clear(x)
		copy(x, e.mass)
		cy := fft.Coefficients(nil, x)
		for i := range cx {
			cx[i] *= cy[i]
		}
		fft.Sequence(x, cx)
		for i := range out {
			out[i] = max(x[i]/float64(size), 0)
		}
	}
	c := &discretePLD{
		interval: d.interval,
		offset:   d.offset + e.offset,
		mass:     out,
		inf:      1 - (1-d.inf)*(1-e.inf),
	}
	c = c.truncate()
	for len(c.mass) > 2*maxGrid {
		c = c.regrid(2 * c.interval)
	}
	return c
}

// truncate drops tails holding at most tailMass each: the lower tail is
// moved to the lowest kept point, the upper tail to +∞.
func (d *discretePLD) truncate() *discretePLD {
	lo, acc := 0, 0.0
	for lo < len(d.mass)-1 && acc+d.mass[lo] <= tailMass {
		acc += d.mass[lo]
		lo++
	}
	d.mass[lo] += acc
	hi, up := len(d.mass)-1, 0.0
	for hi > lo && up+d.mass[hi] <= tailMass {
		up += d.mass[hi]
		hi--
	}
	d.inf += up
	d.offset += lo
	d.mass = d.mass[lo : hi+1]
	return d
}

// regrid moves d onto a coarser grid of step iv (a multiple of d's),
// rounding every loss up: pessimistic.
func (d *discretePLD) regrid(iv float64) *discretePLD {
	ratio := int(math.Round(iv / d.interval))
	if ratio < 1 || math.Abs(float64(ratio)*d.interval-iv) > 1e-9*iv {
		panic("dp: internal error: PLD grids are not nested")
	}
	ceilDiv := func(a int) int {
		q := a / ratio
		if a%ratio != 0 && a > 0 {
			q++
		}
		return q
	}
	lo := ceilDiv(d.offset)
	hi := ceilDiv(d.offset + len(d.mass) - 1)
	out := &discretePLD{interval: iv, offset: lo, mass: make([]float64, hi-lo+1), inf: d.inf}
	for i, p := range d.mass {
		out.mass[ceilDiv(d.offset+i)-lo] += p
	}
	return out
}
