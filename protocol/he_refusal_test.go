package protocol

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

// TestAttackHERefusalLeaksNoisedInput: in he mode, encryption refuses a
// value beyond the group's MaxAbsSum (2^40) once the site's own noise
// share is added. A lying coordinator picks the clip and the
// standardization so that one coordinate of a site's clipped gradient sum
// is about Clip·(n0 − n1), the class imbalance of its records; if the site
// refused there after paying, naming the value, the coordinator would
// learn per round whether that crosses 2^40 from the site's input plus ONE
// noise share, while the charge assumes k − c shares and a release of the
// sum only. The site clamps every coordinate to a bound of public
// parameters first: two sites on either side of the threshold both take
// part.
func TestAttackHERefusalLeaksNoisedInput(t *testing.T) {
	b := newWitnessBed(t, 3, HE)
	if _, err := b.run(1, nil); err != nil {
		t.Fatal(err)
	}
	// Two hospitals with many records (wdbc rows replicated): site 1's
	// labels as in its partition, site 2's balanced. The coordinator's
	// clip 2^29 puts the threshold 2^40 between their clipped gradient
	// sums at coordinate 23 (2^39.6 and 2^40.65); the noise share (σ ≈
	// 2^29.5) hardly moves them.
	src := b.f.sites[0]
	imbalanced := &fl.Dataset{Name: src.Name, Features: src.Features, Label: src.Label, Task: src.Task, Classes: src.Classes}
	balanced := &fl.Dataset{Name: src.Name, Features: src.Features, Label: src.Label, Task: src.Task, Classes: src.Classes}
	for k := 0; k < 200; k++ {
		n0, n1 := 0, 0
		for i, y := range src.Y {
			imbalanced.X, imbalanced.Y = append(imbalanced.X, src.X[i]), append(imbalanced.Y, y)
			if (y == 0 && n0 < 50) || (y == 1 && n1 < 50) {
				balanced.X, balanced.Y = append(balanced.X, src.X[i]), append(balanced.Y, y)
				if y == 0 {
					n0++
				} else {
					n1++
				}
			}
		}
	}
	refusals := map[int]error{}
	for site, data := range map[int]*fl.Dataset{1: imbalanced, 2: balanced} {
		cfg := b.f.siteConfig(site)
		cfg.Data = data
		s, err := NewSite(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ledger := filepath.Join(cfg.State, "site-ledger.jsonl")
		before, _ := dp.ReadLedger(ledger)
		note, err := os.ReadFile(b.ledger() + dp.CheckpointSuffix)
		if err != nil {
			t.Fatal(err)
		}
		sid := uint64(9) << 20
		if m := s.witness(&wire.Witness{Round: sid, Checkpoint: note, From: s.witnessed.Size}, nil).GetCosigned(); m.Refusal != "" {
			t.Fatalf("witness: %s", m.Refusal)
		}
		const d = 31
		clip := math.Exp2(29)
		mean, scale := make([]float64, 30), make([]float64, 30)
		for j := range scale {
			scale[j] = 1e-6
		}
		st := &wire.RoundStart{Round: sid, Kind: wire.RoundStart_TRAIN, Model: make([]float64, d), Length: d, Bits: 64,
			Gamma: 1, SiteSigma: 2.5 * clip / math.Sqrt(3), Clip: clip, MinCohort: 3, Colluders: 0, ModelName: "logistic",
			Mean: mean, Scale: scale, Sites: 3, Delta: 1e-5, Mode: string(HE), Level: string(dp.RecordLevel),
			HePreset: heNetPreset.Name, HeMaxAbs: heNetMaxAbs, Members: []uint32{1, 2, 3}, Threshold: 2}
		if v, verr := (&siteRound{s: s, start: st}).vector(); verr == nil {
			mx, at := 0.0, 0
			for i, x := range v {
				if math.Abs(x) > mx {
					mx, at = math.Abs(x), i
				}
			}
			t.Logf("site %d: max |v| = 2^%.2f at %d", site, math.Log2(mx), at)
		}
		_, _, err = s.start(st)
		after, _ := dp.ReadLedger(ledger)
		t.Logf("site %d (%d records): start: %v; ledger entries %d → %d (ε %v)", site, data.Rows(), err, len(before), len(after), after[len(after)-1].Epsilon)
		if len(after) > len(before) {
			refusals[site] = err
		}
		s.Close()
	}
	if len(refusals) == 2 && (refusals[1] == nil) != (refusals[2] == nil) {
		t.Errorf("both sites charged their ledgers; site 1 (28600 records, imbalanced labels): %v; site 2 (20000 records, balanced labels): %v — one refused after paying, naming the coordinate: the Refuse reason sent to the coordinator is a function of a site's data plus only its own noise share", refusals[1], refusals[2])
	}
}
