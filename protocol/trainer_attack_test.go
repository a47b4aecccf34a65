package protocol

import (
	"bytes"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

// The coordinator is the adversary in these tests: everything in the
// RoundStart is its choice. Each test asserts a protection of the site
// and fails if the coordinator's round gets past it.

func attackSampler(t *testing.T) *dp.Sampler {
	t.Helper()
	s, err := dp.NewSampler(nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// siteOutcome runs what Site.start runs for a secagg training round
// before the site joins (vector, then quantize) and returns the refusal
// reason the coordinator would receive ("" when the site would join).
func siteOutcome(r *siteRound) string {
	v, err := r.vector()
	if err == nil {
		_, err = r.quantize(v)
	}
	if err != nil {
		return r.reason(err)
	}
	return ""
}

// TestAttackGridStepProbesUpdate: a coordinator announces a tiny
// (power-of-two) grid step γ. The site clips and then quantizes its
// trainer's update before it joins and before it pays; a coordinate
// above 2^62·γ makes quantization fail and the site refuses, naming the
// coordinate. Whether the site refuses then depends on the un-noised
// update, costs it nothing, and can be repeated with other γ (and clip)
// until the coordinator has bracketed its largest coordinate.
func TestAttackGridStepProbesUpdate(t *testing.T) {
	outcome := func(update []float64) string {
		tr := func(q TrainRequest) (TrainResult, error) { return TrainResult{Update: update}, nil }
		r, _ := trainerRound(dp.ClientLevel, tr, 0)
		r.s.sampler = attackSampler(t)
		r.start.Mode, r.start.Bits, r.start.SiteSigma = string(SecAgg), 64, 1
		r.start.Gamma = math.Ldexp(1, -63)
		return siteOutcome(r)
	}
	small := outcome([]float64{0.1, 0.1, 0.1, 0.1})
	large := outcome([]float64{0, 0, 0.9, 0})
	if small != large {
		t.Errorf("the site's answer to a round with γ = 2^-63 depends on its update:\n  update [0.1 0.1 0.1 0.1] -> refusal %q\n  update [0 0 0.9 0]     -> refusal %q", small, large)
	}
}

// TestAttackGridStepProbesRecordSum: the same probe at record level
// without a trainer: the site's own clipped-gradient sum over its records
// decides whether it refuses a round with a tiny γ.
func TestAttackGridStepProbesRecordSum(t *testing.T) {
	outcome := func(x0 float64) string {
		d := &fl.Dataset{Features: []string{"a"}, X: [][]float64{{x0}, {0}}, Y: []float64{1, 0}, Task: fl.Binary, Classes: 2}
		s := &Site{cfg: SiteConfig{Data: d, Hidden: 16}, log: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), sampler: attackSampler(t)}
		st := &wire.RoundStart{Round: 2 << 20, Kind: wire.RoundStart_TRAIN, Mode: string(SecAgg), Bits: 64, Length: 2, Model: []float64{0, 0},
			ModelName: "logistic", Mean: []float64{0}, Scale: []float64{1}, Clip: 1, Level: string(dp.RecordLevel), SiteSigma: 1,
			Gamma: math.Ldexp(1, -63)}
		return siteOutcome(&siteRound{s: s, start: st})
	}
	a, b := outcome(0), outcome(-3)
	if a != b {
		t.Errorf("the site's answer to a round with γ = 2^-63 depends on one record's value:\n  record x=0  -> refusal %q\n  record x=-3 -> refusal %q", a, b)
	}
}

// TestAttackTinyScaleRangeOracle: a coordinator announces a tiny but
// positive standardization scale for one feature. A record whose feature
// lies farther than ~1.8 from the announced mean standardizes to ±Inf;
// the site refuses, for free. The coordinator learns whether some
// record's value lies outside an interval of its choice.
func TestAttackTinyScaleRangeOracle(t *testing.T) {
	outcome := func(x0 float64) string {
		d := &fl.Dataset{Features: []string{"age"}, X: [][]float64{{x0}, {50}}, Y: []float64{1, 0}, Task: fl.Binary, Classes: 2}
		s := &Site{cfg: SiteConfig{Data: d, Hidden: 16}, log: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), sampler: attackSampler(t)}
		st := &wire.RoundStart{Round: 2 << 20, Kind: wire.RoundStart_TRAIN, Mode: string(SecAgg), Bits: 64, Length: 2, Model: []float64{0.5, 0},
			ModelName: "logistic", Mean: []float64{50}, Scale: []float64{1e-308}, Clip: 1, Level: string(dp.RecordLevel), SiteSigma: 1,
			Gamma: math.Ldexp(1, -20)}
		return siteOutcome(&siteRound{s: s, start: st})
	}
	a, b := outcome(51), outcome(90)
	if a != b {
		t.Errorf("the site's answer to a round with scale 1e-308 depends on one patient's age:\n  age 51 -> refusal %q\n  age 90 -> refusal %q", a, b)
	}
}

// TestAttackTrainerFailureIsAnOracle: the reason of a trainer's refusal
// is generic, but whether the site refuses at all is the trainer's
// behaviour on the data. A coordinator that picks a standardization the
// hospital's trainer cannot handle for some records (a scale of 1e-308)
// learns, from refusal or join, whether such a record exists, at no
// charge and as often as it likes.
func TestAttackTrainerFailureIsAnOracle(t *testing.T) {
	outcome := func(ages []float64) string {
		// A trainer that computes honestly on the standardized data: it
		// overflows on a far-out record, and the site then refuses.
		tr := func(q TrainRequest) (TrainResult, error) {
			u := make([]float64, q.Layout.Len())
			for _, a := range ages {
				u[0] += (a - q.Mean[0]) / q.Scale[0] * 1e-300
			}
			return TrainResult{Update: u}, nil
		}
		r, _ := trainerRound(dp.ClientLevel, tr, 0)
		r.s.sampler = attackSampler(t)
		r.start.Mode, r.start.Bits, r.start.SiteSigma, r.start.Gamma = string(SecAgg), 64, 1, math.Ldexp(1, -20)
		r.start.Mean, r.start.Scale = []float64{50, 0, 0}, []float64{1e-308, 1, 1}
		return siteOutcome(r)
	}
	a, b := outcome([]float64{51, 49}), outcome([]float64{51, 90})
	if a != b {
		t.Errorf("whether the site refuses depends on one patient's age (scale 1e-308 accepted):\n  ages [51 49] -> %q\n  ages [51 90] -> %q", a, b)
	}
}

// TestAttackNonFiniteStandardizationRefused: a round whose
// standardization holds NaN, ±Inf or a non-positive scale is refused
// before anything data-dependent runs, as the model's NaN is.
func TestAttackNonFiniteStandardizationRefused(t *testing.T) {
	for _, tc := range []struct {
		name        string
		mean, scale []float64
	}{
		{"NaN mean", []float64{math.NaN(), 0, 0}, []float64{1, 1, 1}},
		{"zero scale", []float64{0, 0, 0}, []float64{0, 1, 1}},
		{"negative scale", []float64{0, 0, 0}, []float64{-1, 1, 1}},
		{"Inf scale", []float64{0, 0, 0}, []float64{math.Inf(1), 1, 1}},
	} {
		st := &wire.RoundStart{Round: 1 << 20, Kind: wire.RoundStart_TRAIN, Mode: string(SecAgg), Bits: 64, Length: 4, Model: make([]float64, 4),
			ModelName: "logistic", Mean: tc.mean, Scale: tc.scale, Clip: 1, Level: string(dp.RecordLevel), Members: []uint32{1, 2, 3}, Sites: 3}
		if err := checkStart(st, 3); err == nil {
			t.Errorf("%s: checkStart accepts standardization mean %v scale %v", tc.name, tc.mean, tc.scale)
		}
	}
}

// TestAttackTrainerErrorWordsStayLocal: whatever the trainer says in its
// error (patient data), or whatever it returns, the coordinator receives
// no refusal at all: the site joins with a zero update.
func TestAttackTrainerErrorWordsStayLocal(t *testing.T) {
	for _, tr := range []func(TrainRequest) (TrainResult, error){
		func(q TrainRequest) (TrainResult, error) { return TrainResult{}, os.ErrNotExist },
		func(q TrainRequest) (TrainResult, error) {
			return TrainResult{Update: []float64{math.Inf(1), 0, 0, 0}, Records: q.Records}, nil
		},
		func(q TrainRequest) (TrainResult, error) {
			return TrainResult{Update: []float64{1e9, 0, 0, 0}, Records: q.Records}, nil
		},
		func(q TrainRequest) (TrainResult, error) {
			return TrainResult{Update: []float64{0, 0, 0, 0}, Records: 7}, nil
		},
	} {
		r, _ := trainerRound(dp.RecordLevel, tr, 12)
		r.s.sampler = attackSampler(t)
		r.start.Mode, r.start.Bits, r.start.SiteSigma, r.start.Gamma = string(SecAgg), 64, 1, math.Ldexp(1, -20)
		if got := siteOutcome(r); got != "" {
			t.Errorf("refusal %q sent to the coordinator; want none (a zero update)", got)
		}
	}
}

// TestAttackModelOutLayoutFromCoordinator: the coordinator's round
// decides the layout written beside --model-out, never its path; a model
// name that is not a known one is not written into the manifest.
func TestAttackModelOutLayoutFromCoordinator(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "global.safetensors")
	st := &wire.RoundStart{ModelName: "../../etc/passwd", Length: 4, Mean: make([]float64, 3), Scale: []float64{1, 1, 1}}
	if err := writeModel(p, []float64{1, 2, 3, 4}, 1, st, 16); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "global.safetensors" && e.Name() != "global.safetensors.layout.json" {
			t.Errorf("--model-out wrote %s", e.Name())
		}
	}
	b, _ := os.ReadFile(p)
	if strings.Contains(string(b), "passwd") {
		t.Error("the coordinator's model name reached the model file")
	}
}

