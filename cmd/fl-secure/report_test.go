package main

import (
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
)

// reportFacts parses the report (well-formed XHTML) and returns the status,
// the summary cells by id, and the ε of every round row.
func reportFacts(t *testing.T, path string) (ok string, ids map[string]string, rows map[string][]string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	dec.Strict = true
	dec.Entity = xml.HTMLEntity
	ids, rows = map[string]string{}, map[string][]string{}
	var stack []xml.StartElement
	var text strings.Builder
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
			text.Reset()
			for _, a := range v.Attr {
				if a.Name.Local == "data-ok" {
					ok = a.Value
				}
			}
		case xml.CharData:
			text.Write(v)
		case xml.EndElement:
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, a := range top.Attr {
				switch a.Name.Local {
				case "id":
					ids[a.Value] = strings.TrimSpace(text.String())
				case "data-field":
					rows[a.Value] = append(rows[a.Value], strings.TrimSpace(text.String()))
				}
			}
		}
	}
	return ok, ids, rows
}

func close8(a string, b float64) bool {
	x, err := strconv.ParseFloat(a, 64)
	return err == nil && math.Abs(x-b) <= 1e-7*math.Max(1, math.Abs(b))
}

func TestBudgetReport(t *testing.T) {
	path, pub := writeLedger(t, 5)
	out := filepath.Join(t.TempDir(), "report.html")
	code, _, errOut := runCLI("budget", "report", "--ledger", path, "--key", pub, "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	ok, ids, rows := reportFacts(t, out)
	entries, _ := dp.ReadLedger(path)
	last := entries[len(entries)-1]
	if ok != "true" || ids["rounds"] != "5" || !close8(ids["spent"], last.Epsilon) || !close8(ids["cap"], entries[0].Cap) ||
		!close8(ids["left"], entries[0].Cap-last.Epsilon) || !close8(ids["delta"], entries[0].Delta) {
		t.Errorf("summary: ok=%s %v", ok, ids)
	}
	if len(rows["epsilon"]) != 5 {
		t.Fatalf("%d rows", len(rows["epsilon"]))
	}
	for i, e := range entries[1:] {
		if !close8(rows["epsilon"][i], e.Epsilon) || !close8(rows["epsilon_round"][i], e.EpsilonRound) ||
			!close8(rows["noise_multiplier"][i], e.NoiseMultiplier) || rows["round"][i] != strconv.Itoa(e.Round) {
			t.Errorf("row %d: ε %s / %s, z %s, round %s; ledger %+v", i+1, rows["epsilon"][i], rows["epsilon_round"][i], rows["noise_multiplier"][i], rows["round"][i], e)
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
	// A tampered ledger: a red banner and exit 1.
	data, _ := os.ReadFile(path)
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	os.WriteFile(bad, []byte(strings.Replace(string(data), `"noise_multiplier":3`, `"noise_multiplier":4`, 1)), 0o600)
	code, _, errOut = runCLI("budget", "report", "--ledger", bad, "--key", pub, "--out", out)
	ok, _, _ = reportFacts(t, out)
	b, _ = os.ReadFile(out)
	if code != 1 || ok != "false" || !strings.Contains(string(b), "VERIFICATION FAILED") || !strings.Contains(errOut, "entry 1") {
		t.Errorf("tampered: exit %d, ok=%s: %s", code, ok, errOut)
	}
	// Per-site ledgers appear in their own table.
	sp, sk := writeLedger(t, 2)
	code, _, errOut = runCLI("budget", "report", "--ledger", path, "--key", pub, "--out", out, "--site-ledger", sp, "--site-key", sk)
	if code != 0 {
		t.Fatalf("with a site: exit %d: %s", code, errOut)
	}
	if _, ids, _ := reportFacts(t, out); ids["sites"] == "" {
		t.Error("no site table")
	}
	if code, _, _ := runCLI("budget", "report", "--ledger", path, "--key", pub, "--out", out, "--site-ledger", sp); code != 2 {
		t.Error("unpaired --site-ledger accepted")
	}
}
