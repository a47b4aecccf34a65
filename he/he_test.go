package he

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// testContext is the context of every test round: the digest of the terms
// every party was shown.
var testContext = sha256.Sum256([]byte("fl-secure he tests: round terms"))

type group struct {
	params  *Params
	parties []*Party
	roster  []ed25519.PublicKey
	crs     [32]byte
}

// newGroup runs the whole setup in memory.
func newGroup(t testing.TB, cfg Config) *group {
	t.Helper()
	g, _ := newGroupWithKey(t, cfg)
	return g
}

// round encrypts each contributor's update, aggregates, and decrypts with
// the given decryptors; it returns the decrypted sum and the exact sum.
func (g *group) round(t testing.TB, r uint64, contributors, decryptors []int, dim int, rng *rand.Rand) ([]float64, []float64, error) {
	t.Helper()
	agg, err := NewAggregator(g.params, g.roster, g.crs, r, testContext)
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
		sub, err := g.parties[c-1].Encrypt(r, testContext, v, NoNoise)
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
		sh, err := g.parties[d-1].DecryptShare(req, testContext)
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

func TestPresetsWithinStandard(t *testing.T) {
	for _, pr := range Presets {
		p, err := NewParams(Config{Preset: pr, Parties: 3, Threshold: 2})
		if err != nil {
			t.Fatalf("%s: %v", pr.Name, err)
		}
		if p.LogN() != pr.LogN || p.LogQP() > float64(pr.Bound) {
			t.Errorf("%s: LogN %d, log2 QP %.2f above the 128-bit bound %d", pr.Name, p.LogN(), p.LogQP(), pr.Bound)
		}
		want := map[int]int{12: 109, 13: 218, 14: 438, 15: 881}[pr.LogN]
		if pr.Bound != want {
			t.Errorf("%s: bound %d, the standard's is %d", pr.Name, pr.Bound, want)
		}
	}
}

func TestParamsRejects(t *testing.T) {
	for _, c := range []Config{
		{Preset: Preset{ID: 9, Name: "x"}, Parties: 5, Threshold: 3},
		{Preset: Compact, Parties: 1, Threshold: 1},
		{Preset: Compact, Parties: 5, Threshold: 2},
		{Preset: Compact, Parties: 5, Threshold: 6},
		{Preset: Compact, Parties: 5, Threshold: 3, MinContributors: 1},
		{Preset: Compact, Parties: 5, Threshold: 3, MaxAbsSum: -1},
		{Preset: Compact, Parties: 5, Threshold: 3, MaxAbsSum: 1e12},
		{Preset: Compact, Parties: 5, Threshold: 3, MaxDecryptions: -1},
	} {
		if _, err := NewParams(c); err == nil {
			t.Errorf("NewParams(%+v) accepted", c)
		}
	}
}

// Every preset decrypts a sum within its stated precision, for random
// contributor sets and random t-subsets of decryptors.
func TestRandomSubsets(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, pr := range []Preset{Compact, N13} {
		g := newGroup(t, Config{Preset: pr, Parties: 7, Threshold: 4, MinContributors: 2})
		for r := uint64(1); r <= 4; r++ {
			contrib := rng.Perm(7)[:2+rng.IntN(6)]
			dec := rng.Perm(7)[:4+rng.IntN(4)]
			for i := range contrib {
				contrib[i]++
			}
			for i := range dec {
				dec[i]++
			}
			sortInts(dec)
			got, want, err := g.round(t, r, contrib, dec, 1+rng.IntN(3*g.params.ValuesPerCiphertext()), rng)
			if err != nil {
				t.Fatalf("%s round %d (contributors %v, decryptors %v): %v", pr.Name, r, contrib, dec, err)
			}
			if e := maxErr(got, want); e > g.params.MaxError() {
				t.Errorf("%s round %d: max error %g above bound %g", pr.Name, r, e, g.params.MaxError())
			}
		}
	}
}

func sortInts(a []int) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// Dropouts: clients that never submit are left out; decryption needs t
// decryptors, and below that fails with ErrTooFewDecryptors.
func TestDropouts(t *testing.T) {
	g := newGroup(t, Config{Preset: Compact, Parties: 5, Threshold: 3, MinContributors: 2})
	rng := rand.New(rand.NewPCG(7, 8))
	// Two hospitals never submit; three decryptors remain.
	got, want, err := g.round(t, 1, []int{1, 3, 5}, []int{1, 3, 5}, 300, rng)
	if err != nil || maxErr(got, want) > g.params.MaxError() {
		t.Fatalf("with two offline: %v", err)
	}
	// Only two key holders remain: too few.
	_, _, err = g.round(t, 2, []int{1, 3, 5}, []int{1, 3}, 300, rng)
	if !errors.Is(err, ErrTooFewDecryptors) {
		t.Fatalf("two decryptors: %v", err)
	}
	// A decryptor that vanishes after the request: Combine fails, revealing
	// nothing, and the round cannot be retried with another set.
	agg, _ := NewAggregator(g.params, g.roster, g.crs, 3, testContext)
	for _, c := range []int{1, 2, 3} {
		sub, _ := g.parties[c-1].Encrypt(3, testContext, []float64{1, 2, 3}, NoNoise)
		agg.Add(sub)
	}
	req, err := agg.Request([]int{1, 2, 3, 4, 5})
	if err != nil {
		t.Fatal(err)
	}
	s1, _ := g.parties[0].DecryptShare(req, testContext)
	s2, _ := g.parties[1].DecryptShare(req, testContext)
	if _, err := agg.Combine([][]byte{s1, s2}); !errors.Is(err, ErrTooFewDecryptors) {
		t.Errorf("combine with two of three shares: %v", err)
	}
}

// The coordinator asks for one client's own ciphertext to be decrypted, or
// a sum of fewer than MinContributors clients: refused.
func TestSingleCiphertextRefused(t *testing.T) {
	g := newGroup(t, Config{Preset: Compact, Parties: 5, Threshold: 3})
	sub, err := g.parties[0].Encrypt(1, testContext, []float64{0.25, -0.5}, NoNoise)
	if err != nil {
		t.Fatal(err)
	}
	// A forged request: the aggregator would refuse, so build it by hand.
	req := (&request{round: 1, decryptors: []int{1, 2, 3}, subs: [][]byte{sub}}).encode(g.params)
	for _, d := range []int{1, 2, 3} {
		if _, err := g.parties[d-1].DecryptShare(req, testContext); !errors.Is(err, ErrRefused) {
			t.Errorf("party %d decrypted a single client's ciphertext: %v", d, err)
		}
	}
	// The same submission listed three times is not three clients.
	req = (&request{round: 1, decryptors: []int{1, 2, 3}, subs: [][]byte{sub, sub, sub}}).encode(g.params)
	if _, err := g.parties[1].DecryptShare(req, testContext); !errors.Is(err, ErrProtocol) {
		t.Errorf("duplicated submission: %v", err)
	}
	// A submission re-signed for another round cannot be replayed: the
	// request's round must match every submission's.
	other, _ := g.parties[1].Encrypt(2, testContext, []float64{1, 1}, NoNoise)
	third, _ := g.parties[2].Encrypt(2, testContext, []float64{1, 1}, NoNoise)
	req = (&request{round: 2, decryptors: []int{1, 2, 3}, subs: [][]byte{sub, other, third}}).encode(g.params)
	if _, err := g.parties[2].DecryptShare(req, testContext); !errors.Is(err, ErrProtocol) {
		t.Errorf("round-1 submission in a round-2 sum: %v", err)
	}
	// A party not named among the decryptors refuses.
	a, _ := NewAggregator(g.params, g.roster, g.crs, 5, testContext)
	for _, c := range []int{1, 2, 3} {
		s, _ := g.parties[c-1].Encrypt(5, testContext, []float64{1}, NoNoise)
		a.Add(s)
	}
	req, _ = a.Request([]int{1, 2, 3})
	if _, err := g.parties[4].DecryptShare(req, testContext); !errors.Is(err, ErrRefused) {
		t.Errorf("outsider decrypted: %v", err)
	}
}

func TestBadSubmissionsRejected(t *testing.T) {
	g := newGroup(t, Config{Preset: Compact, Parties: 3, Threshold: 2})
	sub, err := g.parties[0].Encrypt(1, testContext, []float64{1, 2, 3}, NoNoise)
	if err != nil {
		t.Fatal(err)
	}
	agg, _ := NewAggregator(g.params, g.roster, g.crs, 1, testContext)
	cases := map[string][]byte{
		"empty":      nil,
		"header":     sub[:8],
		"truncated":  sub[:len(sub)-1],
		"extended":   append(append([]byte{}, sub...), 0),
		"oversized":  append(append([]byte{}, sub[:len(sub)-64]...), append(make([]byte, 8*4096), sub[len(sub)-64:]...)...),
		"bad magic":  append([]byte("XLHE"), sub[4:]...),
		"bad preset": append(append(append([]byte{}, sub[:6]...), 2), sub[7:]...),
	}
	flip := append([]byte{}, sub...)
	flip[100] ^= 1
	cases["flipped bit"] = flip
	// A coefficient at or above the modulus, re-signed so that only the
	// range check can catch it.
	big := append([]byte{}, sub[:len(sub)-64]...)
	binary.LittleEndian.PutUint64(big[28+ContextSize:], g.params.p.Q()[0]) // the first residue
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	cases["residue at the modulus"] = append(big, ed25519.Sign(key, submissionDigest(g.crs, big[8:]))...)
	for name, b := range cases {
		if err := agg.Add(b); err == nil {
			t.Errorf("%s submission accepted", name)
		}
	}
	for i := 0; i < len(sub); i += 97 {
		if err := agg.Add(sub[:i]); err == nil {
			t.Fatalf("truncation to %d bytes accepted", i)
		}
	}
	if err := agg.Add(cases["residue at the modulus"]); !errors.Is(err, ErrMalformed) {
		t.Errorf("residue at the modulus: %v", err)
	}
	if err := agg.Add(sub); err != nil {
		t.Fatalf("valid submission: %v", err)
	}
	if err := agg.Add(sub); !errors.Is(err, ErrProtocol) {
		t.Errorf("second submission from one party: %v", err)
	}
	if _, err := g.parties[1].Encrypt(1, testContext, []float64{math.NaN()}, NoNoise); err == nil {
		t.Error("NaN encrypted")
	}
	if _, err := g.parties[1].Encrypt(1, testContext, []float64{1}, nil); err == nil {
		t.Error("nil noise accepted")
	}
}

// The stated precision holds for 2, 5 and 20 clients, every one
// contributing, values in [−1, 1].
func TestPrecisionByClients(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, n := range []int{2, 5, 20} {
		if testing.Short() && n == 20 {
			continue
		}
		g := newGroup(t, Config{Preset: Compact, Parties: n, Threshold: n/2 + 1})
		all := make([]int, n)
		for i := range all {
			all[i] = i + 1
		}
		got, want, err := g.round(t, 1, all, all, 2*g.params.ValuesPerCiphertext(), rng)
		if err != nil {
			t.Fatal(err)
		}
		e := maxErr(got, want)
		if e > g.params.MaxError() {
			t.Errorf("n=%d: max error %g above the bound %g", n, e, g.params.MaxError())
		}
		t.Logf("n=%d t=%d: max abs error %.3g, bound %.3g (%s)", n, n/2+1, e, g.params.MaxError(), g.params)
	}
}

// A party restored from its saved state decrypts, and still refuses a
// round it already helped decrypt before the restart.
func TestPartyStateSurvivesRestart(t *testing.T) {
	g := newGroup(t, Config{Preset: Compact, Parties: 3, Threshold: 2})
	rng := rand.New(rand.NewPCG(11, 12))
	if _, _, err := g.round(t, 1, []int{1, 2, 3}, []int{1, 2}, 100, rng); err != nil {
		t.Fatal(err)
	}
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	for i, pt := range g.parties {
		st, err := pt.MarshalState()
		if err != nil {
			t.Fatal(err)
		}
		k := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 1)}, 32))
		if g.parties[i], err = RestoreParty(g.params, k, g.roster, st); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			for _, cut := range []int{0, 7, 100, len(st) - 1} {
				if _, err := RestoreParty(g.params, key, g.roster, st[:cut]); !errors.Is(err, ErrMalformed) {
					t.Errorf("state cut to %d bytes: %v", cut, err)
				}
			}
		}
	}
	if _, _, err := g.round(t, 1, []int{1, 2, 3}, []int{1, 2}, 100, rng); !errors.Is(err, ErrRefused) {
		t.Errorf("round 1 again after restart: %v", err)
	}
	got, want, err := g.round(t, 2, []int{1, 2, 3}, []int{2, 3}, 100, rng)
	if err != nil || maxErr(got, want) > g.params.MaxError() {
		t.Errorf("round 2 after restart: %v", err)
	}
}

