package secagg

import (
	"errors"
	"fmt"
	"math"
)

// Limits on parameters, and so on the sizes a decoder accepts.
const (
	// MaxClients is the largest roster: client identifiers are 1..MaxClients.
	MaxClients = 1 << 16
	// MaxLength is the largest vector length d.
	MaxLength = 1 << 28
)

// Params fixes one round of secure aggregation. Every client and the server
// of a round must hold the same Round, Clients, Threshold, Degree, Length and
// Bits. Corrupt and MinSurvivors are each party's own settings: a client is
// protected by the values it holds itself, never by the coordinator's.
type Params struct {
	// Round identifies the round. It is bound into every key derivation,
	// share encryption and signature, so messages of one round are useless
	// in another. Clients must never reuse a round identifier.
	Round uint64
	// Clients is n, the size of the roster; client identifiers are 1..n.
	Clients int
	// Threshold is t, the number of shares needed to recover a client's
	// secrets. Safe values satisfy k/2 < t ≤ k.
	Threshold int
	// Degree is k, the number of neighbours each client shares its secrets
	// with and masks against. k = n−1 is the complete graph of Bonawitz et
	// al.; smaller k is SecAgg+ (Bell et al.) and must be even. Use
	// Recommend to derive k and t from the tolerated dropout and corruption
	// rates.
	Degree int
	// Corrupt is the number of clients that may collude with the server. It
	// raises the consistency-check quorum; on the complete graph it must be
	// below Threshold. On a sparse graph, Recommend bounds the chance that
	// some client has Threshold corrupt neighbours. A client must take it
	// from its own configuration: with a smaller value than the true number
	// of colluders, two survivor sets can both reach the quorum.
	Corrupt int
	// MinSurvivors is this party's floor on the number of clients in a
	// round (0: none beyond the consistency quorum), such as a site's
	// minimum cohort. A client refuses a round with fewer advertised
	// clients, on the complete graph one in which fewer clients sent it
	// shares, and refuses to sign a smaller survivor set; a server stops at
	// the same points.
	MinSurvivors int
	// Length is d, the number of ring elements in each input.
	Length int
	// Bits is b: inputs are vectors over Z_{2^b}, b ∈ {32, 64}.
	Bits int
	// Context, if not zero, is a digest of everything else the caller
	// agreed for this round (for example the noise a client adds and the
	// privacy it is charged for). It is bound into every advert signature
	// and so into the advert-set digest that every sealed share and
	// consistency signature carries: clients whose Context differs never
	// accept each other's adverts, and the round fails in ShareKeys,
	// before any input is masked. A server cannot show clients different
	// terms for one round.
	Context [32]byte
}

// Validate reports the first parameter that cannot be safe, naming it.
func (p Params) Validate() error {
	switch {
	case p.Clients < 3 || p.Clients > MaxClients:
		return fmt.Errorf("secagg: Clients = %d, want 3 ≤ n ≤ %d (with two clients the sum reveals the other's input)", p.Clients, MaxClients)
	case p.Degree < 2 || p.Degree > p.Clients-1:
		return fmt.Errorf("secagg: Degree = %d, want 2 ≤ k ≤ n−1 = %d", p.Degree, p.Clients-1)
	case p.Degree < p.Clients-1 && p.Degree%2 != 0:
		return fmt.Errorf("secagg: Degree = %d is odd: a sparse graph (k < n−1 = %d) needs an even degree; use %d or %d", p.Degree, p.Clients-1, p.Degree-1, p.Degree+1)
	case p.Threshold > p.Degree:
		return fmt.Errorf("secagg: Threshold = %d exceeds Degree = %d: no client could ever be recovered", p.Threshold, p.Degree)
	case 2*p.Threshold <= p.Degree:
		return fmt.Errorf("secagg: Threshold = %d ≤ Degree/2 = %d/2: two disjoint groups of neighbours could each recover a different secret of the same client", p.Threshold, p.Degree)
	case p.Corrupt < 0:
		return fmt.Errorf("secagg: Corrupt = %d is negative", p.Corrupt)
	case p.Degree == p.Clients-1 && p.Corrupt >= p.Threshold:
		return fmt.Errorf("secagg: Corrupt = %d ≥ Threshold = %d on the complete graph: colluding clients could recover an honest client's secrets", p.Corrupt, p.Threshold)
	case p.Corrupt >= p.Clients:
		return fmt.Errorf("secagg: Corrupt = %d, want fewer than Clients = %d", p.Corrupt, p.Clients)
	case p.MinSurvivors < 0 || p.MinSurvivors > p.Clients:
		return fmt.Errorf("secagg: MinSurvivors = %d, want 0 ≤ MinSurvivors ≤ Clients = %d", p.MinSurvivors, p.Clients)
	case p.Length < 1 || p.Length > MaxLength:
		return fmt.Errorf("secagg: Length = %d, want 1 ≤ d ≤ %d", p.Length, MaxLength)
	case p.Bits != 32 && p.Bits != 64:
		return fmt.Errorf("secagg: Bits = %d, want 32 or 64", p.Bits)
	}
	if q := quorum(p, p.Clients); q > p.Clients {
		return fmt.Errorf("secagg: Corrupt = %d leaves no consistency quorum among %d clients", p.Corrupt, p.Clients)
	}
	return nil
}

