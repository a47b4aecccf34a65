package protocol

import (
	"math"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

// hugeGridRound: a linear model with bias 9.4e300 and age standardized
// around 60 at scale 1e-6: every record of lengthOfStay not aged 60 has a
// finite gradient ≈ 9.4e300·(age−60)·1e6 along age, at least the clip,
// so it is clipped to a vector whose first coordinate is ≈ clip; a record
// aged 60 adds 0 there. With clip = MaxFloat64/19.5 the record-level
// sum's first coordinate over the 20 records is +Inf unless one patient is
// aged 60. The grid step 2^1000 keeps the noise share's variance (σ/γ)²
// under 2^60, and makes quantize's clamp bound Ldexp(γ, 61) itself +Inf.
func hugeGridRound(round uint64) *wire.RoundStart {
	clip := math.MaxFloat64 / 19.5
	return &wire.RoundStart{Round: round, Kind: wire.RoundStart_TRAIN, Mode: string(SecAgg), Bits: 64, Length: 3,
		Model: []float64{0, 0, 9.4e300}, ModelName: "linear",
		Mean: []float64{60, 0, 0}, Scale: []float64{1e-6, 1, 1e300},
		Clip: clip, Level: string(dp.RecordLevel), SiteSigma: 3 * clip, Gamma: math.Ldexp(1, 1000)}
}

// TestAttackHugeGridInfSumRefuses: the site's record-level sum overflows
// to +Inf unless one patient is aged 60; quantize's clamp to
// ±Ldexp(γ, 61) does not bound it (that bound is +Inf for γ ≥ 2^963), and
// dp.Round refuses the coordinate: a refusal, before joining and without
// a charge, that depends on one record.
func TestAttackHugeGridInfSumRefuses(t *testing.T) {
	outcome := func(age0 float64) string {
		s := probeSite(t, lengthOfStay(age0))
		r := &siteRound{s: s, start: hugeGridRound(2 << 20)}
		v, err := r.vector()
		if err != nil {
			return "vector: " + err.Error()
		}
		if _, err := r.quantize(v); err != nil {
			return "quantize: " + err.Error()
		}
		return ""
	}
	young, old := outcome(41), outcome(60)
	if young != old {
		t.Errorf("one patient's age changes the site's answer: aged 41 -> %q, aged 60 -> %q", young, old)
	}
}

// TestAttackHugeGridInfSumEndToEnd: the same round through a site's
// start, with its ledger, budget and floors.
func TestAttackHugeGridInfSumEndToEnd(t *testing.T) {
	outcome := func(age0 float64) string {
		b := newAttackBed(t, 3, []int{1}, func(c *SiteConfig) { c.Data = lengthOfStay(age0) })
		st := b.train([]int{1, 2, 3}, func(st *wire.RoundStart) {
			h := hugeGridRound(0)
			st.ModelName, st.Length, st.Model, st.Mean, st.Scale = h.ModelName, h.Length, h.Model, h.Mean, h.Scale
			st.Clip, st.SiteSigma, st.Gamma, st.Bits = h.Clip, h.SiteSigma, h.Gamma, h.Bits
		})
		if _, _, err := b.start(b.sites[1], st); err != nil {
			return err.Error()
		}
		return "joined"
	}
	at60, at41 := outcome(60), outcome(41)
	if at60 != "joined" {
		t.Skipf("the round is refused on public grounds (%s): no oracle", at60)
	}
	if at41 != at60 {
		t.Errorf("the site joins when one patient is aged 60 and answers %q when that patient is aged 41 instead (γ = 2^1000, clip %.4g: accepted)", at41, hugeGridRound(0).Clip)
	}
}
