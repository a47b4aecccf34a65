package protocol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/he"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

// The statistics release (fl/release.go defines the vector): before
// training, the federation learns its standardization and its record
// count from one noised secure sum, charged to every ledger as round 0.
// Sites clip every value to the public ranges the round carries (their
// midpoints in RoundStart.Mean, their half-widths in RoundStart.Scale)
// and bound their vector's norm from the round's length alone, so a
// coordinator's ranges can only cost accuracy, never privacy.

// statisticsGamma is the grid of the statistics round. The round uses a
// 64-bit ring (secagg), which holds sums up to 2^47 at this grid: far
// beyond any statistics sum with its noise.
const statisticsGamma = 1.0 / (1 << 16)

// statisticsRound is the round number statistics charges carry.
const statisticsRound = 0

// statisticsBits is the ring width of the statistics round (secagg).
const statisticsBits = 64

// statisticsPlan returns the distributed noise of the statistics release
// for a noise multiplier z over dim columns.
func (c *Coordinator) statisticsPlan(z float64, dim int) (*dp.DistributedNoise, error) {
	return dp.PlanDistributed(z, dp.DistributedConfig{Clip: fl.StatsBound(dim), Gamma: statisticsGamma,
		Clients: len(c.cfg.Roster.Sites), Threshold: c.cfg.MinCohort, Colluders: c.cfg.Colluders, Dim: fl.StatsLength(dim)})
}

// statisticsCharge is the coordinator's ledger charge for the statistics
// release under plan.
func (c *Coordinator) statisticsCharge(plan *dp.DistributedNoise, dim int) (dp.Charge, error) {
	return dp.PlanCharge("federation", statisticsRound, c.cfg.Level, dp.NoisePlan{Release: dp.StatisticsRelease,
		Threshold: c.cfg.MinCohort, Colluders: c.cfg.Colluders, MinCohort: c.cfg.MinCohort, Clients: len(c.cfg.Roster.Sites),
		Gamma: plan.Gamma, Dim: fl.StatsLength(dim), RingBits: statisticsBits, SiteSigma: plan.LocalSigma, Clip: fl.StatsBound(dim)})
}

// statisticsChargeFor is a site's charge for a statistics round,
// recomputed from the round's public parameters as chargeFor does for
// training, but with the sensitivity this site bounds itself from the
// round's length (fl.StatsBound), never the round's Clip.
func (s *Site) statisticsChargeFor(st *wire.RoundStart, k, c int) (dp.Charge, error) {
	dim, err := fl.StatsFeatures(int(st.Length))
	if err != nil {
		return dp.Charge{}, err
	}
	if k > int(st.Sites) || c >= k {
		return dp.Charge{}, fmt.Errorf("cohort %d with %d colluders among %d sites leaves no honest share", k, c, st.Sites)
	}
	if st.SiteSigma <= 0 || st.Gamma <= 0 {
		return dp.Charge{}, errors.New("the round's noise parameters are incomplete")
	}
	return dp.PlanCharge("federation", statisticsRound, dp.Level(st.Level), dp.NoisePlan{Release: dp.StatisticsRelease,
		Threshold: k, Colluders: c, MinCohort: int(st.MinCohort), Clients: int(st.Sites), Gamma: st.Gamma,
		Dim: int(st.Length), RingBits: int(st.Bits), SiteSigma: st.SiteSigma, Clip: fl.StatsBound(dim)})
}

// statisticsVector is a site's contribution to a statistics round: its
// records clipped to the round's ranges (fl.ClippedStats), summed at
// record level and averaged at client level.
func (r *siteRound) statisticsVector() ([]float64, error) {
	st, data := r.start, r.s.cfg.Data
	dim, err := fl.StatsFeatures(int(st.Length))
	if err != nil {
		return nil, err
	}
	if len(st.Mean) != dim || len(st.Scale) != dim {
		return nil, fmt.Errorf("the statistics round bounds %d columns for a vector over %d", len(st.Mean), dim)
	}
	for j := range st.Mean {
		if math.IsNaN(st.Mean[j]) || math.IsInf(st.Mean[j], 0) || !(st.Scale[j] > 0) || math.IsInf(st.Scale[j], 0) {
			return nil, fmt.Errorf("the statistics round bounds column %d by midpoint %v and half-width %v", j+1, st.Mean[j], st.Scale[j])
		}
	}
	if data == nil {
		// A site that only sends updates contributes no statistics.
		return make([]float64, st.Length), nil
	}
	if got := fl.WithLabel(data).Dim(); got != dim {
		return nil, fmt.Errorf("the statistics round has %d columns, this site's data %d", dim, got)
	}
	return fl.ClippedStats(data, st.Mean, st.Scale, st.Level == string(dp.ClientLevel))
}

