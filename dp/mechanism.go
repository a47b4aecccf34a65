package dp

import (
	"errors"
	"fmt"
	"math"
)

// Neighbouring is the neighbouring relation a guarantee is stated for: which
// pairs of data sets must be hard to tell apart.
type Neighbouring int

const (
	// AddRemove: one record is added or removed; at client level, one
	// hospital's whole contribution is replaced by zero (zero-out: the
	// hospital still takes part), a shift of at most C either way. The
	// default, as in dp_accounting and TensorFlow Privacy.
	AddRemove Neighbouring = iota
	// ReplaceOne: one record is replaced by another. The sensitivity of a
	// clipped sum doubles (2C instead of C).
	ReplaceOne
)

// String returns "add-remove" or "replace-one".
func (n Neighbouring) String() string {
	switch n {
	case AddRemove:
		return "add-remove"
	case ReplaceOne:
		return "replace-one"
	}
	return fmt.Sprintf("Neighbouring(%d)", int(n))
}

// ParseNeighbouring parses "add-remove" or "replace-one".
func ParseNeighbouring(s string) (Neighbouring, error) {
	switch s {
	case "add-remove", "add_or_remove_one", "":
		return AddRemove, nil
	case "replace-one", "replace", "replace_one":
		return ReplaceOne, nil
	}
	return 0, fmt.Errorf("dp: unknown neighbouring relation %q (want add-remove or replace-one)", s)
}

// Mechanism names the noise distribution of an event.
type Mechanism string

const (
	// GaussianMechanism is additive N(0, z²C²) noise on a sum of records (or
	// updates) clipped to L2 norm C, optionally after Poisson sampling with
	// rate q. Accounted exactly by RDP (Mironov, Talwar, Zhang 2019) and by
	// PLD.
	GaussianMechanism Mechanism = "gaussian"
	// DiscreteGaussianMechanism is integer noise — N_Z(0, σ²) from one party, or the
	// sum of independent N_Z draws from several parties under secure
	// aggregation — summarised by its effective noise multiplier z: the
	// mechanism is (1/(2z²))-zCDP (CKS 2020 Thm. 4 for one draw; KLS 2021
	// Thm. 1 for a sum, see DistributedNoise). Accounted by RDP only.
	DiscreteGaussianMechanism Mechanism = "discrete_gaussian"
)

// An Event is one kind of privacy-consuming release, repeated Count times:
// noise with multiplier NoiseMultiplier (noise standard deviation divided by
// the L2 sensitivity under AddRemove) on data Poisson-sampled with
// probability SamplingRate (1 when every record or client takes part).
type Event struct {
	Mechanism       Mechanism
	NoiseMultiplier float64
	SamplingRate    float64
	Count           int
}

// minMultiplier bounds Event.NoiseMultiplier from below: one unsampled step
// at 0.01 already costs ε in the thousands.
const minMultiplier = 0.01

// maxCount bounds Event.Count; compositions beyond it are a caller bug.
const maxCount = 1 << 30

// Validate checks that e can be accounted.
func (e Event) Validate() error {
	switch e.Mechanism {
	case GaussianMechanism, DiscreteGaussianMechanism:
	default:
		return fmt.Errorf("dp: unknown mechanism %q", e.Mechanism)
	}
	if !(e.NoiseMultiplier > 0) || math.IsInf(e.NoiseMultiplier, 0) {
		return fmt.Errorf("dp: noise multiplier must be positive and finite, got %v", e.NoiseMultiplier)
	}
	if e.NoiseMultiplier < minMultiplier || e.NoiseMultiplier > maxMultiplier {
		return fmt.Errorf("dp: noise multiplier %v is outside [%g, %g], where no accountant here is meaningful", e.NoiseMultiplier, minMultiplier, maxMultiplier)
	}
	if !(e.SamplingRate > 0 && e.SamplingRate <= 1) {
		return fmt.Errorf("dp: sampling rate must be in (0, 1], got %v", e.SamplingRate)
	}
	if e.Count < 1 || e.Count > maxCount {
		return fmt.Errorf("dp: step count must be in [1, 2^30], got %d", e.Count)
	}
	return nil
}

// ErrUnsupported is wrapped when an accountant has no sound analysis for an
// event under the chosen neighbouring relation.
var ErrUnsupported = errors.New("dp: no sound analysis for this event")

// checkRelation rejects replace-one with Poisson sampling: neither RDP nor
// PLD here has a tight analysis of it (dp_accounting refuses it too), and a
// loose one would be easy to misread.
func checkRelation(e Event, n Neighbouring) error {
	if n == ReplaceOne && e.SamplingRate < 1 {
		return fmt.Errorf("%w: replace-one with Poisson sampling (rate %v); use add-remove, or sampling rate 1", ErrUnsupported, e.SamplingRate)
	}
	if n != AddRemove && n != ReplaceOne {
		return fmt.Errorf("dp: unknown neighbouring relation %d", int(n))
	}
	return nil
}

// effectiveMultiplier returns the noise multiplier per unit of add-remove
// sensitivity: under ReplaceOne the sensitivity of a clipped sum is 2C, so
// the multiplier halves.
func effectiveMultiplier(e Event, n Neighbouring) float64 {
	if n == ReplaceOne {
		return e.NoiseMultiplier / 2
	}
	return e.NoiseMultiplier
}
