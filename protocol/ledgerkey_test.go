package protocol

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runMemSites connects sites 1..n of f in memory, runs the coordinator,
// and returns the summary and the sites once every session has ended.
func runMemSites(t *testing.T, f *federation, n int, cfg func(*SiteConfig)) (*Summary, []*Site, error) {
	t.Helper()
	sum, sites, err, _ := runMemFull(t, f, n, cfg)
	return sum, sites, err
}

// The coordinator's and the sites' ledger keys live in their kits, not in
// the state directories beside the ledgers, and the roster every site
// holds names the coordinator's ledger key.
func TestLedgerKeysInKits(t *testing.T) {
	f := newMemFederation(t, 3, CoordinatorConfig{Rounds: 1, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1})
	sum, sites, err := runMemSites(t, f, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if okRounds(sum) != 1 {
		t.Fatalf("rounds %+v", sum.Rounds)
	}
	if !f.roster.ledgerKey().Equal(f.coord.ledger.PublicKey()) {
		t.Errorf("the roster's coordinator ledger key %s is not the ledger's %s", f.roster.Coordinator.LedgerKey, sum.LedgerKey)
	}
	dirs := []string{f.coord.cfg.State}
	for _, s := range sites {
		dirs = append(dirs, s.cfg.State)
	}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, ledgerKeyFile)); err == nil {
			t.Errorf("%s holds a ledger key beside its ledger", d)
		}
	}
	for i := 1; i <= 3; i++ {
		kit := filepath.Join(f.dir, fmt.Sprintf("site-%d", i))
		key, err := readKey(filepath.Join(kit, ledgerKeyFile), f.coord.cfg.Passphrase)
		if err != nil {
			t.Fatal(err)
		}
		if !sites[i-1].LedgerKey().Equal(key.Public()) {
			t.Errorf("site %d's ledger is not signed by the key in its kit", i)
		}
		if !f.roster.SiteLedgerKey(i).Equal(key.Public()) {
			t.Errorf("the roster does not name site %d's ledger key", i)
		}
	}
}

// A state directory from before the ledger keys moved to the kits, with
// its key beside the ledger, is refused with what to move where.
func TestLedgerKeyBesideLedgerRefused(t *testing.T) {
	f := newMemFederation(t, 3, CoordinatorConfig{Rounds: 1, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1})
	c := f.siteConfig(1)
	kitKey := filepath.Join(f.dir, "site-1", ledgerKeyFile)
	beside := filepath.Join(c.State, ledgerKeyFile)
	if err := os.Remove(kitKey); err != nil { // a kit from before
		t.Fatal(err)
	}
	// whose roster named no site's ledger key
	r := *c.Roster
	r.Sites = append([]RosterSite(nil), r.Sites...)
	for i := range r.Sites {
		r.Sites[i].LedgerKey = ""
	}
	c.Roster = &r
	old := c
	old.LedgerKey = beside // as before: the key beside the ledger
	s, err := NewSite(old)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = NewSite(c)
	if err == nil || !strings.Contains(err.Error(), "move it to "+kitKey) || !strings.Contains(err.Error(), beside) {
		t.Fatalf("a site with its ledger key beside its ledger: %v; want an error saying to move %s to %s", err, beside, kitKey)
	}
	if err := os.Rename(beside, kitKey); err != nil {
		t.Fatal(err)
	}
	s, err = NewSite(c)
	if err != nil {
		t.Fatalf("after the key was moved to the kit: %v", err)
	}
	s.Close()

	// The coordinator: a key that is not the roster's is refused.
	cc := f.coord.cfg
	cc.LedgerKey = kitKey // a site's ledger key, not the roster's
	co, err := NewCoordinator(cc)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(cc.State, 0o700)
	if _, err := co.openLedger(); err == nil || !strings.Contains(err.Error(), "not the coordinator ledger key of the roster") {
		t.Errorf("a coordinator whose ledger key is not the roster's: %v", err)
	}
}
