package fl

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/fl-secure/fl-secure/dp"
)

// Stats are a site's feature sums for federated standardization: counts,
// sums and sums of squares are added across sites (securely, by the round
// code) and Standardizer turns the totals into means and deviations.
type Stats struct {
	Count float64
	Sum   []float64
	SumSq []float64
}

// LocalStats returns a site's Stats.
func LocalStats(d *Dataset) Stats {
	s := Stats{Count: float64(d.Rows()), Sum: make([]float64, d.Dim()), SumSq: make([]float64, d.Dim())}
	for _, x := range d.X {
		for j, v := range x {
			s.Sum[j] += v
			s.SumSq[j] += v * v
		}
	}
	return s
}

// Vector flattens s as [count, sums…, sums of squares…], the form that is
// aggregated.
func (s Stats) Vector() []float64 {
	return append(append([]float64{s.Count}, s.Sum...), s.SumSq...)
}

// StatsFromVector is the inverse of Vector for d features.
func StatsFromVector(v []float64, d int) (Stats, error) {
	if len(v) != 1+2*d {
		return Stats{}, fmt.Errorf("fl: statistics vector of length %d for %d features", len(v), d)
	}
	return Stats{Count: v[0], Sum: v[1 : 1+d], SumSq: v[1+d:]}, nil
}

// A Standardizer maps features to zero mean and unit variance.
type Standardizer struct{ Mean, Scale []float64 }

// NewStandardizer builds a Standardizer from summed Stats.
func NewStandardizer(s Stats) (*Standardizer, error) {
	if !(s.Count >= 2) {
		return nil, fmt.Errorf("fl: standardization from %v rows", s.Count)
	}
	st := &Standardizer{Mean: make([]float64, len(s.Sum)), Scale: make([]float64, len(s.Sum))}
	for j := range s.Sum {
		m := s.Sum[j] / s.Count
		v := s.SumSq[j]/s.Count - m*m
		st.Mean[j] = m
		st.Scale[j] = 1
		if v > 1e-12 {
			st.Scale[j] = math.Sqrt(v)
		}
	}
	return st, nil
}

// Apply returns a standardized copy of d.
func (st *Standardizer) Apply(d *Dataset) *Dataset {
	out := *d
	out.X = make([][]float64, len(d.X))
	for i, x := range d.X {
		z := make([]float64, len(x))
		for j, v := range x {
			z[j] = (v - st.Mean[j]) / st.Scale[j]
		}
		out.X[i] = z
	}
	return &out
}

// TrainConfig is one site's local training in a round.
type TrainConfig struct {
	Epochs       int     // passes over the local data (plain SGD)
	BatchSize    int     // mini-batch size (plain SGD)
	LearningRate float64 // step size
	// ProxMu > 0 adds the FedProx term μ/2·‖w − w_global‖² (Li et al.,
	// "Federated Optimization in Heterogeneous Networks", MLSys 2020).
	ProxMu float64
	Seed   uint64
}

// LocalSGD trains from global on d with mini-batch SGD and returns the
// update (trained − global) and the mean training loss of the last epoch.
func LocalSGD(m Model, global []float64, d *Dataset, cfg TrainConfig) ([]float64, float64, error) {
	if cfg.Epochs < 1 || cfg.BatchSize < 1 || !(cfg.LearningRate > 0) {
		return nil, 0, fmt.Errorf("fl: bad training configuration %+v", cfg)
	}
	if len(global) != m.NumParams() {
		return nil, 0, fmt.Errorf("fl: %d parameters for a %s model of %d", len(global), m.Name(), m.NumParams())
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x56d))
	w := append([]float64(nil), global...)
	g := make([]float64, len(w))
	var loss float64
	for ep := 0; ep < cfg.Epochs; ep++ {
		perm := rng.Perm(d.Rows())
		loss = 0
		for start := 0; start < len(perm); start += cfg.BatchSize {
			batch := perm[start:min(start+cfg.BatchSize, len(perm))]
			clear(g)
			for _, i := range batch {
				loss += m.Grad(w, d.X[i], d.Y[i], g)
			}
			scale := cfg.LearningRate / float64(len(batch))
			for k := range w {
				step := g[k] * scale
				if cfg.ProxMu > 0 {
					step += cfg.LearningRate * cfg.ProxMu * (w[k] - global[k])
				}
				w[k] -= step
			}
		}
		loss /= float64(d.Rows())
	}
	for k := range w {
		w[k] -= global[k]
	}
	return w, loss, nil
}

