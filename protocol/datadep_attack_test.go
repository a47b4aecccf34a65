package protocol

import (
	"bytes"
	"log/slog"
	"math"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

// The coordinator is the adversary: it chooses everything in the
// RoundStart. Each test fails if the coordinator's round makes the site's
// behaviour, or the size of what one record moves, depend on its data
// beyond what the round's charge covers.

func probeSite(t *testing.T, d *fl.Dataset) *Site {
	t.Helper()
	return &Site{cfg: SiteConfig{Data: d, Hidden: 16}, log: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), sampler: attackSampler(t)}
}

func l2dist(a, b []float64) float64 {
	var s float64
	for i := range a {
		s = math.Hypot(s, a[i]-b[i])
	}
	return s
}

// lengthOfStay is a small regression data set: age, a second feature and
// a length of stay; row 0 is the patient the coordinator targets.
func lengthOfStay(age0 float64) *fl.Dataset {
	d := &fl.Dataset{Features: []string{"age", "creatinine"}, Task: fl.Regression}
	for i := range 20 {
		age := 40 + float64(i)
		if i == 0 {
			age = age0
		}
		d.X = append(d.X, []float64{age, 0.8 + float64(i%5)/10})
		d.Y = append(d.Y, float64(1+i%9))
	}
	return d
}

// TestAttackNormOverflowZeroesWholeRecordSum: record level, the site's
// own clipped-gradient sum. The coordinator picks a linear model (bias 1),
// a standardization that maps the second feature to 1.5e308 for every
// record (mean −1.5e300, scale 1e-8), the label to ~0 (scale 1e12), and
// age with mean 0 and scale 6.9e-307. Every record's gradient is then
// (age/s, 1.5e308, 1): finite, so not skipped, and clipped to the clip —
// except for a record whose age lies in (68.6, 124), whose gradient is
// finite but whose L2 norm overflows: dp.ClipL2 fails, ClippedGradientSum
// fails, and vector() replaces the WHOLE sum (20 records × clip) by zero.
// One patient's age then moves the site's input by ~18 × clip, while the
// charge assumes one record moves it by at most clip (2·clip replacing).
func TestAttackNormOverflowZeroesWholeRecordSum(t *testing.T) {
	outcome := func(age0 float64) []float64 {
		s := probeSite(t, lengthOfStay(age0))
		st := &wire.RoundStart{Round: 2 << 20, Kind: wire.RoundStart_TRAIN, Mode: string(SecAgg), Bits: 64, Length: 3,
			Model: []float64{0, 0, 1}, ModelName: "linear",
			Mean: []float64{0, -1.5e300, 0}, Scale: []float64{90 / 1.3e308, 1e-8, 1e12},
			Clip: 1, Level: string(dp.RecordLevel), SiteSigma: 1, Gamma: math.Ldexp(1, -20)}
		r := &siteRound{s: s, start: st}
		v, err := r.vector()
		if err != nil {
			t.Fatalf("age %v: refusal %v", age0, err)
		}
		if _, err := r.quantize(v); err != nil {
			t.Fatalf("age %v: quantize refusal %v", age0, err)
		}
		return v
	}
	young, old := outcome(41), outcome(90)
	if d := l2dist(young, old); d > 2*(1+1e-9) {
		t.Errorf("one patient's age moves the site's record-level input by %.3g (clip 1; the charge covers 2 when replacing one record):\n  patient aged 41 -> %v\n  patient aged 90 -> %v", d, young, old)
	}
}

// TestAttackClientTrainerNormOverflowRefuses: client level with the
// hospital's own trainer. The trainer honestly returns an update whose
// values are finite but whose L2 norm overflows (two coordinates of
// 1.5e308, as a coordinator's tiny standardization scale produces for one
// far-out patient). trained() checks each value is finite, then
// dp.ClipL2 fails on the norm and the error is returned, not turned into
// a zero update: the site refuses the round, for free, with the text of
// the clip error, exactly when one patient's value lies in the
// coordinator's interval.
func TestAttackClientTrainerNormOverflowRefuses(t *testing.T) {
	outcome := func(ages []float64) string {
		tr := func(q TrainRequest) (TrainResult, error) {
			u := make([]float64, q.Layout.Len())
			for _, a := range ages {
				z := (a - q.Mean[0]) / q.Scale[0]
				u[0] += z
				u[1] += z
			}
			return TrainResult{Update: u}, nil
		}
		r, _ := trainerRound(dp.ClientLevel, tr, 0)
		r.s.sampler = attackSampler(t)
		r.start.Mode, r.start.Bits, r.start.SiteSigma, r.start.Gamma = string(SecAgg), 64, 1, math.Ldexp(1, -20)
		r.start.Mean, r.start.Scale = []float64{50, 0, 0}, []float64{41 / 1.5e308, 1, 1}
		return siteOutcome(r)
	}
	a, b := outcome([]float64{51, 49}), outcome([]float64{51, 90})
	if a != b {
		t.Errorf("whether the site refuses depends on one patient's age (finite update, overflowing norm):\n  ages [51 49] -> %q\n  ages [51 90] -> %q", a, b)
	}
}

