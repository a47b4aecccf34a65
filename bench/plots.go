package bench

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Plot geometry. Plots are rendered at dpi dots per inch with margin
// around the image; a legend sits right of the data area, legendGap
// away from it, so that it never hides data.
const (
	dpi       = 144
	margin    = vg.Length(8)
	legendGap = vg.Length(12)
)

// A figure is one PNG: a plot's axes and data, and around them its title,
// axis labels and legend. fl-secure places the labels itself: gonum
// centres an axis label at the middle of the data values, which on a log
// axis is not the middle of the axis, and squeezes the data area to fit.
type figure struct {
	file                  string
	title, xlabel, ylabel string
	p                     *plot.Plot
	legend                plot.Legend
	legendText            []string
	w, h                  vg.Length
	// eps are the measured ε of a utility plot, each an x tick label.
	eps []float64
	// values are the numbers written at the end of bars.
	values *plotter.Labels
}

// A layout says where a figure's parts land on the image.
type layout struct {
	image  vg.Rectangle // the whole image
	data   draw.Canvas  // the data area, inside the axes
	axes   draw.Canvas  // the axes and the data area
	legend vg.Rectangle // empty when there is no legend
	title  vg.Point     // top centre of the title
	xlabel vg.Point     // bottom centre of the x-axis label
	ylabel vg.Point     // centre of the y-axis label, drawn upwards
}

func newFigure(file, title string, w, h vg.Length) *figure {
	p := plot.New()
	p.Title.TextStyle.Font.Size = vg.Points(13)
	p.X.Label.TextStyle.Font.Size = vg.Points(12)
	p.Y.Label.TextStyle.Font.Size = vg.Points(12)
	p.Y.Label.TextStyle.Rotation = math.Pi / 2
	p.Y.Label.TextStyle.XAlign, p.Y.Label.TextStyle.YAlign = draw.XCenter, draw.YTop
	p.X.Label.TextStyle.XAlign, p.X.Label.TextStyle.YAlign = draw.XCenter, draw.YBottom
	p.Title.TextStyle.XAlign, p.Title.TextStyle.YAlign = draw.XCenter, draw.YTop
	p.X.Tick.Label.Font.Size, p.Y.Tick.Label.Font.Size = vg.Points(11), vg.Points(11)
	l := plot.NewLegend()
	l.Top, l.Left = true, true
	l.TextStyle.Font.Size = vg.Points(11)
	l.Padding = vg.Points(5)
	return &figure{file: file, title: title, p: p, legend: l, w: w, h: h}
}

// addLegend names th in the legend.
func (f *figure) addLegend(name string, th ...plot.Thumbnailer) {
	f.legend.Add(name, th...)
	f.legendText = append(f.legendText, name)
}

const labelGap = vg.Length(6)

func (f *figure) layout(c draw.Canvas) layout {
	l := layout{image: c.Rectangle}
	c = draw.Crop(c, margin, -margin, margin, -margin)
	inner := c
	l.title = vg.Point{X: c.Center().X, Y: c.Max.Y}
	if f.title != "" {
		inner.Max.Y -= f.p.Title.TextStyle.Height(f.title) + labelGap
	}
	if f.xlabel != "" {
		inner.Min.Y += f.p.X.Label.TextStyle.Height(f.xlabel) + labelGap
	}
	if f.ylabel != "" {
		inner.Min.X += f.p.Y.Label.TextStyle.Height(f.ylabel) + labelGap
	}
	lw := f.legend.Rectangle(c).Size().X
	if lw > 0 {
		inner.Max.X -= lw + legendGap
	}
	l.axes = inner
	l.data = f.p.DataCanvas(inner)
	l.xlabel = vg.Point{X: l.data.Center().X, Y: c.Min.Y}
	l.ylabel = vg.Point{X: c.Min.X, Y: l.data.Center().Y}
	if lw > 0 {
		l.legend = f.legend.Rectangle(draw.Canvas{Canvas: c.Canvas, Rectangle: vg.Rectangle{
			Min: vg.Point{X: c.Max.X - lw, Y: l.data.Min.Y},
			Max: vg.Point{X: c.Max.X, Y: l.data.Max.Y},
		}})
	}
	return l
}

