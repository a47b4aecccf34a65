package dp

import "fmt"

// Relations in words, for ledgers, reports and command output: what a
// privacy officer signs off on.
const (
	// RecordRelationText is the neighbouring relation of record-level ε.
	RecordRelationText = "one patient record added or removed"
	// ClientRelationText is the neighbouring relation of client-level ε
	// (zero-out neighbours: who takes part is public).
	ClientRelationText = "one hospital's whole contribution replaced by zero (the hospital still takes part; who takes part is public)"
	// PatientRelationText is the relation of the per-patient ε reported
	// beside client-level ε.
	PatientRelationText = "one patient's records at one hospital changed, added or removed (the hospital's clipped update moves by at most 2C)"
)

// PatientEpsilon returns, for client-level events, the ε that protects one
// patient rather than one hospital.
//
// At client level a hospital's whole update is clipped to L2 norm C, and ε
// is stated for zero-out neighbours: the update u against 0, a shift of at
// most C. One patient's records, changed, added or removed, move the
// hospital's update from u to u' with both inside the ball of radius C, so
// ‖u − u'‖ ≤ 2C: twice the sensitivity, the replace-one case of a clipped
// sum (the Gaussian mechanism's privacy depends only on sensitivity / σ;
// Mironov 2017, Prop. 7; Dwork and Roth 2014, §3.5.3). The events are
// therefore accounted with their multipliers halved, which is the
// ReplaceOne relation of this package.
//
// Sampling of hospitals is not used to amplify this figure: an event with
// SamplingRate below 1 is accounted as if every hospital took part, which
// can only overstate ε.
func PatientEpsilon(accountant string, delta float64, events ...Event) (float64, error) {
	full := make([]Event, len(events))
	for i, e := range events {
		e.SamplingRate = 1
		full[i] = e
	}
	eps, err := Epsilon(accountant, ReplaceOne, delta, mergeEvents(full)...)
	if err != nil {
		return 0, fmt.Errorf("dp: per-patient ε: %w", err)
	}
	return eps, nil
}
