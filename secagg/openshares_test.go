package secagg_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/fl-secure/fl-secure/secagg"
)

// TestAttackBudgetBurnWithBadShares: a site charges its privacy budget for
// a round before it commits its input. A coordinator that forwards shares
// which fail a check (a forged or misaddressed share, too few shares) would
// make a site that charges first and masks second pay for a round it then
// refuses. OpenShares makes every check MaskInput makes on the forwarded
// shares, before any input exists, so the site charges only for shares that
// check out; MaskInput then reuses them and accepts no other message.
func TestAttackBudgetBurnWithBadShares(t *testing.T) {
	p := smallParams
	p.MinSurvivors = 6
	s := newStepper(t, p)
	fwd := s.share(s.advertise())
	f := fwd[1]
	for _, tc := range []struct {
		name   string
		mutate func(f *secagg.ForwardedShares)
		check  func(t *testing.T, err error)
	}{
		{"tampered", func(f *secagg.ForwardedShares) { f.Shares[2].Ciphertext[7] ^= 1 }, protocolError("sealed share from client 4 failed authentication")},
		{"duplicate", func(f *secagg.ForwardedShares) { f.Shares[1].Peer = f.Shares[0].Peer }, protocolError("two forwarded shares from client")},
		{"not a neighbour", func(f *secagg.ForwardedShares) { f.Shares[0].Peer = 8 }, protocolError("not a neighbour")},
		{"wrong recipient", func(f *secagg.ForwardedShares) { f.Recipient = 2 }, protocolError("forwarded for client 2")},
		{"wrong round", func(f *secagg.ForwardedShares) { f.Round = 41 }, protocolError("round 41, this is round 42")},
		{"below threshold", func(f *secagg.ForwardedShares) { f.Shares = f.Shares[:3] }, belowThreshold("3 neighbours sent shares, threshold is 4")},
		{"below floor", func(f *secagg.ForwardedShares) { f.Shares = f.Shares[:4] }, belowThreshold("4 other clients sent shares, this client's floor is MinSurvivors = 6")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := *f
			g.Shares = slices.Clone(f.Shares)
			tc.mutate(&g)
			tc.check(t, s.clients[0].OpenShares(&g))
			// MaskInput alone refuses the same message the same way.
			_, err := s.clients[0].MaskInput(&g, s.inputs[0])
			tc.check(t, err)
		})
	}
	// The refusals left the client able to open the genuine shares; a retry
	// is harmless, and a different message after it is refused.
	c := s.clients[0]
	if err := c.OpenShares(f); err != nil {
		t.Fatal(err)
	}
	if err := c.OpenShares(f); err != nil {
		t.Fatalf("identical retry of OpenShares: %v", err)
	}
	other := *f
	other.Shares = f.Shares[:5]
	wantProtocolError(t, c.OpenShares(&other), "differ from the ones already opened")
	_, err := c.MaskInput(&other, s.inputs[0])
	wantProtocolError(t, err, "differ from the ones already opened")
	// A bad input is refused without losing the opened shares.
	if _, err := c.MaskInput(f, s.inputs[0][:3]); err == nil {
		t.Fatal("short input accepted")
	}
	m := must[*secagg.MaskedInput](t)(c.MaskInput(f, s.inputs[0]))
	if err := c.OpenShares(f); err != nil {
		t.Fatalf("OpenShares after MaskInput with the same shares: %v", err)
	}
	wantProtocolError(t, c.OpenShares(&other), "already answered")

	// The round completes: the opened shares were the ones masked with.
	if err := s.srv.HandleMaskedInput(m); err != nil {
		t.Fatal(err)
	}
	for i, c := range s.clients[1:] {
		if err := c.OpenShares(fwd[c.ID()]); err != nil {
			t.Fatal(err)
		}
		if err := s.srv.HandleMaskedInput(must[*secagg.MaskedInput](t)(c.MaskInput(fwd[c.ID()], s.inputs[i+1]))); err != nil {
			t.Fatal(err)
		}
	}
	ureq := s.signAll()
	for _, c := range s.clients {
		if err := s.srv.HandleUnmask(must[*secagg.UnmaskResponse](t)(c.Unmask(ureq))); err != nil {
			t.Fatal(err)
		}
	}
	sum := must[[]uint64](t)(s.srv.Aggregate())
	ids := []uint32{1, 2, 3, 4, 5, 6, 7}
	if !slices.Equal(sum, plainSum(s.inputs, ids, p.Bits)) {
		t.Fatal("wrong sum after OpenShares")
	}
}

func protocolError(substr string) func(*testing.T, error) {
	return func(t *testing.T, err error) { t.Helper(); wantProtocolError(t, err, substr) }
}

func belowThreshold(substr string) func(*testing.T, error) {
	return func(t *testing.T, err error) { t.Helper(); wantBelowThreshold(t, err, substr) }
}

func TestOpenSharesPhaseOrder(t *testing.T) {
	s := newStepper(t, smallParams)
	err := s.clients[0].OpenShares(&secagg.ForwardedShares{Round: 42, Recipient: 1})
	wantProtocolError(t, err, "MaskInput called before AdvertiseKeys")
	if err := s.clients[0].OpenShares(nil); err == nil || errors.Is(err, secagg.ErrBelowThreshold) {
		t.Fatalf("OpenShares(nil): err = %v", err)
	}
}
