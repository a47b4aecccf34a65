package bench

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
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
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644); err != nil {
		return err
	}
	return plots(dir, rs)
}

func series(rs []Result, scenario, prefix, metric, param string) plotter.XYs {
	var pts plotter.XYs
	for _, r := range rs {
		if r.Scenario == scenario && strings.HasPrefix(r.Case, prefix) && r.Metric == metric {
			if x, ok := r.Params[param]; ok && !math.IsInf(x, 0) && r.Value > 0 {
				pts = append(pts, plotter.XY{X: x, Y: r.Value})
			}
		}
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].X < pts[j].X })
	return pts
}

func save(p *plot.Plot, path string) error { return p.Save(6*vg.Inch, 4*vg.Inch, path) }

func plots(dir string, rs []Result) error {
	// Server time against n, log-log.
	p := plot.New()
	p.Title.Text = "secagg server time vs clients (d = 1e4, 10% dropout)"
	p.X.Label.Text, p.Y.Label.Text = "clients n", "server time (ms)"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{}, plot.LogTicks{}
	var args []any
	for _, g := range []string{"secagg+", "complete"} {
		if pts := series(rs, "secagg", g+"/", "server time", "n"); len(pts) > 0 {
			args = append(args, g, onlyDropout(rs, g, pts))
		}
	}
	if len(args) > 0 {
		if err := plotutil.AddLinePoints(p, args...); err != nil {
			return err
		}
		if err := save(p, filepath.Join(dir, "secagg-server-vs-n.png")); err != nil {
			return err
		}
	}
	// Time against d.
	if pts := onlyN(rs, 100, "secagg+/"); len(pts) > 1 {
		p := plot.New()
		p.Title.Text = "SecAgg+ round cost vs update length (n = 100)"
		p.X.Label.Text, p.Y.Label.Text = "d", "time (ms)"
		p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
		p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{}, plot.LogTicks{}
		if err := plotutil.AddLinePoints(p, "server", pts["server time"], "client", pts["client time"]); err != nil {
			return err
		}
		if err := save(p, filepath.Join(dir, "secagg-time-vs-d.png")); err != nil {
			return err
		}
	}
	// Bytes per client per mode.
	var names []string
	var vals plotter.Values
	for _, r := range rs {
		if r.Metric == "bytes per client" || r.Metric == "bytes per site" {
			if r.Ratio > 0 {
				names = append(names, r.Scenario+" "+shortCase(r.Case))
				vals = append(vals, r.Ratio)
			}
		}
	}
	if len(vals) > 0 {
		p := plot.New()
		p.Title.Text = "bytes sent per client, as a multiple of the float32 update"
		p.Y.Label.Text = "× float32 bytes"
		bars, err := plotter.NewBarChart(vals, vg.Points(12))
		if err != nil {
			return err
		}
		p.Add(bars)
		p.NominalX(names...)
		p.X.Tick.Label.Rotation = 0.8
		p.X.Tick.Label.XAlign, p.X.Tick.Label.YAlign = -0.9, -0.5
		if err := p.Save(9*vg.Inch, 5*vg.Inch, filepath.Join(dir, "bytes-per-client.png")); err != nil {
			return err
		}
	}
	// Utility against ε.
	for _, data := range []string{"wdbc", "diabetes"} {
		var pts plotter.XYs
		var errs plotter.YErrors
		metric := ""
		for _, r := range rs {
			if r.Scenario == "utility" && strings.HasPrefix(r.Case, data+"/federated DP") && r.Metric != "AUC" {
				pts = append(pts, plotter.XY{X: r.Params["epsilon"], Y: r.Value})
				errs = append(errs, struct{ Low, High float64 }{r.Spread, r.Spread})
				metric = r.Metric
			}
		}
		if len(pts) == 0 {
			continue
		}
		p := plot.New()
		p.Title.Text = fmt.Sprintf("%s: federated secagg + DP (record level), mean ± sd over seeds", data)
		p.X.Label.Text, p.Y.Label.Text = "ε (δ = 1e-5, whole run)", metric
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{}
		line, scatter, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		eb, err := plotter.NewYErrorBars(struct {
			plotter.XYs
			plotter.YErrors
		}{pts, errs})
		if err != nil {
			return err
		}
		p.Add(line, scatter, eb)
		p.Legend.Add("federated DP", line)
		for ci, ref := range []string{"centralized", "best hospital alone", "federated no DP"} {
			for _, r := range rs {
				if r.Scenario == "utility" && r.Case == data+"/"+ref && r.Metric != "AUC" {
					hl := plotter.NewFunction(func(float64) float64 { return r.Value })
					hl.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
					hl.Color = plotutil.Color(ci + 1)
					p.Add(hl)
					p.Legend.Add(ref, hl)
				}
			}
		}
		p.Legend.Top = metric == "accuracy"
		if err := save(p, filepath.Join(dir, "utility-"+data+".png")); err != nil {
			return err
		}
	}
	return nil
}

// onlyDropout keeps the n-scan points (d = 1e4, 10% dropout).
func onlyDropout(rs []Result, g string, _ plotter.XYs) plotter.XYs {
	var pts plotter.XYs
	for _, r := range rs {
		if r.Scenario == "secagg" && strings.HasPrefix(r.Case, g+"/") && r.Metric == "server time" && r.Params["d"] == 10_000 && r.Params["dropout"] == 0.1 {
			pts = append(pts, plotter.XY{X: r.Params["n"], Y: r.Value})
		}
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].X < pts[j].X })
	return pts
}

func onlyN(rs []Result, n float64, prefix string) map[string]plotter.XYs {
	out := map[string]plotter.XYs{}
	for _, r := range rs {
		if r.Scenario == "secagg" && strings.HasPrefix(r.Case, prefix) && r.Params["n"] == n && r.Params["dropout"] == 0.1 {
			out[r.Metric] = append(out[r.Metric], plotter.XY{X: r.Params["d"], Y: r.Value})
		}
	}
	for k := range out {
		sort.Slice(out[k], func(i, j int) bool { return out[k][i].X < out[k][j].X })
	}
	if len(out["server time"]) < 2 {
		return nil
	}
	return out
}

func shortCase(c string) string {
	c = strings.ReplaceAll(c, "/dropout=0.1", "")
	return c
}
