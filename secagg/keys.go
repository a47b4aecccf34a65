package secagg

import (
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"filippo.io/edwards25519"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/fl-secure/fl-secure/internal/field"
	"github.com/fl-secure/fl-secure/internal/prg"
)

// Domain-separation labels. Every derived key and signature names its
// purpose and the protocol version, so no value can be reused across
// purposes (RFC 5869, §3.2: "info" binds derived keys to their context).
const (
	labelMaskKey    = "fl-secure/secagg/v1 mask-agreement key"
	labelSelfSeed   = "fl-secure/secagg/v1 self-mask seed"
	labelSelfCommit = "fl-secure/secagg/v1 self-mask commitment"
	labelPairMask   = "fl-secure/secagg/v1 pairwise mask"
	labelShareKey   = "fl-secure/secagg/v1 share encryption"
	labelAdvert     = "fl-secure/secagg/v1 advert"
	labelAdverts    = "fl-secure/secagg/v1 advert set"
	labelConsistent = "fl-secure/secagg/v1 consistency"
)

// context encodes (label, round, lo, hi) as HKDF info; lo and hi are the
// two client ids in increasing order (zero when unused).
func context(label string, round uint64, lo, hi uint32) string {
	b := make([]byte, 0, len(label)+1+16)
	b = append(b, label...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, round)
	b = binary.BigEndian.AppendUint32(b, lo)
	b = binary.BigEndian.AppendUint32(b, hi)
	return string(b)
}

func ordered(a, b uint32) (uint32, uint32) {
	if a < b {
		return a, b
	}
	return b, a
}

func hkdfSHA256(secret []byte, info string, n int) []byte {
	k, err := hkdf.Key(sha256.New, secret, nil, info, n)
	if err != nil {
		panic("secagg: internal error: " + err.Error())
	}
	return k
}

// maskPrivateKey derives a client's X25519 mask-agreement key from the
// scalar σ that is Shamir-shared. Sharing σ (an element of the field) rather
// than the X25519 key (a 255-bit string that does not fit GF(ℓ)) keeps the
// secret exactly representable; the key is HKDF(σ) (RFC 5869).
func maskPrivateKey(sigma *edwards25519.Scalar, round uint64, id uint32) *ecdh.PrivateKey {
	k := hkdfSHA256(sigma.Bytes(), context(labelMaskKey, round, id, 0), 32)
	priv, err := ecdh.X25519().NewPrivateKey(k)
	clear(k)
	if err != nil {
		panic("secagg: internal error: " + err.Error())
	}
	return priv
}

// selfSeed derives the self-mask PRG seed b_u from the shared scalar β.
func selfSeed(beta *edwards25519.Scalar, round uint64, id uint32) [prg.KeySize]byte {
	var s [prg.KeySize]byte
	copy(s[:], hkdfSHA256(beta.Bytes(), context(labelSelfSeed, round, id, 0), prg.KeySize))
	return s
}

// selfCommit is a binding, hiding commitment to β published in the advert:
// SHA-256 of a 252-bit uniform secret. It lets the server check that a
// reconstructed β is the one the client masked with.
func selfCommit(beta *edwards25519.Scalar, round uint64, id uint32) [32]byte {
	h := sha256.New()
	h.Write([]byte(context(labelSelfCommit, round, id, 0)))
	h.Write(beta.Bytes())
	var c [32]byte
	h.Sum(c[:0])
	return c
}

// pairSeed derives the pairwise mask seed s_{u,v} from X25519(priv, peer).
// crypto/ecdh rejects the all-zero shared secret of a low-order peer key
// (RFC 7748, §6.1).
func pairSeed(priv *ecdh.PrivateKey, peer *ecdh.PublicKey, round uint64, a, b uint32) ([prg.KeySize]byte, error) {
	var s [prg.KeySize]byte
	z, err := priv.ECDH(peer)
	if err != nil {
		return s, fmt.Errorf("secagg: mask agreement between clients %d and %d: %w", a, b, err)
	}
	lo, hi := ordered(a, b)
	copy(s[:], hkdfSHA256(z, context(labelPairMask, round, lo, hi), prg.KeySize))
	clear(z)
	return s, nil
}

// shareAEAD returns the ChaCha20-Poly1305 (RFC 8439) instance that seals
// shares between clients a and b in this round.
func shareAEAD(priv *ecdh.PrivateKey, peer *ecdh.PublicKey, round uint64, a, b uint32) (cipher.AEAD, error) {
	z, err := priv.ECDH(peer)
	if err != nil {
		return nil, fmt.Errorf("secagg: share encryption between clients %d and %d: %w", a, b, err)
	}
	lo, hi := ordered(a, b)
	k := hkdfSHA256(z, context(labelShareKey, round, lo, hi), chacha20poly1305.KeySize)
	clear(z)
	aead, err := chacha20poly1305.New(k)
	clear(k)
	if err != nil {
		panic("secagg: internal error: " + err.Error())
	}
	return aead, nil
}

// shareNonce and shareAD bind a sealed share to its direction, its round and
// the advert set it was made for. The key is used once in each direction,
// so the (sender, recipient) nonce never repeats under one key.
func shareNonce(sender, recipient uint32) []byte {
	n := make([]byte, chacha20poly1305.NonceSize)
	binary.BigEndian.PutUint32(n[0:], sender)
	binary.BigEndian.PutUint32(n[4:], recipient)
	return n
}

func shareAD(round uint64, sender, recipient uint32, digest *[32]byte) []byte {
	b := make([]byte, 0, 16+32)
	b = binary.BigEndian.AppendUint64(b, round)
	b = binary.BigEndian.AppendUint32(b, sender)
	b = binary.BigEndian.AppendUint32(b, recipient)
	return append(b, digest[:]...)
}

// shareSize is the plaintext of a sealed share: the holder's share of σ
// followed by its share of β.
const (
	shareSize  = 2 * field.ScalarSize
	sealedSize = shareSize + chacha20poly1305.Overhead
)

func advertSigned(ctx *[32]byte, a *Advert) []byte {
	b := make([]byte, 0, len(labelAdvert)+1+12+4*32)
	b = append(b, labelAdvert...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, a.Round)
	b = binary.BigEndian.AppendUint32(b, a.Sender)
	b = append(b, a.EncKey[:]...)
	b = append(b, a.MaskKey[:]...)
	b = append(b, a.SelfCommit[:]...)
	if *ctx != ([32]byte{}) {
		// Params.Context: a fixed 32 bytes at the end, so the encoding
		// stays unambiguous (and unchanged when there is no context).
		b = append(b, ctx[:]...)
	}
	return b
}

// advertDigest hashes the advert set a client was given, in its canonical
// (sorted) order, with signatures. It seeds the graph, is bound into every
// sealed share and into the consistency signature, so clients that were
// shown different advert sets can never complete a round together.
func advertDigest(ctx *[32]byte, round uint64, adverts []Advert) [32]byte {
	h := sha256.New()
	h.Write([]byte(context(labelAdverts, round, 0, 0)))
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(adverts)))
	h.Write(n[:])
	for i := range adverts {
		h.Write(advertSigned(ctx, &adverts[i]))
		h.Write(adverts[i].Sig[:])
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

func consistencySigned(round uint64, digest *[32]byte, survivors []uint32) []byte {
	b := make([]byte, 0, len(labelConsistent)+1+8+32+4+4*len(survivors))
	b = append(b, labelConsistent...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, round)
	b = append(b, digest[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(survivors)))
	for _, id := range survivors {
		b = binary.BigEndian.AppendUint32(b, id)
	}
	return b
}
