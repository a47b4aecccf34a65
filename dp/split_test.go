package dp

import (
	"errors"
	"math"
	"testing"
)

// TestSplitCalibrate checks that one statistics release and R training
// rounds compose to at most the target under the ledger's accountant,
// that the statistics take the given share of ρ, and that the training
// rounds alone cost what a run without statistics at (1 − share)·ρ would.
func TestSplitCalibrate(t *testing.T) {
	for _, tc := range []struct {
		eps, delta float64
		rounds     int
		share      float64
	}{
		{3, 1e-5, 30, 0.1}, {3, 1e-5, 30, 0}, {1, 1e-6, 5, 0.5}, {8, 1e-5, 100, 0.02}, {0.5, 1e-5, 1, 0.9},
	} {
		s, err := SplitCalibrate(tc.eps, tc.delta, tc.rounds, tc.share)
		if err != nil {
			t.Fatal(err)
		}
		// Composition, recomputed from the events as a ledger would.
		eps, err := Epsilon(RDP, AddRemove, tc.delta, mergeEvents(s.Events(tc.rounds))...)
		if err != nil {
			t.Fatal(err)
		}
		if eps > tc.eps || s.Epsilon != eps {
			t.Errorf("%+v: the run composes to ε = %v (reported %v), target %v", tc, eps, s.Epsilon, tc.eps)
		}
		if eps < tc.eps*0.999 {
			t.Errorf("%+v: ε = %v wastes the budget %v", tc, eps, tc.eps)
		}
		// The share is of ρ = 1/(2z²).
		rhoS := 0.0
		if s.StatisticsMultiplier > 0 {
			rhoS = 1 / (2 * s.StatisticsMultiplier * s.StatisticsMultiplier)
		}
		rhoT := float64(tc.rounds) / (2 * s.TrainingMultiplier * s.TrainingMultiplier)
		if math.Abs(rhoS/(rhoS+rhoT)-tc.share) > 1e-6 {
			t.Errorf("%+v: the statistics take %v of ρ", tc, rhoS/(rhoS+rhoT))
		}
		if math.Abs((rhoS+rhoT)/s.Rho-1) > 1e-6 {
			t.Errorf("%+v: ρ %v + %v is not the run's %v", tc, rhoS, rhoT, s.Rho)
		}
		if tc.share == 0 && (s.StatisticsMultiplier != 0 || s.StatisticsEpsilon != 0 || len(s.Events(tc.rounds)) != 1) {
			t.Errorf("share 0 has a statistics release: %+v", s)
		}
		if tc.share > 0 && !(s.StatisticsEpsilon > 0 && s.StatisticsEpsilon < eps && s.TrainingEpsilon < eps) {
			t.Errorf("%+v: statistics ε %v, training ε %v, total %v", tc, s.StatisticsEpsilon, s.TrainingEpsilon, eps)
		}
	}
}

func TestSplitCalibrateRefuses(t *testing.T) {
	for _, tc := range []struct {
		eps    float64
		rounds int
		share  float64
	}{
		{3, 30, 1}, {3, 30, -0.1}, {3, 30, math.NaN()}, {3, 0, 0.1}, {0, 30, 0.1}, {math.Inf(1), 30, 0.1},
	} {
		if _, err := SplitCalibrate(tc.eps, 1e-5, tc.rounds, tc.share); err == nil {
			t.Errorf("%+v: no error", tc)
		}
	}
}

// TestTrainingMultiplier: the training rounds take what the statistics
// charges left, once or twice charged, and compose below the target; with
// the split's own statistics event they get the split's multiplier.
func TestTrainingMultiplier(t *testing.T) {
	s, err := SplitCalibrate(3, 1e-5, 30, 0.1)
	if err != nil {
		t.Fatal(err)
	}
	stats := s.Events(30)[0]
	for _, spent := range [][]Event{nil, {stats}, {stats, stats}} {
		z, err := TrainingMultiplier(3, 1e-5, spent, 30)
		if err != nil {
			t.Fatal(err)
		}
		events := append(append([]Event(nil), spent...), Event{DiscreteGaussianMechanism, z, 1, 30})
		eps, err := Epsilon(RDP, AddRemove, 1e-5, mergeEvents(events)...)
		if err != nil {
			t.Fatal(err)
		}
		if eps > 3*(1-1e-9) || eps < 2.99 {
			t.Errorf("%d statistics charges: training z %v composes to ε %v", len(spent), z, eps)
		}
		if len(spent) == 1 && math.Abs(z/s.TrainingMultiplier-1) > 1e-6 {
			t.Errorf("training z %v after the split's release, the split's %v", z, s.TrainingMultiplier)
		}
	}
	spent := []Event{{DiscreteGaussianMechanism, 0.3, 1, 1}}
	if _, err := TrainingMultiplier(3, 1e-5, spent, 30); !errors.Is(err, ErrBudgetExceeded) {
		t.Errorf("a release that spent the budget: %v", err)
	}
	if _, err := TrainingMultiplier(3, 1e-5, []Event{{GaussianMechanism, 5, 0.1, 1}}, 30); err == nil {
		t.Error("a sampled Gaussian event accepted as spent")
	}
}
