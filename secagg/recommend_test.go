package secagg_test

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"testing"

	"github.com/fl-secure/fl-secure/secagg"
)

// exactHyperTail is Pr[X ≥ t] for X ~ Hypergeometric(population N, K
// successes, n draws), as an exact rational: Σ_x C(K,x)·C(N−K,n−x) / C(N,n).
// It shares no code with Recommend's log-space computation.
func exactHyperTail(N, K, n, t int) *big.Rat {
	num := new(big.Int)
	for x := max(t, 0); x <= min(K, n); x++ {
		if n-x > N-K {
			continue
		}
		term := new(big.Int).Binomial(int64(K), int64(x))
		term.Mul(term, new(big.Int).Binomial(int64(N-K), int64(n-x)))
		num.Add(num, term)
	}
	return new(big.Rat).SetFrac(num, new(big.Int).Binomial(int64(N), int64(n)))
}

// exactBinomTail is Pr[X ≥ t] for X ~ Binomial(n, p), exactly in p.
func exactBinomTail(n int, p *big.Rat, t int) *big.Rat {
	q := new(big.Rat).Sub(big.NewRat(1, 1), p)
	sum := new(big.Rat)
	for x := max(t, 0); x <= n; x++ {
		term := new(big.Rat).SetInt(new(big.Int).Binomial(int64(n), int64(x)))
		term.Mul(term, ratPow(p, x))
		term.Mul(term, ratPow(q, n-x))
		sum.Add(sum, term)
	}
	return sum
}

func ratPow(r *big.Rat, e int) *big.Rat {
	num := new(big.Int).Exp(r.Num(), big.NewInt(int64(e)), nil)
	den := new(big.Int).Exp(r.Denom(), big.NewInt(int64(e)), nil)
	return new(big.Rat).SetFrac(num, den)
}

// exactBounds recomputes, independently of Recommend, the per-graph
// security bound for a sparse graph of even degree k among n clients with c
// corrupt: some client has t corrupt neighbours, or some run of k/2
// consecutive ring positions holds t − k/2 corrupt clients (who could
// bridge two pieces of honest survivors), each by a union bound over n
// clients; and the correctness bound n · Pr[Binomial(k, bad) > k − t].
func exactBounds(n, c, k, t int, bad float64) (security, correctness *big.Rat) {
	return exactSecurity(n, c, k, t), exactCorrectness(n, k, t, bad)
}

func exactSecurity(n, c, k, t int) *big.Rat {
	nr := new(big.Rat).SetInt64(int64(n))
	security := new(big.Rat).Mul(nr, exactHyperTail(n-1, c, k, t))
	if k < n-1 {
		security.Add(security, new(big.Rat).Mul(nr, exactHyperTail(n-1, c, k/2, t-k/2)))
	}
	return security
}

func exactCorrectness(n, k, t int, bad float64) *big.Rat {
	// The rate as the decimal it was written as (0.1 = 1/10), which keeps
	// the powers small; it differs from the float64 by less than 2^-52.
	p, ok := new(big.Rat).SetString(strconv.FormatFloat(bad, 'g', -1, 64))
	if !ok {
		panic("bad rate")
	}
	return new(big.Rat).Mul(new(big.Rat).SetInt64(int64(n)), exactBinomTail(k, p, k-t+1))
}

var (
	// Recommend's targets: 2^-40 after a coordinator tries 2^40 graphs, and
	// a round failure probability of 2^-20.
	target80 = new(big.Rat).SetFrac(big.NewInt(1), new(big.Int).Lsh(big.NewInt(1), 80))
	target20 = new(big.Rat).SetFrac(big.NewInt(1), new(big.Int).Lsh(big.NewInt(1), 20))
)

func ratFloat(r *big.Rat) float64 { f, _ := r.Float64(); return f }

// closeTo reports whether got is within a relative 1e-6 of want (or both
// are below 1e-300, where float64 loses them).
func closeTo(got float64, want *big.Rat) bool {
	w := ratFloat(want)
	if w < 1e-300 {
		return got < 1e-300
	}
	return math.Abs(got-w) <= 1e-6*w
}

// TestRecommendGrindingBound checks Recommend against exact arithmetic: the
// sparse degree is even, the bound holds after a coordinator grinds through
// 2^40 advert subsets (n · Pr[…] ≤ 2^-40 / 2^40), the reported per-graph
// and after-grinding bounds are the exact values, and no smaller even
// degree meets both targets.
func TestRecommendGrindingBound(t *testing.T) {
	points := []struct {
		n                   int
		dropout, corruption float64
	}{
		{100, 0.05, 0}, {100, 0.1, 0.05}, {200, 0.1, 0.02}, {1000, 0.05, 0.05}, {1000, 0.1, 0},
	}
	for _, pt := range points {
		t.Run(fmt.Sprintf("n=%d/dropout=%v/corruption=%v", pt.n, pt.dropout, pt.corruption), func(t *testing.T) {
			pl, err := secagg.Recommend(pt.n, pt.dropout, pt.corruption, false)
			if err != nil {
				t.Fatal(err)
			}
			n, k, th := pt.n, pl.Degree, pl.Threshold
			c := int(math.Ceil(pt.corruption * float64(n)))
			if pl.Corrupt != c {
				t.Fatalf("Corrupt = %d, want %d", pl.Corrupt, c)
			}
			if k >= n-1 {
				t.Fatalf("no sparse graph: %+v", pl)
			}
			if k%2 != 0 {
				t.Fatalf("odd sparse degree %d", k)
			}
			bad := pt.dropout + pt.corruption
			sec, cor := exactBounds(n, c, k, th, bad)
			if sec.Cmp(target80) > 0 {
				t.Errorf("k=%d t=%d: per-graph security bound %.3g exceeds 2^-80 = 2^-40 / 2^40 grinding", k, th, ratFloat(sec))
			}
			if cor.Cmp(target20) > 0 {
				t.Errorf("k=%d t=%d: correctness bound %.3g exceeds 2^-20", k, th, ratFloat(cor))
			}
			if !closeTo(pl.SecurityFailure, sec) {
				t.Errorf("SecurityFailure = %.6g, exact %.6g", pl.SecurityFailure, ratFloat(sec))
			}
			if !closeTo(pl.CorrectnessFailure, cor) {
				t.Errorf("CorrectnessFailure = %.6g, exact %.6g", pl.CorrectnessFailure, ratFloat(cor))
			}
			if pl.GrindingBits != 40 {
				t.Errorf("GrindingBits = %d, want 40", pl.GrindingBits)
			}
			ground := new(big.Rat).Mul(sec, new(big.Rat).SetInt(new(big.Int).Lsh(big.NewInt(1), 40)))
			if !closeTo(pl.SecurityFailureGround, ground) || pl.SecurityFailureGround > math.Ldexp(1, -40) {
				t.Errorf("SecurityFailureGround = %.6g, want 2^40 · %.6g = %.6g ≤ 2^-40", pl.SecurityFailureGround, ratFloat(sec), ratFloat(ground))
			}
			// k is the smallest even degree with a threshold meeting both.
			if k > 2 {
				// Security improves and correctness worsens as t grows, so
				// the first secure t decides.
				for tt := (k-2)/2 + 1; tt <= k-2; tt++ {
					if exactSecurity(n, c, k-2, tt).Cmp(target80) > 0 {
						continue
					}
					if exactCorrectness(n, k-2, tt, bad).Cmp(target20) <= 0 {
						t.Errorf("k=%d t=%d meets both targets, smaller than the recommended k=%d", k-2, tt, k)
					}
					break
				}
			}
		})
	}
}
