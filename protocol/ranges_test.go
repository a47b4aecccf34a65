package protocol

import (
	"testing"

	"github.com/fl-secure/fl-secure/fl"
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