// chargesOf counts the charges in site s's ledger.
func chargesOf(t *testing.T, s *Site) int {
	t.Helper()
	es, err := dp.ReadLedger(filepath.Join(s.cfg.State, "site-ledger.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		if e.Kind == "charge" {
			n++
		}
	}
	return n
}

// TestAttackGridStepProbesTrainerEndToEnd: the grid-step probe against a
// real site with a ledger and a --train-cmd-like Trainer, through
// Site.start as the coordinator drives it: σ 1, clip 1 (an ordinary
// charge the site's budget accepts), γ = 2^-63. The refusal sent to the
// coordinator names the first coordinate of the un-noised, clipped update
// above 2^62·γ = 0.5; nothing is charged, so the coordinator can repeat
// with γ = 2^-64, 2^-65, … (and other clips) as often as it likes.
func TestAttackGridStepProbesTrainerEndToEnd(t *testing.T) {
	var update []float64
	b := newAttackBed(t, 3, []int{1}, func(c *SiteConfig) {
		c.Level = dp.ClientLevel
		c.Trainer = func(q TrainRequest) (TrainResult, error) { return TrainResult{Update: update}, nil }
	})
	s := b.sites[1]
	reasons := map[string]string{}
	for name, u := range map[string][]float64{"small": make([]float64, 31), "coordinate 17 large": make([]float64, 31)} {
		update = u
		if name != "small" {
			update[17] = 0.9
		} else {
			for i := range update {
				update[i] = 0.01
			}
		}
		st := b.train([]int{1, 2, 3}, func(st *wire.RoundStart) {
			st.Level, st.Bits, st.SiteSigma, st.Gamma = string(dp.ClientLevel), 64, 1, math.Ldexp(1, -63)
		})
		_, _, err := b.start(s, st)
		reasons[name] = "(joined)"
		if err != nil {
			reasons[name] = err.Error()
		}
	}
	if reasons["small"] != reasons["coordinate 17 large"] {
		t.Errorf("the refusal sent to the coordinator depends on the trainer's un-noised update:\n  all coordinates 0.01 -> %q\n  coordinate 17 = 0.9  -> %q", reasons["small"], reasons["coordinate 17 large"])
	}
	if n := chargesOf(t, s); n != 0 {
		t.Logf("charges: %d", n)
	} else {
		t.Log("neither probe was charged to the site's ledger")
	}
}