// checkRanges checks the coordinator's public ranges for dim columns.
func checkRanges(rs []fl.Range, dim int) error {
	if len(rs) != dim {
		return fmt.Errorf("protocol: %d feature ranges for %d columns (the features, and for regression the label last)", len(rs), dim)
	}
	for j, r := range rs {
		if !(r.Lo < r.Hi) || math.IsInf(r.Lo, 0) || math.IsInf(r.Hi, 0) || math.IsInf(r.HalfWidth(), 0) {
			return fmt.Errorf("protocol: feature range %d (%s) is [%v, %v]", j+1, r.Name, r.Lo, r.Hi)
		}
		if r.Scale < 0 || math.IsNaN(r.Scale) || math.IsInf(r.Scale, 0) || math.IsNaN(r.Mean) || math.IsInf(r.Mean, 0) {
			return fmt.Errorf("protocol: feature range %d (%s) has public mean %v and scale %v", j+1, r.Name, r.Mean, r.Scale)
		}
	}
	return nil
}

// statistics returns the federation's standardization and record count:
// loaded after a restart, from the public ranges and nominal count
// (PublicStatistics), or from the statistics round, charged to ledger
// (nil without DP) as round 0 with noise multiplier z (0 without DP).
func (c *Coordinator) statistics(ctx context.Context, dim int, regression bool, z float64, ledger *dp.Ledger) (coordState, error) {
	cfg := c.cfg
	var st coordState
	statePath := filepath.Join(cfg.State, "statistics.json")
	if b, err := os.ReadFile(statePath); err == nil && json.Unmarshal(b, &st) == nil && len(st.Mean) == cfg.Features {
		c.log.Info("statistics loaded", "rows", st.Rows)
		return st, nil
	}
	mids, halfs := make([]float64, dim), make([]float64, dim)
	for j, r := range cfg.Ranges {
		mids[j], halfs[j] = r.Mid(), r.HalfWidth()
	}
	var est *fl.StatsEstimate
	if cfg.PublicStatistics {
		// Nothing is released: public constants only.
		est = &fl.StatsEstimate{Mean: make([]float64, dim), Scale: make([]float64, dim), Count: float64(max(cfg.Rows, 1))}
		for j := range est.Scale {
			est.Scale[j] = 1 // no ranges: no standardization
		}
		for j, r := range cfg.Ranges {
			est.Mean[j], est.Scale[j] = r.Public()
		}
		st = coordState{Rows: est.Count, RowsBound: 2 * est.Count}
	} else {
		var plan *dp.DistributedNoise
		if z > 0 {
			var err error
			if plan, err = c.statisticsPlan(z, dim); err != nil {
				return st, err
			}
			ch, err := c.statisticsCharge(plan, dim)
			if err != nil {
				return st, err
			}
			if _, err := ledger.Preview(ch); err != nil {
				return st, fmt.Errorf("protocol: the statistics release: %w", err)
			}
		}
		retry := c.newRetry(0)
		retry.costs = plan != nil
		var err error
		if retry.pinned, err = c.loadStatisticsSigning(); err != nil {
			return st, err
		}
		for {
			sess, err := retry.cohort(ctx)
			if err != nil {
				return st, err
			}
			sid, err := c.sessionID(0)
			if err != nil {
				return st, err
			}
			start := &wire.RoundStart{Round: sid, Kind: wire.RoundStart_STATISTICS, Length: uint32(fl.StatsLength(dim)), Bits: statisticsBits,
				Gamma: statisticsGamma, Mode: string(cfg.Mode), Level: string(cfg.Level), Mean: mids, Scale: halfs,
				Clip: fl.StatsBound(dim), Delta: cfg.Delta}
			var charge func(int) (int64, error)
			var chargedAt int64 // this attempt's charge in the ledger, or 0
			if plan != nil {
				start.SiteSigma = plan.LocalSigma
				ch, err := c.statisticsCharge(plan, dim)
				if err != nil {
					return st, err
				}
				charge = c.chargeSession(ledger, ch, start, "statistics charge", statisticsRound, &chargedAt)
			}
			v, n, bl, err := c.secureSum(ctx, sess, start, charge)
			if err != nil && chargedAt > 0 && !errors.Is(err, errCrashed) {
				if err := c.markOutcome(ledger, chargedAt, statisticsRound, dp.Unopened); err != nil {
					return st, err
				}
			}
			if errors.Is(err, he.ErrOutOfRange) {
				return st, fmt.Errorf("protocol: the statistics round: a decrypted sum was out of the range honest sites produce (a malformed ciphertext or a wrong decryption share); the run stops: %w", err)
			}
			if err != nil {
				if err := retry.failed(ctx, bl, err); err != nil {
					return st, err
				}
				continue
			}
			sigma, divisor := 0.0, 0.0
			if plan != nil {
				sigma = plan.LocalSigma * math.Sqrt(float64(n))
			}
			if cfg.Level == dp.ClientLevel {
				divisor = float64(n) // the public number of contributors
			}
			if chargedAt > 0 {
				if err := c.markOutcome(ledger, chargedAt, statisticsRound, dp.Opened); err != nil {
					return st, err
				}
			}
			// The sites learn the release opened (in he they cannot see it
			// themselves): no model, no ε, only the status.
			for _, s := range sess {
				s.send(&wire.CoordinatorMessage{Body: &wire.CoordinatorMessage_End{End: &wire.RoundEnd{Round: start.Round, Status: "ok"}}})
			}
			if est, err = fl.EstimateStats(v, mids, halfs, divisor, sigma); err != nil {
				return st, fmt.Errorf("protocol: the statistics round: %w", err)
			}
			// The learning rate's denominator is the noised count; the
			// ring's bound on a site's vector takes it with a margin of
			// half again and four standard deviations of its noise (a
			// bound too small only risks wraparound: accuracy, not privacy).
			st = coordState{Rows: est.Count, RowsBound: 1.5*est.Count + 4*est.CountSigma}
			break
		}
	}
	st.Mean, st.Scale = est.Mean, est.Scale
	if regression {
		st.LabelMean, st.LabelScale = st.Mean[cfg.Features], st.Scale[cfg.Features]
		st.Mean, st.Scale = st.Mean[:cfg.Features], st.Scale[:cfg.Features]
	}
	b, _ := json.Marshal(st)
	if err := c.cfg.hooks.crashAt("statistics", 0); err != nil {
		return st, err
	}
	if err := writeState(statePath, b, !cfg.NoSync); err != nil {
		return st, err
	}
	if err := c.cfg.hooks.crashAt("statistics written", 0); err != nil {
		return st, err
	}
	return st, nil
}