func (f *figure) draw(c draw.Canvas) {
	l := f.layout(c)
	f.p.Draw(l.axes)
	if f.title != "" {
		c.FillText(f.p.Title.TextStyle, l.title, f.title)
	}
	if f.xlabel != "" {
		c.FillText(f.p.X.Label.TextStyle, l.xlabel, f.xlabel)
	}
	if f.ylabel != "" {
		c.FillText(f.p.Y.Label.TextStyle, l.ylabel, f.ylabel)
	}
	if l.legend.Size().X > 0 {
		f.legend.Draw(draw.Canvas{Canvas: c.Canvas, Rectangle: l.legend})
	}
}

// canvas returns a blank image of the figure's size.
func (f *figure) canvas() *vgimg.Canvas {
	return vgimg.NewWith(vgimg.UseWH(f.w, f.h), vgimg.UseDPI(dpi))
}

func (f *figure) writePNG(w io.Writer) error {
	img := f.canvas()
	f.draw(draw.New(img))
	_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w)
	return err
}

// Plots writes the PNG plots of rs to dir: secure aggregation's server
// time against the number of clients and its cost against the update
// length, the bytes each client sends, and model quality against ε. Each
// file is written in full under a temporary name and then renamed, so a
// failed run leaves the previous plot in place.
func Plots(dir string, rs []Result) error {
	figs, err := figures(rs)
	if err != nil {
		return err
	}
	for _, f := range figs {
		tmp, err := os.CreateTemp(dir, "."+f.file+".*")
		if err != nil {
			return err
		}
		err = f.writePNG(tmp)
		if err == nil {
			err = tmp.Chmod(0o644)
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), filepath.Join(dir, f.file))
		}
		if err != nil {
			os.Remove(tmp.Name())
			return fmt.Errorf("bench: %s: %w", filepath.Join(dir, f.file), err)
		}
	}
	return nil
}

// figures builds every plot there are results for.
func figures(rs []Result) ([]*figure, error) {
	var out []*figure
	for _, build := range []func([]Result) (*figure, error){serverVsN, timeVsD, bytesPerClient} {
		f, err := build(rs)
		if err != nil {
			return nil, err
		}
		if f != nil {
			out = append(out, f)
		}
	}
	for _, data := range []string{"wdbc", "diabetes"} {
		f, err := utilityPlot(rs, data)
		if err != nil {
			return nil, err
		}
		if f != nil {
			out = append(out, f)
		}
	}
	return out, nil
}

// addLine adds a line with points in the i-th plotutil style and names it
// in the legend.
func (f *figure) addLine(i int, name string, pts plotter.XYs) error {
	l, s, err := plotter.NewLinePoints(pts)
	if err != nil {
		return err
	}
	l.Color, l.Dashes, l.Width = plotutil.Color(i), plotutil.Dashes(i), vg.Points(1.5)
	s.Color, s.Shape, s.Radius = plotutil.Color(i), plotutil.Shape(i), vg.Points(3.5)
	f.p.Add(l, s)
	f.addLegend(name, l, s)
	return nil
}

// logAxes puts both axes on log scales with logTicks, over ranges that
// start and end at a whole digit times a power of ten around the data.
func (f *figure) logAxes(pts ...plotter.XYs) {
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range pts {
		for _, p := range s {
			xmin, xmax = math.Min(xmin, p.X), math.Max(xmax, p.X)
			ymin, ymax = math.Min(ymin, p.Y), math.Max(ymax, p.Y)
		}
	}
	f.p.X.Scale, f.p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	f.p.X.Tick.Marker, f.p.Y.Tick.Marker = logTicks{}, logTicks{}
	f.p.X.Min, f.p.X.Max = floorDigit(xmin), ceilDigit(xmax)
	f.p.Y.Min, f.p.Y.Max = floorDigit(ymin), ceilDigit(ymax)
}