// TestAttackClientTrainerNormOverflowEndToEnd: the same through
// Site.start on a real site with a ledger: the refusal reaches the
// coordinator and nothing is charged.
func TestAttackClientTrainerNormOverflowEndToEnd(t *testing.T) {
	var update []float64
	b := newAttackBed(t, 3, []int{1}, func(c *SiteConfig) {
		c.Level = dp.ClientLevel
		c.Trainer = func(q TrainRequest) (TrainResult, error) { return TrainResult{Update: update}, nil }
	})
	s := b.sites[1]
	answer := func(u []float64) string {
		update = u
		st := b.train([]int{1, 2, 3}, func(st *wire.RoundStart) { st.Level = string(dp.ClientLevel) })
		if _, _, err := b.start(s, st); err != nil {
			return err.Error()
		}
		return "(joined)"
	}
	small := make([]float64, 31)
	small[0], small[1] = 0.5, 0.5
	huge := make([]float64, 31)
	huge[0], huge[1] = 1.5e308, 1.5e308
	a, c := answer(small), answer(huge)
	if a != c {
		t.Errorf("the site's answer depends on its trainer's (data-dependent) update:\n  update (0.5, 0.5, 0…)       -> %q\n  update (1.5e308, 1.5e308, 0…) -> %q (charges: %d)", a, c, chargesOf(t, s))
	}
}

// TestAttackHETinyGridProbesUpdate: he mode. The coordinator announces
// γ = 2^-60 (heGrid accepts down to 2^-60). heStart clamps each coordinate
// only to the encryption's bound (~2^40), not to what the grid holds, so a
// coordinate above 2^62·γ = 4 makes dp.Round fail inside Encrypt (the
// noise step), after the charge: the site answers "could not encrypt"
// instead of submitting. Whether a coordinate of the un-noised update
// passes 4 decides what the site says. (With a noise share σ the grid
// Gaussian needs σ/γ ≤ 2^30, which with the ε cap keeps this out of
// reach; a round without noise, which a site allowing no-DP rounds
// accepts, has no such limit. secagg clamps to 2^61·γ in both cases.)
func TestAttackHETinyGridProbesUpdate(t *testing.T) {
	var update []float64
	b := newAttackBed(t, 3, []int{1, 2, 3}, func(c *SiteConfig) {
		c.EpsilonCap = 1000
		c.AllowNoDP = true
		c.Trainer = func(q TrainRequest) (TrainResult, error) { return TrainResult{Update: update, Records: q.Records}, nil }
	})
	if refused := b.heCeremony(0); len(refused) > 0 {
		t.Fatalf("key ceremony: %v", refused)
	}
	s := b.sites[1]
	answer := func(u []float64) string {
		update = u
		st := b.heTrainStart([]int{1, 2, 3}, 1, 0)
		st.Gamma = math.Ldexp(1, -60)
		if _, _, err := b.start(s, st); err != nil {
			return err.Error()
		}
		return "(joined and submitted)"
	}
	small := make([]float64, 31)
	small[17] = 0.5
	large := make([]float64, 31)
	large[17] = 5
	a, c := answer(small), answer(large)
	if a != c {
		t.Errorf("in he mode with γ = 2^-60 the site's answer depends on its un-noised update:\n  coordinate 17 = 0.5 -> %q\n  coordinate 17 = 5   -> %q (charges: %d)", a, c, chargesOf(t, s))
	}
}

