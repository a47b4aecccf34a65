package dp

import (
	"errors"
	"math"
	"testing"
)

func pldEps(t *testing.T, n Neighbouring, delta float64, events ...Event) float64 {
	t.Helper()
	a, err := NewPLDAccountant(n, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if err := a.Compose(e); err != nil {
			t.Fatal(err)
		}
	}
	eps, err := a.Epsilon(delta)
	if err != nil {
		t.Fatal(err)
	}
	return eps
}

// Composing events one by one (linear FFT convolutions) must agree with one
// event of the summed count (one FFT raised to a power).
func TestPLDCompositionPaths(t *testing.T) {
	one := pldEps(t, AddRemove, 1e-5, Event{GaussianMechanism, 1, 0.05, 40})
	split := pldEps(t, AddRemove, 1e-5, Event{GaussianMechanism, 1, 0.05, 25}, Event{GaussianMechanism, 1, 0.05, 15})
	if math.Abs(one-split) > 1e-3*one {
		t.Errorf("40 steps: ε = %v; 25 + 15 steps: ε = %v", one, split)
	}
}

// A mix of unsampled (closed-form) and subsampled (gridded) rounds: ε must
// exceed each part alone and stay below RDP's bound for the same mix.
func TestPLDHeterogeneous(t *testing.T) {
	g := Event{GaussianMechanism, 3, 1, 20}
	s := Event{GaussianMechanism, 1.1, 0.01, 200}
	both := pldEps(t, AddRemove, 1e-6, g, s)
	eg := pldEps(t, AddRemove, 1e-6, g)
	es := pldEps(t, AddRemove, 1e-6, s)
	if !(both > eg && both > es) {
		t.Errorf("ε(mix) = %v, ε(gaussian) = %v, ε(subsampled) = %v", both, eg, es)
	}
	r := NewRDPAccountant(AddRemove)
	r.Compose(g)
	r.Compose(s)
	er, _ := r.Epsilon(1e-6)
	if both > er {
		t.Errorf("PLD ε %v above RDP ε %v for the same rounds", both, er)
	}
}

func TestPLDReplaceOneAndUnsupported(t *testing.T) {
	r := pldEps(t, ReplaceOne, 1e-5, Event{GaussianMechanism, 4, 1, 10})
	a := pldEps(t, AddRemove, 1e-5, Event{GaussianMechanism, 2, 1, 10})
	if math.Abs(r-a) > 1e-12*a {
		t.Errorf("replace-one at z=4: ε = %v; add-remove at z=2: ε = %v", r, a)
	}
	acc, _ := NewPLDAccountant(ReplaceOne, 0)
	if err := acc.Compose(Event{GaussianMechanism, 4, 0.5, 10}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("replace-one with sampling: %v", err)
	}
	acc, _ = NewPLDAccountant(AddRemove, 0)
	if err := acc.Compose(Event{DiscreteGaussianMechanism, 4, 1, 10}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("discrete Gaussian in PLD: %v", err)
	}
	for _, iv := range []float64{-1, 0.5, math.NaN()} {
		if _, err := NewPLDAccountant(AddRemove, iv); err == nil {
			t.Errorf("interval %v accepted", iv)
		}
	}
	if eps, _ := acc.Epsilon(1e-5); eps != 0 {
		t.Errorf("empty accountant: ε = %v", eps)
	}
}

// PLD is tighter than RDP on every reference row (dp-vectors README).
func TestPLDBelowRDP(t *testing.T) {
	for _, row := range vectorRows(t, "pld.csv") {
		if row["steps"] == "1000" {
			continue // keep the default run short; the vectors test covers them
		}
		e := rowEvent(t, row)
		d := num(t, row, "delta")
		p := pldEps(t, AddRemove, d, e)
		r := NewRDPAccountant(AddRemove)
		r.Compose(e)
		er, _ := r.Epsilon(d)
		if p > er*(1+1e-9) {
			t.Errorf("%s: PLD ε %v above RDP ε %v", rowName(row), p, er)
		}
	}
}

// Across extreme parameters both accountants return finite answers, PLD
// never above RDP (it is the tighter analysis) and never NaN.
func TestAccountantsAtExtremes(t *testing.T) {
	for _, z := range []float64{0.01, 0.05, 0.3, 3, 100} {
		for _, q := range []float64{0.001, 0.5, 0.99, 1} {
			for _, steps := range []int{1, 7, 300} {
				e := Event{GaussianMechanism, z, q, steps}
				r, err := Epsilon(RDP, AddRemove, 1e-6, e)
				if err != nil {
					t.Fatal(err)
				}
				p, err := Epsilon(PLD, AddRemove, 1e-6, e)
				if err != nil {
					t.Fatal(err)
				}
				if math.IsNaN(r) || math.IsNaN(p) || p > r*(1+1e-9)+1e-12 || p < 0 {
					t.Errorf("z=%v q=%v T=%d: RDP ε %v, PLD ε %v", z, q, steps, r, p)
				}
			}
		}
	}
}
