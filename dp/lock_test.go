//go:build unix

package dp

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAttackTwoWritersPassTheCap: two writers that open one ledger at
// once each check the cap against what they read, so that together they
// charge past it (26 + 26 charges under a cap of 3 without a lock). The
// second writer is refused, named the holder, while the first holds the
// ledger open; once it closes, the next writer reads everything the first
// wrote and stops at the cap.
func TestAttackTwoWritersPassTheCap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	a, err := CreateLedger(path, testKey(1), LedgerOptions{Accountant: RDP, Delta: 1e-5, Cap: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLedger(path, testKey(1)); !errors.Is(err, ErrLedgerInUse) || !strings.Contains(err.Error(), "process") {
		t.Fatalf("a second writer while the first holds the ledger: %v; want ErrLedgerInUse naming the holder", err)
	}
	charged := 0
	for r := 1; r <= 100; r++ {
		if _, err := a.Charge(clientCharge(r, 4)); err != nil {
			if !errors.Is(err, ErrBudgetExceeded) {
				t.Fatal(err)
			}
			break
		}
		charged++
	}
	if _, err := OpenLedger(path, testKey(1)); !errors.Is(err, ErrLedgerInUse) {
		t.Fatalf("a second writer after the first charged: %v", err)
	}
	a.Close()
	b, err := OpenLedger(path, testKey(1))
	if err != nil {
		t.Fatalf("after the first writer closed: %v", err)
	}
	defer b.Close()
	if b.Spent() != a.Spent() {
		t.Errorf("the next writer read ε %v; the first had spent %v", b.Spent(), a.Spent())
	}
	if _, err := b.Charge(clientCharge(charged+1, 4)); !errors.Is(err, ErrBudgetExceeded) {
		t.Errorf("the next writer charged past the cap: %v", err)
	}
	au, err := AuditLedger(path, testKey(1).Public().(ed25519.PublicKey))
	if err != nil || !au.OK || au.Epsilon > 3 {
		t.Fatalf("audit %+v, %v", au, err)
	}
	// A refused writer leaves the ledger as it was.
	before, _ := os.ReadFile(path)
	if _, err := CreateLedger(path, testKey(1), LedgerOptions{Accountant: RDP, Delta: 1e-5, Cap: 3}); err == nil {
		t.Error("CreateLedger over an existing ledger")
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Error("a refused writer changed the ledger")
	}
}
