package secagg_test

import (
	"crypto/ecdh"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/secagg"
)

func wantBelowThreshold(t *testing.T, err error, substr string) {
	t.Helper()
	if !errors.Is(err, secagg.ErrBelowThreshold) {
		t.Fatalf("err = %v, want ErrBelowThreshold", err)
	}
	if !strings.Contains(err.Error(), substr) {
		t.Fatalf("err = %q, want it to mention %q", err, substr)
	}
}

// TestAttackSurvivorsBelowSiteFloor: a site that will only have its input
// summed with at least MinSurvivors clients' (its own minimum cohort) is
// shown a survivor set that reaches the consistency quorum but not its
// floor. It refuses to sign, and it refuses earlier phases that already
// show fewer clients than its floor.
func TestAttackSurvivorsBelowSiteFloor(t *testing.T) {
	p := smallParams // n = 7, t = 4: quorum 4
	p.MinSurvivors = 6

	t.Run("sign", func(t *testing.T) {
		s := newStepper(t, p)
		s.mask(s.share(s.advertise()))
		five := &secagg.ConsistencyRequest{Round: 42, Survivors: []uint32{1, 2, 3, 4, 5}}
		_, err := s.clients[0].CheckConsistency(five)
		wantBelowThreshold(t, err, "5 survivors, this client's floor is MinSurvivors = 6")
		// The refusal changed nothing: six survivors are signed.
		must[*secagg.ConsistencySignature](t)(s.clients[0].CheckConsistency(&secagg.ConsistencyRequest{Round: 42, Survivors: []uint32{1, 2, 3, 4, 5, 6}}))
	})

	t.Run("share", func(t *testing.T) {
		s := newStepper(t, p)
		list := s.advertise()
		short := *list
		short.Adverts = slices.Clone(list.Adverts[:5])
		_, err := s.clients[0].ShareKeys(&short)
		wantBelowThreshold(t, err, "5 clients advertised keys, this client's floor is MinSurvivors = 6")
		must[*secagg.Shares](t)(s.clients[0].ShareKeys(list))
	})

	t.Run("mask", func(t *testing.T) {
		// On the complete graph a client's shares come from every other
		// client that shared keys: four of them leave at most five
		// survivors.
		s := newStepper(t, p)
		fwd := s.share(s.advertise())
		f := *fwd[1]
		f.Shares = slices.Clone(fwd[1].Shares[:4])
		_, err := s.clients[0].MaskInput(&f, s.inputs[0])
		wantBelowThreshold(t, err, "4 other clients sent shares, this client's floor is MinSurvivors = 6")
		must[*secagg.MaskedInput](t)(s.clients[0].MaskInput(fwd[1], s.inputs[0]))
	})

	t.Run("server", func(t *testing.T) {
		// A server holding the same floor stops at the same point.
		s := newStepper(t, p)
		fwd := s.share(s.advertise())
		for i, c := range s.clients[:5] {
			if err := s.srv.HandleMaskedInput(must[*secagg.MaskedInput](t)(c.MaskInput(fwd[c.ID()], s.inputs[i]))); err != nil {
				t.Fatal(err)
			}
		}
		_, err := s.srv.ConsistencyRequest()
		wantBelowThreshold(t, err, "MinSurvivors = 6")
	})

	t.Run("validate", func(t *testing.T) {
		for _, m := range []int{-1, 8} {
			q := p
			q.MinSurvivors = m
			if err := q.Validate(); err == nil || !strings.Contains(err.Error(), "MinSurvivors") {
				t.Errorf("MinSurvivors = %d: err = %v, want it named", m, err)
			}
		}
	})
}

// TestAttackUnmaskVictimDidNotSign: client 1 will only be summed with all
// seven clients (MinSurvivors = 7). The coordinator, colluding with clients
// 4, 5 and 6, declares client 7 dropped and shows everyone the survivor set
// {1, …, 6}. Client 1 refuses to sign it; the others sign, and a quorum of
// signatures is reached without client 1. Its neighbours must still not
// reveal its self-mask shares: a survivor's input is opened only over a set
// it signed itself. Otherwise the coordinator would open x_1 + x_2 + x_3,
// a three-client sum that client 1 refused.
func TestAttackUnmaskVictimDidNotSign(t *testing.T) {
	p := secagg.Params{Round: 31, Clients: 7, Threshold: 4, Degree: 6, Length: 4, Bits: 64}
	r, err := newCraftedRoundWith(t, p, func(id uint32, p *secagg.Params) {
		if id == 1 {
			p.MinSurvivors = 7
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	leaked := map[uint32]*ecdh.PrivateKey{}
	for _, id := range []uint32{4, 5, 6} {
		leaked[id] = r.clients[id-1].LeakMaskKey()
	}
	survivors := []uint32{1, 2, 3, 4, 5, 6}
	resps, refused := r.present(survivors)
	wantBelowThreshold(t, refused[1], "6 survivors, this client's floor is MinSurvivors = 7")
	if sum, err := secagg.RecoverSum(p, r.list, survivors, r.masked, resps, leaked); err == nil && slices.Equal(sum, r.plainSum(survivors)) {
		t.Fatalf("the coordinator opened the sum of %v, client 1's input included, over a survivor set client 1 refused", survivors)
	}
	for _, id := range survivors[1:] {
		wantBelowThreshold(t, refused[id], "survivor 1 did not sign")
	}
	if len(resps) != 0 {
		t.Fatalf("%d clients revealed shares", len(resps))
	}
}

// TestUnmaskRequestNeedsEverySurvivor: a server does not ask for unmasking
// while a survivor's signature is missing, and a client refuses a request
// that lacks one, revealing nothing.
func TestUnmaskRequestNeedsEverySurvivor(t *testing.T) {
	s := newStepper(t, smallParams)
	s.mask(s.share(s.advertise()))
	creq := must[*secagg.ConsistencyRequest](t)(s.srv.ConsistencyRequest())
	var sigs []secagg.Signature
	for _, c := range s.clients[:6] { // client 7 sent its input, then left
		sig := must[*secagg.ConsistencySignature](t)(c.CheckConsistency(creq))
		sigs = append(sigs, secagg.Signature{Signer: sig.Sender, Sig: sig.Sig})
		if err := s.srv.HandleSignature(sig); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.srv.UnmaskRequest()
	wantBelowThreshold(t, err, "survivor 7 did not sign")
	ureq := &secagg.UnmaskRequest{Round: 42, Survivors: creq.Survivors, Signatures: sigs}
	_, err = s.clients[0].Unmask(ureq)
	wantBelowThreshold(t, err, "survivor 7 did not sign")
	// A bad signature among them is caught, whoever it belongs to.
	sig7 := must[*secagg.ConsistencySignature](t)(s.clients[6].CheckConsistency(creq))
	bad := slices.Clone(sigs)
	bad = append(bad, secagg.Signature{Signer: 7, Sig: sig7.Sig})
	bad[2].Sig[5] ^= 1
	_, err = s.clients[0].Unmask(&secagg.UnmaskRequest{Round: 42, Survivors: creq.Survivors, Signatures: bad})
	wantProtocolError(t, err, "consistency signature from client 3 is invalid")
	// With every signature the request is answered.
	good := append(slices.Clone(sigs), secagg.Signature{Signer: 7, Sig: sig7.Sig})
	must[*secagg.UnmaskResponse](t)(s.clients[0].Unmask(&secagg.UnmaskRequest{Round: 42, Survivors: creq.Survivors, Signatures: good}))
}
