package secagg_test

import (
	"crypto/ecdh"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/secagg"
	"github.com/fl-secure/fl-secure/secagg/secaggtest"
)

// craftedRound is an honest round driven up to the consistency check, after
// which the test plays a coordinator that picks the survivor set.
type craftedRound struct {
	p       secagg.Params
	srv     *secagg.Server
	clients []*secagg.Client
	inputs  [][]uint64
	list    *secagg.AdvertList
	masked  map[uint32]*secagg.MaskedInput
}

// newCraftedRound runs rounds 0–2 with every client of p. It returns the
// error of the first party that refuses p.
func newCraftedRound(t *testing.T, p secagg.Params) (*craftedRound, error) {
	t.Helper()
	return newCraftedRoundWith(t, p, nil)
}

// newCraftedRoundWith is newCraftedRound where client id holds the Params
// that own(id, &p) makes of the round's (its own Corrupt and MinSurvivors).
func newCraftedRoundWith(t *testing.T, p secagg.Params, own func(id uint32, p *secagg.Params)) (*craftedRound, error) {
	t.Helper()
	keys, roster := secaggtest.Identities(p.Clients, 17)
	r := &craftedRound{p: p, clients: make([]*secagg.Client, p.Clients), inputs: make([][]uint64, p.Clients), masked: map[uint32]*secagg.MaskedInput{}}
	var err error
	if r.srv, err = secagg.NewServer(p, roster); err != nil {
		return nil, err
	}
	for i := range r.clients {
		pc := p
		if own != nil {
			own(uint32(i+1), &pc)
		}
		if r.clients[i], err = secagg.NewClient(pc, uint32(i+1), keys[i], roster, secaggtest.Rand(uint64(700+i))); err != nil {
			return nil, err
		}
		r.inputs[i] = make([]uint64, p.Length)
		for j := range r.inputs[i] {
			r.inputs[i][j] = uint64(1_000_003*(i+1) + j)
		}
		if err := r.srv.HandleAdvert(must[*secagg.Advert](t)(r.clients[i].AdvertiseKeys())); err != nil {
			t.Fatal(err)
		}
	}
	r.list = must[*secagg.AdvertList](t)(r.srv.AdvertList())
	for _, c := range r.clients {
		if err := r.srv.HandleShares(must[*secagg.Shares](t)(c.ShareKeys(r.list))); err != nil {
			t.Fatal(err)
		}
	}
	fwd := must[map[uint32]*secagg.ForwardedShares](t)(r.srv.ForwardedShares())
	for i, c := range r.clients {
		m := must[*secagg.MaskedInput](t)(c.MaskInput(fwd[c.ID()], r.inputs[i]))
		r.masked[c.ID()] = m
	}
	return r, nil
}

// present asks the clients of survivors to sign survivors, then asks every
// signer to unmask with all the signatures. It returns the revealed shares
// and each client's refusal.
func (r *craftedRound) present(survivors []uint32) ([]*secagg.UnmaskResponse, map[uint32]error) {
	refused := map[uint32]error{}
	creq := &secagg.ConsistencyRequest{Round: r.p.Round, Survivors: survivors}
	var sigs []secagg.Signature
	for _, id := range survivors {
		sig, err := r.clients[id-1].CheckConsistency(creq)
		if err != nil {
			refused[id] = err
			continue
		}
		sigs = append(sigs, secagg.Signature{Signer: sig.Sender, Sig: sig.Sig})
	}
	ureq := &secagg.UnmaskRequest{Round: r.p.Round, Survivors: survivors, Signatures: sigs}
	var out []*secagg.UnmaskResponse
	for _, s := range sigs {
		resp, err := r.clients[s.Signer-1].Unmask(ureq)
		if err != nil {
			refused[s.Signer] = err
			continue
		}
		out = append(out, resp)
	}
	return out, refused
}

func (r *craftedRound) plainSum(ids []uint32) []uint64 {
	return plainSum(r.inputs, ids, r.p.Bits)
}

