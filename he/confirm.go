package he

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"math"
	"math/big"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"
)

// Key confirmation ends setup. From the transcript hash T every party
// derives the same confirmation ciphertext (c0, c1) = u·pk + (M, 0), with
// u ternary and M's coefficients v_j·Δ/16, v_j ∈ [−8, 8), both
// drawn from a PRNG keyed with T: its plaintext is known to all and chosen
// after every commitment is fixed. Each party then sends, signed over T,
//
//   - if it is one of parties 1..t: its decryption share of (c0, c1) for the
//     decrypting set {1..t}, as in a round (λ_j·s_j·c1 + smudging, Mouchet
//     et al. 2021 §4.4 with the threshold share of ePrint 2022/780);
//   - if N > t: its parity share r_j·s_j·c1 + smudging, where
//     r_j = w_j·g(j), w_j = Π_{k≠j} (j−k)^{−1} over the N points, and g is a
//     polynomial of degree N−t−1 with coefficients drawn from T.
//
// Confirm checks that the first decrypts to M (the shares of {1..t} combine
// to the secret of the collective public key) and that the parity shares
// sum to a small polynomial. The second holds for every g exactly when the
// N threshold shares s_1..s_N lie on one polynomial f of degree t−1: the
// r_j span the dual of the Reed–Solomon code of evaluations of such f
// (Σ_j w_j·g(j)·f(j) is the leading coefficient of the degree-(N−1)
// interpolant of g·f, of degree N−2), so with g random after the shares are
// committed an inconsistent share survives with probability about 1/q per
// coefficient. Together: every t-subset decrypts alike. Every result is
// smudged like a round's decryption and counts against each party's
// decryption budget.
type confirmation struct {
	transcript [32]byte
	c0, c1     ring.Poly  // NTT domain
	want       []int64    // v_j
	parity     [][]uint64 // parity[j-1][i]: r_j mod q_i; nil if N == t
}

// confirmBits is log2 of the confirmation grid: M's values are multiples
// of 2^−4, a step that NewParams keeps above 16× the decryption error.
const confirmBits = 4

func newConfirmation(p *Params, cpk *rlwe.PublicKey, t [32]byte) *confirmation {
	key := sha256.Sum256(append([]byte(domainConfirmCt), t[:]...))
	prng, err := sampling.NewKeyedPRNG(key[:])
	if err != nil {
		panic("he: internal error: " + err.Error())
	}
	rq := p.p.RingQ()
	n := p.p.N()
	cf := &confirmation{transcript: t, want: make([]int64, n)}
	var buf [1]byte
	m := rq.NewPoly()
	for j := range cf.want {
		prng.Read(buf[:])
		v := int64(buf[0]&15) - 8
		cf.want[j] = v
		for i, q := range p.p.Q() {
			if v >= 0 {
				m.Coeffs[i][j] = uint64(v)
			} else {
				m.Coeffs[i][j] = q - uint64(-v)
			}
		}
	}
	rq.MulScalarBigint(m, new(big.Int).Lsh(big.NewInt(1), uint(p.logS-confirmBits)), m)
	rq.NTT(m, m)
	us, err := ring.NewSampler(prng, rq, p.p.Xs(), false)
	if err != nil {
		panic("he: internal error: " + err.Error())
	}
	u := rq.NewPoly()
	us.Read(u)
	rq.NTT(u, u)
	cf.c0, cf.c1 = rq.NewPoly(), rq.NewPoly()
	// The public key is held in NTT and Montgomery form.
	rq.MulCoeffsMontgomery(u, cpk.Value[0].Q, cf.c0)
	rq.MulCoeffsMontgomery(u, cpk.Value[1].Q, cf.c1)
	rq.Add(cf.c0, m, cf.c0)

	N, th := p.cfg.Parties, p.cfg.Threshold
	if N > th {
		cf.parity = make([][]uint64, N)
		for j := range cf.parity {
			cf.parity[j] = make([]uint64, len(p.p.Q()))
		}
		for i, q := range p.p.Q() {
			Q := new(big.Int).SetUint64(q)
			g := make([]*big.Int, N-th)
			for k := range g {
				g[k] = uniformMod(prng, Q)
			}
			for j := 1; j <= N; j++ {
				// w_j = Π_{k≠j} (j−k)^{−1}; r_j = w_j·g(j), all mod q.
				w := big.NewInt(1)
				for k := 1; k <= N; k++ {
					if k != j {
						w.Mul(w, big.NewInt(int64(j-k)))
						w.Mod(w, Q)
					}
				}
				w.ModInverse(w, Q)
				x := big.NewInt(int64(j))
				gj := new(big.Int)
				for k := len(g) - 1; k >= 0; k-- {
					gj.Mul(gj, x)
					gj.Add(gj, g[k])
					gj.Mod(gj, Q)
				}
				cf.parity[j-1][i] = w.Mul(w, gj).Mod(w, Q).Uint64()
			}
		}
	}
	return cf
}

