package protocol

import (
	"testing"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
)

func wdbcSites(t testing.TB, seed uint64) ([]*fl.Dataset, *fl.Dataset) {
	d, err := fl.LoadBuiltin("wdbc")
	if err != nil {
		t.Fatal(err)
	}
	tr, te, err := fl.StratifiedSplit(d, 0.25, seed)
	if err != nil {
		t.Fatal(err)
	}
	sites, err := fl.PartitionDirichlet(tr, 5, 0.5, 10, seed)
	if err != nil {
		t.Fatal(err)
	}
	return sites, te
}

func TestTrainQuick(t *testing.T) {
	sites, te := wdbcSites(t, 0)
	for _, mode := range []Mode{SecAgg, HE} {
		for _, lr := range []float64{2, 4} {
			for _, rounds := range []int{20, 40} {
				s, err := Train(Config{Mode: mode, Level: dp.RecordLevel, DP: true, Epsilon: 3, Delta: 1e-5, Rounds: rounds, Model: "logistic",
					Clip: 1, LearningRate: lr, Seed: 0, Dir: t.TempDir()}, sites, te)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s lr=%v T=%d: acc %.3f auc %.3f eps %.3f z %.2f", mode, lr, rounds, s.Test.Accuracy, s.Test.AUC, s.Epsilon, s.NoiseMultiplier)
			}
		}
	}
}
