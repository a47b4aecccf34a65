package secagg

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// loadKAT reads testdata/kat/name.json: {"source": …, "cases": [...]}.
func loadKAT[T any](t *testing.T, name string) []T {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "kat", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Source string `json:"source"`
		Cases  []T    `json:"cases"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if f.Source == "" || len(f.Cases) == 0 {
		t.Fatalf("%s: no source or no cases", name)
	}
	return f.Cases
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestX25519KAT checks key agreement as secagg performs it (crypto/ecdh),
// including refusal of the all-zero shared secret of low-order points.
func TestX25519KAT(t *testing.T) {
	for _, c := range loadKAT[struct {
		Name, Scalar, U, Out string
		Error                bool
	}](t, "x25519") {
		t.Run(c.Name, func(t *testing.T) {
			priv, err := ecdh.X25519().NewPrivateKey(unhex(t, c.Scalar))
			if err != nil {
				t.Fatal(err)
			}
			pub, err := ecdh.X25519().NewPublicKey(unhex(t, c.U))
			if err != nil {
				t.Fatal(err)
			}
			out, err := priv.ECDH(pub)
			if c.Error {
				if err == nil {
					t.Fatal("low-order point accepted")
				}
				// pairSeed and shareAEAD must refuse it too.
				if _, err := pairSeed(priv, pub, 1, 1, 2); err == nil {
					t.Fatal("pairSeed accepted a low-order point")
				}
				if _, err := shareAEAD(priv, pub, 1, 1, 2); err == nil {
					t.Fatal("shareAEAD accepted a low-order point")
				}
				return
			}
			if err != nil || !bytes.Equal(out, unhex(t, c.Out)) {
				t.Fatalf("got %x, %v; want %s", out, err, c.Out)
			}
		})
	}
}

// TestHKDFKAT checks HKDF-SHA-256 as secagg calls it; case A.3 (empty salt
// and info) goes through hkdfSHA256 itself.
func TestHKDFKAT(t *testing.T) {
	for _, c := range loadKAT[struct{ Name, IKM, Salt, Info, OKM string }](t, "hkdf") {
		t.Run(c.Name, func(t *testing.T) {
			want := unhex(t, c.OKM)
			got, err := hkdf.Key(sha256.New, unhex(t, c.IKM), unhex(t, c.Salt), string(unhex(t, c.Info)), len(want))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("got %x, %v", got, err)
			}
			if c.Salt == "" {
				if got := hkdfSHA256(unhex(t, c.IKM), string(unhex(t, c.Info)), len(want)); !bytes.Equal(got, want) {
					t.Fatalf("hkdfSHA256: got %x", got)
				}
			}
		})
	}
}

// TestChaCha20Poly1305KAT checks the AEAD that seals shares.
func TestChaCha20Poly1305KAT(t *testing.T) {
	for _, c := range loadKAT[struct{ Name, Key, Nonce, AAD, Plaintext, Ciphertext string }](t, "chacha20poly1305") {
		t.Run(c.Name, func(t *testing.T) {
			aead, err := chacha20poly1305.New(unhex(t, c.Key))
			if err != nil {
				t.Fatal(err)
			}
			ct := aead.Seal(nil, unhex(t, c.Nonce), unhex(t, c.Plaintext), unhex(t, c.AAD))
			if !bytes.Equal(ct, unhex(t, c.Ciphertext)) {
				t.Fatalf("seal: got %x", ct)
			}
			pt, err := aead.Open(nil, unhex(t, c.Nonce), ct, unhex(t, c.AAD))
			if err != nil || !bytes.Equal(pt, unhex(t, c.Plaintext)) {
				t.Fatalf("open: %v", err)
			}
			ct[0] ^= 1
			if _, err := aead.Open(nil, unhex(t, c.Nonce), ct, unhex(t, c.AAD)); err == nil {
				t.Fatal("tampered ciphertext opened")
			}
		})
	}
}

// TestShareSealingBindsContext checks that a sealed share opens only with
// the same round, direction and advert-set digest.
func TestShareSealingBindsContext(t *testing.T) {
	a, _ := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{1}, 32))
	b, _ := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{2}, 32))
	var digest, other [32]byte
	other[0] = 1
	sealer, _ := shareAEAD(a, b.PublicKey(), 5, 1, 2)
	ct := sealer.Seal(nil, shareNonce(1, 2), []byte("share"), shareAD(5, 1, 2, &digest))
	opener, _ := shareAEAD(b, a.PublicKey(), 5, 2, 1)
	if _, err := opener.Open(nil, shareNonce(1, 2), ct, shareAD(5, 1, 2, &digest)); err != nil {
		t.Fatal(err)
	}
	for name, try := range map[string]func() error{
		"other digest":    func() error { _, e := opener.Open(nil, shareNonce(1, 2), ct, shareAD(5, 1, 2, &other)); return e },
		"other round":     func() error { _, e := opener.Open(nil, shareNonce(1, 2), ct, shareAD(6, 1, 2, &digest)); return e },
		"other direction": func() error { _, e := opener.Open(nil, shareNonce(2, 1), ct, shareAD(5, 2, 1, &digest)); return e },
		"other round key": func() error {
			o, _ := shareAEAD(b, a.PublicKey(), 6, 2, 1)
			_, e := o.Open(nil, shareNonce(1, 2), ct, shareAD(5, 1, 2, &digest))
			return e
		},
	} {
		if try() == nil {
			t.Errorf("%s: share opened", name)
		}
	}
}
