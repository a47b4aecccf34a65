package he

import (
	"crypto/ed25519"
	"math"
	"testing"

	"github.com/tuneinsight/lattigo/v5/ring"
)

// TestLimitReplayOfAnotherHospitalsCiphertext documents what he mode does
// NOT protect (SECURITY.md, "Threshold CKKS"): a malicious hospital, even
// with an honest coordinator, can expose another hospital's individual
// input. A decryptor receives every contributor's ciphertext in the
// decryption request. In a later round it
// submits, signed under its OWN id for that round and context, an integer
// multiple K of a victim's ciphertext from the earlier round. Nothing binds
// a ciphertext to its round, sender or context (only the signature over the
// bytes is checked), and a scaled honest encryption is well formed: it passes
// the guards, the grid and the range. The published sum of the later round
// is H + K·m_victim, from which the victim's earlier individual input is read
// off exactly.
//
// Here the earlier round is the (noise-free, "opened over one survivor set
// only, ever") statistics round, and the later one a record-level training
// round, whose range is MaxAbsSum = 2^40 -- exactly as protocol/henet.go sets
// them (N13, MaxAbsSum 2^40, statistics grid 2^-16, training grid 2^-24).
func TestLimitReplayOfAnotherHospitalsCiphertext(t *testing.T) {
	cfg := Config{Preset: N13, Parties: 5, Threshold: 3, MinContributors: 3, MaxAbsSum: 1 << 40}
	g, _ := newGroupWithKey(t, cfg)
	keys, _ := testKeys(5)
	const victim, attacker = 4, 1

	// Round 1: statistics (count, Σx_f, Σx_f², F = 3), grid 2^-16, no noise.
	ctx1 := [ContextSize]byte{1}
	stats := func(id int) []float64 {
		v := []float64{float64(1000 + 37*id)}
		for f := 0; f < 3; f++ {
			v = append(v, math.Round(float64(id*(f+3))*123.456*65536)/65536)
			v = append(v, math.Round(float64(id*id*(f+7))*4567.891*65536)/65536)
		}
		return v
	}
	agg1, _ := NewAggregator(g.params, g.roster, g.crs, 101, ctx1)
	if err := agg1.SetRange(Range{Grid: math.Exp2(-16)}); err != nil {
		t.Fatal(err)
	}
	for id := 1; id <= 5; id++ {
		sub, err := g.parties[id-1].Encrypt(101, ctx1, stats(id), NoNoise)
		if err != nil {
			t.Fatal(err)
		}
		if err := agg1.Add(sub); err != nil {
			t.Fatal(err)
		}
	}
	req1, err := agg1.Request([]int{1, 2, 3, 4, 5})
	if err != nil {
		t.Fatal(err)
	}
	var sh1 [][]byte
	for _, id := range []int{1, 2, 3} {
		s, err := g.parties[id-1].DecryptShare(req1, ctx1)
		if err != nil {
			t.Fatal(err)
		}
		sh1 = append(sh1, s)
	}
	if _, err := agg1.Combine(sh1); err != nil {
		t.Fatal(err)
	}

	// The attacker (decryptor 1) keeps the victim's ciphertext from req1:
	// the request format is public; parsing it needs no secret.
	q, err := parseRequest(g.params, req1)
	if err != nil {
		t.Fatal(err)
	}
	var vct [][2]ring.Poly
	for _, b := range q.subs {
		s, err := parseSubmission(g.params, g.roster, g.crs, b)
		if err != nil {
			t.Fatal(err)
		}
		if s.party == victim {
			vct = s.cts
		}
	}

	// Round 2: record-level training, dim 40, grid 2^-24; parties 2..5
	// honest, party 1 submits K·ct_victim(round 1) signed as its own.
	const round2, dim, K = 202, 40, 1 << 20
	ctx2 := [ContextSize]byte{2}
	agg2, _ := NewAggregator(g.params, g.roster, g.crs, round2, ctx2)
	if err := agg2.SetRange(Range{Grid: math.Exp2(-24), Sigma: 0.5}); err != nil {
		t.Fatal(err)
	}
	for id := 2; id <= 5; id++ {
		v := make([]float64, dim)
		for j := range v {
			v[j] = math.Round(math.Sin(float64(id*j+1))*(1<<24)) / (1 << 24)
		}
		sub, err := g.parties[id-1].Encrypt(round2, ctx2, v, NoNoise)
		if err != nil {
			t.Fatal(err)
		}
		if err := agg2.Add(sub); err != nil {
			t.Fatal(err)
		}
	}
	p := g.params
	rq := p.p.RingQ()
	w := newWriter(kindSubmission, p.cfg.Preset.ID, 24+ContextSize+p.CiphertextBytes()+64)
	w.u64(round2)
	w.b = append(w.b, ctx2[:]...)
	w.u32(attacker)
	w.u32(dim)
	w.u32(1)
	for _, part := range vct[0] {
		c := rq.NewPoly()
		rq.MulScalar(part, K, c)
		w.poly(c)
	}
	forged := append(w.b, ed25519.Sign(keys[attacker-1], submissionDigest(g.crs, w.b[8:]))...)
	if err := agg2.Add(forged); err != nil {
		t.Fatalf("coordinator refused the replayed ciphertext: %v", err)
	}
	req2, err := agg2.Request([]int{1, 2, 3, 4, 5})
	if err != nil {
		t.Fatal(err)
	}
	var sh2 [][]byte
	for _, id := range []int{1, 2, 3} {
		s, err := g.parties[id-1].DecryptShare(req2, ctx2)
		if err != nil {
			t.Fatalf("decryptor %d refused: %v", id, err)
		}
		sh2 = append(sh2, s)
	}
	pub, err := agg2.Combine(sh2)
	if err != nil {
		t.Fatalf("Combine refused: %v", err)
	}
	want := stats(victim)
	exact := 0
	for j, x := range want {
		got := math.Round(pub[j]/K*65536) / 65536
		t.Logf("victim stat %d: true %.6f  recovered %.6f", j, x, got)
		if got == x {
			exact++
		}
	}
	// The limit holds as documented: if this starts failing, a defence has
	// been built, and SECURITY.md's "Not protected" must change with it.
	if exact != len(want) {
		t.Errorf("the replay no longer recovers party %d's input (%d/%d values): update SECURITY.md", victim, exact, len(want))
	}
}
