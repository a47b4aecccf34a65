package dp

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/fl-secure/fl-secure/dp/dptest"
)

// pFail is the false-failure rate of every statistical test in this file:
// each fails only when its p-value is below it. The samplers are seeded, so
// a run is reproducible; the rate says how unlucky a seed would have to be.
const pFail = 1e-6

func testSampler(t testing.TB, seed uint64) *Sampler {
	t.Helper()
	s, err := NewSampler(dptest.Rand(seed))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// chiSquare compares observed counts with expected probabilities (which
// must sum to 1 over the bins) and returns the p-value. Bins with expected
// count below 5 are pooled into their neighbour.
func chiSquare(t *testing.T, counts []int, probs []float64, n int) float64 {
	t.Helper()
	var stat float64
	bins := 0
	var oAcc, eAcc float64
	for i := range counts {
		oAcc += float64(counts[i])
		eAcc += probs[i] * float64(n)
		if eAcc < 5 && i != len(counts)-1 {
			continue
		}
		stat += (oAcc - eAcc) * (oAcc - eAcc) / eAcc
		bins++
		oAcc, eAcc = 0, 0
	}
	if bins < 2 {
		t.Fatalf("chi-square with %d bins", bins)
	}
	return distuv.ChiSquared{K: float64(bins - 1)}.Survival(stat)
}

// dgaussPMF returns the probabilities of N_Z(0, σ²) on [−m, m], with the
// mass outside folded into the end bins.
func dgaussPMF(sigma2 float64, m int) []float64 {
	w := make([]float64, 2*m+1)
	var z float64
	for x := -20 * m; x <= 20*m; x++ {
		p := math.Exp(-float64(x*x) / (2 * sigma2))
		z += p
		i := min(max(x, -m), m) + m
		w[i] += p
	}
	for i := range w {
		w[i] /= z
	}
	return w
}

func TestDiscreteGaussianDistribution(t *testing.T) {
	n := 400000
	if testing.Short() {
		n = 50000
	}
	for _, sigma := range []float64{0.3, 1, 3.7, 100} {
		t.Run(fmt.Sprintf("sigma=%v", sigma), func(t *testing.T) {
			g, err := NewDiscreteGaussianSigma(sigma)
			if err != nil {
				t.Fatal(err)
			}
			s := testSampler(t, 1)
			m := int(math.Ceil(6*sigma)) + 1
			counts := make([]int, 2*m+1)
			var sum, sumSq float64
			for i := 0; i < n; i++ {
				x := g.Sample(s)
				sum += float64(x)
				sumSq += float64(x) * float64(x)
				counts[min(max(int(x), -m), m)+m]++
			}
			probs := dgaussPMF(sigma*sigma, m)
			if p := chiSquare(t, counts, probs, n); p < pFail {
				t.Errorf("chi-square p = %.3g < %g", p, pFail)
			}
			// The variance of N_Z(0, σ²) is at most σ² (CKS 2020 §2);
			// the sample variance must not exceed it by more than 5
			// standard errors (p < 1e-6).
			v := sumSq / float64(n)
			se := sigma * sigma * math.Sqrt(2/float64(n))
			if v > sigma*sigma+5*se+1e-9 {
				t.Errorf("sample variance %.4f above σ² = %.4f by more than 5 standard errors", v, sigma*sigma)
			}
		})
	}
}

// The exact arbitrary-precision path must draw from the same distribution:
// σ² = 2/3 has no small binary form and σ = 0.7 as a float64 has a 2^104
// denominator when squared.
func TestDiscreteGaussianBigPath(t *testing.T) {
	n := 100000
	if testing.Short() {
		n = 20000
	}
	for _, c := range []struct {
		name   string
		sigma2 *big.Rat
	}{
		{"2/3", big.NewRat(2, 3)},
		{"0.7^2", func() *big.Rat { r := new(big.Rat).SetFloat64(0.7); return r.Mul(r, r) }()},
		{"10^13/3", big.NewRat(1e13, 3)},
	} {
		t.Run(c.name, func(t *testing.T) {
			g, err := NewDiscreteGaussian(c.sigma2)
			if err != nil {
				t.Fatal(err)
			}
			s := testSampler(t, 2)
			v, _ := c.sigma2.Float64()
			sigma := math.Sqrt(v)
			m := int(math.Ceil(6*sigma)) + 1
			if m > 50 {
				// Only check the mean and variance for wide distributions.
				var sum, sumSq float64
				for i := 0; i < n; i++ {
					x := float64(g.Sample(s))
					sum += x
					sumSq += x * x
				}
				mean, vr := sum/float64(n), sumSq/float64(n)
				if math.Abs(mean) > 5*sigma/math.Sqrt(float64(n)) {
					t.Errorf("mean %.4g too far from 0 for σ = %.4g", mean, sigma)
				}
				if math.Abs(vr/v-1) > 5*math.Sqrt(2/float64(n)) {
					t.Errorf("variance %.6g, want ≈ %.6g", vr, v)
				}
				return
			}
			counts := make([]int, 2*m+1)
			for i := 0; i < n; i++ {
				counts[min(max(int(g.Sample(s)), -m), m)+m]++
			}
			if p := chiSquare(t, counts, dgaussPMF(v, m), n); p < pFail {
				t.Errorf("chi-square p = %.3g < %g", p, pFail)
			}
		})
	}
}

func TestBernoulliExp(t *testing.T) {
	s := testSampler(t, 3)
	n := 200000
	for _, c := range []struct{ q, r, den uint64 }{
		{0, 0, 1}, {0, 1, 3}, {0, 2, 3}, {1, 0, 1}, {2, 1, 7}, {0, 999, 1000},
	} {
		want := math.Exp(-(float64(c.q) + float64(c.r)/float64(c.den)))
		k := 0
		for i := 0; i < n; i++ {
			if s.bernoulliExp(c.q, c.r, c.den) {
				k++
			}
		}
		got := float64(k) / float64(n)
		if want == 1 {
			if k != n {
				t.Errorf("Bernoulli(exp(0)) failed %d times", n-k)
			}
			continue
		}
		// Two-sided binomial z-test; |z| > 4.9 has p < 1e-6.
		z := (got - want) / math.Sqrt(want*(1-want)/float64(n))
		if math.Abs(z) > 4.9 {
			t.Errorf("Bernoulli(exp(−(%d+%d/%d))): frequency %.5f, want %.5f (z = %.2f)", c.q, c.r, c.den, got, want, z)
		}
	}
}

func TestDiscreteLaplaceDistribution(t *testing.T) {
	s := testSampler(t, 4)
	n := 200000
	const scale = 5
	m := 80
	counts := make([]int, 2*m+1)
	for i := 0; i < n; i++ {
		counts[min(max(int(s.discreteLaplace(scale)), -m), m)+m]++
	}
	probs := make([]float64, 2*m+1)
	var z float64
	for x := -40 * m; x <= 40*m; x++ {
		p := math.Exp(-math.Abs(float64(x)) / scale)
		z += p
		probs[min(max(x, -m), m)+m] += p
	}
	for i := range probs {
		probs[i] /= z
	}
	if p := chiSquare(t, counts, probs, n); p < pFail {
		t.Errorf("chi-square p = %.3g < %g", p, pFail)
	}
}

func TestUniformExact(t *testing.T) {
	s := testSampler(t, 5)
	const k = 7
	n := 140000
	counts := make([]int, k)
	for i := 0; i < n; i++ {
		counts[s.uniform(k)]++
	}
	probs := make([]float64, k)
	for i := range probs {
		probs[i] = 1.0 / k
	}
	if p := chiSquare(t, counts, probs, n); p < pFail {
		t.Errorf("chi-square p = %.3g < %g", p, pFail)
	}
	// Ranges near 2^32 and 2^64, where a wrong rejection threshold would
	// bias the top third: the top two bits of a draw from [0, 3·2^k) must be
	// uniform on {0, 1, 2}.
	for _, shift := range []uint{30, 31, 62} {
		counts := make([]int, 3)
		for i := 0; i < n; i++ {
			counts[s.uniform(3<<shift)>>shift]++
		}
		if p := chiSquare(t, counts, []float64{1. / 3, 1. / 3, 1. / 3}, n); p < pFail {
			t.Errorf("uniform(3·2^%d): chi-square p = %.3g < %g", shift, p, pFail)
		}
	}
}

// TestSamplerAccumulated pins the exact output of seeded samplers: any
// change to the algorithms or to how they consume randomness changes the
// hash. Regenerate the constant only for a deliberate change.
func TestSamplerAccumulated(t *testing.T) {
	h := sha256.New()
	var b [8]byte
	for _, sigma2 := range []*big.Rat{big.NewRat(1, 1), big.NewRat(10000, 1), big.NewRat(2, 3), big.NewRat(1e8, 1)} {
		g, err := NewDiscreteGaussian(sigma2)
		if err != nil {
			t.Fatal(err)
		}
		s := testSampler(t, 6)
		for i := 0; i < 5000; i++ {
			binary.LittleEndian.PutUint64(b[:], uint64(g.Sample(s)))
			h.Write(b[:])
		}
	}
	const want = "fdbe37494b7cab7fd688b7d84da8da6bf9302b890f4ba753f860dac98e87ef4e"
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Errorf("accumulated hash %s, want %s", got, want)
	}
}

