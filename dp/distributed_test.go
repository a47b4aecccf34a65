package dp

import (
	"math"
	"testing"
)

func TestClipL2(t *testing.T) {
	var st ClipStats
	v := []float64{3, 4}
	if err := ClipL2(v, 1, &st); err != nil {
		t.Fatal(err)
	}
	if n := l2(v); n > 1 || n < 1-1e-12 {
		t.Errorf("clipped norm %v, want 1", n)
	}
	w := []float64{0.1, 0.1}
	ClipL2(w, 1, &st)
	if w[0] != 0.1 {
		t.Errorf("unclipped vector changed: %v", w)
	}
	if st.Count != 2 || st.Clipped != 1 || st.MaxNorm != 5 || math.Abs(st.MeanScale()-0.6) > 1e-12 {
		t.Errorf("stats %+v", st)
	}
	// Huge entries must not overflow the norm.
	big := []float64{1e300, 1e300}
	if err := ClipL2(big, 2, nil); err != nil || l2(big) > 2 {
		t.Errorf("huge vector: %v, norm %v", err, l2(big))
	}
	for _, bad := range [][]float64{{math.NaN()}, {math.Inf(1)}} {
		if err := ClipL2(bad, 1, nil); err == nil {
			t.Errorf("clipped %v", bad)
		}
	}
	if err := ClipL2([]float64{1}, 0, nil); err == nil {
		t.Error("bound 0 accepted")
	}
	// Clipping never leaves a norm above the bound, even after rounding.
	s := testSampler(t, 11)
	for i := 0; i < 2000; i++ {
		v := make([]float64, 1+i%17)
		for j := range v {
			v[j] = float64(int64(s.u64())) * 1e-15
		}
		c := 1 + float64(i%7)*0.37
		ClipL2(v, c, nil)
		if l2(v) > c {
			t.Fatalf("norm %v above bound %v", l2(v), c)
		}
	}
}

func TestSumClipped(t *testing.T) {
	var st ClipStats
	sum, err := SumClipped([][]float64{{3, 4}, {0, 0.5}, {-6, 8}}, 1, &st)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{0.6 - 0.6, 0.8 + 0.5 + 0.8}
	for i := range want {
		if math.Abs(sum[i]-want[i]) > 1e-12 {
			t.Errorf("sum %v, want %v", sum, want)
		}
	}
	if st.Clipped != 2 || st.Count != 3 {
		t.Errorf("stats %v", st)
	}
	if _, err := SumClipped([][]float64{{1, 2}, {1}}, 1, nil); err == nil {
		t.Error("ragged gradients accepted")
	}
	if _, err := SumClipped(nil, 1, nil); err == nil {
		t.Error("no gradients accepted")
	}
}

