package dp

import (
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestAttackChargeWithoutPlan: a coordinator records its statistics
// release (round 0) and a training round as discrete Gaussian charges
// without their noise plan, at a multiplier far above what the noise it
// made sites add gives. Charge refuses them; a ledger holding such a
// charge (its plan stripped and the entry re-signed by the owner) fails
// the audit, naming the entry.
func TestAttackChargeWithoutPlan(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	l, err := CreateLedger(path, testKey(1), LedgerOptions{Accountant: RDP, Delta: 1e-5, Cap: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []int{0, 1} {
		_, err := l.Charge(Charge{RunID: "federation", Round: r, Level: RecordLevel,
			Event: Event{Mechanism: DiscreteGaussianMechanism, NoiseMultiplier: 1000, SamplingRate: 1, Count: 1}, Survivors: 3})
		if err == nil || !strings.Contains(err.Error(), "noise plan") {
			t.Errorf("round %d: a discrete Gaussian charge without its plan: %v", r, err)
		}
	}
	if _, err := l.Charge(clientCharge(1, 4)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	rewriteEntry(t, path, 1, func(e *Entry) {
		e.Release, e.Threshold, e.Colluders, e.MinCohort, e.Participants = "", 0, 0, 0, 0
		e.GridStep, e.Dim, e.RingBits, e.SiteSigma, e.Clip = 0, 0, 0, 0, 0
		e.NoiseMultiplier = 1000
	})
	resignBeside(t, path)
	_, err = AuditLedger(path, testKey(1).Public().(ed25519.PublicKey))
	if !errors.Is(err, ErrCorruptLedger) || !strings.Contains(err.Error(), "entry 1") || !strings.Contains(err.Error(), "noise plan") {
		t.Errorf("audit of a discrete Gaussian charge stripped of its plan: %v", err)
	}
}

// TestAttackMixedLevels: ε at record level says nothing at client level
// and back, and the per-patient ε of a client-level ledger covers its
// charges only if all are client level. Charge refuses a charge at
// another level than the ledger's first; a ledger with one (rewritten and
// re-signed by the owner) fails the audit, naming the entry.
func TestAttackMixedLevels(t *testing.T) {
	path := newTestLedger(t, 2) // client level
	l, err := OpenLedger(path, testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	rec := clientCharge(3, 4)
	rec.Level = RecordLevel
	if _, err := l.Charge(rec); err == nil || !strings.Contains(err.Error(), "record-level charge in a ledger of client-level") {
		t.Errorf("a record-level charge in a client-level ledger: %v", err)
	}
	l.Close()
	rewriteEntry(t, path, 2, func(e *Entry) {
		e.Level, e.Protects, e.PatientEpsilon = RecordLevel, relationText(RecordLevel), 0
	})
	resignBeside(t, path)
	_, err = AuditLedger(path, testKey(1).Public().(ed25519.PublicKey))
	if !errors.Is(err, ErrCorruptLedger) || !strings.Contains(err.Error(), "entry 2") || !strings.Contains(err.Error(), "level") {
		t.Errorf("audit of a ledger that switches level: %v", err)
	}
}

// TestAttackSessionChargedTwice: a ledger holds one charge per session, so
// one charge cannot be shown as two sessions' and a session's charge
// cannot be recorded twice. Charge refuses a second; a ledger with one
// (rewritten and re-signed by the owner) fails the audit, naming it.
func TestAttackSessionChargedTwice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	l, err := CreateLedger(path, testKey(1), LedgerOptions{Accountant: RDP, Delta: 1e-5, Cap: 8})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range []uint64{7, 8} {
		c := clientCharge(1, 4)
		c.Session = s
		if _, err := l.Charge(c); err != nil {
			t.Fatalf("charge %d: %v", i, err)
		}
	}
	again := clientCharge(1, 4)
	again.Session = 7
	if _, err := l.Charge(again); err == nil || !strings.Contains(err.Error(), "session 7 is charged already") {
		t.Errorf("a second charge of session 7: %v", err)
	}
	l.Close()
	rewriteEntry(t, path, 2, func(e *Entry) { e.Session = 7 })
	resignBeside(t, path)
	_, err = AuditLedger(path, testKey(1).Public().(ed25519.PublicKey))
	if !errors.Is(err, ErrCorruptLedger) || !strings.Contains(err.Error(), "entry 2") || !strings.Contains(err.Error(), "session 7 again") {
		t.Errorf("audit of a ledger charging session 7 twice: %v", err)
	}
}