// ringArcs returns, for the server's ring, the clients at the given
// positions (taken modulo the ring size), sorted.
func ringArcs(ring []uint32, positions ...[2]int) []uint32 {
	var out []uint32
	m := len(ring)
	for _, a := range positions {
		for p := a[0]; p <= a[1]; p++ {
			out = append(out, ring[((p%m)+m)%m])
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func without(all, drop []uint32) []uint32 {
	var out []uint32
	for _, v := range all {
		if !slices.Contains(drop, v) {
			out = append(out, v)
		}
	}
	return out
}

// TestAttackIsolatedArcsOddDegree is the isolated-arc attack on an odd
// degree k = 2h+1, where each client is joined to its h nearest ring
// positions on each side and to the client half way round. The coordinator,
// without any colluding client, declares dropped the h clients on each side
// of an arc A of h+1 clients and of the opposite arc A'. Every survivor
// keeps t = h+1 surviving neighbours and signs, but A ∪ A' has no mask edge
// to the other survivors, so its sum is unmasked on its own. n = 100, k =
// 19, t = 10 is what Recommend(100, 0.05, 0, false) used to return. Odd
// sparse degrees are now refused, and every client refuses a survivor set
// whose induced neighbour graph is not connected.
func TestAttackIsolatedArcsOddDegree(t *testing.T) {
	pl, err := secagg.Recommend(100, 0.05, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if pl.Degree < 99 && pl.Degree%2 != 0 {
		t.Errorf("Recommend(100, 0.05, 0) returned the odd sparse degree %d", pl.Degree)
	}
	p := secagg.Params{Round: 11, Clients: 100, Threshold: 10, Degree: 19, Length: 4, Bits: 64}
	r, err := newCraftedRound(t, p)
	if err != nil {
		if !strings.Contains(err.Error(), "Degree = 19 is odd") {
			t.Fatalf("odd degree refused with %q, want it to say the degree is odd", err)
		}
		return
	}
	h, m := p.Degree/2, p.Clients
	ring := r.srv.Ring()
	isolated := ringArcs(ring, [2]int{0, h}, [2]int{m / 2, m/2 + h})
	dropped := ringArcs(ring, [2]int{-h, -1}, [2]int{h + 1, 2 * h}, [2]int{m/2 - h, m/2 - 1}, [2]int{m/2 + h + 1, m/2 + 2*h})
	survivors := without(ring, dropped)
	slices.Sort(survivors)
	resps, refused := r.present(survivors)
	sum, err := secagg.RecoverSum(p, r.list, isolated, r.masked, resps, nil)
	if err == nil && slices.Equal(sum, r.plainSum(isolated)) {
		t.Fatalf("the coordinator unmasked the sum of the %d isolated clients alone (%d of %d survivors signed)", len(isolated), len(survivors)-len(refused), len(survivors))
	}
}

// TestAttackDisconnectedSurvivorsEvenDegree declares two opposite arcs of h
// = k/2 clients dropped, which cuts the ring into two pieces. Clients next
// to a cut keep only h < t surviving neighbours and refuse; every other
// client must refuse too, because the survivor set's neighbour graph is not
// connected.
func TestAttackDisconnectedSurvivorsEvenDegree(t *testing.T) {
	p := secagg.Params{Round: 12, Clients: 60, Threshold: 6, Degree: 10, Length: 4, Bits: 32}
	r, err := newCraftedRound(t, p)
	if err != nil {
		t.Fatal(err)
	}
	h, m := p.Degree/2, p.Clients
	ring := r.srv.Ring()
	dropped := ringArcs(ring, [2]int{0, h - 1}, [2]int{m / 2, m/2 + h - 1})
	survivors := without(ring, dropped)
	slices.Sort(survivors)
	resps, refused := r.present(survivors)
	if len(resps) != 0 {
		t.Errorf("%d clients revealed shares for a disconnected survivor set", len(resps))
	}
	for _, id := range survivors {
		err := refused[id]
		if err == nil {
			t.Errorf("client %d signed a survivor set that splits the neighbour graph", id)
			continue
		}
		if !errors.Is(err, secagg.ErrBelowThreshold) {
			t.Errorf("client %d: err = %v, want ErrBelowThreshold", id, err)
		}
	}
	// A client far from both cuts names the reason.
	far := ring[m/4]
	if err := refused[far]; err == nil || !strings.Contains(err.Error(), "not connected") {
		t.Errorf("client %d: err = %v, want it to say the survivors' neighbour graph is not connected", far, err)
	}
	// Either piece's sum stays hidden.
	piece := ringArcs(ring, [2]int{h, m/2 - 1})
	if _, err := secagg.RecoverSum(p, r.list, piece, r.masked, resps, map[uint32]*ecdh.PrivateKey{}); err == nil {
		t.Error("the coordinator unmasked one piece of the ring")
	}
}

// bridgeAttack runs the corrupt-bridge attack on a sparse graph: the
// clients at ring positions 0 and m/2 collude, and the coordinator declares
// dropped the other clients of the two runs of h = k/2 positions centred on
// them. Every survivor's neighbour graph stays connected, through the two
// colluders, but the honest survivors fall into two pieces whose only mask
// edges to each other run through colluders, whose keys the coordinator
// holds. It returns the sum the coordinator opens for one piece, if any,
// the piece's true sum and the clients' refusals.
func bridgeAttack(t *testing.T, p secagg.Params) (opened, want []uint64, refused map[uint32]error) {
	t.Helper()
	r, err := newCraftedRound(t, p)
	if err != nil {
		t.Fatal(err)
	}
	h, m := p.Degree/2, p.Clients
	ring := r.srv.Ring()
	leaked := map[uint32]*ecdh.PrivateKey{}
	for _, pos := range []int{0, m / 2} {
		leaked[ring[pos]] = r.clients[ring[pos]-1].LeakMaskKey()
	}
	run := func(centre int) [2]int { return [2]int{centre - (h-1)/2, centre + h/2} }
	dropped := without(ringArcs(ring, run(0), run(m/2)), []uint32{ring[0], ring[m/2]})
	survivors := without(ring, dropped)
	slices.Sort(survivors)
	resps, refused := r.present(survivors)
	piece := ringArcs(ring, [2]int{h/2 + 1, m/2 - (h-1)/2 - 1})
	sum, err := secagg.RecoverSum(p, r.list, piece, r.masked, resps, leaked)
	if err != nil {
		return nil, r.plainSum(piece), refused
	}
	return sum, r.plainSum(piece), refused
}

// TestAttackCorruptBridge shows why Recommend bounds the corrupt clients
// in any run of k/2 ring positions, not only in a neighbourhood. With t =
// k/2 + 1 a single colluder in a run of k/2 otherwise-dropped positions
// gives the honest clients beside it their t-th surviving neighbour, so
// they sign; two such runs split the honest survivors into two pieces and
// the coordinator opens the sum of one piece alone. With Recommend's t, t −
// k/2 exceeds the number of colluders and the clients beside the runs
// refuse.
func TestAttackCorruptBridge(t *testing.T) {
	weak := secagg.Params{Round: 13, Clients: 60, Threshold: 6, Degree: 10, Corrupt: 2, Length: 4, Bits: 64}
	opened, want, refused := bridgeAttack(t, weak)
	if !slices.Equal(opened, want) {
		t.Fatalf("with t = k/2+1 the bridge attack should open one piece (documenting why Recommend sizes t − k/2), refusals: %v", refused)
	}

	pl, err := secagg.Recommend(60, 0.05, 0.03, false) // c = 2
	if err != nil {
		t.Fatal(err)
	}
	if pl.Corrupt != 2 || pl.Threshold-pl.Degree/2 <= 2 {
		t.Fatalf("Recommend(60, 0.05, 0.03) = %+v: want t − k/2 > c = 2", pl)
	}
	p := weak
	p.Round, p.Degree, p.Threshold = 14, pl.Degree, pl.Threshold
	opened, _, refused = bridgeAttack(t, p)
	if opened != nil {
		t.Fatalf("with Recommend's k = %d, t = %d the coordinator opened one piece", p.Degree, p.Threshold)
	}
	if len(refused) == 0 {
		t.Fatal("no client refused the bridged survivor set")
	}
}
