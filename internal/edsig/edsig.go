// Package edsig verifies Ed25519 signatures (RFC 8032, §5.1.7) one at a
// time or in batches, with one acceptance rule for both.
//
// The rule is the cofactored equation [8][S]B = [8]R + [8][k]A, with S
// canonical (S < ℓ) and A and R valid point encodings: the rule of ZIP-215
// and of RFC 8032 §5.1.7 ("it is sufficient, but not required, to check
// [S]B = R + [k]A"). A batch of n signatures is accepted when, for
// independent random 128-bit z_i,
//
//	[8]( −(Σ z_i·S_i)·B + Σ z_i·R_i + Σ (z_i·k_i)·A_i ) = 0,
//
// (Bernstein, Duif, Lange, Schwabe, Yang, "High-speed high-security
// signatures", CHES 2011, batch verification), which a batch containing an invalid
// signature passes with probability at most 2^-128. A single verification is
// the batch of one, so a signature is accepted alone exactly when it is
// accepted in any batch (up to that probability): the server and every
// client of a round agree on which signatures are valid.
//
// A batch costs one multi-scalar multiplication, well under half the time of
// verifying its signatures one by one; from 32 signatures on, the batch is
// split across the available cores.
// Verification runs in variable time; it handles only public values.
package edsig

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"filippo.io/edwards25519"
)

// PublicKey is an Ed25519 public key decoded once, so that verifying many
// signatures under it does not decompress the point again.
type PublicKey struct {
	b []byte
	a *edwards25519.Point
}

// ParsePublicKey decodes an Ed25519 public key; it fails on a wrong length
// or on bytes that are not a point of the curve.
func ParsePublicKey(b []byte) (*PublicKey, error) {
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("edsig: public key has length %d, want %d", len(b), ed25519.PublicKeySize)
	}
	a, err := new(edwards25519.Point).SetBytes(b)
	if err != nil {
		return nil, errors.New("edsig: public key is not a valid curve point")
	}
	return &PublicKey{b: append([]byte(nil), b...), a: a}, nil
}

// Bytes returns the key's encoding.
func (k *PublicKey) Bytes() []byte { return append([]byte(nil), k.b...) }

// Entry is one signature to check.
type Entry struct {
	Pub *PublicKey
	Msg []byte
	Sig []byte
}

type parsed struct {
	a, r *edwards25519.Point
	s, k *edwards25519.Scalar
}

func parse(e *Entry) (parsed, bool) {
	if e.Pub == nil || len(e.Sig) != ed25519.SignatureSize {
		return parsed{}, false
	}
	a := e.Pub.a
	r, err := new(edwards25519.Point).SetBytes(e.Sig[:32])
	if err != nil {
		return parsed{}, false
	}
	s, err := new(edwards25519.Scalar).SetCanonicalBytes(e.Sig[32:])
	if err != nil {
		return parsed{}, false
	}
	h := sha512.New()
	h.Write(e.Sig[:32])
	h.Write(e.Pub.b)
	h.Write(e.Msg)
	k, err := new(edwards25519.Scalar).SetUniformBytes(h.Sum(nil))
	if err != nil {
		panic("edsig: internal error: " + err.Error())
	}
	return parsed{a: a, r: r, s: s, k: k}, true
}

// Verify reports whether one signature is valid.
func Verify(pub *PublicKey, msg, sig []byte) bool {
	return len(Invalid([]Entry{{Pub: pub, Msg: msg, Sig: sig}})) == 0
}

// Invalid returns the indices of the entries whose signatures are invalid,
// in increasing order; nil means all are valid.
func Invalid(entries []Entry) []int {
	if batchParallel(entries) {
		return nil
	}
	// Find the culprits one by one (a batch fails only on a bad signature).
	var bad []int
	for i := range entries {
		if !batch(entries[i : i+1]) {
			bad = append(bad, i)
		}
	}
	return bad
}

// parallelMin is the batch size from which Invalid splits a batch across
// cores. Each part is a batch of its own, so the work divides while the
// acceptance rule stays the same.
const parallelMin = 32

func batchParallel(entries []Entry) bool {
	parts := min(runtime.GOMAXPROCS(0), len(entries)/(parallelMin/2))
	if parts < 2 {
		return batch(entries)
	}
	results := make([]bool, parts)
	var wg sync.WaitGroup
	step := (len(entries) + parts - 1) / parts
	for p := range parts {
		part := entries[p*step : min((p+1)*step, len(entries))]
		wg.Go(func() { results[p] = batch(part) })
	}
	wg.Wait()
	for _, ok := range results {
		if !ok {
			return false
		}
	}
	return true
}

// batch reports whether every entry parses and the batch equation holds.
func batch(entries []Entry) bool {
	if len(entries) == 0 {
		return true
	}
	scalars := make([]*edwards25519.Scalar, 0, 2*len(entries)+1)
	points := make([]*edwards25519.Point, 0, 2*len(entries)+1)
	sumS := edwards25519.NewScalar()
	zb := make([]byte, 16*len(entries))
	if _, err := rand.Read(zb); err != nil {
		panic("edsig: internal error: " + err.Error())
	}
	var wide [64]byte
	for i := range entries {
		p, ok := parse(&entries[i])
		if !ok {
			return false
		}
		// z_i uniform in [0, 2^128).
		copy(wide[:16], zb[16*i:])
		z, _ := new(edwards25519.Scalar).SetUniformBytes(wide[:])
		sumS.MultiplyAdd(z, p.s, sumS)
		scalars = append(scalars, z, new(edwards25519.Scalar).Multiply(z, p.k))
		points = append(points, p.r, p.a)
	}
	scalars = append(scalars, sumS.Negate(sumS))
	points = append(points, edwards25519.NewGeneratorPoint())
	check := new(edwards25519.Point).VarTimeMultiScalarMult(scalars, points)
	check.MultByCofactor(check)
	return check.Equal(edwards25519.NewIdentityPoint()) == 1
}
