package protocol

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/dp/ledgertest"
	"github.com/fl-secure/fl-secure/internal/atrest"
)

// siteLedgerPub returns the key to audit the ledger of the site of cfg
// with: the roster's, or, with a roster that names none, the public key of
// the site's signing key.
func siteLedgerPub(t testing.TB, cfg SiteConfig) ed25519.PublicKey {
	t.Helper()
	if cfg.Roster != nil {
		if k := cfg.Roster.SiteLedgerKey(cfg.Site); k != nil {
			return k
		}
	}
	keyFile := cfg.LedgerKey
	if keyFile == "" && cfg.Identity != "" {
		keyFile = filepath.Join(filepath.Dir(cfg.Identity), ledgerKeyFile)
	}
	return ledgerPubOfKey(t, cfg.State, keyFile, cfg.Passphrase)
}

// coordLedgerPub is siteLedgerPub for the coordinator of cfg.
func coordLedgerPub(t testing.TB, cfg CoordinatorConfig) ed25519.PublicKey {
	t.Helper()
	if cfg.Roster != nil {
		if k := cfg.Roster.ledgerKey(); k != nil {
			return k
		}
	}
	keyFile := cfg.LedgerKey
	if keyFile == "" && cfg.Key != "" {
		keyFile = filepath.Join(filepath.Dir(cfg.Key), ledgerKeyFile)
	}
	return ledgerPubOfKey(t, cfg.State, keyFile, cfg.Passphrase)
}

// ledgerPubOfKey returns the public key of the ledger signing key in
// keyFile, or in state/ledger-key.pem without one.
func ledgerPubOfKey(t testing.TB, state, keyFile string, pass atrest.Passphrase) ed25519.PublicKey {
	t.Helper()
	if keyFile == "" {
		keyFile = filepath.Join(state, ledgerKeyFile)
	}
	k, err := readKey(keyFile, pass)
	if err != nil {
		t.Fatalf("the ledger key: %v", err)
	}
	return k.Public().(ed25519.PublicKey)
}

// Whoever can write a hospital's state directory, but not read its kit,
// replaces the ledger and its checkpoint with ones of a fresh key holding
// fewer charges (and, for earlier versions that wrote one, the ledger.pub
// beside them). The audit takes the hospital's ledger key from the roster
// provisioned with the kits, not from the state directory, and fails; and
// nothing in the state directory names a key to audit with.
func TestAttackLedgerPubBesideLedger(t *testing.T) {
	kits, state := t.TempDir(), t.TempDir()
	if err := Provision(kits, 3, nil); err != nil {
		t.Fatal(err)
	}
	roster, err := LoadRoster(filepath.Join(kits, "site-1", "roster.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := SiteConfig{Site: 1, Roster: roster, State: state, LedgerKey: filepath.Join(kits, "site-1", ledgerKeyFile)}
	l, err := openOrCreateLedger(state, "site-ledger.jsonl", cfg.LedgerKey, 3, 1e-5, atrest.Passphrase{}, func(pub ed25519.PublicKey) error {
		return checkSiteLedgerKey(cfg, pub)
	})
	if err != nil {
		t.Fatal(err)
	}
	for r := 0; r < 3; r++ {
		if _, err := l.Charge(ledgertest.Charge("federation", r, dp.RecordLevel, 8)); err != nil {
			t.Fatal(err)
		}
	}
	spent := l.Spent()
	if !l.PublicKey().Equal(roster.SiteLedgerKey(1)) {
		t.Fatal("site 1's ledger is not signed by the key the roster names for it")
	}
	l.Close()
	entries, _ := os.ReadDir(state)
	for _, e := range entries {
		if e.Name() == staleLedgerPub || e.Name() == ledgerKeyFile {
			t.Errorf("the state directory holds %s: no key to audit with belongs there", e.Name())
		}
	}
	// The attacker, with write access to state only.
	path := filepath.Join(state, "site-ledger.jsonl")
	os.Remove(path)
	os.Remove(path + dp.CheckpointSuffix)
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	f, err := dp.CreateLedger(path, key, dp.LedgerOptions{Accountant: dp.RDP, Relation: dp.AddRemove, Delta: 1e-5, Cap: 3})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	os.WriteFile(filepath.Join(state, staleLedgerPub), []byte(base64.StdEncoding.EncodeToString(pub)+"\n"), 0o644)
	// The auditor, as documented: the key from the roster.
	if a, err := dp.AuditLedger(path, roster.SiteLedgerKey(1)); err == nil {
		t.Errorf("ATTACK GOT THROUGH: a hospital ledger that spent ε = %.4g was replaced by an empty one under a fresh key; the audit with the roster's key passes (ε %v, %d entries)", spent, a.Epsilon, a.Entries)
	}
	// The site itself, at its next start, signs with its kit's key, which
	// cannot extend the replaced ledger; and the planted ledger.pub is
	// removed rather than left for an audit to read.
	if _, err := openOrCreateLedger(state, "site-ledger.jsonl", cfg.LedgerKey, 3, 1e-5, atrest.Passphrase{}, nil); err == nil {
		t.Error("the site extends a ledger signed by another key")
	}
	if _, err := os.Stat(filepath.Join(state, staleLedgerPub)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s left in the state directory: %v", staleLedgerPub, err)
	}
}

// Every site's ledger key is in the roster; a roster from before (no site
// ledger keys) still loads; a roster with a bad one, or with some sites'
// and not others', does not. A site whose kit key is not the roster's
// does not start.
func TestRosterSiteLedgerKeys(t *testing.T) {
	kits := t.TempDir()
	if err := Provision(kits, 3, nil); err != nil {
		t.Fatal(err)
	}
	rosterPath := filepath.Join(kits, "coordinator", "roster.json")
	roster, err := LoadRoster(rosterPath)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		k, err := readKey(filepath.Join(kits, fmt.Sprintf("site-%d", i), ledgerKeyFile), atrest.Passphrase{})
		if err != nil {
			t.Fatal(err)
		}
		if !roster.SiteLedgerKey(i).Equal(k.Public()) {
			t.Errorf("the roster's ledger key of site %d is not its kit's", i)
		}
	}
	write := func(r Roster) string {
		p := filepath.Join(t.TempDir(), "roster.json")
		b, _ := json.Marshal(r)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	old := *roster
	old.Sites = append([]RosterSite(nil), roster.Sites...)
	for i := range old.Sites {
		old.Sites[i].LedgerKey = ""
	}
	if r, err := LoadRoster(write(old)); err != nil || r.SiteLedgerKey(1) != nil {
		t.Errorf("a roster without site ledger keys: %v", err)
	}
	bad := old
	bad.Sites = append([]RosterSite(nil), roster.Sites...)
	bad.Sites[1].LedgerKey = "AAAA"
	if _, err := LoadRoster(write(bad)); err == nil {
		t.Error("a roster with a malformed site ledger key loads")
	}
	bad.Sites[1].LedgerKey = ""
	if _, err := LoadRoster(write(bad)); err == nil {
		t.Error("a roster naming some sites' ledger keys and not others' loads")
	}
	// Site 1 started with site 2's ledger key.
	state := t.TempDir()
	cfg := SiteConfig{Site: 1, Roster: roster, State: state, LedgerKey: filepath.Join(kits, "site-2", ledgerKeyFile)}
	if l, err := openSiteLedger(cfg, 3, 1e-5); err == nil {
		l.Close()
		t.Error("a site whose ledger key is not the roster's opens its ledger")
	}
	if _, err := os.Stat(filepath.Join(state, "site-ledger.jsonl")); err == nil {
		t.Error("the refused site created a ledger")
	}
}
