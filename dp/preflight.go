package dp

import (
	"errors"
	"fmt"
	"math"
)

// PreflightConfig describes a client-level run under secure aggregation
// to check before it starts: every site takes part in every round, clips
// its update to Clip and adds a share of discrete Gaussian noise sized so
// that Threshold − Colluders honest survivors alone reach the σ the
// accountant needs.
type PreflightConfig struct {
	Epsilon, Delta float64
	Rounds, Sites  int
	// Threshold is the fewest surviving sites a round may finish with (0:
	// ⌈2n/3⌉).
	Threshold int
	Colluders int
	Clip      float64
	Dim       int // model size (coordinates)
	Bits      int // secure-aggregation ring width (0: 32)
	// RecordsPerSite, if set, checks δ against the number of records.
	RecordsPerSite int
}

// Preflight is the plan of a PreflightConfig: the noise, each site's
// share, the expected noise-to-signal ratio, and warnings about dangerous
// settings.
type Preflight struct {
	Epsilon           float64  `json:"epsilon"`
	Delta             float64  `json:"delta"`
	Rounds            int      `json:"rounds"`
	Sites             int      `json:"sites"`
	Threshold         int      `json:"threshold"`
	Colluders         int      `json:"colluders"`
	HonestSurvivors   int      `json:"honest_survivors"`
	Clip              float64  `json:"clip"`
	Dim               int      `json:"dim"`
	Bits              int      `json:"bits"`
	NoiseMultiplier   float64  `json:"noise_multiplier"`
	Sigma             float64  `json:"sigma"`
	SiteSigma         float64  `json:"site_sigma"`
	SumSigmaAllSites  float64  `json:"sum_sigma_all_sites"`
	Grid              float64  `json:"grid_step"`
	AchievedEpsilon   float64  `json:"achieved_epsilon"`
	NoiseToSignal     float64  `json:"noise_to_signal"`
	WrapProbability   float64  `json:"wrap_probability"`
	Level             string   `json:"level"`
	Neighbouring      string   `json:"neighbouring"`
	Accountant        string   `json:"accountant"`
	Warnings          []string `json:"warnings"`
	RecordsPerSite    int      `json:"records_per_site,omitempty"`
	EffectiveMultiple float64  `json:"effective_noise_multiplier"`
}

// ErrNoClipping is returned by PlanPreflight for Clip 0: a site's update
// then has unbounded sensitivity and no ε holds.
var ErrNoClipping = errors.New("dp: no clipping (clip 0): a site's update has unbounded sensitivity and no ε holds")

// PlanPreflight plans c with the RDP accountant on the discrete Gaussian,
// add-remove neighbours at client level.
func PlanPreflight(c PreflightConfig) (*Preflight, error) {
	if c.Threshold == 0 {
		c.Threshold = (2*c.Sites + 2) / 3
	}
	if c.Bits == 0 {
		c.Bits = 32
	}
	switch {
	case !(c.Epsilon > 0) || math.IsInf(c.Epsilon, 0):
		return nil, fmt.Errorf("dp: ε %v: want a positive number", c.Epsilon)
	case !(c.Delta > 0 && c.Delta < 1):
		return nil, fmt.Errorf("dp: δ %v: want a probability in (0, 1)", c.Delta)
	case c.Rounds < 1 || c.Sites < 1 || c.Dim < 1:
		return nil, fmt.Errorf("dp: %d rounds, %d sites, dimension %d: want positive counts", c.Rounds, c.Sites, c.Dim)
	case c.Threshold < 1 || c.Threshold > c.Sites:
		return nil, fmt.Errorf("dp: threshold %d for %d sites", c.Threshold, c.Sites)
	case c.Colluders < 0 || c.Colluders >= c.Threshold:
		return nil, fmt.Errorf("dp: %d colluders for threshold %d", c.Colluders, c.Threshold)
	case c.Clip < 0 || math.IsNaN(c.Clip) || math.IsInf(c.Clip, 0):
		return nil, fmt.Errorf("dp: clip %v", c.Clip)
	case c.Clip == 0:
		return nil, ErrNoClipping
	}
	p := &Preflight{Epsilon: c.Epsilon, Delta: c.Delta, Rounds: c.Rounds, Sites: c.Sites, Threshold: c.Threshold,
		Colluders: c.Colluders, Clip: c.Clip, Dim: c.Dim, Bits: c.Bits, RecordsPerSite: c.RecordsPerSite,
		Level: string(ClientLevel), Neighbouring: AddRemove.String(), Accountant: RDP, Warnings: []string{}}
	p.HonestSurvivors = p.Threshold - p.Colluders
	warn := func(format string, a ...any) { p.Warnings = append(p.Warnings, fmt.Sprintf(format, a...)) }
	if p.Epsilon > 10 {
		warn("whole-run ε = %g is above 10: the guarantee is weak", p.Epsilon)
	}
	if 2*p.Threshold <= p.Sites {
		warn("threshold %d ≤ n/2 = %g: two disjoint halves of the sites could each finish a round", p.Threshold, float64(p.Sites)/2)
	}
	if p.Sites < 3 {
		warn("%d sites: with fewer than 3, each site can subtract its own update from the sum and learn the other's", p.Sites)
	}
	if p.RecordsPerSite > 0 && p.Delta >= 1/float64(p.RecordsPerSite*p.Sites) {
		warn("δ = %g is not below 1/(records in all sites) = %.3g", p.Delta, 1/float64(p.RecordsPerSite*p.Sites))
	}
	if p.Colluders == 0 && p.Sites >= 3 {
		warn("no colluding sites assumed: a site that colludes with the coordinator can remove its own noise share")
	}
	cal, err := Calibrate(RDP, AddRemove, DiscreteGaussianMechanism, p.Epsilon, p.Delta, p.Rounds, 1)
	if err != nil {
		return nil, err
	}
	p.NoiseMultiplier = cal.NoiseMultiplier
	// σ rises until the distributed mechanism's effective multiplier (after
	// rounding and the KLS τ term) meets the calibrated one.
	dn, err := PlanDistributed(cal.NoiseMultiplier, DistributedConfig{Clip: p.Clip, Clients: p.Sites,
		Threshold: p.Threshold, Colluders: p.Colluders, Dim: p.Dim, Bits: p.Bits})
	if err != nil {
		return nil, err
	}
	p.Sigma, p.SiteSigma, p.SumSigmaAllSites, p.Grid = dn.LocalSigma*math.Sqrt(float64(dn.Honest)), dn.LocalSigma, dn.SumSigma, dn.Gamma
	p.EffectiveMultiple, p.WrapProbability = dn.NoiseMultiplier, dn.WrapProbability
	p.AchievedEpsilon, _ = Epsilon(RDP, AddRemove, p.Delta, Event{Mechanism: DiscreteGaussianMechanism, NoiseMultiplier: dn.NoiseMultiplier, SamplingRate: 1, Count: p.Rounds})
	// Noise in the sum against the largest signal the sum can carry (all
	// sites' clipped updates aligned): ‖noise‖₂ ≈ σ_sum·√d, ‖signal‖₂ ≤ n·C.
	p.NoiseToSignal = dn.SumSigma * math.Sqrt(float64(p.Dim)) / (float64(p.Sites) * p.Clip)
	if p.NoiseToSignal > 1 {
		warn("expected noise-to-signal ratio %.3g > 1: the noise in the sum outweighs even perfectly aligned updates; train for fewer rounds, add sites, or accept a larger ε", p.NoiseToSignal)
	}
	return p, nil
}
