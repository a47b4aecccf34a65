// Package field implements Shamir secret sharing over the prime-order scalar
// field of edwards25519, GF(ℓ) with ℓ = 2^252 + 27742317777372353535851937790883648493.
//
// Construction: A. Shamir, "How to Share a Secret", CACM 22(11), 1979. A
// secret s is the constant term of a uniformly random polynomial f of degree
// t−1; the share of party x is (x, f(x)). Any t shares determine s by Lagrange
// interpolation at 0, and any t−1 shares are independent of s.
//
// Arithmetic is delegated to filippo.io/edwards25519, whose scalar operations
// are constant time. Share x-coordinates are public client identifiers and are
// not treated as secret.
package field

import (
	"errors"
	"fmt"
	"io"

	"filippo.io/edwards25519"
)

// ScalarSize is the length in bytes of a canonical scalar encoding.
const ScalarSize = 32

// Share is one point (X, Y) of a sharing polynomial. X is a public, non-zero
// party identifier; Y is secret.
type Share struct {
	X uint32
	Y edwards25519.Scalar
}

// RandomScalar returns a uniformly random element of GF(ℓ) drawn from rand,
// by reducing 64 uniform bytes (statistical distance < 2^-250 from uniform).
func RandomScalar(rand io.Reader) (*edwards25519.Scalar, error) {
	var b [64]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return nil, fmt.Errorf("field: reading randomness: %w", err)
	}
	s, err := edwards25519.NewScalar().SetUniformBytes(b[:])
	clear(b[:])
	if err != nil {
		panic("field: internal error: " + err.Error())
	}
	return s, nil
}

func scalarFromUint32(x uint32) *edwards25519.Scalar {
	var b [ScalarSize]byte
	b[0], b[1], b[2], b[3] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
	s, err := edwards25519.NewScalar().SetCanonicalBytes(b[:])
	if err != nil {
		panic("field: internal error: " + err.Error())
	}
	return s
}

// Split shares secret among the parties xs with threshold t: any t of the
// returned shares reconstruct secret, and any t−1 reveal nothing about it.
// The xs must be distinct and non-zero, and 1 ≤ t ≤ len(xs).
func Split(rand io.Reader, secret *edwards25519.Scalar, t int, xs []uint32) ([]Share, error) {
	if t < 1 || t > len(xs) {
		return nil, fmt.Errorf("field: threshold %d out of range [1, %d]", t, len(xs))
	}
	if err := checkXs(xs); err != nil {
		return nil, err
	}
	coeffs := make([]edwards25519.Scalar, t)
	coeffs[0].Set(secret)
	for i := 1; i < t; i++ {
		c, err := RandomScalar(rand)
		if err != nil {
			return nil, err
		}
		coeffs[i].Set(c)
	}
	shares := make([]Share, len(xs))
	for j, x := range xs {
		// Horner evaluation of f at x.
		xs := scalarFromUint32(x)
		y := &shares[j].Y
		y.Set(&coeffs[t-1])
		for i := t - 2; i >= 0; i-- {
			y.MultiplyAdd(y, xs, &coeffs[i])
		}
		shares[j].X = x
	}
	for i := range coeffs {
		coeffs[i] = edwards25519.Scalar{}
	}
	return shares, nil
}

func checkXs(xs []uint32) error {
	seen := make(map[uint32]struct{}, len(xs))
	for _, x := range xs {
		if x == 0 {
			return errors.New("field: share index 0 is reserved for the secret")
		}
		if _, dup := seen[x]; dup {
			return fmt.Errorf("field: duplicate share index %d", x)
		}
		seen[x] = struct{}{}
	}
	return nil
}