// TestAttackHETinyGridProbesStatistics: the same probe on an he
// statistics round with the site's own data, γ = 2^-58 (2^62·γ = 16): the
// count coordinate (rows × w, w = √30/2) passes 16 from 6 records on, so
// whether the site submits depends on its data: 3 records vs 6 here (a
// column's clipped sum is probed the same way).
func TestAttackHETinyGridProbesStatistics(t *testing.T) {
	b := newAttackBed(t, 3, []int{1, 2, 3}, func(c *SiteConfig) {
		c.EpsilonCap = 1000
		c.AllowNoDP = true
	})
	if refused := b.heCeremony(0); len(refused) > 0 {
		t.Fatalf("key ceremony: %v", refused)
	}
	s := b.sites[1]
	full := s.cfg.Data
	answer := func(d *fl.Dataset) string {
		s.cfg.Data = d
		b.sid++
		st := &wire.RoundStart{Round: b.sid, Kind: wire.RoundStart_STATISTICS, Length: uint32(1 + 2*30), Bits: 64,
			Gamma: math.Ldexp(1, -58), Mode: string(HE), Sites: 3, MinCohort: 3, Members: []uint32{1, 2, 3},
			Level: string(dp.RecordLevel), HePreset: heNetPreset.Name, HeMaxAbs: heNetMaxAbs, Mean: make([]float64, 30), Scale: ones(30)}
		// Centre column 0 far below every value, half-width 1: every
		// record contributes u = 1 to its sum.
		st.Mean[0] = -1e9
		_, _, err := b.start(s, st)
		if err != nil {
			return err.Error()
		}
		return "(joined)"
	}
	a := answer(full.Subset([]int{0, 1, 2}))
	// A fresh site state for the second release (statistics are released once).
	b2 := newAttackBed(t, 3, []int{1, 2, 3}, func(c *SiteConfig) { c.EpsilonCap = 1000; c.AllowNoDP = true })
	if refused := b2.heCeremony(0); len(refused) > 0 {
		t.Fatalf("key ceremony: %v", refused)
	}
	b, s = b2, b2.sites[1]
	c := answer(full.Subset([]int{0, 1, 2, 3, 4, 5}))
	t.Logf("3 records -> %q; 6 records -> %q", a, c)
	if a != c {
		t.Errorf("in an he statistics round with γ = 2^-58 the site's answer depends on its data:\n  3 records -> %q\n  6 records -> %q", a, c)
	}
}

// TestAttackRareClassRevealedByRefusal: the site's class count comes from
// its labels (the largest label + 1). A coordinator announces a softmax
// (or mlp) round with 2 classes: a site where one patient has the rare
// class 2 refuses ("this site's labels more"), one without joins. By
// varying the classes it learns the largest label present, at no charge:
// whether a single patient with a rare diagnosis is at the site.
func TestAttackRareClassRevealedByRefusal(t *testing.T) {
	outcome := func(y0 float64) string {
		d := &fl.Dataset{Features: []string{"a"}, Task: fl.Multiclass, Classes: 2}
		for i := range 10 {
			d.X = append(d.X, []float64{float64(i)})
			d.Y = append(d.Y, float64(i%2))
		}
		d.Y[0] = y0
		d.Classes = max(int(y0)+1, 2) // as fl's loader computes it
		s := probeSite(t, d)
		st := &wire.RoundStart{Round: 2 << 20, Kind: wire.RoundStart_TRAIN, Mode: string(SecAgg), Bits: 64, Length: 4,
			Model: make([]float64, 4), ModelName: "softmax", Mean: []float64{0}, Scale: []float64{1},
			Clip: 1, Level: string(dp.RecordLevel), SiteSigma: 1, Gamma: math.Ldexp(1, -20)}
		return siteOutcome(&siteRound{s: s, start: st})
	}
	a, c := outcome(0), outcome(2)
	if a != c {
		t.Errorf("one patient's label decides whether the site refuses a 2-class round:\n  patient 0 in class 0 -> %q\n  patient 0 in class 2 -> %q", a, c)
	}
}

// What withstood.

