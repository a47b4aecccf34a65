package protocol

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

// TestStatisticsReleaseInsideEpsilon runs a DP federation and checks that
// its statistics release is charged as round 0 in the coordinator's ledger
// and in every site's, before training, that the run's ε composes the
// release and the rounds and stays within the cap, and that the sum the
// coordinator opened is not the exact statistics: every coordinate is off
// by noise of about the planned σ.
func TestStatisticsReleaseInsideEpsilon(t *testing.T) {
	const n, rounds = 5, 2
	cfg := CoordinatorConfig{Rounds: rounds, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1, JoinWait: time.Second}
	var opened struct {
		raw       []uint64
		survivors []int
	}
	cfg.hooks = &simHooks{opened: func(sid uint64, bits int, survivors []int, raw []uint64) {
		if roundOf(sid) == 0 {
			opened.raw, opened.survivors = raw, survivors
		}
	}}
	f := newFederation(t, n, cfg)
	sites, sum := f.run(t, n, nil)
	if okRounds(sum) != rounds {
		t.Fatalf("rounds %+v", sum.Rounds)
	}
	ledgers := append([]string{sum.Ledger}, func() (out []string) {
		for _, s := range sites {
			out = append(out, filepath.Join(s.cfg.State, "site-ledger.jsonl"))
		}
		return
	}()...)
	for _, path := range ledgers {
		es, err := dp.ReadLedger(path)
		if err != nil {
			t.Fatal(err)
		}
		var charges []dp.Entry
		for _, e := range es {
			if e.Kind == "charge" {
				charges = append(charges, e)
			}
		}
		if len(charges) != rounds+1 || charges[0].Round != 0 || charges[0].EpsilonRound <= 0 {
			t.Fatalf("%s: charges %+v, want the statistics release (round 0) first", path, charges)
		}
		if eps := charges[len(charges)-1].Epsilon; eps > 3 || eps < 2.99 {
			t.Errorf("%s: ε %v for a run planned at 3", path, eps)
		}
		if math.Abs(charges[0].Clip-fl.StatsBound(30)) > 1e-12 {
			t.Errorf("%s: the release charged for sensitivity %v, want %v", path, charges[0].Clip, fl.StatsBound(30))
		}
	}
	if !(sum.StatisticsEpsilon > 0 && sum.TrainingEpsilon > 0 && sum.StatisticsEpsilon < sum.Epsilon && sum.TrainingEpsilon < sum.Epsilon) ||
		sum.StatisticsShare != dp.DefaultStatisticsShare || !strings.Contains(sum.Statistics, "inside ε") {
		t.Errorf("summary: statistics ε %v, training ε %v, total %v, share %v, %q", sum.StatisticsEpsilon, sum.TrainingEpsilon, sum.Epsilon, sum.StatisticsShare, sum.Statistics)
	}
	// The opened sum against the exact sum of the survivors' clipped
	// statistics.
	if len(opened.raw) != fl.StatsLength(30) {
		t.Fatalf("the statistics sum has %d values", len(opened.raw))
	}
	got := decodeRing(opened.raw, 64, statisticsGamma)
	mid, half := make([]float64, 30), make([]float64, 30)
	for j, r := range f.coord.cfg.Ranges {
		mid[j], half[j] = r.Mid(), r.HalfWidth()
	}
	exact := make([]float64, len(got))
	for _, site := range opened.survivors {
		v, err := fl.ClippedStats(f.sites[site-1], mid, half, false)
		if err != nil {
			t.Fatal(err)
		}
		for k := range v {
			exact[k] += v[k]
		}
	}
	plan, err := f.coord.statisticsPlan(mustSplit(t).StatisticsMultiplier, 30)
	if err != nil {
		t.Fatal(err)
	}
	var ss float64
	for k := range got {
		if got[k] == exact[k] {
			t.Errorf("coordinate %d of the statistics opened without noise", k)
		}
		d := got[k] - exact[k]
		ss += d * d
	}
	// 61 coordinates: the sample σ is within ±40 % of the planned one
	// except with probability below 10⁻⁶.
	sigma := plan.LocalSigma * math.Sqrt(float64(len(opened.survivors)))
	if s := math.Sqrt(ss / float64(len(got))); s < 0.6*sigma || s > 1.4*sigma {
		t.Errorf("the opened statistics are off by σ %v, the plan's %v", s, sigma)
	}
}

