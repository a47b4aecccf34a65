package secagg

import (
	"crypto/ecdh"
	"crypto/subtle"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"

	"filippo.io/edwards25519"

	"github.com/fl-secure/fl-secure/internal/edsig"
	"github.com/fl-secure/fl-secure/internal/field"
	"github.com/fl-secure/fl-secure/internal/prg"
	"github.com/fl-secure/fl-secure/internal/wire"
)

// Server is the coordinator's side of a round: it relays messages, keeps a
// running sum of the masked inputs (O(d) memory, whatever the number of
// clients), and removes the masks once enough clients have revealed their
// shares. Each Handle method validates a message completely before it
// changes any state, so a malformed or hostile message is rejected with an
// error and leaves the round as it was. The phase-closing methods
// (AdvertList, ForwardedShares, ConsistencyRequest, UnmaskRequest, Aggregate)
// move the round on.
type Server struct {
	p      Params
	roster *Roster
	phase  phase

	adverts map[uint32]*Advert

	// Fixed by AdvertList.
	list   []Advert
	digest [32]byte
	g      *graph

	shares map[uint32]*Shares // by sender

	// Fixed by ForwardedShares.
	u2  []uint32
	sum []uint64
	in  map[uint32]bool // senders of masked inputs

	// Fixed by ConsistencyRequest.
	u3   []uint32
	sigs map[uint32]Signature

	// Fixed by UnmaskRequest.
	responses map[uint32]*UnmaskResponse
}

// NewServer returns the server of one round among the clients of roster.
func NewServer(p Params, roster *Roster) (*Server, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := roster.check(p); err != nil {
		return nil, err
	}
	return &Server{
		p: p, roster: roster, phase: phaseAdvertise,
		adverts: make(map[uint32]*Advert),
	}, nil
}

func (s *Server) expect(ph phase, round uint64, sender uint32, what string) error {
	if s.phase != ph {
		return fmt.Errorf("%w: server: %s from client %d arrived during %v", ErrProtocol, what, sender, s.phase)
	}
	if round != s.p.Round {
		return fmt.Errorf("%w: server: %s from client %d is for round %d, this is round %d", ErrProtocol, what, sender, round, s.p.Round)
	}
	if sender < 1 || int(sender) > s.p.Clients {
		return fmt.Errorf("%w: server: %s from client id %d, out of range [1, %d]", ErrProtocol, what, sender, s.p.Clients)
	}
	return nil
}

// HandleAdvert records a client's signed key advert.
func (s *Server) HandleAdvert(a *Advert) error {
	if a == nil {
		return fmt.Errorf("secagg: server: nil advert")
	}
	if err := s.expect(phaseAdvertise, a.Round, a.Sender, "advert"); err != nil {
		return err
	}
	if _, dup := s.adverts[a.Sender]; dup {
		return fmt.Errorf("%w: server: second advert from client %d", ErrProtocol, a.Sender)
	}
	if !edsig.Verify(s.roster.keys[a.Sender-1], advertSigned(&s.p.Context, a), a.Sig[:]) {
		return fmt.Errorf("%w: server: advert from client %d has an invalid signature", ErrProtocol, a.Sender)
	}
	v := *a
	s.adverts[a.Sender] = &v
	return nil
}

// AdvertList closes key advertisement and returns the list to broadcast.
func (s *Server) AdvertList() (*AdvertList, error) {
	if s.phase != phaseAdvertise {
		return nil, fmt.Errorf("secagg: server: AdvertList called during %v", s.phase)
	}
	if len(s.adverts) < s.p.Threshold+1 {
		return nil, fmt.Errorf("%w: %d clients advertised keys, need at least Threshold+1 = %d", ErrBelowThreshold, len(s.adverts), s.p.Threshold+1)
	}
	if len(s.adverts) < s.p.MinSurvivors {
		return nil, fmt.Errorf("%w: %d clients advertised keys, MinSurvivors = %d", ErrBelowThreshold, len(s.adverts), s.p.MinSurvivors)
	}
	ids := sortedKeys(s.adverts)
	s.list = make([]Advert, len(ids))
	for i, id := range ids {
		s.list[i] = *s.adverts[id]
	}
	s.digest = advertDigest(&s.p.Context, s.p.Round, s.list)
	s.g = newGraph(ids, s.p.Degree, s.digest)
	s.shares = make(map[uint32]*Shares)
	s.phase = phaseShare
	return &AdvertList{Round: s.p.Round, Adverts: slices.Clone(s.list)}, nil
}

