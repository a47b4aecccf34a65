package dp

import (
	"errors"
	"fmt"
	"math"
	"testing"
)

// The quadrature used at fractional orders must agree with the exact
// binomial sum (MTZ 2019 §3.3) wherever both apply: at integer orders.
func TestFractionalQuadratureMatchesBinomialSum(t *testing.T) {
	for _, q := range []float64{1e-3, 0.01, 0.1, 0.5, 0.9} {
		for _, sigma := range []float64{0.3, 0.5, 1, 2.5, 10, 50} {
			for _, alpha := range []int{2, 3, 5, 8, 11, 20} {
				exact := logAInt(q, sigma, alpha)
				quad := logAFrac(q, sigma, float64(alpha))
				if d := math.Abs(quad-exact) / max(math.Abs(exact), 1e-300); d > 1e-9 && math.Abs(quad-exact) > 1e-13 {
					t.Errorf("q=%v σ=%v α=%d: quadrature %.15g, binomial sum %.15g", q, sigma, alpha, quad, exact)
				}
			}
		}
	}
}

// RDP must be nondecreasing in the order (Mironov 2017, Prop. 9) across the
// boundary between fractional and integer orders.
func TestRDPMonotoneInOrder(t *testing.T) {
	for _, e := range []Event{
		{GaussianMechanism, 0.5, 0.1, 1}, {GaussianMechanism, 1.1, 0.01, 1}, {GaussianMechanism, 4, 0.1, 1},
	} {
		c, err := RDPCurve(e, AddRemove, DefaultOrders)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(c); i++ {
			if c[i] < c[i-1]*(1-1e-12) {
				t.Errorf("%+v: RDP %.12g at order %v below %.12g at %v", e, c[i], DefaultOrders[i], c[i-1], DefaultOrders[i-1])
			}
		}
	}
}

func TestRDPComposition(t *testing.T) {
	// Heterogeneous rounds compose by adding curves: 3 steps then 7 steps
	// equals 10 steps.
	a := NewRDPAccountant(AddRemove)
	for _, n := range []int{3, 7} {
		if err := a.Compose(Event{GaussianMechanism, 1.1, 0.01, n}); err != nil {
			t.Fatal(err)
		}
	}
	b := NewRDPAccountant(AddRemove)
	b.Compose(Event{GaussianMechanism, 1.1, 0.01, 10})
	ea, _ := a.Epsilon(1e-5)
	eb, _ := b.Epsilon(1e-5)
	if math.Abs(ea-eb) > 1e-12*eb {
		t.Errorf("3+7 steps: ε = %v, 10 steps: ε = %v", ea, eb)
	}
	// Mixing mechanisms: more privacy loss than either alone.
	c := NewRDPAccountant(AddRemove)
	c.Compose(Event{GaussianMechanism, 1.1, 0.01, 10})
	c.Compose(Event{DiscreteGaussianMechanism, 5, 1, 2})
	ec, _ := c.Epsilon(1e-5)
	if !(ec > eb) {
		t.Errorf("adding rounds did not raise ε: %v then %v", eb, ec)
	}
}

func TestRDPReplaceOne(t *testing.T) {
	// Replace-one doubles the sensitivity: ε(z, replace) = ε(z/2, add-remove).
	r := NewRDPAccountant(ReplaceOne)
	if err := r.Compose(Event{GaussianMechanism, 4, 1, 10}); err != nil {
		t.Fatal(err)
	}
	a := NewRDPAccountant(AddRemove)
	a.Compose(Event{GaussianMechanism, 2, 1, 10})
	er, _ := r.Epsilon(1e-6)
	ea, _ := a.Epsilon(1e-6)
	if er != ea {
		t.Errorf("replace-one ε %v, add-remove at half the multiplier %v", er, ea)
	}
	if err := r.Compose(Event{GaussianMechanism, 4, 0.1, 10}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("replace-one with Poisson sampling: %v, want ErrUnsupported", err)
	}
}

func TestRDPRejectsBadInput(t *testing.T) {
	a := NewRDPAccountant(AddRemove)
	for _, e := range []Event{
		{GaussianMechanism, 0, 1, 1}, {GaussianMechanism, -1, 1, 1}, {GaussianMechanism, math.NaN(), 1, 1},
		{GaussianMechanism, math.Inf(1), 1, 1}, {GaussianMechanism, 1, 0, 1}, {GaussianMechanism, 1, 1.5, 1},
		{GaussianMechanism, 1, 1, 0}, {GaussianMechanism, 1, 1, -3}, {"laplace", 1, 1, 1},
		{DiscreteGaussianMechanism, 1, 0.5, 1},
	} {
		if err := a.Compose(e); err == nil {
			t.Errorf("Compose(%+v) accepted", e)
		}
	}
	for _, d := range []float64{0, -1, 1, 2, math.NaN()} {
		if _, err := a.Epsilon(d); err == nil {
			t.Errorf("Epsilon(δ=%v) accepted", d)
		}
	}
	if eps, _ := a.Epsilon(1e-5); eps != 0 {
		t.Errorf("empty accountant: ε = %v, want 0", eps)
	}
}

var sinkFloat float64

// BenchmarkRDP times one reference row end to end (curve over 156 orders,
// composition, conversion); the target is under 10 ms a row.
func BenchmarkRDP(b *testing.B) {
	for _, e := range []Event{
		{GaussianMechanism, 0.5, 0.1, 1000}, {GaussianMechanism, 1.1, 0.01, 1000}, {GaussianMechanism, 10, 0.01, 100},
		{GaussianMechanism, 1, 1, 1000},
	} {
		b.Run(fmt.Sprintf("z=%v/q=%v/T=%d", e.NoiseMultiplier, e.SamplingRate, e.Count), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				a := NewRDPAccountant(AddRemove)
				if err := a.Compose(e); err != nil {
					b.Fatal(err)
				}
				eps, _ := a.Epsilon(1e-5)
				sinkFloat += eps
			}
		})
	}
}
