package he

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"
)

// Domain separation for everything this package hashes or signs.
const (
	domainAdvert     = "fl-secure/he/v2 advert\x00"
	domainCRS        = "fl-secure/he/v2 crs\x00"
	domainCommit     = "fl-secure/he/v2 commitment\x00"
	domainCommitted  = "fl-secure/he/v2 committed reveal\x00"
	domainSetup      = "fl-secure/he/v2 reveal\x00"
	domainShare      = "fl-secure/he/v2 shamir share\x00"
	domainTranscript = "fl-secure/he/v2 transcript\x00"
	domainConfirm    = "fl-secure/he/v2 key confirmation\x00"
	domainConfirmCt  = "fl-secure/he/v2 key confirmation vector\x00"
	domainSubmit     = "fl-secure/he/v3 submission\x00" // v3: the round's context in the body
)

// The Shamir shares of secret keys travel through the coordinator sealed
// with HPKE (RFC 9180) under the recipient's ML-KEM-768 + X25519 hybrid
// key, so the key material of a post-quantum scheme is not protected by a
// classical key exchange alone.
var (
	kem  = hpke.MLKEM768X25519()
	kdf  = hpke.HKDFSHA256()
	aead = hpke.ChaCha20Poly1305()
)

// hpkePublicKeySize is the encoded size of an ML-KEM-768 + X25519 key.
const hpkePublicKeySize = 1184 + 32

// ErrTooFewDecryptors is returned (wrapped) when fewer than the threshold
// of key holders are available to decrypt. Nothing is revealed.
var ErrTooFewDecryptors = errors.New("he: too few decryptors")

// ErrRefused is wrapped by a decryptor's refusals: a second decryption in a
// round, a sum of too few clients, a sum with a submission made under
// other terms (context) than the decryptor's, a request naming the wrong
// parties. A refusal reveals nothing and spends nothing.
var ErrRefused = errors.New("he: decryption refused")

// ErrProtocol is wrapped when a message is well formed but wrong: a bad
// signature, a party out of range, a message for another group or round.
var ErrProtocol = errors.New("he: protocol violation")

// ErrKeyConfirmation is wrapped when the key-confirmation vector does not
// decrypt to its known value at the end of setup: some party dealt Shamir
// shares that do not match its public-key share or each other, or sent a
// wrong decryption share. The key must not be used; run setup again.
var ErrKeyConfirmation = errors.New("he: key confirmation failed")

// A SetupError names the parties whose own signed setup messages prove
// them at fault — a reveal that does not match the party's commitment, a
// malformed message it signed, a Shamir share sealed to this party that
// does not open — so that the caller can run setup again without them.
// Faults the relaying coordinator could have caused (a bad signature, a
// missing message) are never blamed on a party.
type SetupError struct {
	Parties []int   // in increasing order
	Errs    []error // Errs[i] says what Parties[i] did; each wraps ErrProtocol or ErrMalformed
}

func (e *SetupError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "he: setup failed because of part")
	if len(e.Parties) == 1 {
		fmt.Fprintf(&b, "y %d: %v", e.Parties[0], e.Errs[0])
		return b.String()
	}
	fmt.Fprintf(&b, "ies %v:", e.Parties)
	for _, err := range e.Errs {
		fmt.Fprintf(&b, " %v;", err)
	}
	return strings.TrimSuffix(b.String(), ";")
}

// Unwrap returns the error of every party named.
func (e *SetupError) Unwrap() []error { return e.Errs }

// faults collects per-party setup faults.
type faults map[int]error

func (f faults) err() error {
	if len(f) == 0 {
		return nil
	}
	e := &SetupError{}
	for id := range f {
		e.Parties = append(e.Parties, id)
	}
	slices.Sort(e.Parties)
	for _, id := range e.Parties {
		e.Errs = append(e.Errs, f[id])
	}
	return e
}

// Setup steps, in order: a party answers each step's messages once.
type step int

const (
	stepNew       step = iota // Advert sent; Commit next
	stepCommitted             // Commit sent; Reveal next
	stepRevealed              // Reveal sent; Finish next
	stepFinished              // Finish's key-confirmation shares sent; Confirm next
	stepReady                 // setup done: Encrypt, DecryptShare, MarshalState
)

// A Party is one key holder: a hospital that encrypts its updates under
// the collective key and helps decrypt sums. It is not safe for concurrent
// use.
type Party struct {
	params *Params // after Commit, MinContributors is the group's
	id     int
	sign   ed25519.PrivateKey
	roster []ed25519.PublicKey

	step   step
	kemKey hpke.PrivateKey
	nonce  [32]byte
	sk     *rlwe.SecretKey // this party's key share; cleared by Finish

	crs        [32]byte
	ads        []advert   // every party's advert, kept to open shares
	reveal     []byte     // this party's signed reveal, committed to by Commit
	commits    [][32]byte // every party's commitment, by index
	transcript [32]byte   // hash of the setup transcript (see transcriptHash)
	confirm    *confirmation
	cpk        *rlwe.PublicKey
	threshold  *mhe.ShamirSecretShare

	decrypted map[uint64]bool
	decCount  int

	deal func(to int, share *mhe.ShamirSecretShare) // tests only: a dealer that cheats
}