// TestAttackNonFiniteRecordSkippedSensitivity: a record whose gradient
// overflows to Inf contributes nothing; the sum moves by at most the clip.
func TestAttackNonFiniteRecordSkippedSensitivity(t *testing.T) {
	outcome := func(x0 float64) []float64 {
		d := &fl.Dataset{Features: []string{"a"}, Task: fl.Binary, Classes: 2}
		for i := range 10 {
			d.X = append(d.X, []float64{float64(i)})
			d.Y = append(d.Y, float64(i%2))
		}
		d.X[0][0] = x0
		s := probeSite(t, d)
		st := &wire.RoundStart{Round: 2 << 20, Kind: wire.RoundStart_TRAIN, Mode: string(SecAgg), Bits: 32, Length: 2,
			Model: []float64{1e300, -1e300}, ModelName: "logistic", Mean: []float64{5}, Scale: []float64{1e-307},
			Clip: 1, Level: string(dp.RecordLevel), SiteSigma: math.Ldexp(1, -40), Gamma: math.Ldexp(1, -63)}
		r := &siteRound{s: s, start: st}
		v, err := r.vector()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.quantize(v); err != nil {
			t.Fatalf("quantize: %v", err)
		}
		return v
	}
	a, c := outcome(5), outcome(1e300)
	if d := l2dist(a, c); d > 2 {
		t.Errorf("one record moves the sum by %v > 2·clip", d)
	}
}

// TestAttackExtremeModelsNeverRefuseOrPanic: mlp, softmax, linear at
// extreme weights and standardizations, record and client level, 32- and
// 64-bit rings, tiny γ: the site never refuses and never panics, and a
// client-level update stays within the clip.
func TestAttackExtremeModelsNeverRefuseOrPanic(t *testing.T) {
	big := math.MaxFloat64
	for _, level := range []dp.Level{dp.RecordLevel, dp.ClientLevel} {
		for _, bits := range []uint32{32, 64} {
			for _, tc := range []struct {
				name  string
				n     int
				task  fl.Task
				model func(n int) []float64
			}{
				{"mlp", 16*3 + 17*3, fl.Multiclass, nil},
				{"softmax", 3 * 3, fl.Multiclass, nil},
				{"linear", 3, fl.Regression, nil},
				{"logistic", 3, fl.Binary, nil},
			} {
				d := &fl.Dataset{Features: []string{"a", "b"}, Task: tc.task, Classes: 3}
				if tc.task == fl.Binary {
					d.Classes = 2
				}
				for i := range 12 {
					d.X = append(d.X, []float64{float64(i) * 1e10, -float64(i)})
					d.Y = append(d.Y, float64(i%d.Classes))
				}
				if tc.task == fl.Regression {
					d.Classes = 0
				}
				w := make([]float64, tc.n)
				for i := range w {
					w[i] = big * float64(1-2*(i%2))
				}
				s := probeSite(t, d)
				s.cfg.LocalTraining = fl.TrainConfig{Epochs: 2, BatchSize: 4, LearningRate: 1e300}
				st := &wire.RoundStart{Round: 2 << 20, Kind: wire.RoundStart_TRAIN, Mode: string(SecAgg), Bits: bits, Length: uint32(tc.n),
					Model: w, ModelName: tc.name, Mean: []float64{0, 0}, Scale: []float64{5e-324, 1e-300},
					Clip: 1, Level: string(level), SiteSigma: math.Ldexp(1, -40), Gamma: math.Ldexp(1, -63)}
				func() {
					defer func() {
						if p := recover(); p != nil {
							t.Errorf("%s %s %d bits: panic %v", tc.name, level, bits, p)
						}
					}()
					r := &siteRound{s: s, start: st}
					if got := siteOutcome(r); got != "" {
						t.Errorf("%s %s %d bits: refusal %q", tc.name, level, bits, got)
					}
					if level == dp.ClientLevel {
						v, _ := r.vector()
						if n := l2dist(v, make([]float64, len(v))); n > 1 {
							t.Errorf("%s client level: update norm %v > clip", tc.name, n)
						}
					}
				}()
			}
		}
	}
}

// TestAttackStatisticsExtremeRanges: a statistics round with a tiny
// half-width and extreme midpoints, secagg with γ = 2^-63: every value is
// clipped to [−1, 1] and the site joins whatever its data.
func TestAttackStatisticsExtremeRanges(t *testing.T) {
	for _, x0 := range []float64{0, 1e308, -1e308, math.Inf(1), math.NaN()} {
		d := &fl.Dataset{Features: []string{"a"}, Task: fl.Binary, Classes: 2, X: [][]float64{{x0}, {1}}, Y: []float64{0, 1}}
		s := probeSite(t, d)
		st := &wire.RoundStart{Round: 0, Kind: wire.RoundStart_STATISTICS, Mode: string(SecAgg), Bits: 32, Length: 3,
			Mean: []float64{1e308}, Scale: []float64{5e-324}, Level: string(dp.RecordLevel), SiteSigma: math.Ldexp(1, -40),
			Gamma: math.Ldexp(1, -63)}
		if got := siteOutcome(&siteRound{s: s, start: st}); got != "" && !strings.Contains(got, "columns") {
			t.Errorf("x0 = %v: refusal %q", x0, got)
		} else if got != "" {
			t.Fatalf("setup: %s", got)
		}
	}
}

