package field

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"testing"

	"filippo.io/edwards25519"

	"github.com/fl-secure/fl-secure/internal/prg"
)

func testRand(seed byte) *prg.Reader { return prg.NewReader(&[prg.KeySize]byte{seed}) }

func TestSplitCombine(t *testing.T) {
	r := testRand(1)
	for _, tc := range []struct{ t, n int }{{1, 1}, {1, 5}, {2, 3}, {3, 5}, {5, 5}, {11, 20}, {34, 99}} {
		secret, _ := RandomScalar(r)
		xs := make([]uint32, tc.n)
		for i := range xs {
			xs[i] = uint32(3*i + 7) // arbitrary distinct non-zero ids
		}
		shares, err := Split(r, secret, tc.t, xs)
		if err != nil {
			t.Fatal(err)
		}
		// Several different t-subsets reconstruct the secret.
		for start := 0; start+tc.t <= tc.n; start += max(1, tc.n/4) {
			got, err := Combine(shares[start : start+tc.t])
			if err != nil {
				t.Fatal(err)
			}
			if got.Equal(secret) != 1 {
				t.Fatalf("t=%d n=%d: subset at %d did not reconstruct", tc.t, tc.n, start)
			}
		}
		// All n shares also reconstruct (degree < t ≤ n).
		if got, _ := Combine(shares); got.Equal(secret) != 1 {
			t.Fatalf("t=%d n=%d: all shares did not reconstruct", tc.t, tc.n)
		}
		// t−1 shares give an unrelated value.
		if tc.t > 1 {
			if got, _ := Combine(shares[:tc.t-1]); got.Equal(secret) == 1 {
				t.Fatalf("t=%d n=%d: t−1 shares reconstructed the secret", tc.t, tc.n)
			}
		}
	}
}

func TestSplitRejects(t *testing.T) {
	s := edwards25519.NewScalar()
	r := testRand(2)
	for _, tc := range []struct {
		t  int
		xs []uint32
	}{
		{0, []uint32{1, 2}}, {3, []uint32{1, 2}}, {2, []uint32{1, 0, 3}}, {2, []uint32{1, 2, 1}},
	} {
		if _, err := Split(r, s, tc.t, tc.xs); err == nil {
			t.Errorf("Split(t=%d, xs=%v) accepted", tc.t, tc.xs)
		}
	}
	if _, err := Combine(nil); err == nil {
		t.Error("Combine(nil) accepted")
	}
	if _, err := Combine([]Share{{X: 1}, {X: 1}}); err == nil {
		t.Error("Combine with duplicate x accepted")
	}
}

func TestLagrangeMatchesNaive(t *testing.T) {
	xs := []uint32{2, 5, 9, 65535, 1}
	lam, err := LagrangeAtZero(xs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range xs {
		// λ_i = Π_{j≠i} x_j / (x_j − x_i), computed with one inversion each.
		want := scalarFromUint32(1)
		for j := range xs {
			if j == i {
				continue
			}
			num := scalarFromUint32(xs[j])
			den := edwards25519.NewScalar().Subtract(scalarFromUint32(xs[j]), scalarFromUint32(xs[i]))
			want.Multiply(want, num)
			want.Multiply(want, edwards25519.NewScalar().Invert(den))
		}
		if lam[i].Equal(want) != 1 {
			t.Fatalf("λ_%d differs from the naive formula", i)
		}
	}
}

// TestAccumulated splits thousands of seeded secrets and hashes every share;
// the constant pins the sharing (and the scalar sampling) exactly.
func TestAccumulated(t *testing.T) {
	n := 1000
	want := "2aa9ceb3e380519423a946fb7e85b9ba86a0df266084538665f62f39ebf8f53d"
	if testing.Short() {
		n, want = 100, ""
	}
	r := testRand(3)
	h := sha256.New()
	for trial := 0; trial < n; trial++ {
		k := int(r.Uint64n(20)) + 1
		thr := int(r.Uint64n(uint64(k))) + 1
		xs := make([]uint32, k)
		for i := range xs {
			xs[i] = uint32(i + 1)
		}
		secret, _ := RandomScalar(r)
		shares, err := Split(r, secret, thr, xs)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range shares {
			h.Write(s.Y.Bytes())
		}
		got, _ := Combine(slices.Clone(shares[k-thr:]))
		if got.Equal(secret) != 1 {
			t.Fatalf("trial %d did not reconstruct", trial)
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); want != "" && got != want {
		t.Fatalf("accumulated hash %s, want %s", got, want)
	}
}

func TestLagrangeWithout(t *testing.T) {
	xs := []uint32{3, 4, 9, 12, 70, 71}
	lam, _ := LagrangeAtZero(xs)
	for k := range xs {
		rest := slices.Delete(slices.Clone(xs), k, k+1)
		want, _ := LagrangeAtZero(rest)
		got := LagrangeWithout(lam, xs, k)
		for i := range want {
			if got[i].Equal(&want[i]) != 1 {
				t.Fatalf("dropping index %d: coefficient %d differs", k, i)
			}
		}
	}
}
