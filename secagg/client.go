package secagg

import (
	"bytes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"fmt"
	"io"
	"slices"

	"filippo.io/edwards25519"

	"github.com/fl-secure/fl-secure/internal/edsig"
	"github.com/fl-secure/fl-secure/internal/field"
	"github.com/fl-secure/fl-secure/internal/prg"
)

type phase int

const (
	phaseAdvertise phase = iota
	phaseShare
	phaseMask
	phaseConsistency
	phaseUnmask
	phaseDone
)

var phaseNames = [...]string{"AdvertiseKeys", "ShareKeys", "MaskInput", "CheckConsistency", "Unmask", "done"}

func (p phase) String() string { return phaseNames[p] }

// Client is one client's side of a round. Its methods must be called in
// protocol order, each once; a call repeated with an identical request (a
// retry by the transport) returns the same answer, and any other repeat is
// refused, so a server can never obtain two different answers for one phase.
// A call that returns an error leaves the Client unchanged.
type Client struct {
	p        Params
	id       uint32
	identity ed25519.PrivateKey
	roster   *Roster
	rand     io.Reader

	phase phase
	last  struct {
		phase phase
		key   [32]byte
		resp  any
	}

	// AdvertiseKeys.
	encPriv  *ecdh.PrivateKey
	sigma    *edwards25519.Scalar // Shamir-shared; derives maskPriv
	maskPriv *ecdh.PrivateKey
	beta     *edwards25519.Scalar // Shamir-shared; derives the self mask
	advert   Advert

	// ShareKeys.
	digest     [32]byte
	adverts    map[uint32]*Advert // U1 as this client saw it
	g          *graph
	neighbours []uint32
	aeads      map[uint32]cipher.AEAD       // share encryption, by neighbour
	seeds      map[uint32][prg.KeySize]byte // pairwise mask seeds, by neighbour

	// OpenShares: shares opened and checked before MaskInput.
	opened *openedShares

	// MaskInput.
	partners []uint32 // neighbours whose shares this client holds, sorted
	held     map[uint32]*heldShares

	// CheckConsistency.
	survivors []uint32
}

type heldShares struct{ sigma, beta edwards25519.Scalar }

// openedShares are the checked, opened shares of one ForwardedShares
// message, identified by its requestKey.
type openedShares struct {
	key      [32]byte
	partners []uint32 // sorted
	held     map[uint32]*heldShares
}

// NewClient returns the client with identifier id (1..n) for one round.
// identity is its long-term Ed25519 key, whose public half must be the
// roster's entry for id. rand supplies all randomness; nil means
// crypto/rand.
func NewClient(p Params, id uint32, identity ed25519.PrivateKey, roster *Roster, rnd io.Reader) (*Client, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := roster.check(p); err != nil {
		return nil, err
	}
	if id < 1 || int(id) > p.Clients {
		return nil, fmt.Errorf("secagg: client id %d out of range [1, %d]", id, p.Clients)
	}
	if len(identity) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("secagg: identity key has length %d, want %d", len(identity), ed25519.PrivateKeySize)
	}
	if !bytes.Equal(identity.Public().(ed25519.PublicKey), roster.keys[id-1].Bytes()) {
		return nil, fmt.Errorf("secagg: identity key of client %d does not match its roster entry", id)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	return &Client{
		p: p, id: id, rand: rnd,
		identity: slices.Clone(identity),
		roster:   roster,
	}, nil
}

// ID returns the client's identifier.
func (c *Client) ID() uint32 { return c.id }

// begin checks that a call for phase ph with request req may proceed. If the
// call repeats the previous one exactly it returns the previous answer.
func (c *Client) begin(ph phase, round uint64, key [32]byte) (any, error) {
	if c.phase > ph && c.last.phase == ph && c.last.key == key {
		return c.last.resp, nil
	}
	if c.phase != ph {
		if c.phase > ph {
			return nil, fmt.Errorf("%w: client %d: %v already answered in this round; refusing a different request", ErrProtocol, c.id, ph)
		}
		return nil, fmt.Errorf("%w: client %d: %v called before %v", ErrProtocol, c.id, ph, c.phase)
	}
	if round != c.p.Round {
		return nil, fmt.Errorf("%w: client %d: message for round %d, this is round %d", ErrProtocol, c.id, round, c.p.Round)
	}
	return nil, nil
}

