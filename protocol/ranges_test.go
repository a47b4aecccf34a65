package protocol

import (
	"testing"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

// withTestRanges gives cfg public feature ranges if it has none: wdbc's
// embedded ones for the tests' 30-feature logistic model, and [−100, 100]
// for every column otherwise.
func withTestRanges(t testing.TB, cfg *CoordinatorConfig) {
	t.Helper()
	if cfg.Ranges != nil {
		return
	}
	if cfg.Features == 30 && (cfg.Model == "logistic" || cfg.Model == "") {
		rs, err := fl.BuiltinRanges("wdbc")
		if err != nil {
			t.Fatal(err)
		}
		d, _ := fl.LoadBuiltin("wdbc")
		if cfg.Ranges, err = rs.RangesFor(d); err != nil {
			t.Fatal(err)
		}
		return
	}
	dim := cfg.Features
	if cfg.Model == "linear" {
		dim++
	}
	for range dim {
		cfg.Ranges = append(cfg.Ranges, fl.Range{Lo: -100, Hi: 100})
	}
}

// statisticsSiteSigma is each site's noise share in the tests' hand-made
// statistics rounds: over 3 honest sites of wdbc's 30 features it costs
// well under ε = 1, so that a test's few releases stay inside a site's cap
// of 3.
const statisticsSiteSigma = 40

// noisedStatistics makes st, a hand-made statistics round over wdbc's 30
// features, what a coordinator with DP sends: record level, wdbc's public
// ranges, noise shares of statisticsSiteSigma.
func noisedStatistics(t testing.TB, st *wire.RoundStart) {
	t.Helper()
	cfg := CoordinatorConfig{Features: 30, Model: "logistic"}
	withTestRanges(t, &cfg)
	st.Mean, st.Scale = nil, nil
	for _, r := range cfg.Ranges {
		st.Mean, st.Scale = append(st.Mean, r.Mid()), append(st.Scale, r.HalfWidth())
	}
	st.Level, st.SiteSigma, st.Delta, st.Clip = string(dp.RecordLevel), statisticsSiteSigma, 1e-5, fl.StatsBound(30)
}
