package dp_test

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fl-secure/fl-secure/dp"
)

// A hospital's privacy officer keeps a copy of the ledger's checkpoint.
// Later someone puts back an older copy of the ledger, together with the
// checkpoint beside it, to get the budget back: the ledger's own audit
// cannot tell, the officer's copy can.
func ExampleAuditLedger_rollback() {
	dir, _ := os.MkdirTemp("", "ledger")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "privacy.jsonl")
	pub, key, _ := ed25519.GenerateKey(nil)
	l, _ := dp.CreateLedger(path, key, dp.LedgerOptions{Accountant: dp.RDP, Delta: 1e-5, Cap: 10})
	plan := dp.NoisePlan{Release: dp.TrainingRelease, Threshold: 3, MinCohort: 3, Clients: 4,
		Gamma: 0x1p-16, Dim: 10, RingBits: 32, SiteSigma: 3, Clip: 1}
	charge := func(round int) {
		ch, _ := dp.PlanCharge("demo", round, dp.ClientLevel, plan)
		if _, err := l.Charge(ch); err != nil {
			fmt.Println(err)
		}
	}
	charge(1)
	oldLedger, _ := os.ReadFile(path)
	oldCheckpoint, _ := os.ReadFile(path + dp.CheckpointSuffix)
	charge(2)
	kept := l.Checkpoint() // the officer's copy
	l.Close()

	os.WriteFile(path, oldLedger, 0o600)
	os.WriteFile(path+dp.CheckpointSuffix, oldCheckpoint, 0o600)

	a, err := dp.AuditLedger(path, pub)
	fmt.Printf("alone: ok=%v, %d charge(s), external checkpoints %d\n", err == nil, a.Charges, a.External)
	_, err = dp.AuditLedger(path, pub, dp.AuditOptions{Checkpoints: [][]byte{kept}})
	fmt.Printf("with the officer's copy: truncated=%v\n", errors.Is(err, dp.ErrLedgerTruncated))
	// Output:
	// alone: ok=true, 1 charge(s), external checkpoints 0
	// with the officer's copy: truncated=true
}
