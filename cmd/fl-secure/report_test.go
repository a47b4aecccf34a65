package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/dp/ledgertest"
)

// facts is what reportFacts reads from a report.
type facts struct {
	ok   string              // the status banner's data-ok
	text map[string]string   // element text by id
	val  map[string]string   // data-value (else text) by id
	rows map[string][]string // data-value (else text) of every data-field cell, in order
	seqs []string            // data-seq of the round table's rows
	bad  []string            // data-entry of every failing-entry box
}

// reportFacts parses the report, which must be well-formed XHTML.
func reportFacts(t *testing.T, path string) facts {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.Strict = true
	dec.Entity = xml.HTMLEntity
	f := facts{text: map[string]string{}, val: map[string]string{}, rows: map[string][]string{}}
	var stack []xml.StartElement
	var texts []*strings.Builder
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the report is not well formed: %v", err)
		}
		switch v := tok.(type) {
		case xml.StartElement:
			stack = append(stack, v.Copy())
			texts = append(texts, new(strings.Builder))
			for _, a := range v.Attr {
				switch a.Name.Local {
				case "data-ok":
					f.ok = a.Value
				case "data-seq":
					f.seqs = append(f.seqs, a.Value)
				case "data-entry":
					f.bad = append(f.bad, a.Value)
				}
			}
		case xml.CharData:
			for _, s := range texts {
				s.Write(v)
			}
		case xml.EndElement:
			top := stack[len(stack)-1]
			text := strings.Join(strings.Fields(texts[len(texts)-1].String()), " ")
			stack, texts = stack[:len(stack)-1], texts[:len(texts)-1]
			value := text
			for _, a := range top.Attr {
				if a.Name.Local == "data-value" {
					value = a.Value
				}
			}
			for _, a := range top.Attr {
				switch a.Name.Local {
				case "id":
					f.text[a.Value], f.val[a.Value] = text, value
				case "data-field":
					f.rows[a.Value] = append(f.rows[a.Value], value)
				}
			}
		}
	}
	return f
}

func close8(a string, b float64) bool {
	x, err := strconv.ParseFloat(a, 64)
	return err == nil && math.Abs(x-b) <= 1e-7*math.Max(1, math.Abs(b))
}

// clientCharge is one client-level round of 5 hospitals assuming
// colluders colluders, whose honest shares sum to σ = 3 (multiplier just
// under 3 after the grid's rounding).
func clientCharge(round, colluders int) dp.Charge {
	c, err := dp.PlanCharge("r1", round, dp.ClientLevel, dp.NoisePlan{Release: dp.TrainingRelease, Threshold: 5, Colluders: colluders,
		MinCohort: 5, Clients: 5, Gamma: 1.0 / (1 << 16), Dim: 100, RingBits: 32, SiteSigma: 3 / math.Sqrt(float64(5-colluders)), Clip: 1})
	if err != nil {
		panic(err)
	}
	c.Survivors = 5
	return c
}

// clientEvent is one round of writeLedger.
var clientEvent = ledgertest.Charge("r1", 1, dp.ClientLevel, 3).Event

