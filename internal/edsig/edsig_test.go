package edsig

import (
	"crypto/ed25519"
	"fmt"
	"slices"
	"testing"
)

func keys(n int) ([]ed25519.PrivateKey, []Entry) {
	priv := make([]ed25519.PrivateKey, n)
	es := make([]Entry, n)
	for i := range priv {
		seed := make([]byte, 32)
		seed[0], seed[1] = byte(i), byte(i>>8)
		priv[i] = ed25519.NewKeyFromSeed(seed)
		msg := []byte(fmt.Sprintf("message %d", i))
		pub, _ := ParsePublicKey(priv[i].Public().(ed25519.PublicKey))
		es[i] = Entry{Pub: pub, Msg: msg, Sig: ed25519.Sign(priv[i], msg)}
	}
	return priv, es
}

// TestRFC8032 checks RFC 8032 §7.1 TEST 1 (empty message) and TEST 2.
func TestRFC8032(t *testing.T) {
	for _, tc := range []struct{ seed, pub, msg, sig string }{
		{"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
			"e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
		{"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb", "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
			"92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
	} {
		pub, msg, sig := unhex(tc.pub), unhex(tc.msg), unhex(tc.sig)
		if got := ed25519.NewKeyFromSeed(unhex(tc.seed)).Public().(ed25519.PublicKey); !slices.Equal(got, pub) {
			t.Fatal("public key mismatch")
		}
		pk, err := ParsePublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		if !Verify(pk, msg, sig) {
			t.Fatalf("RFC 8032 vector rejected")
		}
		sig[63] ^= 0x10
		if Verify(pk, msg, sig) {
			t.Fatalf("altered RFC 8032 signature accepted")
		}
	}
}

func unhex(s string) []byte {
	b := make([]byte, len(s)/2)
	for i := range b {
		fmt.Sscanf(s[2*i:2*i+2], "%02x", &b[i])
	}
	return b
}

func TestParsePublicKeyRejects(t *testing.T) {
	if _, err := ParsePublicKey(make([]byte, 31)); err == nil {
		t.Error("31-byte key accepted")
	}
	// y = 2 is not the y-coordinate of a curve point.
	bad := make([]byte, 32)
	bad[0] = 2
	if _, err := ParsePublicKey(bad); err == nil {
		t.Error("non-point accepted")
	}
}

func TestBatchFindsEveryBadSignature(t *testing.T) {
	_, es := keys(40)
	if bad := Invalid(es); bad != nil {
		t.Fatalf("valid batch rejected: %v", bad)
	}
	es[3].Msg = []byte("other")
	es[17].Sig = slices.Clone(es[17].Sig)
	es[17].Sig[5] ^= 1
	es[20].Pub = es[21].Pub
	es[30].Sig = es[30].Sig[:63]
	s := slices.Clone(es[33].Sig) // non-canonical S: S + ℓ
	s[63] |= 0xf0
	es[33].Sig = s
	if bad := Invalid(es); !slices.Equal(bad, []int{3, 17, 20, 30, 33}) {
		t.Fatalf("bad = %v", bad)
	}
	if Invalid(nil) != nil {
		t.Fatal("empty batch has invalid entries")
	}
}

func TestAgreesWithStandardLibrary(t *testing.T) {
	_, es := keys(20)
	for i := range es {
		for flip := 0; flip < 64; flip += 7 {
			sig := slices.Clone(es[i].Sig)
			sig[flip] ^= 1
			if got, want := Verify(es[i].Pub, es[i].Msg, sig), ed25519.Verify(es[i].Pub.Bytes(), es[i].Msg, sig); got != want {
				t.Fatalf("entry %d flip %d: edsig %v, crypto/ed25519 %v", i, flip, got, want)
			}
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	_, es := keys(100)
	b.Run("stdlib-one-by-one/n=100", func(b *testing.B) {
		for b.Loop() {
			for _, e := range es {
				ed25519.Verify(e.Pub.b, e.Msg, e.Sig)
			}
		}
	})
	b.Run("batch/n=100", func(b *testing.B) {
		for b.Loop() {
			Invalid(es)
		}
	})
}
