package fl

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/dp/dptest"
)

func TestBuiltinData(t *testing.T) {
	d, err := LoadBuiltin("wdbc")
	if err != nil {
		t.Fatal(err)
	}
	pos := 0
	for _, y := range d.Y {
		pos += int(y)
	}
	if d.Rows() != 569 || d.Dim() != 30 || pos != 212 || d.Task != Binary {
		t.Errorf("wdbc: %d rows, %d features, %d malignant", d.Rows(), d.Dim(), pos)
	}
	r, err := LoadBuiltin("diabetes")
	if err != nil || r.Rows() != 442 || r.Dim() != 10 || r.Task != Regression {
		t.Errorf("diabetes: %v", err)
	}
	if !strings.Contains(Provenance(), "Wolberg") {
		t.Error("provenance note missing")
	}
	if _, err := LoadBuiltin("mnist"); err == nil {
		t.Error("unknown data set loaded")
	}
}

func TestReadCSVErrors(t *testing.T) {
	for _, c := range []struct{ csv, label, want string }{
		{"a,b\n1,2\n3,4\n", "y", `no label column "y"`},
		{"a,y\n1,x\n3,4\n", "y", `line 2, column "y"`},
		{"a,y\n1,2\n3\n", "y", "wrong number of fields"},
		{"a,y\n1,0\n", "y", "1 data rows"},
		{"a,y\n1,0.5\n2,1\n", "y", "not a class index"},
		{"a,y\n1,NaN\n2,1\n", "y", "not a finite number"},
	} {
		_, err := ReadCSV(strings.NewReader(c.csv), c.label, Binary)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.csv, err, c.want)
		}
	}
}

func TestSplitsAndPartitions(t *testing.T) {
	d, _ := LoadBuiltin("wdbc")
	tr, te, err := StratifiedSplit(d, 0.25, 0)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Rows()+te.Rows() != 569 || te.Rows() < 140 || te.Rows() > 144 {
		t.Errorf("split %d/%d", tr.Rows(), te.Rows())
	}
	frac := func(x *Dataset) float64 {
		var p float64
		for _, y := range x.Y {
			p += y
		}
		return p / float64(x.Rows())
	}
	if math.Abs(frac(tr)-frac(te)) > 0.01 {
		t.Errorf("not stratified: %.3f vs %.3f", frac(tr), frac(te))
	}
	sites, err := PartitionDirichlet(tr, 5, 0.5, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	total, skew := 0, 0.0
	for _, s := range sites {
		total += s.Rows()
		skew = math.Max(skew, math.Abs(frac(s)-frac(tr)))
	}
	if total != tr.Rows() || skew < 0.1 {
		t.Errorf("Dirichlet(0.5): %d rows, max label-share deviation %.2f", total, skew)
	}
	iid, _ := PartitionIID(tr, 5, 0)
	for _, s := range iid {
		if s.Rows() < tr.Rows()/5 || s.Rows() > tr.Rows()/5+1 {
			t.Errorf("IID site of %d rows", s.Rows())
		}
	}
}

// Every model's gradient matches central finite differences.
func TestGradientsFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	x := []float64{0.3, -1.2, 0.7, 2.0}
	for _, c := range []struct {
		name    string
		task    Task
		classes int
		y       float64
	}{
		{"logistic", Binary, 2, 1}, {"logistic", Binary, 2, 0}, {"linear", Regression, 0, 1.7},
		{"softmax", Multiclass, 3, 2}, {"mlp", Binary, 2, 1}, {"mlp", Multiclass, 3, 1}, {"mlp", Regression, 0, -0.4},
	} {
		m, err := NewModel(c.name, c.task, len(x), c.classes, 5)
		if err != nil {
			t.Fatal(err)
		}
		w := m.Init(3)
		for i := range w {
			w[i] += rng.NormFloat64() * 0.3
		}
		g := make([]float64, len(w))
		m.Grad(w, x, c.y, g)
		const h = 1e-6
		for i := range w {
			wp := append([]float64(nil), w...)
			wm := append([]float64(nil), w...)
			wp[i] += h
			wm[i] -= h
			tmp := make([]float64, len(w))
			fd := (m.Grad(wp, x, c.y, tmp) - m.Grad(wm, x, c.y, tmp)) / (2 * h)
			if math.Abs(fd-g[i]) > 1e-6*math.Max(1, math.Abs(fd)) {
				t.Errorf("%s/%s y=%v: ∂/∂w[%d] = %v, finite difference %v", c.name, c.task, c.y, i, g[i], fd)
			}
		}
	}
}

func TestCentralizedLogistic(t *testing.T) {
	d, _ := LoadBuiltin("wdbc")
	tr, te, _ := StratifiedSplit(d, 0.25, 0)
	st, _ := NewStandardizer(LocalStats(tr))
	tr, te = st.Apply(tr), st.Apply(te)
	m, _ := NewModel("logistic", Binary, tr.Dim(), 2, 0)
	w := m.Init(0)
	up, _, err := LocalSGD(m, w, tr, TrainConfig{Epochs: 60, BatchSize: 16, LearningRate: 0.1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range w {
		w[i] += up[i]
	}
	r, _ := Evaluate(m, w, te)
	if r.Accuracy < 0.96 || r.AUC < 0.98 {
		t.Errorf("centralized logistic regression: %+v", r)
	}
	t.Logf("centralized: accuracy %.3f, AUC %.4f, log loss %.3f", r.Accuracy, r.AUC, r.LogLoss)
}

func TestClippedGradientSum(t *testing.T) {
	d, _ := LoadBuiltin("wdbc")
	st, _ := NewStandardizer(LocalStats(d))
	d = st.Apply(d)
	m, _ := NewModel("logistic", Binary, d.Dim(), 2, 0)
	s, _ := dp.NewSampler(dptest.Rand(1))
	sum, cs, err := ClippedGradientSum(m, m.Init(0), d, 0.1, 0.5, s)
	if err != nil {
		t.Fatal(err)
	}
	// Each clipped gradient has norm ≤ 0.5, so the sum is bounded by
	// 0.5 × the number sampled; the sample size is Binomial(569, 0.1).
	var n2 float64
	for _, v := range sum {
		n2 += v * v
	}
	if math.Sqrt(n2) > 0.5*float64(cs.Count)+1e-9 || cs.Count < 30 || cs.Count > 90 {
		t.Errorf("sum norm %v with %d sampled", math.Sqrt(n2), cs.Count)
	}
	if cs.Clipped == 0 {
		t.Error("nothing clipped at norm 0.5")
	}
}

func TestAUC(t *testing.T) {
	if a := auc([]float64{0.1, 0.4, 0.35, 0.8}, []float64{0, 0, 1, 1}); math.Abs(a-0.75) > 1e-12 {
		t.Errorf("AUC %v, want 0.75", a)
	}
	if a := auc([]float64{0.5, 0.5}, []float64{0, 1}); a != 0.5 {
		t.Errorf("tied AUC %v", a)
	}
}
