package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
)

func copyTo(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestAttackBudgetAuditCheckpoints: `budget audit` with a checkpoint kept
// elsewhere catches a ledger cut short (with its checkpoint), rolled back
// (ledger and checkpoint restored from an earlier copy) and forked (an
// entry rewritten and re-signed, with a new checkpoint); without one it
// passes and says plainly what it cannot detect.
func TestAttackBudgetAuditCheckpoints(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	pub := base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
	dir := t.TempDir()
	path := filepath.Join(dir, "privacy.jsonl")
	l, err := dp.CreateLedger(path, key, dp.LedgerOptions{Accountant: dp.RDP, Delta: 1e-5, Cap: 10})
	if err != nil {
		t.Fatal(err)
	}
	charge := func(r int) {
		if _, err := l.Charge(dp.Charge{RunID: "r1", Round: r, Level: dp.ClientLevel,
			Event: dp.Event{Mechanism: dp.GaussianMechanism, NoiseMultiplier: 3, SamplingRate: 1, Count: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	charge(1)
	charge(2)
	copyTo(t, path, path+".bak")
	copyTo(t, path+dp.CheckpointSuffix, path+".cp.bak")
	charge(3)
	kept := filepath.Join(dir, "kept.checkpoint") // a witness's copy
	os.WriteFile(kept, l.Checkpoint(), 0o600)
	l.Close()
	copyTo(t, path, path+".good")
	copyTo(t, path+dp.CheckpointSuffix, path+".cp.good")

	code, out, errOut := runCLI("budget", "audit", "--ledger", path, "--key", pub, "--checkpoint", kept)
	if code != 0 || !strings.HasPrefix(out, "ok: 4 entries") || !strings.Contains(out, "1 external") || strings.Contains(out, "warning") {
		t.Fatalf("genuine ledger: exit %d\n%s%s", code, out, errOut)
	}

	// Rollback: the ledger and its checkpoint restored from the backup.
	copyTo(t, path+".bak", path)
	copyTo(t, path+".cp.bak", path+dp.CheckpointSuffix)
	code, out, errOut = runCLI("budget", "audit", "--ledger", path, "--key", pub)
	if code != 0 || !strings.Contains(out, "warning: no external checkpoint was given") {
		t.Errorf("rolled back, no external checkpoint: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI("budget", "audit", "--ledger", path, "--key", pub, "--checkpoint", kept)
	if code != 1 || !strings.Contains(errOut, "shorter than a checkpoint") || !strings.Contains(errOut, "kept.checkpoint") {
		t.Errorf("rolled back: exit %d\n%s%s", code, out, errOut)
	}

	// Truncation: the last entry cut, the checkpoint beside it kept.
	copyTo(t, path+".good", path)
	copyTo(t, path+".cp.good", path+dp.CheckpointSuffix)
	data, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(data), "\n")
	os.WriteFile(path, []byte(strings.Join(lines[:len(lines)-2], "")), 0o600)
	code, out, errOut = runCLI("budget", "audit", "--ledger", path, "--key", pub, "--checkpoint", kept, "--json")
	var a dp.Audit
	if code != 1 || json.Unmarshal([]byte(out), &a) != nil || a.OK || len(a.Checkpoints) != 2 || a.Checkpoints[0].OK || a.Checkpoints[1].OK {
		t.Errorf("truncated: exit %d, %+v\n%s", code, a, errOut)
	}

	// Fork: entry 1 rewritten and re-signed, the checkpoint beside it too.
	copyTo(t, path+".good", path)
	es, _ := dp.ReadLedger(path)
	es[1].RunID = "r0"
	es[1].Sig = ""
	b, _ := json.Marshal(&es[1])
	es[1].Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(key, append([]byte("fl-secure/ledger/v2\n"), b...)))
	var out2 []byte
	for i := range es {
		line, _ := json.Marshal(&es[i])
		out2 = append(append(out2, line...), '\n')
	}
	os.WriteFile(path, out2, 0o600)
	root, _ := dp.TreeRoot(es)
	note, _ := dp.SignCheckpoint(key, int64(len(es)), root)
	os.WriteFile(path+dp.CheckpointSuffix, note, 0o600)
	if code, out, errOut := runCLI("budget", "audit", "--ledger", path, "--key", pub); code != 0 {
		t.Errorf("a consistent fork without a witness: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI("budget", "audit", "--ledger", path, "--key", pub, "--checkpoint", kept)
	if code != 1 || !strings.Contains(errOut, "does not match a checkpoint") {
		t.Errorf("forked: exit %d\n%s%s", code, out, errOut)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--witness", "site-1"}, 2, "want NAME=PUBKEY"},
		{[]string{"--witness", "site-1=xyz"}, 2, "not a 32-byte Ed25519 public key"},
		{[]string{"--witness", "a=" + pub, "--witness", "a=" + pub}, 2, "given twice"},
		{[]string{"--checkpoint", filepath.Join(dir, "missing")}, 1, "no such file"},
		{[]string{"--checkpoint", path}, 1, "invalid ledger checkpoint"},
	} {
		args := append([]string{"budget", "audit", "--ledger", path + ".good", "--key", pub}, tc.args...)
		copyTo(t, path+".cp.good", path+".good"+dp.CheckpointSuffix)
		code, out, errOut := runCLI(args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("%v: exit %d, want %d; output lacks %q:\n%s%s", tc.args, code, tc.code, tc.want, out, errOut)
		}
	}

	// show prints the checkpoint's size.
	if code, out, _ := runCLI("budget", "show", "--ledger", path+".good"); code != 0 || !strings.Contains(out, "checkpoint beside the ledger: 4 entries") {
		t.Errorf("show: exit %d\n%s", code, out)
	}
}

// TestBudgetShowOutcomes: show lists each charge's outcome, and no row
// for a mark.
func TestBudgetShowOutcomes(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	path := filepath.Join(t.TempDir(), "privacy.jsonl")
	l, err := dp.CreateLedger(path, key, dp.LedgerOptions{Accountant: dp.RDP, Delta: 1e-5, Cap: 100})
	if err != nil {
		t.Fatal(err)
	}
	for r := 1; r <= 3; r++ {
		ch, err := dp.PlanCharge("r1", r, dp.RecordLevel, dp.NoisePlan{Release: dp.TrainingRelease, Threshold: 3, MinCohort: 3,
			Clients: 4, Gamma: 0x1p-16, Dim: 10, RingBits: 32, SiteSigma: 2, Clip: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Charge(ch); err != nil {
			t.Fatal(err)
		}
	}
	l.Mark(1, dp.Opened)
	l.Mark(2, dp.Unopened)
	l.Close()
	code, out, errOut := runCLI("budget", "show", "--ledger", path)
	if code != 0 || strings.Count(out, "discrete_gaussian") != 3 || !strings.Contains(out, "NOT OPENED") ||
		!strings.Contains(out, "not recorded") || strings.Count(out, "opened") != 1 || !strings.Contains(out, "training") {
		t.Errorf("show: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI("budget", "show", "--ledger", path, "--json")
	var shown struct {
		Rounds []shownRound `json:"rounds"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || len(shown.Rounds) != 3 ||
		shown.Rounds[0].Outcome != "opened" || shown.Rounds[1].Outcome != "NOT OPENED" || shown.Rounds[2].Outcome != "not recorded" {
		t.Errorf("show --json: exit %d\n%s", code, out)
	}
}

// TestBudgetShowPatientEpsilon: at client level show gives the hospital's
// ε and the per-patient ε, each with its relation in words.
func TestBudgetShowPatientEpsilon(t *testing.T) {
	path, _ := writeLedger(t, 3) // client level
	code, out, errOut := runCLI("budget", "show", "--ledger", path)
	if code != 0 || !strings.Contains(out, dp.ClientRelationText) || !strings.Contains(out, dp.PatientRelationText) || !strings.Contains(out, "per patient:  ε = ") {
		t.Errorf("show: exit %d\n%s%s", code, out, errOut)
	}
	es, _ := dp.ReadLedger(path)
	code, out, _ = runCLI("budget", "show", "--ledger", path, "--json")
	var shown struct {
		Patient float64      `json:"patient_epsilon"`
		Rounds  []shownRound `json:"rounds"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || shown.Patient != es[3].PatientEpsilon || shown.Patient <= 0 ||
		shown.Rounds[2].Protects != dp.ClientRelationText {
		t.Errorf("show --json: exit %d\n%s", code, out)
	}
}