// TestRecordTrainerSkipsFailingRecord: record level with a hospital's
// trainer that clips each record and, as docs/TRAINER.md requires, lets a
// record whose standardized value or gradient overflows contribute nothing
// instead of failing. One patient's value then moves the site's input by
// at most the clip (here 2·clip: one record replaced). The site cannot
// enforce this for a trainer that fails on one record instead: it sends a
// zero update for the whole sum then, beyond the record-level charge
// (SECURITY.md, "A hospital's own trainer").
func TestRecordTrainerSkipsFailingRecord(t *testing.T) {
	outcome := func(ages []float64) []float64 {
		tr := func(q TrainRequest) (TrainResult, error) {
			u := make([]float64, q.Layout.Len())
			for _, a := range ages {
				z := (a - q.Mean[0]) / q.Scale[0]
				if math.IsInf(z, 0) {
					continue // this record contributes nothing
				}
				// logistic gradient at w = 0, label 0: (0.5·z, 0.5·0, 0.5·0, 0.5), clipped to q.Clip
				g := []float64{0.5 * z, 0, 0, 0.5}
				n := math.Hypot(g[0], g[3])
				for k := range g {
					if n > q.Clip {
						g[k] *= q.Clip / n
					}
					u[k] += g[k]
				}
			}
			return TrainResult{Update: u, Records: q.Records}, nil
		}
		r, _ := trainerRound(dp.RecordLevel, tr, len(ages))
		r.s.sampler = attackSampler(t)
		r.start.Model = make([]float64, 4)
		r.start.Mode, r.start.Bits, r.start.SiteSigma, r.start.Gamma = string(SecAgg), 64, 1, math.Ldexp(1, -20)
		r.start.Mean, r.start.Scale = []float64{50, 0, 0}, []float64{41 / math.MaxFloat64, 1, 1}
		v, err := r.vector()
		if err != nil {
			t.Fatalf("refusal %v", err)
		}
		return v
	}
	ages := []float64{51, 52, 53, 54, 55, 56, 57, 58, 59, 60}
	a := outcome(ages)
	ages[0] = 95
	c := outcome(ages)
	if d := l2dist(a, c); d > 2*(1+1e-9) {
		t.Errorf("one patient's age moves the site's record-level input by %.3g (clip 1):\n  patient aged 51 -> %v\n  patient aged 95 -> %v ", d, a, c)
	}
}

// TestAttackPublicRefusalAfterTrainerRuns: a grid step that is not a
// power of two is refused before the trainer runs (the charge), but a
// noise share the grid cannot sample (σ/γ > 2^30, here γ = 2^-40, σ = 3)
// is refused only in quantize, after the trainer has run on the data: the
// refusal is public but it comes after the trainer's (data-dependent)
// running time, and the trainer runs for a round the site then refuses.
func TestAttackPublicRefusalAfterTrainerRuns(t *testing.T) {
	ran := 0
	b := newAttackBed(t, 3, []int{1}, func(c *SiteConfig) {
		c.Trainer = func(q TrainRequest) (TrainResult, error) {
			ran++
			return TrainResult{Update: make([]float64, q.Layout.Len()), Records: q.Records}, nil
		}
	})
	s := b.sites[1]
	for _, change := range []func(*wire.RoundStart){
		func(st *wire.RoundStart) { st.Gamma = 3 },
		func(st *wire.RoundStart) { st.Gamma = math.Ldexp(1, -40) },
	} {
		before := ran
		_, _, err := b.start(s, b.train([]int{1, 2, 3}, change))
		if err == nil {
			t.Fatal("the site joined")
		}
		t.Logf("refusal %q after %d trainer runs", err, ran-before)
	}
	if ran != 0 {
		t.Errorf("the trainer ran %d times for rounds refused on public grounds (the grid), so the refusal comes after data-dependent work", ran)
	}
}
