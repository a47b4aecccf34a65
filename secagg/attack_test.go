package secagg_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/secagg"
	"github.com/fl-secure/fl-secure/secagg/secaggtest"
)

// stepper drives a round by hand so that tests can play a malicious server
// or client between any two steps.
type stepper struct {
	t       testing.TB
	p       secagg.Params
	clients []*secagg.Client
	srv     *secagg.Server
	inputs  [][]uint64
}

func newStepper(t testing.TB, p secagg.Params) *stepper {
	t.Helper()
	keys, roster := secaggtest.Identities(p.Clients, 5)
	s := &stepper{t: t, p: p, clients: make([]*secagg.Client, p.Clients), inputs: make([][]uint64, p.Clients)}
	var err error
	if s.srv, err = secagg.NewServer(p, roster); err != nil {
		t.Fatal(err)
	}
	for i := range s.clients {
		if s.clients[i], err = secagg.NewClient(p, uint32(i+1), keys[i], roster, secaggtest.Rand(uint64(100+i))); err != nil {
			t.Fatal(err)
		}
		s.inputs[i] = make([]uint64, p.Length)
		for j := range s.inputs[i] {
			s.inputs[i][j] = uint64(1000*(i+1) + j)
		}
	}
	return s
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// advertise runs round 0 for every client and returns the server's list.
func (s *stepper) advertise() *secagg.AdvertList {
	for _, c := range s.clients {
		if err := s.srv.HandleAdvert(must[*secagg.Advert](s.t)(c.AdvertiseKeys())); err != nil {
			s.t.Fatal(err)
		}
	}
	return must[*secagg.AdvertList](s.t)(s.srv.AdvertList())
}

// share runs round 1 and returns the forwarded shares.
func (s *stepper) share(list *secagg.AdvertList) map[uint32]*secagg.ForwardedShares {
	for _, c := range s.clients {
		if err := s.srv.HandleShares(must[*secagg.Shares](s.t)(c.ShareKeys(list))); err != nil {
			s.t.Fatal(err)
		}
	}
	return must[map[uint32]*secagg.ForwardedShares](s.t)(s.srv.ForwardedShares())
}

// mask runs round 2 for every client.
func (s *stepper) mask(fwd map[uint32]*secagg.ForwardedShares) {
	for i, c := range s.clients {
		if err := s.srv.HandleMaskedInput(must[*secagg.MaskedInput](s.t)(c.MaskInput(fwd[c.ID()], s.inputs[i]))); err != nil {
			s.t.Fatal(err)
		}
	}
}

// survivorSets runs the round to the consistency check and returns the true
// survivor set and the same set without client 7, as a lying server would.
func (s *stepper) survivorSets() (all, without7 *secagg.ConsistencyRequest) {
	s.mask(s.share(s.advertise()))
	all = must[*secagg.ConsistencyRequest](s.t)(s.srv.ConsistencyRequest())
	return all, &secagg.ConsistencyRequest{Round: all.Round, Survivors: all.Survivors[:len(all.Survivors)-1]}
}

// signAll has every client sign the server's survivor set and returns the
// server's unmask request.
func (s *stepper) signAll() *secagg.UnmaskRequest {
	creq := must[*secagg.ConsistencyRequest](s.t)(s.srv.ConsistencyRequest())
	for _, c := range s.clients {
		if err := s.srv.HandleSignature(must[*secagg.ConsistencySignature](s.t)(c.CheckConsistency(creq))); err != nil {
			s.t.Fatal(err)
		}
	}
	return must[*secagg.UnmaskRequest](s.t)(s.srv.UnmaskRequest())
}

func wantProtocolError(t *testing.T, err error, substr string) {
	t.Helper()
	if !errors.Is(err, secagg.ErrProtocol) {
		t.Fatalf("err = %v, want ErrProtocol", err)
	}
	if !strings.Contains(err.Error(), substr) {
		t.Fatalf("err = %q, want it to mention %q", err, substr)
	}
}

var smallParams = secagg.Params{Round: 42, Clients: 7, Threshold: 4, Degree: 6, Length: 16, Bits: 32}

func TestAttackForgedAdvert(t *testing.T) {
	s := newStepper(t, smallParams)
	list := s.advertise()
	// The server substitutes its own mask-agreement key for client 3's, to
	// be able to compute client 3's pairwise masks.
	forged := *list
	forged.Adverts = slices.Clone(list.Adverts)
	forged.Adverts[2].MaskKey[0] ^= 1
	_, err := s.clients[0].ShareKeys(&forged)
	wantProtocolError(t, err, "advert from client 3 has an invalid signature")

	// The same forgery is refused when a client sends it to the server.
	s2 := newStepper(t, smallParams)
	a := must[*secagg.Advert](t)(s2.clients[2].AdvertiseKeys())
	a.EncKey[5] ^= 0x80
	wantProtocolError(t, s2.srv.HandleAdvert(a), "invalid signature")

	// Removing a client's own advert is detected too.
	dropped := *list
	dropped.Adverts = slices.Delete(slices.Clone(list.Adverts), 0, 1)
	_, err = s.clients[0].ShareKeys(&dropped)
	wantProtocolError(t, err, "own advert")
	// And the refused calls left client 1 able to go on with the real list.
	must[*secagg.Shares](t)(s.clients[0].ShareKeys(list))
}

func TestAttackSplitAdvertView(t *testing.T) {
	// The server hides client 7's advert from client 1 only, so that client
	// 1 computes a different neighbour graph. Client 1's shares are sealed
	// to its view of the advert set, so nobody else can open them.
	s := newStepper(t, smallParams)
	list := s.advertise()
	partial := *list
	partial.Adverts = list.Adverts[:6]
	bad := must[*secagg.Shares](t)(s.clients[0].ShareKeys(&partial))
	must[*secagg.Shares](t)(s.clients[1].ShareKeys(list))
	for _, sh := range bad.Shares {
		if sh.Peer != 2 {
			continue
		}
		fwd := &secagg.ForwardedShares{Round: 42, Recipient: 2, Shares: []secagg.SealedShare{{Peer: 1, Ciphertext: sh.Ciphertext}}}
		// Pad with placeholder shares to pass the count check; the first
		// share is opened first and already fails.
		for id := uint32(3); id <= 6; id++ {
			fwd.Shares = append(fwd.Shares, secagg.SealedShare{Peer: id})
		}
		_, err := s.clients[1].MaskInput(fwd, s.inputs[1])
		wantProtocolError(t, err, "sealed share from client 1 failed authentication")
		return
	}
	t.Fatal("client 1 made no share for client 2")
}

func TestAttackTamperedShare(t *testing.T) {
	s := newStepper(t, smallParams)
	fwd := s.share(s.advertise())
	f := fwd[4]
	f.Shares[1].Ciphertext[10] ^= 1
	_, err := s.clients[3].MaskInput(f, s.inputs[3])
	wantProtocolError(t, err, "failed authentication")
}

func TestAttackDifferentSurvivorSets(t *testing.T) {
	// The server tells clients 1–4 that client 7 dropped and clients 5–7
	// that everybody survived, hoping to collect client 7's mask-key shares
	// from the first group and its self-mask shares from the second.
	s := newStepper(t, smallParams)
	all, without7 := s.survivorSets()
	sigsA := []secagg.Signature{}
	sigsB := []secagg.Signature{}
	for i, c := range s.clients {
		req := all
		if i < 4 {
			req = without7
		}
		sig := must[*secagg.ConsistencySignature](t)(c.CheckConsistency(req))
		if i < 4 {
			sigsA = append(sigsA, secagg.Signature{Signer: sig.Sender, Sig: sig.Sig})
		} else {
			sigsB = append(sigsB, secagg.Signature{Signer: sig.Sender, Sig: sig.Sig})
		}
	}
	// Quorum for 7 clients is 4: group A reaches it, group B does not. But
	// survivors 5 and 6 of group A's set signed the other set, so group A
	// refuses too: every survivor must have signed.
	_, err := s.clients[0].Unmask(&secagg.UnmaskRequest{Round: 42, Survivors: without7.Survivors, Signatures: sigsA})
	if !errors.Is(err, secagg.ErrBelowThreshold) || !strings.Contains(err.Error(), "survivor 5 did not sign") {
		t.Fatalf("group A: err = %v, want ErrBelowThreshold naming survivor 5", err)
	}
	_, err = s.clients[4].Unmask(&secagg.UnmaskRequest{Round: 42, Survivors: all.Survivors, Signatures: sigsB})
	if !errors.Is(err, secagg.ErrBelowThreshold) {
		t.Fatalf("group B: err = %v, want ErrBelowThreshold", err)
	}
	// Relabelling group A's signatures as signatures on the full set fails.
	_, err = s.clients[4].Unmask(&secagg.UnmaskRequest{Round: 42, Survivors: all.Survivors, Signatures: append(sigsB, sigsA...)})
	wantProtocolError(t, err, "is invalid for this survivor set")
	// And a request on the other group's set is refused outright.
	_, err = s.clients[5].Unmask(&secagg.UnmaskRequest{Round: 42, Survivors: without7.Survivors, Signatures: sigsA})
	wantProtocolError(t, err, "other than the one this client signed")
}

func TestAttackSurvivorReportedDropped(t *testing.T) {
	// Client 7 sent its masked input, but the server reports it as dropped
	// and asks everyone to unmask. Clients reveal client 7's mask-key shares
	// (so its pairwise masks can be removed) but never its self-mask shares:
	// y_7 stays hidden behind PRG(b_7).
	s := newStepper(t, smallParams)
	all, without7 := s.survivorSets()

	// Client 7 itself refuses to sign a set that leaves it out.
	_, err := s.clients[6].CheckConsistency(without7)
	wantProtocolError(t, err, "leaves out this client")

	var sigs []secagg.Signature
	for _, c := range s.clients[:6] {
		sig := must[*secagg.ConsistencySignature](t)(c.CheckConsistency(without7))
		sigs = append(sigs, secagg.Signature{Signer: sig.Sender, Sig: sig.Sig})
	}
	req := &secagg.UnmaskRequest{Round: 42, Survivors: without7.Survivors, Signatures: sigs}
	for _, c := range s.clients[:6] {
		resp := must[*secagg.UnmaskResponse](t)(c.Unmask(req))
		for _, sh := range resp.Shares {
			if sh.Owner == 7 && sh.Kind != secagg.MaskKeyShare {
				t.Fatalf("client %d revealed a %v share of client 7", c.ID(), sh.Kind)
			}
		}
		// Now the server asks again, this time with client 7 as a survivor,
		// to get the self-mask shares too. Every client refuses.
		allSigs := &secagg.UnmaskRequest{Round: 42, Survivors: all.Survivors, Signatures: sigs}
		_, err := c.Unmask(allSigs)
		wantProtocolError(t, err, "already answered")
		// An identical retry gets the identical answer and nothing more.
		again := must[*secagg.UnmaskResponse](t)(c.Unmask(req))
		if !slices.Equal(again.Shares, resp.Shares) {
			t.Fatal("retry returned different shares")
		}
	}
}

func TestAttackSignTwice(t *testing.T) {
	s := newStepper(t, smallParams)
	s.mask(s.share(s.advertise()))
	all := must[*secagg.ConsistencyRequest](t)(s.srv.ConsistencyRequest())
	must[*secagg.ConsistencySignature](t)(s.clients[0].CheckConsistency(all))
	_, err := s.clients[0].CheckConsistency(&secagg.ConsistencyRequest{Round: 42, Survivors: all.Survivors[1:]})
	wantProtocolError(t, err, "already answered")
}

func TestAttackReplayFromEarlierRound(t *testing.T) {
	old := newStepper(t, smallParams)
	oldList := old.advertise()
	p := smallParams
	p.Round = 43
	s := newStepper(t, p)
	// An advert from round 42 replayed into round 43.
	wantProtocolError(t, s.srv.HandleAdvert(&oldList.Adverts[0]), "for round 42, this is round 43")
	// The same advert relabelled as round 43 fails its signature.
	relabelled := oldList.Adverts[0]
	relabelled.Round = 43
	wantProtocolError(t, s.srv.HandleAdvert(&relabelled), "invalid signature")
	// A client of round 43 refuses round 42's advert list.
	must[*secagg.Advert](t)(s.clients[0].AdvertiseKeys())
	_, err := s.clients[0].ShareKeys(oldList)
	wantProtocolError(t, err, "round 42, this is round 43")
}

func TestAttackBadShareIDs(t *testing.T) {
	s := newStepper(t, smallParams)
	fwd := s.share(s.advertise())
	f := fwd[1]
	for _, tc := range []struct {
		name   string
		mutate func(f *secagg.ForwardedShares)
		want   string
	}{
		{"duplicate", func(f *secagg.ForwardedShares) { f.Shares[1].Peer = f.Shares[0].Peer }, "two forwarded shares from client"},
		{"zero", func(f *secagg.ForwardedShares) { f.Shares[0].Peer = 0 }, "not a neighbour"},
		{"out of range", func(f *secagg.ForwardedShares) { f.Shares[0].Peer = 8 }, "not a neighbour"},
		{"self", func(f *secagg.ForwardedShares) { f.Shares[0].Peer = 1 }, "not a neighbour"},
		{"wrong recipient", func(f *secagg.ForwardedShares) { f.Recipient = 2 }, "forwarded for client 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := *f
			g.Shares = slices.Clone(f.Shares)
			tc.mutate(&g)
			_, err := s.clients[0].MaskInput(&g, s.inputs[0])
			wantProtocolError(t, err, tc.want)
		})
	}
	// The refusals changed nothing: the genuine message still works.
	must[*secagg.MaskedInput](t)(s.clients[0].MaskInput(f, s.inputs[0]))
}