// LagrangeAtZero returns the coefficients λ_i such that f(0) = Σ λ_i·f(xs[i])
// for every polynomial f of degree < len(xs). The xs must be distinct and
// non-zero. The coefficients depend only on xs, so callers that reconstruct
// many secrets from the same set of parties compute them once.
func LagrangeAtZero(xs []uint32) ([]edwards25519.Scalar, error) {
	if len(xs) == 0 {
		return nil, errors.New("field: no shares")
	}
	if err := checkXs(xs); err != nil {
		return nil, err
	}
	pts := make([]*edwards25519.Scalar, len(xs))
	for i, x := range xs {
		pts[i] = scalarFromUint32(x)
	}
	// λ_i = Π_{j≠i} x_j / (x_j − x_i). Numerators and denominators are
	// accumulated separately and the denominators inverted in one batch
	// (Montgomery's trick), so the cost is one inversion plus O(t²)
	// multiplications.
	num := make([]edwards25519.Scalar, len(xs))
	den := make([]edwards25519.Scalar, len(xs))
	one := scalarFromUint32(1)
	var diff edwards25519.Scalar
	for i := range xs {
		num[i].Set(one)
		den[i].Set(one)
		for j := range xs {
			if j == i {
				continue
			}
			num[i].Multiply(&num[i], pts[j])
			diff.Subtract(pts[j], pts[i])
			den[i].Multiply(&den[i], &diff)
		}
	}
	batchInvert(den)
	for i := range num {
		num[i].Multiply(&num[i], &den[i])
	}
	return num, nil
}

// batchInvert replaces each element of v by its inverse. All elements must be
// non-zero, which holds for products of differences of distinct points.
func batchInvert(v []edwards25519.Scalar) {
	prefix := make([]edwards25519.Scalar, len(v))
	var acc edwards25519.Scalar
	acc.Set(scalarFromUint32(1))
	for i := range v {
		prefix[i].Set(&acc)
		acc.Multiply(&acc, &v[i])
	}
	acc.Invert(&acc)
	var tmp edwards25519.Scalar
	for i := len(v) - 1; i >= 0; i-- {
		tmp.Multiply(&acc, &prefix[i])
		acc.Multiply(&acc, &v[i])
		v[i].Set(&tmp)
	}
}

// Combine reconstructs the secret from shares. Exactly the shares given are
// used, so the caller decides how many (at least the threshold) to pass;
// fewer than the threshold yields an unrelated value, which callers detect by
// checking a commitment to the secret.
func Combine(shares []Share) (*edwards25519.Scalar, error) {
	xs := make([]uint32, len(shares))
	for i := range shares {
		xs[i] = shares[i].X
	}
	lambda, err := LagrangeAtZero(xs)
	if err != nil {
		return nil, err
	}
	ys := make([]*edwards25519.Scalar, len(shares))
	for i := range shares {
		ys[i] = &shares[i].Y
	}
	return Interpolate(lambda, ys), nil
}

// Interpolate returns Σ lambda[i]·ys[i]. It panics if the lengths differ.
func Interpolate(lambda []edwards25519.Scalar, ys []*edwards25519.Scalar) *edwards25519.Scalar {
	if len(lambda) != len(ys) {
		panic("field: internal error: mismatched interpolation lengths")
	}
	s := edwards25519.NewScalar()
	for i := range lambda {
		s.MultiplyAdd(&lambda[i], ys[i], s)
	}
	return s
}

// LagrangeWithout derives, from the coefficients lambda of the set xs, the
// coefficients of xs without its element at index k, in O(len(xs)) and one
// inversion instead of O(len(xs)²): for S = T \ {x_k} and i ≠ k,
//
//	λ_i^S = λ_i^T · (x_k − x_i) / x_k,
//
// since λ_i^T = λ_i^S · x_k/(x_k − x_i). The result is in xs order with
// index k removed.
func LagrangeWithout(lambda []edwards25519.Scalar, xs []uint32, k int) []edwards25519.Scalar {
	if len(lambda) != len(xs) || k < 0 || k >= len(xs) {
		panic("field: internal error: LagrangeWithout arguments")
	}
	xk := scalarFromUint32(xs[k])
	inv := edwards25519.NewScalar().Invert(xk)
	out := make([]edwards25519.Scalar, 0, len(xs)-1)
	var f edwards25519.Scalar
	for i := range xs {
		if i == k {
			continue
		}
		f.Subtract(xk, scalarFromUint32(xs[i]))
		f.Multiply(&f, inv)
		out = append(out, edwards25519.Scalar{})
		out[len(out)-1].Multiply(&lambda[i], &f)
	}
	return out
}
