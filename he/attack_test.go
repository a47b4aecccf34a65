package he

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"
)

// testKeys returns the deterministic identities of n test parties.
func testKeys(n int) ([]ed25519.PrivateKey, []ed25519.PublicKey) {
	keys := make([]ed25519.PrivateKey, n)
	roster := make([]ed25519.PublicKey, n)
	for i := range keys {
		keys[i] = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 1)}, 32))
		roster[i] = keys[i].Public().(ed25519.PublicKey)
	}
	return keys, roster
}

// ceremony runs setup step by step for parties; between steps, tamper (if
// set) may change the messages every party is about to receive. It returns
// the first error, with the party that met it.
func ceremony(parties []*Party, tamper func(step string, msgs [][]byte)) (int, error) {
	msgs := make([][]byte, len(parties))
	for i, pt := range parties {
		msgs[i] = pt.Advert()
	}
	steps := []struct {
		name string
		f    func(*Party, [][]byte) ([]byte, error)
	}{{"adverts", (*Party).Commit}, {"commitments", (*Party).Reveal}, {"reveals", (*Party).Finish}}
	for _, s := range steps {
		if tamper != nil {
			tamper(s.name, msgs)
		}
		next := make([][]byte, len(parties))
		for i, pt := range parties {
			var err error
			if next[i], err = s.f(pt, msgs); err != nil {
				return i + 1, err
			}
		}
		msgs = next
	}
	if tamper != nil {
		tamper("confirmations", msgs)
	}
	for i, pt := range parties {
		if err := pt.Confirm(msgs); err != nil {
			return i + 1, err
		}
	}
	return 0, nil
}

// newGroupWithKey runs setup like newGroup and also returns the collective
// secret key's coefficients, centred, which no party keeps: the ground
// truth for the key-recovery tests.
func newGroupWithKey(t testing.TB, cfg Config) (*group, []int64) {
	t.Helper()
	p, err := NewParams(cfg)
	if err != nil {
		t.Fatal(err)
	}
	keys, roster := testKeys(cfg.Parties)
	g := &group{params: p, roster: roster}
	for i := range keys {
		pt, err := NewParty(p, i+1, keys[i], roster)
		if err != nil {
			t.Fatal(err)
		}
		g.parties = append(g.parties, pt)
	}
	rq := p.p.RingQ()
	s := rq.NewPoly()
	for _, pt := range g.parties {
		rq.Add(s, pt.sk.Value.Q, s)
	}
	if id, err := ceremony(g.parties, nil); err != nil {
		t.Fatalf("party %d: %v", id, err)
	}
	g.crs = g.parties[0].CRS()
	return g, centred(p, s)
}

// centred returns the coefficients of a key held in NTT and Montgomery
// form, as integers in (−q/2, q/2].
func centred(p *Params, key ring.Poly) []int64 {
	rq := p.p.RingQ()
	c := rq.NewPoly()
	rq.IMForm(key, c)
	rq.INTT(c, c)
	q := p.p.Q()[0]
	out := make([]int64, p.p.N())
	for j, v := range c.Coeffs[0] {
		if v > q/2 {
			out[j] = -int64(q - v)
		} else {
			out[j] = int64(v)
		}
	}
	return out
}

// constPoly returns the constant polynomial 2^e, in the NTT domain: 2^e
// mod each modulus in every coefficient.
func constPoly(p *Params, e int) ring.Poly {
	rq := p.p.RingQ()
	c := rq.NewPoly()
	v := new(big.Int).Lsh(big.NewInt(1), uint(e))
	for i, q := range p.p.Q() {
		r := new(big.Int).Mod(v, new(big.Int).SetUint64(q)).Uint64()
		for j := range c.Coeffs[i] {
			c.Coeffs[i][j] = r
		}
	}
	return c
}

// forgeSubmission builds a correctly signed submission from party id whose
// every ciphertext is (c0, c1): what a malicious hospital can send, since
// nothing proves a ciphertext was formed by encryption.
func forgeSubmission(g *group, key ed25519.PrivateKey, id int, round uint64, dim int, c0, c1 ring.Poly) []byte {
	p := g.params
	n := p.p.N()
	k := (dim + n - 1) / n
	w := newWriter(kindSubmission, p.cfg.Preset.ID, 24+ContextSize+k*p.CiphertextBytes()+64)
	w.u64(round)
	w.b = append(w.b, testContext[:]...)
	w.u32(uint32(id))
	w.u32(uint32(dim))
	w.u32(uint32(k))
	for c := 0; c < k; c++ {
		w.poly(c0)
		w.poly(c1)
	}
	return append(w.b, ed25519.Sign(key, submissionDigest(g.crs, w.b[8:]))...)
}