// Setup needs every party at every step: a missing or misordered message
// is refused, a message signed over another advert set is refused, and no
// party reveals before it holds all N commitments.
func TestSetupNeedsEveryParty(t *testing.T) {
	p, _ := NewParams(Config{Preset: Compact, Parties: 3, Threshold: 2})
	keys, roster := testKeys(3)
	parties := make([]*Party, 3)
	adverts := make([][]byte, 3)
	for i := range parties {
		parties[i], _ = NewParty(p, i+1, keys[i], roster)
		adverts[i] = parties[i].Advert()
	}
	if _, err := parties[0].Commit(adverts[:2]); !errors.Is(err, ErrProtocol) {
		t.Errorf("commit with 2 of 3 adverts: %v", err)
	}
	swapped := [][]byte{adverts[1], adverts[0], adverts[2]}
	if _, err := parties[0].Commit(swapped); !errors.Is(err, ErrProtocol) {
		t.Errorf("commit with adverts out of order: %v", err)
	}
	commits := make([][]byte, 3)
	for i := range parties {
		var err error
		if commits[i], err = parties[i].Commit(adverts); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := parties[0].Commit(adverts); !errors.Is(err, ErrProtocol) {
		t.Errorf("second commit: %v", err)
	}
	if _, err := parties[0].Reveal(commits[:2]); !errors.Is(err, ErrProtocol) {
		t.Errorf("reveal with 2 of 3 commitments: %v", err)
	}
	if _, err := parties[0].Reveal([][]byte{commits[0], commits[1], commits[1]}); !errors.Is(err, ErrProtocol) {
		t.Errorf("reveal with party 2's commitment in party 3's place: %v", err)
	}
	// A fresh party 3 with another nonce: its messages are bound to
	// another CRS, so the others refuse them.
	p3, _ := NewParty(p, 3, keys[2], roster)
	alt := [][]byte{adverts[0], adverts[1], p3.Advert()}
	c3, err := p3.Commit(alt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parties[0].Reveal([][]byte{commits[0], commits[1], c3}); !errors.Is(err, ErrProtocol) {
		t.Errorf("commitment over another advert set: %v", err)
	}
	reveals := make([][]byte, 3)
	for i := range parties {
		if reveals[i], err = parties[i].Reveal(commits); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := parties[0].Finish(reveals[:2]); !errors.Is(err, ErrProtocol) {
		t.Errorf("finish with 2 of 3 reveals: %v", err)
	}
	r3, err := p3.Reveal([][]byte{commits[0], commits[1], c3})
	if err == nil {
		t.Fatal("p3 revealed over commitments that are not its group's")
	}
	_ = r3
	confirms := make([][]byte, 3)
	for i := range parties {
		if confirms[i], err = parties[i].Finish(reveals); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := parties[0].Encrypt(1, testContext, []float64{1}, NoNoise); !errors.Is(err, ErrProtocol) {
		t.Errorf("encrypt before key confirmation: %v", err)
	}
	if _, err := parties[0].MarshalState(); !errors.Is(err, ErrProtocol) {
		t.Errorf("state before key confirmation: %v", err)
	}
	if err := parties[0].Confirm(confirms[:2]); !errors.Is(err, ErrProtocol) {
		t.Errorf("confirm with 2 of 3 messages: %v", err)
	}
	if err := parties[0].Confirm([][]byte{confirms[1], confirms[0], confirms[2]}); !errors.Is(err, ErrProtocol) {
		t.Errorf("confirm with messages out of order: %v", err)
	}
	for i, pt := range parties {
		if err := pt.Confirm(confirms); err != nil {
			t.Errorf("party %d: complete setup: %v", i+1, err)
		}
	}
	if parties[0].Transcript() != parties[2].Transcript() || parties[0].Transcript() == [32]byte{} {
		t.Error("parties finished with different transcripts")
	}
}

// Every truncation and every extension of a setup message or a saved
// state is refused.
func TestSetupAndStateBadLengths(t *testing.T) {
	p, parties, roster, msgs := setupMessages(t)
	crs := parties[0].CRS()
	try := func(name string, b []byte, step int, parse func([]byte) error) {
		t.Helper()
		for cut := 0; cut < len(b); cut += step {
			if parse(b[:cut]) == nil {
				t.Fatalf("%s cut to %d bytes accepted", name, cut)
			}
		}
		if parse(append(bytes.Clone(b), 0)) == nil {
			t.Fatalf("%s extended by a byte accepted", name)
		}
		if parse(b) != nil {
			t.Fatalf("%s itself refused", name)
		}
	}
	try("commitment", msgs[1][1], 1, func(b []byte) error {
		_, err := parseCommitments(p, roster, crs, [][]byte{msgs[1][0], b, msgs[1][2]})
		return err
	})
	try("reveal", msgs[2][1], 997, func(b []byte) error {
		_, err := parseReveals(p, roster, crs, parties[0].commits, [][]byte{msgs[2][0], b, msgs[2][2]})
		return err
	})
	cf := newConfirmation(p, parties[0].cpk, parties[0].transcript)
	try("key confirmation", msgs[3][1], 499, func(b []byte) error {
		return cf.check(p, roster, [][]byte{msgs[3][0], b, msgs[3][2]})
	})
	st, err := parties[1].MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := testKeys(3)
	try("state", st, 97, func(b []byte) error {
		_, err := RestoreParty(p, keys[1], roster, b)
		return err
	})
}
