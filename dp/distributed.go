package dp

import (
	"errors"
	"fmt"
	"math"
	"math/big"
)

// DistributedConfig describes the noise of one secure-aggregation round in
// which every client adds its own share of discrete Gaussian noise to its
// clipped, scaled and rounded update before masking it.
type DistributedConfig struct {
	// Sigma is the target standard deviation of the noise in the sum, in the
	// units of the updates (noise multiplier × Clip).
	Sigma float64
	// Clip is the L2 sensitivity of a client's contribution: the norm its
	// update is clipped to (client level), or the per-record clipping norm
	// when a client sends a sum of clipped per-record gradients (record
	// level).
	Clip float64
	// ClientNorm bounds the L2 norm of one client's whole vector, for the
	// ring-wraparound bound; 0 means Clip (client level).
	ClientNorm float64
	// Gamma, if positive, fixes the grid step (a power of two) instead of
	// deriving it from Bits: for pipelines without a ring (threshold CKKS),
	// where Bits is then ignored and WrapProbability is 0.
	Gamma float64
	// Clients is the number of clients that add noise (n).
	Clients int
	// Threshold is the fewest survivors a round may finish with (t).
	Threshold int
	// Colluders is the number of clients assumed to collude with the
	// coordinator (c); they may subtract their own noise, so only t − c
	// shares are counted.
	Colluders int
	// Dim is the length of an update (d).
	Dim int
	// Bits is the width of the aggregation ring Z_{2^Bits}.
	Bits int
	// RoundingBeta is the failure probability β of one conditional
	// randomized rounding attempt (KLS 2021 §4.1); 0 means plain randomized
	// rounding with the deterministic bound c/γ + √d.
	RoundingBeta float64
	// WrapBeta bounds the probability that any coordinate of the sum wraps
	// around the ring; 0 means 2^−40.
	WrapBeta float64
}

// DistributedNoise is the plan Distribute returns: how each client scales,
// rounds and noises its update, and what the accountant must record.
type DistributedNoise struct {
	// Gamma is the grid step, a power of two: a client sends round(x/Gamma).
	Gamma float64
	// LocalSigma is the σ of each client's noise in update units;
	// LocalSigma2 is (LocalSigma/Gamma)², exactly, for NewDiscreteGaussian.
	LocalSigma  float64
	LocalSigma2 *big.Rat
	// Honest is t − c: the noise shares the guarantee counts on.
	Honest int
	// L2, L1 bound the sensitivity of the rounded, scaled update in integer
	// units (KLS 2021 §4.1).
	L2, L1 float64
	// Tau is KLS 2021's τ = 10 Σ_{k=1}^{m−1} exp(−2π²σ²·k/(k+1)) for the
	// m = Honest shares of integer standard deviation σ.
	Tau float64
	// NoiseMultiplier is the effective noise multiplier the accountant must
	// record for this round (mechanism discrete_gaussian, sampling rate 1):
	// the sum is (1/(2z²))-zCDP with z = 1/√(l2² + 2·l1·τ + τ²·d), where
	// l2 = L2/(√m σ) and l1 = L1/(√m σ) (KLS 2021, Thm. 1 and Prop. 14).
	NoiseMultiplier float64
	// SumSigma is the σ of the noise in the sum if all Clients survive, in
	// update units: it exceeds Sigma when n > t − c, the price of
	// tolerating dropouts and colluders.
	SumSigma float64
	// WrapProbability bounds the probability that some coordinate of the
	// sum leaves the ring's signed range (a union bound over coordinates of
	// the sub-Gaussian tail of the noise plus the worst-case signal).
	// Wraparound is post-processing and costs no privacy, only accuracy.
	WrapProbability float64
}