// ClippedGradientSum draws a Poisson sample of d's rows with rate q and
// returns the sum of their per-example gradients at w, each clipped to L2
// norm clip (Abadi et al., CCS 2016, Alg. 1), with the clipping
// statistics. Summed over sites and noised once, it is one step of DP-SGD
// over the union of the sites' data, accounted as the Poisson-subsampled
// Gaussian with rate q. The sampling uses crypto-grade randomness from s:
// which records were used is part of what DP hides.
func ClippedGradientSum(m Model, w []float64, d *Dataset, q, clip float64, s *dp.Sampler) ([]float64, dp.ClipStats, error) {
	var st dp.ClipStats
	if !(q > 0 && q <= 1) {
		return nil, st, fmt.Errorf("fl: sampling rate %v outside (0, 1]", q)
	}
	sum := make([]float64, m.NumParams())
	g := make([]float64, m.NumParams())
	for i := range d.Y {
		if q < 1 && !s.Bernoulli(q) {
			continue
		}
		clear(g)
		m.Grad(w, d.X[i], d.Y[i], g)
		if !finite(g) {
			// An overflow at extreme weights or features: this record
			// contributes nothing, which, like any clipped gradient, moves
			// the sum by at most clip. Failing instead would make the
			// outcome of a round depend on one record.
			continue
		}
		if err := dp.ClipL2(g, clip, &st); err != nil {
			continue // as above: this record contributes nothing
		}
		for k, v := range g {
			sum[k] += v
		}
	}
	return sum, st, nil
}

// Metrics evaluates a model on a data set.
type Metrics struct {
	Accuracy float64 `json:"accuracy,omitempty"`
	// AUC is the ROC AUC: of the positive class for a binary label, the
	// one-vs-rest macro average over the classes for more (Hand and Till
	// 2001 discuss both). NoAUC, when set, says why there is none (a test
	// set of one class) and AUC is 0.
	AUC     float64 `json:"auc,omitempty"`
	NoAUC   string  `json:"no_auc,omitempty"`
	LogLoss float64 `json:"log_loss,omitempty"`
	RMSE    float64 `json:"rmse,omitempty"`
	R2      float64 `json:"r2,omitempty"`
}

// Evaluate computes accuracy, ROC AUC (binary, or one-vs-rest macro AUC
// for more classes) and log loss for classification, RMSE and R² for
// regression.
func Evaluate(m Model, w []float64, d *Dataset) (Metrics, error) {
	if d.Rows() == 0 {
		return Metrics{}, errors.New("fl: evaluation on no rows")
	}
	out := make([]float64, m.Outputs())
	var r Metrics
	n := float64(d.Rows())
	switch d.Task {
	case Regression:
		var sse, mean, sst float64
		for _, y := range d.Y {
			mean += y / n
		}
		for i, x := range d.X {
			m.Predict(w, x, out)
			e := out[0] - d.Y[i]
			sse += e * e
			sst += (d.Y[i] - mean) * (d.Y[i] - mean)
		}
		r.RMSE = math.Sqrt(sse / n)
		if sst > 0 {
			r.R2 = 1 - sse/sst
		}
	default:
		scores := make([]float64, d.Rows())
		var probs [][]float64 // per row, for more than two classes
		var correct, ll float64
		for i, x := range d.X {
			m.Predict(w, x, out)
			y := int(d.Y[i])
			var p float64
			pred := 0
			if len(out) == 1 {
				p = out[0]
				if y == 0 {
					p = 1 - out[0]
				}
				if out[0] >= 0.5 {
					pred = 1
				}
				scores[i] = out[0]
			} else {
				p = out[y]
				for k := range out {
					if out[k] > out[pred] {
						pred = k
					}
				}
				scores[i] = out[min(1, len(out)-1)]
				if d.Classes > 2 {
					probs = append(probs, append([]float64(nil), out...))
				}
			}
			if pred == y {
				correct++
			}
			ll -= math.Log(math.Max(p, 1e-15))
		}
		r.Accuracy = correct / n
		r.LogLoss = ll / n
		switch {
		case d.Classes == 2:
			r.AUC = auc(scores, d.Y)
		case probs != nil:
			r.AUC = macroAUC(probs, d.Y)
		}
		if math.IsNaN(r.AUC) {
			r.AUC, r.NoAUC = 0, "the evaluation set holds one class only"
		}
	}
	return r, nil
}

// macroAUC is the one-vs-rest macro-averaged ROC AUC of class
// probabilities probs against labels y: the mean over the classes present
// (with both positives and negatives) of the AUC of that class's
// probability separating it from the rest; NaN if no class qualifies.
func macroAUC(probs [][]float64, y []float64) float64 {
	classes := len(probs[0])
	scores := make([]float64, len(y))
	pos := make([]float64, len(y))
	sum, n := 0.0, 0
	for k := range classes {
		for i := range y {
			scores[i] = probs[i][k]
			pos[i] = 0
			if int(y[i]) == k {
				pos[i] = 1
			}
		}
		if a := auc(scores, pos); !math.IsNaN(a) {
			sum += a
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / float64(n)
}

// auc is the ROC AUC by the rank-sum (Mann–Whitney) formula, ties counted
// half.
func auc(scores, y []float64) float64 {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return scores[idx[a]] < scores[idx[b]] })
	var rankPos, npos float64
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && scores[idx[j]] == scores[idx[i]] {
			j++
		}
		r := float64(i+j+1) / 2 // average 1-based rank of the tie group
		for k := i; k < j; k++ {
			if y[idx[k]] == 1 {
				rankPos += r
				npos++
			}
		}
		i = j
	}
	nneg := float64(len(y)) - npos
	if npos == 0 || nneg == 0 {
		return math.NaN()
	}
	return (rankPos - npos*(npos+1)/2) / (npos * nneg)
}

// finite reports whether every value of v is finite.
func finite(v []float64) bool {
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}
