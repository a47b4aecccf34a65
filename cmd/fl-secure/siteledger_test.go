package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
)

// TestAttackBudgetSiteLedgerCutShort: whoever can write a hospital's state
// directory, but not its kit, cuts its ledger back to the open entry and
// deletes the checkpoint beside it (no key needed): its ε would read 0.
// Audited under the roster with the hospital's number, the ledger is
// checked against the tree head its signed state anchors, and both
// `budget audit` and `budget report` fail, naming it. An honest hospital
// ledger with no checkpoint kept elsewhere gets the warning that a whole
// state directory put back from an earlier copy cannot be detected.
func TestAttackBudgetSiteLedgerCutShort(t *testing.T) {
	dir := t.TempDir()
	if code, _, errOut := runCLI("simulate", "--dir", dir, "--rounds", "3", "--no-compare"); code != 0 {
		t.Fatalf("simulate: exit %d: %s", code, errOut)
	}
	roster := filepath.Join(dir, "kits", "coordinator", "roster.json")
	coord := filepath.Join(dir, "coordinator", "coordinator-ledger.jsonl")
	path := filepath.Join(dir, "site-1", "site-ledger.jsonl")
	out := filepath.Join(t.TempDir(), "report.html")
	report := func() (int, string, string) {
		code, _, errOut := runCLI("budget", "report", "--ledger", coord, "--roster", roster, "--checkpoint", filepath.Join(dir, "site-2", "coordinator.checkpoint"),
			"--site-ledger", path, "--site", "1", "--out", out)
		page, _ := os.ReadFile(out)
		return code, string(page), errOut
	}
	code, page, errOut := report()
	if code != 0 || !strings.Contains(page, "data-site-limit") || !strings.Contains(errOut, "warning") {
		t.Errorf("honest report: exit %d, hospital warning on the page %v: %s", code, strings.Contains(page, "data-site-limit"), errOut)
	}
	if code, _, errOut := runCLI("budget", "audit", "--ledger", path, "--roster", roster, "--site", "1"); code != 0 {
		t.Errorf("honest audit: exit %d: %s", code, errOut)
	}

	data, _ := os.ReadFile(path)
	os.WriteFile(path, data[:bytes.IndexByte(data, '\n')+1], 0o600)
	os.Remove(path + dp.CheckpointSuffix)
	code, stdout, errOut := runCLI("budget", "audit", "--ledger", path, "--roster", roster, "--site", "1")
	if code != 1 || !strings.Contains(stdout+errOut, "signed state") || !strings.Contains(stdout+errOut, "shorter") {
		t.Errorf("audit of a hospital ledger cut to its open entry: exit %d: %s%s", code, stdout, errOut)
	}
	code, page, errOut = report()
	if code != 1 || !strings.Contains(errOut, "Site 1") || !strings.Contains(page, "NO: ") {
		t.Errorf("report of a hospital ledger cut to its open entry: exit %d: %s", code, errOut)
	}
}