// serverVsN plots secure aggregation's server time against the number of
// clients on log–log axes, with the fitted scaling exponents.
func serverVsN(rs []Result) (*figure, error) {
	f := newFigure("secagg-server-vs-n.png", "Secure aggregation: server time per round vs clients", 7.5*vg.Inch, 4.5*vg.Inch)
	f.xlabel = "clients n (log scale; d = 10⁴, 10 % drop out after sharing keys)"
	f.ylabel = "server time per round (ms, log scale)"
	var all []plotter.XYs
	for i, g := range []struct{ prefix, name string }{{"secagg+", "SecAgg+ (sparse graph)"}, {"complete", "SecAgg (complete graph)"}} {
		pts := onlyDropout(rs, g.prefix)
		if len(pts) == 0 {
			continue
		}
		name := g.name
		if a, k := Exponent(rs, "secagg", g.prefix+"/", "server time", "n"); k >= 2 {
			name += fmt.Sprintf(": fit n^%.2f", a)
		}
		if err := f.addLine(i, name, pts); err != nil {
			return nil, err
		}
		all = append(all, pts)
	}
	if len(all) == 0 {
		return nil, nil
	}
	f.logAxes(all...)
	return f, nil
}

// timeVsD plots SecAgg+'s server and client time against the update
// length at n = 100.
func timeVsD(rs []Result) (*figure, error) {
	pts := onlyN(rs, 100, "secagg+/")
	if pts == nil {
		return nil, nil
	}
	f := newFigure("secagg-time-vs-d.png", "SecAgg+: time per round vs update length (n = 100)", 7.5*vg.Inch, 4.5*vg.Inch)
	f.xlabel = "update length d (32-bit entries, log scale; 10 % of clients drop out)"
	f.ylabel = "time per round (ms, log scale)"
	if err := f.addLine(0, "server", pts["server time"]); err != nil {
		return nil, err
	}
	var all []plotter.XYs
	all = append(all, pts["server time"])
	if c := pts["client time"]; len(c) > 0 {
		if err := f.addLine(1, "client (mean over\nclients that stay)", c); err != nil {
			return nil, err
		}
		all = append(all, c)
	}
	f.logAxes(all...)
	return f, nil
}

// bytesPerClient draws one horizontal bar per case: the bytes a client
// sends per round as a multiple of its update sent as float32, each with
// its value written at its end.
func bytesPerClient(rs []Result) (*figure, error) {
	type bar struct {
		scenario, name string
		v              float64
	}
	var bars []bar
	for _, r := range rs {
		if (r.Metric == "bytes per client" || r.Metric == "bytes per site") && r.Ratio > 0 {
			bars = append(bars, bar{r.Scenario, barName(r), r.Ratio})
		}
	}
	if len(bars) == 0 {
		return nil, nil
	}
	rowH := vg.Points(20)
	f := newFigure("bytes-per-client.png", "Bytes each client sends per round", 8*vg.Inch, vg.Length(len(bars))*rowH+2*vg.Inch)
	f.xlabel = "bytes sent ÷ update size as float32 (4·d bytes)"
	groups := []struct{ scenario, name string }{
		{"secagg", "secagg: one round,\nall parties in process"},
		{"he", "he: threshold CKKS,\none ciphertext"},
		{"e2e", "e2e: a round over gRPC\nwith mutual TLS, per site"},
	}
	names := make([]string, len(bars))
	var vals plotter.XYs
	var texts []string
	vmax := 1.0
	seen := map[string]bool{}
	for i, b := range bars {
		y := float64(len(bars) - 1 - i) // the first result at the top
		names[len(bars)-1-i] = b.name
		g := slices.IndexFunc(groups, func(g struct{ scenario, name string }) bool { return g.scenario == b.scenario })
		if g < 0 {
			g = len(groups)
		}
		c, err := plotter.NewBarChart(plotter.Values{b.v}, rowH*0.6)
		if err != nil {
			return nil, err
		}
		c.Horizontal, c.XMin = true, y
		c.Color, c.LineStyle.Width = plotutil.Color(g), 0
		f.p.Add(c)
		if g < len(groups) && !seen[b.scenario] {
			seen[b.scenario] = true
			f.addLegend(groups[g].name, c)
		}
		vals = append(vals, plotter.XY{X: b.v, Y: y})
		texts = append(texts, strconv.FormatFloat(b.v, 'f', 2, 64)+"×")
		vmax = math.Max(vmax, b.v)
	}
	one, err := plotter.NewLine(plotter.XYs{{X: 1, Y: -0.6}, {X: 1, Y: float64(len(bars)) - 0.4}})
	if err != nil {
		return nil, err
	}
	one.Color, one.Dashes = color.Gray{Y: 90}, []vg.Length{vg.Points(3), vg.Points(3)}
	f.p.Add(one)
	f.addLegend("1×: the float32 update", one)
	labels, err := plotter.NewLabels(plotter.XYLabels{XYs: vals, Labels: texts})
	if err != nil {
		return nil, err
	}
	labels.Offset = vg.Point{X: vg.Points(4)}
	for i := range labels.TextStyle {
		labels.TextStyle[i].YAlign = draw.YCenter
		labels.TextStyle[i].Font.Size = vg.Points(10)
	}
	f.p.Add(labels)
	f.values = labels
	f.p.NominalY(names...)
	f.p.Y.Tick.Label.Font.Size = vg.Points(11)
	f.p.X.Min, f.p.X.Max = 0, vmax*1.15
	f.p.X.Tick.Marker = linearTicks{}
	f.p.Y.Min, f.p.Y.Max = -0.6, float64(len(bars))-0.4
	return f, nil
}

