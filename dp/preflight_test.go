package dp

import (
	"errors"
	"strings"
	"testing"
)

func TestPlanPreflight(t *testing.T) {
	p, err := PlanPreflight(PreflightConfig{Epsilon: 4, Delta: 1e-6, Rounds: 50, Sites: 8, Threshold: 6, Colluders: 1, Clip: 1, Dim: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if p.AchievedEpsilon > 4 || p.HonestSurvivors != 5 || p.SiteSigma <= 0 || p.Sigma < p.SiteSigma || p.Bits != 32 {
		t.Errorf("plan %+v", p)
	}
	p, err = PlanPreflight(PreflightConfig{Epsilon: 20, Delta: 1e-5, Rounds: 10, Sites: 2, Threshold: 1, Clip: 1, Dim: 100})
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(p.Warnings, "\n")
	for _, w := range []string{"above 10", "two disjoint halves", "fewer than 3"} {
		if !strings.Contains(all, w) {
			t.Errorf("no warning %q in %q", w, all)
		}
	}
	if _, err := PlanPreflight(PreflightConfig{Epsilon: 1, Delta: 1e-5, Rounds: 3, Sites: 5, Dim: 10}); !errors.Is(err, ErrNoClipping) {
		t.Errorf("clip 0: %v", err)
	}
	for _, bad := range []PreflightConfig{
		{Epsilon: 0, Delta: 1e-5, Rounds: 3, Sites: 5, Clip: 1, Dim: 10},
		{Epsilon: 1, Delta: 1, Rounds: 3, Sites: 5, Clip: 1, Dim: 10},
		{Epsilon: 1, Delta: 1e-5, Rounds: 3, Sites: 5, Threshold: 4, Colluders: 4, Clip: 1, Dim: 10},
		{Epsilon: 1, Delta: 1e-5, Rounds: 3, Sites: 5, Threshold: 6, Clip: 1, Dim: 10},
	} {
		if _, err := PlanPreflight(bad); err == nil {
			t.Errorf("PlanPreflight(%+v) accepted", bad)
		}
	}
}