func TestAttackBadSurvivorSets(t *testing.T) {
	s := newStepper(t, smallParams)
	s.mask(s.share(s.advertise()))
	for _, tc := range []struct {
		ids  []uint32
		want string
	}{
		{[]uint32{1, 2, 2, 3, 4, 5}, "not strictly increasing"},
		{[]uint32{1, 2, 3, 4, 5, 9}, "out of range"},
		{[]uint32{0, 1, 2, 3, 4, 5}, "out of range"},
		{[]uint32{5, 4, 3, 2, 1}, "not strictly increasing"},
	} {
		_, err := s.clients[0].CheckConsistency(&secagg.ConsistencyRequest{Round: 42, Survivors: tc.ids})
		wantProtocolError(t, err, tc.want)
	}
	_, err := s.clients[0].CheckConsistency(&secagg.ConsistencyRequest{Round: 42, Survivors: []uint32{1, 2, 3}})
	if !errors.Is(err, secagg.ErrBelowThreshold) {
		t.Fatalf("err = %v, want ErrBelowThreshold for a set below quorum", err)
	}
}

func TestServerRejectsBadUnmaskResponses(t *testing.T) {
	s := newStepper(t, smallParams)
	s.mask(s.share(s.advertise()))
	ureq := s.signAll()
	resp := must[*secagg.UnmaskResponse](t)(s.clients[0].Unmask(ureq))
	for _, tc := range []struct {
		name   string
		mutate func(r *secagg.UnmaskResponse)
		want   string
	}{
		{"duplicate owner", func(r *secagg.UnmaskResponse) { r.Shares[1].Owner = r.Shares[0].Owner }, "revealed a share of client"},
		{"owner out of range", func(r *secagg.UnmaskResponse) { r.Shares[0].Owner = 99 }, "revealed a share of client 99"},
		{"wrong kind", func(r *secagg.UnmaskResponse) { r.Shares[0].Kind = secagg.MaskKeyShare }, "want self-mask"},
		{"missing share", func(r *secagg.UnmaskResponse) { r.Shares = r.Shares[1:] }, "revealed 5 shares, it holds 6"},
		{"non-canonical", func(r *secagg.UnmaskResponse) { r.Shares[0].Value = [32]byte{31: 0xff} }, "non-canonical"},
		{"sender did not sign", func(r *secagg.UnmaskResponse) { r.Sender = 99 }, "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := *resp
			r.Shares = slices.Clone(resp.Shares)
			tc.mutate(&r)
			wantProtocolError(t, s.srv.HandleUnmask(&r), tc.want)
		})
	}
	if err := s.srv.HandleUnmask(resp); err != nil {
		t.Fatalf("genuine response refused after bad ones: %v", err)
	}
	wantProtocolError(t, s.srv.HandleUnmask(resp), "second unmask response")
}