// TestAttackTinyScaleRangeOracleEndToEnd: a real record-level site with
// its CSV data. The coordinator centres feature 0's standardization on m
// with scale s tiny, so that (x − m)/s overflows exactly when |x − m| >
// 1.797e308·s. The site joins when every record lies in that interval and
// refuses (free, "cannot clip ... infinite") when one does not: one
// patient's value decides it. By bisection the coordinator learns the
// hospital's minimum and maximum of every feature without paying ε.
func TestAttackTinyScaleRangeOracleEndToEnd(t *testing.T) {
	b := newAttackBed(t, 3, []int{1}, nil)
	s := b.sites[1]
	base := s.cfg.Data
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range base.X {
		lo, hi = min(lo, x[0]), max(hi, x[0])
	}
	m, w := (lo+hi)/2, (hi-lo)/2+1
	outcome := func(d *fl.Dataset) string {
		s.cfg.Data = d
		st := b.train([]int{1, 2, 3}, func(st *wire.RoundStart) {
			st.Mean[0], st.Scale[0] = m, w/math.MaxFloat64
		})
		if _, _, err := b.start(s, st); err != nil {
			return err.Error()
		}
		return "(joined)"
	}
	outlier := *base
	outlier.X = append([][]float64(nil), base.X...)
	row := append([]float64(nil), base.X[0]...)
	row[0] = hi + 10
	outlier.X[0] = row
	a, c := outcome(base), outcome(&outlier)
	if a != c {
		t.Errorf("one patient's feature decides the site's answer to a round with scale %.3g around %.4g:\n  hospital's data        -> %q\n  one patient at %.4g -> %q (charges in the ledger: %d)", w/math.MaxFloat64, m, a, hi+10, c, chargesOf(t, s))
	}
}