// NewParty returns party id (1..N) of the group, holding its Ed25519
// identity key; roster lists every party's public identity key in id order.
// p's MinContributors is this party's own floor, which its advert states.
func NewParty(p *Params, id int, identity ed25519.PrivateKey, roster []ed25519.PublicKey) (*Party, error) {
	pt, err := newParty(p, id, identity, roster)
	if err != nil {
		return nil, err
	}
	k, err := kem.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("he: generating HPKE key: %w", err)
	}
	pt.kemKey = k
	if _, err := rand.Read(pt.nonce[:]); err != nil {
		return nil, err
	}
	// rlwe's key generator samples from a blake2b XOF keyed with 64 bytes of
	// crypto/rand.
	pt.sk = rlwe.NewKeyGenerator(p.p).GenSecretKeyNew()
	return pt, nil
}

func newParty(p *Params, id int, identity ed25519.PrivateKey, roster []ed25519.PublicKey) (*Party, error) {
	if id < 1 || id > p.cfg.Parties {
		return nil, fmt.Errorf("he: party id %d outside [1, %d]", id, p.cfg.Parties)
	}
	if len(roster) != p.cfg.Parties {
		return nil, fmt.Errorf("he: roster has %d keys for %d parties", len(roster), p.cfg.Parties)
	}
	for i, k := range roster {
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("he: roster key %d has %d bytes", i+1, len(k))
		}
	}
	if len(identity) != ed25519.PrivateKeySize || !bytes.Equal(identity.Public().(ed25519.PublicKey), roster[id-1]) {
		return nil, fmt.Errorf("he: identity key is not roster key %d", id)
	}
	return &Party{params: p, id: id, sign: identity, roster: slices.Clone(roster), decrypted: map[uint64]bool{}}, nil
}

// ID returns the party's id.
func (pt *Party) ID() int { return pt.id }

// MinContributors returns the fewest clients a sum must hold before this
// party helps decrypt it: before setup, its own floor; from Commit on, the
// group's, fixed at setup.
func (pt *Party) MinContributors() int { return pt.params.cfg.MinContributors }

// Params returns the party's parameters: from Commit on, with the group's
// MinContributors.
func (pt *Party) Params() *Params { return pt.params }

func (pt *Party) header() []byte { return groupHeader(pt.params) }

// groupHeader binds a signature to everything the parties must agree on:
// the preset, N, t, MaxAbsSum (the scale) and MaxDecryptions (the
// smudging). MinContributors is not in it: each party states its own in
// its advert, and the group's is the largest.
func groupHeader(p *Params) []byte {
	var b [28]byte
	b[0] = p.cfg.Preset.ID
	binary.LittleEndian.PutUint32(b[4:], uint32(p.cfg.Parties))
	binary.LittleEndian.PutUint32(b[8:], uint32(p.cfg.Threshold))
	binary.LittleEndian.PutUint64(b[12:], math.Float64bits(p.cfg.MaxAbsSum))
	binary.LittleEndian.PutUint64(b[20:], uint64(p.cfg.MaxDecryptions))
	return b[:]
}

// withFloor returns p with the group's MinContributors.
func withFloor(p *Params, floor int) *Params {
	q := *p
	q.cfg.MinContributors = floor
	return &q
}

// signed splits a signed message into its body, read from after the
// header, and its trailing Ed25519 signature.
func signed(p *Params, b []byte, kind byte, what string) (*reader, []byte, []byte, error) {
	if len(b) < 8+ed25519.SignatureSize {
		return nil, nil, nil, fmt.Errorf("%w: %s: %d bytes", ErrMalformed, what, len(b))
	}
	body, sig := b[:len(b)-ed25519.SignatureSize], b[len(b)-ed25519.SignatureSize:]
	return newReader(body, kind, p.cfg.Preset.ID, what), body, sig, nil
}