// quorum is the number of matching consistency signatures a client needs
// before it reveals any share, when m clients advertised keys. Any two sets
// of more than (m+c)/2 signers share more than c signers, hence an honest
// one; an honest client signs one survivor set per round, so at most one
// survivor set can ever reach the quorum (Bonawitz et al. 2017, round
// ConsistencyCheck, strengthened from "t signatures" to a majority bound so
// that it holds for any t).
func quorum(p Params, m int) int {
	return max(p.Threshold, (m+p.Corrupt)/2+1)
}

// Plan is a parameter choice with the probabilities behind it.
type Plan struct {
	Degree, Threshold, Corrupt int
	// SecurityFailure bounds, for one neighbour graph, the probability that
	// the Corrupt clients could open more than the survivors' sum: that some
	// client has Threshold or more corrupt neighbours (who could then
	// recover its secrets), or, on a sparse graph, that some run of k/2
	// consecutive ring positions holds Threshold − k/2 or more corrupt
	// clients (who, with the clients around them declared dropped, could
	// be the only link between two parts of the honest survivors).
	SecurityFailure float64
	// GrindingBits is log2 of the number of neighbour graphs a coordinator
	// is assumed to be able to try, by leaving out adverts (or having
	// colluding clients re-advertise) until it likes the graph: 40 on a
	// sparse graph, 0 on the complete graph, which has no choice to make.
	GrindingBits int
	// SecurityFailureGround = min(1, 2^GrindingBits · SecurityFailure)
	// bounds the failure after such grinding (a union bound over the graphs
	// tried). Recommend keeps it at most 2^-40.
	SecurityFailureGround float64
	// CorrectnessFailure bounds the probability that some client keeps fewer
	// than Threshold neighbours who are neither dropped nor corrupt, which
	// fails the round (without revealing anything).
	CorrectnessFailure float64
}

// Targets of Recommend: statistical security 2^-40 after a coordinator has
// tried 2^40 graphs, and a round failure probability of at most 2^-20: the
// statistical security and correctness parameters σ = 40 and η = 20 of the
// kind Bell et al. 2020 use to size k, with σ raised by the grinding budget.
const (
	securityBits    = 40
	grindingBits    = 40
	correctnessBits = 20
)

