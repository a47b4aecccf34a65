package secagg_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/secagg"
	"github.com/fl-secure/fl-secure/secagg/secaggtest"
)

func randomInputs(r *rand.Rand, n, d, bits int) [][]uint64 {
	in := make([][]uint64, n)
	for i := range in {
		in[i] = make([]uint64, d)
		for j := range in[i] {
			in[i][j] = r.Uint64()
			if bits == 32 {
				in[i][j] &= 0xffffffff
			}
		}
	}
	return in
}

func plainSum(inputs [][]uint64, ids []uint32, bits int) []uint64 {
	sum := make([]uint64, len(inputs[0]))
	for _, id := range ids {
		for j, x := range inputs[id-1] {
			sum[j] += x
		}
	}
	if bits == 32 {
		for j := range sum {
			sum[j] &= 0xffffffff
		}
	}
	return sum
}

func TestRoundNoDropout(t *testing.T) {
	for _, tc := range []struct{ n, k, t, bits int }{
		{5, 4, 3, 32}, {10, 9, 6, 64}, {20, 6, 4, 32}, {21, 6, 4, 64}, {21, 20, 11, 32},
	} {
		p := secagg.Params{Round: 7, Clients: tc.n, Threshold: tc.t, Degree: tc.k, Length: 37, Bits: tc.bits}
		r := rand.New(rand.NewPCG(1, uint64(tc.n)))
		inputs := randomInputs(r, tc.n, p.Length, tc.bits)
		res := secaggtest.Run(p, inputs, make([]secaggtest.Phase, tc.n), 3)
		if res.Err != nil {
			t.Fatalf("%+v: %v", tc, res.Err)
		}
		if want := plainSum(inputs, res.Survivors, tc.bits); !slices.Equal(res.Sum, want) {
			t.Fatalf("%+v: sum mismatch", tc)
		}
		if len(res.Survivors) != tc.n {
			t.Fatalf("%+v: %d survivors", tc, len(res.Survivors))
		}
	}
}

func TestRoundDropoutEveryPhase(t *testing.T) {
	p := secagg.Params{Round: 1, Clients: 12, Threshold: 6, Degree: 11, Length: 100, Bits: 32}
	r := rand.New(rand.NewPCG(2, 2))
	inputs := randomInputs(r, p.Clients, p.Length, p.Bits)
	drop := []secaggtest.Phase{
		secaggtest.BeforeAdvert, secaggtest.AfterAdvert, secaggtest.AfterShares,
		secaggtest.AfterConsistency,
	}
	drop = append(drop, make([]secaggtest.Phase, p.Clients-len(drop))...)
	res := secaggtest.Run(p, inputs, drop, 9)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	// Clients that sent masked inputs are in the sum: ids 4, 5..12.
	if want := []uint32{4, 5, 6, 7, 8, 9, 10, 11, 12}; !slices.Equal(res.Survivors, want) {
		t.Fatalf("survivors %v, want %v", res.Survivors, want)
	}
	if !slices.Equal(res.Sum, plainSum(inputs, res.Survivors, p.Bits)) {
		t.Fatal("sum mismatch")
	}

	// A client that drops between its masked input and its signature fails
	// the round: its input is in the running sum, but it never signed the
	// survivor set, so nobody reveals its self-mask shares.
	drop[4] = secaggtest.AfterMaskedInput
	res = secaggtest.Run(p, inputs, drop, 9)
	if !errors.Is(res.Err, secagg.ErrBelowThreshold) || !strings.Contains(res.Err.Error(), "survivor 5 did not sign") {
		t.Fatalf("err = %v, want ErrBelowThreshold naming survivor 5", res.Err)
	}
	if res.Sum != nil {
		t.Fatal("a failed round revealed a sum")
	}
}

func TestRoundBelowThreshold(t *testing.T) {
	p := secagg.Params{Round: 1, Clients: 6, Threshold: 4, Degree: 5, Length: 8, Bits: 64}
	inputs := randomInputs(rand.New(rand.NewPCG(3, 3)), p.Clients, p.Length, p.Bits)
	drop := []secaggtest.Phase{secaggtest.AfterShares, secaggtest.AfterShares, secaggtest.AfterShares, 0, 0, 0}
	res := secaggtest.Run(p, inputs, drop, 1)
	if !errors.Is(res.Err, secagg.ErrBelowThreshold) {
		t.Fatalf("err = %v, want ErrBelowThreshold", res.Err)
	}
	if res.Sum != nil {
		t.Fatal("a sum was revealed below threshold")
	}
}
