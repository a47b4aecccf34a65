package dp

import (
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