// uniformMod draws a uniform integer below q from prng (rejection
// sampling over 64-bit words; q < 2^61).
func uniformMod(prng sampling.PRNG, q *big.Int) *big.Int {
	var b [8]byte
	qq := q.Uint64()
	limit := ^uint64(0) - ^uint64(0)%qq
	for {
		prng.Read(b[:])
		v := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
			uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
		if v < limit {
			return new(big.Int).SetUint64(v % qq)
		}
	}
}

// lagrange returns, per modulus, party j's Lagrange coefficient at 0 for
// the decrypting set: Π_{k∈set, k≠j} k/(k−j) mod q_i.
func lagrange(p *Params, set []int, j int) []uint64 {
	out := make([]uint64, len(p.p.Q()))
	for i, q := range p.p.Q() {
		Q := new(big.Int).SetUint64(q)
		num, den := big.NewInt(1), big.NewInt(1)
		for _, k := range set {
			if k == j {
				continue
			}
			num.Mod(num.Mul(num, big.NewInt(int64(k))), Q)
			den.Mod(den.Mul(den, big.NewInt(int64(k-j))), Q)
		}
		den.ModInverse(den, Q)
		out[i] = num.Mod(num.Mul(num, den), Q).Uint64()
	}
	return out
}

// keySwitcher computes key-switch shares to the zero key from a scaled
// threshold key share: c1·(λ·s_j) + e, e the smudging Gaussian of σ_f.
type keySwitcher struct {
	rq    *ring.Ring
	key   ring.Poly // λ·s_j in NTT and Montgomery form
	flood ring.Sampler
	noise ring.Poly
}

func newKeySwitcher(p *Params, share ring.Poly, scalar []uint64) (*keySwitcher, error) {
	rq := p.p.RingQ().AtLevel(p.p.MaxLevel())
	mont := make(ring.RNSScalar, len(scalar))
	for i, s := range rq.SubRings {
		mont[i] = ring.MForm(scalar[i], s.Modulus, s.BRedConstant)
	}
	ks := &keySwitcher{rq: rq, key: rq.NewPoly(), noise: rq.NewPoly()}
	rq.MulRNSScalarMontgomery(share, mont, ks.key)
	clear(mont)
	var err error
	if ks.flood, err = floodSampler(p); err != nil {
		ks.clear()
		return nil, err
	}
	return ks, nil
}

// share writes c1·key + e into out (NTT domain).
func (ks *keySwitcher) share(c1, out ring.Poly) {
	ks.rq.MulCoeffsMontgomery(c1, ks.key, out)
	ks.flood.Read(ks.noise)
	ks.rq.NTT(ks.noise, ks.noise)
	ks.rq.Add(out, ks.noise, out)
}

func (ks *keySwitcher) clear() {
	for _, row := range ks.key.Coeffs {
		clear(row)
	}
}

const (
	confirmDecrypt = 1 // share for the decrypting set {1..t}
	confirmParity  = 2 // parity share
)

// shares returns pt's signed key-confirmation message.
func (cf *confirmation) shares(pt *Party) ([]byte, error) {
	p := pt.params
	th := p.cfg.Threshold
	type item struct {
		tag    uint32
		scalar []uint64
	}
	var items []item
	if pt.id <= th {
		set := make([]int, th)
		for i := range set {
			set[i] = i + 1
		}
		items = append(items, item{confirmDecrypt, lagrange(p, set, pt.id)})
	}
	if cf.parity != nil {
		items = append(items, item{confirmParity, cf.parity[pt.id-1]})
	}
	if pt.decCount+len(items) > p.cfg.MaxDecryptions/2 {
		return nil, fmt.Errorf("%w: the key's decryption budget is spent", ErrRefused)
	}
	pt.decCount += len(items)
	w := newWriter(kindConfirm, p.cfg.Preset.ID, 48+len(items)*(4+p.CiphertextBytes()/2)+64)
	w.u32(uint32(pt.id))
	w.b = append(w.b, cf.transcript[:]...)
	w.u32(uint32(len(items)))
	out := p.p.RingQ().NewPoly()
	for _, it := range items {
		ks, err := newKeySwitcher(p, pt.threshold.Poly.Q, it.scalar)
		if err != nil {
			return nil, err
		}
		ks.share(cf.c1, out)
		ks.clear()
		w.u32(it.tag)
		w.poly(out)
	}
	w.b = append(w.b, ed25519.Sign(pt.sign, signedBytes(domainConfirm, groupHeader(p), w.b[8:]))...)
	return w.b, nil
}

