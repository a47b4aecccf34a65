package secagg_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fl-secure/fl-secure/secagg"
	"github.com/fl-secure/fl-secure/secagg/secaggtest"
)

// TestPropertySparseDropouts drives random SecAgg+ rounds by hand with random
// dropout patterns and checks the outcome against a prediction made from the
// neighbour graph: the round must finish with the exact sum exactly when
// every client that sent shares and whose secret is needed keeps Threshold
// holders among the clients that unmask, every survivor keeps Threshold of
// its share holders in the survivor set, the survivor set reaches the
// consistency quorum and every survivor signs.
func TestPropertySparseDropouts(t *testing.T) {
	trials := 60
	if testing.Short() {
		trials = 10
	}
	r := rand.New(rand.NewPCG(21, 22))
	outcomes := map[bool]int{}
	for trial := 0; trial < trials; trial++ {
		n := 8 + r.IntN(20)
		k := 4 + 2*r.IntN((n-5)/2) // even, below n−1
		th := k/2 + 1 + r.IntN(k-k/2)
		p := secagg.Params{Round: uint64(trial + 1), Clients: n, Threshold: th, Degree: k, Length: 5, Bits: 64}
		keys, roster := secaggtest.Identities(n, uint64(trial))
		srv, err := secagg.NewServer(p, roster)
		if err != nil {
			t.Fatal(err)
		}
		// drop[i]: 0 stays; 1 after advert; 2 after shares; 3 after masked
		// input; 4 after signing. (Dropping before the advert only shrinks
		// the round and is covered elsewhere.)
		drop := make([]int, n)
		rate := 0.3 * r.Float64()
		for i := range drop {
			if r.Float64() < rate {
				drop[i] = 1 + r.IntN(4)
			}
		}
		alive := func(i, after int) bool { return drop[i] == 0 || drop[i] > after }
		cs := make([]*secagg.Client, n)
		for i := range cs {
			cs[i], _ = secagg.NewClient(p, uint32(i+1), keys[i], roster, secaggtest.Rand(uint64(1000*trial+i)))
			a, _ := cs[i].AdvertiseKeys()
			if err := srv.HandleAdvert(a); err != nil {
				t.Fatal(err)
			}
		}
		list, err := srv.AdvertList()
		if err != nil {
			t.Fatal(err)
		}
		inputs := randomInputs(r, n, p.Length, 64)
		shared := map[uint32]bool{}
		for i, c := range cs {
			if !alive(i, 1) {
				continue
			}
			sh, err := c.ShareKeys(list)
			if err != nil {
				t.Fatal(err)
			}
			srv.HandleShares(sh)
			shared[c.ID()] = true
		}
		// Prediction, from the graph over the advertised clients.
		holders := func(owner uint32, among func(uint32) bool) int {
			h := 0
			for _, v := range srv.NeighboursOf(owner) {
				if shared[v] && among(v) {
					h++
				}
			}
			return h
		}
		masked := func(id uint32) bool { return shared[id] && alive(int(id-1), 2) }
		signs := func(id uint32) bool { return masked(id) && alive(int(id-1), 3) }
		unmasks := func(id uint32) bool { return signs(id) && alive(int(id-1), 4) }
		var u3 []uint32
		predict := len(shared) >= th+1
		for id := range shared {
			// A client that received fewer than t shares refuses to mask.
			if masked(id) && holders(id, func(uint32) bool { return true }) >= th {
				u3 = append(u3, id)
			}
		}
		inU3 := func(id uint32) bool { return slices.Contains(u3, id) }
		q := max(th, (n+p.Corrupt)/2+1)
		signers := 0
		for _, id := range u3 {
			if holders(id, inU3) < th {
				predict = false // it refuses to sign: its input would be exposed
			}
			if signs(id) {
				signers++
			}
		}
		if len(u3) < q || signers < len(u3) {
			predict = false // a survivor that did not sign fails the round
		}
		for id := range shared {
			if holders(id, func(v uint32) bool { return inU3(v) && unmasks(v) }) < th {
				predict = false // its needed secret lacks t holders
			}
		}

		res := finishRound(t, srv, cs, inputs, shared, alive)
		if predict != (res.err == nil) {
			t.Fatalf("trial %d %+v drop %v: predicted success %v, got %v", trial, p, drop, predict, res.err)
		}
		if res.err != nil && !errors.Is(res.err, secagg.ErrBelowThreshold) {
			t.Fatalf("trial %d: honest round failed with %v", trial, res.err)
		}
		if res.err == nil && !slices.Equal(res.sum, plainSum(inputs, res.survivors, 64)) {
			t.Fatalf("trial %d: wrong sum", trial)
		}
		outcomes[res.err == nil]++
	}
	if outcomes[true] == 0 || outcomes[false] == 0 {
		t.Fatalf("outcomes %v: both kinds of round should occur", outcomes)
	}
}

type roundResult struct {
	sum       []uint64
	survivors []uint32
	err       error
}

// finishRound runs rounds 2–4 for the clients that shared keys, dropping
// them as alive says, and returns the server's result.
func finishRound(t *testing.T, srv *secagg.Server, cs []*secagg.Client, inputs [][]uint64, shared map[uint32]bool, alive func(i, after int) bool) roundResult {
	survivors, refusals, err := runToUnmask(t, srv, cs, inputs, shared, alive)
	if err != nil {
		return roundResult{err: errors.Join(append([]error{err}, refusals...)...)}
	}
	sum, err := srv.Aggregate()
	return roundResult{sum: sum, survivors: survivors, err: err}
}

// runToUnmask runs rounds 2–4 up to the last unmask response: clients that
// shared keys take part until alive(i, phase) is false (2 masked input, 3
// signing, 4 unmasking). It returns the survivor set, the clients' refusals
// and the error of a server phase that could not close.
func runToUnmask(tb testing.TB, srv *secagg.Server, cs []*secagg.Client, inputs [][]uint64, shared map[uint32]bool, alive func(i, after int) bool) (survivors []uint32, refusals []error, err error) {
	fwd, err := srv.ForwardedShares()
	if err != nil {
		return nil, nil, err
	}
	for i, c := range cs {
		if !shared[c.ID()] || !alive(i, 2) {
			continue
		}
		m, err := c.MaskInput(fwd[c.ID()], inputs[i])
		if err != nil {
			refusals = append(refusals, err)
			continue
		}
		if err := srv.HandleMaskedInput(m); err != nil {
			tb.Fatal(err)
		}
	}
	creq, err := srv.ConsistencyRequest()
	if err != nil {
		return nil, refusals, err
	}
	for _, id := range creq.Survivors {
		if !alive(int(id-1), 3) {
			continue
		}
		sig, err := cs[id-1].CheckConsistency(creq)
		if err != nil {
			refusals = append(refusals, err)
			continue
		}
		if err := srv.HandleSignature(sig); err != nil {
			tb.Fatal(err)
		}
	}
	ureq, err := srv.UnmaskRequest()
	if err != nil {
		return nil, refusals, err
	}
	for _, s := range ureq.Signatures {
		if !alive(int(s.Signer-1), 4) {
			continue
		}
		resp, err := cs[s.Signer-1].Unmask(ureq)
		if err != nil {
			tb.Fatal(err)
		}
		if err := srv.HandleUnmask(resp); err != nil {
			tb.Fatal(err)
		}
	}
	return creq.Survivors, refusals, nil
}
