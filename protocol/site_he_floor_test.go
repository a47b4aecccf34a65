package protocol

import (
	"crypto/ed25519"
	"math"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/he"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

// TestAttackHEChargeAboveGroupFloor: the group's key ceremony fixed the
// fewest contributors a decrypted sum must hold at 3; a training round
// then announces a minimum cohort of 5. A site that charged for 5 honest
// noise shares while its decryptor helps open sums of 3 would be charged
// too little (ε 0.578 where the sum is worth 0.762). The site charges for
// the group's floor.
func TestAttackHEChargeAboveGroupFloor(t *testing.T) {
	b := newAttackBed(t, 5, []int{1}, func(c *SiteConfig) { c.EpsilonCap = 100 })
	params, err := he.NewParams(he.Config{Preset: heNetPreset, Parties: 5, Threshold: 3, MinContributors: 3, MaxAbsSum: heNetMaxAbs})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]ed25519.PrivateKey, 5)
	for i := range ids {
		ids[i] = b.keys[i+1]
	}
	parties, err := he.SetupLocal(params, ids)
	if err != nil {
		t.Fatal(err)
	}
	s := b.sites[1]
	s.he = parties[0]
	if got := s.he.MinContributors(); got != 3 {
		t.Fatalf("group floor %d", got)
	}
	b.sid++
	st := &wire.RoundStart{Round: b.sid, Kind: wire.RoundStart_TRAIN, Length: 31, Model: make([]float64, 31),
		Clip: 1, Gamma: math.Exp2(-24), SiteSigma: 3, MinCohort: 5, ModelName: "logistic",
		Mean: make([]float64, 30), Scale: ones(30), Sites: 5, Delta: 1e-5, Mode: string(HE), Level: string(dp.ClientLevel),
		Members: []uint32{1, 2, 3, 4, 5}, HePreset: heNetPreset.Name, HeMaxAbs: heNetMaxAbs}
	r, _, err := b.start(s, st)
	if err != nil {
		t.Fatal(err)
	}
	if want := 3 * math.Sqrt(3); r.charge == nil || math.Abs(sumSigma(r.charge)-want) > 1e-12 {
		t.Fatalf("charged for σ %v, want %v (3 honest shares, the group's floor)", sumSigma(r.charge), want)
	}
}