func TestDistribute(t *testing.T) {
	cfg := DistributedConfig{Sigma: 1.2, Clip: 1, Clients: 20, Threshold: 14, Colluders: 3, Dim: 10000, Bits: 32}
	p, err := Distribute(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The honest survivors' noise reaches the target σ.
	if got := math.Sqrt(float64(p.Honest)) * p.LocalSigma; math.Abs(got-cfg.Sigma) > 1e-12 {
		t.Errorf("honest noise σ %v, want %v", got, cfg.Sigma)
	}
	if p.Honest != 11 || p.SumSigma <= cfg.Sigma {
		t.Errorf("honest %d, sum σ %v", p.Honest, p.SumSigma)
	}
	if lg := math.Log2(p.Gamma); lg != math.Trunc(lg) {
		t.Errorf("γ = %v is not a power of two", p.Gamma)
	}
	if p.WrapProbability > math.Exp2(-40) {
		t.Errorf("wrap probability %v above 2^-40", p.WrapProbability)
	}
	// With a large integer σ, τ vanishes and the effective multiplier is
	// σ_sum / (rounded sensitivity) in integer units; rounding makes it
	// smaller than the continuous σ/C.
	if p.Tau > 1e-300 {
		t.Errorf("τ = %v at integer σ = %v", p.Tau, p.LocalSigma/p.Gamma)
	}
	if !(p.NoiseMultiplier < cfg.Sigma/cfg.Clip && p.NoiseMultiplier > 0.9*cfg.Sigma/cfg.Clip) {
		t.Errorf("effective multiplier %v against continuous %v", p.NoiseMultiplier, cfg.Sigma/cfg.Clip)
	}
	// Conditional rounding tightens the sensitivity bound.
	cfg.RoundingBeta = math.Exp(-0.5)
	q, err := Distribute(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !(q.L2 <= p.L2 && q.NoiseMultiplier >= p.NoiseMultiplier) {
		t.Errorf("conditional rounding: L2 %v vs %v", q.L2, p.L2)
	}
	// Fewer bits: coarser grid; too few: an error naming the problem.
	cfg.Bits, cfg.Sigma = 8, 0.2
	if _, err := Distribute(cfg); err == nil {
		t.Error("8-bit ring with σ below one grid step accepted")
	}
	for _, bad := range []DistributedConfig{
		{Sigma: 0, Clip: 1, Clients: 5, Threshold: 3, Dim: 1, Bits: 32},
		{Sigma: 1, Clip: -1, Clients: 5, Threshold: 3, Dim: 1, Bits: 32},
		{Sigma: 1, Clip: 1, Clients: 5, Threshold: 6, Dim: 1, Bits: 32},
		{Sigma: 1, Clip: 1, Clients: 5, Threshold: 3, Colluders: 3, Dim: 1, Bits: 32},
		{Sigma: 1, Clip: 1, Clients: 5, Threshold: 3, Dim: 0, Bits: 32},
		{Sigma: 1, Clip: 1, Clients: 5, Threshold: 3, Dim: 1, Bits: 70},
	} {
		if _, err := Distribute(bad); err == nil {
			t.Errorf("Distribute(%+v) accepted", bad)
		}
	}
}

// The plan's shares, summed over the honest survivors, have the target
// variance: sample it.
func TestDistributedSharesSum(t *testing.T) {
	p, err := Distribute(DistributedConfig{Sigma: 3, Clip: 1, Clients: 6, Threshold: 4, Colluders: 0, Dim: 100, Bits: 24})
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewDiscreteGaussian(p.LocalSigma2)
	if err != nil {
		t.Fatal(err)
	}
	s := testSampler(t, 12)
	const n = 40000
	var ss float64
	for i := 0; i < n; i++ {
		var sum int64
		for j := 0; j < p.Honest; j++ {
			sum += g.Sample(s)
		}
		x := float64(sum) * p.Gamma
		ss += x * x
	}
	v := ss / n
	// Var N_Z(0, σ²) ≤ σ² and is within 1e-9 of it for σ ≥ 3 grid steps;
	// 5 standard errors (p < 1e-6).
	if se := 9 * math.Sqrt(2.0/n); math.Abs(v-9) > 5*se {
		t.Errorf("variance of the honest sum %v, want 9 ± %v", v, 5*se)
	}
}

func TestRoundAndGridGaussian(t *testing.T) {
	s := testSampler(t, 13)
	x := []float64{0.3, -1.7, 2.5}
	// Unbiased: the mean of many roundings approaches x/γ.
	const n = 20000
	mean := make([]float64, len(x))
	for i := 0; i < n; i++ {
		r, err := Round(s, x, 0.5, math.Inf(1))
		if err != nil {
			t.Fatal(err)
		}
		for j := range r {
			mean[j] += float64(r[j]) / n
		}
	}
	for j := range x {
		if want := x[j] / 0.5; math.Abs(mean[j]-want) > 5*0.5/math.Sqrt(n) {
			t.Errorf("coordinate %d: mean rounding %v, want %v", j, mean[j], want)
		}
	}
	// Conditional rounding respects its bound.
	for i := 0; i < 100; i++ {
		r, err := Round(s, []float64{0.5, 0.5, 0.5, 0.5}, 1, 1.5)
		if err != nil {
			t.Fatal(err)
		}
		var n2 float64
		for _, v := range r {
			n2 += float64(v * v)
		}
		if math.Sqrt(n2) > 1.5 {
			t.Fatalf("rounded norm %v above 1.5", math.Sqrt(n2))
		}
	}
	if _, err := Round(s, []float64{1.5, 1.5}, 1, 0.1); err != ErrRounding {
		t.Errorf("impossible bound: %v", err)
	}
	if _, err := Round(s, []float64{math.NaN()}, 1, math.Inf(1)); err == nil {
		t.Error("NaN rounded")
	}
	gg, err := NewGridGaussian(0.01, -20)
	if err != nil {
		t.Fatal(err)
	}
	v := []float64{1, 2, 3}
	if err := gg.Add(s, v); err != nil {
		t.Fatal(err)
	}
	for i, x := range v {
		if q := x / gg.Gamma(); q != math.Trunc(q) {
			t.Errorf("v[%d] = %v is off the grid", i, x)
		}
		if math.Abs(x-float64(i+1)) > 0.2 {
			t.Errorf("v[%d] = %v: noise σ = 0.01 moved it by %v", i, x, x-float64(i+1))
		}
	}
	if got := GridSensitivity(1, 0.25, 16); got != 2 {
		t.Errorf("GridSensitivity = %v, want 2", got)
	}
}
