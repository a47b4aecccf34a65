package he

import (
	"crypto/sha256"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
)

// A coordinator shows party 3 other terms than parties 1 and 2 (in
// fl-secure: a larger noise share, charged for as if every party added
// it). Party 3's submission carries its context, signed; the Aggregator
// will not add it to the others, and no decryptor — contributor or not —
// helps decrypt a sum whose submissions do not all carry the context it
// holds itself. A refusal does not spend the decryptor's round.
func TestDecryptShareChecksContext(t *testing.T) {
	g := newGroup(t, Config{Preset: Compact, Parties: 4, Threshold: 3, MinContributors: 2})
	ctxA := sha256.Sum256([]byte("terms shown to parties 1 and 2"))
	ctxB := sha256.Sum256([]byte("terms shown to party 3"))
	sub := func(id int, ctx [ContextSize]byte) []byte {
		b, err := g.parties[id-1].Encrypt(1, ctx, []float64{float64(id), 1}, NoNoise)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	s1, s2, s3 := sub(1, ctxA), sub(2, ctxA), sub(3, ctxB)

	agg, _ := NewAggregator(g.params, g.roster, g.crs, 1, ctxA)
	for _, s := range [][]byte{s1, s2} {
		if err := agg.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := agg.Add(s3); !errors.Is(err, ErrProtocol) {
		t.Errorf("Aggregator added a submission made under other terms: %v", err)
	}
	// The context is signed: a relay cannot rewrite it.
	forged := slices.Clone(s3)
	copy(forged[16:16+ContextSize], ctxA[:])
	if err := agg.Add(forged); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "signature") {
		t.Errorf("submission with a rewritten context: %v", err)
	}

	// A coordinator that skips the Aggregator.
	mixed := (&request{round: 1, decryptors: []int{1, 2, 3}, subs: [][]byte{s1, s2, s3}}).encode(g.params)
	for id, ctx := range map[int][ContextSize]byte{1: ctxA, 2: ctxA, 3: ctxB} {
		if _, err := g.parties[id-1].DecryptShare(mixed, ctx); !errors.Is(err, ErrRefused) {
			t.Errorf("party %d helped decrypt a sum made under mixed terms: %v", id, err)
		}
	}
	// Party 4 contributed nothing; it holds the round's terms as it was
	// shown them (B) and refuses a sum made under A.
	onlyA := (&request{round: 1, decryptors: []int{2, 3, 4}, subs: [][]byte{s1, s2}}).encode(g.params)
	if _, err := g.parties[3].DecryptShare(onlyA, ctxB); !errors.Is(err, ErrRefused) {
		t.Errorf("a decryptor shown other terms helped decrypt: %v", err)
	}
	// The refusals spent no round: with one set of terms the sum decrypts.
	req, err := agg.Request([]int{2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}
	var shares [][]byte
	for _, id := range []int{2, 3, 4} {
		sh, err := g.parties[id-1].DecryptShare(req, ctxA)
		if err != nil {
			t.Fatalf("party %d: %v", id, err)
		}
		shares = append(shares, sh)
	}
	got, err := agg.Combine(shares)
	if err != nil || math.Abs(got[0]-3) > 1e-3 || math.Abs(got[1]-2) > 1e-3 {
		t.Errorf("sum under one set of terms: %v, %v", got, err)
	}
}

func TestMinThreshold(t *testing.T) {
	for _, c := range []struct{ n, c, t int }{{3, 0, 2}, {5, 0, 3}, {5, 1, 4}, {5, 2, 4}, {5, 3, 5}, {7, 3, 6}, {10, 0, 6}, {10, 1, 6}, {10, 2, 7}} {
		if got := MinThreshold(c.n, c.c); got != c.t {
			t.Errorf("MinThreshold(%d, %d) = %d, want %d", c.n, c.c, got, c.t)
		}
	}
	// The smallest t with t > N/2 and 2t − N > c.
	for n := 2; n <= 64; n++ {
		for c := 0; c < n; c++ {
			th := MinThreshold(n, c)
			ok := func(t int) bool { return t > n/2 && 2*t-n > c }
			if !ok(th) || ok(th-1) {
				t.Fatalf("MinThreshold(%d, %d) = %d", n, c, th)
			}
		}
	}
}

// TestAttackTwoSumsOneColluder: five parties, party 5 colluding with the
// coordinator. It keeps a copy of its state and, restored from it, answers
// a second request in the same round. With t = 3 the sets {1,2,5} and
// {3,4,5} share only party 5: the coordinator decrypts the sum of all five
// updates and the sum without party 1, and their difference is party 1's
// update. With t = MinThreshold(5, 1) = 4 any two sets share two honest
// parties, who refuse.
func TestAttackTwoSumsOneColluder(t *testing.T) {
	for _, c := range []struct {
		th       int
		attackOK bool
	}{{3, true}, {MinThreshold(5, 1), false}} {
		g := newGroup(t, Config{Preset: Compact, Parties: 5, Threshold: c.th, MinContributors: 3})
		keys, _ := testKeys(5)
		rng := rand.New(rand.NewPCG(5, uint64(c.th)))
		updates := make([][]float64, 5)
		subs := make([][]byte, 5)
		for i := range updates {
			updates[i] = []float64{float64(rng.IntN(1000)) / 16, float64(rng.IntN(1000)) / 16}
			var err error
			if subs[i], err = g.parties[i].Encrypt(1, testContext, updates[i], NoNoise); err != nil {
				t.Fatal(err)
			}
		}
		saved, err := g.parties[4].MarshalState()
		if err != nil {
			t.Fatal(err)
		}
		decrypt := func(set, contributors []int) ([]float64, error) {
			agg, _ := NewAggregator(g.params, g.roster, g.crs, 1, testContext)
			for _, id := range contributors {
				if err := agg.Add(subs[id-1]); err != nil {
					t.Fatal(err)
				}
			}
			req, err := agg.Request(set)
			if err != nil {
				t.Fatal(err)
			}
			var shares [][]byte
			for _, id := range set {
				sh, err := g.parties[id-1].DecryptShare(req, testContext)
				if err != nil {
					return nil, err
				}
				shares = append(shares, sh)
			}
			return agg.Combine(shares)
		}
		setA := append(slices.Clone([]int{1, 2, 3, 4}[:c.th-1]), 5)
		setB := append(slices.Clone([]int{1, 2, 3, 4}[5-c.th:]), 5)
		all, err := decrypt(setA, []int{1, 2, 3, 4, 5})
		if err != nil {
			t.Fatal(err)
		}
		if g.parties[4], err = RestoreParty(g.params, keys[4], g.roster, saved); err != nil {
			t.Fatal(err)
		}
		rest, err := decrypt(setB, []int{2, 3, 4, 5})
		switch {
		case c.attackOK && err != nil:
			t.Errorf("t = %d: second decryption %v refused: %v", c.th, setB, err)
		case c.attackOK:
			d := []float64{all[0] - rest[0], all[1] - rest[1]}
			if math.Abs(d[0]-updates[0][0]) > 1e-3 || math.Abs(d[1]-updates[0][1]) > 1e-3 {
				t.Errorf("t = 3: difference %v, party 1's update %v", d, updates[0])
			}
			t.Logf("t = 3: sets %v and %v decrypted; their difference %v is party 1's update %v", setA, setB, d, updates[0])
		case !errors.Is(err, ErrRefused):
			t.Errorf("t = %d: second decryption over %v: %v, want a refusal", c.th, setB, err)
		default:
			t.Logf("t = %d: sets %v and %v share honest parties; the second is refused: %v", c.th, setA, setB, err)
		}
	}
}

// A saved state keeps its threshold: restored with parameters that need a
// larger one (the caller now assumes more colluders), it is refused; with
// smaller ones, the state's is used.
func TestRestoreKeepsThreshold(t *testing.T) {
	g := newGroup(t, Config{Preset: Compact, Parties: 5, Threshold: 3})
	keys, _ := testKeys(5)
	st, err := g.parties[0].MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	need4, err := NewParams(Config{Preset: Compact, Parties: 5, Threshold: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RestoreParty(need4, keys[0], g.roster, st); err == nil || !strings.Contains(err.Error(), "threshold 3 of 5") {
		t.Errorf("a t = 3 key restored where t ≥ 4 is needed: %v", err)
	}
	g4 := newGroup(t, Config{Preset: Compact, Parties: 5, Threshold: 4})
	st4, _ := g4.parties[0].MarshalState()
	pt, err := RestoreParty(g.params, keys[0], g4.roster, st4)
	if err != nil {
		t.Fatal(err)
	}
	if th := pt.Params().Config().Threshold; th != 4 {
		t.Errorf("restored with threshold %d, want the state's 4", th)
	}
	// A threshold changed in the state breaks its transcript hash.
	bad := slices.Clone(st4)
	bad[8+4+8] = 5
	if _, err := RestoreParty(g.params, keys[0], g4.roster, bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("state with its threshold changed: %v", err)
	}
}

// decryptionRound returns a round of 5 parties, t = 3, ready for the three
// decryptors' shares, and those shares.
func decryptionRound(t *testing.T, g *group, round uint64) (*Aggregator, [][]byte) {
	t.Helper()
	agg, _ := NewAggregator(g.params, g.roster, g.crs, round, testContext)
	if err := agg.SetRange(Range{MaxAbs: 5, Grid: 1.0 / 16}); err != nil {
		t.Fatal(err)
	}
	for id := 1; id <= 5; id++ {
		sub, err := g.parties[id-1].Encrypt(round, testContext, []float64{0.25, -0.5, 1}, NoNoise)
		if err != nil {
			t.Fatal(err)
		}
		if err := agg.Add(sub); err != nil {
			t.Fatal(err)
		}
	}
	req, err := agg.Request([]int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	var shares [][]byte
	for id := 1; id <= 3; id++ {
		sh, err := g.parties[id-1].DecryptShare(req, testContext)
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, sh)
	}
	return agg, shares
}

// ShareParty reads a share's round and party from its header alone;
// CheckShare checks the rest as Combine will.
func TestShareParty(t *testing.T) {
	g := newGroup(t, Config{Preset: Compact, Parties: 5, Threshold: 3})
	agg, shares := decryptionRound(t, g, 1)
	for i, sh := range shares {
		round, party, err := ShareParty(sh)
		if err != nil || round != 1 || party != i+1 {
			t.Errorf("share %d: round %d, party %d, %v", i+1, round, party, err)
		}
		if id, err := agg.CheckShare(sh); err != nil || id != i+1 {
			t.Errorf("share %d: CheckShare %d, %v", i+1, id, err)
		}
	}
	for cut := 0; cut < 20; cut++ {
		if _, _, err := ShareParty(shares[0][:cut]); !errors.Is(err, ErrMalformed) {
			t.Errorf("share header cut to %d bytes: %v", cut, err)
		}
	}
	for _, cut := range []int{20, 24, 1000, len(shares[0]) - 1} {
		if _, err := agg.CheckShare(shares[0][:cut]); !errors.Is(err, ErrMalformed) {
			t.Errorf("share cut to %d bytes passed CheckShare: %v", cut, err)
		}
	}
	if _, err := agg.CheckShare(append(slices.Clone(shares[0]), 0)); !errors.Is(err, ErrMalformed) {
		t.Errorf("extended share passed CheckShare: %v", err)
	}
	// Relabelled as party 2's: the header says so, and a transport that
	// knows the sender is party 1 drops it.
	relabel := slices.Clone(shares[0])
	relabel[16] = 2
	if _, party, _ := ShareParty(relabel); party != 2 {
		t.Errorf("relabelled share reads as party %d", party)
	}
	other := slices.Clone(shares[0])
	other[8] = 2 // round 2
	if _, err := agg.CheckShare(other); !errors.Is(err, ErrMalformed) {
		t.Errorf("share for another round passed CheckShare: %v", err)
	}
	outsider := slices.Clone(shares[0])
	outsider[16] = 4
	if _, err := agg.CheckShare(outsider); !errors.Is(err, ErrMalformed) {
		t.Errorf("share from a party not asked passed CheckShare: %v", err)
	}
	if _, _, err := ShareParty(g.parties[0].Advert()); !errors.Is(err, ErrMalformed) {
		t.Errorf("an advert read as a share: %v", err)
	}
}

// Nothing proves a decryption share. A well-formed all-zero share leaves
// −c1·λ_j·s_j in the sum, which the range check refuses; a decryptor that
// adds Δ·D to its honest share shifts the result by D, which passes when
// D keeps the sum in range: a decryptor can poison the sum as a
// contributor can, and learns nothing from it.
func TestWrongDecryptionShares(t *testing.T) {
	g := newGroup(t, Config{Preset: Compact, Parties: 5, Threshold: 3})
	want := []float64{1.25, -2.5, 5}

	agg, shares := decryptionRound(t, g, 1)
	zero := slices.Clone(shares[1])
	clear(zero[24:])
	if _, err := agg.CheckShare(zero); err != nil {
		t.Fatalf("a well-formed zero share: %v", err)
	}
	if out, err := agg.Combine([][]byte{shares[0], zero, shares[2]}); !errors.Is(err, ErrOutOfRange) || out != nil {
		t.Errorf("combined with a zero share: %v, %v", out, err)
	}

	agg, shares = decryptionRound(t, g, 2)
	p := g.params
	d := []float64{0.5, 0, 0}
	pt := hefloat.NewPlaintext(p.p, p.p.MaxLevel())
	pt.IsBatched = false
	pt.Scale = rlwe.NewScale(math.Exp2(float64(p.logS)))
	buf := make([]float64, p.p.N())
	copy(buf, d)
	if err := hefloat.NewEncoder(p.p).Encode(buf, pt); err != nil {
		t.Fatal(err)
	}
	r := newReader(shares[1], kindShare, p.cfg.Preset.ID, "share")
	r.take(16, "head")
	poly := r.poly(p.p.N(), p.p.Q(), "share")
	if r.err != nil {
		t.Fatal(r.err)
	}
	p.p.RingQ().Add(poly, pt.Value, poly)
	w := &writer{b: slices.Clone(shares[1][:24])}
	w.poly(poly)
	got, err := agg.Combine([][]byte{shares[0], w.b, shares[2]})
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i]+d[i] {
			t.Errorf("value %d: %v, want %v shifted by %v", i, got[i], want[i], d[i])
		}
	}
}
