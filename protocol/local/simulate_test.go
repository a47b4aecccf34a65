package local

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol"
)

func wdbc(t testing.TB, seed uint64) *Split {
	t.Helper()
	s, err := Load(Data{Name: "wdbc", Sites: 5, Alpha: 0.5, TestFraction: 0.25, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func recordLevel(t *testing.T, mode protocol.Mode) Federation {
	return Federation{Mode: mode, Level: dp.RecordLevel, Epsilon: 3, Delta: 1e-5, Rounds: 30, Clip: 1, LearningRate: 1, Dir: t.TempDir()}
}

// auditAll audits the coordinator's and every site's ledger of s, checks
// each holds rounds charges, and that a copy of the coordinator's with one
// changed digit fails its audit.
func auditAll(t *testing.T, s *protocol.Summary, rounds int) {
	t.Helper()
	keys := append([]string{s.LedgerKey}, s.SiteKeys...)
	paths := append([]string{s.Ledger}, s.SiteLedgers...)
	if len(paths) != 1+len(s.SiteLedgers) || len(s.SiteLedgers) == 0 {
		t.Fatalf("ledgers %v", paths)
	}
	for i, path := range paths {
		pub, err := dp.ParsePublicKey(keys[i])
		if err != nil {
			t.Fatal(err)
		}
		a, err := dp.AuditLedger(path, pub)
		// The statistics release (round 0) and the rounds.
		if err != nil || !a.OK || a.Charges != rounds+1 {
			t.Fatalf("audit of %s: %+v %v", path, a, err)
		}
		if i == 0 && math.Abs(a.Epsilon-s.Epsilon) > 1e-12 {
			t.Errorf("ledger ε %v, summary ε %v", a.Epsilon, s.Epsilon)
		}
	}
	b, _ := os.ReadFile(s.Ledger)
	i := strings.Index(string(b), `"epsilon":`)
	if i < 0 || b[i+len(`"epsilon":`)] < '0' || b[i+len(`"epsilon":`)] > '8' {
		t.Fatal("no epsilon in the ledger")
	}
	b[i+len(`"epsilon":`)]++ // one digit changed
	tampered := filepath.Join(t.TempDir(), "tampered.jsonl")
	os.WriteFile(tampered, b, 0o600)
	pub, _ := dp.ParsePublicKey(s.LedgerKey)
	if a, err := dp.AuditLedger(tampered, pub); err == nil && a.OK {
		t.Error("a ledger with a changed digit passes its audit")
	}
}

// checkStatistics checks the federation's standardization and count
// against the exact statistics of the sites' data clipped to the public
// ranges: with DP they must differ (the release is noised) by no more than
// the noise explains; without DP they must match.
func checkStatistics(t *testing.T, dir string, train *fl.Dataset, noised bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "coordinator", "statistics.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Mean, Scale []float64
		Rows        float64
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	rs, _ := fl.BuiltinRanges(train.Name)
	ranges, err := rs.RangesFor(train)
	if err != nil {
		t.Fatal(err)
	}
	mid, half := make([]float64, len(ranges)), make([]float64, len(ranges))
	for j, r := range ranges {
		mid[j], half[j] = r.Mid(), r.HalfWidth()
	}
	v, err := fl.ClippedStats(train, mid, half, false)
	if err != nil {
		t.Fatal(err)
	}
	exact, err := fl.EstimateStats(v, mid, half, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !noised {
		if st.Rows != float64(train.Rows()) {
			t.Errorf("statistics over %v rows, want %d", st.Rows, train.Rows())
		}
		for k := range st.Mean {
			if math.Abs(st.Mean[k]-exact.Mean[k]) > 1e-3*half[k] || math.Abs(st.Scale[k]-exact.Scale[k]) > 1e-3*half[k] {
				t.Fatalf("feature %d: mean %v scale %v, exact %v %v", k, st.Mean[k], st.Scale[k], exact.Mean[k], exact.Scale[k])
			}
		}
		return
	}
	// The count's noise has σ of about 12 records here: six σ is far
	// beyond it, and an exact count comes out with probability ~0.
	if st.Rows == float64(train.Rows()) || math.Abs(st.Rows-float64(train.Rows())) > 80 {
		t.Errorf("noised count %v, exact %d", st.Rows, train.Rows())
	}
	same := 0
	for k := range st.Mean {
		if st.Mean[k] == exact.Mean[k] {
			same++
		}
		if math.Abs(st.Mean[k]-exact.Mean[k]) > 0.6*half[k] {
			t.Errorf("feature %d: noised mean %v, exact %v, half-width %v", k, st.Mean[k], exact.Mean[k], half[k])
		}
	}
	if same > 0 {
		t.Errorf("%d noised means equal the exact ones", same)
	}
}

// The default simulation: its table, its privacy and accuracy, and every
// ledger audits.
func TestSimulateDefault(t *testing.T) {
	cfg := Config{Data: Data{Name: "wdbc", Sites: 5, Alpha: 0.5, TestFraction: 0.25}, Federation: recordLevel(t, protocol.SecAgg), Compare: true}
	res, err := Simulate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Table) != 8 || len(res.Audit) != 6 || len(res.SiteRows) != 5 {
		t.Fatalf("table %+v, audit %v", res.Table, res.Audit)
	}
	best := 0.0
	for _, r := range res.Table {
		if strings.Contains(r.Setting, "alone") {
			best = math.Max(best, r.Test.Accuracy)
		}
		t.Logf("%-40s accuracy %.3f AUC %.3f", r.Setting, r.Test.Accuracy, r.Test.AUC)
	}
	fed := res.Table[len(res.Table)-1]
	if !fed.Private || fed.Epsilon == nil || *fed.Epsilon > 3 || fed.Test.Accuracy < 0.95 {
		t.Errorf("federated + DP: %+v (best hospital alone %.3f)", fed, best)
	}
	s := res.Federated
	if len(s.Rounds) != 30 || s.Averaged != 15 || s.Seconds <= 0 {
		t.Errorf("%d rounds, %d averaged, %v s", len(s.Rounds), s.Averaged, s.Seconds)
	}
	for _, r := range s.Rounds {
		if r.Status != "ok" || !slices.Equal(r.Survivors, []int{1, 2, 3, 4, 5}) || r.Seconds <= 0 || r.Test.AUC == 0 {
			t.Fatalf("round %+v", r)
		}
	}
	auditAll(t, s, 30)
	checkStatistics(t, cfg.Dir, wdbc(t, 0).Train, true)
}

// Mode he: the key ceremony, the statistics and the rounds through
// threshold CKKS.
func TestFederateHE(t *testing.T) {
	sp := wdbc(t, 0)
	f := recordLevel(t, protocol.HE)
	f.Rounds = 10
	s, err := Federate(context.Background(), f, sp.Sites, sp.Test)
	if err != nil {
		t.Fatal(err)
	}
	if s.Epsilon > 3 || s.Test.Accuracy < 0.9 {
		t.Errorf("he: accuracy %.3f, ε %v", s.Test.Accuracy, s.Epsilon)
	}
	auditAll(t, s, 10)
	checkStatistics(t, f.Dir, sp.Train, true)
	t.Logf("he: accuracy %.3f AUC %.3f ε %.3f; setup %.2f s, run %.2f s", s.Test.Accuracy, s.Test.AUC, s.Epsilon, s.SetupSeconds, s.Seconds)
}

// Client level: each site's local SGD with the run's settings, clipped as
// a whole.
func TestFederateClientLevel(t *testing.T) {
	sp := wdbc(t, 0)
	f := recordLevel(t, protocol.SecAgg)
	// With 5 hospitals, client-level noise at a small ε swamps the
	// signal (accuracy then varies from run to run between 0.35 and
	// 0.85); at ε = 50 the run must learn.
	f.Level, f.LearningRate, f.Epsilon, f.Rounds, f.LocalEpochs, f.BatchSize = dp.ClientLevel, 0.1, 50, 10, 2, 8
	s, err := Federate(context.Background(), f, sp.Sites, sp.Test)
	if err != nil {
		t.Fatal(err)
	}
	if s.Level != dp.ClientLevel || s.Epsilon > 50 || s.Test.Accuracy < 0.8 || !(s.PatientEpsilon > s.Epsilon) {
		t.Errorf("client level: ε %v (per patient %v), accuracy %.3f", s.Epsilon, s.PatientEpsilon, s.Test.Accuracy)
	}
	auditAll(t, s, 10)
	f.Epsilon, f.Dir = 0, ""
	nd, err := Federate(context.Background(), f, sp.Sites, sp.Test)
	if err != nil {
		t.Fatal(err)
	}
	if nd.Test.Accuracy < 0.9 || nd.DP {
		t.Errorf("client level without DP: accuracy %.3f", nd.Test.Accuracy)
	}
	t.Logf("client level: ε 50 accuracy %.3f; no DP %.3f", s.Test.Accuracy, nd.Test.Accuracy)
}

// The coordinator refuses the round that would pass its cap: nothing is
// charged for it, the model is the last checkpoint, and the ledger holds
// exactly the planned rounds.
func TestFederateBudgetRefusal(t *testing.T) {
	sp := wdbc(t, 0)
	f := recordLevel(t, protocol.SecAgg)
	f.Rounds, f.PlanRounds, f.AverageFrom = 8, 5, -1
	s, err := Federate(context.Background(), f, sp.Sites, sp.Test)
	if err != nil {
		t.Fatal(err)
	}
	last := s.Rounds[len(s.Rounds)-1]
	if len(s.Rounds) != 6 || last.Status != "budget-refused" || s.Epsilon > 3 {
		t.Fatalf("rounds %+v, ε %v", s.Rounds, s.Epsilon)
	}
	auditAll(t, s, 5)
	fh, err := os.Open(filepath.Join(f.Dir, "coordinator", "checkpoints", "round-0005.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	ts, _, err := fl.ReadSafetensors(fh)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ts["model"].Data, s.Model) {
		t.Error("the model changed after the refused round")
	}
	if _, err := os.Stat(filepath.Join(f.Dir, "coordinator", "checkpoints", "round-0006.safetensors")); err == nil {
		t.Error("a checkpoint was written for the refused round")
	}
}

// A hospital's own cap is its own: when every hospital's budget is spent,
// no round can reach the cohort and the run stops with an error that says
// why; no site ledger passes its cap.
func TestFederateSiteCaps(t *testing.T) {
	sp := wdbc(t, 0)
	f := recordLevel(t, protocol.SecAgg)
	f.SiteCap, f.Rounds = 1.5, 10
	_, err := Federate(context.Background(), f, sp.Sites, sp.Test)
	if err == nil || !strings.Contains(err.Error(), "minimum cohort") {
		t.Fatalf("error %v", err)
	}
	for i := 1; i <= 5; i++ {
		es, err := dp.ReadLedger(filepath.Join(f.Dir, "site-"+string(rune('0'+i)), "site-ledger.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		if last := es[len(es)-1]; last.Epsilon > 1.5 || len(es) < 2 {
			t.Errorf("site %d: %d entries, ε %v", i, len(es), last.Epsilon)
		}
	}
}

// Simulated dropouts: a site offline in a round does not join it, the
// seed decides who is offline, and every round still opens.
func TestFederateDropouts(t *testing.T) {
	sp := wdbc(t, 0)
	f := Federation{Rounds: 12, Clip: 1, LearningRate: 1, Dropout: 0.3, Seed: 7}
	s, err := Federate(context.Background(), f, sp.Sites, sp.Test)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := dropouts(5, 12, 3, 0.3, 7)
	partial := 0
	for i, r := range s.Rounds {
		if r.Status != "ok" || !slices.Equal(r.Survivors, want[i]) {
			t.Fatalf("round %d: %+v, want survivors %v", i+1, r, want[i])
		}
		if len(r.Survivors) < 5 {
			partial++
		}
	}
	if partial == 0 {
		t.Error("no site was ever offline")
	}
	if s.Test.Accuracy < 0.9 {
		t.Errorf("accuracy %.3f", s.Test.Accuracy)
	}
}

// Regression: the label is standardized with the federation's statistics
// and RMSE reported in its units.
func TestSimulateDiabetes(t *testing.T) {
	cfg := Config{Data: Data{Name: "diabetes", Sites: 5, Alpha: 0.5, TestFraction: 0.25}, Federation: recordLevel(t, protocol.SecAgg), Compare: true}
	cfg.Rounds = 20
	res, err := Simulate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, fed := res.Table[0].Test, res.Table[len(res.Table)-1].Test
	if fed.R2 < c.R2-0.1 || fed.RMSE > 1.2*c.RMSE || res.Federated.Epsilon > 3 {
		t.Errorf("federated + DP RMSE %.2f R² %.3f; centralized RMSE %.2f R² %.3f", fed.RMSE, fed.R2, c.RMSE, c.R2)
	}
	t.Logf("diabetes: centralized RMSE %.2f R² %.3f; federated + DP RMSE %.2f R² %.3f", c.RMSE, c.R2, fed.RMSE, fed.R2)
}

func TestConfigErrors(t *testing.T) {
	sp := wdbc(t, 0)
	dir := t.TempDir()
	for _, bad := range []Federation{
		{Mode: "carrier-pigeon", Rounds: 1, Clip: 1, LearningRate: 1},
		{Mode: protocol.Plain, Epsilon: 1, Delta: 1e-5, Rounds: 1, Clip: 1, LearningRate: 1, Dir: dir},
		{Rounds: 0, Clip: 1, LearningRate: 1},
		{Rounds: 1, Clip: 1, LearningRate: 1, Colluders: 3},
		{Epsilon: 1, Delta: 1e-5, Rounds: 1, Clip: 1, LearningRate: 1},
		{Rounds: 1, Clip: 1, LearningRate: 1, Dropout: 1},
		{Rounds: 1, Clip: 0, LearningRate: 1},
		{Rounds: 1, Clip: 1, LearningRate: 1, Model: "linear"},
	} {
		if _, err := Federate(context.Background(), bad, sp.Sites, sp.Test); err == nil {
			t.Errorf("Federate(%+v) accepted", bad)
		}
	}
	if _, err := Federate(context.Background(), Federation{Rounds: 1, Clip: 1, LearningRate: 1}, sp.Sites[:2], sp.Test); err == nil || !strings.Contains(err.Error(), "at least 3") {
		t.Errorf("two sites: %v", err)
	}
	for _, d := range []Data{
		{Name: "wdbc", Sites: 0, TestFraction: 0.25},
		{Name: "wdbc", Sites: 5, Alpha: -1, TestFraction: 0.25},
		{Name: "/no/such.csv", Sites: 5, TestFraction: 0.25},
	} {
		if _, err := Load(d); !errors.Is(err, ErrUsage) {
			t.Errorf("Load(%+v): %v", d, err)
		}
	}
}

// fl-secure evaluate reads a regression federation's state as the
// coordinator evaluated it: the label standardized with the federation's
// statistics, RMSE in the label's units.
func TestEvaluateStateRegression(t *testing.T) {
	sp, err := Load(Data{Name: "diabetes", Sites: 5, Alpha: 0.5, TestFraction: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	f := Federation{Rounds: 10, Clip: 1, LearningRate: 1, AverageFrom: -1, Dir: t.TempDir()}
	s, err := Federate(context.Background(), f, sp.Sites, sp.Test)
	if err != nil {
		t.Fatal(err)
	}
	m, round, err := protocol.EvaluateState(filepath.Join(f.Dir, "coordinator"), "linear", 0, sp.Test)
	if err != nil || round != 10 {
		t.Fatalf("round %d: %v", round, err)
	}
	if math.Abs(m.RMSE-s.Test.RMSE) > 1e-9 || m.RMSE < 30 || m.RMSE > 90 {
		t.Errorf("evaluate: RMSE %v, the coordinator's %v", m.RMSE, s.Test.RMSE)
	}
}

// TestNewRunDir gives runs that start in the same second directories of
// their own.
func TestNewRunDir(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "runs")
	now := time.Date(2026, 12, 2, 15, 4, 5, 0, time.UTC)
	seen := map[string]bool{}
	for i := range 3 {
		dir, err := NewRunDir(parent, now)
		if err != nil {
			t.Fatal(err)
		}
		if seen[dir] {
			t.Fatalf("run %d got %s again", i, dir)
		}
		seen[dir] = true
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			t.Fatalf("%s: %v", dir, err)
		}
	}
	if !seen[filepath.Join(parent, "20261202-150405")] || !seen[filepath.Join(parent, "20261202-150405-3")] {
		t.Errorf("directories %v", seen)
	}
}