func TestBudgetReport(t *testing.T) {
	path, pub := writeLedger(t, 5)
	out := filepath.Join(t.TempDir(), "report.html")
	code, _, errOut := runCLI("budget", "report", "--ledger", path, "--key", pub, "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	f := reportFacts(t, out)
	entries, _ := dp.ReadLedger(path)
	last := entries[len(entries)-1]
	if f.ok != "true" || f.val["rounds"] != "5" || !close8(f.val["spent"], last.Epsilon) || !close8(f.val["cap"], entries[0].Cap) ||
		!close8(f.val["left"], entries[0].Cap-last.Epsilon) || !close8(f.val["delta"], entries[0].Delta) {
		t.Errorf("summary: ok=%s %v", f.ok, f.val)
	}
	if len(f.rows["epsilon"]) != 5 {
		t.Fatalf("%d rows", len(f.rows["epsilon"]))
	}
	for i, e := range entries[1:] {
		if !close8(f.rows["epsilon"][i], e.Epsilon) || !close8(f.rows["epsilon_round"][i], e.EpsilonRound) ||
			!close8(f.rows["noise_multiplier"][i], e.NoiseMultiplier) || f.rows["round"][i] != strconv.Itoa(e.Round) {
			t.Errorf("row %d: ε %s / %s, z %s, round %s; ledger %+v", i+1, f.rows["epsilon"][i], f.rows["epsilon_round"][i], f.rows["noise_multiplier"][i], f.rows["round"][i], e)
		}
	}
	b, _ := os.ReadFile(out)
	for _, must := range []string{"<svg", "HIPAA", "GDPR", "Art. 25", "Client level", "Verified"} {
		if !strings.Contains(string(b), must) {
			t.Errorf("report lacks %q", must)
		}
	}
	if strings.Contains(string(b), "http://") && strings.Count(string(b), "http://") != 2 {
		t.Error("the report refers to external resources")
	}
	for _, external := range []string{"https://", "<script", "<link", "src=", "@import", "url("} {
		if strings.Contains(string(b), external) {
			t.Errorf("the report holds %q: it must be self-contained", external)
		}
	}
	// Per-site ledgers appear in their own table.
	sp, sk := writeLedger(t, 2)
	code, _, errOut = runCLI("budget", "report", "--ledger", path, "--key", pub, "--out", out, "--site-ledger", sp, "--site-key", sk)
	if code != 0 {
		t.Fatalf("with a site: exit %d: %s", code, errOut)
	}
	if f := reportFacts(t, out); f.text["sites"] == "" || len(f.rows["site_epsilon"]) != 1 {
		t.Error("no site table")
	}
	if code, _, _ := runCLI("budget", "report", "--ledger", path, "--key", pub, "--out", out, "--site-ledger", sp); code != 2 {
		t.Error("unpaired --site-ledger accepted")
	}
}

// TestBudgetReportClientLevelBothEpsilons checks that a client-level
// report shows the hospital's ε and the per-patient ε, each with its
// relation in words, in the summary, the round table and the site table,
// and that the per-patient figures are dp.PatientEpsilon of the rounds.
func TestBudgetReportClientLevelBothEpsilons(t *testing.T) {
	path, pub := writeLedger(t, 4)
	out := filepath.Join(t.TempDir(), "report.html")
	if code, _, errOut := runCLI("budget", "report", "--ledger", path, "--key", pub, "--out", out, "--site-ledger", path, "--site-key", pub); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	f := reportFacts(t, out)
	entries, _ := dp.ReadLedger(path)
	want, err := dp.PatientEpsilon(dp.RDP, 1e-5, clientEvent, clientEvent, clientEvent, clientEvent)
	if err != nil {
		t.Fatal(err)
	}
	if !close8(f.val["spent"], entries[4].Epsilon) || !close8(f.val["patient-spent"], want) || !(want > entries[4].Epsilon) {
		t.Errorf("hospital ε %s (ledger %v), per-patient ε %s (want %v)", f.val["spent"], entries[4].Epsilon, f.val["patient-spent"], want)
	}
	if f.text["spent-relation"] != dp.ClientRelationText || f.text["patient-relation"] != dp.PatientRelationText {
		t.Errorf("relations %q, %q", f.text["spent-relation"], f.text["patient-relation"])
	}
	for _, s := range []string{dp.ClientRelationText, dp.PatientRelationText, "ε = " + strconv.FormatFloat(want, 'g', 6, 64)} {
		if !strings.Contains(f.text["client-level"], s) {
			t.Errorf("the client-level paragraph lacks %q: %s", s, f.text["client-level"])
		}
	}
	for i := 1; i <= 4; i++ {
		evs := make([]dp.Event, i)
		for j := range evs {
			evs[j] = clientEvent
		}
		w, _ := dp.PatientEpsilon(dp.RDP, 1e-5, evs...)
		if len(f.rows["patient_epsilon"]) != 4 || !close8(f.rows["patient_epsilon"][i-1], w) {
			t.Errorf("round %d: per-patient ε %v, want %v", i, f.rows["patient_epsilon"], w)
		}
	}
	if len(f.rows["site_patient_epsilon"]) != 1 || !close8(f.rows["site_patient_epsilon"][0], want) {
		t.Errorf("site per-patient ε %v, want %v", f.rows["site_patient_epsilon"], want)
	}
	// No colluders assumed: flagged as weak, with what it means.
	if w := f.text["colluders-warning"]; !strings.Contains(w, "0 colluders") || !strings.Contains(w, "no hospital colludes with the coordinator") {
		t.Errorf("no weak-assumption warning: %q", w)
	}
}

// writeLedgerCap writes a client-level ledger of rounds rounds with the
// given cap and colluders.
func writeLedgerCap(t *testing.T, dir string, rounds int, cap float64, colluders int) (path, pub string) {
	t.Helper()
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	path = filepath.Join(dir, "site-ledger.jsonl")
	l, err := dp.CreateLedger(path, key, dp.LedgerOptions{Accountant: dp.RDP, Delta: 1e-5, Cap: cap})
	if err != nil {
		t.Fatal(err)
	}
	for r := 1; r <= rounds; r++ {
		if _, err := l.Charge(clientCharge(r, colluders)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	return path, base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
}

// TestBudgetReportSpentBudgetShowsZero: a budget spent up to rounding
// shows 0 left, not 3.4e-09; colluders assumed are stated, not flagged.
func TestBudgetReportSpentBudgetShowsZero(t *testing.T) {
	ev := clientCharge(1, 1).Event
	ev.Count = 3
	spent, _ := dp.Epsilon(dp.RDP, dp.AddRemove, 1e-5, ev)
	path, pub := writeLedgerCap(t, t.TempDir(), 3, spent+3.4e-9, 1)
	out := filepath.Join(t.TempDir(), "report.html")
	if code, _, errOut := runCLI("budget", "report", "--ledger", path, "--key", pub, "--out", out, "--site-ledger", path, "--site-key", pub); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	f := reportFacts(t, out)
	if f.text["left"] != "0" || f.val["left"] != "0" || len(f.rows["site_left"]) != 1 || f.rows["site_left"][0] != "0" {
		t.Errorf("budget left %q (%q), site %v; want 0", f.text["left"], f.val["left"], f.rows["site_left"])
	}
	if _, warned := f.text["colluders-warning"]; warned || !strings.Contains(f.text["colluders"], "up to 1 hospital") {
		t.Errorf("1 colluder assumed: warning %v, text %q", warned, f.text["colluders"])
	}
}

// TestBudgetReportFailedAudit: after a failed audit the report names the
// failing entry and why, and shows no figure from it or after it.
func TestBudgetReportFailedAudit(t *testing.T) {
	path, pub := writeLedger(t, 5)
	data, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(data), "\n")
	out := filepath.Join(t.TempDir(), "report.html")
	for _, tc := range []struct {
		name     string
		file     string
		verified int    // entries that verify
		reason   string // in the failing entry's box
	}{
		{"altered entry 3", strings.Join(lines[:3], "") + tamperMultiplier(lines[3]) + strings.Join(lines[4:], ""), 3, "signature does not verify"},
		{"altered entry 1", lines[0] + tamperMultiplier(lines[1]) + strings.Join(lines[2:], ""), 1, "signature does not verify"},
		{"unparsable line 3", strings.Join(lines[:2], "") + "{not json}\n" + strings.Join(lines[3:], ""), 2, "line 3 does not parse"},
		{"torn last line", string(data) + `{"seq":6,"ti`, 6, "has no newline"},
		{"torn, and entry 2 altered", strings.Join(lines[:2], "") + tamperMultiplier(lines[2]) + strings.Join(lines[3:], "") + `{"seq":6`, 2, "signature does not verify"},
		{"open entry altered", strings.Replace(string(data), `"epsilon_cap":10`, `"epsilon_cap":100`, 1), 0, "signature does not verify"},
		{"empty", "", 0, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := filepath.Join(t.TempDir(), "bad.jsonl")
			os.WriteFile(bad, []byte(tc.file), 0o600)
			code, _, errOut := runCLI("budget", "report", "--ledger", bad, "--key", pub, "--out", out)
			f := reportFacts(t, out)
			b, _ := os.ReadFile(out)
			if code != 1 || f.ok != "false" || !strings.Contains(string(b), "VERIFICATION FAILED") || !strings.Contains(errOut, "fl-secure: error:") {
				t.Errorf("exit %d, ok=%s: %s", code, f.ok, errOut)
			}
			if len(f.bad) != 1 || f.bad[0] != strconv.Itoa(tc.verified) {
				t.Errorf("failing entry %v, want %d", f.bad, tc.verified)
			}
			box := fmt.Sprintf("entry %d (line %d) fails verification", tc.verified, tc.verified+1)
			if tc.name == "empty" {
				box = "fails verification"
			}
			if !strings.Contains(string(b), box) || !strings.Contains(string(b), tc.reason) {
				t.Errorf("the report does not say %q because %q", box, tc.reason)
			}
			// Only verified charges are shown: entries 1 … verified−1.
			var want []string
			for i := 1; i < tc.verified; i++ {
				want = append(want, strconv.Itoa(i))
			}
			if strings.Join(f.seqs, ",") != strings.Join(want, ",") || len(f.rows["epsilon"]) != len(want) || len(f.rows["patient_epsilon"]) != len(want) {
				t.Errorf("rows %v (ε %v), want entries %v", f.seqs, f.rows["epsilon"], want)
			}
			if got := strings.Count(string(b), "<polyline"); (len(want) > 0) != (got > 0) {
				t.Errorf("%d chart lines for %d verified rounds", got, len(want))
			}
			if tc.verified > 0 && !strings.Contains(f.text["left"], "unknown") {
				t.Errorf("budget left %q for a ledger that fails", f.text["left"])
			}
			if tc.verified == 0 && f.text["spent"] != "" {
				t.Errorf("ε %q shown from a ledger none of whose entries verified", f.text["spent"])
			}
			if strings.Contains(string(b), ">30<") || strings.Contains(string(b), ">29.99999") {
				t.Error("the altered value is shown")
			}
		})
	}
	// A failing site ledger: named in its box and in the table, no figures.
	sp, sk := writeLedger(t, 2)
	sd, _ := os.ReadFile(sp)
	os.WriteFile(sp, []byte(tamperMultiplier(string(sd))), 0o600)
	code, _, errOut := runCLI("budget", "report", "--ledger", path, "--key", pub, "--out", out, "--site-ledger", sp, "--site-key", sk, "--site-name", "Site 4")
	f := reportFacts(t, out)
	if code != 1 || f.ok != "false" || len(f.bad) != 1 || !strings.Contains(errOut, "Site 4") || !strings.HasPrefix(f.rows["verified"][0], "NO: entry 1") || len(f.rows["site_epsilon"]) != 0 {
		t.Errorf("failing site: exit %d, boxes %v, verified %v, ε %v: %s", code, f.bad, f.rows["verified"], f.rows["site_epsilon"], errOut)
	}
	// A missing site ledger is a finding too.
	code, _, _ = runCLI("budget", "report", "--ledger", path, "--key", pub, "--out", out, "--site-ledger", filepath.Join(t.TempDir(), "gone.jsonl"), "--site-key", sk)
	if f := reportFacts(t, out); code != 1 || !strings.HasPrefix(f.rows["verified"][0], "NO: the ledger could not be read") {
		t.Errorf("missing site ledger: exit %d, %v", code, f.rows["verified"])
	}
}

// TestBudgetReportSiteNames: hospitals are named by --site-name or by the
// site number of the kit their ledger lives in, never by a directory.
func TestBudgetReportSiteNames(t *testing.T) {
	fed := t.TempDir()
	kit := filepath.Join(fed, "site-2")
	os.MkdirAll(filepath.Join(kit, "state"), 0o700)
	os.WriteFile(filepath.Join(kit, "client.conf"), []byte("# a kit\nsite = 2\ncoordinator = localhost:7443\nstate = state\n"), 0o644)
	sp, sk := writeLedgerCap(t, filepath.Join(kit, "state"), 2, 10, 1)
	coordDir := filepath.Join(fed, "coordinator", "state")
	os.MkdirAll(coordDir, 0o700)
	path, pub := writeLedger(t, 2)
	cp := filepath.Join(coordDir, "coordinator-ledger.jsonl")
	for _, suffix := range []string{"", dp.CheckpointSuffix} {
		data, _ := os.ReadFile(path + suffix)
		os.WriteFile(cp+suffix, data, 0o600)
	}
	loose, lk := writeLedgerCap(t, t.TempDir(), 1, 10, 1)
	out := filepath.Join(t.TempDir(), "report.html")
	code, _, errOut := runCLI("budget", "report", "--ledger", cp, "--key", pub, "--out", out, "--site-ledger", sp, "--site-key", sk, "--site-ledger", loose, "--site-key", lk)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	f := reportFacts(t, out)
	if got := strings.Join(f.rows["site"], "|"); got != "Site 2|unnamed hospital: --site-ledger number 2 (give --site or --site-name)" {
		t.Errorf("site names %q", got)
	}
	if b, _ := os.ReadFile(out); !strings.Contains(string(b), "(Coordinator)") {
		t.Error("the coordinator's ledger is not named")
	}
	code, _, errOut = runCLI("budget", "report", "--ledger", cp, "--key", pub, "--out", out, "--site-ledger", sp, "--site-key", sk, "--site-name", "St Olav's", "--site-ledger", loose, "--site-key", lk, "--site-name", "Haukeland")
	if f := reportFacts(t, out); code != 0 || strings.Join(f.rows["site"], "|") != "St Olav's|Haukeland" {
		t.Errorf("--site-name: exit %d, %v: %s", code, f.rows["site"], errOut)
	}
	code, _, errOut = runCLI("budget", "report", "--ledger", cp, "--key", pub, "--out", out, "--site-ledger", sp, "--site-key", sk, "--site-name", "A", "--site-ledger", loose, "--site-key", lk)
	if code != 2 || !strings.Contains(errOut, "give it for every hospital or for none") {
		t.Errorf("one --site-name for two ledgers: exit %d: %s", code, errOut)
	}
}

// TestBudgetReportEscapes: names and paths from files and flags are
// escaped, and characters XML forbids are replaced, so the page stays
// well-formed and runs nothing.
func TestBudgetReportEscapes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), `<b>&"x"</b>`)
	os.MkdirAll(dir, 0o700)
	path, pub := writeLedgerCap(t, dir, 1, 10, 1)
	out := filepath.Join(t.TempDir(), "report.html")
	code, _, errOut := runCLI("budget", "report", "--ledger", path, "--key", pub, "--out", out, "--name", "<script>alert(1)</script>\x01\xff",
		"--site-ledger", path, "--site-key", pub, "--site-name", "<img src=x onerror=alert(1)>")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	reportFacts(t, out) // well formed
	b, _ := os.ReadFile(out)
	for _, raw := range []string{"<script", "<img", "<b>", "\x01"} {
		if strings.Contains(string(b), raw) {
			t.Errorf("the report holds %q unescaped", raw)
		}
	}
}