// check verifies every party's key-confirmation message (see confirmation).
func (cf *confirmation) check(p *Params, roster []ed25519.PublicKey, msgs [][]byte) error {
	N, th := p.cfg.Parties, p.cfg.Threshold
	if len(msgs) != N {
		return fmt.Errorf("%w: %d key-confirmation messages for %d parties", ErrProtocol, len(msgs), N)
	}
	hdr := groupHeader(p)
	n := p.p.N()
	moduli := p.p.Q()
	rq := p.p.RingQ()
	dec, par := rq.NewPoly(), rq.NewPoly()
	var other []int
	for i, b := range msgs {
		what := fmt.Sprintf("key-confirmation message %d", i+1)
		r, body, sig, err := signed(p, b, kindConfirm, what)
		if err != nil {
			return err
		}
		id := int(r.u32("party"))
		t := r.take(32, "transcript hash")
		k := int(r.u32("share count"))
		want := 0
		if i+1 <= th {
			want++
		}
		if cf.parity != nil {
			want++
		}
		if r.err == nil && k != want {
			r.fail("%d shares, want %d", k, want)
		}
		tags := make([]uint32, 0, want)
		polys := make([]ring.Poly, 0, want)
		for s := 0; s < k && r.err == nil; s++ {
			tags = append(tags, r.u32("share kind"))
			polys = append(polys, r.poly(n, moduli, "share"))
		}
		if err := r.done(); err != nil {
			return err
		}
		if id != i+1 {
			return fmt.Errorf("%w: %s is from party %d", ErrProtocol, what, id)
		}
		if !ed25519.Verify(roster[i], signedBytes(domainConfirm, hdr, body[8:]), sig) {
			return fmt.Errorf("%w: %s: bad signature", ErrProtocol, what)
		}
		if string(t) != string(cf.transcript[:]) {
			other = append(other, id)
			continue
		}
		for s, tag := range tags {
			switch {
			case tag == confirmDecrypt && i+1 <= th && s == 0:
				rq.Add(dec, polys[s], dec)
			case tag == confirmParity && cf.parity != nil && s == len(tags)-1:
				rq.Add(par, polys[s], par)
			default:
				return fmt.Errorf("%w: %s: share %d has kind %d", ErrMalformed, what, s, tag)
			}
		}
	}
	if other != nil {
		return fmt.Errorf("%w: parties %v finished another setup transcript than this party's (the relay showed parties different messages, or they sent different ones)", ErrProtocol, other)
	}
	z := zRound(n)
	// The decryption of the confirmation vector: c0 + Σ shares = M + u·e + smudging.
	rq.Add(dec, cf.c0, dec)
	rq.INTT(dec, dec)
	got := make([]float64, n)
	rc := &rangeCheck{p: p, tol: p.ckksTolerance(z, th), bound: math.Exp2(float64(p.logS)) + p.ckksTolerance(z, th)}
	rc.setGrid(-confirmBits)
	ok := rc.decode(dec, n, got)
	for j, v := range cf.want {
		ok = ok && got[j] == math.Ldexp(float64(v), -confirmBits)
	}
	var failed []string
	if !ok {
		failed = append(failed, fmt.Sprintf("the shares of parties 1..%d do not decrypt it to its known value", th))
	}
	if cf.parity != nil {
		rq.INTT(par, par)
		pc := &rangeCheck{p: p, tol: p.ckksTolerance(z, N)}
		if !pc.decode(par, 0, nil) {
			failed = append(failed, fmt.Sprintf("the %d threshold key shares do not lie on one polynomial of degree %d", N, th-1))
		}
	}
	if failed != nil {
		return fmt.Errorf("%w: %s: some party dealt Shamir shares that do not match its public-key share or each other, or sent a wrong key-confirmation share; do not use this key, run setup again", ErrKeyConfirmation, joinAnd(failed))
	}
	return nil
}

func joinAnd(s []string) string {
	if len(s) == 2 {
		return s[0] + ", and " + s[1]
	}
	return s[0]
}
