package fl

import (
	"errors"
	"fmt"
	"math"
)

// The statistics release: what a federation learns about its data before
// training, through the same noised secure sum as a training round.
//
// Each value x of feature j (and, for regression, of the label, as a last
// feature) is clipped to its public range [lo_j, hi_j] and mapped to
//
//	u_j = (clip(x) − mid_j) / halfwidth_j ∈ [−1, 1].
//
// One record contributes the vector
//
//	(w, u_1, …, u_D, u_1² − ½, …, u_D² − ½),   w = StatsWeight(D),
//
// whose L2 norm is at most StatsBound(D) = √(w² + 5D/4) whatever the data
// and whatever ranges are used: for t = u² ∈ [0, 1], t + (t − ½)² is
// convex, so at most max(¼, 5/4) = 5/4 per feature. Adding or removing one
// record moves a sum of such vectors by at most StatsBound(D) in L2: that
// is the sensitivity the noise is calibrated to. Centring the squares at ½
// lowers the bound from √(w² + 2D) to √(w² + 5D/4).
//
// At client level a site contributes the average of its records' vectors,
// of norm at most StatsBound(D) too (a ball is convex): replacing it by
// zero moves the sum by at most that.

// StatsLength returns the length of a statistics vector over d features.
func StatsLength(d int) int { return 1 + 2*d }

// StatsFeatures returns the features of a statistics vector of length n,
// or an error if n is no such length.
func StatsFeatures(n int) (int, error) {
	if n < 3 || n%2 != 1 {
		return 0, fmt.Errorf("fl: a statistics vector of length %d (want 1 + 2d, d ≥ 1)", n)
	}
	return (n - 1) / 2, nil
}

// StatsWeight is the weight w of the count coordinate over d features:
// max(1, √d / 2). The count is read as (sum of that coordinate) / w, so a
// larger w gives it less noise at the cost of a larger bound.
func StatsWeight(d int) float64 { return math.Max(1, math.Sqrt(float64(d))/2) }

// StatsBound returns the L2 bound of one record's statistics vector over d
// features, √(w² + 5d/4).
func StatsBound(d int) float64 {
	w := StatsWeight(d)
	return math.Sqrt(w*w + 1.25*float64(d))
}

// ClippedStats returns a site's statistics vector over the columns of d
// (with the label last for regression, as WithLabel): the sum of its
// records' vectors, or with average set (client level) their mean. mid
// and half are the ranges' midpoints and half-widths: any finite values
// with half > 0; the vector's norm bound holds whatever they are.
func ClippedStats(d *Dataset, mid, half []float64, average bool) ([]float64, error) {
	d = WithLabel(d)
	dim := d.Dim()
	if len(mid) != dim || len(half) != dim {
		return nil, fmt.Errorf("fl: ranges for %d columns, the data has %d", len(mid), dim)
	}
	for j := range mid {
		if math.IsNaN(mid[j]) || math.IsInf(mid[j], 0) || !(half[j] > 0) || math.IsInf(half[j], 0) {
			return nil, fmt.Errorf("fl: range %d has midpoint %v and half-width %v", j+1, mid[j], half[j])
		}
	}
	v := make([]float64, StatsLength(dim))
	w := StatsWeight(dim)
	for _, x := range d.X {
		v[0] += w
		for j, xj := range x {
			u := (xj - mid[j]) / half[j]
			if math.IsNaN(u) {
				u = 0 // a missing value contributes the midpoint
			}
			u = math.Max(-1, math.Min(1, u))
			v[1+j] += u
			v[1+dim+j] += u*u - 0.5
		}
	}
	if average && len(d.X) > 0 {
		for i := range v {
			v[i] /= float64(len(d.X))
		}
	}
	return v, nil
}

// StatsEstimate is what a federation standardizes with, estimated from a
// released statistics sum.
type StatsEstimate struct {
	Mean, Scale []float64
	// Count is the estimated number of records (the count coordinate over
	// w, at least 1); CountSigma is the σ of its noise.
	Count, CountSigma float64
}

// EstimateStats turns a released statistics sum v into means and scales
// in the data's units. divisor is what the sums are divided by: the
// estimated count of records (record level; 0 to use v's own count) or
// the public number of contributors (client level). sigma is the σ of the
// noise in each coordinate of v (0 without noise). Every estimate is
// clamped into what clipped data can produce: means (shrunk toward the
// midpoint as far as the noise warrants) inside the range,
// variances between a floor and the Bhatia–Davis bound (1 − m²) in u
// units. The floor is min(1, max(noise, (1/64)²)) where noise is the standard
// deviation of the variance estimate, so a variance the noise cannot
// resolve is not taken for a tiny one (which would blow the feature up).
// This is post-processing of the release and costs no privacy.
func EstimateStats(v, mid, half []float64, divisor, sigma float64) (*StatsEstimate, error) {
	dim, err := StatsFeatures(len(v))
	if err != nil {
		return nil, err
	}
	if len(mid) != dim || len(half) != dim {
		return nil, fmt.Errorf("fl: ranges for %d columns, the statistics %d", len(mid), dim)
	}
	if sigma < 0 || math.IsNaN(sigma) || divisor < 0 || math.IsNaN(divisor) {
		return nil, errors.New("fl: negative or NaN noise or divisor")
	}
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, errors.New("fl: the statistics hold NaN or infinite values")
		}
	}
	w := StatsWeight(dim)
	est := &StatsEstimate{Count: math.Max(v[0]/w, 1), CountSigma: sigma / w, Mean: make([]float64, dim), Scale: make([]float64, dim)}
	n := divisor
	if n == 0 {
		n = est.Count
	}
	n = math.Max(n, 1)
	noise := sigma / n
	// A mean in u units is shrunk toward the midpoint by the factor of a
	// uniform prior on [−1, 1] (variance 1/3) against the noise's variance:
	// negligible when the noise is small (record level), but a release the
	// noise swamps (client level, few hospitals) falls back to the public
	// midpoint instead of an edge of the range.
	shrink := (1.0 / 3) / (1.0/3 + noise*noise)
	for j := 0; j < dim; j++ {
		m := math.Max(-1, math.Min(1, shrink*v[1+j]/n))
		q := math.Max(0, math.Min(1, v[1+dim+j]/n+0.5))
		floor := math.Min(math.Max(noise*math.Sqrt(1+4*m*m), 1.0/4096), 1)
		vr := math.Min(math.Max(q-m*m, floor), math.Max(1-m*m, floor))
		est.Mean[j] = mid[j] + half[j]*m
		est.Scale[j] = half[j] * math.Sqrt(vr)
	}
	return est, nil
}
