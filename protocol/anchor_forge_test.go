package protocol

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
)

// TestSiteAnchorsNoForgedOrCutTail: the restarted site anchors the charges
// past its signed state's anchor, so what it anchors must be its own: a
// charge line appended by someone without its ledger key is refused, not
// anchored (and then trusted), and a ledger cut below the anchor is
// refused; neither refused start moves the anchor.
func TestSiteAnchorsNoForgedOrCutTail(t *testing.T) {
	cfg, ch := anchorSite(t)
	chargeThenCrash(t, cfg, ch, false)
	id, err := readKey(cfg.Identity, cfg.Passphrase)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cfg.State, "site-ledger.jsonl")
	good, _ := os.ReadFile(path)

	// A charge line signed by another key, appended past the anchor.
	_, other, _ := ed25519.GenerateKey(nil)
	fp := filepath.Join(t.TempDir(), "other.jsonl")
	ol, err := dp.CreateLedger(fp, other, dp.LedgerOptions{Accountant: dp.RDP, Relation: dp.AddRemove, Delta: 1e-5, Cap: 10})
	if err != nil {
		t.Fatal(err)
	}
	ch2 := ch
	ch2.Round = 1
	if _, err := ol.Charge(ch2); err != nil {
		t.Fatal(err)
	}
	ol.Close()
	ob, _ := os.ReadFile(fp)
	lines := bytes.SplitAfter(ob, []byte("\n"))
	if err := os.WriteFile(path, append(append([]byte(nil), good...), lines[1]...), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := NewSite(cfg); err == nil {
		s.Close()
		t.Fatal("a forged charge past the anchor was accepted")
	}
	if st, err := loadSiteState(cfg.State, id); err != nil || st.LedgerEntries != 2 {
		t.Fatalf("the refused start changed the anchor: %d entries, %v", st.LedgerEntries, err)
	}

	// A ledger cut below the anchor.
	gl := bytes.SplitAfter(good, []byte("\n"))
	if err := os.WriteFile(path, gl[0], 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := NewSite(cfg); err == nil {
		s.Close()
		t.Fatal("a ledger cut below the anchor was accepted")
	} else if errors.Is(err, errCrashed) {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := NewSite(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.state.LedgerEntries != 2 {
		t.Errorf("anchor %d, want 2", s.state.LedgerEntries)
	}
}

// TestSiteWithoutCapLeavesChargeUnanchored: a site that stopped between a
// charge and the state write, started again without an ε cap (no DP this
// time), runs on with a signed state that does not anchor that charge.
func TestSiteWithoutCapLeavesChargeUnanchored(t *testing.T) {
	cfg, ch := anchorSite(t)
	chargeThenCrash(t, cfg, ch, true)
	cfg.EpsilonCap, cfg.AllowNoDP = 0, true
	s, err := NewSite(cfg)
	if err != nil {
		t.Skipf("a site without a cap does not start on a ledger with charges: %v", err)
	}
	defer s.Close()
	if err := s.joinSession(2 << 20); err != nil {
		t.Fatal(err)
	}
	st, err := loadSiteState(cfg.State, s.identity)
	if err != nil {
		t.Fatal(err)
	}
	if st.LedgerEntries != 2 {
		t.Errorf("running without a cap, the signed state anchors %d of the ledger's 2 entries: the charge can be cut off unnoticed", st.LedgerEntries)
	}
}