func signedBytes(domain string, parts ...[]byte) []byte {
	b := []byte(domain)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// Advert returns the party's first setup message: a fresh nonce for the
// common reference string, its HPKE public key and its MinContributors,
// signed.
func (pt *Party) Advert() []byte {
	pub := pt.kemKey.PublicKey().Bytes()
	w := newWriter(kindAdvert, pt.params.cfg.Preset.ID, 8+32+4+len(pub)+64)
	w.u32(uint32(pt.id))
	w.u32(uint32(pt.params.cfg.MinContributors))
	w.b = append(w.b, pt.nonce[:]...)
	w.bytes(pub)
	w.b = append(w.b, ed25519.Sign(pt.sign, signedBytes(domainAdvert, pt.header(), w.b[8:]))...)
	return w.b
}

type advert struct {
	party int
	floor int
	nonce []byte
	kem   hpke.PublicKey
	raw   []byte
}

// parseAdverts checks that adverts holds exactly one valid, signed advert
// from every party, in id order.
func parseAdverts(p *Params, roster []ed25519.PublicKey, adverts [][]byte) ([]advert, error) {
	if len(adverts) != p.cfg.Parties {
		return nil, fmt.Errorf("%w: %d adverts for %d parties (setup needs every party)", ErrProtocol, len(adverts), p.cfg.Parties)
	}
	hdr := groupHeader(p)
	out := make([]advert, len(adverts))
	for i, b := range adverts {
		r, body, sig, err := signed(p, b, kindAdvert, fmt.Sprintf("advert %d", i+1))
		if err != nil {
			return nil, err
		}
		id := int(r.u32("party"))
		floor := int(r.u32("minimum contributors"))
		nonce := r.take(32, "nonce")
		pub := r.bytes("HPKE key", hpkePublicKeySize)
		if err := r.done(); err != nil {
			return nil, err
		}
		if id != i+1 {
			return nil, fmt.Errorf("%w: advert %d is from party %d", ErrProtocol, i+1, id)
		}
		if !ed25519.Verify(roster[i], signedBytes(domainAdvert, hdr, body[8:]), sig) {
			return nil, fmt.Errorf("%w: advert %d: bad signature (or other group parameters)", ErrProtocol, id)
		}
		if floor < 2 || floor > p.cfg.Parties {
			return nil, fmt.Errorf("%w: advert %d: minimum contributors %d outside [2, %d]", ErrMalformed, id, floor, p.cfg.Parties)
		}
		k, err := kem.NewPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("%w: advert %d: HPKE key: %v", ErrMalformed, id, err)
		}
		out[i] = advert{party: id, floor: floor, nonce: nonce, kem: k, raw: b}
	}
	return out, nil
}

// crsFor derives the common reference string from every party's advert, so
// that no single party (and not the coordinator) chooses the public
// polynomial of the collective key. Every advert carries a fresh nonce, so
// the CRS also names this run of setup: every later setup message is bound
// to it.
func crsFor(p *Params, ads []advert) [32]byte {
	h := sha256.New()
	h.Write([]byte(domainCRS))
	h.Write(groupHeader(p))
	for _, a := range ads {
		h.Write(a.raw)
	}
	var c [32]byte
	h.Sum(c[:0])
	return c
}

func crp(p *Params, crs [32]byte) (mhe.PublicKeyGenProtocol, mhe.PublicKeyGenCRP) {
	prng, err := sampling.NewKeyedPRNG(crs[:])
	if err != nil {
		panic("he: internal error: " + err.Error())
	}
	ckg := mhe.NewPublicKeyGenProtocol(p.p)
	return ckg, ckg.SampleCRP(prng)
}

// Commit returns the party's second setup message, given every party's
// advert: a signed commitment to what it will reveal next — its share of
// the collective public key and the Shamir shares of its secret key, each
// sealed to its recipient. Committing before anything is revealed stops a
// party from choosing its public-key share after seeing the others' (the
// rogue-key attack on additive key generation; commit-then-reveal as in the
// distributed key generation of Gennaro, Jarecki, Krawczyk, Rabin,
// J. Cryptology 2007, §3). The group's MinContributors becomes the largest
// any advert states.
//
// The public-key share is Mouchet, Troncoso-Pastoriza, Bossuat, Hubaux,
// "Multiparty Homomorphic Encryption from Ring-Learning-with-Errors",
// PETS 2021, §4.2; the threshold sharing is Mouchet, Bertrand, Hubaux,
// "An Efficient Threshold Access-Structure for RLWE-Based Multiparty
// Homomorphic Encryption", ePrint 2022/780, as lattigo's mhe.Thresholdizer
// implements it.
func (pt *Party) Commit(adverts [][]byte) ([]byte, error) {
	if pt.step != stepNew {
		return nil, fmt.Errorf("%w: Commit called twice", ErrProtocol)
	}
	ads, err := parseAdverts(pt.params, pt.roster, adverts)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(ads[pt.id-1].nonce, pt.nonce[:]) {
		return nil, fmt.Errorf("%w: the advert listed for this party is not its own", ErrProtocol)
	}
	floor := 0
	for _, a := range ads {
		floor = max(floor, a.floor)
	}
	p := pt.params
	crs := crsFor(p, ads)
	ckg, c := crp(p, crs)
	share := ckg.AllocateShare()
	ckg.GenShare(pt.sk, c, &share)

	thr := mhe.NewThresholdizer(p.p)
	poly, err := thr.GenShamirPolynomial(p.cfg.Threshold, pt.sk)
	if err != nil {
		return nil, fmt.Errorf("he: internal error: %w", err)
	}
	defer func() {
		for _, c := range poly.Value {
			for _, row := range c.Q.Coeffs {
				clear(row)
			}
		}
	}()
	n := p.p.N()
	moduli := p.p.Q()
	w := newWriter(kindSetup, p.cfg.Preset.ID, n*len(moduli)*8*(1+p.cfg.Parties)+p.cfg.Parties*2400)
	w.u32(uint32(pt.id))
	w.poly(share.Value.Q)
	sh := thr.AllocateThresholdSecretShare()
	pw := &writer{}
	for j := 1; j <= p.cfg.Parties; j++ {
		thr.GenShamirSecretShare(mhe.ShamirPublicPoint(j), poly, &sh)
		if pt.deal != nil {
			pt.deal(j, &sh)
		}
		pw.b = pw.b[:0]
		pw.poly(sh.Poly.Q)
		sealed, err := hpke.Seal(ads[j-1].kem, kdf, aead, shareInfo(crs, pt.id, j), pw.b)
		if err != nil {
			clear(pw.b)
			return nil, fmt.Errorf("he: sealing share for party %d: %w", j, err)
		}
		w.bytes(sealed)
	}
	clear(pw.b)
	for _, row := range sh.Poly.Q.Coeffs {
		clear(row)
	}
	w.b = append(w.b, ed25519.Sign(pt.sign, signedBytes(domainSetup, groupHeader(p), crs[:], w.b[8:]))...)

	cw := newWriter(kindCommit, p.cfg.Preset.ID, 4+32+64)
	cw.u32(uint32(pt.id))
	d := commitment(crs, pt.id, w.b)
	cw.b = append(cw.b, d[:]...)
	cw.b = append(cw.b, ed25519.Sign(pt.sign, signedBytes(domainCommit, groupHeader(p), crs[:], cw.b[8:]))...)

	pt.crs, pt.ads, pt.reveal = crs, ads, w.b
	pt.params = withFloor(p, floor)
	pt.step = stepCommitted
	return cw.b, nil
}