// Distribute plans the distributed discrete Gaussian mechanism of Kairouz,
// Liu, Steinke, "The Distributed Discrete Gaussian Mechanism for Federated
// Learning with Secure Aggregation", ICML 2021: each of the n clients adds
// N_Z(0, σ_int²) with σ_int = Sigma/(γ·√(t−c)), so that the t − c honest
// survivors' shares alone reach the target.
//
// γ is the smallest power of two for which the sum fits the ring with
// probability 1 − WrapBeta: n·(C/γ + 1) (every client's coordinates are at
// most its L2 norm after rounding) plus k·√n·σ_int with
// k = √(2 ln(2d/WrapBeta)) (a sum of discrete Gaussians is sub-Gaussian,
// CKS 2020 §2, where N_Z(0, σ²) is shown σ-sub-Gaussian; union bound over d coordinates) must stay below 2^(b−1).
func Distribute(cfg DistributedConfig) (*DistributedNoise, error) {
	switch {
	case !(cfg.Sigma > 0) || math.IsInf(cfg.Sigma, 0):
		return nil, fmt.Errorf("dp: target σ must be positive and finite, got %v", cfg.Sigma)
	case !(cfg.Clip > 0) || math.IsInf(cfg.Clip, 0):
		return nil, fmt.Errorf("dp: clipping norm must be positive and finite, got %v", cfg.Clip)
	case cfg.Clients < 1:
		return nil, fmt.Errorf("dp: %d clients", cfg.Clients)
	case cfg.Threshold < 1 || cfg.Threshold > cfg.Clients:
		return nil, fmt.Errorf("dp: threshold %d outside [1, %d clients]", cfg.Threshold, cfg.Clients)
	case cfg.Colluders < 0 || cfg.Colluders >= cfg.Threshold:
		return nil, fmt.Errorf("dp: %d colluders leave no honest survivor at threshold %d", cfg.Colluders, cfg.Threshold)
	case cfg.Dim < 1:
		return nil, fmt.Errorf("dp: update length %d", cfg.Dim)
	case cfg.Gamma == 0 && (cfg.Bits < 8 || cfg.Bits > 62):
		return nil, fmt.Errorf("dp: ring width %d bits outside [8, 62]", cfg.Bits)
	case cfg.Gamma < 0 || math.IsNaN(cfg.Gamma) || (cfg.Gamma > 0 && math.Log2(cfg.Gamma) != math.Trunc(math.Log2(cfg.Gamma))):
		return nil, fmt.Errorf("dp: grid step %v is not a power of two", cfg.Gamma)
	case cfg.ClientNorm < 0 || math.IsNaN(cfg.ClientNorm) || math.IsInf(cfg.ClientNorm, 0):
		return nil, fmt.Errorf("dp: client norm bound %v", cfg.ClientNorm)
	case cfg.RoundingBeta < 0 || cfg.RoundingBeta >= 1:
		return nil, fmt.Errorf("dp: rounding β must be in [0, 1), got %v", cfg.RoundingBeta)
	case cfg.WrapBeta < 0 || cfg.WrapBeta >= 1:
		return nil, fmt.Errorf("dp: wraparound β must be in [0, 1), got %v", cfg.WrapBeta)
	}
	wrapBeta := cfg.WrapBeta
	if wrapBeta == 0 {
		wrapBeta = math.Exp2(-40)
	}
	n, d := float64(cfg.Clients), float64(cfg.Dim)
	m := cfg.Threshold - cfg.Colluders
	local := cfg.Sigma / math.Sqrt(float64(m))
	k := math.Sqrt(2 * math.Log(2*d/wrapBeta))
	norm := cfg.ClientNorm
	if norm == 0 {
		norm = cfg.Clip
	}
	half := math.Exp2(float64(cfg.Bits - 1))
	gamma := cfg.Gamma
	if gamma == 0 {
		// Need n·(‖x‖/γ + 1) + k·√n·local/γ < 2^(b−1), i.e.
		// γ > (n·‖x‖ + k·√n·local) / (2^(b−1) − n).
		if half <= n+1 {
			return nil, fmt.Errorf("dp: a %d-bit ring cannot hold the sum of %d clients", cfg.Bits, cfg.Clients)
		}
		need := (n*norm + k*math.Sqrt(n)*local) / (half - n - 1)
		gamma = math.Exp2(math.Ceil(math.Log2(need)))
		if gamma == need {
			gamma *= 2
		}
	}
	sigmaInt := local / gamma
	if sigmaInt < 1 {
		return nil, fmt.Errorf("dp: a %d-bit ring leaves each client's noise at σ = %.3g grid steps, below 1: use more bits or more noise", cfg.Bits, sigmaInt)
	}
	cInt := cfg.Clip / gamma
	l2 := roundedL2(cInt, d, cfg.RoundingBeta)
	l1 := math.Min(l2*math.Sqrt(d), cInt*math.Sqrt(d)+d)
	var tau float64
	for j := 1; j < m; j++ {
		fj := float64(j)
		tau += math.Exp(-2 * math.Pi * math.Pi * sigmaInt * sigmaInt * fj / (fj + 1))
	}
	tau *= 10
	sm := math.Sqrt(float64(m)) * sigmaInt
	l2s, l1s := l2/sm, l1/sm
	z := 1 / math.Sqrt(l2s*l2s+2*l1s*tau+tau*tau*d)
	s2 := new(big.Rat).SetFloat64(sigmaInt)
	if s2 == nil {
		return nil, errors.New("dp: internal error: σ is not finite")
	}
	s2.Mul(s2, s2)
	// Sub-Gaussian tail of all n shares plus the worst-case signal.
	var wrap float64
	if cfg.Gamma == 0 {
		margin := half - n*(norm/gamma+1)
		wrap = 2 * d * math.Exp(-margin*margin/(2*n*sigmaInt*sigmaInt))
	}
	return &DistributedNoise{
		Gamma:           gamma,
		LocalSigma:      local,
		LocalSigma2:     s2,
		Honest:          m,
		L2:              l2,
		L1:              l1,
		Tau:             tau,
		NoiseMultiplier: z,
		SumSigma:        math.Sqrt(n) * local,
		WrapProbability: math.Min(wrap, 1),
	}, nil
}