func mustSplit(t *testing.T) dp.Split {
	t.Helper()
	s, err := dp.SplitCalibrate(3, 1e-5, 2, dp.DefaultStatisticsShare)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStatisticsInputCarriesNoise: a site's masked statistics input is
// its clipped statistics plus its own noise share of the σ the round
// plans, whatever else the round says.
func TestStatisticsInputCarriesNoise(t *testing.T) {
	b := newAttackBed(t, 3, []int{1}, nil)
	st := b.statistics([]int{1, 2, 3}, 0)
	r, _, err := b.start(b.sites[1], st)
	if err != nil {
		t.Fatal(err)
	}
	v, err := fl.ClippedStats(b.data[0], st.Mean, st.Scale, false)
	if err != nil {
		t.Fatal(err)
	}
	var ss float64
	for k, x := range r.input {
		d := float64(int64(x))*st.Gamma - v[k]
		if d == 0 {
			t.Errorf("coordinate %d carries no noise", k)
		}
		ss += d * d
	}
	if s := math.Sqrt(ss / float64(len(v))); s < 0.6*st.SiteSigma || s > 1.4*st.SiteSigma {
		t.Errorf("the input is off by σ %v, the round's share %v", s, st.SiteSigma)
	}
	if r.charge == nil || r.charge.Round != 0 || r.charge.Plan == nil || r.charge.Plan.Clip != fl.StatsBound(30) {
		t.Errorf("charge %+v", r.charge)
	}
}

// TestAttackStatisticsLyingCoordinator: a coordinator that lies in the
// statistics round can cost the sites accuracy, never privacy. A site with
// a privacy budget refuses a round without noise, with noise too small
// for its cap, or with NaN, infinite or empty bounds, before anything
// leaves it; bounds and a sensitivity the coordinator makes up do not
// change what the site charges, because it clips to [−1, 1] itself and
// bounds its vector from the round's length.
func TestAttackStatisticsLyingCoordinator(t *testing.T) {
	b := newAttackBed(t, 3, []int{1}, nil)
	s := b.sites[1]
	set := []int{1, 2, 3}
	honest, _, err := b.start(s, b.statistics(set, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(st *wire.RoundStart)
		want   string
	}{
		{"no noise", func(st *wire.RoundStart) { st.SiteSigma = 0 }, "carries no DP noise"},
		{"tiny noise", func(st *wire.RoundStart) { st.SiteSigma = 1e-3 }, "noise multiplier"},
		{"noise too small for the cap", func(st *wire.RoundStart) { st.SiteSigma = 3 }, "above the cap"},
		{"NaN noise", func(st *wire.RoundStart) { st.SiteSigma = math.NaN() }, "NaN"},
		{"NaN bound", func(st *wire.RoundStart) { st.Mean[3] = math.NaN() }, "midpoint NaN"},
		{"infinite bound", func(st *wire.RoundStart) { st.Scale[0] = math.Inf(1) }, "half-width +Inf"},
		{"empty range", func(st *wire.RoundStart) { st.Scale[5] = 0 }, "half-width 0"},
		{"negative range", func(st *wire.RoundStart) { st.Scale[5] = -1 }, "half-width -1"},
		{"bounds for fewer columns", func(st *wire.RoundStart) { st.Mean, st.Scale = st.Mean[:29], st.Scale[:29] }, "bounds 29 columns"},
		{"a length for other data", func(st *wire.RoundStart) {
			st.Length = 1 + 2*29
			st.Mean, st.Scale = st.Mean[:29], st.Scale[:29]
		}, "this site's data 30"},
		{"an even length", func(st *wire.RoundStart) { st.Length = 60 }, "length 60"},
		{"no level", func(st *wire.RoundStart) { st.Level = "" }, "neither record nor client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := b.statistics(set, 0)
			tc.change(st)
			if _, _, err := b.start(s, st); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want %q", err, tc.want)
			}
		})
	}
	// Bounds and a sensitivity the coordinator makes up change nothing the
	// site charges.
	for _, change := range []func(st *wire.RoundStart){
		func(st *wire.RoundStart) { st.Clip = 1e-9 },
		func(st *wire.RoundStart) {
			for j := range st.Scale {
				st.Mean[j], st.Scale[j] = 1e300, 1e-300
			}
		},
		func(st *wire.RoundStart) {
			for j := range st.Scale {
				st.Mean[j], st.Scale[j] = 0, 1e300
			}
		},
	} {
		st := b.statistics(set, 0)
		change(st)
		r, _, err := b.start(s, st)
		if err != nil {
			t.Fatal(err)
		}
		if r.charge.Event != honest.charge.Event || r.charge.Plan == nil || r.charge.Plan.Clip != fl.StatsBound(30) {
			t.Errorf("charge %+v, honest %+v", r.charge, honest.charge)
		}
	}
	// A site without a budget takes part in no noised release, and one
	// without AllowNoDP in no release without noise.
	b = newAttackBed(t, 3, []int{1}, func(c *SiteConfig) { c.EpsilonCap = 0 })
	if _, _, err := b.start(b.sites[1], b.statistics(set, 0)); err == nil || !strings.Contains(err.Error(), "no privacy budget") {
		t.Errorf("noised statistics at a site without a budget: %v", err)
	}
	st := b.statistics(set, 0)
	st.SiteSigma = 0
	if _, _, err := b.start(b.sites[1], st); err == nil || !strings.Contains(err.Error(), "carries no DP noise") {
		t.Errorf("statistics without noise at a site without AllowNoDP: %v", err)
	}
}