func (c *Client) finish(ph phase, key [32]byte, resp any) {
	c.phase = ph + 1
	c.last.phase, c.last.key, c.last.resp = ph, key, resp
}

func requestKey(m encoding.BinaryMarshaler, extra ...[]byte) [32]byte {
	b, err := m.MarshalBinary()
	h := sha256.New()
	if err != nil {
		h.Write([]byte(err.Error()))
	}
	h.Write(b)
	for _, e := range extra {
		h.Write(e)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// AdvertiseKeys generates the round's keys and returns the signed advert
// (Bonawitz et al. 2017, round 0, AdvertiseKeys).
func (c *Client) AdvertiseKeys() (*Advert, error) {
	var key [32]byte
	if prev, err := c.begin(phaseAdvertise, c.p.Round, key); err != nil || prev != nil {
		return cloneAdvert(prev), err
	}
	var seed [32]byte
	if _, err := io.ReadFull(c.rand, seed[:]); err != nil {
		return nil, fmt.Errorf("secagg: reading randomness: %w", err)
	}
	encPriv, err := ecdh.X25519().NewPrivateKey(seed[:])
	clear(seed[:])
	if err != nil {
		panic("secagg: internal error: " + err.Error())
	}
	sigma, err := field.RandomScalar(c.rand)
	if err != nil {
		return nil, err
	}
	beta, err := field.RandomScalar(c.rand)
	if err != nil {
		return nil, err
	}
	maskPriv := maskPrivateKey(sigma, c.p.Round, c.id)
	a := Advert{Round: c.p.Round, Sender: c.id, SelfCommit: selfCommit(beta, c.p.Round, c.id)}
	copy(a.EncKey[:], encPriv.PublicKey().Bytes())
	copy(a.MaskKey[:], maskPriv.PublicKey().Bytes())
	copy(a.Sig[:], ed25519.Sign(c.identity, advertSigned(&c.p.Context, &a)))

	c.encPriv, c.sigma, c.maskPriv, c.beta, c.advert = encPriv, sigma, maskPriv, beta, a
	c.finish(phaseAdvertise, key, &a)
	return cloneAdvert(&a), nil
}

func cloneAdvert(v any) *Advert {
	if v == nil {
		return nil
	}
	a := *v.(*Advert)
	return &a
}

// checkAdverts checks the shape of an advert list: identifiers in range and
// strictly increasing, every advert for this round. Signatures are checked
// by the caller, which knows whose adverts it will use.
func checkAdverts(p Params, list *AdvertList) error {
	for i := range list.Adverts {
		a := &list.Adverts[i]
		if a.Sender < 1 || int(a.Sender) > p.Clients {
			return fmt.Errorf("%w: advert from client %d: id out of range [1, %d]", ErrProtocol, a.Sender, p.Clients)
		}
		if i > 0 && a.Sender <= list.Adverts[i-1].Sender {
			return fmt.Errorf("%w: advert list not strictly increasing at client %d", ErrProtocol, a.Sender)
		}
		if a.Round != p.Round {
			return fmt.Errorf("%w: advert from client %d is for round %d, this is round %d", ErrProtocol, a.Sender, a.Round, p.Round)
		}
	}
	return nil
}

// ShareKeys checks the advert list, derives the neighbour graph, and returns
// its Shamir shares of σ and β, one sealed share per neighbour (Bonawitz et
// al. 2017, round 1, ShareKeys; Bell et al. 2020). It verifies the
// signature of every neighbour's advert, the only keys it will use; on the
// complete graph that is every advert. It refuses a list with fewer than
// Threshold+1 or MinSurvivors adverts. A forged advert of a non-neighbour
// could only change the graph seed, which omitting adverts already can
// (package documentation, "Security": Recommend budgets for it).
func (c *Client) ShareKeys(list *AdvertList) (*Shares, error) {
	if list == nil {
		return nil, fmt.Errorf("secagg: client %d: nil advert list", c.id)
	}
	key := requestKey(list)
	if prev, err := c.begin(phaseShare, list.Round, key); err != nil || prev != nil {
		return cloneShares(prev), err
	}
	if err := checkAdverts(c.p, list); err != nil {
		return nil, fmt.Errorf("secagg: client %d: %w", c.id, err)
	}
	adverts := make(map[uint32]*Advert, len(list.Adverts))
	ids := make([]uint32, len(list.Adverts))
	for i := range list.Adverts {
		a := list.Adverts[i]
		adverts[a.Sender] = &a
		ids[i] = a.Sender
	}
	if own, ok := adverts[c.id]; !ok || *own != c.advert {
		return nil, fmt.Errorf("%w: client %d: advert list does not carry this client's own advert unchanged", ErrProtocol, c.id)
	}
	if len(ids)-1 < c.p.Threshold {
		return nil, fmt.Errorf("%w: client %d: %d other clients advertised keys, threshold is %d", ErrBelowThreshold, c.id, len(ids)-1, c.p.Threshold)
	}
	if len(ids) < c.p.MinSurvivors {
		return nil, fmt.Errorf("%w: client %d: %d clients advertised keys, this client's floor is MinSurvivors = %d", ErrBelowThreshold, c.id, len(ids), c.p.MinSurvivors)
	}
	digest := advertDigest(&c.p.Context, c.p.Round, list.Adverts)
	g := newGraph(ids, c.p.Degree, digest)
	nb := g.neighbours(c.id)
	entries := make([]edsig.Entry, len(nb))
	for i, v := range nb {
		a := adverts[v]
		entries[i] = edsig.Entry{Pub: c.roster.keys[v-1], Msg: advertSigned(&c.p.Context, a), Sig: a.Sig[:]}
	}
	if bad := edsig.Invalid(entries); len(bad) > 0 {
		return nil, fmt.Errorf("%w: client %d: advert from client %d has an invalid signature", ErrProtocol, c.id, nb[bad[0]])
	}

	sigmaShares, err := field.Split(c.rand, c.sigma, c.p.Threshold, nb)
	if err != nil {
		return nil, err
	}
	betaShares, err := field.Split(c.rand, c.beta, c.p.Threshold, nb)
	if err != nil {
		return nil, err
	}
	// Two X25519 agreements per neighbour, spread over the cores: one keys
	// the sealed shares (both directions), one gives the pairwise mask seed,
	// agreed now so that MaskInput only expands it.
	type agreed struct {
		aead cipher.AEAD
		seed [prg.KeySize]byte
		err  error
	}
	ag := make([]agreed, len(nb))
	forEach(len(nb), func(i int) {
		v := nb[i]
		encPeer, err := ecdh.X25519().NewPublicKey(adverts[v].EncKey[:])
		if err != nil {
			ag[i].err = fmt.Errorf("%w: client %d: encryption key of client %d: %v", ErrProtocol, c.id, v, err)
			return
		}
		maskPeer, err := ecdh.X25519().NewPublicKey(adverts[v].MaskKey[:])
		if err != nil {
			ag[i].err = fmt.Errorf("%w: client %d: mask key of client %d: %v", ErrProtocol, c.id, v, err)
			return
		}
		if ag[i].aead, err = shareAEAD(c.encPriv, encPeer, c.p.Round, c.id, v); err != nil {
			ag[i].err = fmt.Errorf("%w: client %d: %v", ErrProtocol, c.id, err)
			return
		}
		if ag[i].seed, err = pairSeed(c.maskPriv, maskPeer, c.p.Round, c.id, v); err != nil {
			ag[i].err = fmt.Errorf("%w: client %d: %v", ErrProtocol, c.id, err)
		}
	})
	seeds := make(map[uint32][prg.KeySize]byte, len(nb))
	aeads := make(map[uint32]cipher.AEAD, len(nb))
	for i, v := range nb {
		if ag[i].err != nil {
			return nil, ag[i].err
		}
		seeds[v], aeads[v] = ag[i].seed, ag[i].aead
	}
	out := &Shares{Round: c.p.Round, Sender: c.id, Shares: make([]SealedShare, len(nb))}
	var plain [shareSize]byte
	for i, v := range nb {
		copy(plain[:32], sigmaShares[i].Y.Bytes())
		copy(plain[32:], betaShares[i].Y.Bytes())
		out.Shares[i].Peer = v
		aeads[v].Seal(out.Shares[i].Ciphertext[:0], shareNonce(c.id, v), plain[:], shareAD(c.p.Round, c.id, v, &digest))
	}
	clear(plain[:])
	for i := range sigmaShares {
		sigmaShares[i].Y, betaShares[i].Y = edwards25519.Scalar{}, edwards25519.Scalar{}
	}

	c.digest, c.adverts, c.g, c.neighbours, c.aeads, c.seeds = digest, adverts, g, nb, aeads, seeds
	c.finish(phaseShare, key, out)
	return cloneShares(out), nil
}

func cloneShares(v any) *Shares {
	if v == nil {
		return nil
	}
	s := *v.(*Shares)
	s.Shares = slices.Clone(s.Shares)
	return &s
}

// OpenShares makes every check that MaskInput makes on fwd — recipient,
// round, neighbours, duplicates, Threshold and MinSurvivors counts, then the
// authentication of each sealed share and the canonical encoding of each
// share — and keeps the opened shares, without masking anything or leaving
// the MaskInput phase. A site that charges a privacy budget before it commits
// to an input calls OpenShares, charges only if it succeeds, then calls
// MaskInput with the identical fwd, which reuses the opened shares; any other
// fwd is then refused. An identical retry returns nil, also after MaskInput.
// MaskInput may also be called without OpenShares.
func (c *Client) OpenShares(fwd *ForwardedShares) error {
	if fwd == nil {
		return fmt.Errorf("secagg: client %d: nil forwarded shares", c.id)
	}
	key := requestKey(fwd)
	if prev, err := c.begin(phaseMask, fwd.Round, key); err != nil || prev != nil {
		return err
	}
	if c.opened != nil {
		if c.opened.key == key {
			return nil
		}
		return fmt.Errorf("%w: client %d: forwarded shares differ from the ones already opened in this round", ErrProtocol, c.id)
	}
	o, err := c.openShares(fwd, key)
	if err != nil {
		return err
	}
	c.opened = o
	return nil
}

// openShares checks and opens fwd; it changes nothing in c.
func (c *Client) openShares(fwd *ForwardedShares, key [32]byte) (*openedShares, error) {
	if fwd.Recipient != c.id {
		return nil, fmt.Errorf("%w: client %d: shares forwarded for client %d", ErrProtocol, c.id, fwd.Recipient)
	}
	// All shape and count checks come before the first decryption, so a
	// malformed message costs no cryptographic work and a refusal does not
	// depend on which ciphertexts authenticate.
	seen := make(map[uint32]bool, len(fwd.Shares))
	for _, s := range fwd.Shares {
		if _, ok := slices.BinarySearch(c.neighbours, s.Peer); !ok {
			return nil, fmt.Errorf("%w: client %d: forwarded share from client %d, which is not a neighbour", ErrProtocol, c.id, s.Peer)
		}
		if seen[s.Peer] {
			return nil, fmt.Errorf("%w: client %d: two forwarded shares from client %d", ErrProtocol, c.id, s.Peer)
		}
		seen[s.Peer] = true
	}
	if len(fwd.Shares) < c.p.Threshold {
		return nil, fmt.Errorf("%w: client %d: %d neighbours sent shares, threshold is %d", ErrBelowThreshold, c.id, len(fwd.Shares), c.p.Threshold)
	}
	// On the complete graph every client that shared keys sent this client
	// shares, so they bound the survivors; on a sparse graph only the
	// advert count does, checked in ShareKeys.
	if c.g.complete && len(fwd.Shares)+1 < c.p.MinSurvivors {
		return nil, fmt.Errorf("%w: client %d: %d other clients sent shares, this client's floor is MinSurvivors = %d", ErrBelowThreshold, c.id, len(fwd.Shares), c.p.MinSurvivors)
	}
	o := &openedShares{key: key, held: make(map[uint32]*heldShares, len(fwd.Shares)), partners: make([]uint32, 0, len(fwd.Shares))}
	var plain [shareSize]byte
	for _, s := range fwd.Shares {
		// The key agreed in ShareKeys serves both directions.
		if _, err := c.aeads[s.Peer].Open(plain[:0], shareNonce(s.Peer, c.id), s.Ciphertext[:], shareAD(c.p.Round, s.Peer, c.id, &c.digest)); err != nil {
			o.forget()
			return nil, &BadShareError{Recipient: c.id, Sender: s.Peer, Reason: "failed authentication"}
		}
		h := new(heldShares)
		_, err1 := h.sigma.SetCanonicalBytes(plain[:32])
		_, err2 := h.beta.SetCanonicalBytes(plain[32:])
		clear(plain[:])
		if err1 != nil || err2 != nil {
			*h = heldShares{}
			o.forget()
			return nil, &BadShareError{Recipient: c.id, Sender: s.Peer, Reason: "is not a canonical scalar"}
		}
		o.held[s.Peer] = h
		o.partners = append(o.partners, s.Peer)
	}
	slices.Sort(o.partners)
	return o, nil
}

func (o *openedShares) forget() {
	for _, h := range o.held {
		*h = heldShares{}
	}
	clear(o.held)
}

// MaskInput opens the shares its neighbours sent (or takes the ones
// OpenShares opened from the identical message), and returns input masked
// with its self mask PRG(b_u) and a pairwise mask ±PRG(s_{u,v}) for each
// neighbour v that sent shares: + if u < v, − if u > v (Bonawitz et al.
// 2017, round 2, MaskedInputCollection). input must have Params.Length
// entries in [0, 2^Bits); it is not modified. A retry with identical
// forwarded shares returns the masked input of the first call, whatever
// input it passes: a client commits to one input per round. The returned
// message must not be modified.
func (c *Client) MaskInput(fwd *ForwardedShares, input []uint64) (*MaskedInput, error) {
	if fwd == nil {
		return nil, fmt.Errorf("secagg: client %d: nil forwarded shares", c.id)
	}
	key := requestKey(fwd)
	if prev, err := c.begin(phaseMask, fwd.Round, key); err != nil || prev != nil {
		return cloneMasked(prev), err
	}
	if c.opened != nil && c.opened.key != key {
		return nil, fmt.Errorf("%w: client %d: forwarded shares differ from the ones already opened in this round", ErrProtocol, c.id)
	}
	// The range of the input's values is checked while it is masked, below,
	// in the same pass.
	if len(input) != c.p.Length {
		return nil, fmt.Errorf("secagg: client %d: input has length %d, want Length = %d", c.id, len(input), c.p.Length)
	}
	o := c.opened
	if o == nil {
		var err error
		if o, err = c.openShares(fwd, key); err != nil {
			return nil, err
		}
	}
	partners := o.partners
	masks := make([]prg.Mask, 0, len(partners)+1)
	masks = append(masks, prg.Mask{Key: selfSeed(c.beta, c.p.Round, c.id)})
	for _, v := range partners {
		masks = append(masks, prg.Mask{Key: c.seeds[v], Subtract: c.id > v})
	}
	// A long vector is masked on all cores (AES-CTR is seekable).
	y := make([]uint64, len(input))
	or := prg.ApplyFromParallel(y, input, c.p.Bits, masks)
	clear(masks)
	if or&^ringMask(c.p.Bits) != 0 {
		if o != c.opened {
			o.forget()
		}
		return nil, checkVector(c.p, input, "input")
	}

	out := &MaskedInput{Round: c.p.Round, Sender: c.id, Bits: c.p.Bits, Vector: y}
	c.held, c.partners, c.opened = o.held, o.partners, nil
	clear(c.seeds) // no longer needed: the masks are applied
	c.finish(phaseMask, key, out)
	return out, nil
}

func cloneMasked(v any) *MaskedInput {
	if v == nil {
		return nil
	}
	m := *v.(*MaskedInput)
	m.Vector = slices.Clone(m.Vector)
	return &m
}

func checkVector(p Params, v []uint64, what string) error {
	if len(v) != p.Length {
		return fmt.Errorf("secagg: %s has length %d, want Length = %d", what, len(v), p.Length)
	}
	if p.Bits == 32 {
		// OR-reduce first (branch-free); find the culprit only on failure.
		var acc uint64
		for _, x := range v {
			acc |= x
		}
		if acc>>32 != 0 {
			for i, x := range v {
				if x>>32 != 0 {
					return fmt.Errorf("secagg: %s[%d] = %d is outside Z_2^32", what, i, x)
				}
			}
		}
	}
	return nil
}

// checkIDs checks that ids is strictly increasing and within [1, n].
func checkIDs(ids []uint32, n int, what string) error {
	for i, id := range ids {
		if id < 1 || int(id) > n {
			return fmt.Errorf("%w: %s: client id %d out of range [1, %d]", ErrProtocol, what, id, n)
		}
		if i > 0 && id <= ids[i-1] {
			return fmt.Errorf("%w: %s: not strictly increasing at client %d", ErrProtocol, what, id)
		}
	}
	return nil
}

// CheckConsistency checks the survivor set U3 and signs it (Bonawitz et al.
// 2017, round 3, ConsistencyCheck). The client refuses a set that leaves out
// itself, that names a neighbour whose shares were withheld from it, that is
// smaller than the consistency quorum or than MinSurvivors, that keeps fewer
// than Threshold of the neighbours holding its shares (its self mask could
// then never be removed, and its input would be mixed with too few others),
// or whose induced neighbour graph (the round's graph restricted to U3) is
// not connected: pairwise masks cancel only inside a connected part, so the
// sum of each part could be opened on its own. In a connected U3 every
// proper subset has a mask edge to another survivor, whose key no honest
// client reveals (package documentation, "Security", for colluders).
func (c *Client) CheckConsistency(req *ConsistencyRequest) (*ConsistencySignature, error) {
	if req == nil {
		return nil, fmt.Errorf("secagg: client %d: nil consistency request", c.id)
	}
	key := requestKey(req)
	if prev, err := c.begin(phaseConsistency, req.Round, key); err != nil || prev != nil {
		return cloneSig(prev), err
	}
	u3 := req.Survivors
	if err := checkIDs(u3, c.p.Clients, "survivor set"); err != nil {
		return nil, fmt.Errorf("secagg: client %d: %w", c.id, err)
	}
	if _, ok := slices.BinarySearch(u3, c.id); !ok {
		return nil, fmt.Errorf("%w: client %d: survivor set leaves out this client, which sent its masked input", ErrProtocol, c.id)
	}
	kept := 0
	for _, v := range u3 {
		if _, ok := c.adverts[v]; !ok {
			return nil, fmt.Errorf("%w: client %d: survivor %d never advertised keys", ErrProtocol, c.id, v)
		}
		_, isNeighbour := slices.BinarySearch(c.neighbours, v)
		_, isPartner := c.held[v]
		if isNeighbour && !isPartner {
			return nil, fmt.Errorf("%w: client %d: survivor %d is a neighbour whose shares were withheld", ErrProtocol, c.id, v)
		}
		if isPartner {
			kept++
		}
	}
	if q := quorum(c.p, len(c.adverts)); len(u3) < q {
		return nil, fmt.Errorf("%w: client %d: %d survivors, consistency quorum is %d", ErrBelowThreshold, c.id, len(u3), q)
	}
	if len(u3) < c.p.MinSurvivors {
		return nil, fmt.Errorf("%w: client %d: %d survivors, this client's floor is MinSurvivors = %d", ErrBelowThreshold, c.id, len(u3), c.p.MinSurvivors)
	}
	if kept < c.p.Threshold {
		return nil, fmt.Errorf("%w: client %d: %d of its share holders survive, threshold is %d", ErrBelowThreshold, c.id, kept, c.p.Threshold)
	}
	if ok, a, b := c.g.connected(u3); !ok {
		return nil, fmt.Errorf("%w: client %d: the survivors' neighbour graph is not connected (no path from client %d to client %d), so parts of the sum could be opened separately", ErrBelowThreshold, c.id, a, b)
	}
	out := &ConsistencySignature{Round: c.p.Round, Sender: c.id}
	copy(out.Sig[:], ed25519.Sign(c.identity, consistencySigned(c.p.Round, &c.digest, u3)))
	c.survivors = slices.Clone(u3)
	c.finish(phaseConsistency, key, out)
	return cloneSig(out), nil
}

func cloneSig(v any) *ConsistencySignature {
	if v == nil {
		return nil
	}
	s := *v.(*ConsistencySignature)
	return &s
}

// Unmask checks that every client of the survivor set this client signed
// has signed that same set, then reveals, for each neighbour whose shares it
// holds, the self-mask share if that neighbour survived and the mask-key
// share if not (Bonawitz et al. 2017, round 4, Unmasking). Requiring every
// survivor's signature, not only a quorum's, means a survivor's input is
// opened only over a set it signed itself: a client that refused the set
// (for example because it is below its MinSurvivors) cannot have its self
// mask removed by its neighbours. The request must therefore carry every
// signature; if one is missing the client refuses with ErrBelowThreshold
// and reveals nothing. It answers once per round, so it never reveals both
// shares of one neighbour.
func (c *Client) Unmask(req *UnmaskRequest) (*UnmaskResponse, error) {
	if req == nil {
		return nil, fmt.Errorf("secagg: client %d: nil unmask request", c.id)
	}
	key := requestKey(req)
	if prev, err := c.begin(phaseUnmask, req.Round, key); err != nil || prev != nil {
		return cloneUnmask(prev), err
	}
	if !slices.Equal(req.Survivors, c.survivors) {
		return nil, fmt.Errorf("%w: client %d: unmask request names a survivor set other than the one this client signed", ErrProtocol, c.id)
	}
	// Counts and membership first, then one batch verification of all the
	// signatures (|U3| ≥ quorum was checked when this client signed).
	signers := make(map[uint32]bool, len(req.Signatures))
	for _, s := range req.Signatures {
		if _, ok := slices.BinarySearch(c.survivors, s.Signer); !ok {
			return nil, fmt.Errorf("%w: client %d: consistency signature from client %d, which is not a survivor", ErrProtocol, c.id, s.Signer)
		}
		if signers[s.Signer] {
			return nil, fmt.Errorf("%w: client %d: two consistency signatures from client %d", ErrProtocol, c.id, s.Signer)
		}
		signers[s.Signer] = true
	}
	for _, v := range c.survivors {
		if !signers[v] {
			return nil, fmt.Errorf("%w: client %d: survivor %d did not sign the survivor set; revealing nothing", ErrBelowThreshold, c.id, v)
		}
	}
	msg := consistencySigned(c.p.Round, &c.digest, c.survivors)
	entries := make([]edsig.Entry, len(req.Signatures))
	for i, s := range req.Signatures {
		entries[i] = edsig.Entry{Pub: c.roster.keys[s.Signer-1], Msg: msg, Sig: s.Sig[:]}
	}
	if bad := edsig.Invalid(entries); len(bad) > 0 {
		return nil, fmt.Errorf("%w: client %d: consistency signature from client %d is invalid for this survivor set", ErrProtocol, c.id, req.Signatures[bad[0]].Signer)
	}
	out := &UnmaskResponse{Round: c.p.Round, Sender: c.id, Shares: make([]RevealedShare, len(c.partners))}
	for i, v := range c.partners {
		h := c.held[v]
		r := &out.Shares[i]
		r.Owner = v
		if _, survived := slices.BinarySearch(c.survivors, v); survived {
			r.Kind = SelfShare
			copy(r.Value[:], h.beta.Bytes())
		} else {
			r.Kind = MaskKeyShare
			copy(r.Value[:], h.sigma.Bytes())
		}
	}
	c.forget()
	c.finish(phaseUnmask, key, out)
	return cloneUnmask(out), nil
}

func cloneUnmask(v any) *UnmaskResponse {
	if v == nil {
		return nil
	}
	u := *v.(*UnmaskResponse)
	u.Shares = slices.Clone(u.Shares)
	return &u
}

// forget drops the round's secrets once they can no longer be needed.
func (c *Client) forget() {
	for _, h := range c.held {
		*h = heldShares{}
	}
	c.held = nil
	if c.opened != nil {
		c.opened.forget()
		c.opened = nil
	}
	if c.sigma != nil {
		*c.sigma = edwards25519.Scalar{}
		*c.beta = edwards25519.Scalar{}
	}
	c.encPriv, c.maskPriv, c.aeads, c.seeds = nil, nil, nil, nil
}
