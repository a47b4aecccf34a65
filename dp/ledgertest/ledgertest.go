// Package ledgertest builds ledger charges for tests: every distributed
// discrete Gaussian charge must record its noise plan, and tests want one
// with a given noise multiplier. For tests only.
package ledgertest

import (
	"math"

	"github.com/fl-secure/fl-secure/dp"
)

// Charge returns a charge of one distributed discrete Gaussian release
// (training, or statistics for round 0) whose recorded noise plan gives a
// noise multiplier within 1e-5 of z: three sites, none assumed colluding,
// a grid fine enough that rounding costs nothing visible. For ledgers in
// tests, which must record a plan with every such charge.
func Charge(runID string, round int, level dp.Level, z float64) dp.Charge {
	release := dp.TrainingRelease
	if round == 0 {
		release = dp.StatisticsRelease
	}
	c, err := dp.PlanCharge(runID, round, level, dp.NoisePlan{Release: release, Threshold: 3, MinCohort: 3, Clients: 3,
		Gamma: 1.0 / (1 << 24), Dim: 10, RingBits: 62, SiteSigma: z / math.Sqrt(3), Clip: 1})
	if err != nil {
		panic("ledgertest: " + err.Error())
	}
	return c
}
