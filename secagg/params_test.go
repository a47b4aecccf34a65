package secagg_test

import (
	"math"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/secagg"
)

func TestValidateNamesTheParameter(t *testing.T) {
	good := secagg.Params{Round: 1, Clients: 10, Threshold: 6, Degree: 9, Corrupt: 2, Length: 100, Bits: 32}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mutate func(*secagg.Params)
		want   string
	}{
		{func(p *secagg.Params) { p.Clients = 2 }, "Clients = 2"},
		{func(p *secagg.Params) { p.Clients = secagg.MaxClients + 1 }, "Clients ="},
		{func(p *secagg.Params) { p.Degree = 10 }, "Degree = 10"},
		{func(p *secagg.Params) { p.Degree = 1 }, "Degree = 1"},
		{func(p *secagg.Params) { p.Threshold = 4 }, "Threshold = 4 ≤ Degree/2"},
		{func(p *secagg.Params) { p.Threshold = 10 }, "Threshold = 10 exceeds Degree"},
		{func(p *secagg.Params) { p.Corrupt = 6 }, "Corrupt = 6 ≥ Threshold"},
		{func(p *secagg.Params) { p.Corrupt = -1 }, "Corrupt = -1"},
		{func(p *secagg.Params) { p.Degree = 5 }, "Degree = 5 is odd"},
		{func(p *secagg.Params) { p.Length = 0 }, "Length = 0"},
		{func(p *secagg.Params) { p.Length = secagg.MaxLength + 1 }, "Length ="},
		{func(p *secagg.Params) { p.Bits = 16 }, "Bits = 16"},
	} {
		p := good
		tc.mutate(&p)
		err := p.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want mention of %q", p, err, tc.want)
		}
		if _, err := secagg.NewServer(p, nil); err == nil {
			t.Errorf("%+v: NewServer accepted", p)
		}
	}
	// A sparse graph may assume more corrupt clients than its threshold.
	sparse := secagg.Params{Round: 1, Clients: 1000, Threshold: 18, Degree: 34, Corrupt: 50, Length: 1, Bits: 64}
	if err := sparse.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestRecommend(t *testing.T) {
	for _, tc := range []struct {
		n                   int
		dropout, corruption float64
	}{
		{100, 0.1, 0}, {500, 0.1, 0.05}, {1000, 0.05, 0.05}, {10000, 0.1, 0.05},
	} {
		pl, err := secagg.Recommend(tc.n, tc.dropout, tc.corruption, false)
		if err != nil {
			t.Fatal(err)
		}
		if pl.Degree >= tc.n-1 {
			t.Errorf("%+v: no sparse graph found (k = %d)", tc, pl.Degree)
		}
		if pl.SecurityFailureGround > math.Ldexp(1, -40) || pl.CorrectnessFailure > math.Ldexp(1, -20) {
			t.Errorf("%+v: plan %+v misses its targets", tc, pl)
		}
		if 2*pl.Threshold <= pl.Degree || pl.Threshold > pl.Degree {
			t.Errorf("%+v: unsafe threshold in %+v", tc, pl)
		}
		p := secagg.Params{Round: 1, Clients: tc.n, Threshold: pl.Threshold, Degree: pl.Degree, Corrupt: pl.Corrupt, Length: 1, Bits: 32}
		if err := p.Validate(); err != nil {
			t.Errorf("%+v: recommended parameters invalid: %v", tc, err)
		}
		// Polylogarithmic growth: far fewer neighbours than clients.
		if tc.n >= 10000 && pl.Degree > tc.n/20 {
			t.Errorf("%+v: degree %d is not logarithmic", tc, pl.Degree)
		}
	}
	full, err := secagg.Recommend(100, 0.1, 0.05, true)
	if err != nil || full.Degree != 99 || full.Threshold != 50 {
		t.Fatalf("complete graph: %+v, %v", full, err)
	}
	for _, bad := range [][3]float64{{2, 0, 0}, {100, -0.1, 0}, {100, 1, 0}, {100, 0.2, 0.2}, {100, math.NaN(), 0}} {
		if _, err := secagg.Recommend(int(bad[0]), bad[1], bad[2], false); err == nil {
			t.Errorf("Recommend%v accepted", bad)
		}
	}
}
