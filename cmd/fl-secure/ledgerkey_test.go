package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/protocol"
)

// kitLedgerKey reads the (unencrypted) ledger signing key of a kit.
func kitLedgerKey(t *testing.T, kit string) ed25519.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(kit, "ledger-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", kit)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(ed25519.PrivateKey)
}

// TestAttackBudgetAuditRosterKey: an audit takes a hospital's ledger key
// from the roster (budget audit --roster --site N, budget report --roster
// with --site-ledger), so a ledger replaced in the state directory with
// one of a fresh key, checkpoint and ledger.pub included, fails it; a key
// that contradicts the roster is refused; an older roster without the
// hospitals' ledger keys needs --key.
func TestAttackBudgetAuditRosterKey(t *testing.T) {
	fed := filepath.Join(t.TempDir(), "fed")
	if err := protocol.Provision(fed, 3, nil); err != nil {
		t.Fatal(err)
	}
	kit := filepath.Join(fed, "site-1")
	state := filepath.Join(kit, "state")
	os.MkdirAll(state, 0o700)
	path := filepath.Join(state, "site-ledger.jsonl")
	l, err := dp.CreateLedger(path, kitLedgerKey(t, kit), dp.LedgerOptions{Accountant: dp.RDP, Delta: 1e-5, Cap: 10})
	if err != nil {
		t.Fatal(err)
	}
	for r := 1; r <= 3; r++ {
		if _, err := l.Charge(clientCharge(r, 1)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	coordState := filepath.Join(fed, "coordinator", "state")
	os.MkdirAll(coordState, 0o700)
	cl, err := dp.CreateLedger(filepath.Join(coordState, coordinatorLedger), kitLedgerKey(t, filepath.Join(fed, "coordinator")),
		dp.LedgerOptions{Accountant: dp.RDP, Delta: 1e-5, Cap: 10})
	if err != nil {
		t.Fatal(err)
	}
	cl.Close()
	roster := filepath.Join(kit, "roster.json")
	coordRoster := filepath.Join(fed, "coordinator", "roster.json")
	out := filepath.Join(t.TempDir(), "report.html")

	code, stdout, errOut := runCLI("budget", "audit", "--ledger", path, "--roster", roster, "--site", "1")
	if code != 0 || !strings.Contains(stdout, "ok: 4 entries") {
		t.Fatalf("audit with the roster's key: exit %d: %s%s", code, stdout, errOut)
	}
	if code, _, errOut := runCLI("budget", "audit", "--ledger", filepath.Join(coordState, coordinatorLedger), "--roster", coordRoster, "--coordinator"); code != 0 {
		t.Errorf("the coordinator's ledger with the roster's key: exit %d: %s", code, errOut)
	}
	if code, _, _ := runCLI("budget", "audit", "--ledger", path, "--roster", roster, "--site", "2"); code != 1 {
		t.Errorf("site 1's ledger under site 2's roster key: exit %d, want 1", code)
	}
	// The report: the coordinator's key and the hospital's from the roster,
	// the hospital found by its kit's client.conf or by --site.
	code, _, errOut = runCLI("budget", "report", "--ledger", coordState, "--roster", coordRoster, "--site-ledger", path, "--out", out)
	if f := reportFacts(t, out); code != 0 || f.ok != "true" {
		t.Fatalf("report with the roster's keys: exit %d: %s", code, errOut)
	}
	loose := filepath.Join(t.TempDir(), "site-ledger.jsonl")
	copyTo(t, path, loose)
	copyTo(t, path+dp.CheckpointSuffix, loose+dp.CheckpointSuffix)
	if code, _, errOut := runCLI("budget", "report", "--ledger", coordState, "--roster", coordRoster, "--site-ledger", loose, "--site", "1", "--out", out); code != 0 {
		t.Errorf("report with --site: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCLI("budget", "report", "--ledger", coordState, "--roster", coordRoster, "--site-ledger", loose, "--out", out); code != 2 || !strings.Contains(errOut, "--site") {
		t.Errorf("a ledger outside its kit, no --site: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCLI("budget", "report", "--ledger", coordState, "--roster", coordRoster, "--site-ledger", path, "--site", "2", "--out", out); code != 2 {
		t.Errorf("--site contradicting the kit: exit %d: %s", code, errOut)
	}

	// Misuse.
	fresh, freshKey, _ := ed25519.GenerateKey(rand.Reader)
	freshText := base64.StdEncoding.EncodeToString(fresh)
	for _, args := range [][]string{
		{"--roster", roster, "--site", "1", "--key", freshText},
		{"--roster", roster, "--site", "1", "--coordinator"},
		{"--roster", roster},
		{"--site", "1"},
		{"--roster", roster, "--site", "4"},
		{},
	} {
		if code, _, errOut := runCLI(append([]string{"budget", "audit", "--ledger", path}, args...)...); code != 2 {
			t.Errorf("audit %v: exit %d, want 2: %s", args, code, errOut)
		}
	}
	if code, _, errOut := runCLI("budget", "report", "--ledger", coordState, "--roster", coordRoster, "--site-ledger", path, "--site-key", freshText, "--out", out); code != 2 || !strings.Contains(errOut, "roster") {
		t.Errorf("--site-key contradicting the roster: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCLI("budget", "report", "--ledger", coordState, "--roster", coordRoster, "--site-ledger", loose, "--site-key", freshText, "--out", out); code != 2 || !strings.Contains(errOut, "roster") {
		t.Errorf("--site-key of no hospital of the roster: exit %d: %s", code, errOut)
	}

	// The attack: with write access to the state directory only, a fresh
	// ledger under a fresh key, its checkpoint, and a ledger.pub.
	os.Remove(path)
	os.Remove(path + dp.CheckpointSuffix)
	f, err := dp.CreateLedger(path, freshKey, dp.LedgerOptions{Accountant: dp.RDP, Delta: 1e-5, Cap: 10})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	os.WriteFile(filepath.Join(state, "ledger.pub"), []byte(freshText+"\n"), 0o644)
	if code, stdout, _ := runCLI("budget", "audit", "--ledger", path, "--roster", roster, "--site", "1"); code != 1 {
		t.Errorf("ATTACK GOT THROUGH: a replaced ledger audits under the roster's key: exit %d: %s", code, stdout)
	}
	if code, _, _ := runCLI("budget", "report", "--ledger", coordState, "--roster", coordRoster, "--site-ledger", path, "--out", out); code != 1 {
		t.Errorf("ATTACK GOT THROUGH: the report passes a replaced hospital ledger: exit %d", code)
	}

	// A roster from before the hospitals' ledger keys were in it.
	r, err := protocol.LoadRoster(roster)
	if err != nil {
		t.Fatal(err)
	}
	for i := range r.Sites {
		r.Sites[i].LedgerKey = ""
	}
	old := filepath.Join(t.TempDir(), "roster.json")
	b, _ := json.Marshal(r)
	os.WriteFile(old, b, 0o644)
	if code, _, errOut := runCLI("budget", "audit", "--ledger", path, "--roster", old, "--site", "1"); code != 2 || !strings.Contains(errOut, "--key") {
		t.Errorf("an older roster without --key: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCLI("budget", "audit", "--ledger", path, "--roster", old, "--site", "1", "--key", freshText); code != 0 {
		t.Errorf("an older roster with --key: exit %d: %s", code, errOut)
	}
}
