package he

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"math/rand/v2"
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
	sub1, _ := g.parties[0].Encrypt(1, testContext, []float64{1, 2}, NoNoise)
	sub2, _ := g.parties[1].Encrypt(1, testContext, []float64{3, 4}, NoNoise)
	agg, _ := NewAggregator(g.params, g.roster, g.crs, 1, testContext)
	agg.Add(sub1)
	agg.Add(sub2)
	req, err := agg.Request([]int{1, 2})
	if err != nil {
		f.Fatal(err)
	}
	share, err := g.parties[0].DecryptShare(req, testContext)
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
			g.parties[2].DecryptShare(b, testContext)
		}
	})
}

func FuzzShare(f *testing.F) {
	g, _, subs, _, share, _ := fuzzGroup(f)
	f.Add(share)
	f.Fuzz(func(t *testing.T, b []byte) {
		agg, _ := NewAggregator(g.params, g.roster, g.crs, 1, testContext)
		agg.Add(subs[0])
		agg.Add(subs[1])
		if _, err := agg.Request([]int{1, 2}); err != nil {
			t.Fatal(err)
		}
		if round, party, err := ShareParty(b); err != nil && (round != 0 || party != 0) {
			t.Fatalf("ShareParty: round %d, party %d with error %v", round, party, err)
		}
		if id, err := agg.CheckShare(b); err == nil && id != 1 && id != 2 {
			t.Fatalf("CheckShare accepted a share from party %d, not a decryptor", id)
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

// setupMessages runs a 3-party setup and returns its parties and every
// step's messages: adverts, commitments, reveals, confirmations.
func setupMessages(f testing.TB) (*Params, []*Party, []ed25519.PublicKey, [4][][]byte) {
	p, _ := NewParams(Config{Preset: Compact, Parties: 3, Threshold: 2})
	keys, roster := testKeys(3)
	parties := make([]*Party, 3)
	for i := range parties {
		parties[i], _ = NewParty(p, i+1, keys[i], roster)
	}
	var msgs [4][][]byte
	k := 0
	if id, err := ceremony(parties, func(step string, m [][]byte) {
		msgs[k] = slices2(m)
		k++
	}); err != nil {
		f.Fatalf("party %d: %v", id, err)
	}
	return p, parties, roster, msgs
}

func FuzzCommitments(f *testing.F) {
	p, parties, roster, msgs := setupMessages(f)
	f.Add(msgs[1][1])
	crs := parties[0].CRS()
	f.Fuzz(func(t *testing.T, m []byte) {
		out, err := parseCommitments(p, roster, crs, [][]byte{msgs[1][0], m, msgs[1][2]})
		if (out == nil) == (err == nil) {
			t.Fatalf("commitments %v with error %v", out != nil, err)
		}
		if err == nil && !bytes.Equal(m, msgs[1][1]) {
			t.Fatal("a changed commitment verified")
		}
	})
}

func FuzzReveals(f *testing.F) {
	p, parties, roster, msgs := setupMessages(f)
	f.Add(msgs[2][1])
	crs := parties[0].CRS()
	f.Fuzz(func(t *testing.T, m []byte) {
		out, err := parseReveals(p, roster, crs, parties[0].commits, [][]byte{msgs[2][0], m, msgs[2][2]})
		if (out == nil) == (err == nil) {
			t.Fatalf("reveals %v with error %v", out != nil, err)
		}
		if err == nil && !bytes.Equal(m, msgs[2][1]) {
			t.Fatal("a changed reveal matched its commitment")
		}
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrProtocol) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}

func FuzzConfirm(f *testing.F) {
	p, parties, roster, msgs := setupMessages(f)
	f.Add(msgs[3][1])
	// A party that has finished but not yet confirmed, rebuilt per input.
	cf := newConfirmation(p, parties[0].cpk, parties[0].transcript)
	f.Fuzz(func(t *testing.T, m []byte) {
		err := cf.check(p, roster, [][]byte{msgs[3][0], m, msgs[3][2]})
		if err == nil && !bytes.Equal(m, msgs[3][1]) {
			t.Fatal("a changed key-confirmation message passed")
		}
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrKeyConfirmation) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}

func FuzzState(f *testing.F) {
	g := newGroup(f, Config{Preset: Compact, Parties: 2, Threshold: 2})
	if _, _, err := g.round(f, 3, []int{1, 2}, []int{1, 2}, 5, rand.New(rand.NewPCG(1, 1))); err != nil {
		f.Fatal(err)
	}
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
		if err != nil {
			return
		}
		// What restores marshals back to the same bytes: one encoding per state.
		again, err := pt.MarshalState()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("restored state marshals to other bytes (%v)", err)
		}
	})
}
