package he

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"
)

// maxValues bounds an update's length.
const maxValues = 1 << 26

type submission struct {
	round   uint64
	context [ContextSize]byte
	party   int
	dim     int
	cts     [][2]ring.Poly
}

// parseSubmission decodes and verifies a client's signed submission.
func parseSubmission(p *Params, roster []ed25519.PublicKey, crs [32]byte, b []byte) (*submission, error) {
	r, body, sig, err := signed(p, b, kindSubmission, "submission")
	if err != nil {
		return nil, err
	}
	s := &submission{round: r.u64("round")}
	copy(s.context[:], r.take(ContextSize, "context"))
	s.party, s.dim = int(r.u32("party")), int(r.u32("length"))
	k := int(r.u32("ciphertext count"))
	n := p.p.N()
	vpc := p.ValuesPerCiphertext()
	if r.err == nil {
		switch {
		case s.party < 1 || s.party > p.cfg.Parties:
			r.fail("party %d outside [1, %d]", s.party, p.cfg.Parties)
		case s.dim < 1 || s.dim > maxValues:
			r.fail("length %d outside [1, 2^26]", s.dim)
		case k != (s.dim+vpc-1)/vpc:
			r.fail("%d ciphertexts for %d values, want %d", k, s.dim, (s.dim+vpc-1)/vpc)
		case len(r.b) != k*p.CiphertextBytes():
			// Check the size before decoding anything.
			r.fail("%d bytes of ciphertext, want %d", len(r.b), k*p.CiphertextBytes())
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	// The signature is checked before the polynomials are decoded: a forged
	// submission costs one hash and one verification.
	if !ed25519.Verify(roster[s.party-1], submissionDigest(crs, body[8:]), sig) {
		return nil, fmt.Errorf("%w: submission from party %d: bad signature (or another group)", ErrProtocol, s.party)
	}
	moduli := p.p.Q()
	s.cts = make([][2]ring.Poly, k)
	for c := range s.cts {
		s.cts[c][0] = r.poly(n, moduli, fmt.Sprintf("ciphertext %d", c))
		s.cts[c][1] = r.poly(n, moduli, fmt.Sprintf("ciphertext %d", c))
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	return s, nil
}

// sumSubmissions verifies submissions for round and returns their sum and
// contributors, refusing duplicates, mismatched lengths and submissions
// made under another context than the caller's.
func sumSubmissions(p *Params, roster []ed25519.PublicKey, crs [32]byte, round uint64, context [ContextSize]byte, subs [][]byte) ([][2]ring.Poly, []int, int, error) {
	var sum [][2]ring.Poly
	var who []int
	dim := 0
	seen := map[int]bool{}
	rq := p.p.RingQ()
	for _, b := range subs {
		s, err := parseSubmission(p, roster, crs, b)
		if err != nil {
			return nil, nil, 0, err
		}
		if s.round != round {
			return nil, nil, 0, fmt.Errorf("%w: submission from party %d is for round %d, not %d", ErrProtocol, s.party, s.round, round)
		}
		if s.context != context {
			return nil, nil, 0, fmt.Errorf("%w: party %d made its submission under other terms (context) than this party holds for round %d: the parties were shown different terms", ErrRefused, s.party, round)
		}
		if seen[s.party] {
			return nil, nil, 0, fmt.Errorf("%w: two submissions from party %d", ErrProtocol, s.party)
		}
		seen[s.party] = true
		if sum == nil {
			sum, dim = s.cts, s.dim
		} else {
			if s.dim != dim {
				return nil, nil, 0, fmt.Errorf("%w: party %d sent %d values, others %d", ErrProtocol, s.party, s.dim, dim)
			}
			for c := range sum {
				rq.Add(sum[c][0], s.cts[c][0], sum[c][0])
				rq.Add(sum[c][1], s.cts[c][1], sum[c][1])
			}
		}
		who = append(who, s.party)
	}
	sort.Ints(who)
	return sum, who, dim, nil
}

// An Aggregator is the coordinator's side of one round: it checks and adds
// submissions, asks t decryptors for shares of the sum, and combines them.
// It holds no key and can decrypt nothing by itself.
type Aggregator struct {
	params  *Params
	roster  []ed25519.PublicKey
	crs     [32]byte
	round   uint64
	context [ContextSize]byte
	subs    [][]byte
	who     map[int]bool
	dim     int
	sum     [][2]ring.Poly
	req     *request
	rng     *Range // what an honest sum of the round can be; nil: MaxAbsSum
}

// NewAggregator starts a round for a group whose common reference string
// is crs (every party's CRS()); context is the round's, which every
// submission must carry (see Encrypt).
func NewAggregator(p *Params, roster []ed25519.PublicKey, crs [32]byte, round uint64, context [ContextSize]byte) (*Aggregator, error) {
	if len(roster) != p.cfg.Parties {
		return nil, fmt.Errorf("he: roster has %d keys for %d parties", len(roster), p.cfg.Parties)
	}
	return &Aggregator{params: p, roster: slices.Clone(roster), crs: crs, round: round, context: context, who: map[int]bool{}}, nil
}

// Add verifies a submission and adds it to the running sum. A submission
// made under another context than the round's is refused: its party was
// shown other terms, and no decryptor would decrypt the mixed sum.
func (a *Aggregator) Add(sub []byte) error {
	if a.req != nil {
		return fmt.Errorf("%w: submission after the decryption request", ErrProtocol)
	}
	s, err := parseSubmission(a.params, a.roster, a.crs, sub)
	if err != nil {
		return err
	}
	if s.round != a.round {
		return fmt.Errorf("%w: submission for round %d in round %d", ErrProtocol, s.round, a.round)
	}
	if s.context != a.context {
		return fmt.Errorf("%w: party %d made its submission under other terms (context) than round %d's", ErrProtocol, s.party, a.round)
	}
	if a.who[s.party] {
		return fmt.Errorf("%w: second submission from party %d", ErrProtocol, s.party)
	}
	if a.sum == nil {
		a.sum, a.dim = s.cts, s.dim
	} else {
		if s.dim != a.dim {
			return fmt.Errorf("%w: party %d sent %d values, others %d", ErrProtocol, s.party, s.dim, a.dim)
		}
		rq := a.params.p.RingQ()
		for c := range a.sum {
			rq.Add(a.sum[c][0], s.cts[c][0], a.sum[c][0])
			rq.Add(a.sum[c][1], s.cts[c][1], a.sum[c][1])
		}
	}
	a.who[s.party] = true
	a.subs = append(a.subs, sub)
	return nil
}

// Contributors returns the parties whose submissions are in the sum.
func (a *Aggregator) Contributors() []int {
	var w []int
	for id := range a.who {
		w = append(w, id)
	}
	sort.Ints(w)
	return w
}

type request struct {
	round      uint64
	decryptors []int
	subs       [][]byte
}

// Request returns the decryption request to send to the first t of the
// available parties (sorted by id). It fails with ErrTooFewDecryptors if
// fewer than t are available and with ErrRefused if fewer than
// MinContributors clients submitted. Each request is final: a decryptor
// that has answered one request for a round answers no other.
func (a *Aggregator) Request(available []int) ([]byte, error) {
	cfg := a.params.cfg
	if len(a.who) < cfg.MinContributors {
		return nil, fmt.Errorf("%w: %d clients submitted, fewer than the %d a sum must hold", ErrRefused, len(a.who), cfg.MinContributors)
	}
	set := map[int]bool{}
	for _, id := range available {
		if id >= 1 && id <= cfg.Parties {
			set[id] = true
		}
	}
	if len(set) < cfg.Threshold {
		return nil, fmt.Errorf("%w: %d of %d key holders available, %d needed", ErrTooFewDecryptors, len(set), cfg.Parties, cfg.Threshold)
	}
	var dec []int
	for id := range set {
		dec = append(dec, id)
	}
	sort.Ints(dec)
	a.req = &request{round: a.round, decryptors: dec[:cfg.Threshold], subs: a.subs}
	return a.req.encode(a.params), nil
}

func (r *request) encode(p *Params) []byte {
	size := 16 + 4*len(r.decryptors)
	for _, s := range r.subs {
		size += 4 + len(s)
	}
	w := newWriter(kindRequest, p.cfg.Preset.ID, size)
	w.u64(r.round)
	w.u32(uint32(len(r.decryptors)))
	for _, d := range r.decryptors {
		w.u32(uint32(d))
	}
	w.u32(uint32(len(r.subs)))
	for _, s := range r.subs {
		w.bytes(s)
	}
	return w.b
}

func parseRequest(p *Params, b []byte) (*request, error) {
	r := newReader(b, kindRequest, p.cfg.Preset.ID, "decryption request")
	q := &request{round: r.u64("round")}
	nd := int(r.u32("decryptor count"))
	if r.err == nil && nd != p.cfg.Threshold {
		r.fail("%d decryptors, want exactly the threshold %d", nd, p.cfg.Threshold)
	}
	for i := 0; i < nd && r.err == nil; i++ {
		id := int(r.u32("decryptor"))
		if id < 1 || id > p.cfg.Parties || (i > 0 && id <= q.decryptors[i-1]) {
			r.fail("decryptor %d out of range or out of order", id)
		}
		q.decryptors = append(q.decryptors, id)
	}
	ns := int(r.u32("submission count"))
	if r.err == nil && (ns < 1 || ns > p.cfg.Parties) {
		r.fail("%d submissions for %d parties", ns, p.cfg.Parties)
	}
	for i := 0; i < ns && r.err == nil; i++ {
		q.subs = append(q.subs, r.bytes("submission", maxMessage))
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	return q, nil
}

// DecryptShare answers a decryption request with this party's share of the
// decryption of the sum, after checking that
//   - this party has not answered for this round before (any two
//     decrypting sets of t ≥ MinThreshold(N, c) share an honest party, so
//     no sum is ever decrypted twice and no two sums of one round are both
//     decrypted, even when c colluding parties answer twice);
//   - it is one of the request's t decryptors;
//   - the request carries at least MinContributors distinct clients'
//     submissions for the round, each signed by its client and made under
//     context, the round's context as this party knows it (for fl-secure,
//     the digest of the terms it was shown; see Encrypt), whether or not
//     this party contributed; the sum is recomputed here from them, never
//     taken from the coordinator;
//   - the key's decryption budget (MaxDecryptions/2 ciphertexts per party,
//     so fewer than MaxDecryptions in all) is not spent.
//
// The share is a collective key switch to the zero key (Mouchet et al.
// 2021, §4.4) of the additive share derived from this party's threshold
// key for the request's decrypting set, flooded with Gaussian noise of
// σ = SmudgingSigma (see Params).
func (pt *Party) DecryptShare(req []byte, context [ContextSize]byte) ([]byte, error) {
	if pt.step != stepReady {
		return nil, fmt.Errorf("%w: DecryptShare before setup finished", ErrProtocol)
	}
	p := pt.params
	q, err := parseRequest(p, req)
	if err != nil {
		return nil, err
	}
	if pt.decrypted[q.round] {
		return nil, fmt.Errorf("%w: this party already helped decrypt round %d", ErrRefused, q.round)
	}
	if !slices.Contains(q.decryptors, pt.id) {
		return nil, fmt.Errorf("%w: party %d is not among the request's decryptors %v", ErrRefused, pt.id, q.decryptors)
	}
	sum, who, _, err := sumSubmissions(p, pt.roster, pt.crs, q.round, context, q.subs)
	if err != nil {
		return nil, err
	}
	if len(who) < p.cfg.MinContributors {
		return nil, fmt.Errorf("%w: the sum holds %d client(s) %v, fewer than %d", ErrRefused, len(who), who, p.cfg.MinContributors)
	}
	if pt.decCount+len(sum) > p.cfg.MaxDecryptions/2 {
		return nil, fmt.Errorf("%w: the key's decryption budget (%d ciphertexts per party) is spent; run setup again", ErrRefused, p.cfg.MaxDecryptions/2)
	}
	// Commit to the refusal state before computing anything from the key.
	pt.decrypted[q.round] = true
	pt.decCount += len(sum)
	return pt.share(q.round, q.decryptors, sum)
}

// share computes the party's key-switch share of each ciphertext of sum for
// the decrypting set; DecryptShare has done every check.
func (pt *Party) share(round uint64, decryptors []int, sum [][2]ring.Poly) ([]byte, error) {
	p := pt.params
	// The key-switch share to the zero key (what lattigo's
	// mhe.KeySwitchProtocol.GenShare computes, with our smudging in place of
	// its fresh error) of the additive share λ_j·s_j for the decrypting set:
	// c1·λ_j·s_j + e_flood, in the NTT domain.
	ks, err := newKeySwitcher(p, pt.threshold.Poly.Q, lagrange(p, decryptors, pt.id))
	if err != nil {
		return nil, err
	}
	defer ks.clear()
	sh := p.p.RingQ().NewPoly()
	w := newWriter(kindShare, p.cfg.Preset.ID, 16+len(sum)*p.CiphertextBytes()/2)
	w.u64(round)
	w.u32(uint32(pt.id))
	w.u32(uint32(len(sum)))
	for c := range sum {
		ks.share(sum[c][1], sh)
		w.poly(sh)
	}
	return w.b, nil
}

// floodSampler returns the smudging sampler: a Gaussian of σ_f rounded to
// the integers, truncated only at 40σ (mass beyond: below 2^−1150 per
// coefficient), on a blake2b XOF keyed from crypto/rand.
func floodSampler(p *Params) (ring.Sampler, error) {
	prng, err := sampling.NewPRNG()
	if err != nil {
		return nil, fmt.Errorf("he: randomness: %w", err)
	}
	s, err := ring.NewSampler(prng, p.p.RingQ(), ring.DiscreteGaussian{Sigma: p.flood, Bound: 40 * p.flood}, false)
	if err != nil {
		return nil, fmt.Errorf("he: internal error: %w", err)
	}
	return s, nil
}

// ErrOutOfRange is wrapped by Combine when a decrypted sum lies outside
// the range that honest clients' inputs can produce (see Range): some
// client submitted a malformed ciphertext. The result is withheld.
var ErrOutOfRange = errors.New("he: decrypted sum out of range")

// A Range is what one round's sum can be when every client follows the
// protocol. Combine decodes all N coefficients of every decrypted
// ciphertext and returns nothing unless
//
//   - each of the round's values lies within MaxAbs + c·Grid + z·σ·√c of
//     zero (c the number of contributors, σ = Sigma; never beyond
//     MaxAbsSum), give or take the CKKS error;
//   - with Grid > 0, each value lies within the CKKS error of the grid
//     Grid·Z; the result is then the grid value itself, so nothing below
//     the grid (where a malformed ciphertext could hide key bits that the
//     honest values, known modulo the grid, do not cover) reaches the
//     caller;
//   - every coefficient past the round's values, where honest encodings
//     put zeros, lies within the CKKS error of zero.
//
// z is set per round for a false-alarm probability of at most 2^−40 (see
// the package documentation, "Range check"). The check cannot tell a
// malformed ciphertext whose effect stays inside the range from an honest
// input: the tighter the range, the less such a ciphertext can carry.
type Range struct {
	// MaxAbs bounds |Σ inputs| in every coordinate before DP noise: the
	// clipped inputs (for instance c·Clip for c updates clipped to L2 norm
	// Clip). 0 means Config.MaxAbsSum.
	MaxAbs float64
	// Sigma is the σ of each client's DP noise (dp.GridGaussian's σ: a
	// discrete Gaussian, σ²-sub-Gaussian); 0 when the round carries none.
	Sigma float64
	// Grid is the step γ (a power of two) of the grid every client's noised
	// input lies on (dp.GridGaussian's, or dp.Round's); 0 for none.
	Grid float64
}

// SetRange sets what this round's sum can be (see Range); without it,
// Combine checks the values against MaxAbsSum only. It refuses a grid
// finer than the CKKS error, which could not be told apart from it.
func (a *Aggregator) SetRange(r Range) error {
	p := a.params
	switch {
	case math.IsNaN(r.MaxAbs) || r.MaxAbs < 0 || math.IsInf(r.MaxAbs, 0):
		return fmt.Errorf("he: range bound %v must be finite and not negative", r.MaxAbs)
	case math.IsNaN(r.Sigma) || r.Sigma < 0 || math.IsInf(r.Sigma, 0):
		return fmt.Errorf("he: noise σ %v must be finite and not negative", r.Sigma)
	case math.IsNaN(r.Grid) || r.Grid < 0 || r.Grid > p.cfg.MaxAbsSum:
		return fmt.Errorf("he: grid step %v must be in [0, MaxAbsSum]", r.Grid)
	}
	if r.Grid > 0 {
		frac, e := math.Frexp(r.Grid)
		if frac != 0.5 {
			return fmt.Errorf("he: grid step %v is not a power of two", r.Grid)
		}
		// Half a grid step must hold 16× the CKKS error (with z for the
		// largest round): honest values then snap to the grid, and a
		// key-dependent term large enough to move a value to another grid
		// point is far beyond what the guard coefficients let through.
		tol := p.ckksTolerance(zRound(2*maxValues), p.cfg.Threshold)
		if half := math.Exp2(float64(p.logS + e - 2)); half < 16*tol {
			return fmt.Errorf("he: grid step 2^%d is finer than 32× the CKKS error bound %.3g; use a coarser grid or a larger preset", e-1, tol/math.Exp2(float64(p.logS)))
		}
	}
	a.rng = &r
	return nil
}

// check returns the range check for this round's Combine over m
// coefficients and the given number of decryptors.
func (a *Aggregator) check(decryptors, m int) *rangeCheck {
	p := a.params
	z := zRound(m)
	tol := p.ckksTolerance(z, decryptors)
	limit := p.cfg.MaxAbsSum
	rc := &rangeCheck{p: p, tol: tol, shift: -1}
	if r := a.rng; r != nil {
		c := float64(len(a.who))
		if r.MaxAbs > 0 {
			limit = min(limit, r.MaxAbs+c*r.Grid+z*r.Sigma*math.Sqrt(c))
		}
		if r.Grid > 0 {
			_, e := math.Frexp(r.Grid)
			rc.setGrid(e - 1)
		}
	}
	rc.bound = limit*math.Exp2(float64(p.logS)) + tol
	return rc
}

// ShareParty returns the round and the party that an encoded decryption
// share names, reading only its header. A transport that authenticates its
// peers compares them with the peer and the round before the share
// reaches Combine: a share sent in another party's name would otherwise
// crowd out that party's and make the round fail with no one to blame.
func ShareParty(b []byte) (round uint64, party int, err error) {
	if len(b) < 8 {
		return 0, 0, fmt.Errorf("%w: decryption share: %d bytes, shorter than the 8-byte header", ErrMalformed, len(b))
	}
	r := newReader(b, kindShare, b[6], "decryption share")
	round = r.u64("round")
	party = int(r.u32("party"))
	if r.err != nil {
		return 0, 0, r.err
	}
	return round, party, nil
}

// CheckShare checks a decryption share as Combine will — the request's
// round, one of its decryptors, one share per ciphertext of the sum, every
// residue below its modulus — and returns the party it names, so that a
// caller who knows which party sent it can blame a malformed share on its
// sender before Combine. What it cannot check is whether the share was
// computed from its party's key: nothing proves that (see the package
// documentation, "Decryption shares").
func (a *Aggregator) CheckShare(b []byte) (int, error) {
	if a.req == nil {
		return 0, fmt.Errorf("%w: CheckShare before Request", ErrProtocol)
	}
	id, _, err := a.parseShare(b)
	return id, err
}

// parseShare decodes a decryption share for this round's request.
func (a *Aggregator) parseShare(b []byte) (int, []ring.Poly, error) {
	p := a.params
	n := p.p.N()
	k := len(a.sum)
	r := newReader(b, kindShare, p.cfg.Preset.ID, "decryption share")
	round := r.u64("round")
	id := int(r.u32("party"))
	kk := int(r.u32("ciphertext count"))
	if r.err == nil {
		switch {
		case round != a.round:
			r.fail("round %d, want %d", round, a.round)
		case !slices.Contains(a.req.decryptors, id):
			r.fail("party %d is not a decryptor of this request", id)
		case kk != k:
			r.fail("%d ciphertext shares, want %d", kk, k)
		case len(r.b) != k*n*len(p.p.Q())*8:
			// Check the size before decoding anything.
			r.fail("%d bytes of shares, want %d", len(r.b), k*n*len(p.p.Q())*8)
		}
	}
	polys := make([]ring.Poly, k)
	for c := 0; c < k && r.err == nil; c++ {
		polys[c] = r.poly(n, p.p.Q(), fmt.Sprintf("share %d", c))
	}
	if err := r.done(); err != nil {
		return 0, nil, err
	}
	return id, polys, nil
}

// Combine adds the t decryption shares to the sum, decodes every
// coefficient and checks it (see Range). It returns the round's values, or
// an error wrapping ErrOutOfRange and no values. It needs exactly one share
// from each of the request's decryptors. A share not computed from its
// party's key (all zero, say) makes the sum out of range.
func (a *Aggregator) Combine(shares [][]byte) ([]float64, error) {
	if a.req == nil {
		return nil, fmt.Errorf("%w: Combine before Request", ErrProtocol)
	}
	p := a.params
	if len(shares) < len(a.req.decryptors) {
		return nil, fmt.Errorf("%w: %d of %d decryption shares", ErrTooFewDecryptors, len(shares), len(a.req.decryptors))
	}
	n := p.p.N()
	k := len(a.sum)
	rq := p.p.RingQ().AtLevel(p.p.MaxLevel())
	combined := make([]ring.Poly, k)
	got := map[int]bool{}
	for _, b := range shares {
		id, polys, err := a.parseShare(b)
		if err != nil {
			return nil, err
		}
		if got[id] {
			return nil, fmt.Errorf("%w: decryption share: second share from party %d", ErrMalformed, id)
		}
		got[id] = true
		for c := range polys {
			if combined[c].Coeffs == nil {
				combined[c] = polys[c]
			} else {
				rq.Add(combined[c], polys[c], combined[c])
			}
		}
	}
	if len(got) != len(a.req.decryptors) {
		return nil, fmt.Errorf("%w: shares from %d of the %d decryptors", ErrTooFewDecryptors, len(got), len(a.req.decryptors))
	}
	rc := a.check(len(a.req.decryptors), k*n)
	out := make([]float64, a.dim)
	raw := rq.NewPoly()
	ok := true
	vpc := p.ValuesPerCiphertext()
	for c := 0; c < k; c++ {
		// Key-switched to the zero key, the ciphertext's first part is the
		// plaintext: c0 + Σ shares = Δ·m + e + smudging. Every one of its N
		// coefficients is checked, values and guards, before anything is
		// returned.
		rq.Add(a.sum[c][0], combined[c], raw)
		rq.INTT(raw, raw)
		used := min(vpc, a.dim-c*vpc)
		ok = rc.decode(raw, used, out[c*vpc:c*vpc+used]) && ok
	}
	for _, row := range raw.Coeffs {
		clear(row)
	}
	if !ok {
		// The values may hold key material (a malformed ciphertext adds
		// c1·s): they go nowhere, not even into the error.
		clear(out)
		return nil, fmt.Errorf("%w: round %d: the decrypted sum of %d clients lies outside the range honest inputs can produce (false alarm below 2^-40); the result is withheld", ErrOutOfRange, a.round, len(a.who))
	}
	return out, nil
}
