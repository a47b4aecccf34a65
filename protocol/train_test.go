package protocol

import (
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/dp/dptest"
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

func baseConfig(t *testing.T, mode Mode) Config {
	return Config{Mode: mode, Level: dp.RecordLevel, DP: true, Epsilon: 3, Delta: 1e-5, Rounds: 30, Model: "logistic",
		Clip: 1, LearningRate: 1, Dir: t.TempDir(), Rand: func(i int) io.Reader { return dptest.Rand(uint64(100 + i)) }}
}

// The default simulation's privacy and accuracy, in both secure modes.
func TestTrainReachesTarget(t *testing.T) {
	sites, te := wdbcSites(t, 0)
	best := 0.0
	for _, s := range sites {
		m, err := Baseline("logistic", 0, s, te, 0)
		if err != nil {
			t.Fatal(err)
		}
		best = math.Max(best, m.Accuracy)
	}
	for _, mode := range []Mode{SecAgg, HE} {
		cfg := baseConfig(t, mode)
		s, err := Train(cfg, sites, te)
		if err != nil {
			t.Fatal(err)
		}
		if s.Epsilon > 3 || s.Test.Accuracy < 0.95 || s.Test.Accuracy < best {
			t.Errorf("%s: accuracy %.3f (best hospital alone %.3f), ε %.4f", mode, s.Test.Accuracy, best, s.Epsilon)
		}
		// Every ledger audits, and one changed digit fails it.
		keys := append([]string{s.LedgerKey}, s.SiteKeys...)
		for i, path := range append([]string{s.Ledger}, s.SiteLedgers...) {
			pub, err := dp.ParsePublicKey(keys[i])
			if err != nil {
				t.Fatal(err)
			}
			a, err := dp.AuditLedger(path, pub)
			if err != nil || !a.OK {
				t.Fatalf("%s: audit of %s: %v", mode, path, err)
			}
			if i == 0 && a.Epsilon != s.Epsilon {
				t.Errorf("ledger ε %v, summary ε %v", a.Epsilon, s.Epsilon)
			}
		}
		t.Logf("%s: accuracy %.3f AUC %.4f ε %.4f (best hospital alone %.3f)", mode, s.Test.Accuracy, s.Test.AUC, s.Epsilon, best)
	}
}

// Secure aggregation of the standardization statistics gives the plaintext
// values, in both modes.
func TestSecureStatisticsMatchPlaintext(t *testing.T) {
	sites, _ := wdbcSites(t, 1)
	n := len(sites)
	var want []float64
	vecs := make([][]float64, n)
	idx := make([]int, n)
	for i, s := range sites {
		vecs[i] = fl.LocalStats(s).Vector()
		idx[i] = i
		if want == nil {
			want = make([]float64, len(vecs[i]))
		}
		for k, v := range vecs[i] {
			want[k] += v
		}
	}
	samplers := make([]*dp.Sampler, n)
	for i := range samplers {
		samplers[i], _ = dp.NewSampler(nil)
	}
	for _, mode := range []Mode{SecAgg, HE} {
		cfg := Config{Mode: mode, MinCohort: 3}
		sm, err := newSummer(cfg, n, len(want), 1<<40, samplers, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := sm.sum(9, idx, vecs, false)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got[0]-want[0]) > 1e-3 {
			t.Errorf("%s: count %v, want %v", mode, got[0], want[0])
		}
		for k := range want {
			// Randomized rounding to 2^-16 per site (secagg) or CKKS error (he).
			if math.Abs(got[k]-want[k]) > 1e-3*math.Max(1, math.Abs(want[k])*1e-6) && math.Abs(got[k]-want[k]) > float64(n)*math.Exp2(-16) {
				t.Errorf("%s: statistic %d = %v, want %v", mode, k, got[k], want[k])
			}
		}
	}
}

// The coordinator refuses the round that would pass its cap: nothing is
// charged for it, the model is the last checkpoint, and the ledger holds
// exactly the planned rounds.
func TestCoordinatorCapRefusesRound(t *testing.T) {
	sites, te := wdbcSites(t, 0)
	cfg := baseConfig(t, SecAgg)
	cfg.Rounds, cfg.PlanRounds = 8, 5
	s, err := Train(cfg, sites, te)
	if err != nil {
		t.Fatal(err)
	}
	last := s.Rounds[len(s.Rounds)-1]
	if len(s.Rounds) != 6 || last.Status != "budget-refused" || s.Epsilon > 3 {
		t.Fatalf("rounds %+v, ε %v", s.Rounds, s.Epsilon)
	}
	entries, err := dp.ReadLedger(s.Ledger)
	if err != nil || len(entries) != 6 {
		t.Fatalf("ledger: %d entries, %v", len(entries), err)
	}
	f, err := os.Open(filepath.Join(cfg.Dir, "checkpoints", "round-0005.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ts, meta, err := fl.ReadSafetensors(f)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range ts["model"].Data {
		if v != s.Model[i] {
			t.Fatalf("model changed after the refused round (parameter %d)", i)
		}
	}
	if meta["round"] != "5" {
		t.Errorf("checkpoint metadata %v", meta)
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, "checkpoints", "round-0006.safetensors")); err == nil {
		t.Error("a checkpoint was written for the refused round")
	}
}

// A hospital whose own cap is spent sits out; its ledger never passes the
// cap, and the others go on.
func TestHospitalCapSitsOut(t *testing.T) {
	sites, te := wdbcSites(t, 0)
	cfg := baseConfig(t, SecAgg)
	cfg.SiteCap = 1.5
	cfg.Rounds = 10
	s, err := Train(cfg, sites, te)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range s.SiteLedgers {
		es, err := dp.ReadLedger(path)
		if err != nil {
			t.Fatal(err)
		}
		if last := es[len(es)-1]; last.Epsilon > 1.5 || len(es)-1 >= cfg.Rounds {
			t.Errorf("%s: %d charges, ε %v", path, len(es)-1, last.Epsilon)
		}
	}
	below := 0
	for _, r := range s.Rounds {
		if r.Status == "below-cohort" {
			below++
		}
	}
	if below == 0 {
		t.Error("with every hospital capped at half the run, later rounds should fall below the cohort")
	}
	// Nothing is released below the cohort: the coordinator charged only
	// the rounds that ran.
	es, _ := dp.ReadLedger(s.Ledger)
	if len(es)-1 != cfg.Rounds-below {
		t.Errorf("coordinator charged %d rounds, %d ran", len(es)-1, cfg.Rounds-below)
	}
}

func TestDiabetes(t *testing.T) {
	d, _ := fl.LoadBuiltin("diabetes")
	tr, te, _ := fl.StratifiedSplit(d, 0.25, 0)
	sites, _ := fl.PartitionDirichlet(tr, 5, 0.5, 10, 0)
	c, _ := Baseline("linear", 0, tr, te, 0)
	cfg := baseConfig(t, SecAgg)
	cfg.Model = "linear"
	s, err := Train(cfg, sites, te)
	if err != nil {
		t.Fatal(err)
	}
	if s.Test.R2 < c.R2-0.1 || s.Epsilon > 3 {
		t.Errorf("R² %v against centralized %v", s.Test.R2, c.R2)
	}
	t.Logf("diabetes: centralized RMSE %.2f R² %.3f; federated DP RMSE %.2f R² %.3f", c.RMSE, c.R2, s.Test.RMSE, s.Test.R2)
}

func TestClientLevelAndConfigErrors(t *testing.T) {
	sites, te := wdbcSites(t, 0)
	cfg := baseConfig(t, SecAgg)
	cfg.Level, cfg.LearningRate, cfg.LocalEpochs, cfg.BatchSize, cfg.Epsilon = dp.ClientLevel, 0.1, 1, 16, 8
	s, err := Train(cfg, sites, te)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("client level ε 8: accuracy %.3f", s.Test.Accuracy)
	for _, bad := range []Config{
		{Mode: "carrier-pigeon", Rounds: 1, Clip: 1, LearningRate: 1, Model: "logistic"},
		{Mode: Plain, DP: true, Epsilon: 1, Delta: 1e-5, Rounds: 1, Clip: 1, LearningRate: 1, Model: "logistic", Dir: t.TempDir()},
		{Mode: SecAgg, Rounds: 0, Clip: 1, LearningRate: 1, Model: "logistic"},
		{Mode: SecAgg, Rounds: 1, Clip: 1, LearningRate: 1, Model: "logistic", Colluders: 3},
		{Mode: SecAgg, DP: true, Epsilon: 1, Delta: 1e-5, Rounds: 1, Clip: 1, LearningRate: 1, Model: "logistic"},
	} {
		if _, err := Train(bad, sites, te); err == nil {
			t.Errorf("Train(%+v) accepted", bad)
		}
	}
}

// Without DP, client-level FedAvg weights by sample counts that travel
// inside the secure sum; it must match a plaintext weighted average.
func TestWeightedFedAvg(t *testing.T) {
	sites, te := wdbcSites(t, 0)
	cfg := Config{Mode: SecAgg, Level: dp.ClientLevel, Rounds: 3, Model: "logistic", Clip: 1, LearningRate: 0.1, LocalEpochs: 1, BatchSize: 16}
	s, err := Train(cfg, sites, te)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Mode = Plain
	p, err := Train(cfg, sites, te)
	if err != nil {
		t.Fatal(err)
	}
	for i := range s.Model {
		if math.Abs(s.Model[i]-p.Model[i]) > 1e-3 {
			t.Fatalf("parameter %d: secagg %v, plain %v", i, s.Model[i], p.Model[i])
		}
	}
	t.Logf("client-level FedAvg without DP: accuracy %.3f", s.Test.Accuracy)
}