// HandleShares records a client's sealed shares. They must be addressed to
// exactly the client's neighbours, in increasing order.
func (s *Server) HandleShares(m *Shares) error {
	if m == nil {
		return fmt.Errorf("secagg: server: nil shares")
	}
	if err := s.expect(phaseShare, m.Round, m.Sender, "shares"); err != nil {
		return err
	}
	if !s.g.contains(m.Sender) {
		return fmt.Errorf("%w: server: shares from client %d, which did not advertise keys", ErrProtocol, m.Sender)
	}
	if _, dup := s.shares[m.Sender]; dup {
		return fmt.Errorf("%w: server: second shares message from client %d", ErrProtocol, m.Sender)
	}
	nb := s.g.neighbours(m.Sender)
	if len(m.Shares) != len(nb) {
		return fmt.Errorf("%w: server: client %d sent %d shares, it has %d neighbours", ErrProtocol, m.Sender, len(m.Shares), len(nb))
	}
	for i := range nb {
		if m.Shares[i].Peer != nb[i] {
			return fmt.Errorf("%w: server: client %d addressed share %d to client %d, want neighbour %d", ErrProtocol, m.Sender, i, m.Shares[i].Peer, nb[i])
		}
	}
	v := *m
	v.Shares = slices.Clone(m.Shares)
	s.shares[m.Sender] = &v
	return nil
}

// ForwardedShares closes key sharing and returns, for each client that sent
// shares, the shares addressed to it by other such clients.
func (s *Server) ForwardedShares() (map[uint32]*ForwardedShares, error) {
	if s.phase != phaseShare {
		return nil, fmt.Errorf("secagg: server: ForwardedShares called during %v", s.phase)
	}
	if len(s.shares) < s.p.Threshold+1 {
		return nil, fmt.Errorf("%w: %d clients shared keys, need at least Threshold+1 = %d", ErrBelowThreshold, len(s.shares), s.p.Threshold+1)
	}
	s.u2 = sortedKeys(s.shares)
	out := make(map[uint32]*ForwardedShares, len(s.u2))
	for _, v := range s.u2 {
		out[v] = &ForwardedShares{Round: s.p.Round, Recipient: v}
	}
	for _, w := range s.u2 { // increasing sender order within each message
		for _, sh := range s.shares[w].Shares {
			if f, ok := out[sh.Peer]; ok {
				f.Shares = append(f.Shares, SealedShare{Peer: w, Ciphertext: sh.Ciphertext})
			}
		}
	}
	s.sum = make([]uint64, s.p.Length)
	s.in = make(map[uint32]bool)
	s.phase = phaseMask
	return out, nil
}

// HandleMaskedInput adds a client's masked input to the running sum.
func (s *Server) HandleMaskedInput(m *MaskedInput) error {
	if m == nil {
		return fmt.Errorf("secagg: server: nil masked input")
	}
	if err := s.checkMaskedInput(m.Round, m.Sender, m.Bits); err != nil {
		return err
	}
	if err := checkVector(s.p, m.Vector, "masked input from client "+strconv.Itoa(int(m.Sender))); err != nil {
		return err
	}
	// Entries are below 2^Bits, so uint64 accumulators cannot lose the sum
	// modulo 2^Bits; Aggregate reduces once.
	sum := s.sum[:len(m.Vector)]
	for i, x := range m.Vector {
		sum[i] += x
	}
	s.in[m.Sender] = true
	return nil
}

// HandleEncodedMaskedInput is HandleMaskedInput on the wire encoding: it
// checks the header and length, then adds the words straight from b to the
// running sum, with no decoded copy of the vector. Transports should prefer
// it; both accept and refuse exactly the same messages.
func (s *Server) HandleEncodedMaskedInput(b []byte) error {
	r := wire.NewReader(b, "secagg: decoding MaskedInput")
	r.Header(tagMaskedInput, version)
	round := r.U64("round")
	sender := r.U32("sender")
	bits := int(r.U8("bits"))
	if r.Err() == nil && bits != 32 && bits != 64 {
		r.Fail("bits: %d, want 32 or 64", bits)
	}
	ws := max(bits/8, 1)
	n := r.Count("vector", MaxLength, ws)
	raw := r.Slice("vector", n*ws)
	if err := r.Done(); err != nil {
		return err
	}
	if err := s.checkMaskedInput(round, sender, bits); err != nil {
		return err
	}
	if n != s.p.Length {
		return fmt.Errorf("secagg: masked input from client %d has length %d, want Length = %d", sender, n, s.p.Length)
	}
	prg.AddWords(s.sum, raw, bits)
	s.in[sender] = true
	return nil
}

