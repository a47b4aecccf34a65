package secagg_test

import (
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
