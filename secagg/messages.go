package secagg

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"

	"github.com/fl-secure/fl-secure/internal/field"
	"github.com/fl-secure/fl-secure/internal/wire"
)

// Every message starts with a type tag and the version byte. Decoders check
// the tag, the version, every count against MaxClients or MaxLength and
// against the bytes present, and reject trailing bytes. Semantic checks
// (identifiers in range, ordering, membership) are made by the Client and
// Server that receive the message, before any state changes.
const version = 1

const (
	tagAdvert uint8 = iota + 1
	tagAdvertList
	tagShares
	tagForwardedShares
	tagMaskedInput
	tagConsistencyRequest
	tagConsistencySignature
	tagUnmaskRequest
	tagUnmaskResponse
)

const (
	keySize    = 32
	sigSize    = ed25519.SignatureSize
	advertBody = 4 + 3*keySize + sigSize // sender, three keys, signature
)

// Advert is a client's signed key advertisement (round AdvertiseKeys): its
// X25519 public keys for share encryption and mask agreement, and a
// commitment to its self-mask seed, signed with its long-term Ed25519
// identity key.
type Advert struct {
	Round      uint64
	Sender     uint32
	EncKey     [keySize]byte
	MaskKey    [keySize]byte
	SelfCommit [32]byte
	Sig        [sigSize]byte
}

// AdvertList is the server's broadcast of the adverts it received, sorted by
// sender (round ShareKeys).
type AdvertList struct {
	Round   uint64
	Adverts []Advert
}

// SealedShare is one client's shares of its two secrets for one neighbour,
// sealed with ChaCha20-Poly1305 under a key only the two of them can derive.
// Peer is the recipient in a Shares message and the sender in a
// ForwardedShares message.
type SealedShare struct {
	Peer       uint32
	Ciphertext [sealedSize]byte
}

// Shares carries a client's sealed shares for each of its neighbours.
type Shares struct {
	Round  uint64
	Sender uint32
	Shares []SealedShare
}

// ForwardedShares is what the server forwards to one client: the shares its
// neighbours sealed for it (round MaskedInputCollection).
type ForwardedShares struct {
	Round     uint64
	Recipient uint32
	Shares    []SealedShare
}

// MaskedInput is a client's input plus its self mask and pairwise masks,
// as little-endian words of Bits/8 bytes on the wire.
type MaskedInput struct {
	Round  uint64
	Sender uint32
	Bits   int
	Vector []uint64
}

// ConsistencyRequest announces the survivor set U3: the clients whose masked
// input the server received.
type ConsistencyRequest struct {
	Round     uint64
	Survivors []uint32
}

// ConsistencySignature is a client's Ed25519 signature on (round, advert
// set, survivor set).
type ConsistencySignature struct {
	Round  uint64
	Sender uint32
	Sig    [sigSize]byte
}

// Signature is one client's consistency signature as relayed by the server.
type Signature struct {
	Signer uint32
	Sig    [sigSize]byte
}

// UnmaskRequest relays the survivor set and the signatures collected on it.
type UnmaskRequest struct {
	Round      uint64
	Survivors  []uint32
	Signatures []Signature
}

// ShareKind says which secret a revealed share belongs to.
type ShareKind uint8

const (
	// SelfShare is a share of a survivor's self-mask seed β.
	SelfShare ShareKind = 1
	// MaskKeyShare is a share of a dropped client's mask-agreement secret σ.
	MaskKeyShare ShareKind = 2
)

func (k ShareKind) String() string {
	switch k {
	case SelfShare:
		return "self-mask"
	case MaskKeyShare:
		return "mask-key"
	}
	return fmt.Sprintf("ShareKind(%d)", uint8(k))
}

// RevealedShare is the share a client holds of Owner's secret of the given
// kind. Value is a canonical scalar encoding; it is never printed.
type RevealedShare struct {
	Owner uint32
	Kind  ShareKind
	Value [field.ScalarSize]byte
}

// String describes the share without its value.
func (s RevealedShare) String() string {
	return fmt.Sprintf("%v share of client %d", s.Kind, s.Owner)
}

// UnmaskResponse carries a client's revealed shares: for each neighbour that
// sent it shares, the self-mask share if that neighbour survived, else the
// mask-key share.
type UnmaskResponse struct {
	Round  uint64
	Sender uint32
	Shares []RevealedShare
}