func (s *Server) checkMaskedInput(round uint64, sender uint32, bits int) error {
	if err := s.expect(phaseMask, round, sender, "masked input"); err != nil {
		return err
	}
	if _, ok := s.shares[sender]; !ok {
		return fmt.Errorf("%w: server: masked input from client %d, which did not share keys", ErrProtocol, sender)
	}
	if s.in[sender] {
		return fmt.Errorf("%w: server: second masked input from client %d", ErrProtocol, sender)
	}
	if bits != s.p.Bits {
		return fmt.Errorf("%w: server: masked input from client %d is over Z_2^%d, want Z_2^%d", ErrProtocol, sender, bits, s.p.Bits)
	}
	return nil
}

// ConsistencyRequest closes input collection and returns the survivor set
// U3 to send to each survivor.
func (s *Server) ConsistencyRequest() (*ConsistencyRequest, error) {
	if s.phase != phaseMask {
		return nil, fmt.Errorf("secagg: server: ConsistencyRequest called during %v", s.phase)
	}
	if q := quorum(s.p, len(s.list)); len(s.in) < q {
		return nil, fmt.Errorf("%w: %d masked inputs, consistency quorum is %d", ErrBelowThreshold, len(s.in), q)
	}
	if len(s.in) < s.p.MinSurvivors {
		return nil, fmt.Errorf("%w: %d masked inputs, MinSurvivors = %d", ErrBelowThreshold, len(s.in), s.p.MinSurvivors)
	}
	s.u3 = sortedKeys(s.in)
	s.sigs = make(map[uint32]Signature)
	s.phase = phaseConsistency
	return &ConsistencyRequest{Round: s.p.Round, Survivors: slices.Clone(s.u3)}, nil
}

// HandleSignature records a survivor's consistency signature.
func (s *Server) HandleSignature(m *ConsistencySignature) error {
	if m == nil {
		return fmt.Errorf("secagg: server: nil consistency signature")
	}
	if err := s.expect(phaseConsistency, m.Round, m.Sender, "consistency signature"); err != nil {
		return err
	}
	if !s.in[m.Sender] {
		return fmt.Errorf("%w: server: consistency signature from client %d, which is not a survivor", ErrProtocol, m.Sender)
	}
	if _, dup := s.sigs[m.Sender]; dup {
		return fmt.Errorf("%w: server: second consistency signature from client %d", ErrProtocol, m.Sender)
	}
	if !edsig.Verify(s.roster.keys[m.Sender-1], consistencySigned(s.p.Round, &s.digest, s.u3), m.Sig[:]) {
		return fmt.Errorf("%w: server: consistency signature from client %d is invalid", ErrProtocol, m.Sender)
	}
	s.sigs[m.Sender] = Signature{Signer: m.Sender, Sig: m.Sig}
	return nil
}

// UnmaskRequest closes the consistency check and returns the request to
// send to every survivor: the survivor set and every signature received,
// one from each survivor. If a survivor has not signed it returns an error
// wrapping ErrBelowThreshold and keeps accepting signatures.
func (s *Server) UnmaskRequest() (*UnmaskRequest, error) {
	if s.phase != phaseConsistency {
		return nil, fmt.Errorf("secagg: server: UnmaskRequest called during %v", s.phase)
	}
	// Clients reveal shares only when every survivor signed (see
	// Client.Unmask); U3 already holds at least a quorum.
	for _, v := range s.u3 {
		if _, ok := s.sigs[v]; !ok {
			return nil, fmt.Errorf("%w: survivor %d did not sign the survivor set (%d of %d signed); clients reveal shares only when every survivor has", ErrBelowThreshold, v, len(s.sigs), len(s.u3))
		}
	}
	req := &UnmaskRequest{Round: s.p.Round, Survivors: slices.Clone(s.u3)}
	for _, id := range sortedKeys(s.sigs) {
		req.Signatures = append(req.Signatures, s.sigs[id])
	}
	s.responses = make(map[uint32]*UnmaskResponse)
	s.phase = phaseUnmask
	return req, nil
}