func TestLyingShareHolderDetected(t *testing.T) {
	// Client 1 reveals a wrong self-mask share; the reconstructed seed no
	// longer matches the commitment in the survivor's advert.
	s := newStepper(t, smallParams)
	s.mask(s.share(s.advertise()))
	ureq := s.signAll()
	for i, c := range s.clients {
		r := must[*secagg.UnmaskResponse](t)(c.Unmask(ureq))
		if i == 0 {
			r.Shares[0].Value[0] ^= 1
		}
		if err := s.srv.HandleUnmask(r); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.srv.Aggregate()
	wantProtocolError(t, err, "does not match its commitment")
}

func TestPhaseOrder(t *testing.T) {
	s := newStepper(t, smallParams)
	_, err := s.clients[0].Unmask(&secagg.UnmaskRequest{Round: 42})
	wantProtocolError(t, err, "Unmask called before AdvertiseKeys")
	if _, err := s.srv.Aggregate(); err == nil {
		t.Fatal("Aggregate before any input succeeded")
	}
	m := &secagg.MaskedInput{Round: 42, Sender: 1, Bits: 32, Vector: make([]uint64, 16)}
	wantProtocolError(t, s.srv.HandleMaskedInput(m), "arrived during AdvertiseKeys")
}

func TestAttackForgedNeighbourAdvertSparse(t *testing.T) {
	// On a sparse graph a client verifies exactly the adverts whose keys it
	// uses: its neighbours'. The server forges client 2's encryption key;
	// the forgery changes the advert digest and so the graph, and in that
	// graph client 2 has exactly k = 4 neighbours, each of which refuses.
	p := secagg.Params{Round: 3, Clients: 12, Threshold: 3, Degree: 4, Length: 4, Bits: 64}
	s := newStepper(t, p)
	list := s.advertise()
	forged := *list
	forged.Adverts = slices.Clone(list.Adverts)
	forged.Adverts[1].EncKey[3] ^= 4
	refused := 0
	for _, c := range s.clients[2:] {
		if _, err := c.ShareKeys(&forged); err != nil {
			wantProtocolError(t, err, "advert from client 2 has an invalid signature")
			refused++
		}
	}
	if _, err := s.clients[0].ShareKeys(&forged); err != nil {
		refused++
	}
	if refused != 4 {
		t.Fatalf("%d clients refused the forged advert, want client 2's 4 neighbours", refused)
	}
}

func TestNilMessagesRefused(t *testing.T) {
	s := newStepper(t, smallParams)
	c := s.clients[0]
	if _, err := c.ShareKeys(nil); err == nil {
		t.Error("ShareKeys(nil) accepted")
	}
	if _, err := c.MaskInput(nil, nil); err == nil {
		t.Error("MaskInput(nil) accepted")
	}
	if _, err := c.CheckConsistency(nil); err == nil {
		t.Error("CheckConsistency(nil) accepted")
	}
	if _, err := c.Unmask(nil); err == nil {
		t.Error("Unmask(nil) accepted")
	}
	for name, err := range map[string]error{
		"HandleAdvert":      s.srv.HandleAdvert(nil),
		"HandleShares":      s.srv.HandleShares(nil),
		"HandleMaskedInput": s.srv.HandleMaskedInput(nil),
		"HandleSignature":   s.srv.HandleSignature(nil),
		"HandleUnmask":      s.srv.HandleUnmask(nil),
	} {
		if err == nil {
			t.Errorf("%s(nil) accepted", name)
		}
	}
}
