package protocol

import (
	"math"
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

// TestAttackTinyClipHangsOnOneRecord: record level, the site's own
// clipped-gradient sum. The coordinator picks a linear model, a
// standardization centred on age 90 and a clip of 1e-100 (a tiny clip only
// lowers the charge, so the site accepts it). A record aged far from 90
// has a gradient norm above 1e224, so clip/norm underflows to 0 and
// dp.ClipL2 returns at once; a record aged 90 has a gradient norm near
// 2e222, clip/norm is a subnormal of about ten units in the last place,
// the scaled gradient lands percents above the clip, and ClipL2's shrink
// loop steps it down one ulp at a time (~10^14 passes). Whether the site
// ever answers the round (and whether a CPU spins forever) then depends
// on one patient's age, at no charge.
func TestAttackTinyClipHangsOnOneRecord(t *testing.T) {
	outcome := func(age0, bias float64) bool {
		s := probeSite(t, lengthOfStay(age0))
		st := &wire.RoundStart{Round: 2 << 20, Kind: wire.RoundStart_TRAIN, Mode: string(SecAgg), Bits: 64, Length: 3,
			Model: []float64{1e222, 0, bias}, ModelName: "linear",
			Mean: []float64{90, 0, 0}, Scale: []float64{1, 1, 1},
			Clip: 1e-100, Level: string(dp.RecordLevel), SiteSigma: 1e-99, Gamma: math.Ldexp(1, -400)}
		r := &siteRound{s: s, start: st}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if _, err := r.vector(); err != nil {
				t.Errorf("age %v: refusal %v", age0, err)
			}
		}()
		select {
		case <-done:
			return true
		case <-time.After(4 * time.Second):
			return false
		}
	}
	if !outcome(41, 1.5e222) {
		t.Fatalf("the site hangs even without the patient aged 90: the setup is wrong")
	}
	if !outcome(90, 1.5e222) {
		t.Errorf("with one patient aged 90 the site's record-level sum does not return within 4s (aged 41: at once): dp.ClipL2's shrink loop from a subnormal scale")
	}
}

// TestAttackTinyClipHangsSiteEndToEnd: the same round through a site's
// start, with its ledger, budget and floors: a clip of 1e-100 and a grid
// that fits it are accepted, and then one patient aged 90 decides whether
// the site ever answers.
func TestAttackTinyClipHangsSiteEndToEnd(t *testing.T) {
	outcome := func(age0 float64) (string, bool) {
		b := newAttackBed(t, 3, []int{1}, func(c *SiteConfig) { c.Data = lengthOfStay(age0) })
		st := b.train([]int{1, 2, 3}, func(st *wire.RoundStart) {
			st.ModelName, st.Length = "linear", 3
			st.Model = []float64{1e222, 0, 1.5e222}
			st.Mean, st.Scale = []float64{90, 0, 0}, []float64{1, 1, 1}
			st.Clip, st.SiteSigma, st.Gamma, st.Bits = 1e-100, 3e-100, math.Ldexp(1, -350), 64
		})
		type res struct{ err error }
		done := make(chan res, 1)
		go func() {
			_, _, err := b.start(b.sites[1], st)
			done <- res{err}
		}()
		select {
		case r := <-done:
			if r.err != nil {
				return "refused: " + r.err.Error(), true
			}
			return "joined", true
		case <-time.After(6 * time.Second):
			return "no answer within 6s", false
		}
	}
	young, ok := outcome(41)
	if !ok || young != "joined" {
		t.Fatalf("without the patient aged 90: %s (the round must be accepted for the attack)", young)
	}
	if old, ok := outcome(90); !ok {
		t.Errorf("the site joins when no patient is aged 90 but gives %s when one is", old)
	}
}