// partners returns the clients whose shares v holds: its neighbours that
// sent shares.
func (s *Server) partners(v uint32) []uint32 {
	var out []uint32
	for _, w := range s.g.neighbours(v) {
		if _, ok := s.shares[w]; ok {
			out = append(out, w)
		}
	}
	return out
}

// HandleUnmask records a client's revealed shares. The response must hold
// exactly one share per partner, in increasing order, of the kind the
// survivor set calls for.
func (s *Server) HandleUnmask(m *UnmaskResponse) error {
	if m == nil {
		return fmt.Errorf("secagg: server: nil unmask response")
	}
	if err := s.expect(phaseUnmask, m.Round, m.Sender, "unmask response"); err != nil {
		return err
	}
	if _, ok := s.sigs[m.Sender]; !ok {
		return fmt.Errorf("%w: server: unmask response from client %d, which did not sign the survivor set", ErrProtocol, m.Sender)
	}
	if _, dup := s.responses[m.Sender]; dup {
		return fmt.Errorf("%w: server: second unmask response from client %d", ErrProtocol, m.Sender)
	}
	want := s.partners(m.Sender)
	if len(m.Shares) != len(want) {
		return fmt.Errorf("%w: server: client %d revealed %d shares, it holds %d", ErrProtocol, m.Sender, len(m.Shares), len(want))
	}
	var sc edwards25519.Scalar
	for i, sh := range m.Shares {
		if sh.Owner != want[i] {
			return fmt.Errorf("%w: server: client %d revealed a share of client %d at position %d, want client %d", ErrProtocol, m.Sender, sh.Owner, i, want[i])
		}
		kind := MaskKeyShare
		if s.in[sh.Owner] {
			kind = SelfShare
		}
		if sh.Kind != kind {
			return fmt.Errorf("%w: server: client %d revealed a %v share of client %d, want %v", ErrProtocol, m.Sender, sh.Kind, sh.Owner, kind)
		}
		if _, err := sc.SetCanonicalBytes(sh.Value[:]); err != nil {
			return fmt.Errorf("%w: server: client %d revealed a non-canonical share of client %d", ErrProtocol, m.Sender, sh.Owner)
		}
	}
	v := *m
	v.Shares = slices.Clone(m.Shares)
	s.responses[m.Sender] = &v
	return nil
}