// commitment is the digest a party commits to: SHA-256 over the domain,
// the CRS (which names this run of setup), the party's id and its whole
// signed reveal. The reveal holds fresh HPKE encapsulations, so the digest
// hides the public-key share until it is revealed.
func commitment(crs [32]byte, party int, reveal []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(domainCommitted))
	h.Write(crs[:])
	h.Write(binary.LittleEndian.AppendUint32(nil, uint32(party)))
	h.Write(reveal)
	var d [32]byte
	h.Sum(d[:0])
	return d
}

func shareInfo(crs [32]byte, from, to int) []byte {
	b := append([]byte(domainShare), crs[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(from))
	return binary.LittleEndian.AppendUint32(b, uint32(to))
}

// parseCommitments checks that msgs holds one signed commitment from every
// party, in id order, for this CRS.
func parseCommitments(p *Params, roster []ed25519.PublicKey, crs [32]byte, msgs [][]byte) ([][32]byte, error) {
	if len(msgs) != p.cfg.Parties {
		return nil, fmt.Errorf("%w: %d commitments for %d parties (every party must commit before any reveals)", ErrProtocol, len(msgs), p.cfg.Parties)
	}
	hdr := groupHeader(p)
	out := make([][32]byte, len(msgs))
	for i, b := range msgs {
		r, body, sig, err := signed(p, b, kindCommit, fmt.Sprintf("commitment %d", i+1))
		if err != nil {
			return nil, err
		}
		id := int(r.u32("party"))
		d := r.take(32, "digest")
		if err := r.done(); err != nil {
			return nil, err
		}
		if id != i+1 {
			return nil, fmt.Errorf("%w: commitment %d is from party %d", ErrProtocol, i+1, id)
		}
		if !ed25519.Verify(roster[i], signedBytes(domainCommit, hdr, crs[:], body[8:]), sig) {
			return nil, fmt.Errorf("%w: commitment %d: bad signature (or another advert set)", ErrProtocol, id)
		}
		copy(out[i][:], d)
	}
	return out, nil
}

// Reveal returns the party's third setup message, its reveal, once it holds
// a signed commitment from every party for this run of setup, its own
// among them. The coordinator relays every message, so a party checks for
// itself that all N commitments are in before revealing anything: a reveal
// sent earlier would let the last party to commit choose its share.
func (pt *Party) Reveal(commitments [][]byte) ([]byte, error) {
	if pt.step != stepCommitted {
		return nil, fmt.Errorf("%w: Reveal out of order", ErrProtocol)
	}
	cs, err := parseCommitments(pt.params, pt.roster, pt.crs, commitments)
	if err != nil {
		return nil, err
	}
	own := commitment(pt.crs, pt.id, pt.reveal)
	if subtle.ConstantTimeCompare(cs[pt.id-1][:], own[:]) != 1 {
		return nil, fmt.Errorf("%w: the commitment listed for this party is not its own", ErrProtocol)
	}
	pt.commits = cs
	pt.step = stepRevealed
	return slices.Clone(pt.reveal), nil
}

type reveal struct {
	party  int
	pk     ring.Poly
	sealed [][]byte // by recipient index
}

// parseReveals checks every reveal against its party's commitment and
// signature. A reveal that does not match its party's signed commitment,
// or that the party signed although it is malformed, is that party's
// fault: the error is a *SetupError naming it. A bad signature is not
// blamed on anyone (the relay could have altered the message).
func parseReveals(p *Params, roster []ed25519.PublicKey, crs [32]byte, commits [][32]byte, msgs [][]byte) ([]reveal, error) {
	if len(msgs) != p.cfg.Parties {
		return nil, fmt.Errorf("%w: %d reveals for %d parties (setup needs every party)", ErrProtocol, len(msgs), p.cfg.Parties)
	}
	n := p.p.N()
	moduli := p.p.Q()
	shareLen := n*len(moduli)*8 + 2*1120 // sealed share: plaintext + encapsulation + tag, generously
	hdr := groupHeader(p)
	out := make([]reveal, len(msgs))
	bad := faults{}
	for i, b := range msgs {
		what := fmt.Sprintf("reveal %d", i+1)
		r, body, sig, err := signed(p, b, kindSetup, what)
		if err != nil {
			return nil, err
		}
		if !ed25519.Verify(roster[i], signedBytes(domainSetup, hdr, crs[:], body[8:]), sig) {
			return nil, fmt.Errorf("%w: %s: bad signature (or another advert set)", ErrProtocol, what)
		}
		// Signed by party i+1: from here on, what is wrong is its doing.
		if d := commitment(crs, i+1, b); subtle.ConstantTimeCompare(d[:], commits[i][:]) != 1 {
			bad[i+1] = fmt.Errorf("%w: party %d's signed reveal does not match its signed commitment", ErrProtocol, i+1)
			continue
		}
		id := int(r.u32("party"))
		pk := r.poly(n, moduli, "public-key share")
		sealed := make([][]byte, p.cfg.Parties)
		for j := range sealed {
			sealed[j] = r.bytes(fmt.Sprintf("share for party %d", j+1), shareLen)
		}
		if err := r.done(); err != nil {
			bad[i+1] = err
			continue
		}
		if id != i+1 {
			bad[i+1] = fmt.Errorf("%w: reveal %d names party %d", ErrProtocol, i+1, id)
			continue
		}
		out[i] = reveal{party: id, pk: pk, sealed: sealed}
	}
	if err := bad.err(); err != nil {
		return nil, err
	}
	return out, nil
}

// CheckReveals lets the party that relays setup (the coordinator) find out
// who broke it: given the adverts, commitments and reveals it relayed, it
// returns nil if every reveal matches its party's signed commitment, a
// *SetupError naming the parties whose signed reveals do not, or another
// error (ErrProtocol, ErrMalformed) for messages no party can be blamed
// for. It needs no secret.
func CheckReveals(p *Params, roster []ed25519.PublicKey, adverts, commitments, reveals [][]byte) error {
	if len(roster) != p.cfg.Parties {
		return fmt.Errorf("he: roster has %d keys for %d parties", len(roster), p.cfg.Parties)
	}
	ads, err := parseAdverts(p, roster, adverts)
	if err != nil {
		return err
	}
	crs := crsFor(p, ads)
	cs, err := parseCommitments(p, roster, crs, commitments)
	if err != nil {
		return err
	}
	_, err = parseReveals(p, roster, crs, cs, reveals)
	return err
}

// collectiveKey sums the public-key shares (Mouchet et al., PETS 2021,
// §4.2).
func collectiveKey(p *Params, crs [32]byte, msgs []reveal) *rlwe.PublicKey {
	ckg, c := crp(p, crs)
	agg := ckg.AllocateShare()
	for i, m := range msgs {
		sh := ckg.AllocateShare()
		sh.Value.Q.Copy(m.pk)
		if i == 0 {
			agg = sh
			continue
		}
		ckg.AggregateShares(agg, sh, &agg)
	}
	pk := rlwe.NewPublicKey(p.p)
	ckg.GenPublicKey(agg, c, pk)
	return pk
}

// transcriptHash binds the whole setup: the group's parameters, its
// MinContributors, the CRS (every advert) and every party's commitment
// (hence every reveal).
func transcriptHash(p *Params, crs [32]byte, commits [][32]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(domainTranscript))
	h.Write(groupHeader(p))
	h.Write(binary.LittleEndian.AppendUint32(nil, uint32(p.cfg.MinContributors)))
	h.Write(crs[:])
	for _, c := range commits {
		h.Write(c[:])
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// Finish checks every reveal against its commitment, computes the
// collective public key itself (a client never takes it from the
// coordinator), opens the Shamir shares addressed to it and keeps their
// sum as its threshold key share; its own key share is then erased. It
// returns the party's fourth setup message: its shares of the key
// confirmation (see Confirm). A reveal that does not match its commitment
// gives a *SetupError naming its party.
func (pt *Party) Finish(reveals [][]byte) ([]byte, error) {
	if pt.step != stepRevealed {
		return nil, fmt.Errorf("%w: Finish out of order", ErrProtocol)
	}
	p := pt.params
	msgs, err := parseReveals(p, pt.roster, pt.crs, pt.commits, reveals)
	if err != nil {
		return nil, err
	}
	thr := mhe.NewThresholdizer(p.p)
	total := thr.AllocateThresholdSecretShare()
	sh := thr.AllocateThresholdSecretShare()
	n := p.p.N()
	bad := faults{}
	for _, m := range msgs {
		plain, err := hpke.Open(pt.kemKey, kdf, aead, shareInfo(pt.crs, m.party, pt.id), m.sealed[pt.id-1])
		if err != nil {
			bad[m.party] = fmt.Errorf("%w: party %d's Shamir share for party %d does not open: %v", ErrProtocol, m.party, pt.id, err)
			continue
		}
		r := &reader{b: plain, what: fmt.Sprintf("Shamir share from party %d", m.party)}
		poly := r.poly(n, p.p.Q(), "share")
		err = r.done()
		clear(plain)
		if err != nil {
			bad[m.party] = err
			continue
		}
		sh.Poly.Q.Copy(poly)
		for _, row := range poly.Coeffs {
			clear(row)
		}
		if err := thr.AggregateShares(total, sh, &total); err != nil {
			return nil, fmt.Errorf("he: internal error: %w", err)
		}
	}
	for _, row := range sh.Poly.Q.Coeffs {
		clear(row)
	}
	if err := bad.err(); err != nil {
		return nil, err
	}
	pt.cpk = collectiveKey(p, pt.crs, msgs)
	pt.threshold = &total
	for _, row := range pt.sk.Value.Q.Coeffs {
		clear(row)
	}
	pt.sk = nil
	pt.transcript = transcriptHash(p, pt.crs, pt.commits)
	pt.confirm = newConfirmation(p, pt.cpk, pt.transcript)
	out, err := pt.confirm.shares(pt)
	if err != nil {
		return nil, err
	}
	pt.step = stepFinished
	return out, nil
}

// Confirm ends setup with key confirmation: every party's Finish message
// must be signed over this party's own transcript hash (so all N saw the
// same setup), the key-confirmation vector must decrypt under the first t
// parties' threshold shares to its known value (so their shares combine to
// the secret of the collective public key), and every party's share must
// pass the parity check (so all N threshold shares lie on one polynomial of
// degree t−1: any t of them decrypt alike). A party that dealt inconsistent
// Shamir shares is caught here, at setup, rather than in a training round;
// the error wraps ErrKeyConfirmation and the key must not be used.
func (pt *Party) Confirm(finishes [][]byte) error {
	if pt.step != stepFinished {
		return fmt.Errorf("%w: Confirm out of order", ErrProtocol)
	}
	if err := pt.confirm.check(pt.params, pt.roster, finishes); err != nil {
		return err
	}
	pt.confirm = nil
	pt.ads = nil
	pt.reveal = nil
	pt.step = stepReady
	return nil
}

// SetupLocal runs the whole key ceremony for parties that live in one
// process (simulations, tests and benchmarks): identities[i] is party
// i+1's identity key, p every party's parameters. A deployment runs
// Advert, Commit, Reveal, Finish and Confirm at each party instead, with
// the coordinator relaying each step's messages to every party.
func SetupLocal(p *Params, identities []ed25519.PrivateKey) ([]*Party, error) {
	n := len(identities)
	roster := make([]ed25519.PublicKey, n)
	for i, k := range identities {
		if len(k) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("he: identity %d has %d bytes", i+1, len(k))
		}
		roster[i] = k.Public().(ed25519.PublicKey)
	}
	parties := make([]*Party, n)
	msgs := make([][]byte, n)
	for i := range parties {
		pt, err := NewParty(p, i+1, identities[i], roster)
		if err != nil {
			return nil, err
		}
		parties[i] = pt
		msgs[i] = pt.Advert()
	}
	steps := []func(*Party, [][]byte) ([]byte, error){(*Party).Commit, (*Party).Reveal, (*Party).Finish}
	for _, f := range steps {
		next := make([][]byte, n)
		for i, pt := range parties {
			var err error
			if next[i], err = f(pt, msgs); err != nil {
				return nil, fmt.Errorf("he: party %d: %w", i+1, err)
			}
		}
		msgs = next
	}
	for i, pt := range parties {
		if err := pt.Confirm(msgs); err != nil {
			return nil, fmt.Errorf("he: party %d: %w", i+1, err)
		}
	}
	return parties, nil
}

// Noise adds a client's share of differential-privacy noise to its update
// before encryption. See DPNoise; NoNoise is for tests and benchmarks.
type Noise interface {
	AddNoise(values []float64) error
}

// ContextSize is the size of a round's context (see Encrypt).
const ContextSize = 32

// Encrypt encodes and encrypts a client's update for a round under the
// collective key, after adding noise (which must not be nil: a client that
// means to add none says so with NoNoise). The result is a signed
// submission: the ciphertexts and the client's signature over the round,
// the round's context, its id and the ciphertexts, which every decryptor
// checks.
//
// context names the terms under which the client made its update — for
// fl-secure, a digest of everything the round announced: the model, the
// noise each client adds, the clip, the grid, the floors, the members.
// Every decryptor holds the context of the round itself and helps decrypt
// only a sum whose submissions all carry it (DecryptShare), so a
// coordinator that shows clients different terms in one round (a large
// noise share to one, charged for as if every client added it, small ones
// to the others) gets nothing decrypted.
func (pt *Party) Encrypt(round uint64, context [ContextSize]byte, values []float64, noise Noise) ([]byte, error) {
	if pt.step != stepReady {
		return nil, fmt.Errorf("%w: Encrypt before setup finished", ErrProtocol)
	}
	if noise == nil {
		return nil, errors.New("he: no DP noise given: pass the client's share of the distributed noise (he.DPNoise), or he.NoNoise to send the update without it")
	}
	if len(values) == 0 || len(values) > maxValues {
		return nil, fmt.Errorf("he: update has %d values, want 1 to 2^26", len(values))
	}
	v := slices.Clone(values)
	if err := noise.AddNoise(v); err != nil {
		return nil, fmt.Errorf("he: adding noise: %w", err)
	}
	limit := pt.params.cfg.MaxAbsSum
	for i, x := range v {
		if math.IsNaN(x) || math.Abs(x) > limit {
			return nil, fmt.Errorf("he: value %d is NaN or beyond the configured MaxAbsSum %g", i, limit)
		}
	}
	p := pt.params
	n := p.p.N()
	vpc := p.ValuesPerCiphertext()
	k := (len(v) + vpc - 1) / vpc
	ecd := hefloat.NewEncoder(p.p)
	enc := rlwe.NewEncryptor(p.p, pt.cpk)
	level := p.p.MaxLevel()
	w := newWriter(kindSubmission, p.cfg.Preset.ID, 24+ContextSize+k*p.CiphertextBytes()+64)
	w.u64(round)
	w.b = append(w.b, context[:]...)
	w.u32(uint32(pt.id))
	w.u32(uint32(len(v)))
	w.u32(uint32(k))
	buf := make([]float64, n)
	pt0 := hefloat.NewPlaintext(p.p, level)
	ct := rlwe.NewCiphertext(p.p, 1, level)
	for c := 0; c < k; c++ {
		clear(buf) // the guard coefficients stay zero
		copy(buf, v[c*vpc:min((c+1)*vpc, len(v))])
		pt0.IsBatched = false
		pt0.Scale = rlwe.NewScale(math.Exp2(float64(p.logS)))
		if err := ecd.Encode(buf, pt0); err != nil {
			return nil, fmt.Errorf("he: internal error: encoding: %w", err)
		}
		if err := enc.Encrypt(pt0, ct); err != nil {
			return nil, fmt.Errorf("he: internal error: encrypting: %w", err)
		}
		w.poly(ct.Value[0])
		w.poly(ct.Value[1])
	}
	clear(buf)
	clear(v)
	sig := ed25519.Sign(pt.sign, submissionDigest(pt.crs, w.b[8:]))
	w.b = append(w.b, sig...)
	return w.b, nil
}

func submissionDigest(crs [32]byte, body []byte) []byte {
	h := sha256.New()
	h.Write([]byte(domainSubmit))
	h.Write(crs[:])
	h.Write(body)
	return h.Sum(nil)
}

// CRS returns the group's common reference string (available after
// Commit), which the coordinator needs to check submissions.
func (pt *Party) CRS() [32]byte { return pt.crs }

// Transcript returns the hash of the whole setup transcript (available
// after Finish): parties that finished setup together hold the same one,
// which a relay can compare.
func (pt *Party) Transcript() [32]byte { return pt.transcript }

// MarshalState returns the party's state after setup: its threshold key
// share (secret: store it encrypted at rest), the collective public key,
// the CRS, the group's MinContributors, every party's setup commitment and
// the transcript hash over them, and its record of decrypted rounds and
// ciphertexts, which must survive restarts for the one-decryption-per-round
// rule to hold. Save it after Confirm and after every DecryptShare, before
// sending the share.
func (pt *Party) MarshalState() ([]byte, error) {
	if pt.step != stepReady {
		return nil, fmt.Errorf("%w: no state before setup finished", ErrProtocol)
	}
	p := pt.params
	rounds := make([]uint64, 0, len(pt.decrypted))
	for r := range pt.decrypted {
		rounds = append(rounds, r)
	}
	slices.Sort(rounds)
	w := newWriter(kindState, p.cfg.Preset.ID, 3*p.CiphertextBytes()/2+128+32*len(pt.commits)+8*len(rounds))
	w.u32(uint32(pt.id))
	w.b = append(w.b, groupHeader(p)...)
	w.u32(uint32(p.cfg.MinContributors))
	w.b = append(w.b, pt.crs[:]...)
	w.b = append(w.b, pt.transcript[:]...)
	for _, c := range pt.commits {
		w.b = append(w.b, c[:]...)
	}
	w.poly(pt.cpk.Value[0].Q)
	w.poly(pt.cpk.Value[1].Q)
	w.poly(pt.threshold.Poly.Q)
	w.u64(uint64(pt.decCount))
	w.u32(uint32(len(rounds)))
	for _, r := range rounds {
		w.u64(r)
	}
	return w.b, nil
}

// RestoreParty rebuilds a party from MarshalState's output. The state must
// be for p's preset, N, MaxAbsSum and MaxDecryptions. The threshold t and
// the group's MinContributors are the ones fixed at setup and kept in the
// state (Params reports them): p's MinContributors is ignored, so no
// restore can lower it, and p's Threshold is the least t the caller
// accepts — for c colluders, MinThreshold(N, c) — so a key made for fewer
// colluders than the caller now assumes is refused rather than used.
func RestoreParty(p *Params, identity ed25519.PrivateKey, roster []ed25519.PublicKey, state []byte) (*Party, error) {
	r := newReader(state, kindState, p.cfg.Preset.ID, "party state")
	id := int(r.u32("party"))
	th := 0
	if h := r.take(28, "group parameters"); r.err == nil {
		// Everything in the group header but t must be p's.
		want := groupHeader(p)
		th = int(binary.LittleEndian.Uint32(h[8:12]))
		if !bytes.Equal(h[:8], want[:8]) || !bytes.Equal(h[12:], want[12:]) {
			r.fail("state is for other group parameters (N, MaxAbsSum or MaxDecryptions) than these (%d parties)", p.cfg.Parties)
		} else if th <= p.cfg.Parties/2 || th > p.cfg.Parties {
			r.fail("threshold %d outside (%d, %d]", th, p.cfg.Parties/2, p.cfg.Parties)
		}
	}
	floor := int(r.u32("minimum contributors"))
	if r.err == nil && (floor < 2 || floor > p.cfg.Parties) {
		r.fail("minimum contributors %d outside [2, %d]", floor, p.cfg.Parties)
	}
	crs := r.take(32, "CRS")
	transcript := r.take(32, "transcript hash")
	commits := make([][32]byte, p.cfg.Parties)
	for i := range commits {
		copy(commits[i][:], r.take(32, "commitment"))
	}
	n := p.p.N()
	pk0 := r.poly(n, p.p.Q(), "public key")
	pk1 := r.poly(n, p.p.Q(), "public key")
	share := r.poly(n, p.p.Q(), "threshold share")
	count := r.u64("decryption count")
	nr := int(r.u32("round count"))
	if r.err == nil && (nr < 0 || nr > len(r.b)/8) {
		r.fail("%d rounds in %d bytes", nr, len(r.b))
	}
	rounds := make([]uint64, 0, max(nr, 0))
	for i := 0; i < nr && r.err == nil; i++ {
		rd := r.u64("round")
		if i > 0 && rd <= rounds[i-1] {
			r.fail("rounds out of order")
		}
		rounds = append(rounds, rd)
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	if th < p.cfg.Threshold {
		return nil, fmt.Errorf("he: party state: the key was made with threshold %d of %d, below the %d these parameters need (more colluders assumed than at setup); run setup again", th, p.cfg.Parties, p.cfg.Threshold)
	}
	gcfg := p.cfg
	gcfg.Threshold, gcfg.MinContributors = th, floor
	gp, err := NewParams(gcfg)
	if err != nil {
		return nil, fmt.Errorf("%w: party state: %v", ErrMalformed, err)
	}
	var c [32]byte
	copy(c[:], crs)
	if t := transcriptHash(gp, c, commits); !bytes.Equal(t[:], transcript) {
		return nil, fmt.Errorf("%w: party state: the transcript hash does not match its commitments and minimum contributors", ErrMalformed)
	}
	if count > uint64(p.cfg.MaxDecryptions) {
		return nil, fmt.Errorf("%w: party state: %d decryptions, above the budget %d", ErrMalformed, count, p.cfg.MaxDecryptions)
	}
	pt, err := newParty(gp, id, identity, roster)
	if err != nil {
		return nil, err
	}
	pt.crs = c
	copy(pt.transcript[:], transcript)
	pt.commits = commits
	pt.cpk = rlwe.NewPublicKey(p.p)
	pt.cpk.Value[0].Q.Copy(pk0)
	pt.cpk.Value[1].Q.Copy(pk1)
	thr := mhe.NewThresholdizer(p.p).AllocateThresholdSecretShare()
	thr.Poly.Q.Copy(share)
	for _, row := range share.Coeffs {
		clear(row)
	}
	pt.threshold = &thr
	pt.decCount = int(count)
	for _, rd := range rounds {
		pt.decrypted[rd] = true
	}
	pt.step = stepReady
	return pt, nil
}
