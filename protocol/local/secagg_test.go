package local

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol"
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

// A site whose trainer fails in a round joins it with a zero update (the
// coordinator cannot tell the failure from any other round); its update
// is in every other round's sum.
func TestTrainerFailure(t *testing.T) {
	cc := protocol.CoordinatorConfig{Mode: protocol.SecAgg, Level: dp.ClientLevel, Rounds: 3, Clip: 100, LearningRate: 1,
		Model: "linear", Features: 3, Ranges: make([]fl.Range, 4)}
	for j := range cc.Ranges {
		cc.Ranges[j] = fl.Range{Lo: -1, Hi: 1}
	}
	fed, err := newFederation(t.TempDir(), 5, cc, func(i int) protocol.SiteConfig {
		return protocol.SiteConfig{AllowNoDP: true, Level: dp.ClientLevel, Trainer: func(q protocol.TrainRequest) (protocol.TrainResult, error) {
			if len(q.Model) != 4 {
				return protocol.TrainResult{}, fmt.Errorf("model of %d parameters", len(q.Model))
			}
			if i == 1 && q.Round == 2 {
				return protocol.TrainResult{}, errors.New("out of memory")
			}
			return protocol.TrainResult{Update: []float64{float64(i), 0, 0, 1}}, nil
		}}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer fed.close()
	s, err := fed.run(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range s.Rounds {
		want, ones := []int{1, 2, 3, 4, 5}, 5.0
		if r.Round == 2 {
			ones = 4 // site 1's update is zero
		}
		if !slices.Equal(r.Survivors, want) || math.Abs(r.Sum[3]-ones) > 1e-3 {
			t.Errorf("round %d: survivors %v, sum %v", r.Round, r.Survivors, r.Sum)
		}
	}
}