// TestAttackStatisticsRetriesPaid: a coordinator that makes the
// statistics release fail after the sites paid, again and again, costs a
// site at most MaxAttempts charges for it.
func TestAttackStatisticsRetriesPaid(t *testing.T) {
	b := newAttackBed(t, 3, []int{1}, func(c *SiteConfig) { c.EpsilonCap = 30 })
	s := b.sites[1]
	paid := 0
	for i := 0; i < 5; i++ {
		r, _, err := b.start(s, b.statistics([]int{1, 2, 3}, 0))
		if err != nil {
			if !strings.Contains(err.Error(), "attempts of the statistics release") {
				t.Fatal(err)
			}
			continue
		}
		if err := s.charge(*r.charge); err != nil {
			t.Fatal(err)
		}
		paid++
	}
	if paid != 2 {
		t.Errorf("the site paid for %d attempts of the statistics release, want 2 (MaxAttempts)", paid)
	}
}

// TestPublicStatisticsNoRelease: with PublicStatistics the run has no
// statistics round: the sites release nothing before training, no ledger
// holds a round-0 charge, and the standardization and learning rate come
// from the public ranges and nominal count.
func TestPublicStatisticsNoRelease(t *testing.T) {
	const n, rounds = 5, 2
	f := newFederation(t, n, CoordinatorConfig{Rounds: rounds, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1, JoinWait: time.Second,
		PublicStatistics: true, Rows: 400})
	sites, sum := f.run(t, n, nil)
	if okRounds(sum) != rounds || sum.StatisticsShare != 0 || sum.StatisticsEpsilon != 0 || math.Abs(sum.TrainingEpsilon-sum.Epsilon) > 1e-12 {
		t.Fatalf("rounds %+v, statistics share %v ε %v, training ε %v, total %v", sum.Rounds, sum.StatisticsShare, sum.StatisticsEpsilon, sum.TrainingEpsilon, sum.Epsilon)
	}
	paths := []string{sum.Ledger}
	for _, s := range sites {
		if s.state.Statistics != nil || s.state.statisticsReleased() != "" {
			t.Errorf("site %d released statistics", s.cfg.Site)
		}
		paths = append(paths, filepath.Join(s.cfg.State, "site-ledger.jsonl"))
	}
	for _, p := range paths {
		es, _ := dp.ReadLedger(p)
		for _, e := range es {
			if e.Kind == "charge" && e.Round == 0 {
				t.Errorf("%s holds a statistics charge", p)
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(f.coord.cfg.State, "statistics.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st coordState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	for j, r := range f.coord.cfg.Ranges {
		if st.Mean[j] != r.Mid() || st.Scale[j] != r.HalfWidth() {
			t.Fatalf("feature %d standardized by %v, %v; public %v, %v", j, st.Mean[j], st.Scale[j], r.Mid(), r.HalfWidth())
		}
	}
	if st.Rows != 400 {
		t.Errorf("learning rate over %v rows, want the public 400", st.Rows)
	}
	// Without a nominal count a record-level run is refused.
	cfg := f.coord.cfg
	cfg.Rows = 0
	if _, err := NewCoordinator(cfg); err == nil || !strings.Contains(err.Error(), "public count of records") {
		t.Errorf("PublicStatistics without Rows: %v", err)
	}
}

// TestPublicStatisticsWithoutRanges: with PublicStatistics and no ranges
// (sites that send updates trained elsewhere) nothing is standardized:
// every mean is 0 and every scale 1, and nothing is released before
// training.
func TestPublicStatisticsWithoutRanges(t *testing.T) {
	const n = 3
	f := newFederation(t, n, CoordinatorConfig{Rounds: 1, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1, JoinWait: time.Second,
		PublicStatistics: true, Rows: 100})
	f.coord.cfg.Ranges = nil
	_, sum := f.run(t, n, nil)
	if okRounds(sum) != 1 || sum.StatisticsEpsilon != 0 {
		t.Fatalf("rounds %+v, statistics ε %v", sum.Rounds, sum.StatisticsEpsilon)
	}
	b, err := os.ReadFile(filepath.Join(f.coord.cfg.State, "statistics.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st coordState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	for j := range st.Mean {
		if st.Mean[j] != 0 || st.Scale[j] != 1 {
			t.Fatalf("feature %d standardized by %v, %v; want none (0, 1)", j, st.Mean[j], st.Scale[j])
		}
	}
}
