package fl

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestReadRanges(t *testing.T) {
	rs, err := ReadRanges(strings.NewReader("# bounds\nname,lo,hi,mean,scale\n\nage, 0, 100\nbmi,10,60,26,4.5\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := rs.For([]string{"bmi", "age"})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != (Range{Name: "bmi", Lo: 10, Hi: 60, Mean: 26, Scale: 4.5}) || got[1] != (Range{Name: "age", Lo: 0, Hi: 100}) {
		t.Fatalf("ranges %+v", got)
	}
	if m, s := got[0].Public(); m != 26 || s != 4.5 {
		t.Errorf("public standardization of bmi %v %v", m, s)
	}
	if m, s := got[1].Public(); m != 50 || s != 50 {
		t.Errorf("public standardization of age %v %v", m, s)
	}
	if _, err := rs.For([]string{"age"}); err == nil || !strings.Contains(err.Error(), `"bmi" is not a column`) {
		t.Errorf("a file naming an extra column: %v", err)
	}
	if _, err := rs.For([]string{"age", "bmi", "bp"}); err == nil || !strings.Contains(err.Error(), `no range for column "bp"`) {
		t.Errorf("a column without a range: %v", err)
	}
}

// TestReadRangesErrors: every malformed file is refused with an error
// that names its line.
func TestReadRangesErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "no ranges"},
		{"# only a comment\n", "no ranges"},
		{"age,0\n", "line 1: 2 fields"},
		{"age,0,100\nbmi,10,60,26\n", "line 2: 4 fields"},
		{"name,lo,high\nage,0,1\n", "line 1: header"},
		{"age,0,100\n,1,2\n", "line 2: empty name"},
		{"age,zero,100\n", `line 1: lo of "age" is "zero"`},
		{"age,0,NaN\n", `line 1: hi of "age" is "NaN"`},
		{"age,0,Inf\n", `line 1: hi of "age" is "Inf"`},
		{"age,100,0\n", "line 1: range of \"age\" is [100, 0]"},
		{"age,5,5\n", "line 1: range of \"age\""},
		{"age,0,100\nage,0,90\n", `line 2: "age" appears twice`},
		{"age,0,100,150,10\n", "line 1: mean 150 of \"age\" is outside"},
		{"age,0,100,50,0\n", `line 1: scale 0 of "age"`},
		{"age,0,100,50,-1\n", `line 1: scale -1 of "age"`},
		{"age,0,100\n\"bmi,1,2\n", "line 2"},
	} {
		_, err := ReadRanges(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "fl: ") {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
}

// TestBuiltinRanges: the embedded bounds name every column of their data
// set (and the regression label) and hold every value: they are generous
// public bounds, so no value is clipped.
func TestBuiltinRanges(t *testing.T) {
	for name := range Builtin {
		d, err := LoadBuiltin(name)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := BuiltinRanges(name)
		if err != nil {
			t.Fatal(err)
		}
		ranges, err := rs.RangesFor(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range WithLabel(d).X {
			for j, v := range x {
				if v < ranges[j].Lo || v > ranges[j].Hi {
					t.Errorf("%s: %s = %v outside [%v, %v]", name, ranges[j].Name, v, ranges[j].Lo, ranges[j].Hi)
				}
			}
		}
	}
	if _, err := BuiltinRanges("nope"); err == nil {
		t.Error("ranges of an unknown data set")
	}
}

// TestClippedStatsBound: whatever the data and the ranges, one record's
// statistics vector has norm at most StatsBound, and an average of them
// too; the bound is reached by a record at a corner of its ranges.
func TestClippedStatsBound(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 200; trial++ {
		dim := 1 + r.IntN(40)
		d := &Dataset{Task: Binary}
		mid, half := make([]float64, dim), make([]float64, dim)
		for j := range mid {
			mid[j], half[j] = r.NormFloat64()*10, math.Exp(r.NormFloat64()*3)
		}
		for i := 0; i < 1+r.IntN(5); i++ {
			x := make([]float64, dim)
			for j := range x {
				x[j] = r.NormFloat64() * math.Exp(r.NormFloat64()*4)
			}
			d.X, d.Y = append(d.X, x), append(d.Y, 0)
		}
		d.Features = make([]string, dim)
		avg, err := ClippedStats(d, mid, half, true)
		if err != nil {
			t.Fatal(err)
		}
		if n := norm(avg); n > StatsBound(dim)*(1+1e-12) {
			t.Fatalf("dim %d: average of norm %v over the bound %v", dim, n, StatsBound(dim))
		}
		one, _ := ClippedStats(d.Subset([]int{0}), mid, half, false)
		if n := norm(one); n > StatsBound(dim)*(1+1e-12) {
			t.Fatalf("dim %d: a record of norm %v over the bound %v", dim, n, StatsBound(dim))
		}
		corner := &Dataset{Task: Binary, Features: d.Features, X: [][]float64{make([]float64, dim)}, Y: []float64{0}}
		for j := range mid {
			corner.X[0][j] = mid[j] + 2*half[j]
		}
		c, _ := ClippedStats(corner, mid, half, false)
		if n := norm(c); math.Abs(n-StatsBound(dim)) > 1e-9*n {
			t.Fatalf("dim %d: a corner has norm %v, the bound is %v", dim, n, StatsBound(dim))
		}
	}
	if _, err := ClippedStats(&Dataset{Features: []string{"a"}, X: [][]float64{{1}}, Y: []float64{0}}, []float64{0}, []float64{0}, false); err == nil {
		t.Error("a half-width of 0 accepted")
	}
	if _, err := ClippedStats(&Dataset{Features: []string{"a"}, X: [][]float64{{1}}, Y: []float64{0}}, []float64{math.NaN()}, []float64{1}, false); err == nil {
		t.Error("a NaN midpoint accepted")
	}
}

func norm(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

// TestEstimateStats: without noise the estimate is the clipped data's
// mean and deviation; with any noise it stays inside what clipped data
// can produce.
func TestEstimateStats(t *testing.T) {
	d, _ := LoadBuiltin("wdbc")
	rs, _ := BuiltinRanges("wdbc")
	ranges, _ := rs.RangesFor(d)
	mid, half := make([]float64, len(ranges)), make([]float64, len(ranges))
	for j, r := range ranges {
		mid[j], half[j] = r.Mid(), r.HalfWidth()
	}
	v, _ := ClippedStats(d, mid, half, false)
	exact, _ := NewStandardizer(LocalStats(d))
	est, err := EstimateStats(v, mid, half, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(est.Count-float64(d.Rows())) > 1e-9 {
		t.Errorf("count %v, want %d", est.Count, d.Rows())
	}
	for j := range mid {
		if math.Abs(est.Mean[j]-exact.Mean[j]) > 1e-9*half[j] || math.Abs(est.Scale[j]-exact.Scale[j]) > 1e-6*half[j]+1e-9 {
			t.Errorf("%s: %v %v, want %v %v", ranges[j].Name, est.Mean[j], est.Scale[j], exact.Mean[j], exact.Scale[j])
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, sigma := range []float64{1, 100, 1e6} {
		nv := append([]float64(nil), v...)
		for i := range nv {
			nv[i] += r.NormFloat64() * sigma
		}
		est, err := EstimateStats(nv, mid, half, 0, sigma)
		if err != nil {
			t.Fatal(err)
		}
		for j := range mid {
			if est.Mean[j] < ranges[j].Lo || est.Mean[j] > ranges[j].Hi || !(est.Scale[j] > 0) || est.Scale[j] > half[j] {
				t.Errorf("σ %v, %s: mean %v scale %v outside [%v, %v]", sigma, ranges[j].Name, est.Mean[j], est.Scale[j], ranges[j].Lo, ranges[j].Hi)
			}
		}
		if !(est.Count >= 1) {
			t.Errorf("σ %v: count %v", sigma, est.Count)
		}
	}
	if _, err := EstimateStats(v[:4], mid, half, 0, 0); err == nil {
		t.Error("a vector of even length accepted")
	}
	bad := append([]float64(nil), v...)
	bad[3] = math.NaN()
	if _, err := EstimateStats(bad, mid, half, 0, 0); err == nil {
		t.Error("a NaN statistic accepted")
	}
}
