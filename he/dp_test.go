package he

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/dp/dptest"
)

// The clients' DP noise shares reach the decrypted sum: with every client
// sending zeros plus its share, the sum's sample variance over d coordinates
// is n·σ_local², within 5 standard errors (false failure below 1e-6).
func TestDPNoiseInSum(t *testing.T) {
	const n, th, d = 5, 3, 8192
	g := newGroup(t, Config{Preset: Compact, Parties: n, Threshold: th})
	target := 0.5 // σ the honest survivors must reach
	local := target / math.Sqrt(float64(th))
	gg, err := dp.NewGridGaussian(local, -20)
	if err != nil {
		t.Fatal(err)
	}
	s, err := dp.NewSampler(dptest.Rand(42))
	if err != nil {
		t.Fatal(err)
	}
	agg, _ := NewAggregator(g.params, g.roster, g.crs, 1, testContext)
	for i := 0; i < n; i++ {
		sub, err := g.parties[i].Encrypt(1, testContext, make([]float64, d), DPNoise(gg, s))
		if err != nil {
			t.Fatal(err)
		}
		if err := agg.Add(sub); err != nil {
			t.Fatal(err)
		}
	}
	req, _ := agg.Request([]int{1, 2, 3})
	var shares [][]byte
	for _, id := range []int{1, 2, 3} {
		sh, err := g.parties[id-1].DecryptShare(req, testContext)
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, sh)
	}
	sum, err := agg.Combine(shares)
	if err != nil {
		t.Fatal(err)
	}
	var ss float64
	for _, x := range sum {
		ss += x * x
	}
	v := ss / d
	want := n * local * local
	if se := want * math.Sqrt(2.0/d); math.Abs(v-want) > 5*se {
		t.Errorf("variance of the decrypted noise %v, want %v ± %v", v, want, 5*se)
	}
	// Every client's noisy value left the grid only by CKKS error.
	if e := g.params.MaxError(); e > 1e-3*local {
		t.Errorf("CKKS error bound %v is not small against the DP noise σ %v", e, local)
	}
	_ = rand.New
}