func header(w *wire.Writer, tag uint8, round uint64) {
	w.U8(tag)
	w.U8(version)
	w.U64(round)
}

// MarshalBinary encodes the advert.
func (m *Advert) MarshalBinary() ([]byte, error) {
	w := wire.NewWriter(10 + advertBody)
	header(w, tagAdvert, m.Round)
	putAdvertBody(w, m)
	return w.Finish(), nil
}

func putAdvertBody(w *wire.Writer, m *Advert) {
	w.U32(m.Sender)
	w.Bytes(m.EncKey[:])
	w.Bytes(m.MaskKey[:])
	w.Bytes(m.SelfCommit[:])
	w.Bytes(m.Sig[:])
}

func getAdvertBody(r *wire.Reader, m *Advert) {
	m.Sender = r.U32("sender")
	r.Fixed("encryption key", m.EncKey[:])
	r.Fixed("mask key", m.MaskKey[:])
	r.Fixed("self-mask commitment", m.SelfCommit[:])
	r.Fixed("signature", m.Sig[:])
}

// UnmarshalBinary decodes an advert; on error m is unchanged.
func (m *Advert) UnmarshalBinary(b []byte) error {
	r := wire.NewReader(b, "secagg: decoding Advert")
	r.Header(tagAdvert, version)
	var v Advert
	v.Round = r.U64("round")
	getAdvertBody(r, &v)
	if err := r.Done(); err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalBinary encodes the advert list.
func (m *AdvertList) MarshalBinary() ([]byte, error) {
	w := wire.NewWriter(14 + len(m.Adverts)*advertBody)
	header(w, tagAdvertList, m.Round)
	w.U32(uint32(len(m.Adverts)))
	for i := range m.Adverts {
		if m.Adverts[i].Round != m.Round {
			return nil, fmt.Errorf("secagg: advert of client %d is for round %d, list is for round %d", m.Adverts[i].Sender, m.Adverts[i].Round, m.Round)
		}
		putAdvertBody(w, &m.Adverts[i])
	}
	return w.Finish(), nil
}

// UnmarshalBinary decodes an advert list; on error m is unchanged.
func (m *AdvertList) UnmarshalBinary(b []byte) error {
	r := wire.NewReader(b, "secagg: decoding AdvertList")
	r.Header(tagAdvertList, version)
	var v AdvertList
	v.Round = r.U64("round")
	n := r.Count("adverts", MaxClients, advertBody)
	v.Adverts = make([]Advert, n)
	for i := range v.Adverts {
		v.Adverts[i].Round = v.Round
		getAdvertBody(r, &v.Adverts[i])
	}
	if err := r.Done(); err != nil {
		return err
	}
	*m = v
	return nil
}

func putSealed(w *wire.Writer, s []SealedShare) {
	w.U32(uint32(len(s)))
	for i := range s {
		w.U32(s[i].Peer)
		w.Bytes(s[i].Ciphertext[:])
	}
}

func getSealed(r *wire.Reader) []SealedShare {
	n := r.Count("shares", MaxClients, 4+sealedSize)
	s := make([]SealedShare, n)
	for i := range s {
		s[i].Peer = r.U32("peer")
		r.Fixed("sealed share", s[i].Ciphertext[:])
	}
	return s
}

// MarshalBinary encodes the shares message.
func (m *Shares) MarshalBinary() ([]byte, error) {
	w := wire.NewWriter(18 + len(m.Shares)*(4+sealedSize))
	header(w, tagShares, m.Round)
	w.U32(m.Sender)
	putSealed(w, m.Shares)
	return w.Finish(), nil
}

// UnmarshalBinary decodes a shares message; on error m is unchanged.
func (m *Shares) UnmarshalBinary(b []byte) error {
	r := wire.NewReader(b, "secagg: decoding Shares")
	r.Header(tagShares, version)
	var v Shares
	v.Round = r.U64("round")
	v.Sender = r.U32("sender")
	v.Shares = getSealed(r)
	if err := r.Done(); err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalBinary encodes the forwarded shares.
func (m *ForwardedShares) MarshalBinary() ([]byte, error) {
	w := wire.NewWriter(18 + len(m.Shares)*(4+sealedSize))
	header(w, tagForwardedShares, m.Round)
	w.U32(m.Recipient)
	putSealed(w, m.Shares)
	return w.Finish(), nil
}

// UnmarshalBinary decodes forwarded shares; on error m is unchanged.
func (m *ForwardedShares) UnmarshalBinary(b []byte) error {
	r := wire.NewReader(b, "secagg: decoding ForwardedShares")
	r.Header(tagForwardedShares, version)
	var v ForwardedShares
	v.Round = r.U64("round")
	v.Recipient = r.U32("recipient")
	v.Shares = getSealed(r)
	if err := r.Done(); err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalBinary encodes the masked input.
func (m *MaskedInput) MarshalBinary() ([]byte, error) {
	if m.Bits != 32 && m.Bits != 64 {
		return nil, fmt.Errorf("secagg: masked input has Bits = %d, want 32 or 64", m.Bits)
	}
	if len(m.Vector) > MaxLength {
		return nil, fmt.Errorf("secagg: masked input has length %d, maximum %d", len(m.Vector), MaxLength)
	}
	ws := m.Bits / 8
	w := wire.NewWriter(19 + len(m.Vector)*ws)
	header(w, tagMaskedInput, m.Round)
	w.U32(m.Sender)
	w.U8(uint8(m.Bits))
	w.U32(uint32(len(m.Vector)))
	putWords(w.Extend(len(m.Vector)*ws), m.Vector, ws)
	return w.Finish(), nil
}

// UnmarshalBinary decodes a masked input; on error m is unchanged.
func (m *MaskedInput) UnmarshalBinary(b []byte) error {
	r := wire.NewReader(b, "secagg: decoding MaskedInput")
	r.Header(tagMaskedInput, version)
	var v MaskedInput
	v.Round = r.U64("round")
	v.Sender = r.U32("sender")
	v.Bits = int(r.U8("bits"))
	if r.Err() == nil && v.Bits != 32 && v.Bits != 64 {
		r.Fail("bits: %d, want 32 or 64", v.Bits)
	}
	ws := max(v.Bits/8, 1)
	n := r.Count("vector", MaxLength, ws)
	raw := r.Slice("vector", n*ws)
	if err := r.Done(); err != nil {
		return err
	}
	v.Vector = make([]uint64, n)
	getWords(v.Vector, raw, ws)
	*m = v
	return nil
}

// putWords writes v as little-endian words of ws bytes, four at a time over
// re-sliced views so that the compiler drops the bounds checks.
func putWords(out []byte, v []uint64, ws int) {
	le := binary.LittleEndian
	if ws == 4 {
		for len(v) >= 4 && len(out) >= 16 {
			le.PutUint64(out[0:8], uint64(uint32(v[0]))|v[1]<<32)
			le.PutUint64(out[8:16], uint64(uint32(v[2]))|v[3]<<32)
			v, out = v[4:], out[16:]
		}
		for len(v) > 0 && len(out) >= 4 {
			le.PutUint32(out[:4], uint32(v[0]))
			v, out = v[1:], out[4:]
		}
		return
	}
	for len(v) >= 2 && len(out) >= 16 {
		le.PutUint64(out[0:8], v[0])
		le.PutUint64(out[8:16], v[1])
		v, out = v[2:], out[16:]
	}
	for len(v) > 0 && len(out) >= 8 {
		le.PutUint64(out[:8], v[0])
		v, out = v[1:], out[8:]
	}
}

// getWords is the inverse of putWords.
func getWords(v []uint64, raw []byte, ws int) {
	le := binary.LittleEndian
	if ws == 4 {
		for len(v) > 0 && len(raw) >= 4 {
			v[0] = uint64(le.Uint32(raw[:4]))
			v, raw = v[1:], raw[4:]
		}
		return
	}
	for len(v) > 0 && len(raw) >= 8 {
		v[0] = le.Uint64(raw[:8])
		v, raw = v[1:], raw[8:]
	}
}

func putIDs(w *wire.Writer, ids []uint32) {
	w.U32(uint32(len(ids)))
	for _, id := range ids {
		w.U32(id)
	}
}

func getIDs(r *wire.Reader, field string) []uint32 {
	n := r.Count(field, MaxClients, 4)
	ids := make([]uint32, n)
	for i := range ids {
		ids[i] = r.U32(field)
	}
	return ids
}

// MarshalBinary encodes the consistency request.
func (m *ConsistencyRequest) MarshalBinary() ([]byte, error) {
	w := wire.NewWriter(14 + 4*len(m.Survivors))
	header(w, tagConsistencyRequest, m.Round)
	putIDs(w, m.Survivors)
	return w.Finish(), nil
}

// UnmarshalBinary decodes a consistency request; on error m is unchanged.
func (m *ConsistencyRequest) UnmarshalBinary(b []byte) error {
	r := wire.NewReader(b, "secagg: decoding ConsistencyRequest")
	r.Header(tagConsistencyRequest, version)
	var v ConsistencyRequest
	v.Round = r.U64("round")
	v.Survivors = getIDs(r, "survivors")
	if err := r.Done(); err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalBinary encodes the consistency signature.
func (m *ConsistencySignature) MarshalBinary() ([]byte, error) {
	w := wire.NewWriter(14 + sigSize)
	header(w, tagConsistencySignature, m.Round)
	w.U32(m.Sender)
	w.Bytes(m.Sig[:])
	return w.Finish(), nil
}

// UnmarshalBinary decodes a consistency signature; on error m is unchanged.
func (m *ConsistencySignature) UnmarshalBinary(b []byte) error {
	r := wire.NewReader(b, "secagg: decoding ConsistencySignature")
	r.Header(tagConsistencySignature, version)
	var v ConsistencySignature
	v.Round = r.U64("round")
	v.Sender = r.U32("sender")
	r.Fixed("signature", v.Sig[:])
	if err := r.Done(); err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalBinary encodes the unmask request.
func (m *UnmaskRequest) MarshalBinary() ([]byte, error) {
	w := wire.NewWriter(18 + 4*len(m.Survivors) + len(m.Signatures)*(4+sigSize))
	header(w, tagUnmaskRequest, m.Round)
	putIDs(w, m.Survivors)
	w.U32(uint32(len(m.Signatures)))
	for _, s := range m.Signatures {
		w.U32(s.Signer)
		w.Bytes(s.Sig[:])
	}
	return w.Finish(), nil
}

// UnmarshalBinary decodes an unmask request; on error m is unchanged.
func (m *UnmaskRequest) UnmarshalBinary(b []byte) error {
	r := wire.NewReader(b, "secagg: decoding UnmaskRequest")
	r.Header(tagUnmaskRequest, version)
	var v UnmaskRequest
	v.Round = r.U64("round")
	v.Survivors = getIDs(r, "survivors")
	n := r.Count("signatures", MaxClients, 4+sigSize)
	v.Signatures = make([]Signature, n)
	for i := range v.Signatures {
		v.Signatures[i].Signer = r.U32("signer")
		r.Fixed("signature", v.Signatures[i].Sig[:])
	}
	if err := r.Done(); err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalBinary encodes the unmask response.
func (m *UnmaskResponse) MarshalBinary() ([]byte, error) {
	w := wire.NewWriter(18 + len(m.Shares)*(5+field.ScalarSize))
	header(w, tagUnmaskResponse, m.Round)
	w.U32(m.Sender)
	w.U32(uint32(len(m.Shares)))
	for _, s := range m.Shares {
		w.U32(s.Owner)
		w.U8(uint8(s.Kind))
		w.Bytes(s.Value[:])
	}
	return w.Finish(), nil
}

// UnmarshalBinary decodes an unmask response; on error m is unchanged.
func (m *UnmaskResponse) UnmarshalBinary(b []byte) error {
	r := wire.NewReader(b, "secagg: decoding UnmaskResponse")
	r.Header(tagUnmaskResponse, version)
	var v UnmaskResponse
	v.Round = r.U64("round")
	v.Sender = r.U32("sender")
	n := r.Count("shares", MaxClients, 5+field.ScalarSize)
	v.Shares = make([]RevealedShare, n)
	for i := range v.Shares {
		s := &v.Shares[i]
		s.Owner = r.U32("owner")
		s.Kind = ShareKind(r.U8("kind"))
		if r.Err() == nil && s.Kind != SelfShare && s.Kind != MaskKeyShare {
			r.Fail("share %d: unknown kind %d", i, uint8(s.Kind))
		}
		r.Fixed("share value", s.Value[:])
	}
	if err := r.Done(); err != nil {
		return err
	}
	*m = v
	return nil
}
