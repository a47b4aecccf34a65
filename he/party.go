package he

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"
)

// Domain separation for everything this package hashes or signs.
const (
	domainAdvert = "fl-secure/he/v1 advert\x00"
	domainCRS    = "fl-secure/he/v1 crs\x00"
	domainSetup  = "fl-secure/he/v1 setup\x00"
	domainShare  = "fl-secure/he/v1 shamir share\x00"
	domainSubmit = "fl-secure/he/v1 submission\x00"
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
// round, a sum of too few clients, a request naming the wrong parties. A
// refusal reveals nothing.
var ErrRefused = errors.New("he: decryption refused")

// ErrProtocol is wrapped when a message is well formed but wrong: a bad
// signature, a party out of range, a message for another group or round.
var ErrProtocol = errors.New("he: protocol violation")

// A Party is one key holder: a hospital that encrypts its updates under
// the collective key and helps decrypt sums. It is not safe for concurrent
// use.
type Party struct {
	params *Params
	id     int
	sign   ed25519.PrivateKey
	roster []ed25519.PublicKey

	kemKey hpke.PrivateKey
	nonce  [32]byte
	sk     *rlwe.SecretKey // this party's key share; cleared after setup

	crs       [32]byte
	adverts   [][]byte // by party index, kept to verify setup messages
	cpk       *rlwe.PublicKey
	threshold *mhe.ShamirSecretShare

	decrypted map[uint64]bool
	decCount  int
}

// NewParty returns party id (1..N) of the group, holding its Ed25519
// identity key; roster lists every party's public identity key in id order.
func NewParty(p *Params, id int, identity ed25519.PrivateKey, roster []ed25519.PublicKey) (*Party, error) {
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
	k, err := kem.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("he: generating HPKE key: %w", err)
	}
	pt := &Party{params: p, id: id, sign: identity, roster: slices.Clone(roster), kemKey: k, decrypted: map[uint64]bool{}}
	if _, err := rand.Read(pt.nonce[:]); err != nil {
		return nil, err
	}
	// rlwe's key generator samples from a blake2b XOF keyed with 64 bytes of
	// crypto/rand.
	pt.sk = rlwe.NewKeyGenerator(p.p).GenSecretKeyNew()
	return pt, nil
}

// ID returns the party's id.
func (pt *Party) ID() int { return pt.id }

func (pt *Party) header() []byte { return groupHeader(pt.params) }

// groupHeader binds a signature to the preset, N and t.
func groupHeader(p *Params) []byte {
	var b [12]byte
	b[0] = p.cfg.Preset.ID
	binary.LittleEndian.PutUint32(b[4:], uint32(p.cfg.Parties))
	binary.LittleEndian.PutUint32(b[8:], uint32(p.cfg.Threshold))
	return b[:]
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

// Advert returns the party's first setup message: a fresh nonce for the
// common reference string and its HPKE public key, signed.
func (pt *Party) Advert() []byte {
	pub := pt.kemKey.PublicKey().Bytes()
	w := newWriter(kindAdvert, pt.params.cfg.Preset.ID, 4+32+4+len(pub)+64)
	w.u32(uint32(pt.id))
	w.b = append(w.b, pt.nonce[:]...)
	w.bytes(pub)
	sig := ed25519.Sign(pt.sign, append([]byte(domainAdvert+string(pt.header())), w.b[8:]...))
	w.b = append(w.b, sig...)
	return w.b
}

type advert struct {
	party int
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
		nonce := r.take(32, "nonce")
		pub := r.bytes("HPKE key", hpkePublicKeySize)
		if err := r.done(); err != nil {
			return nil, err
		}
		if id != i+1 {
			return nil, fmt.Errorf("%w: advert %d is from party %d", ErrProtocol, i+1, id)
		}
		if !ed25519.Verify(roster[i], append([]byte(domainAdvert+string(hdr)), body[8:]...), sig) {
			return nil, fmt.Errorf("%w: advert %d: bad signature", ErrProtocol, id)
		}
		k, err := kem.NewPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("%w: advert %d: HPKE key: %v", ErrMalformed, id, err)
		}
		out[i] = advert{party: id, nonce: nonce, kem: k, raw: b}
	}
	return out, nil
}