// privacyBreakdown fills sum's statistics and training ε from the
// coordinator's ledger: the release (round 0) alone, the training rounds
// alone, and at client level the per-patient ε of everything.
func privacyBreakdown(sum *Summary) error {
	es, err := dp.ReadLedger(sum.Ledger)
	if err != nil {
		return err
	}
	var stats, train []dp.Event
	for _, e := range es {
		if e.Kind != "charge" {
			continue
		}
		ev := dp.Event{Mechanism: dp.Mechanism(e.Mechanism), NoiseMultiplier: e.NoiseMultiplier, SamplingRate: e.SamplingRate, Count: e.Steps}
		if e.Round == statisticsRound {
			stats = append(stats, ev)
		} else {
			train = append(train, ev)
		}
	}
	eps := func(evs []dp.Event) (float64, error) {
		if len(evs) == 0 {
			return 0, nil
		}
		return dp.Epsilon(dp.RDP, dp.AddRemove, sum.Delta, evs...)
	}
	if sum.StatisticsEpsilon, err = eps(stats); err != nil {
		return err
	}
	if sum.TrainingEpsilon, err = eps(train); err != nil {
		return err
	}
	if sum.Level == dp.ClientLevel && len(stats)+len(train) > 0 {
		if sum.PatientEpsilon, err = dp.PatientEpsilon(dp.RDP, sum.Delta, append(stats, train...)...); err != nil {
			return err
		}
	}
	return nil
}

// trainingMultiplier returns the noise multiplier of each of rounds
// training rounds: the budget left after the statistics charges in the
// coordinator's ledger (one, or more if the release was retried after it
// was charged), split evenly (dp.TrainingMultiplier).
func (c *Coordinator) trainingMultiplier(ledger string, rounds int) (float64, error) {
	es, err := dp.ReadLedger(ledger)
	if err != nil {
		return 0, err
	}
	var stats []dp.Event
	for _, e := range es {
		if e.Kind == "charge" && e.Round == statisticsRound {
			stats = append(stats, dp.Event{Mechanism: dp.Mechanism(e.Mechanism), NoiseMultiplier: e.NoiseMultiplier, SamplingRate: e.SamplingRate, Count: e.Steps})
		}
	}
	z, err := dp.TrainingMultiplier(c.cfg.Epsilon, c.cfg.Delta, stats, rounds)
	if err != nil {
		return 0, fmt.Errorf("protocol: the training rounds: %w", err)
	}
	return z, nil
}
