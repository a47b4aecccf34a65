package bench

import (
	"bytes"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// committed reads the results of the full run committed in docs/bench.
func committed(t *testing.T) []Result {
	t.Helper()
	rs, err := ReadJSON(filepath.Join("..", "docs", "bench", "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// quickGrid keeps of rs what --quick measures: fewer clients, update
// lengths and ε.
func quickGrid(rs []Result) []Result {
	var out []Result
	for _, r := range rs {
		n, d := r.Params["n"], r.Params["d"]
		if r.Scenario == "secagg" && (n > 100 || d > 100_000) {
			continue
		}
		if e, ok := r.Params["epsilon"]; ok && r.Scenario == "utility" && e != 1 && e != 3 {
			continue
		}
		out = append(out, r)
	}
	return out
}

// TestPlotsReadable checks every plot of the committed full run and of
// the quick grid: numbered axes, tick labels that do not collide, a
// legend outside the data, titles and labels inside the image in glyphs
// the font has, every measured ε on the utility plots' x-axis, and bar
// values that fit beside their bars.
func TestPlotsReadable(t *testing.T) {
	full := committed(t)
	for name, rs := range map[string][]Result{"full": full, "quick": quickGrid(full)} {
		figs, err := figures(rs)
		if err != nil {
			t.Fatal(err)
		}
		var files []string
		for _, f := range figs {
			files = append(files, f.file)
			t.Run(name+"/"+f.file, func(t *testing.T) { checkFigure(t, f) })
		}
		want := []string{"secagg-server-vs-n.png", "secagg-time-vs-d.png", "bytes-per-client.png", "utility-wdbc.png", "utility-diabetes.png"}
		if !reflect.DeepEqual(files, want) {
			t.Errorf("%s: plots %q, want %q", name, files, want)
		}
	}
}

func checkFigure(t *testing.T, f *figure) {
	img := f.canvas()
	l := f.layout(draw.New(img))
	inside := func(what string, r vg.Rectangle) {
		if r.Min.X < l.image.Min.X || r.Min.Y < l.image.Min.Y || r.Max.X > l.image.Max.X || r.Max.Y > l.image.Max.Y {
			t.Errorf("%s %v is not inside the image %v", what, r, l.image)
		}
	}
	readable := func(what string, sty text.Style, s string) {
		if s == "" {
			t.Errorf("%s is empty", what)
		}
		ff := font.DefaultCache.Lookup(sty.Font, sty.Font.Size)
		face := ff.FontFace(dpi)
		for _, r := range s {
			if r == '\n' {
				continue
			}
			if _, ok := face.GlyphAdvance(r); !ok {
				t.Errorf("%s %q: the font has no glyph for %q", what, s, r)
			}
		}
		if sty.Font.Size < vg.Points(10) {
			t.Errorf("%s %q: %v pt is too small to read", what, s, sty.Font.Size.Points())
		}
	}

	// Title and axis labels: present, in the font, inside the image.
	readable("title", f.p.Title.TextStyle, f.title)
	tw, th := f.p.Title.TextStyle.Width(f.title), f.p.Title.TextStyle.Height(f.title)
	inside("title", vg.Rectangle{Min: vg.Point{X: l.title.X - tw/2, Y: l.title.Y - th}, Max: vg.Point{X: l.title.X + tw/2, Y: l.title.Y}})
	readable("x-axis label", f.p.X.Label.TextStyle, f.xlabel)
	xw, xh := f.p.X.Label.TextStyle.Width(f.xlabel), f.p.X.Label.TextStyle.Height(f.xlabel)
	inside("x-axis label", vg.Rectangle{Min: vg.Point{X: l.xlabel.X - xw/2, Y: l.xlabel.Y}, Max: vg.Point{X: l.xlabel.X + xw/2, Y: l.xlabel.Y + xh}})
	nominal := f.values != nil // the bar chart's y-axis names its bars
	if !nominal {
		readable("y-axis label", f.p.Y.Label.TextStyle, f.ylabel)
		yw, yh := f.p.Y.Label.TextStyle.Width(f.ylabel), f.p.Y.Label.TextStyle.Height(f.ylabel)
		inside("y-axis label", vg.Rectangle{Min: vg.Point{X: l.ylabel.X, Y: l.ylabel.Y - yw/2}, Max: vg.Point{X: l.ylabel.X + yh, Y: l.ylabel.Y + yw/2}})
		if !strings.Contains(f.ylabel, "(") {
			t.Errorf("y-axis label %q: no unit in parentheses", f.ylabel)
		}
	}
	if !strings.Contains(f.xlabel, "(") {
		t.Errorf("x-axis label %q: no unit in parentheses", f.xlabel)
	}
	inside("axes", l.axes.Rectangle)

	// Ticks: at least two numbers per axis, inside the range, apart.
	checkTicks(t, "x", f.p.X, l.data, false, true)
	checkTicks(t, "y", f.p.Y, l.data, nominal, false)

	// The legend lies beside the data area, never over it.
	if len(f.legendText) > 0 {
		inside("legend", l.legend)
		if overlaps(l.legend, l.axes.Rectangle) {
			t.Errorf("legend %v overlaps the axes and data %v", l.legend, l.axes.Rectangle)
		}
		for _, s := range f.legendText {
			readable("legend entry", f.legend.TextStyle, s)
		}
	} else {
		t.Errorf("no legend")
	}

	// Every measured ε is an x tick label.
	if f.eps != nil {
		var labels []string
		for _, tk := range f.p.X.Tick.Marker.Ticks(f.p.X.Min, f.p.X.Max) {
			labels = append(labels, tk.Label)
		}
		for _, e := range f.eps {
			if s := strconv.FormatFloat(e, 'g', -1, 64); !slices.Contains(labels, s) {
				t.Errorf("ε = %s is not an x tick label (labels %q)", s, labels)
			}
		}
	}

	// Bar values sit right of their bar and inside the data area, and a
	// value is no taller than the distance between two bars.
	if v := f.values; v != nil {
		rowH := l.data.Y(f.p.Y.Norm(1)) - l.data.Y(f.p.Y.Norm(0))
		for i, xy := range v.XYs {
			sty := v.TextStyle[i]
			readable("bar value", sty, v.Labels[i])
			end := l.data.X(f.p.X.Norm(xy.X))
			x0 := end + v.Offset.X
			x1 := x0 + sty.Width(v.Labels[i])
			if x0 <= end || x1 > l.data.Max.X {
				t.Errorf("bar value %q spans x %v…%v: the bar ends at %v and the data area at %v", v.Labels[i], x0, x1, end, l.data.Max.X)
			}
			if h := sty.Height(v.Labels[i]); h >= rowH {
				t.Errorf("bar value %q is %v tall, bars are %v apart", v.Labels[i], h, rowH)
			}
		}
	}
}

// checkTicks checks an axis's tick labels: at least two within its range,
// each with a number unless the axis is nominal, and no two overlapping
// on the image.
func checkTicks(t *testing.T, name string, a plot.Axis, data draw.Canvas, nominal, horizontal bool) {
	t.Helper()
	type span struct{ lo, hi vg.Length }
	var spans []span
	var labels []string
	for _, tk := range a.Tick.Marker.Ticks(a.Min, a.Max) {
		if tk.Label == "" {
			continue
		}
		if tk.Value < a.Min-1e-9*math.Abs(a.Min) || tk.Value > a.Max+1e-9*math.Abs(a.Max) {
			t.Errorf("%s tick %q at %v is outside the axis %v…%v", name, tk.Label, tk.Value, a.Min, a.Max)
		}
		if !nominal && !strings.ContainsFunc(tk.Label, unicode.IsDigit) {
			t.Errorf("%s tick label %q has no number", name, tk.Label)
		}
		labels = append(labels, tk.Label)
		sty := a.Tick.Label
		if horizontal {
			c, w := data.X(a.Norm(tk.Value)), sty.Width(tk.Label)
			spans = append(spans, span{c - w/2, c + w/2})
		} else {
			c, h := data.Y(a.Norm(tk.Value)), sty.Height(tk.Label)
			spans = append(spans, span{c - h/2, c + h/2})
		}
	}
	if len(labels) < 2 {
		t.Errorf("%s axis: tick labels %q, want at least two", name, labels)
	}
	slices.SortFunc(spans, func(a, b span) int { return cmpFloat(float64(a.lo), float64(b.lo)) })
	for i := 1; i < len(spans); i++ {
		if spans[i].lo < spans[i-1].hi {
			t.Errorf("%s axis: tick labels overlap (%q)", name, labels)
			break
		}
	}
}

func overlaps(a, b vg.Rectangle) bool {
	return a.Min.X < b.Max.X && b.Min.X < a.Max.X && a.Min.Y < b.Max.Y && b.Min.Y < a.Max.Y
}

func TestLogTicks(t *testing.T) {
	for _, tc := range []struct {
		min, max float64
		want     []string
	}{
		{10, 1000, []string{"10", "100", "1000"}},
		{3, 2000, []string{"10", "100", "1000"}},
		{7, 400, []string{"10", "20", "50", "100", "200"}},
		{10, 100, []string{"10", "20", "50", "100"}},
		{1e4, 1e6, []string{"10⁴", "10⁵", "10⁶"}},
		{2e4, 6e5, []string{"2×10⁴", "5×10⁴", "10⁵", "2×10⁵", "5×10⁵"}},
		{0.2, 0.6, []string{"0.2", "0.3", "0.4", "0.5", "0.6"}},
		{2, 8, []string{"2", "3", "4", "5", "6", "7", "8"}},
		{1e9, 1e11, []string{"10⁹", "10^10", "10^11"}},
		{1e9, 5e10, []string{"10⁹", "2×10⁹", "5×10⁹", "10^10", "2×10^10", "5×10^10"}},
	} {
		var got []string
		for _, tk := range (logTicks{}).Ticks(tc.min, tc.max) {
			if tk.Value < tc.min*(1-1e-9) || tk.Value > tc.max*(1+1e-9) {
				t.Errorf("%v…%v: tick at %v", tc.min, tc.max, tk.Value)
			}
			if tk.Label != "" {
				got = append(got, tk.Label)
			}
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v…%v: labels %q, want %q", tc.min, tc.max, got, tc.want)
		}
	}
	if ts := (logTicks{}).Ticks(0, 10); ts != nil {
		t.Errorf("ticks on a log axis from 0: %v", ts)
	}
}

func TestLinearTicks(t *testing.T) {
	for _, tc := range []struct {
		min, max float64
		want     []string
	}{
		{0, 12.5, []string{"0", "2", "4", "6", "8", "10", "12"}},
		{48.8, 77.3, []string{"50", "55", "60", "65", "70", "75"}},
		{0.931, 0.99, []string{"0.94", "0.95", "0.96", "0.97", "0.98", "0.99"}},
		{0, 1, []string{"0.0", "0.2", "0.4", "0.6", "0.8", "1.0"}},
		{0, 0.15, []string{"0.000", "0.025", "0.050", "0.075", "0.100", "0.125", "0.150"}},
	} {
		var got []string
		for _, tk := range (linearTicks{}).Ticks(tc.min, tc.max) {
			if tk.Label != "" {
				got = append(got, tk.Label)
			}
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v…%v: labels %q, want %q", tc.min, tc.max, got, tc.want)
		}
	}
}

func TestBarNames(t *testing.T) {
	for _, tc := range []struct {
		scenario, c, want string
	}{
		{"secagg", "secagg+/n=10/d=10000/dropout=0.1", "secagg+ n=10 d=10⁴"},
		{"secagg", "complete/n=500/d=10000/dropout=0.1", "complete graph n=500 d=10⁴"},
		{"secagg", "secagg+/n=100/d=10000/dropout=0.3", "secagg+ n=100 d=10⁴ 30 % drop"},
		{"he", "d=2^20/N=5", "CKKS d=2^20 N=5"},
		{"e2e", "he/n=20/d=100000", "network he n=20 d=10⁵"},
	} {
		if got := barName(Result{Scenario: tc.scenario, Case: tc.c}); got != tc.want {
			t.Errorf("%s/%s: %q, want %q", tc.scenario, tc.c, got, tc.want)
		}
	}
}

// Plots writes every PNG at the figure's size and leaves nothing else.
func TestPlotsWrite(t *testing.T) {
	dir := t.TempDir()
	if err := Plots(dir, committed(t)); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 5 {
		t.Errorf("%d files written, want 5", len(entries))
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(b))
		if err != nil {
			t.Errorf("%s: %v", e.Name(), err)
			continue
		}
		if cfg.Width < 6*dpi || cfg.Height < 4*dpi {
			t.Errorf("%s: %d×%d pixels", e.Name(), cfg.Width, cfg.Height)
		}
	}
	if err := Plots(filepath.Join(dir, "missing"), committed(t)); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("plots into a missing directory: %v", err)
	}
}

func TestReadJSON(t *testing.T) {
	dir := t.TempDir()
	rs := []Result{{Scenario: "utility", Case: "wdbc/centralized", Params: map[string]float64{"epsilon": math.Inf(1), "seeds": 5}, Metric: "accuracy", Value: 0.98, Spread: 0.01}}
	var b bytes.Buffer
	if err := WriteJSON(&b, rs); err != nil {
		t.Fatal(err)
	}
	ok := filepath.Join(dir, "ok.json")
	if err := os.WriteFile(ok, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSON(ok)
	if err != nil {
		t.Fatal(err)
	}
	want := rs[0]
	want.Params = map[string]float64{"seeds": 5} // JSON has no infinity
	if !reflect.DeepEqual(got, []Result{want}) {
		t.Errorf("read back %+v, want %+v", got, want)
	}
	for _, tc := range []struct{ name, body, want string }{
		{"syntax.json", "[\n  {\"scenario\": \"he\",\n  \"case\": }\n]", "syntax.json: line 3"},
		{"type.json", "[\n{\"scenario\": 1}]", "type.json: line 2"},
		{"unknown.json", `[{"scenario": "he", "colour": "red"}]`, `unknown field "colour"`},
		{"empty.json", `[]`, "empty.json: no results"},
		{"partial.json", `[{"scenario": "he", "case": "x"}]`, "result 1 has no scenario, case, metric or value"},
	} {
		p := filepath.Join(dir, tc.name)
		if err := os.WriteFile(p, []byte(tc.body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadJSON(p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	if _, err := ReadJSON(filepath.Join(dir, "absent.json")); err == nil || !strings.Contains(err.Error(), "absent.json") {
		t.Errorf("absent file: %v", err)
	}
}

// BENCHMARKS.md states the run times bench -h states.
func TestRunTimeClaims(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "BENCHMARKS.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, reproduce, _ := strings.Cut(string(b), "## Reproduce")
	reproduce, _, _ = strings.Cut(reproduce, "\n## ")
	for _, want := range []string{"--quick  # " + QuickTime, "--out docs/bench  # " + FullTime} {
		if !strings.Contains(strings.Join(strings.Fields(reproduce), "  "), strings.Join(strings.Fields(want), "  ")) {
			t.Errorf("BENCHMARKS.md's Reproduce section does not say %q", want)
		}
	}
}
