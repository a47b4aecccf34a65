package local

import (
	"context"
	"errors"
	"testing"
)

// Every opened sum is the exact sum of the survivors' updates, up to
// rounding, with and without sites dropping at random phases.
func TestSecAggExactSums(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     SecAggConfig
		dropped bool
	}{
		{"no dropouts/64-bit", SecAggConfig{Clients: 5, Rounds: 3, Dim: 40, Bits: 64, Clip: 1, Seed: 1}, false},
		{"dropouts", SecAggConfig{Clients: 10, Rounds: 6, Dim: 30, Clip: 1, Dropout: 0.15, Seed: 3}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := PlanSecAgg(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			var rows []SecAggRow
			if err := p.Run(context.Background(), func(r SecAggRow) { rows = append(rows, r) }); err != nil {
				t.Fatal(err)
			}
			dropped, ok := 0, 0
			for _, r := range rows {
				t.Logf("%+v", r)
				if r.Status != "ok" {
					continue
				}
				ok++
				dropped += r.Dropped
				if r.MaxError > r.ErrorBound || r.ErrorBound == 0 || r.Survivors < p.MinCohort || len(r.SurvivorSites) != r.Survivors {
					t.Errorf("round %+v", r)
				}
				if !tc.dropped && r.Survivors != tc.cfg.Clients {
					t.Errorf("round %d: %d survivors without dropouts", r.Round, r.Survivors)
				}
			}
			if ok != tc.cfg.Rounds {
				t.Errorf("%d rounds opened, want %d", ok, tc.cfg.Rounds)
			}
			if tc.dropped && dropped == 0 {
				t.Error("no site dropped")
			}
		})
	}
}

func TestSecAgg(t *testing.T) {
	rows := 0
	err := SecAgg(context.Background(), SecAggConfig{Clients: 3, Rounds: 2, Dim: 5, Clip: 0.5, MaxWeight: 3, Seed: 9}, func(r SecAggRow) {
		if r.Status == "ok" && r.MaxError <= r.ErrorBound {
			rows++
		}
	})
	if err != nil || rows != 2 {
		t.Fatalf("%d exact rounds, %v", rows, err)
	}
	if err := SecAgg(context.Background(), SecAggConfig{Clients: 2, Rounds: 1, Dim: 5, Clip: 1}, nil); !errors.Is(err, ErrUsage) {
		t.Errorf("two clients: %v", err)
	}
}

func TestSecAggPlanErrors(t *testing.T) {
	good := SecAggConfig{Clients: 10, Rounds: 1, Dim: 100, Bits: 32, Clip: 1}
	if _, err := PlanSecAgg(good); err != nil {
		t.Fatal(err)
	}
	for _, f := range []func(c *SecAggConfig){
		func(c *SecAggConfig) { c.Clients = 2 },
		func(c *SecAggConfig) { c.Clients = 1001 },
		func(c *SecAggConfig) { c.Rounds = 0 },
		func(c *SecAggConfig) { c.Dim = 1 },
		func(c *SecAggConfig) { c.Bits = 16 },
		func(c *SecAggConfig) { c.Dropout = 1 },
		func(c *SecAggConfig) { c.Clip = 0 },
		func(c *SecAggConfig) { c.Colluders = 6 },
		func(c *SecAggConfig) { c.MaxWeight = 100000 },
		func(c *SecAggConfig) { c.Clients, c.Dim = 1000, 100_000_000 },
	} {
		c := good
		f(&c)
		if _, err := PlanSecAgg(c); !errors.Is(err, ErrUsage) {
			t.Errorf("PlanSecAgg(%+v): %v", c, err)
		}
	}
}
