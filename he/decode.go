package he

import (
	"math"
	"math/big"

	"github.com/tuneinsight/lattigo/v5/ring"
)

// A rangeCheck decodes the coefficients of a decrypted polynomial (Δ·m +
// error, in the coefficient domain) and checks each against what an honest
// decryption can be. It decodes from the exact integers, not from lattigo's
// float decoder, so that values on a grid are recovered exactly.
type rangeCheck struct {
	p     *Params
	bound float64 // |x| ≤ bound for the used coefficients (raw units)
	tol   float64 // CKKS error allowed around a grid point or, past the used coefficients, around 0 (raw units)
	shift int     // log2 of the grid step in raw units (γ·Δ); −1: no grid
	exp   int     // log2 of the grid step γ

	crt     []*big.Int // Q/q_i · ((Q/q_i)^−1 mod q_i)
	modQ    *big.Int
	halfQ   *big.Int
	x, t    big.Int
	bf      big.Float
	r, q    big.Int
	mask    *big.Int // 2^shift − 1
	halfBig *big.Int // 2^(shift−1)
	stepBig *big.Int // 2^shift
}

var bigOne = big.NewInt(1)

// setGrid sets the grid γ = 2^e.
func (rc *rangeCheck) setGrid(e int) {
	rc.exp = e
	rc.shift = rc.p.logS + e
}

// decode decodes the first used coefficients of raw into out and checks
// every coefficient; it reports whether all pass. It looks at every
// coefficient whatever the outcome (no early exit).
func (rc *rangeCheck) decode(raw ring.Poly, used int, out []float64) bool {
	p := rc.p
	n := p.p.N()
	logS := p.logS
	ok := true
	if len(p.p.Q()) == 1 && rc.shift < 62 {
		q := p.p.Q()[0]
		for j, v := range raw.Coeffs[0][:n] {
			x := int64(v)
			if v > q/2 {
				x = -int64(q - v)
			}
			ax := math.Abs(float64(x))
			if j >= used {
				ok = ax <= rc.tol && ok
				continue
			}
			ok = ax <= rc.bound && ok
			if rc.shift < 0 {
				out[j] = math.Ldexp(float64(x), -logS)
				continue
			}
			// x = qq·2^shift + r with |r| ≤ 2^(shift−1).
			m := int64(1) << rc.shift
			r := x & (m - 1)
			qq := (x - r) >> rc.shift
			if r > m/2 {
				r -= m
				qq++
			}
			ok = math.Abs(float64(r)) <= rc.tol && ok
			out[j] = math.Ldexp(float64(qq), rc.exp)
		}
		return ok
	}
	if rc.crt == nil {
		rc.initCRT()
	}
	if rc.shift >= 0 && rc.mask == nil {
		rc.stepBig = new(big.Int).Lsh(bigOne, uint(rc.shift))
		rc.mask = new(big.Int).Sub(rc.stepBig, bigOne)
		rc.halfBig = new(big.Int).Rsh(rc.stepBig, 1)
	}
	mask, half := rc.mask, rc.halfBig
	x := &rc.x
	for j := 0; j < n; j++ {
		// CRT: x = Σ r_i·crt_i mod Q, centred.
		x.SetUint64(0)
		for i, c := range rc.crt {
			rc.t.SetUint64(raw.Coeffs[i][j])
			rc.t.Mul(&rc.t, c)
			x.Add(x, &rc.t)
		}
		x.Mod(x, rc.modQ)
		if x.Cmp(rc.halfQ) >= 0 {
			x.Sub(x, rc.modQ)
		}
		ax, _ := rc.bf.SetInt(x).Float64()
		ax = math.Abs(ax)
		if j >= used {
			ok = ax <= rc.tol && ok
			continue
		}
		ok = ax <= rc.bound && ok
		if rc.shift < 0 {
			out[j] = math.Ldexp(ax*float64(x.Sign()), -logS)
			continue
		}
		rc.r.And(x, mask) // two's complement: x mod 2^shift, in [0, 2^shift)
		rc.q.Sub(x, &rc.r)
		rc.q.Rsh(&rc.q, uint(rc.shift))
		if rc.r.Cmp(half) > 0 {
			rc.r.Sub(&rc.r, rc.stepBig)
			rc.q.Add(&rc.q, bigOne)
		}
		r, _ := rc.bf.SetInt(&rc.r).Float64()
		ok = math.Abs(r) <= rc.tol && ok
		qf, _ := rc.bf.SetInt(&rc.q).Float64()
		out[j] = math.Ldexp(qf, rc.exp)
	}
	rc.x.SetInt64(0)
	rc.t.SetInt64(0)
	return ok
}

func (rc *rangeCheck) initCRT() {
	moduli := rc.p.p.Q()
	rc.modQ = big.NewInt(1)
	for _, q := range moduli {
		rc.modQ.Mul(rc.modQ, new(big.Int).SetUint64(q))
	}
	rc.halfQ = new(big.Int).Rsh(rc.modQ, 1)
	for _, q := range moduli {
		qi := new(big.Int).SetUint64(q)
		c := new(big.Int).Quo(rc.modQ, qi)
		inv := new(big.Int).ModInverse(new(big.Int).Mod(c, qi), qi)
		rc.crt = append(rc.crt, c.Mul(c, inv))
	}
}