// Aggregate reconstructs the self-mask seeds of the survivors and the
// mask-agreement keys of the clients that dropped after sharing keys,
// removes every remaining mask, and returns Σ_{u∈U3} x_u over Z_{2^Bits}.
// If some secret has fewer than Threshold revealed shares it returns an
// error wrapping ErrBelowThreshold and the server keeps accepting unmask
// responses.
func (s *Server) Aggregate() ([]uint64, error) {
	if s.phase != phaseUnmask {
		return nil, fmt.Errorf("secagg: server: Aggregate called during %v", s.phase)
	}
	// Gather the revealed shares by owner.
	got := make(map[uint32][]field.Share)
	for _, holder := range sortedKeys(s.responses) {
		for _, sh := range s.responses[holder].Shares {
			var y edwards25519.Scalar
			if _, err := y.SetCanonicalBytes(sh.Value[:]); err != nil {
				panic("secagg: internal error: unchecked share")
			}
			got[sh.Owner] = append(got[sh.Owner], field.Share{X: holder, Y: y})
		}
	}
	var dropped []uint32
	for _, v := range s.u2 {
		if !s.in[v] {
			dropped = append(dropped, v)
		}
	}
	for _, v := range slices.Concat(s.u3, dropped) {
		if n := len(got[v]); n < s.p.Threshold {
			return nil, fmt.Errorf("%w: %d shares revealed for client %d, threshold is %d", ErrBelowThreshold, n, v, s.p.Threshold)
		}
	}

	// Lagrange coefficients depend only on the holders used. On the
	// complete graph an owner's first t holders are the first t responders,
	// or the first t+1 without the owner itself: both come from one O(t²)
	// computation for the first t+1 responders (field.LagrangeWithout), not
	// one per owner. Other holder sets are computed once each and cached.
	responders := sortedKeys(s.responses)
	base := responders[:min(len(responders), s.p.Threshold+1)]
	baseLambda, err := field.LagrangeAtZero(base)
	if err != nil {
		panic("secagg: internal error: " + err.Error())
	}
	lagrange := make(map[string][]edwards25519.Scalar)
	coefficients := func(ids []uint32) []edwards25519.Scalar {
		if len(base) == len(ids)+1 {
			// ids ⊂ base? Then at most one base element is missing.
			skip := -1
			for i, j := 0, 0; i < len(base); i++ {
				if j < len(ids) && base[i] == ids[j] {
					j++
				} else if skip < 0 {
					skip = i
				} else {
					skip = -2
					break
				}
			}
			if skip >= 0 {
				return field.LagrangeWithout(baseLambda, base, skip)
			}
		}
		key := fmt.Sprint(ids)
		lam, ok := lagrange[key]
		if !ok {
			if lam, err = field.LagrangeAtZero(ids); err != nil {
				panic("secagg: internal error: " + err.Error())
			}
			lagrange[key] = lam
		}
		return lam
	}
	reconstruct := func(owner uint32) *edwards25519.Scalar {
		shares := got[owner][:s.p.Threshold]
		ids := make([]uint32, len(shares))
		ys := make([]*edwards25519.Scalar, len(shares))
		for i := range shares {
			ids[i] = shares[i].X
			ys[i] = &shares[i].Y
		}
		return field.Interpolate(coefficients(ids), ys)
	}

	masks := make([]prg.Mask, 0, len(s.u3)+len(dropped)*s.p.Degree)
	for _, u := range s.u3 {
		beta := reconstruct(u)
		c := selfCommit(beta, s.p.Round, u)
		if subtle.ConstantTimeCompare(c[:], s.adverts[u].SelfCommit[:]) != 1 {
			return nil, fmt.Errorf("%w: self-mask seed of client %d reconstructed from revealed shares does not match its commitment: a share holder lied", ErrProtocol, u)
		}
		masks = append(masks, prg.Mask{Key: selfSeed(beta, s.p.Round, u), Subtract: true})
	}
	// Pairwise masks left by the dropped clients: one X25519 agreement per
	// (dropped, surviving neighbour) pair, spread over all cores.
	type pair struct {
		v, u uint32
		priv *ecdh.PrivateKey
	}
	var pairs []pair
	for _, v := range dropped {
		priv := maskPrivateKey(reconstruct(v), s.p.Round, v)
		if subtle.ConstantTimeCompare(priv.PublicKey().Bytes(), s.adverts[v].MaskKey[:]) != 1 {
			return nil, fmt.Errorf("%w: mask key of dropped client %d reconstructed from revealed shares does not match its advert: a share holder lied", ErrProtocol, v)
		}
		for _, u := range s.g.neighbours(v) {
			if s.in[u] {
				pairs = append(pairs, pair{v, u, priv})
			}
		}
	}
	pairMasks := make([]prg.Mask, len(pairs))
	pairErrs := make([]error, len(pairs))
	forEach(len(pairs), func(i int) {
		pr := pairs[i]
		pub, err := ecdh.X25519().NewPublicKey(s.adverts[pr.u].MaskKey[:])
		if err != nil {
			pairErrs[i] = fmt.Errorf("%w: mask key of client %d: %v", ErrProtocol, pr.u, err)
			return
		}
		seed, err := pairSeed(pr.priv, pub, s.p.Round, pr.v, pr.u)
		if err != nil {
			pairErrs[i] = fmt.Errorf("%w: %v", ErrProtocol, err)
			return
		}
		// u added +PRG(s_uv) if u < v and −PRG(s_uv) if u > v.
		pairMasks[i] = prg.Mask{Key: seed, Subtract: pr.u < pr.v}
	})
	if err := errors.Join(pairErrs...); err != nil {
		return nil, err
	}
	masks = append(masks, pairMasks...)
	clear(pairMasks)
	prg.ApplyParallel(s.sum, s.p.Bits, masks)
	clear(masks)
	mask := ringMask(s.p.Bits)
	for i := range s.sum {
		s.sum[i] &= mask
	}
	s.phase = phaseDone
	return slices.Clone(s.sum), nil
}

// Survivors returns U3, the clients whose inputs are in the sum (nil before
// ConsistencyRequest).
func (s *Server) Survivors() []uint32 { return slices.Clone(s.u3) }

// forEach calls f(0), …, f(n−1), spread over the available cores when n is
// large enough for that to pay (each call is at least one X25519 agreement).
// f must only write to its own index.
func forEach(n int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n/2)
	if workers < 2 {
		for i := range n {
			f(i)
		}
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				f(i)
			}
		})
	}
	wg.Wait()
}

func sortedKeys[V any](m map[uint32]V) []uint32 {
	ids := make([]uint32, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
