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
	"strconv"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
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
var clientEvent = clientCharge(1, 0).Event

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
		{"altered entry 3", strings.Join(lines[:3], "") + strings.Replace(lines[3], `"noise_multiplier":3`, `"noise_multiplier":30`, 1) + strings.Join(lines[4:], ""), 3, "hash does not match"},
		{"altered entry 1", lines[0] + strings.Replace(lines[1], `"noise_multiplier":3`, `"noise_multiplier":30`, 1) + strings.Join(lines[2:], ""), 1, "hash does not match"},
		{"unparsable line 3", strings.Join(lines[:2], "") + "{not json}\n" + strings.Join(lines[3:], ""), 2, "line 3 does not parse"},
		{"torn last line", string(data) + `{"seq":6,"ti`, 6, "has no newline"},
		{"torn, and entry 2 altered", strings.Join(lines[:2], "") + strings.Replace(lines[2], `"noise_multiplier":3`, `"noise_multiplier":30`, 1) + strings.Join(lines[3:], "") + `{"seq":6`, 2, "hash does not match"},
		{"open entry altered", strings.Replace(string(data), `"epsilon_cap":10`, `"epsilon_cap":100`, 1), 0, "hash does not match"},
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
			if strings.Contains(string(b), ">30<") || strings.Contains(string(b), `"30"`) {
				t.Error("the altered value is shown")
			}
		})
	}
	// A failing site ledger: named in its box and in the table, no figures.
	sp, sk := writeLedger(t, 2)
	sd, _ := os.ReadFile(sp)
	os.WriteFile(sp, bytes.Replace(sd, []byte(`"noise_multiplier":3`), []byte(`"noise_multiplier":4`), 1), 0o600)
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
	data, _ := os.ReadFile(path)
	os.WriteFile(cp, data, 0o600)
	loose, lk := writeLedgerCap(t, t.TempDir(), 1, 10, 1)
	out := filepath.Join(t.TempDir(), "report.html")
	code, _, errOut := runCLI("budget", "report", "--ledger", cp, "--key", pub, "--out", out, "--site-ledger", sp, "--site-key", sk, "--site-ledger", loose, "--site-key", lk)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	f := reportFacts(t, out)
	if got := strings.Join(f.rows["site"], "|"); got != "Site 2|unnamed hospital: --site-ledger number 2 (give --site-name)" {
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
	if code != 2 || !strings.Contains(errOut, "name every hospital or none") {
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