// TestAttackRecordToClientDowngradeFromLedger: a site with no configured
// level that has paid one record-level round is offered client-level
// rounds; it refuses and pays nothing more.
func TestAttackRecordToClientDowngradeFromLedger(t *testing.T) {
	b := newAttackBed(t, 3, []int{1}, nil)
	s := b.sites[1]
	r, _, err := b.start(s, b.train([]int{1, 2, 3}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ledger.Charge(*r.charge); err != nil {
		t.Fatal(err)
	}
	for _, lv := range []string{"client", "Client", "CLIENT", " record", ""} {
		if _, _, err := b.start(s, b.train([]int{1, 2, 3}, func(st *wire.RoundStart) { st.Level = lv })); err == nil {
			t.Errorf("a site whose ledger is at record level accepts a round at level %q", lv)
		}
	}
	if n := chargesOf(t, s); n != 1 {
		t.Errorf("%d charges after the refused rounds, want 1", n)
	}
}

// TestAttackNonsenseClipNeverRunsTrainer: a coordinator announces a clip
// of +Inf, 0 or below (or a max float) for a DP round: the site refuses
// before its trainer runs and pays nothing.
func TestAttackNonsenseClipNeverRunsTrainer(t *testing.T) {
	ran := 0
	b := newAttackBed(t, 3, []int{1}, func(c *SiteConfig) {
		c.Trainer = func(q TrainRequest) (TrainResult, error) {
			ran++
			return TrainResult{Update: make([]float64, q.Layout.Len()), Records: q.Records}, nil
		}
	})
	s := b.sites[1]
	for _, c := range []float64{math.Inf(1), 0, -1, math.MaxFloat64} {
		st := b.train([]int{1, 2, 3}, func(st *wire.RoundStart) { st.Clip = c })
		if _, _, err := b.start(s, st); err == nil {
			t.Errorf("clip %v: the site joins", c)
		}
	}
	if ran != 0 || chargesOf(t, s) != 0 {
		t.Errorf("the trainer ran %d times, %d charges", ran, chargesOf(t, s))
	}
}

// TestAttackRecordCountNotFromRound: at record level the number of
// records a trainer is told to sum over (and that bounds its sum's norm)
// is the site's own, whatever the coordinator's round says (members,
// sites, cohort, length).
func TestAttackRecordCountNotFromRound(t *testing.T) {
	var told []int
	b := newAttackBed(t, 3, []int{1}, func(c *SiteConfig) {
		c.Trainer = func(q TrainRequest) (TrainResult, error) {
			told = append(told, q.Records)
			return TrainResult{Update: make([]float64, q.Layout.Len()), Records: q.Records}, nil
		}
	})
	s := b.sites[1]
	rows := s.cfg.Data.Rows()
	for _, change := range []func(*wire.RoundStart){
		func(st *wire.RoundStart) { st.MinCohort = 1000 },
		func(st *wire.RoundStart) { st.Colluders = 1 },
		func(st *wire.RoundStart) { st.Delta = 1 },
	} {
		b.start(s, b.train([]int{1, 2, 3}, change))
	}
	if len(told) == 0 {
		t.Fatal("the trainer never ran")
	}
	for _, n := range told {
		if n != rows {
			t.Errorf("the trainer was told %d records; the site holds %d", n, rows)
		}
	}
}