// maliciousRound runs a round of 5 parties, t = 3, in which parties 1–4
// submit honest updates of dim values (each value in [−1, 1] on the grid
// 2^−8) and party 5 submits the signed pair (0, 2^e) in every ciphertext.
// It returns what Combine returns, and the honest sum.
func maliciousRound(t *testing.T, g *group, round uint64, dim, e int, rng *Range) ([]float64, []float64, error) {
	t.Helper()
	keys, _ := testKeys(5)
	agg, err := NewAggregator(g.params, g.roster, g.crs, round, testContext)
	if err != nil {
		t.Fatal(err)
	}
	if rng != nil {
		if err := agg.SetRange(*rng); err != nil {
			t.Fatal(err)
		}
	}
	r := rand.New(rand.NewPCG(21, round))
	want := make([]float64, dim)
	for id := 1; id <= 4; id++ {
		v := make([]float64, dim)
		for j := range v {
			v[j] = float64(r.IntN(513)-256) / 256
			want[j] += v[j]
		}
		sub, err := g.parties[id-1].Encrypt(round, testContext, v, NoNoise)
		if err != nil {
			t.Fatal(err)
		}
		if err := agg.Add(sub); err != nil {
			t.Fatal(err)
		}
	}
	zero := g.params.p.RingQ().NewPoly()
	bad := forgeSubmission(g, keys[4], 5, round, dim, zero, constPoly(g.params, e))
	if err := agg.Add(bad); err != nil {
		t.Fatalf("the coordinator refused the malformed submission at Add: %v", err)
	}
	req, err := agg.Request([]int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	var shares [][]byte
	for _, id := range []int{1, 2, 3} {
		sh, err := g.parties[id-1].DecryptShare(req, testContext)
		if err != nil {
			t.Fatalf("decryptor %d: %v", id, err)
		}
		shares = append(shares, sh)
	}
	out, err := agg.Combine(shares)
	return out, want, err
}

// recovered counts the coefficients of the key s that round(v_j·scale)
// gives, over the first len(v).
func recovered(v []float64, s []int64, scale float64) int {
	match := 0
	for j := range v {
		if int64(math.Round(v[j]*scale)) == s[j] {
			match++
		}
	}
	return match
}

// A malicious hospital submits the signed pair (0, 2^(logScale+8)): the
// decrypted sum then holds 256·s beside the honest updates, and whoever
// saw it would round the collective secret key s out of it. Combine checks
// every coefficient, guards included, and withholds the result, naming the
// round.
func TestAttackMalformedCiphertextKeyRecovery(t *testing.T) {
	g, s := newGroupWithKey(t, Config{Preset: Compact, Parties: 5, Threshold: 3})
	vpc := g.params.ValuesPerCiphertext()
	e := g.params.LogScale() + 8
	for i, c := range []struct {
		name string
		dim  int
		rng  *Range
	}{
		{"one full ciphertext, MaxAbsSum only", vpc, nil},
		{"unused coefficients", vpc - 7, nil},
		{"two ciphertexts, round's range and grid", 2*vpc - 100, &Range{MaxAbs: 4, Grid: 0x1p-8}},
	} {
		t.Run(c.name, func(t *testing.T) {
			round := uint64(1 + i)
			out, _, err := maliciousRound(t, g, round, c.dim, e, c.rng)
			if err == nil {
				t.Fatalf("the decrypted sum reveals the collective secret key: %d of its first %d coefficients recovered",
					recovered(out[:min(vpc, len(out))], s, 1.0/256), min(vpc, len(out)))
			}
			if !errors.Is(err, ErrOutOfRange) || out != nil {
				t.Fatalf("Combine: %d values, error %v; want none and ErrOutOfRange", len(out), err)
			}
			if want := fmt.Sprintf("round %d:", round); !strings.Contains(err.Error(), want) {
				t.Errorf("the error does not name the round (%q): %v", want, err)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// What the check lets through. A key-dependent term too small for the
// guard coefficients to see (here 2^e·s with 6·2^e below the CKKS error
// bound) passes; without a grid it reaches the caller below the honest
// values' precision, where it shows key coefficients. With the round's grid
// the result is the honest sum exactly, bit for bit: nothing that depends
// on the key is left. A term large enough to matter (64·s, well inside
// MaxAbsSum = 1024) is refused by the guards whatever the range.
func TestMalformedCiphertextLimits(t *testing.T) {
	g, s := newGroupWithKey(t, Config{Preset: Compact, Parties: 5, Threshold: 3})
	vpc := g.params.ValuesPerCiphertext()
	logS := g.params.LogScale()

	if _, _, err := maliciousRound(t, g, 1, vpc, logS+6, nil); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("64·s with the range left at MaxAbsSum: %v", err)
	}

	tol := g.params.ckksTolerance(zRound(g.params.p.N()), 3)
	e := int(math.Floor(math.Log2(tol / 12)))
	out, want, err := maliciousRound(t, g, 2, vpc, e, &Range{MaxAbs: 4})
	if err != nil {
		t.Fatalf("2^%d·s without a grid: %v", e, err)
	}
	diff := make([]float64, vpc)
	for j := range out {
		diff[j] = out[j] - want[j]
	}
	t.Logf("no grid: the term 2^%d·s (below the CKKS error %.3g) passes; rounding the result's difference from the grid gives %d of %d key coefficients",
		e-logS, tol/math.Exp2(float64(logS)), recovered(diff, s, math.Exp2(float64(logS-e))), vpc)

	out, want, err = maliciousRound(t, g, 3, vpc, e, &Range{MaxAbs: 4, Grid: 0x1p-8})
	if err != nil {
		t.Logf("with the grid: refused (%v)", err)
		return
	}
	for j := range out {
		if out[j] != want[j] {
			t.Fatalf("with the grid, value %d is %v, the honest sum %v: something else than the honest sum was released", j, out[j], want[j])
		}
	}
	t.Log("with the grid: the result is exactly the honest sum")
}

// Honest rounds pass the range check at its tightest: values on a grid,
// with DP noise, at the edge of MaxAbs; the result is exactly the grid sum.
func TestRangeHonestRoundsPass(t *testing.T) {
	for _, pr := range []Preset{Compact, N13} {
		t.Run(pr.Name, func(t *testing.T) { testRangeHonestRoundsPass(t, pr) })
	}
}

func testRangeHonestRoundsPass(t *testing.T, pr Preset) {
	g := newGroup(t, Config{Preset: pr, Parties: 5, Threshold: 3})
	n := g.params.ValuesPerCiphertext()
	rng := rand.New(rand.NewPCG(31, 32))
	const gamma = 0x1p-8
	rounds := uint64(3)
	if pr.LogN > 12 {
		rounds = 1
	}
	for round := uint64(1); round <= rounds; round++ {
		dim := 1 + rng.IntN(3*n)
		agg, _ := NewAggregator(g.params, g.roster, g.crs, round, testContext)
		if err := agg.SetRange(Range{MaxAbs: 5, Sigma: 0.5, Grid: gamma}); err != nil {
			t.Fatal(err)
		}
		want := make([]float64, dim)
		for id := 1; id <= 5; id++ {
			v := make([]float64, dim)
			for j := range v {
				// ±1 at the edge of the clip, plus noise on the grid.
				v[j] = float64(1-2*(j%2)) + math.Round(rng.NormFloat64()*0.5/gamma)*gamma
				want[j] += v[j]
			}
			sub, err := g.parties[id-1].Encrypt(round, testContext, v, NoNoise)
			if err != nil {
				t.Fatal(err)
			}
			if err := agg.Add(sub); err != nil {
				t.Fatal(err)
			}
		}
		req, _ := agg.Request([]int{1, 2, 3, 4, 5})
		var shares [][]byte
		for _, id := range []int{1, 2, 3} {
			sh, err := g.parties[id-1].DecryptShare(req, testContext)
			if err != nil {
				t.Fatal(err)
			}
			shares = append(shares, sh)
		}
		got, err := agg.Combine(shares)
		if err != nil {
			t.Fatalf("round %d (%d values): honest sum refused: %v", round, dim, err)
		}
		for j := range got {
			if got[j] != want[j] {
				t.Fatalf("round %d: value %d is %v, want exactly %v", round, j, got[j], want[j])
			}
		}
	}
}

func TestSetRangeRejects(t *testing.T) {
	g := newGroup(t, Config{Preset: Compact, Parties: 3, Threshold: 2})
	agg, _ := NewAggregator(g.params, g.roster, g.crs, 1, testContext)
	for _, r := range []Range{
		{MaxAbs: -1}, {MaxAbs: math.NaN()}, {MaxAbs: math.Inf(1)},
		{Sigma: -1}, {Sigma: math.NaN()},
		{Grid: 0.3}, {Grid: -0.5}, {Grid: 2048},
		{Grid: 0x1p-12}, // too fine for the CKKS error of Compact at MaxAbsSum 1024
	} {
		if err := agg.SetRange(r); err == nil {
			t.Errorf("SetRange(%+v) accepted", r)
		}
	}
	if err := agg.SetRange(Range{MaxAbs: 3, Sigma: 1, Grid: 0x1p-8}); err != nil {
		t.Error(err)
	}
}

// The party whose setup message comes last would set its public-key share
// to p' − Σ(honest shares), for a p' whose secret only it knows, making the
// collective key p'. It must commit before anyone reveals, so by the time
// it sees the honest shares its own is fixed: a reveal that differs from
// its commitment is refused by every honest party, with an error naming it.
func TestAttackRogueKeySetup(t *testing.T) {
	const n = 5
	p, err := NewParams(Config{Preset: Compact, Parties: n, Threshold: 3})
	if err != nil {
		t.Fatal(err)
	}
	keys, roster := testKeys(n)
	parties := make([]*Party, n)
	for i := range parties {
		if parties[i], err = NewParty(p, i+1, keys[i], roster); err != nil {
			t.Fatal(err)
		}
	}
	var adverts, commits [][]byte
	var rogueSK *rlwe.SecretKey
	_, err = ceremony(parties, func(step string, msgs [][]byte) {
		switch step {
		case "adverts":
			adverts = slices2(msgs)
		case "commitments":
			commits = slices2(msgs)
			// No honest party reveals without all five commitments.
			if _, err := parties[0].Reveal(msgs[:4]); !errors.Is(err, ErrProtocol) {
				t.Errorf("party 1 revealed with 4 of 5 commitments: %v", err)
			}
		case "reveals":
			// The rogue party 5 has seen parties 1–4's reveals.
			msgs[4], rogueSK = rogueReveal(t, p, parties[0].CRS(), keys[4], msgs)
		}
	})
	var se *SetupError
	if !errors.As(err, &se) || len(se.Parties) != 1 || se.Parties[0] != 5 || !errors.Is(err, ErrProtocol) {
		if err == nil {
			t.Fatalf("every honest party accepted the rogue key share; party 5 alone decrypts: %s", rogueDecrypts(t, p, parties, roster, rogueSK))
		}
		t.Fatalf("setup error %v, want a SetupError naming party 5", err)
	}
	t.Logf("refused: %v", err)
	// The relay (coordinator) finds the culprit from what it relayed.
	reveals := make([][]byte, n)
	for i := range reveals {
		reveals[i] = parties[i].reveal
	}
	reveals[4], _ = rogueReveal(t, p, parties[0].CRS(), keys[4], reveals)
	if err := CheckReveals(p, roster, adverts, commits, reveals); !errors.As(err, &se) || se.Parties[0] != 5 {
		t.Errorf("CheckReveals: %v, want a SetupError naming party 5", err)
	}
}

func slices2(m [][]byte) [][]byte {
	out := make([][]byte, len(m))
	for i := range m {
		out[i] = bytes.Clone(m[i])
	}
	return out
}

// rogueReveal returns party 5's reveal with its public-key share replaced
// by p' − Σ(parties 1–4's shares), p' a share of a fresh secret it returns,
// signed with its key.
func rogueReveal(t *testing.T, p *Params, crs [32]byte, key ed25519.PrivateKey, reveals [][]byte) ([]byte, *rlwe.SecretKey) {
	t.Helper()
	rq := p.p.RingQ()
	polyLen := p.p.N() * len(p.p.Q()) * 8
	honest := rq.NewPoly()
	for i := 0; i < len(reveals)-1; i++ {
		r := &reader{b: reveals[i][12 : 12+polyLen], what: "pk share"}
		rq.Add(honest, r.poly(p.p.N(), p.p.Q(), "pk share"), honest)
	}
	sk := rlwe.NewKeyGenerator(p.p).GenSecretKeyNew()
	ckg, c := crp(p, crs)
	share := ckg.AllocateShare()
	ckg.GenShare(sk, c, &share)
	rogue := rq.NewPoly()
	rq.Sub(share.Value.Q, honest, rogue)
	last := reveals[len(reveals)-1]
	body := bytes.Clone(last[:len(last)-ed25519.SignatureSize])
	pw := &writer{}
	pw.poly(rogue)
	copy(body[12:], pw.b)
	return append(body, ed25519.Sign(key, signedBytes(domainSetup, groupHeader(p), crs[:], body[8:]))...), sk
}

// rogueDecrypts shows party 1's update decrypted with the rogue secret.
func rogueDecrypts(t *testing.T, p *Params, parties []*Party, roster []ed25519.PublicKey, sk *rlwe.SecretKey) string {
	want := []float64{0.5, -0.25, 0.125}
	sub, err := parties[0].Encrypt(1, testContext, want, NoNoise)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := parseSubmission(p, roster, parties[0].CRS(), sub)
	if err != nil {
		t.Fatal(err)
	}
	ct := rlwe.NewCiphertext(p.p, 1, p.p.MaxLevel())
	ct.Value[0].Copy(sb.cts[0][0])
	ct.Value[1].Copy(sb.cts[0][1])
	ct.IsNTT = true
	ct.Scale = rlwe.NewScale(math.Exp2(float64(p.logS)))
	pt := rlwe.NewDecryptor(p.p, sk).DecryptNew(ct)
	pt.IsBatched = false
	got := make([]float64, p.p.N())
	if err := hefloat.NewEncoder(p.p).Decode(pt, got); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%.4f decrypted, %.4f sent", got[:3], want)
}

// A party whose signed reveal differs from its signed commitment is named;
// a reveal with a bad signature (which the relay could have altered) is
// refused without blaming anyone.
func TestSetupNamesRevealNotMatchingCommitment(t *testing.T) {
	p, _ := NewParams(Config{Preset: Compact, Parties: 3, Threshold: 2})
	keys, roster := testKeys(3)
	for _, c := range []struct {
		name  string
		edit  func(crs [32]byte, r []byte) []byte
		blame bool
	}{
		{"re-signed after a change", func(crs [32]byte, r []byte) []byte {
			body := bytes.Clone(r[:len(r)-ed25519.SignatureSize])
			body[100] ^= 1
			return append(body, ed25519.Sign(keys[1], signedBytes(domainSetup, groupHeader(p), crs[:], body[8:]))...)
		}, true},
		{"changed, signature kept", func(crs [32]byte, r []byte) []byte {
			b := bytes.Clone(r)
			b[100] ^= 1
			return b
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			parties := make([]*Party, 3)
			for i := range parties {
				parties[i], _ = NewParty(p, i+1, keys[i], roster)
			}
			_, err := ceremony(parties, func(step string, msgs [][]byte) {
				if step == "reveals" {
					msgs[1] = c.edit(parties[0].CRS(), msgs[1])
				}
			})
			var se *SetupError
			if got := errors.As(err, &se); got != c.blame || !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v: SetupError %v, want %v", err, got, c.blame)
			}
			if c.blame && (len(se.Parties) != 1 || se.Parties[0] != 2) {
				t.Fatalf("names parties %v, want [2]", se.Parties)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// A dealer whose Shamir shares do not lie on one polynomial of degree t−1,
// or whose shares are of another secret than its public-key share's, is
// caught by key confirmation at the end of setup, at every party.
func TestSetupCatchesInconsistentShares(t *testing.T) {
	for _, c := range []struct {
		name   string
		n, t   int
		deal   func(to int, share ring.Poly, rq *ring.Ring)
		reason string
	}{
		{"one share off the polynomial", 5, 3, func(to int, share ring.Poly, rq *ring.Ring) {
			if to == 5 {
				share.Coeffs[0][7]++
			}
		}, "one polynomial"},
		{"shares of another secret", 5, 3, func(to int, share ring.Poly, rq *ring.Ring) {
			for i := range share.Coeffs {
				share.Coeffs[i][0] = (share.Coeffs[i][0] + 1) % rq.SubRings[i].Modulus
			}
		}, "known value"},
		{"N = t, one share off", 3, 3, func(to int, share ring.Poly, rq *ring.Ring) {
			if to == 2 {
				share.Coeffs[0][3]++
			}
		}, "known value"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, _ := NewParams(Config{Preset: Compact, Parties: c.n, Threshold: c.t})
			keys, roster := testKeys(c.n)
			parties := make([]*Party, c.n)
			for i := range parties {
				parties[i], _ = NewParty(p, i+1, keys[i], roster)
			}
			rq := p.p.RingQ()
			parties[c.n-1].deal = func(to int, sh *mhe.ShamirSecretShare) { c.deal(to, sh.Poly.Q, rq) }
			id, err := ceremony(parties, nil)
			if !errors.Is(err, ErrKeyConfirmation) || !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("party %d: %v, want ErrKeyConfirmation (%s)", id, err, c.reason)
			}
			if id != 1 {
				t.Errorf("party %d was the first to notice, want party 1", id)
			}
			t.Logf("party %d: %v", id, err)
		})
	}
}

// A group set up with MinContributors 5 keeps refusing sums of fewer
// clients after a restore, whatever Params the caller restores with: the
// state, not the caller, holds the group's MinContributors.
func TestAttackLowerMinContributorsOnRestore(t *testing.T) {
	g := newGroup(t, Config{Preset: Compact, Parties: 5, Threshold: 3, MinContributors: 5})
	low, err := NewParams(Config{Preset: Compact, Parties: 5, Threshold: 3, MinContributors: 2})
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := testKeys(5)
	for i, pt := range g.parties {
		st, err := pt.MarshalState()
		if err != nil {
			t.Fatal(err)
		}
		if g.parties[i], err = RestoreParty(low, keys[i], g.roster, st); err != nil {
			t.Fatal(err)
		}
		if m := g.parties[i].MinContributors(); m != 5 {
			t.Errorf("party %d restored with MinContributors %d, want the group's 5", i+1, m)
		}
	}
	agg, _ := NewAggregator(low, g.roster, g.crs, 1, testContext)
	for _, id := range []int{1, 2} {
		sub, _ := g.parties[id-1].Encrypt(1, testContext, []float64{float64(id)}, NoNoise)
		if err := agg.Add(sub); err != nil {
			t.Fatal(err)
		}
	}
	req, err := agg.Request([]int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	var shares [][]byte
	for _, id := range []int{1, 2, 3} {
		sh, err := g.parties[id-1].DecryptShare(req, testContext)
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Errorf("decryptor %d: %v, want ErrRefused", id, err)
			}
			t.Logf("decryptor %d: %v", id, err)
			continue
		}
		shares = append(shares, sh)
	}
	if len(shares) > 0 {
		out, err := agg.Combine(shares)
		t.Fatalf("after a restore with MinContributors 2, %d decryptors helped decrypt a sum of 2 clients in a group set up with 5: %v (%v)", len(shares), out, err)
	}
	// Editing the floor in the saved state breaks its transcript hash.
	st, _ := g.parties[0].MarshalState()
	off := 8 + 4 + 28
	st[off] = 2
	if _, err := RestoreParty(low, keys[0], g.roster, st); !errors.Is(err, ErrMalformed) {
		t.Errorf("state with its minimum contributors edited to 2: %v", err)
	}
}

// The group's MinContributors is the largest any party states, whatever
// the others (or the coordinator) asked for.
func TestGroupMinContributorsIsLargest(t *testing.T) {
	keys, roster := testKeys(5)
	parties := make([]*Party, 5)
	for i := range parties {
		m := 3
		if i == 3 {
			m = 4
		}
		p, err := NewParams(Config{Preset: Compact, Parties: 5, Threshold: 3, MinContributors: m})
		if err != nil {
			t.Fatal(err)
		}
		parties[i], _ = NewParty(p, i+1, keys[i], roster)
	}
	if id, err := ceremony(parties, nil); err != nil {
		t.Fatalf("party %d: %v", id, err)
	}
	for i, pt := range parties {
		if pt.MinContributors() != 4 {
			t.Errorf("party %d: MinContributors %d, want 4", i+1, pt.MinContributors())
		}
	}
}
