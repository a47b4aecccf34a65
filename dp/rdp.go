package dp

import (
	"fmt"
	"math"
	"slices"
)

// DefaultOrders are the Rényi orders the RDP accountant evaluates: those of
// dp_accounting's RdpAccountant (1.1 to 10.9 by 0.1, 11 to 63, 128, 256, 512,
// 1024), so that results compare order for order.
var DefaultOrders = func() []float64 {
	var o []float64
	for x := 1; x < 100; x++ {
		o = append(o, 1+float64(x)/10)
	}
	for a := 11; a < 64; a++ {
		o = append(o, float64(a))
	}
	return append(o, 128, 256, 512, 1024)
}()

// rdpStep returns the RDP of one step of e at order alpha > 1, under
// neighbouring relation n (already checked by checkRelation).
func rdpStep(e Event, n Neighbouring, alpha float64) float64 {
	z := effectiveMultiplier(e, n)
	q := e.SamplingRate
	if q == 1 {
		// Gaussian: D_α(N(Δ, σ²) ‖ N(0, σ²)) = αΔ²/(2σ²) (Mironov 2017,
		// Prop. 7). Discrete Gaussian: the same value bounds it for integer
		// shifts (CKS 2020, Thm. 4), and for a sum of discrete Gaussians z is
		// the effective multiplier of KLS 2021, Thm. 1.
		return alpha / (2 * z * z)
	}
	if alpha == math.Trunc(alpha) && alpha <= 1<<20 {
		return logAInt(q, z, int(alpha)) / (alpha - 1)
	}
	if quadPanels(z, alpha) > maxPanels {
		// Too peaked to integrate cheaply (z below about 0.05): RDP is
		// nondecreasing in the order (Mironov 2017, Prop. 9), so the exact
		// value at the next integer order is a valid upper bound.
		c := math.Ceil(alpha)
		return logAInt(q, z, int(c)) / (c - 1)
	}
	return logAFrac(q, z, alpha) / (alpha - 1)
}

// logAInt returns log A_α for integer α ≥ 2, where the RDP of the
// Poisson-subsampled Gaussian is log(A_α)/(α−1) (Mironov, Talwar, Zhang,
// "Rényi Differential Privacy of the Sampled Gaussian Mechanism", 2019,
// §3.3, integer case):
//
//	A_α = Σ_{i=0}^{α} C(α, i) (1−q)^{α−i} q^i exp((i² − i)/(2σ²)).
//
// Every term is positive, so the sum is computed in log space without
// cancellation.
func logAInt(q, sigma float64, alpha int) float64 {
	lq, l1q := math.Log(q), math.Log1p(-q)
	s2 := 2 * sigma * sigma
	terms := make([]float64, alpha+1)
	lbinom := 0.0 // log C(α, 0)
	for i := 0; i <= alpha; i++ {
		fi := float64(i)
		terms[i] = lbinom + fi*lq + float64(alpha-i)*l1q + (fi*fi-fi)/s2
		lbinom += math.Log(float64(alpha-i)) - math.Log(fi+1)
	}
	return logSumExp(terms)
}

func logSumExp(x []float64) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = max(m, v)
	}
	if math.IsInf(m, -1) {
		return m
	}
	var s float64
	for _, v := range x {
		s += math.Exp(v - m)
	}
	return m + math.Log(s)
}

// logAFrac returns log A_α for fractional α > 1, where
//
//	A_α = E_{z ~ N(0, σ²)} [ (1 − q + q·exp((2z − 1)/(2σ²)))^α ]
//
// is the quantity MTZ 2019 (§3.3) define and expand into two series. Those
// series converge only polynomially when σ is small (the k-th term decays like
// k^−(α+1), which is why dp_accounting caps them at 1000 terms and drops
// orders that have not converged), so fl-secure evaluates the same integral
// directly: composite 16-point Gauss–Legendre quadrature in log space over
// panels of width at most σ/2 and σ²/2, covering both modes of the integrand
// (near 0 and near α) out to 10σ. The panels resolve the integrand's
// curvature, so the relative error is far below 1e-12; tests check it
// against the exact binomial sum at integer orders.
func logAFrac(q, sigma, alpha float64) float64 {
	s2 := sigma * sigma
	lq, l1q := math.Log(q), math.Log1p(-q)
	lnorm := math.Log(sigma * math.Sqrt(2*math.Pi))
	// log integrand.
	f := func(z float64) float64 {
		u := (2*z - 1) / (2 * s2)
		// log(1 − q + q·e^u) = logaddexp(log(1−q), log q + u)
		a, b := l1q, lq+u
		if a < b {
			a, b = b, a
		}
		return -z*z/(2*s2) - lnorm + alpha*(a+math.Log1p(math.Exp(b-a)))
	}
	lo, hi := quadRange(sigma, alpha)
	n := quadPanels(sigma, alpha)
	w := (hi - lo) / float64(n)
	// Scan the panel edges and midpoints for the maximum; panels whose three
	// sample points all lie e^−45 below it are skipped. The panels are
	// narrower than the integrand's curvature scale, so a skipped panel
	// contributes less than 1e-19 of the integral.
	edges := make([]float64, 2*n+1)
	m := math.Inf(-1)
	for i := range edges {
		edges[i] = f(lo + float64(i)*w/2)
		m = max(m, edges[i])
	}
	var sum float64
	for p := 0; p < n; p++ {
		if max(edges[2*p], edges[2*p+1], edges[2*p+2]) < m-45 {
			continue
		}
		mid := lo + (float64(p)+0.5)*w
		var ps float64
		for k, x := range glNodes {
			ps += glWeights[k] * math.Exp(f(mid+x*w/2)-m)
		}
		sum += ps * w / 2
	}
	return m + math.Log(sum)
}

