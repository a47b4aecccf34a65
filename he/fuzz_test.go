package he

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
)

// fuzzGroup is one small group shared by the fuzz targets; its valid
// messages seed every corpus.
func fuzzGroup(f *testing.F) (*group, [][]byte, [][]byte, []byte, []byte, []byte) {
	cfg := Config{Preset: Compact, Parties: 3, Threshold: 2}
	p, err := NewParams(cfg)
	if err != nil {
		f.Fatal(err)
	}
	g := newGroup(f, cfg)
	adverts := make([][]byte, 3)
	for i, pt := range g.parties {
		adverts[i] = pt.Advert()
	}
	_ = p
	sub1, _ := g.parties[0].Encrypt(1, []float64{1, 2}, NoNoise)
	sub2, _ := g.parties[1].Encrypt(1, []float64{3, 4}, NoNoise)
	agg, _ := NewAggregator(g.params, g.roster, g.crs, 1)
	agg.Add(sub1)
	agg.Add(sub2)
	req, err := agg.Request([]int{1, 2})
	if err != nil {
		f.Fatal(err)
	}
	share, err := g.parties[0].DecryptShare(req)
	if err != nil {
		f.Fatal(err)
	}
	return g, adverts, [][]byte{sub1, sub2}, req, share, sub1
}

func FuzzSubmission(f *testing.F) {
	g, _, subs, _, _, _ := fuzzGroup(f)
	for _, s := range subs {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseSubmission(g.params, g.roster, g.crs, b)
		if (s == nil) == (err == nil) {
			t.Fatalf("submission %v with error %v", s != nil, err)
		}
	})
}

func FuzzRequest(f *testing.F) {
	g, _, _, req, _, _ := fuzzGroup(f)
	f.Add(req)
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := parseRequest(g.params, b)
		if (q == nil) == (err == nil) {
			t.Fatalf("request %v with error %v", q != nil, err)
		}
		if err == nil {
			// A request that parses must never panic a decryptor.
			g.parties[2].DecryptShare(b)
		}
	})
}

func FuzzShare(f *testing.F) {
	g, _, subs, _, share, _ := fuzzGroup(f)
	f.Add(share)
	f.Fuzz(func(t *testing.T, b []byte) {
		agg, _ := NewAggregator(g.params, g.roster, g.crs, 1)
		agg.Add(subs[0])
		agg.Add(subs[1])
		if _, err := agg.Request([]int{1, 2}); err != nil {
			t.Fatal(err)
		}
		out, err := agg.Combine([][]byte{b, b})
		if err == nil || out != nil {
			t.Fatalf("two copies of one share combined: %v", err)
		}
	})
}

func FuzzAdverts(f *testing.F) {
	g, adverts, _, _, _, _ := fuzzGroup(f)
	f.Add(adverts[1])
	f.Fuzz(func(t *testing.T, b []byte) {
		ads := [][]byte{adverts[0], b, adverts[2]}
		out, err := parseAdverts(g.params, g.roster, ads)
		if (out == nil) == (err == nil) {
			t.Fatalf("adverts %v with error %v", out != nil, err)
		}
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrProtocol) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}

func FuzzSetup(f *testing.F) {
	p, _ := NewParams(Config{Preset: Compact, Parties: 2, Threshold: 2})
	keys := []ed25519.PrivateKey{ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32)), ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))}
	roster := []ed25519.PublicKey{keys[0].Public().(ed25519.PublicKey), keys[1].Public().(ed25519.PublicKey)}
	a, _ := NewParty(p, 1, keys[0], roster)
	b, _ := NewParty(p, 2, keys[1], roster)
	ads := [][]byte{a.Advert(), b.Advert()}
	ma, err := a.Setup(ads)
	if err != nil {
		f.Fatal(err)
	}
	mb, _ := b.Setup(ads)
	f.Add(mb)
	crs := a.CRS()
	f.Fuzz(func(t *testing.T, m []byte) {
		out, err := parseSetup(p, roster, crs, [][]byte{ma, m})
		if (out == nil) == (err == nil) {
			t.Fatalf("setup %v with error %v", out != nil, err)
		}
	})
}

func FuzzState(f *testing.F) {
	g := newGroup(f, Config{Preset: Compact, Parties: 2, Threshold: 2})
	st, err := g.parties[0].MarshalState()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(st)
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	f.Fuzz(func(t *testing.T, b []byte) {
		pt, err := RestoreParty(g.params, key, g.roster, b)
		if (pt == nil) == (err == nil) {
			t.Fatalf("party %v with error %v", pt != nil, err)
		}
	})
}
