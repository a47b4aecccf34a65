package protocol

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
)

// Mode is how sites' updates are protected in transit.
type Mode string

const (
	SecAgg Mode = "secagg" // pairwise-mask secure aggregation
	HE     Mode = "he"     // threshold CKKS
	Plain  Mode = "plain"  // NOT PRIVATE: the coordinator sees every update
)

// RoundResult reports one training round.
type RoundResult struct {
	Round        int `json:"round"`
	Participants int `json:"participants"`
	// Survivors are the sites whose input is in the opened sum (secagg:
	// those that sent their masked input; he: the contributors; plain:
	// those that answered), in order; empty when nothing was opened.
	Survivors []int `json:"survivors,omitempty"`
	// Status is "ok", "below-cohort", "failed" or "budget-refused".
	Status  string  `json:"status"`
	Epsilon float64 `json:"epsilon"`
	// Test holds the metrics of the round's model on the coordinator's
	// held test set (CoordinatorConfig.Test), if it has one.
	Test fl.Metrics `json:"test"`
	// Seconds is the round's wall time at the coordinator, from gathering
	// its cohort to publishing its model.
	Seconds float64 `json:"seconds"`
	// Sum is the opened sum of the round (what the coordinator learns from
	// it, in the units of the sites' vectors); nil when nothing was opened.
	Sum []float64 `json:"-"`
}

// Summary reports a whole run.
type Summary struct {
	Mode            Mode          `json:"mode"`
	Level           dp.Level      `json:"level,omitempty"`
	DP              bool          `json:"dp"`
	Rounds          []RoundResult `json:"rounds"`
	Test            fl.Metrics    `json:"test"`
	Epsilon         float64       `json:"epsilon"`
	Delta           float64       `json:"delta,omitempty"`
	NoiseMultiplier float64       `json:"noise_multiplier,omitempty"`
	SiteSigma       float64       `json:"site_sigma,omitempty"`
	Ledger          string        `json:"ledger,omitempty"`
	LedgerKey       string        `json:"ledger_key,omitempty"`
	SiteLedgers     []string      `json:"site_ledgers,omitempty"`
	SiteKeys        []string      `json:"site_keys,omitempty"`
	// Roster, if set, is the roster file that names the ledgers' public
	// keys: the keys to audit them with, which LedgerKey and SiteKeys (the
	// keys this run signed with) must match.
	Roster string `json:"roster,omitempty"`
	// Statistics says what the run released before training and under
	// which guarantee (see statisticsText).
	Statistics string `json:"statistics"`
	// StatisticsShare is the statistics release's share of the budget's
	// zCDP ρ (0: no release). StatisticsEpsilon and TrainingEpsilon are
	// the ε, at Delta, of the release alone and of the training rounds
	// alone, from the coordinator's ledger; Epsilon is their composition.
	StatisticsShare   float64 `json:"statistics_share,omitempty"`
	StatisticsEpsilon float64 `json:"statistics_epsilon,omitempty"`
	TrainingEpsilon   float64 `json:"training_epsilon,omitempty"`
	// PatientEpsilon, at client level, is the ε of the whole run for one
	// patient (dp.PatientEpsilon, dp.PatientRelationText) beside Epsilon
	// for one hospital (dp.ClientRelationText).
	PatientEpsilon float64 `json:"patient_epsilon,omitempty"`
	// Witnesses are the sites' newest cosigned checkpoints of the
	// coordinator's ledger, as the coordinator keeps them (DP runs whose
	// roster names the coordinator's ledger key).
	Witnesses []SiteWitness `json:"witnesses,omitempty"`
	// SiteCheckpoints are the coordinator ledger checkpoints the sites
	// hold themselves, in site order, where the run knows their state
	// (simulations).
	SiteCheckpoints []string `json:"site_checkpoints,omitempty"`
	// Averaged is how many published models the final Model averages
	// (CoordinatorConfig.AverageFrom); 0: Model is the last one.
	Averaged int `json:"averaged,omitempty"`
	// SetupSeconds is the wall time before the first training round: the
	// key ceremony (mode he) and the statistics round.
	SetupSeconds float64 `json:"setup_seconds"`
	// Seconds is the wall time of the whole run.
	Seconds float64   `json:"seconds"`
	Model   []float64 `json:"-"`
}

// statisticsText says what a run releases before training: with DP,
// nothing outside ε.
func statisticsText(cfg CoordinatorConfig, split dp.Split) string {
	what := "the number of records and each feature's (and for regression the label's) sum and sum of squares, each value clipped to its public range"
	switch {
	case cfg.PublicStatistics:
		return fmt.Sprintf("none released: standardization from the public feature ranges, learning rate over the public nominal count of %d records; nothing is charged before training", cfg.Rows)
	case cfg.Epsilon > 0:
		return fmt.Sprintf("%s, released once through secure aggregation with distributed discrete Gaussian noise, charged to every ledger as round 0: %.3g%% of the budget's zCDP ρ, inside ε", what, 100*split.Share)
	}
	return what + ", opened once through secure aggregation without noise (no ε is claimed)"
}

// checkpoint writes the model after a round as safetensors, atomically
// (durably if durable is set).
func checkpoint(dir string, round int, w []float64, eps float64, durable bool) error {
	cd := filepath.Join(dir, "checkpoints")
	if err := os.MkdirAll(cd, 0o700); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := fl.WriteSafetensors(&buf, map[string]fl.Tensor{"model": {DType: "F64", Shape: []int{len(w)}, Data: w}},
		map[string]string{"round": strconv.Itoa(round), "epsilon": strconv.FormatFloat(eps, 'g', -1, 64)}); err != nil {
		return err
	}
	return writeState(filepath.Join(cd, fmt.Sprintf("round-%04d.safetensors", round)), buf.Bytes(), durable)
}
