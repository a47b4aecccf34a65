package secagg_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fl-secure/fl-secure/secagg"
	"github.com/fl-secure/fl-secure/secagg/secaggtest"
)

// completeGraphSucceeds predicts from the dropout pattern alone whether a
// round on the complete graph completes: every phase keeps enough clients,
// and every secret that must be recovered keeps Threshold holders.
func completeGraphSucceeds(p secagg.Params, drop []secaggtest.Phase) bool {
	count := func(after secaggtest.Phase) int {
		n := 0
		for _, d := range drop {
			if d == secaggtest.Stay || d > after {
				n++
			}
		}
		return n
	}
	advertised := count(secaggtest.BeforeAdvert)
	shared := count(secaggtest.AfterAdvert)
	masked := count(secaggtest.AfterShares)
	signed := count(secaggtest.AfterMaskedInput)
	unmasked := count(secaggtest.AfterConsistency)
	q := max(p.Threshold, (advertised+p.Corrupt)/2+1)
	t := p.Threshold
	// Every client that sent its masked input must sign (Unmask wants every
	// survivor's signature), and each secret needs t holders that unmask.
	return advertised >= t+1 && shared >= t+1 && masked >= q && masked-1 >= t &&
		masked >= p.MinSurvivors && signed == masked && unmasked-1 >= t
}

func TestPropertyRandomRounds(t *testing.T) {
	trials := 100
	if testing.Short() {
		trials = 25
	}
	r := rand.New(rand.NewPCG(77, 78))
	outcomes := map[string]int{}
	for trial := 0; trial < trials; trial++ {
		n := 3 + r.IntN(28)
		k := n - 1
		if r.IntN(2) == 0 && n > 5 {
			k = 2 + 2*r.IntN((n-3)/2) // sparse: even, below n−1
		}
		th := k/2 + 1 + r.IntN(k-k/2)
		c := 0
		if k == n-1 {
			c = r.IntN(th)
		}
		bits := 32 << r.IntN(2)
		floor := 0
		if r.IntN(3) == 0 {
			floor = n/2 + r.IntN(n/2+1)
		}
		p := secagg.Params{Round: uint64(trial), Clients: n, Threshold: th, Degree: k, Corrupt: c, MinSurvivors: floor, Length: 1 + r.IntN(50), Bits: bits}
		if err := p.Validate(); err != nil {
			t.Fatalf("generated invalid %+v: %v", p, err)
		}
		drop := make([]secaggtest.Phase, n)
		rate := r.Float64() * 0.4
		for i := range drop {
			if r.Float64() < rate {
				drop[i] = secaggtest.Phase(1 + r.IntN(5))
			}
		}
		inputs := randomInputs(r, n, p.Length, bits)
		res := secaggtest.Run(p, inputs, drop, uint64(trial))
		switch {
		case res.Err == nil:
			outcomes["ok"]++
			if !slices.Equal(res.Sum, plainSum(inputs, res.Survivors, bits)) {
				t.Fatalf("%+v drop %v: wrong sum", p, drop)
			}
			if len(res.Survivors) < max(p.Threshold, p.MinSurvivors) {
				t.Fatalf("%+v: sum of %d inputs opened, below t or the floor", p, len(res.Survivors))
			}
		case errors.Is(res.Err, secagg.ErrBelowThreshold):
			outcomes["below"]++
			if res.Sum != nil {
				t.Fatalf("%+v: failed round revealed a sum", p)
			}
		default:
			t.Fatalf("%+v drop %v: honest round failed with %v", p, drop, res.Err)
		}
		if k == n-1 {
			if want := completeGraphSucceeds(p, drop); want != (res.Err == nil) {
				t.Fatalf("%+v drop %v: predicted success %v, got err %v", p, drop, want, res.Err)
			}
		}
		if rate == 0 || !slices.ContainsFunc(drop, func(d secaggtest.Phase) bool { return d != secaggtest.Stay }) {
			if res.Err != nil {
				t.Fatalf("%+v: round without dropouts failed: %v", p, res.Err)
			}
		}
	}
	t.Logf("outcomes: %v", outcomes)
	if outcomes["ok"] == 0 || outcomes["below"] == 0 {
		t.Fatalf("the random rounds did not exercise both outcomes: %v", outcomes)
	}
}