// PlanDistributed returns the distributed plan whose effective noise
// multiplier is at least z: it starts from σ = z·Clip and raises σ until
// rounding and KLS's τ term are paid for.
func PlanDistributed(z float64, cfg DistributedConfig) (*DistributedNoise, error) {
	if !(z > 0) || math.IsInf(z, 0) {
		return nil, fmt.Errorf("dp: noise multiplier %v", z)
	}
	cfg.Sigma = z * cfg.Clip
	for i := 0; i < 60; i++ {
		p, err := Distribute(cfg)
		if err != nil {
			return nil, err
		}
		if p.NoiseMultiplier >= z {
			return p, nil
		}
		cfg.Sigma *= z / p.NoiseMultiplier * (1 + 1e-9)
	}
	return nil, fmt.Errorf("dp: could not reach noise multiplier %v: rounding dominates; use a finer grid", z)
}

// roundedL2 bounds the L2 norm of a randomized rounding of a vector of norm
// at most c in d dimensions (KLS 2021, §4.1): always c + √d; with
// conditional rounding at bias β, also
// √(c² + d/4 + √(2 ln(1/β))·(c + √d/2)).
func roundedL2(c, d, beta float64) float64 {
	b1 := c + math.Sqrt(d)
	if beta == 0 {
		return b1
	}
	b2 := math.Sqrt(c*c + d/4 + math.Sqrt(2*math.Log(1/beta))*(c+math.Sqrt(d)/2))
	return math.Min(b1, b2)
}

// ErrRounding is returned by Round when conditional rounding keeps failing,
// which happens with probability at most β^100.
var ErrRounding = errors.New("dp: conditional rounding did not meet its norm bound")

// Round scales x by 1/gamma and rounds each coordinate randomly to one of
// its two neighbouring integers, unbiasedly (up to 2^−53), retrying the whole
// vector until its L2 norm is at most bound (conditional randomized
// rounding, KLS 2021 §4.1; pass bound = +Inf for plain rounding). The
// rounding decisions use s's randomness; they are not noise and carry no
// privacy of their own, so they compare 53-bit uniforms with the float
// fractional parts.
func Round(s *Sampler, x []float64, gamma, bound float64) ([]int64, error) {
	if !(gamma > 0) || math.IsInf(gamma, 0) {
		return nil, fmt.Errorf("dp: grid step must be positive and finite, got %v", gamma)
	}
	out := make([]int64, len(x))
	for try := 0; try < 100; try++ {
		var norm2 float64
		for i, v := range x {
			y := v / gamma
			if math.IsNaN(y) || math.Abs(y) > 1<<62 {
				return nil, fmt.Errorf("dp: coordinate %d does not fit the grid (NaN or too large)", i)
			}
			f := math.Floor(y)
			r := int64(f)
			if u := float64(s.u64()>>11) * 0x1p-53; u < y-f {
				r++
			}
			out[i] = r
			norm2 += float64(r) * float64(r)
		}
		if math.Sqrt(norm2) <= bound {
			return out, nil
		}
	}
	return nil, ErrRounding
}

// A GridGaussian adds noise to float values without a float Gaussian: the
// value is randomly rounded to the grid γZ (γ a power of two) and
// γ·N_Z(0, (σ/γ)²) is added, so the output lies on the grid and its
// distribution is exactly a scaled discrete Gaussian around the rounded
// value (Mironov 2012 and Jin et al., S&P 2022, show what float samplers
// leak). Rounding moves a vector by at most γ√d in L2, which the caller
// must add to the sensitivity: see GridSensitivity.
type GridGaussian struct {
	gamma float64
	g     *DiscreteGaussian
}

// NewGridGaussian returns a GridGaussian with grid step 2^exp and noise σ.
func NewGridGaussian(sigma float64, exp int) (*GridGaussian, error) {
	if exp < -60 || exp > 20 {
		return nil, fmt.Errorf("dp: grid exponent %d outside [−60, 20]", exp)
	}
	gamma := math.Ldexp(1, exp)
	g, err := NewDiscreteGaussianSigma(sigma / gamma)
	if err != nil {
		return nil, err
	}
	return &GridGaussian{gamma: gamma, g: g}, nil
}

// Gamma returns the grid step.
func (n *GridGaussian) Gamma() float64 { return n.gamma }

// Add rounds every element of v to the grid and adds grid noise in place.
func (n *GridGaussian) Add(s *Sampler, v []float64) error {
	r, err := Round(s, v, n.gamma, math.Inf(1))
	if err != nil {
		return err
	}
	for i := range v {
		v[i] = float64(r[i]+n.g.Sample(s)) * n.gamma
	}
	return nil
}

// GridSensitivity returns the L2 sensitivity of a sum of vectors clipped to
// clip after rounding to a grid of step gamma in d dimensions: clip + γ√d.
func GridSensitivity(clip, gamma float64, d int) float64 {
	return clip + gamma*math.Sqrt(float64(d))
}
