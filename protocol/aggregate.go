package protocol

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"math"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/he"
	"github.com/fl-secure/fl-secure/internal/localround"
	"github.com/fl-secure/fl-secure/secagg"
)

// A summer opens the sum of the participating sites' vectors and nothing
// else. The sites' DP noise is added inside, at the step the mode
// requires: on integers after quantization (secagg) or on the grid before
// encoding (he).
type summer interface {
	// sum returns Σ vectors over the participating site indices, noised
	// with each participant's share when noise is on.
	sum(round uint64, sites []int, vectors [][]float64, noise bool) ([]float64, error)
}

// plainSummer adds vectors in the clear: NOT PRIVATE, for comparison only.
type plainSummer struct{}

func (plainSummer) sum(_ uint64, _ []int, vectors [][]float64, noise bool) ([]float64, error) {
	if noise {
		return nil, fmt.Errorf("protocol: plain mode carries no DP noise")
	}
	out := make([]float64, len(vectors[0]))
	for _, v := range vectors {
		for i, x := range v {
			out[i] += x
		}
	}
	return out, nil
}

// secaggSummer quantizes each site's vector to the grid γZ by randomized
// rounding (with the sensitivity bound of dp.Distribute), adds the site's
// integer noise share, and sums in Z_{2^b} with SecAgg over the
// participating sites (complete graph).
type secaggSummer struct {
	keys     []ed25519.PrivateKey
	bits     int
	gamma    float64
	bound    float64 // conditional-rounding bound on a rounded vector's norm
	noise    *dp.DiscreteGaussian
	samplers []*dp.Sampler
	corrupt  int
}

func (s *secaggSummer) sum(round uint64, sites []int, vectors [][]float64, noise bool) ([]float64, error) {
	n := len(sites)
	if n < 3 {
		return nil, fmt.Errorf("protocol: secure aggregation needs 3 sites, %d took part", n)
	}
	d := len(vectors[0])
	mask := uint64(1)<<s.bits - 1
	if s.bits == 64 {
		mask = ^uint64(0)
	}
	inputs := make([][]uint64, n)
	for j, i := range sites {
		r, err := dp.Round(s.samplers[i], vectors[j], s.gamma, s.bound)
		if err != nil {
			return nil, fmt.Errorf("protocol: site %d: %w", i+1, err)
		}
		in := make([]uint64, d)
		for k, v := range r {
			if noise {
				v += s.noise.Sample(s.samplers[i])
			}
			in[k] = uint64(v) & mask
		}
		inputs[j] = in
	}
	keys := make([]ed25519.PrivateKey, n)
	pubs := make([]ed25519.PublicKey, n)
	for j, i := range sites {
		keys[j] = s.keys[i]
		pubs[j] = s.keys[i].Public().(ed25519.PublicKey)
	}
	roster, err := secagg.NewRoster(pubs)
	if err != nil {
		return nil, err
	}
	p := secagg.Params{Round: round, Clients: n, Threshold: n/2 + 1, Degree: n - 1, Corrupt: min(s.corrupt, n/2), Length: d, Bits: s.bits}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	res := localround.Run(p, keys, roster, inputs, make([]localround.Phase, n), nil)
	if res.Err != nil {
		return nil, res.Err
	}
	out := make([]float64, d)
	half := uint64(1) << (s.bits - 1)
	for k, v := range res.Sum {
		v &= mask
		x := float64(v)
		if v >= half {
			x = -float64((^v + 1) & mask)
		}
		out[k] = x * s.gamma
	}
	return out, nil
}

// heSummer encrypts each site's (grid-noised) vector under the group's
// threshold CKKS key; the participating sites decrypt the sum.
type heSummer struct {
	params   *he.Params
	parties  []*he.Party
	roster   []ed25519.PublicKey
	grid     *dp.GridGaussian
	samplers []*dp.Sampler
	gamma    float64
}

func newHESummer(n int, preset he.Preset, threshold, minCohort int, maxAbs float64, gamma float64, noise *dp.GridGaussian, samplers []*dp.Sampler) (*heSummer, error) {
	params, err := he.NewParams(he.Config{Preset: preset, Parties: n, Threshold: threshold, MinContributors: minCohort, MaxAbsSum: maxAbs})
	if err != nil {
		return nil, err
	}
	keys := make([]ed25519.PrivateKey, n)
	roster := make([]ed25519.PublicKey, n)
	for i := range keys {
		if roster[i], keys[i], err = ed25519.GenerateKey(rand.Reader); err != nil {
			return nil, err
		}
	}
	s := &heSummer{params: params, roster: roster, grid: noise, samplers: samplers, gamma: gamma}
	if s.parties, err = he.SetupLocal(params, keys); err != nil {
		return nil, err
	}
	return s, nil
}

// gridRound rounds a vector to the grid γZ without noise (for rounds that
// carry none), so that both paths release grid values.
type gridRound struct {
	s     *dp.Sampler
	gamma float64
}

func (g gridRound) AddNoise(v []float64) error {
	r, err := dp.Round(g.s, v, g.gamma, math.Inf(1))
	if err != nil {
		return err
	}
	for i := range v {
		v[i] = float64(r[i]) * g.gamma
	}
	return nil
}

func (s *heSummer) sum(round uint64, sites []int, vectors [][]float64, noise bool) ([]float64, error) {
	// In one process every party is shown the same terms: the round's
	// context binds nothing more here.
	var terms [he.ContextSize]byte
	agg, err := he.NewAggregator(s.params, s.roster, s.parties[0].CRS(), round, terms)
	if err != nil {
		return nil, err
	}
	for j, i := range sites {
		var nz he.Noise = gridRound{s.samplers[i], s.gamma}
		if noise {
			nz = he.DPNoise(s.grid, s.samplers[i])
		}
		sub, err := s.parties[i].Encrypt(round, terms, vectors[j], nz)
		if err != nil {
			return nil, fmt.Errorf("protocol: site %d: %w", i+1, err)
		}
		if err := agg.Add(sub); err != nil {
			return nil, err
		}
	}
	ids := make([]int, len(sites))
	for j, i := range sites {
		ids[j] = i + 1
	}
	req, err := agg.Request(ids)
	if err != nil {
		return nil, err
	}
	var shares [][]byte
	for _, id := range ids[:s.params.Config().Threshold] {
		sh, err := s.parties[id-1].DecryptShare(req, terms)
		if err != nil {
			return nil, err
		}
		shares = append(shares, sh)
	}
	return agg.Combine(shares)
}
