package dp

import (
	"math"
	"testing"
	"time"
)

// clipWithin runs ClipL2 on a copy of v with a deadline: the shrink loop
// must end promptly for every finite vector and every positive finite bound.
func clipWithin(t *testing.T, v []float64, c float64, d time.Duration) ([]float64, error, bool) {
	t.Helper()
	w := append([]float64(nil), v...)
	type res struct{ err error }
	done := make(chan res, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				t.Errorf("ClipL2(%v, %v) panicked: %v", v, c, p)
				done <- res{}
			}
		}()
		err := ClipL2(w, c, nil)
		done <- res{err}
	}()
	select {
	case r := <-done:
		return w, r.err, true
	case <-time.After(d):
		return nil, nil, false
	}
}

// A finite vector whose norm does not overflow but whose ratio c/norm is a
// subnormal: the scale is rounded to a few units in the last place, the
// product lands far above c, and the shrink loop steps down one ulp at a
// time (about 2^50 iterations). Which vectors do this depends on the
// norm, i.e. on a record, so a coordinator choosing the model and a tiny
// clip learns whether a record's gradient norm falls in a window of its
// choice from whether the site ever answers, and the site burns a CPU
// forever.
func TestAttackClipSubnormalScaleHangs(t *testing.T) {
	cases := []struct {
		v []float64
		c float64
	}{
		{[]float64{1e300}, 7.5e-24},
		{[]float64{1e300, 0}, 7.5e-24},
		{[]float64{3e307, 1}, 1e-15},
	}
	for _, k := range cases {
		w, err, ok := clipWithin(t, k.v, k.c, 3*time.Second)
		if !ok {
			t.Errorf("ClipL2(%v, %v) did not return within 3s (the shrink loop steps one ulp at a time from a subnormal scale)", k.v, k.c)
			continue
		}
		if err != nil {
			t.Errorf("ClipL2(%v, %v): %v", k.v, k.c, err)
			continue
		}
		if n := l2(w); n > k.c {
			t.Errorf("ClipL2(%v, %v) left norm %v", k.v, k.c, n)
		}
	}
}

// Edge vectors and bounds: the result's norm is at most c, entries stay
// finite, no panic, no hang.
func TestAttackClipBoundEdges(t *testing.T) {
	huge := math.MaxFloat64
	tiny := math.SmallestNonzeroFloat64
	many := func(n int, x float64, head ...float64) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = x
		}
		copy(v, head)
		return v
	}
	vecs := [][]float64{
		{},
		{0},
		{math.Copysign(0, -1)},
		{math.Copysign(0, -1), math.Copysign(0, -1)},
		{tiny},
		{tiny, tiny, tiny},
		{huge, huge},
		{-huge, huge, -huge},
		{huge, tiny},
		many(1000, tiny, huge, huge),
		many(1000, 1e-300, huge, -huge),
		many(1000, huge/3),
		many(10000, 1.5*tiny),
		{1e308, 1e308, 1e-320},
		{1, 1e-320},
		{1e200, 1e-200},
	}
	bounds := []float64{tiny, 3 * tiny, 1e-320, 2.3e-308, 1e-300, 1e-100, 1e-10, 1, 1e10, 1e300, huge}
	for _, v := range vecs {
		for _, c := range bounds {
			w, err, ok := clipWithin(t, v, c, 3*time.Second)
			if !ok {
				t.Errorf("ClipL2(len %d, first %v, c=%v) did not return within 3s", len(v), head(v), c)
				continue
			}
			if err != nil {
				t.Errorf("ClipL2(len %d, first %v, c=%v): %v", len(v), head(v), c, err)
				continue
			}
			if n := l2(w); !(n <= c) {
				t.Errorf("ClipL2(len %d, first %v, c=%v) left norm %v", len(v), head(v), c, n)
			}
			for _, x := range w {
				if math.IsNaN(x) || math.IsInf(x, 0) {
					t.Errorf("ClipL2(len %d, c=%v) left %v", len(v), c, x)
					break
				}
			}
		}
	}
}

func head(v []float64) []float64 { return v[:min(len(v), 3)] }

// ClipStats after two records whose norms overflow: they are "for logs
// and the ledger", so they must stay finite (a +Inf mean norm cannot be
// written as JSON).
func TestAttackClipStatsStayFinite(t *testing.T) {
	var st ClipStats
	for range 2 {
		v := []float64{math.MaxFloat64, math.MaxFloat64}
		if err := ClipL2(v, 1, &st); err != nil {
			t.Fatal(err)
		}
	}
	for name, x := range map[string]float64{"SumNorm": st.SumNorm, "MaxNorm": st.MaxNorm, "MeanNorm": st.MeanNorm(), "MeanScale": st.MeanScale()} {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			t.Errorf("ClipStats.%s = %v after two overflowing vectors: %s", name, x, st)
		}
	}
}