// Recommend derives the neighbour degree k and threshold t for n clients of
// which a fraction dropout may drop out and a fraction corruption may collude
// with the server, following Bell et al., "Secure Single-Server Aggregation
// with (Poly)Logarithmic Overhead", CCS 2020: on the random Harary graph
// each client's neighbourhood, and each run of k/2 consecutive ring
// positions, is a uniformly random subset of the other n−1 clients, so with
// c = ⌈corruption·n⌉ corrupt clients
//
//	security:    n · Pr[Hypergeometric(n−1, c, k) ≥ t]
//	           + n · Pr[Hypergeometric(n−1, c, k/2) ≥ t − k/2] ≤ 2^-40 / 2^40
//	correctness: n · Pr[Binomial(k, dropout+corruption) > k − t] ≤ 2^-20
//
// (union bounds over clients, and over the 2^40 graphs a grinding
// coordinator may try), subject to k even and k/2 < t ≤ k. The first
// term is the event that some client has t corrupt neighbours. The second
// is the event that corrupt clients could bridge two parts of the honest
// survivors: an honest survivor next to a run of k/2 positions holding no
// honest survivor keeps at most k/2 of its other neighbours, so it signs
// only if t − k/2 corrupt clients sit in that run. Recommend returns the
// smallest such k, and the smallest t for it. If complete is true, or no k
// < n−1 qualifies, it returns the complete graph (classic SecAgg) with the
// smallest safe t, and reports its failure probabilities.
func Recommend(n int, dropout, corruption float64, complete bool) (Plan, error) {
	if n < 3 || n > MaxClients {
		return Plan{}, fmt.Errorf("secagg: %d clients, want 3 ≤ n ≤ %d", n, MaxClients)
	}
	if !(dropout >= 0 && dropout < 1) {
		return Plan{}, fmt.Errorf("secagg: dropout rate %v, want 0 ≤ rate < 1", dropout)
	}
	if !(corruption >= 0 && corruption < 0.5) {
		return Plan{}, fmt.Errorf("secagg: corruption rate %v, want 0 ≤ rate < 0.5", corruption)
	}
	// The honest survivors, a fraction 1−dropout−corruption, must outnumber
	// the consistency quorum (n+c)/2.
	if dropout+1.5*corruption >= 0.5 {
		return Plan{}, errors.New("secagg: dropout + 1.5·corruption must stay below 0.5, or the honest survivors cannot reach the consistency quorum")
	}
	c := int(math.Ceil(corruption * float64(n)))
	bad := dropout + corruption
	evaluate := func(k, t int) Plan {
		pl := Plan{
			Degree: k, Threshold: t, Corrupt: c,
			SecurityFailure:    float64(n) * hyperTail(n-1, c, k, t),
			CorrectnessFailure: math.Min(1, float64(n)*binomTail(k, bad, k-t+1)),
		}
		if k < n-1 {
			pl.SecurityFailure += float64(n) * hyperTail(n-1, c, k/2, t-k/2)
			pl.GrindingBits = grindingBits
		}
		pl.SecurityFailure = math.Min(1, pl.SecurityFailure)
		pl.SecurityFailureGround = math.Min(1, math.Ldexp(pl.SecurityFailure, pl.GrindingBits))
		return pl
	}
	if !complete {
		for k := 2; k < n-1; k += 2 { // sparse graphs have even degree
			for t := k/2 + 1; t <= k; t++ {
				pl := evaluate(k, t)
				if pl.SecurityFailureGround > math.Ldexp(1, -securityBits) {
					continue // larger t is more secure: keep looking
				}
				if pl.CorrectnessFailure <= math.Ldexp(1, -correctnessBits) {
					return pl, nil
				}
				break // larger t is only less robust
			}
		}
	}
	k := n - 1
	t := max(k/2+1, c+1)
	if t > k {
		return Plan{}, fmt.Errorf("secagg: %d corrupt clients of %d leave no safe threshold", c, n)
	}
	return evaluate(k, t), nil
}

// hyperTail returns Pr[X ≥ t] for X ~ Hypergeometric(population N, K
// successes, n draws).
func hyperTail(N, K, n, t int) float64 {
	sum := 0.0
	for x := max(t, 0); x <= min(K, n); x++ {
		sum += math.Exp(lchoose(K, x) + lchoose(N-K, n-x) - lchoose(N, n))
	}
	return sum
}

// binomTail returns Pr[X ≥ t] for X ~ Binomial(n, p).
func binomTail(n int, p float64, t int) float64 {
	if t <= 0 {
		return 1
	}
	if p == 0 {
		return 0
	}
	sum := 0.0
	for x := t; x <= n; x++ {
		sum += math.Exp(lchoose(n, x) + float64(x)*math.Log(p) + float64(n-x)*math.Log1p(-p))
	}
	return sum
}

func lchoose(n, k int) float64 {
	if k < 0 || k > n {
		return math.Inf(-1)
	}
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}
