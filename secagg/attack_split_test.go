package secagg_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/fl-secure/fl-secure/secagg"
	"github.com/fl-secure/fl-secure/secagg/secaggtest"
)

// splitView describes a split-view attack on the complete graph: the
// coordinator shows the honest clients of survivor set a (which holds the
// victim) that set, and the honest clients of b (which does not) that one.
// Each colluding client is played by two copies with the same identity and
// randomness, one per view, so that it signs both sets and reveals both
// kinds of share of the victim.
type splitView struct {
	n, threshold int
	corrupt      []uint32 // colluders
	victim       uint32
	a, b         []uint32
	// honestCorrupt is the Corrupt that the honest clients' Params carry.
	honestCorrupt int
}

// run plays the attack and returns the victim's input as the coordinator
// recovers it (nil if it cannot), the true input, and the refusals.
func (sv splitView) run(t *testing.T) (got, want []uint64, refused []error) {
	t.Helper()
	p := secagg.Params{Round: 21, Clients: sv.n, Threshold: sv.threshold, Degree: sv.n - 1, Corrupt: sv.honestCorrupt, Length: 4, Bits: 64}
	// The colluders' own checks are theirs to skip; Corrupt = 0 lets their
	// unmodified code sign both sets.
	pc := p
	pc.Corrupt = 0
	keys, roster := secaggtest.Identities(sv.n, 23)
	srv := must[*secagg.Server](t)(secagg.NewServer(p, roster))
	isCorrupt := func(id uint32) bool { return slices.Contains(sv.corrupt, id) }
	newClient := func(id uint32) *secagg.Client {
		pp := p
		if isCorrupt(id) {
			pp = pc
		}
		return must[*secagg.Client](t)(secagg.NewClient(pp, id, keys[id-1], roster, secaggtest.Rand(uint64(900+id))))
	}
	// view[0] plays set a, view[1] set b; an honest client is in one view.
	var view [2]map[uint32]*secagg.Client
	for i := range view {
		view[i] = map[uint32]*secagg.Client{}
	}
	var all []*secagg.Client // one copy of each client, for rounds 0–2
	var twins []*secagg.Client
	for id := uint32(1); id <= uint32(sv.n); id++ {
		c := newClient(id)
		all = append(all, c)
		switch {
		case isCorrupt(id):
			twin := newClient(id)
			twins = append(twins, twin)
			view[0][id], view[1][id] = c, twin
		case slices.Contains(sv.a, id):
			view[0][id] = c
		case slices.Contains(sv.b, id):
			view[1][id] = c
		}
	}
	inputs := make([][]uint64, sv.n)
	for i := range inputs {
		inputs[i] = []uint64{uint64(11 * (i + 1)), uint64(1 << (40 + i)), 7, uint64(i)}
	}
	for _, c := range all {
		a := must[*secagg.Advert](t)(c.AdvertiseKeys())
		if err := srv.HandleAdvert(a); err != nil {
			t.Fatal(err)
		}
	}
	for _, tw := range twins {
		must[*secagg.Advert](t)(tw.AdvertiseKeys())
	}
	list := must[*secagg.AdvertList](t)(srv.AdvertList())
	for _, c := range all {
		if err := srv.HandleShares(must[*secagg.Shares](t)(c.ShareKeys(list))); err != nil {
			t.Fatal(err)
		}
	}
	for _, tw := range twins {
		must[*secagg.Shares](t)(tw.ShareKeys(list))
	}
	fwd := must[map[uint32]*secagg.ForwardedShares](t)(srv.ForwardedShares())
	masked := map[uint32]*secagg.MaskedInput{}
	for _, c := range all {
		masked[c.ID()] = must[*secagg.MaskedInput](t)(c.MaskInput(fwd[c.ID()], inputs[c.ID()-1]))
	}
	for _, tw := range twins {
		m := must[*secagg.MaskedInput](t)(tw.MaskInput(fwd[tw.ID()], inputs[tw.ID()-1]))
		if !slices.Equal(m.Vector, masked[tw.ID()].Vector) {
			t.Fatal("a colluder's two copies diverged")
		}
	}

	var revealed []*secagg.UnmaskResponse
	for i, set := range [][]uint32{sv.a, sv.b} {
		creq := &secagg.ConsistencyRequest{Round: p.Round, Survivors: set}
		var sigs []secagg.Signature
		var signers []*secagg.Client
		for _, id := range set {
			c, ok := view[i][id]
			if !ok {
				continue // an honest client of the other view: not asked
			}
			sig, err := c.CheckConsistency(creq)
			if err != nil {
				if isCorrupt(id) {
					t.Fatalf("colluder %d refused to sign: %v", id, err)
				}
				refused = append(refused, err)
				continue
			}
			sigs = append(sigs, secagg.Signature{Signer: sig.Sender, Sig: sig.Sig})
			signers = append(signers, c)
		}
		ureq := &secagg.UnmaskRequest{Round: p.Round, Survivors: set, Signatures: sigs}
		for _, c := range signers {
			resp, err := c.Unmask(ureq)
			if err != nil {
				refused = append(refused, err)
				continue
			}
			revealed = append(revealed, resp)
		}
	}
	got, err := secagg.RecoverSum(p, list, []uint32{sv.victim}, masked, revealed, nil)
	if err != nil {
		refused = append(refused, fmt.Errorf("coordinator: %w", err))
		got = nil
	}
	return got, inputs[sv.victim-1], refused
}

