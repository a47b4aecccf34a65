package protocol

import (
	"crypto/ed25519"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/dp/ledgertest"
)

// TestSiteAnchorsChargeAfterCrash: a site that stops between its ledger
// charge and the state write after it (a crash) used to start again with a
// signed state that did not anchor the charge, so cutting the charge off
// the ledger went unnoticed and gave its ε back, and the round was not
// counted as paid and unopened (found by TestSimulation). The restarted
// site now anchors the charge and counts it.
func TestSiteAnchorsChargeAfterCrash(t *testing.T) {
	cfg, ch := anchorSite(t)
	chargeThenCrash(t, cfg, ch, true)

	s, err := NewSite(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	es, err := dp.ReadLedger(filepath.Join(cfg.State, "site-ledger.jsonl"))
	if err != nil || len(es) != 2 {
		t.Fatalf("ledger: %d entries, %v", len(es), err)
	}
	if s.state.LedgerEntries != 2 || s.state.LedgerRoot != treeRoot(es) {
		t.Errorf("the state anchors %d entries (root %q), want 2 (%q)", s.state.LedgerEntries, s.state.LedgerRoot, treeRoot(es))
	}
	if s.state.Unopened != 1 {
		t.Errorf("unopened paid rounds %d, want 1", s.state.Unopened)
	}
	st, err := loadSiteState(cfg.State, s.identity)
	if err != nil || st.LedgerEntries != 2 {
		t.Errorf("the state on disk anchors %d entries: %v", st.LedgerEntries, err)
	}
}

// anchorSite returns the in-memory configuration of site 1 of a new
// federation, and a charge of training round 1.
func anchorSite(t *testing.T) (SiteConfig, dp.Charge) {
	t.Helper()
	f := newMemFederation(t, 3, CoordinatorConfig{Rounds: 1, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1})
	cfg := f.siteConfig(1)
	cfg.Coordinator, cfg.Cert, cfg.Key, cfg.CA, cfg.Pin = "", "", "", "", ""
	ch := ledgertest.Charge("federation", 1, dp.RecordLevel, 5)
	return cfg, ch
}

// chargeThenCrash starts the site of cfg, joins a session of round 1 and
// charges ch; with crash, the site stops dead right after the charge,
// before the state write that follows it. The site is closed on return.
func chargeThenCrash(t *testing.T, cfg SiteConfig, ch dp.Charge, crash bool) {
	t.Helper()
	if crash {
		cfg.hooks = &simHooks{crash: func(point string, _ int) bool { return point == "site charged" }}
	}
	s, err := NewSite(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.joinSession(1 << 20); err != nil {
		t.Fatal(err)
	}
	err = s.charge(ch)
	switch {
	case crash && !errors.Is(err, errCrashed):
		t.Fatalf("charge: %v, want the simulated crash", err)
	case !crash && err != nil:
		t.Fatal(err)
	}
}

// sumSigma is the σ of the noise in the sum a charge counts on: one
// site's σ times the square root of its honest shares.
func sumSigma(ch *dp.Charge) float64 {
	if ch.Plan == nil {
		return 0
	}
	return ch.Plan.SiteSigma * math.Sqrt(float64(ch.Plan.Threshold-ch.Plan.Colluders))
}

// TestAttackSiteLedgerRewrittenInPlace: whoever holds a site's ledger key
// rewrites a charge (same length, re-signed, with a matching checkpoint
// beside it), which its own audit passes; the tree root in the site's
// signed state no longer matches, and the site refuses to start.
func TestAttackSiteLedgerRewrittenInPlace(t *testing.T) {
	cfg, ch := anchorSite(t)
	chargeThenCrash(t, cfg, ch, false)
	path := filepath.Join(cfg.State, "site-ledger.jsonl")
	key, err := readKey(filepath.Join(filepath.Dir(cfg.Identity), ledgerKeyFile), cfg.Passphrase) // in the site's kit
	if err != nil {
		t.Fatal(err)
	}
	es, err := dp.ReadLedger(path)
	if err != nil || len(es) != 2 {
		t.Fatalf("%d entries, %v", len(es), err)
	}
	// Rebuild the ledger with a cheaper charge: a fresh ledger under the
	// same key, the same open terms, and the charge at a larger multiplier.
	os.Remove(path)
	os.Remove(path + dp.CheckpointSuffix)
	l, err := dp.CreateLedger(path, key, dp.LedgerOptions{Accountant: es[0].Accountant, Relation: dp.AddRemove, Delta: es[0].Delta, Cap: es[0].Cap})
	if err != nil {
		t.Fatal(err)
	}
	cheaper := ledgertest.Charge(ch.RunID, ch.Round, ch.Level, 4*ch.Event.NoiseMultiplier)
	if _, err := l.Charge(cheaper); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := dp.AuditLedger(path, key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatalf("the rewritten ledger fails its own audit: %v", err)
	}
	if _, err := NewSite(cfg); err == nil || !strings.Contains(err.Error(), "not the 2 this site last wrote") {
		t.Fatalf("the site started on a rewritten ledger: %v", err)
	}
}
