package he

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

type group struct {
	params  *Params
	parties []*Party
	roster  []ed25519.PublicKey
	crs     [32]byte
}

// newGroup runs the whole setup in memory.
func newGroup(t testing.TB, cfg Config) *group {
	t.Helper()
	p, err := NewParams(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.Parties
	keys := make([]ed25519.PrivateKey, n)
	roster := make([]ed25519.PublicKey, n)
	for i := range keys {
		keys[i] = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 1)}, 32))
		roster[i] = keys[i].Public().(ed25519.PublicKey)
	}
	g := &group{params: p, roster: roster}
	adverts := make([][]byte, n)
	for i := range keys {
		pt, err := NewParty(p, i+1, keys[i], roster)
		if err != nil {
			t.Fatal(err)
		}
		g.parties = append(g.parties, pt)
		adverts[i] = pt.Advert()
	}
	setup := make([][]byte, n)
	for i, pt := range g.parties {
		if setup[i], err = pt.Setup(adverts); err != nil {
			t.Fatal(err)
		}
	}
	for _, pt := range g.parties {
		if err := pt.Finish(setup); err != nil {
			t.Fatal(err)
		}
	}
	g.crs = g.parties[0].CRS()
	return g
}

// round encrypts each contributor's update, aggregates, and decrypts with
// the given decryptors; it returns the decrypted sum and the exact sum.
func (g *group) round(t testing.TB, r uint64, contributors, decryptors []int, dim int, rng *rand.Rand) ([]float64, []float64, error) {
	t.Helper()
	agg, err := NewAggregator(g.params, g.roster, g.crs, r)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float64, dim)
	for _, c := range contributors {
		v := make([]float64, dim)
		for j := range v {
			v[j] = rng.Float64()*2 - 1
			want[j] += v[j]
		}
		sub, err := g.parties[c-1].Encrypt(r, v, NoNoise)
		if err != nil {
			t.Fatal(err)
		}
		if err := agg.Add(sub); err != nil {
			t.Fatal(err)
		}
	}
	req, err := agg.Request(decryptors)
	if err != nil {
		return nil, want, err
	}
	var shares [][]byte
	for _, d := range decryptors[:g.params.cfg.Threshold] {
		sh, err := g.parties[d-1].DecryptShare(req)
		if err != nil {
			return nil, want, err
		}
		shares = append(shares, sh)
	}
	got, err := agg.Combine(shares)
	return got, want, err
}

func maxErr(a, b []float64) float64 {
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

func TestThresholdSum(t *testing.T) {
	g := newGroup(t, Config{Preset: Compact, Parties: 5, Threshold: 3})
	t.Log(g.params)
	rng := rand.New(rand.NewPCG(1, 2))
	got, want, err := g.round(t, 1, []int{1, 2, 3, 4, 5}, []int{2, 4, 5}, 5000, rng)
	if err != nil {
		t.Fatal(err)
	}
	if e := maxErr(got, want); e > g.params.MaxError() {
		t.Errorf("max error %g above the bound %g", e, g.params.MaxError())
	} else {
		t.Logf("max error %.3g (bound %.3g)", e, g.params.MaxError())
	}
}

func TestDoubleDecryptionRefused(t *testing.T) {
	g := newGroup(t, Config{Preset: Compact, Parties: 5, Threshold: 3})
	rng := rand.New(rand.NewPCG(3, 4))
	if _, _, err := g.round(t, 7, []int{1, 2, 3, 4}, []int{1, 2, 3}, 100, rng); err != nil {
		t.Fatal(err)
	}
	// A second sum in the same round (say, without party 4) must be refused
	// by the decryptor both sets share.
	_, _, err := g.round(t, 7, []int{1, 2, 3}, []int{3, 4, 5}, 100, rng)
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("second decryption in round 7: %v", err)
	}
}