// barName names a bytes bar: the case without its slashes, d as a power
// of ten or of two, and the dropout rate only where it is not the usual
// 10 %.
func barName(r Result) string {
	parts := strings.Split(r.Case, "/")
	var out []string
	switch r.Scenario {
	case "he":
		out = append(out, "CKKS")
	case "e2e":
		out = append(out, "network")
	}
	for _, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		switch {
		case !ok:
			if p == "complete" {
				p = "complete graph"
			}
			out = append(out, p)
		case k == "dropout":
			if x, err := strconv.ParseFloat(v, 64); err == nil && x != 0.1 {
				out = append(out, strconv.FormatFloat(100*x, 'f', -1, 64)+" % drop")
			}
		default:
			if x, err := strconv.ParseFloat(v, 64); err == nil && x >= 1e4 {
				if e := math.Log10(x); e == math.Trunc(e) {
					v = power("10", strconv.Itoa(int(e)))
				}
			}
			out = append(out, k+"="+v)
		}
	}
	return strings.Join(out, " ")
}

// utilityPlot plots a data set's test metric against ε for federated
// training with record-level DP, mean ± sd over seeds, against the
// centralized model, the best hospital alone and federated training
// without DP.
func utilityPlot(rs []Result, data string) (*figure, error) {
	var pts plotter.XYs
	var errs plotter.YErrors
	var eps []float64
	metric, seeds := "", 0.0
	for _, r := range rs {
		if r.Scenario == "utility" && strings.HasPrefix(r.Case, data+"/federated DP") && r.Metric != "AUC" {
			e, ok := r.Params["epsilon"]
			if !ok || !(e > 0) || math.IsInf(e, 0) {
				return nil, fmt.Errorf("bench: %s: no finite ε in params", r.Case)
			}
			pts = append(pts, plotter.XY{X: e, Y: r.Value})
			errs = append(errs, struct{ Low, High float64 }{r.Spread, r.Spread})
			eps = append(eps, e)
			metric, seeds = r.Metric, r.Params["seeds"]
		}
	}
	if len(pts) == 0 {
		return nil, nil
	}
	slices.Sort(eps)
	title := fmt.Sprintf("%s: test %s vs ε", data, metric)
	if seeds > 0 {
		title += fmt.Sprintf(", mean ± sd over %g seeds", seeds)
	}
	f := newFigure("utility-"+data+".png", title, 7.5*vg.Inch, 4.5*vg.Inch)
	f.eps = eps
	f.xlabel = "ε, log scale (record-level DP, δ = 1e-5, whole run of 30 rounds)"
	f.ylabel = "test " + metric
	switch metric {
	case "accuracy":
		f.ylabel += " (fraction correct)"
	case "RMSE":
		f.ylabel += " (target units)"
	}
	ymin, ymax := math.Inf(1), math.Inf(-1)
	for i, p := range pts {
		ymin, ymax = math.Min(ymin, p.Y-errs[i].Low), math.Max(ymax, p.Y+errs[i].High)
	}
	if err := f.addLine(0, "federated, SecAgg + DP\n(mean ± sd)", pts); err != nil {
		return nil, err
	}
	eb, err := plotter.NewYErrorBars(struct {
		plotter.XYs
		plotter.YErrors
	}{pts, errs})
	if err != nil {
		return nil, err
	}
	eb.Color = plotutil.Color(0)
	f.p.Add(eb)
	for ci, ref := range []string{"centralized", "best hospital alone", "federated no DP"} {
		for _, r := range rs {
			if r.Scenario == "utility" && r.Case == data+"/"+ref && r.Metric != "AUC" {
				hl := plotter.NewFunction(func(float64) float64 { return r.Value })
				hl.Dashes = plotutil.Dashes(ci + 1)
				hl.Color, hl.Width = plotutil.Color(ci+1), vg.Points(1.5)
				f.p.Add(hl)
				name := ref
				if ref == "federated no DP" {
					name = "federated, no DP"
				}
				f.addLegend(name+" ("+strconv.FormatFloat(r.Value, 'f', decimals(r.Value), 64)+")", hl)
				ymin, ymax = math.Min(ymin, r.Value), math.Max(ymax, r.Value)
			}
		}
	}
	pad := 0.06 * (ymax - ymin)
	f.p.Y.Min, f.p.Y.Max = ymin-pad, ymax+pad
	f.p.Y.Tick.Marker = linearTicks{}
	f.p.X.Scale = plot.LogScale{}
	f.p.X.Min, f.p.X.Max = eps[0]/1.3, eps[len(eps)-1]*1.3
	ticks := make(plot.ConstantTicks, len(eps))
	for i, e := range eps {
		ticks[i] = plot.Tick{Value: e, Label: strconv.FormatFloat(e, 'g', -1, 64)}
	}
	f.p.X.Tick.Marker = ticks
	return f, nil
}

