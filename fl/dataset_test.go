package fl

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// TestReadCSVNamesTheProblem: every error names the line of the file (the
// header is line 1) and the column, with one word for it; values whose
// square would overflow the statistics are refused; an empty file, a
// one-class label and a label of more classes than the task are named.
func TestReadCSVNamesTheProblem(t *testing.T) {
	for _, c := range []struct {
		csv  string
		task Task
		want string
		is   error
	}{
		{"", Binary, "the file is empty", nil},
		{"a,y\n", Binary, "0 data rows after the header", nil},
		{"a,y\n1,0\n1e308,1\n", Binary, `line 3, column "a": "1e308" is out of range`, nil},
		{"a,y\n1,0\n-1e151,1\n", Binary, `line 3, column "a": "-1e151" is out of range`, nil},
		{"a,y\n1,0\n1e999,1\n", Binary, `line 3, column "a": "1e999" is out of range`, nil},
		{"a,y\n\"1\n\",0\n2,0.5\n", Binary, `line 4, column "y": label 0.5 is not a class index`, ErrNotClass},
		{"a,y\n1,0\n2,0\n", Binary, `column "y" holds one class only (every label is 0)`, nil},
		{"a,y\n1,0\n2,1\n3,2\n", Binary, `column "y" holds labels up to 2 (3 classes)`, ErrNotBinary},
		{"a,y,y\n1,0,1\n", Binary, `line 1: label column "y" appears twice`, nil},
	} {
		_, err := ReadCSV(strings.NewReader(c.csv), "y", c.task)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "row ") {
			t.Errorf("%q: %v, want %q", c.csv, err, c.want)
		}
		if c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("%q: %v is not %v", c.csv, err, c.is)
		}
	}
	d, err := ReadCSV(strings.NewReader("a,y\n1e150,0\n-2,2\n"), "y", Multiclass)
	if err != nil || d.Classes != 3 || d.X[0][0] != 1e150 {
		t.Errorf("largest value and three classes: %v %+v", err, d)
	}
}

// TestEvaluateAUC: a multiclass model gets the one-vs-rest macro AUC, and
// an evaluation set of one class gets no AUC and the reason, never NaN.
func TestEvaluateAUC(t *testing.T) {
	probs := [][]float64{{0.8, 0.1, 0.1}, {0.2, 0.7, 0.1}, {0.1, 0.2, 0.7}, {0.5, 0.3, 0.2}}
	y := []float64{0, 1, 2, 1}
	// Class 0 vs rest: scores 0.8 (pos) against 0.2, 0.1, 0.5: 1. Class 1:
	// 0.7, 0.3 (pos) against 0.1, 0.2: 1. Class 2: 0.7 against 0.1, 0.1,
	// 0.2: 1.
	if a := macroAUC(probs, y); math.Abs(a-1) > 1e-12 {
		t.Errorf("macro AUC %v, want 1", a)
	}
	probs[3] = []float64{0.6, 0.05, 0.35}
	// Class 0: 0.8 vs 0.2, 0.1, 0.6: 1. Class 1: positives 0.7, 0.05 vs
	// 0.1, 0.2: (2 + 0)/4 = 0.5. Class 2: 0.7 vs 0.1, 0.1, 0.35: 1.
	if a := macroAUC(probs, y); math.Abs(a-2.5/3) > 1e-12 {
		t.Errorf("macro AUC %v, want %v", a, 2.5/3)
	}
	m, err := NewModel("softmax", Multiclass, 1, 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	w := m.Init(1)
	one := &Dataset{Features: []string{"a"}, X: [][]float64{{1}, {2}}, Y: []float64{1, 1}, Task: Multiclass, Classes: 3}
	r, err := Evaluate(m, w, one)
	if err != nil || r.AUC != 0 || r.NoAUC == "" || math.IsNaN(r.AUC) {
		t.Errorf("one class: %+v, %v", r, err)
	}
	lm, _ := NewModel("logistic", Binary, 1, 2, 0)
	bin := &Dataset{Features: []string{"a"}, X: [][]float64{{1}, {2}}, Y: []float64{0, 0}, Task: Binary, Classes: 2}
	if r, err := Evaluate(lm, lm.Init(1), bin); err != nil || r.NoAUC == "" || math.IsNaN(r.AUC) {
		t.Errorf("binary, one class: %+v, %v", r, err)
	}
}
