package bench

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/stat"
)

// Finish derives what needs several results: each end-to-end mode's round
// time and bytes as ratios to plain in the same run.
func Finish(rs []Result) []Result {
	plain := map[string]float64{}
	for _, r := range rs {
		if r.Scenario == "e2e" && strings.HasPrefix(r.Case, "plain/") {
			plain[r.Metric+"|"+strings.TrimPrefix(r.Case, "plain/")] = r.Value
		}
	}
	for i, r := range rs {
		if r.Scenario != "e2e" || strings.HasPrefix(r.Case, "plain/") {
			continue
		}
		_, rest, _ := strings.Cut(r.Case, "/")
		if b, ok := plain[r.Metric+"|"+rest]; ok && r.Metric == "round time" {
			rs[i].Baseline, rs[i].Ratio = b, ratio(r.Value, b)
		}
	}
	return rs
}

// Exponent fits log y = a·log x + b by least squares and returns a: the
// scaling exponent of a metric against a parameter over the results that
// match scenario, metric and the case prefix.
func Exponent(rs []Result, scenario, casePrefix, metric, param string) (float64, int) {
	var xs, ys []float64
	for _, r := range rs {
		if r.Scenario == scenario && strings.HasPrefix(r.Case, casePrefix) && strings.HasSuffix(r.Case, "/d=10000/dropout=0.1") && r.Metric == metric && r.Value > 0 {
			xs = append(xs, math.Log(r.Params[param]))
			ys = append(ys, math.Log(r.Value))
		}
	}
	if len(xs) < 2 {
		return math.NaN(), len(xs)
	}
	_, a := stat.LinearRegression(xs, ys, nil, false)
	return a, len(xs)
}

func fmtNum(x float64) string {
	switch {
	case x == 0:
		return ""
	case math.IsInf(x, 0):
		return "∞"
	case math.Abs(x) >= 1e6:
		return strconv.FormatFloat(x, 'e', 3, 64)
	case math.Abs(x) >= 100:
		return strconv.FormatFloat(x, 'f', 0, 64)
	case math.Abs(x) >= 1:
		return strconv.FormatFloat(x, 'f', 2, 64)
	}
	return strconv.FormatFloat(x, 'g', 3, 64)
}

// Markdown writes one table per scenario, then the fitted exponents.
func Markdown(w io.Writer, rs []Result) {
	var order []string
	by := map[string][]Result{}
	for _, r := range rs {
		if _, ok := by[r.Scenario]; !ok {
			order = append(order, r.Scenario)
		}
		by[r.Scenario] = append(by[r.Scenario], r)
	}
	for _, s := range order {
		fmt.Fprintf(w, "\n### %s\n\n| case | metric | value | unit | baseline | ratio | spread |\n|---|---|---|---|---|---|---|\n", s)
		for _, r := range by[s] {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", r.Case, r.Metric, fmtNum(r.Value), r.Unit, fmtNum(r.Baseline), fmtNum(r.Ratio), fmtNum(r.Spread))
		}
	}
	if a, k := Exponent(rs, "secagg", "secagg+/", "server time", "n"); k >= 2 {
		fmt.Fprintf(w, "\nSecAgg+ server time ∝ n^%.2f (fitted over %d values of n, d = 1e4, 10%% dropout).\n", a, k)
	}
	if a, k := Exponent(rs, "secagg", "complete/", "server time", "n"); k >= 2 {
		fmt.Fprintf(w, "SecAgg (complete graph) server time ∝ n^%.2f (fitted over %d values of n).\n", a, k)
	}
}

// WriteFiles writes results.csv, results.json and the plots to dir.
func WriteFiles(dir string, rs []Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "results.csv"))
	if err != nil {
		return err
	}
	cw := csv.NewWriter(f)
	cw.Write([]string{"scenario", "case", "metric", "unit", "value", "baseline", "ratio", "spread", "params"})
	for _, r := range rs {
		var ps []string
		keys := make([]string, 0, len(r.Params))
		for k := range r.Params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ps = append(ps, k+"="+strconv.FormatFloat(r.Params[k], 'g', -1, 64))
		}
		g := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
		cw.Write([]string{r.Scenario, r.Case, r.Metric, r.Unit, g(r.Value), g(r.Baseline), g(r.Ratio), g(r.Spread), strings.Join(ps, " ")})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	f.Close()
	var b bytes.Buffer
	if err := WriteJSON(&b, rs); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b.Bytes(), 0o644); err != nil {
		return err
	}
	return Plots(dir, rs)
}

// WriteJSON writes rs to w as an indented JSON array, the format of
// results.json. JSON has no infinity: a parameter that is infinite (the ε
// of a model trained without DP) is left out.
func WriteJSON(w io.Writer, rs []Result) error {
	clean := make([]Result, len(rs))
	for i, r := range rs {
		clean[i] = r
		clean[i].Params = map[string]float64{}
		for k, v := range r.Params {
			if !math.IsInf(v, 0) {
				clean[i].Params[k] = v
			}
		}
	}
	b, err := json.MarshalIndent(clean, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// ReadJSON reads results written by WriteJSON or WriteFiles from the
// file at path.
func ReadJSON(path string) ([]Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var rs []Result
	if err := d.Decode(&rs); err != nil {
		off := d.InputOffset()
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			off = se.Offset
		case errors.As(err, &te):
			off = te.Offset
		}
		line := 1 + bytes.Count(b[:min(int(off), len(b))], []byte("\n"))
		return nil, fmt.Errorf("%s: line %d: not a results file: %v", path, line, err)
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("%s: no results", path)
	}
	for i, r := range rs {
		if r.Scenario == "" || r.Case == "" || r.Metric == "" || math.IsNaN(r.Value) {
			return nil, fmt.Errorf("%s: result %d has no scenario, case, metric or value", path, i+1)
		}
	}
	return rs, nil
}