// decimals is how many decimals a model metric is quoted with: three for
// an accuracy or AUC, one for an RMSE.
func decimals(v float64) int {
	if math.Abs(v) <= 1 {
		return 3
	}
	return 1
}

// onlyDropout returns a graph's server time against n at d = 1e4 with
// 10 % dropout.
func onlyDropout(rs []Result, graph string) plotter.XYs {
	var pts plotter.XYs
	for _, r := range rs {
		if r.Scenario == "secagg" && strings.HasPrefix(r.Case, graph+"/") && r.Metric == "server time" && r.Params["d"] == 10_000 && r.Params["dropout"] == 0.1 && r.Value > 0 {
			pts = append(pts, plotter.XY{X: r.Params["n"], Y: r.Value})
		}
	}
	slices.SortFunc(pts, func(a, b plotter.XY) int { return cmpFloat(a.X, b.X) })
	return pts
}

// onlyN returns each SecAgg+ metric against d for n clients at 10 %
// dropout, or nil when there are fewer than two values of d.
func onlyN(rs []Result, n float64, prefix string) map[string]plotter.XYs {
	out := map[string]plotter.XYs{}
	for _, r := range rs {
		if r.Scenario == "secagg" && strings.HasPrefix(r.Case, prefix) && r.Params["n"] == n && r.Params["dropout"] == 0.1 && r.Value > 0 {
			out[r.Metric] = append(out[r.Metric], plotter.XY{X: r.Params["d"], Y: r.Value})
		}
	}
	for k := range out {
		slices.SortFunc(out[k], func(a, b plotter.XY) int { return cmpFloat(a.X, b.X) })
	}
	if len(out["server time"]) < 2 {
		return nil
	}
	return out
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// logTicks marks every 1…9 × 10^k inside the range of a log axis and
// labels each power of ten. Where the range holds fewer than three powers
// of ten it labels 2 and 5 × 10^k as well, and where it holds none, every
// mark, so that a log axis always carries at least two numbers.
type logTicks struct{}

// Ticks implements plot.Ticker.
func (logTicks) Ticks(min, max float64) []plot.Tick {
	if !(min > 0) || !(max >= min) || math.IsInf(max, 0) {
		return nil
	}
	lo, hi := int(math.Floor(math.Log10(min))), int(math.Ceil(math.Log10(max)))
	in := func(v float64) bool { return v >= min*(1-1e-9) && v <= max*(1+1e-9) }
	powers := 0
	for e := lo; e <= hi; e++ {
		if in(math.Pow10(e)) {
			powers++
		}
	}
	var ts []plot.Tick
	for e := lo; e <= hi; e++ {
		for m := 1; m <= 9; m++ {
			v := float64(m) * math.Pow10(e)
			if !in(v) {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || powers == 0 || (powers < 3 && (m == 2 || m == 5)) {
				t.Label = digitLabel(m, e)
			}
			ts = append(ts, t)
		}
	}
	return ts
}

// digitLabel writes m × 10^e: as a decimal below 10⁴, and from 10⁴ on
// as 10⁴ or 2×10⁴.
func digitLabel(m, e int) string {
	if e >= 4 || e <= -4 {
		s := power("10", strconv.Itoa(e))
		if m != 1 {
			s = strconv.Itoa(m) + "×" + s
		}
		return s
	}
	if e >= 0 {
		return strconv.Itoa(m * int(math.Pow10(e)))
	}
	return strconv.FormatFloat(float64(m)*math.Pow10(e), 'f', -e, 64)
}

// power writes base^exp with a superscript exponent when that is one of
// the digits 1 to 9, and as base^exp otherwise: the plots' font has no ⁰
// or ⁻ glyph.
func power(base, exp string) string {
	if len(exp) != 1 || exp == "0" || exp == "-" {
		return base + "^" + exp
	}
	return base + strings.NewReplacer("1", "¹", "2", "²", "3", "³", "4", "⁴", "5", "⁵", "6", "⁶", "7", "⁷", "8", "⁸", "9", "⁹").Replace(exp)
}

// linearTicks labels five to ten evenly spaced round numbers (1, 2, 2.5
// or 5 × 10^k apart) on a linear axis, all with the same number of
// decimals, and marks the midpoints between them.
type linearTicks struct{}

// Ticks implements plot.Ticker.
func (linearTicks) Ticks(min, max float64) []plot.Tick {
	span := max - min
	if !(span > 0) || math.IsInf(span, 0) {
		return plot.DefaultTicks{}.Ticks(min, max)
	}
	e := math.Floor(math.Log10(span / 6))
	var step float64
	var decimals int
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if step = m * math.Pow10(int(e)); step >= span/7 {
			decimals = max0(-int(math.Floor(math.Log10(step) + 1e-9)))
			if m == 2.5 {
				decimals++
			}
			break
		}
	}
	var ts []plot.Tick
	for k := math.Ceil(min/step*2 - 1e-9); k/2*step <= max+step*1e-9; k++ {
		v := k / 2 * step
		if v == 0 {
			v = 0 // not -0
		}
		t := plot.Tick{Value: v}
		if math.Mod(k, 2) == 0 {
			t.Label = strconv.FormatFloat(v, 'f', decimals, 64)
		}
		ts = append(ts, t)
	}
	return ts
}

func max0(x int) int {
	if x < 0 {
		return 0
	}
	return x
}

// floorDigit rounds x > 0 down to a whole digit times a power of ten.
func floorDigit(x float64) float64 {
	e := math.Pow10(int(math.Floor(math.Log10(x))))
	return math.Floor(x/e*(1+1e-9)) * e
}

// ceilDigit rounds x > 0 up to a whole digit times a power of ten.
func ceilDigit(x float64) float64 {
	e := math.Pow10(int(math.Floor(math.Log10(x))))
	return math.Ceil(x/e*(1-1e-9)) * e
}