// maxPanels bounds the quadrature's work per order.
const maxPanels = 20000

func quadRange(sigma, alpha float64) (lo, hi float64) {
	return -10*sigma - 1, alpha + 10*sigma + 1
}

// quadPanels returns the number of panels of width at most min(σ, σ²)/2
// that cover quadRange.
func quadPanels(sigma, alpha float64) int {
	lo, hi := quadRange(sigma, alpha)
	return int(math.Ceil((hi - lo) / (min(sigma, sigma*sigma) / 2)))
}

// 16-point Gauss–Legendre nodes and weights on [−1, 1] (Abramowitz and
// Stegun, Table 25.4).
var glNodes, glWeights = func() ([]float64, []float64) {
	half := [][2]float64{
		{0.0950125098376374, 0.1894506104550685},
		{0.2816035507792589, 0.1826034150449236},
		{0.4580167776572274, 0.1691565193950025},
		{0.6178762444026438, 0.1495959888165767},
		{0.7554044083550030, 0.1246289712555339},
		{0.8656312023878318, 0.0951585116824928},
		{0.9445750230732326, 0.0622535239386479},
		{0.9894009349916499, 0.0271524594117541},
	}
	var x, w []float64
	for _, p := range half {
		x = append(x, -p[0], p[0])
		w = append(w, p[1], p[1])
	}
	return x, w
}()

// rdpToEpsilon converts an RDP curve to (ε, δ)-DP: the smallest over orders α
// of
//
//	ε = r(α) + log((α−1)/α) − (log δ + log α)/(α − 1),
//
// Canonne, Kamath, Steinke 2020, Prop. 12 (as in dp_accounting; orders at or
// below 1.01 are skipped there and here). It returns the ε and its order.
func rdpToEpsilon(orders, rdp []float64, delta float64) (float64, float64) {
	best, bestOrder := math.Inf(1), math.NaN()
	for i, a := range orders {
		r := rdp[i]
		if r < 0 || math.IsNaN(r) {
			continue
		}
		var eps float64
		switch {
		case delta*delta+math.Expm1(-r) > 0:
			// δ ≥ √(1 − e^{−r}): the pair is (0, δ)-DP already (total
			// variation bound from Rényi divergence).
			eps = 0
		case a > 1.01:
			eps = r + math.Log1p(-1/a) - math.Log(delta*a)/(a-1)
		default:
			eps = math.Inf(1)
		}
		if eps < best {
			best, bestOrder = eps, a
		}
	}
	return max(best, 0), bestOrder
}

// An RDPAccountant composes events by adding their Rényi curves order by
// order (Mironov 2017, Prop. 1) and converts to (ε, δ) with CKS 2020 Prop. 12.
//
// Fractional orders of subsampled events cost a numerical integral each, so
// they are evaluated only when they could win: Rényi divergence is
// nondecreasing in the order (Mironov 2017, Prop. 9), so r(α) ≥ r(⌊α⌋), and
// an order whose conversion with r(⌊α⌋) in place of r(α) is already no
// better than the best ε found is skipped. The minimum is the same as over
// all orders; only the work differs.
type RDPAccountant struct {
	relation Neighbouring
	orders   []float64
	groups   []Event   // composed events, identical ones merged
	total    []float64 // composed RDP per order; NaN where not yet evaluated
}

// NewRDPAccountant returns an empty RDP accountant for relation n over
// DefaultOrders.
func NewRDPAccountant(n Neighbouring) *RDPAccountant {
	return &RDPAccountant{relation: n, orders: slices.Clone(DefaultOrders), total: make([]float64, len(DefaultOrders))}
}

