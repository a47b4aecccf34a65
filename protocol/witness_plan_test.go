package protocol

import (
	"strings"
	"testing"
)

// TestAttackWitnessCheapPlanCharge: the coordinator charges the session
// with a plan far cheaper than the session's terms (a noise share 100x
// the one announced, so a multiplier 100x larger and an ε orders of
// magnitude smaller), and shows that entry as the session's charge. Each
// site compares the entry's plan with the noise the session announced
// (its own charge's plan) and refuses: nothing opens.
func TestAttackWitnessCheapPlanCharge(t *testing.T) {
	b := newAttackBed(t, 3, []int{1, 2, 3}, nil)
	set := []int{1, 2, 3}
	d := b.begin(b.train(set, nil))
	d.shareAndMask()
	r := d.parties[1].round
	honest := *r.charge
	cheap := honest
	plan := *honest.Plan
	plan.SiteSigma *= 100
	cheap.Plan, cheap.Session = &plan, d.st.Round
	m, err := plan.Multiplier()
	if err != nil {
		t.Fatal(err)
	}
	cheap.Event.NoiseMultiplier = m
	epsHonest, err := b.ledger.Preview(honest)
	if err != nil {
		t.Fatal(err)
	}
	e, err := b.ledger.Charge(cheap)
	if err != nil {
		t.Fatalf("the ledger refused the cheap charge: %v", err)
	}
	b.charged[d.st.Round] = e.Seq
	t.Logf("ε after the session's real charge would be %v; recorded: %v", epsHonest, b.ledger.Spent())
	got := d.unmask(set, set, d.sign(set, set))
	for _, site := range set {
		if err := d.refused[site]; err == nil || !strings.Contains(err.Error(), "other than this session's") {
			t.Errorf("site %d: %v, want a refusal naming the noise", site, err)
		}
	}
	if len(got) > 0 {
		t.Errorf("sites revealed %d unmasking shares after cosigning a charge whose plan (σ %v, multiplier %v) is not the session's (σ %v, multiplier %v)",
			len(got), plan.SiteSigma, m, honest.Plan.SiteSigma, honest.Event.NoiseMultiplier)
	}
}