func TestNewDiscreteGaussianRejects(t *testing.T) {
	for _, c := range []struct {
		sigma2 *big.Rat
	}{{nil}, {big.NewRat(0, 1)}, {big.NewRat(-1, 2)}, {new(big.Rat).SetInt(new(big.Int).Lsh(big.NewInt(1), 61))}} {
		if _, err := NewDiscreteGaussian(c.sigma2); err == nil {
			t.Errorf("NewDiscreteGaussian(%v) accepted", c.sigma2)
		}
	}
	for _, sigma := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		if _, err := NewDiscreteGaussianSigma(sigma); err == nil {
			t.Errorf("NewDiscreteGaussianSigma(%v) accepted", sigma)
		}
	}
}

func TestAddToRing(t *testing.T) {
	g, _ := NewDiscreteGaussianSigma(3)
	s := testSampler(t, 7)
	v := make([]uint64, 1000)
	if err := g.AddToRing(s, v, 16); err != nil {
		t.Fatal(err)
	}
	for i, x := range v {
		if x >= 1<<16 {
			t.Fatalf("v[%d] = %d outside Z_2^16", i, x)
		}
		d := int64(x)
		if d >= 1<<15 {
			d -= 1 << 16
		}
		if d < -60 || d > 60 {
			t.Fatalf("v[%d] = %d: noise of σ = 3 at 20σ", i, d)
		}
	}
	if err := g.AddToRing(s, v, 0); err == nil {
		t.Error("0-bit ring accepted")
	}
}

var sinkInt int64

func BenchmarkDiscreteGaussian(b *testing.B) {
	for _, sigma := range []float64{1, 100, 1e4} {
		b.Run(fmt.Sprintf("sigma=%g", sigma), func(b *testing.B) {
			g, _ := NewDiscreteGaussianSigma(sigma)
			s := testSampler(b, 8)
			b.ReportAllocs()
			for b.Loop() {
				sinkInt += g.Sample(s)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Msamples/s")
		})
	}
	// Baseline: the raw cost of 64 random bits from the same generator.
	b.Run("baseline=u64", func(b *testing.B) {
		s := testSampler(b, 8)
		for b.Loop() {
			sinkInt += int64(s.u64())
		}
	})
}
