package fl

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestAttackOneRecordMovesSumByAtMostClip: for every model, at extreme
// weights and features (finite, overflowing, tiny), the clipped-gradient
// sum with and without one extreme record differs by at most the clip,
// and the call never fails or panics.
func TestAttackOneRecordMovesSumByAtMostClip(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	vals := []float64{0, -0.0, 1, -1, 1e-320, 1e154, -1e154, 1e300, -1e308, math.MaxFloat64}
	pick := func() float64 { return vals[rng.IntN(len(vals))] * (0.5 + rng.Float64()) }
	for _, tc := range []struct {
		name    string
		task    Task
		classes int
	}{{"logistic", Binary, 2}, {"softmax", Multiclass, 3}, {"linear", Regression, 0}, {"mlp", Multiclass, 3}, {"mlp", Binary, 2}, {"mlp", Regression, 0}} {
		m, err := NewModel(tc.name, tc.task, 3, tc.classes, 4)
		if err != nil {
			t.Fatal(err)
		}
		for trial := range 300 {
			w := make([]float64, m.NumParams())
			for i := range w {
				w[i] = pick()
			}
			d := &Dataset{Task: tc.task, Classes: tc.classes}
			for i := range 6 {
				x := []float64{pick(), pick(), pick()}
				y := float64(i % max(tc.classes, 1))
				if tc.task == Regression {
					y = pick()
				}
				d.X, d.Y = append(d.X, x), append(d.Y, y)
			}
			for _, clip := range []float64{1, 1e-3, 1e300} {
				all, _, err := ClippedGradientSum(m, w, d, 1, clip, nil)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				less := &Dataset{Task: d.Task, Classes: d.Classes, X: d.X[:5], Y: d.Y[:5]}
				part, _, err := ClippedGradientSum(m, w, less, 1, clip, nil)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				var dist float64
				for k := range all {
					dist = math.Hypot(dist, all[k]-part[k])
				}
				if !(dist <= clip*(1+1e-9)) {
					t.Errorf("%s trial %d clip %v: one record moves the sum by %v (w %v, record %v, y %v)", tc.name, trial, clip, dist, w, d.X[5], d.Y[5])
					break
				}
			}
		}
	}
}