// crsFor derives the common reference string from every party's advert, so
// that no single party (and not the coordinator) chooses the public
// polynomial of the collective key.
func crsFor(p *Params, ads []advert) [32]byte {
	h := sha256.New()
	h.Write([]byte(domainCRS))
	h.Write([]byte{p.cfg.Preset.ID})
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

// Setup returns the party's second setup message, given every party's
// advert: its share of the collective public key, and a Shamir share of its
// secret key for every other party, sealed to that party's HPKE key. The
// threshold sharing is Mouchet et al., "An Efficient Threshold
// Access-Structure for RLWE-Based Multiparty Homomorphic Encryption"
// (ePrint 2022/780), as implemented by lattigo's mhe.Thresholdizer.
func (pt *Party) Setup(adverts [][]byte) ([]byte, error) {
	if pt.sk == nil {
		return nil, fmt.Errorf("%w: setup already done", ErrProtocol)
	}
	ads, err := parseAdverts(pt.params, pt.roster, adverts)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(ads[pt.id-1].nonce, pt.nonce[:]) {
		return nil, fmt.Errorf("%w: the advert listed for this party is not its own", ErrProtocol)
	}
	pt.crs = crsFor(pt.params, ads)
	pt.adverts = adverts
	ckg, c := crp(pt.params, pt.crs)
	share := ckg.AllocateShare()
	ckg.GenShare(pt.sk, c, &share)

	thr := mhe.NewThresholdizer(pt.params.p)
	poly, err := thr.GenShamirPolynomial(pt.params.cfg.Threshold, pt.sk)
	if err != nil {
		return nil, fmt.Errorf("he: internal error: %w", err)
	}
	n := pt.params.p.N()
	moduli := pt.params.p.Q()
	w := newWriter(kindSetup, pt.params.cfg.Preset.ID, n*len(moduli)*8*(1+pt.params.cfg.Parties))
	w.u32(uint32(pt.id))
	w.poly(share.Value.Q)
	for j := 1; j <= pt.params.cfg.Parties; j++ {
		sh := thr.AllocateThresholdSecretShare()
		thr.GenShamirSecretShare(mhe.ShamirPublicPoint(j), poly, &sh)
		pw := &writer{}
		pw.poly(sh.Poly.Q)
		sealed, err := hpke.Seal(ads[j-1].kem, kdf, aead, shareInfo(pt.crs, pt.id, j), pw.b)
		clear(pw.b)
		if err != nil {
			return nil, fmt.Errorf("he: sealing share for party %d: %w", j, err)
		}
		w.bytes(sealed)
	}
	sig := ed25519.Sign(pt.sign, append([]byte(domainSetup), append(pt.crs[:], w.b[8:]...)...))
	w.b = append(w.b, sig...)
	return w.b, nil
}

func shareInfo(crs [32]byte, from, to int) []byte {
	b := append([]byte(domainShare), crs[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(from))
	return binary.LittleEndian.AppendUint32(b, uint32(to))
}

type setupMsg struct {
	party  int
	pk     ring.Poly
	sealed [][]byte // by recipient index
}

func parseSetup(p *Params, roster []ed25519.PublicKey, crs [32]byte, msgs [][]byte) ([]setupMsg, error) {
	if len(msgs) != p.cfg.Parties {
		return nil, fmt.Errorf("%w: %d setup messages for %d parties (setup needs every party)", ErrProtocol, len(msgs), p.cfg.Parties)
	}
	n := p.p.N()
	moduli := p.p.Q()
	shareLen := n*len(moduli)*8 + 2*1120 // sealed share: plaintext + encapsulation + tag, generously
	out := make([]setupMsg, len(msgs))
	for i, b := range msgs {
		r, body, sig, err := signed(p, b, kindSetup, fmt.Sprintf("setup message %d", i+1))
		if err != nil {
			return nil, err
		}
		id := int(r.u32("party"))
		pk := r.poly(n, moduli, "public-key share")
		sealed := make([][]byte, p.cfg.Parties)
		for j := range sealed {
			sealed[j] = r.bytes(fmt.Sprintf("share for party %d", j+1), shareLen)
		}
		if err := r.done(); err != nil {
			return nil, err
		}
		if id != i+1 {
			return nil, fmt.Errorf("%w: setup message %d is from party %d", ErrProtocol, i+1, id)
		}
		if !ed25519.Verify(roster[i], append([]byte(domainSetup), append(crs[:], body[8:]...)...), sig) {
			return nil, fmt.Errorf("%w: setup message %d: bad signature (or another advert set)", ErrProtocol, id)
		}
		out[i] = setupMsg{party: id, pk: pk, sealed: sealed}
	}
	return out, nil
}

// collectiveKey sums the public-key shares (Mouchet et al., "Multiparty
// Homomorphic Encryption from Ring-Learning-with-Errors", PETS 2021, §4.2).
func collectiveKey(p *Params, crs [32]byte, msgs []setupMsg) *rlwe.PublicKey {
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

// Finish completes setup from every party's setup message: it computes the
// collective public key itself (clients never take it from the
// coordinator), opens the Shamir shares addressed to it, and keeps their
// sum as its threshold key share. Its own key share is then cleared.
func (pt *Party) Finish(setup [][]byte) error {
	if pt.adverts == nil {
		return fmt.Errorf("%w: Finish before Setup", ErrProtocol)
	}
	if pt.threshold != nil {
		return fmt.Errorf("%w: setup already finished", ErrProtocol)
	}
	msgs, err := parseSetup(pt.params, pt.roster, pt.crs, setup)
	if err != nil {
		return err
	}
	thr := mhe.NewThresholdizer(pt.params.p)
	total := thr.AllocateThresholdSecretShare()
	n := pt.params.p.N()
	for _, m := range msgs {
		plain, err := hpke.Open(pt.kemKey, kdf, aead, shareInfo(pt.crs, m.party, pt.id), m.sealed[pt.id-1])
		if err != nil {
			return fmt.Errorf("%w: share from party %d does not open: %v", ErrProtocol, m.party, err)
		}
		r := &reader{b: plain, what: fmt.Sprintf("share from party %d", m.party)}
		poly := r.poly(n, pt.params.p.Q(), "share")
		clear(plain)
		if err := r.done(); err != nil {
			return err
		}
		sh := thr.AllocateThresholdSecretShare()
		sh.Poly.Q.Copy(poly)
		if err := thr.AggregateShares(total, sh, &total); err != nil {
			return fmt.Errorf("he: internal error: %w", err)
		}
	}
	pt.cpk = collectiveKey(pt.params, pt.crs, msgs)
	pt.threshold = &total
	for _, row := range pt.sk.Value.Q.Coeffs {
		clear(row)
	}
	pt.sk = nil
	return nil
}

// Noise adds a client's share of differential-privacy noise to its update
// before encryption. See DPNoise; NoNoise is for tests and benchmarks.
type Noise interface {
	AddNoise(values []float64) error
}

// Encrypt encodes and encrypts a client's update for a round under the
// collective key, after adding noise (which must not be nil: a client that
// means to add none says so with NoNoise). The result is a signed
// submission: the ciphertexts and the client's signature over the round,
// its id and their hash, which every decryptor checks.
func (pt *Party) Encrypt(round uint64, values []float64, noise Noise) ([]byte, error) {
	if pt.cpk == nil {
		return nil, fmt.Errorf("%w: Encrypt before setup finished", ErrProtocol)
	}
	if noise == nil {
		return nil, errors.New("he: no DP noise given: pass the client's share of the distributed noise (he.DPNoise), or he.NoNoise to send the update without it")
	}
	if len(values) == 0 || len(values) > 1<<26 {
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
	k := (len(v) + n - 1) / n
	ecd := hefloat.NewEncoder(p.p)
	enc := rlwe.NewEncryptor(p.p, pt.cpk)
	level := p.p.MaxLevel()
	w := newWriter(kindSubmission, p.cfg.Preset.ID, 24+k*p.CiphertextBytes()+64)
	w.u64(round)
	w.u32(uint32(pt.id))
	w.u32(uint32(len(v)))
	w.u32(uint32(k))
	buf := make([]float64, n)
	pt0 := hefloat.NewPlaintext(p.p, level)
	ct := rlwe.NewCiphertext(p.p, 1, level)
	for c := 0; c < k; c++ {
		clear(buf)
		copy(buf, v[c*n:min((c+1)*n, len(v))])
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

// CRS returns the group's common reference string (available after Setup),
// which the coordinator needs to check submissions.
func (pt *Party) CRS() [32]byte { return pt.crs }

// kindState marks a party's saved state.
const kindState = 6

// MarshalState returns the party's state after setup: its threshold key
// share (secret: store it encrypted at rest), the collective public key,
// the CRS, and its record of decrypted rounds and ciphertexts, which must
// survive restarts for the one-decryption-per-round rule to hold. Save it
// after Finish and after every DecryptShare, before sending the share.
func (pt *Party) MarshalState() ([]byte, error) {
	if pt.threshold == nil {
		return nil, fmt.Errorf("%w: no state before setup finished", ErrProtocol)
	}
	p := pt.params
	rounds := make([]uint64, 0, len(pt.decrypted))
	for r := range pt.decrypted {
		rounds = append(rounds, r)
	}
	slices.Sort(rounds)
	w := newWriter(kindState, p.cfg.Preset.ID, 3*p.CiphertextBytes()/2+64+8*len(rounds))
	w.u32(uint32(pt.id))
	w.u32(uint32(p.cfg.Parties))
	w.u32(uint32(p.cfg.Threshold))
	w.b = append(w.b, pt.crs[:]...)
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

// RestoreParty rebuilds a party from MarshalState's output.
func RestoreParty(p *Params, identity ed25519.PrivateKey, roster []ed25519.PublicKey, state []byte) (*Party, error) {
	r := newReader(state, kindState, p.cfg.Preset.ID, "party state")
	id := int(r.u32("party"))
	if n, t := int(r.u32("parties")), int(r.u32("threshold")); r.err == nil && (n != p.cfg.Parties || t != p.cfg.Threshold) {
		r.fail("state is for %d-of-%d, parameters are %d-of-%d", t, n, p.cfg.Threshold, p.cfg.Parties)
	}
	crs := r.take(32, "CRS")
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
		rounds = append(rounds, r.u64("round"))
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	if count > uint64(p.cfg.MaxDecryptions) {
		return nil, fmt.Errorf("%w: party state: %d decryptions, above the budget %d", ErrMalformed, count, p.cfg.MaxDecryptions)
	}
	pt, err := NewParty(p, id, identity, roster)
	if err != nil {
		return nil, err
	}
	for _, row := range pt.sk.Value.Q.Coeffs {
		clear(row)
	}
	pt.sk = nil
	copy(pt.crs[:], crs)
	pt.cpk = rlwe.NewPublicKey(p.p)
	pt.cpk.Value[0].Q.Copy(pk0)
	pt.cpk.Value[1].Q.Copy(pk1)
	thr := mhe.NewThresholdizer(p.p).AllocateThresholdSecretShare()
	thr.Poly.Q.Copy(share)
	pt.threshold = &thr
	pt.decCount = int(count)
	for _, rd := range rounds {
		pt.decrypted[rd] = true
	}
	return pt, nil
}