// TestAttackSplitViewUnderstatedColluders is the split-view attack of a
// coordinator that understates the colluders. With Corrupt = c the
// consistency quorum is max(t, ⌊(m+c)/2⌋+1): two survivor sets that both
// reach it share more than c signers, hence an honest one, who signs only
// one set. If the honest clients' Params carry a c below the true number of
// colluders, one honest client can be shown a set that holds the victim and
// another a set that does not; each reaches the understated quorum, and
// together the two sides release t shares of the victim's self-mask seed
// and t shares of its mask key, hence its input. Corrupt must therefore be
// each client's own number, never the coordinator's.
func TestAttackSplitViewUnderstatedColluders(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sv      splitView
		succeed bool
	}{
		{
			// The network review's case: honest 1, 2, 3; colluders 4, 5;
			// victim 1. Client 2 is shown a = {1, 2, 4, 5}, client 3 b =
			// {2, 3, 4, 5}. With c = 0 the quorum is 3, which b reaches
			// with clients 3, 4 and 5. This used to open client 1's input;
			// now Unmask also wants the signature of every survivor of b,
			// client 2's included, and client 2 signed a. (With n = 5, t =
			// 3 every set needs a fourth member, and three honest clients
			// cannot fill two sets.)
			name: "n=5/t=3/colluders=2/Corrupt=0/stopped-by-every-survivor-signing",
			sv:   splitView{n: 5, threshold: 3, corrupt: []uint32{4, 5}, victim: 1, a: []uint32{1, 2, 4, 5}, b: []uint32{2, 3, 4, 5}},
		},
		{
			// The same with each honest client's own c = 2: quorum 4, which
			// set b cannot reach without client 2.
			name: "n=5/t=3/colluders=2/Corrupt=2/attack-fails",
			sv:   splitView{n: 5, threshold: 3, corrupt: []uint32{4, 5}, victim: 1, a: []uint32{1, 2, 4, 5}, b: []uint32{2, 3, 4, 5}, honestCorrupt: 2},
		},
		{
			// Seven clients, colluders 5, 6, 7: a = {1, 2, 5, 6, 7} and b =
			// {3, 4, 5, 6, 7} are disjoint in honest clients, and every
			// member of each set signs it. The understated quorum is 4, and
			// the attack opens client 1's input.
			name:    "n=7/t=4/colluders=3/Corrupt=0/understated-attack-succeeds",
			sv:      splitView{n: 7, threshold: 4, corrupt: []uint32{5, 6, 7}, victim: 1, a: []uint32{1, 2, 5, 6, 7}, b: []uint32{3, 4, 5, 6, 7}},
			succeed: true,
		},
		{
			name: "n=7/t=4/colluders=3/Corrupt=3/attack-fails",
			sv:   splitView{n: 7, threshold: 4, corrupt: []uint32{5, 6, 7}, victim: 1, a: []uint32{1, 2, 5, 6, 7}, b: []uint32{3, 4, 5, 6, 7}, honestCorrupt: 3},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, want, refused := tc.sv.run(t)
			recovered := got != nil && slices.Equal(got, want)
			if recovered != tc.succeed {
				t.Fatalf("victim's input recovered: %v, want %v (refusals: %v)", recovered, tc.succeed, refused)
			}
		})
	}
}