// ownedLedger writes a client-level ledger of rounds charges under a fixed
// key at dir/coordinator-ledger.jsonl and returns its path and key.
func ownedLedger(t *testing.T, dir string, rounds int) (string, ed25519.PrivateKey) {
	t.Helper()
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{11}, 32))
	path := filepath.Join(dir, "coordinator-ledger.jsonl")
	l, err := dp.CreateLedger(path, key, dp.LedgerOptions{Accountant: dp.RDP, Delta: 1e-5, Cap: 10})
	if err != nil {
		t.Fatal(err)
	}
	for r := 1; r <= rounds; r++ {
		if _, err := l.Charge(clientCharge(r, 1)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	return path, key
}

// charge appends rounds charges, numbered from first, to the ledger at path.
func charge(t *testing.T, path string, key ed25519.PrivateKey, first, rounds int) {
	t.Helper()
	l, err := dp.OpenLedger(path, key)
	if err != nil {
		t.Fatal(err)
	}
	for r := first; r < first+rounds; r++ {
		if _, err := l.Charge(clientCharge(r, 1)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
}

// TestBudgetReportCutLedger: a ledger cut short or rolled back together
// with the checkpoint beside it passes an audit of its directory alone, and
// the page then says that truncation and rollback cannot be detected;
// given a checkpoint kept elsewhere, the report exits 1 with a red banner
// naming truncation and shows no figure, table or chart. A ledger cut
// short under its own checkpoint, and one rewritten and re-signed, are
// named the same way.
func TestBudgetReportCutLedger(t *testing.T) {
	dir := t.TempDir()
	path, key := ownedLedger(t, dir, 3)
	pub := base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
	old := t.TempDir()
	copyTo(t, path, filepath.Join(old, "ledger"))
	copyTo(t, path+dp.CheckpointSuffix, filepath.Join(old, "checkpoint"))
	charge(t, path, key, 4, 2)
	kept := filepath.Join(t.TempDir(), "coordinator.checkpoint") // a hospital's copy
	copyTo(t, path+dp.CheckpointSuffix, kept)
	full, _ := os.ReadFile(path)
	// Rolled back: the older ledger and its checkpoint put back.
	copyTo(t, filepath.Join(old, "ledger"), path)
	copyTo(t, filepath.Join(old, "checkpoint"), path+dp.CheckpointSuffix)
	out := filepath.Join(t.TempDir(), "report.html")

	code, _, errOut := runCLI("budget", "report", "--ledger", path, "--key", pub, "--out", out)
	f := reportFacts(t, out)
	if code != 0 || f.ok != "true" || f.val["rounds"] != "3" || !strings.Contains(f.text["checkpoint-limit"], "Truncation or rollback cannot be detected") ||
		!strings.Contains(errOut, "fl-secure: warning:") {
		t.Errorf("rolled back, no checkpoint kept elsewhere: exit %d, ok=%s, rounds %s, limit %q: %s", code, f.ok, f.val["rounds"], f.text["checkpoint-limit"], errOut)
	}

	noFigures := func(t *testing.T, problem, words string) {
		t.Helper()
		b, _ := os.ReadFile(out)
		page := string(b)
		f := reportFacts(t, out)
		if f.ok != "false" || !strings.Contains(page, `data-problem="`+problem+`"`) || !strings.Contains(strings.ToLower(f.text["status"]), words) {
			t.Errorf("banner ok=%s %q, want problem %s naming %q", f.ok, f.text["status"], problem, words)
		}
		for _, shown := range []string{"<svg", "<polyline", `id="round-table"`, `id="spent"`, `id="left"`} {
			if strings.Contains(page, shown) {
				t.Errorf("the page shows %s of a ledger that does not match its checkpoints", shown)
			}
		}
		if len(f.seqs) != 0 || len(f.rows["epsilon"]) != 0 {
			t.Errorf("rounds %v shown", f.seqs)
		}
	}
	t.Run("rolled back", func(t *testing.T) {
		code, _, errOut := runCLI("budget", "report", "--ledger", path, "--key", pub, "--out", out, "--checkpoint", kept)
		if code != 1 || !strings.Contains(errOut, "fl-secure: error:") || !strings.Contains(errOut, kept) {
			t.Errorf("exit %d: %s", code, errOut)
		}
		noFigures(t, "truncated", "truncation")
		f := reportFacts(t, out)
		if _, warned := f.text["checkpoint-limit"]; warned {
			t.Error("the no-external-checkpoint warning is shown though one was given")
		}
		if got := strings.Join(f.rows["cp_result"], "|"); !strings.Contains(got, "ok|FAILS: ") || !strings.Contains(got, "6 entries") {
			t.Errorf("checkpoint results %q", got)
		}
	})
	t.Run("cut under its own checkpoint", func(t *testing.T) {
		os.WriteFile(path, full, 0o600)
		copyTo(t, kept, path+dp.CheckpointSuffix)
		lines := strings.SplitAfter(string(full), "\n")
		os.WriteFile(path, []byte(strings.Join(lines[:4], "")), 0o600)
		code, _, _ := runCLI("budget", "report", "--ledger", path, "--key", pub, "--out", out)
		if code != 1 {
			t.Errorf("exit %d", code)
		}
		noFigures(t, "truncated", "truncation")
	})
	t.Run("rewritten and re-signed", func(t *testing.T) {
		fork := t.TempDir()
		fp := filepath.Join(fork, "coordinator-ledger.jsonl")
		l, err := dp.CreateLedger(fp, key, dp.LedgerOptions{Accountant: dp.RDP, Delta: 1e-5, Cap: 10})
		if err != nil {
			t.Fatal(err)
		}
		for r := 1; r <= 5; r++ {
			if _, err := l.Charge(clientCharge(r+10, 1)); err != nil {
				t.Fatal(err)
			}
		}
		l.Close()
		code, _, _ := runCLI("budget", "report", "--ledger", fp, "--key", pub, "--out", out, "--checkpoint", kept)
		if code != 1 {
			t.Errorf("exit %d", code)
		}
		noFigures(t, "forked", "rewritten")
	})
	t.Run("unreadable checkpoint", func(t *testing.T) {
		os.WriteFile(path, full, 0o600)
		copyTo(t, kept, path+dp.CheckpointSuffix)
		code, _, errOut := runCLI("budget", "report", "--ledger", path, "--key", pub, "--out", out, "--checkpoint", filepath.Join(t.TempDir(), "gone"))
		if code != 1 || !strings.Contains(errOut, "gone") {
			t.Errorf("exit %d: %s", code, errOut)
		}
		noFigures(t, "checkpoint", "checkpoint")
	})
}

// TestBudgetReportOutcomes: only charges are rounds; outcome marks fill
// their Outcome column: opened, NOT OPENED (highlighted), not recorded.
func TestBudgetReportOutcomes(t *testing.T) {
	path, key := ownedLedger(t, t.TempDir(), 3)
	l, err := dp.OpenLedger(path, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Mark(1, dp.Opened); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Mark(2, dp.Unopened); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Charge(clientCharge(4, 1)); err != nil { // entry 6
		t.Fatal(err)
	}
	if _, err := l.Mark(6, dp.Unopened); err != nil {
		t.Fatal(err)
	}
	l.Close()
	pub := base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
	out := filepath.Join(t.TempDir(), "report.html")
	if code, _, errOut := runCLI("budget", "report", "--ledger", path, "--key", pub, "--out", out); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	f := reportFacts(t, out)
	if got := strings.Join(f.seqs, ","); got != "1,2,3,6" || f.val["rounds"] != "4" {
		t.Errorf("round rows at entries %s, %s rounds; want the charges 1,2,3,6", got, f.val["rounds"])
	}
	if got := strings.Join(f.rows["outcome"], "|"); got != "opened|NOT OPENED|not recorded|NOT OPENED" {
		t.Errorf("outcomes %q", got)
	}
	if b, _ := os.ReadFile(out); !strings.Contains(string(b), `class="bad"><strong>NOT OPENED</strong>`) || !strings.HasPrefix(f.text["unopened"], "2 ") {
		t.Errorf("NOT OPENED is not highlighted, or the summary says %q", f.text["unopened"])
	}
	entries, _ := dp.ReadLedger(path)
	if last := entries[len(entries)-1]; !close8(f.val["spent"], last.Epsilon) || len(f.rows["epsilon"]) != 4 {
		t.Errorf("spent %s, want %v", f.val["spent"], last.Epsilon)
	}
	// A mark that fails verification shows nothing: the charge before it
	// is shown with an unknown outcome.
	data, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(data), "\n")
	lines[7] = strings.Replace(lines[7], `"outcome":"unopened"`, `"outcome":"opened"`, 1)
	os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600)
	if code, _, _ := runCLI("budget", "report", "--ledger", path, "--key", pub, "--out", out); code != 1 {
		t.Errorf("altered mark: exit %d", code)
	}
	f = reportFacts(t, out)
	if got := strings.Join(f.rows["outcome"], "|"); len(f.bad) != 1 || f.bad[0] != "7" || !strings.HasSuffix(got, "|unknown: the ledger fails verification after it") {
		t.Errorf("altered mark: failing %v, outcomes %q", f.bad, got)
	}
}

// writeRoster writes a roster of the sites' identity keys and the
// coordinator's ledger key, as provisioning does.
func writeRoster(t *testing.T, owner ed25519.PublicKey, sites []ed25519.PrivateKey) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(`{"sites":[`)
	for i, k := range sites {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"id":%d,"cert_sha256":"%s","identity":"%s"}`, i+1, strings.Repeat("ab", 32),
			base64.StdEncoding.EncodeToString(k.Public().(ed25519.PublicKey)))
	}
	fmt.Fprintf(&b, `],"coordinator":{"ledger_key":"%s"}}`, base64.StdEncoding.EncodeToString(owner))
	p := filepath.Join(t.TempDir(), "roster.json")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBudgetReportWitnesses: given the coordinator's state directory and
// the roster, the report names who cosigned the checkpoint covering the
// last round, from the cosigned copies in the witness directory, without a
// --witness per hospital: "cosigned by 4 of 5 hospitals at round 3", then 5
// of 5; a hospital's own copy given with --checkpoint is kept elsewhere and
// lifts the warning; a cosignature that does not verify fails the report.
func TestBudgetReportWitnesses(t *testing.T) {
	state := t.TempDir()
	path, key := ownedLedger(t, state, 2)
	owner := key.Public().(ed25519.PublicKey)
	var sites []ed25519.PrivateKey
	for i := range 5 {
		sites = append(sites, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(40 + i)}, 32)))
	}
	roster := writeRoster(t, owner, sites)
	wdir := filepath.Join(state, dp.WitnessDir)
	os.MkdirAll(wdir, 0o700)
	cosign := func(site int) []byte {
		note, err := os.ReadFile(path + dp.CheckpointSuffix)
		if err != nil {
			t.Fatal(err)
		}
		c, err := dp.Cosign(note, owner, fmt.Sprintf("fl-secure/site/%d", site), sites[site-1])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(wdir, fmt.Sprintf("site-%d.checkpoint", site)), c, 0o600); err != nil {
			t.Fatal(err)
		}
		return c
	}
	cosign(5) // site 5 last cosigned at round 2
	charge(t, path, key, 3, 1)
	for s := 1; s <= 4; s++ {
		cosign(s)
	}
	out := filepath.Join(t.TempDir(), "report.html")
	code, _, errOut := runCLI("budget", "report", "--ledger", state, "--roster", roster, "--out", out)
	f := reportFacts(t, out)
	if code != 0 || f.ok != "true" {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if s := f.text["cosigned"]; !strings.Contains(s, "cosigned by 4 of 5 hospitals at round 3") || !strings.Contains(s, "Site 1 (fl-secure/site/1)") ||
		!strings.Contains(s, "cosignature of Site 5") {
		t.Errorf("witness sentence %q", s)
	}
	if !strings.Contains(f.text["checkpoint-limit"], "cannot be detected") {
		t.Error("copies in the witness directory lift the no-external-checkpoint warning")
	}
	if got := strings.Join(f.rows["cp_round"], ","); got != "3,3,3,3,3,2" {
		t.Errorf("last rounds covered %q", got)
	}
	// Site 5 cosigns round 3 and hands its copy over: kept elsewhere.
	own := filepath.Join(t.TempDir(), "coordinator.checkpoint")
	os.WriteFile(own, cosign(5), 0o600)
	code, _, errOut = runCLI("budget", "report", "--ledger", state, "--roster", roster, "--out", out, "--checkpoint", own)
	f = reportFacts(t, out)
	if code != 0 || !strings.Contains(f.text["cosigned"], "cosigned by 5 of 5 hospitals at round 3") || f.text["checkpoint-limit"] != "" ||
		strings.Contains(errOut, "warning") {
		t.Errorf("5 of 5 with a copy kept elsewhere: exit %d, %q, limit %q: %s", code, f.text["cosigned"], f.text["checkpoint-limit"], errOut)
	}
	if got := strings.Join(f.rows["cp_kept"], "|"); !strings.HasSuffix(got, "|elsewhere (given)") {
		t.Errorf("kept %q", got)
	}
	// Named one by one, the witnesses are not called hospitals.
	w1 := "fl-secure/site/1=" + base64.StdEncoding.EncodeToString(sites[0].Public().(ed25519.PublicKey))
	pub := base64.StdEncoding.EncodeToString(owner)
	code, _, errOut = runCLI("budget", "report", "--ledger", path, "--key", pub, "--witness", w1, "--out", out)
	if f := reportFacts(t, out); code != 0 || !strings.Contains(f.text["cosigned"], "cosigned by 1 of 1 witnesses at round 3") {
		t.Errorf("--witness: exit %d, %q: %s", code, f.text["cosigned"], errOut)
	}
	if code, _, _ := runCLI("budget", "report", "--ledger", path, "--key", pub, "--roster", roster, "--witness", w1, "--out", out); code != 2 {
		t.Errorf("a hospital named twice: exit %d", code)
	}
	other := base64.StdEncoding.EncodeToString(sites[0].Public().(ed25519.PublicKey))
	if code, _, errOut := runCLI("budget", "report", "--ledger", path, "--key", other, "--roster", roster, "--out", out); code != 2 || !strings.Contains(errOut, "roster") {
		t.Errorf("--key other than the roster's: exit %d: %s", code, errOut)
	}
	// A cosignature that does not verify under the site's key fails.
	note, _ := os.ReadFile(filepath.Join(wdir, "site-2.checkpoint"))
	lines := strings.Split(strings.TrimSuffix(string(note), "\n"), "\n")
	last := lines[len(lines)-1] // "— fl-secure/site/2 base64(key hash ‖ signature)"
	i := strings.LastIndexByte(last, ' ')
	sig, err := base64.StdEncoding.DecodeString(last[i+1:])
	if err != nil || !strings.Contains(last, "fl-secure/site/2") {
		t.Fatalf("cosigned note %q", note)
	}
	sig[len(sig)-1] ^= 1
	lines[len(lines)-1] = last[:i+1] + base64.StdEncoding.EncodeToString(sig)
	c := []byte(strings.Join(lines, "\n") + "\n")
	os.WriteFile(filepath.Join(wdir, "site-2.checkpoint"), c, 0o600)
	code, _, errOut = runCLI("budget", "report", "--ledger", state, "--roster", roster, "--out", out)
	f = reportFacts(t, out)
	if code != 1 || f.ok != "false" || !strings.Contains(errOut, "site-2.checkpoint") || !slices.ContainsFunc(f.rows["cp_result"], func(s string) bool { return strings.HasPrefix(s, "FAILS") }) {
		t.Errorf("a bad cosignature: exit %d, ok=%s, %v: %s", code, f.ok, f.rows["cp_result"], errOut)
	}
}

// tamperMultiplier multiplies the first noise multiplier recorded in s by
// ten, keeping the line in canonical form: an alteration only the
// signature catches.
func tamperMultiplier(s string) string {
	const key = `"noise_multiplier":`
	i := strings.Index(s, key)
	if i < 0 {
		panic("no noise multiplier to tamper with")
	}
	j := i + len(key)
	k := j + strings.IndexAny(s[j:], ",}")
	z, err := strconv.ParseFloat(s[j:k], 64)
	if err != nil {
		panic(err)
	}
	return s[:j] + strconv.FormatFloat(10*z, 'f', -1, 64) + s[k:]
}