// Name returns "rdp".
func (a *RDPAccountant) Name() string { return "rdp" }

// Relation returns the neighbouring relation of a's guarantees.
func (a *RDPAccountant) Relation() Neighbouring { return a.relation }

// Compose adds e to the accountant, or returns an error and leaves it
// unchanged.
func (a *RDPAccountant) Compose(e Event) error {
	if err := checkEvent(e, a.relation); err != nil {
		return err
	}
	merged := false
	for i, g := range a.groups {
		if g.Mechanism == e.Mechanism && g.NoiseMultiplier == e.NoiseMultiplier && g.SamplingRate == e.SamplingRate {
			if g.Count+e.Count > maxCount {
				return fmt.Errorf("dp: more than 2^30 steps of one event")
			}
			a.groups[i].Count += e.Count
			merged = true
		}
	}
	if !merged {
		a.groups = append(a.groups, e)
	}
	for i, alpha := range a.orders {
		switch {
		case math.IsNaN(a.total[i]):
			// Not evaluated yet; at() sums all groups when asked.
		case e.SamplingRate < 1 && alpha != math.Trunc(alpha):
			// An integral: defer it until EpsilonAndOrder needs this order.
			a.total[i] = math.NaN()
		default:
			a.total[i] += float64(e.Count) * rdpStep(e, a.relation, alpha)
		}
	}
	return nil
}

// at returns the composed RDP at order index i, evaluating it if needed.
func (a *RDPAccountant) at(i int) float64 {
	if math.IsNaN(a.total[i]) {
		var r float64
		for _, g := range a.groups {
			r += float64(g.Count) * rdpStep(g, a.relation, a.orders[i])
		}
		a.total[i] = r
	}
	return a.total[i]
}

// Epsilon returns the ε of everything composed so far at δ.
func (a *RDPAccountant) Epsilon(delta float64) (float64, error) {
	eps, _, err := a.EpsilonAndOrder(delta)
	return eps, err
}

// EpsilonAndOrder is Epsilon that also reports the optimal Rényi order.
func (a *RDPAccountant) EpsilonAndOrder(delta float64) (eps, order float64, err error) {
	if err := checkDelta(delta); err != nil {
		return 0, 0, err
	}
	// Integer orders first: they are exact sums and cheap.
	best, bestOrder := math.Inf(1), math.NaN()
	for i, alpha := range a.orders {
		if alpha == math.Trunc(alpha) {
			if e, o := rdpToEpsilon(a.orders[i:i+1], []float64{a.at(i)}, delta); e < best {
				best, bestOrder = e, o
			}
		}
	}
	for i, alpha := range a.orders {
		if alpha == math.Trunc(alpha) {
			continue
		}
		if math.IsNaN(a.total[i]) {
			// Lower bound from the integer order below (or 0 below 2).
			lb := 0.0
			if fl := math.Floor(alpha); fl >= 2 {
				lb = a.at(slices.Index(a.orders, fl))
			}
			if e, _ := rdpToEpsilon([]float64{alpha}, []float64{lb}, delta); e >= best {
				continue
			}
		}
		if e, o := rdpToEpsilon(a.orders[i:i+1], []float64{a.at(i)}, delta); e < best {
			best, bestOrder = e, o
		}
	}
	return max(best, 0), bestOrder, nil
}

func checkEvent(e Event, n Neighbouring) error {
	if err := e.Validate(); err != nil {
		return err
	}
	if err := checkRelation(e, n); err != nil {
		return err
	}
	if e.Mechanism == DiscreteGaussianMechanism && e.SamplingRate < 1 {
		return fmt.Errorf("%w: Poisson-sampled discrete Gaussian (rate %v): its concentrated-DP bound does not carry MTZ 2019's subsampling analysis; sample every participant (rate 1)", ErrUnsupported, e.SamplingRate)
	}
	return nil
}

// RDPCurve returns the Rényi DP of e (all its Count steps) at each order.
func RDPCurve(e Event, n Neighbouring, orders []float64) ([]float64, error) {
	if err := checkEvent(e, n); err != nil {
		return nil, err
	}
	out := make([]float64, len(orders))
	for i, a := range orders {
		if !(a > 1) {
			return nil, fmt.Errorf("dp: Rényi order %v is not above 1", a)
		}
		out[i] = float64(e.Count) * rdpStep(e, n, a)
	}
	return out, nil
}

func checkDelta(delta float64) error {
	if !(delta > 0 && delta < 1) {
		return fmt.Errorf("dp: δ must be in (0, 1), got %v", delta)
	}
	return nil
}
