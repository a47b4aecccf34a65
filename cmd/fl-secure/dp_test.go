package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/dp/ledgertest"
)

func TestDPEpsilonAndCalibrate(t *testing.T) {
	code, out, errOut := runCLI("dp", "epsilon", "--noise-multiplier", "1.1", "--sampling-rate", "0.01", "--steps", "100", "--delta", "1e-5")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got, err := strconv.ParseFloat(strings.TrimSpace(out), 64)
	want, _ := dp.Epsilon(dp.RDP, dp.AddRemove, 1e-5, dp.Event{Mechanism: dp.GaussianMechanism, NoiseMultiplier: 1.1, SamplingRate: 0.01, Count: 100})
	if err != nil || float32(got) != float32(want) {
		t.Errorf("stdout %q, want ε = %v", out, want)
	}
	code, out, _ = runCLI("dp", "epsilon", "--noise-multiplier", "2", "--steps", "10", "--delta", "1e-6", "--accountant", "pld", "--neighbouring", "replace", "--json")
	var v map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v["neighbouring"] != "replace-one" || v["accountant"] != "pld" {
		t.Errorf("JSON epsilon: exit %d, %s", code, out)
	}
	code, out, errOut = runCLI("dp", "calibrate", "--epsilon", "1", "--delta", "1e-5", "--steps", "1")
	z, _ := strconv.ParseFloat(strings.TrimSpace(out), 64)
	if code != 0 || z < 4.04 || z > 4.05 {
		t.Errorf("calibrate: exit %d, %q %s", code, out, errOut)
	}
}

func TestDPMisuse(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"dp"}, 2, "Usage:"},
		{[]string{"dp", "frob"}, 2, `unknown dp command "frob"`},
		{[]string{"dp", "epsilon", "--steps", "3", "--delta", "1e-5"}, 2, "missing --noise-multiplier"},
		{[]string{"dp", "epsilon", "--noise-multiplier", "-1", "--steps", "3", "--delta", "1e-5"}, 2, "--noise-multiplier -1"},
		{[]string{"dp", "epsilon", "--noise-multiplier", "1", "--steps", "3", "--delta", "1"}, 2, "--delta 1: want a probability"},
		{[]string{"dp", "epsilon", "--noise-multiplier", "1", "--steps", "3", "--delta", "1e-5", "--accountant", "moments"}, 2, `--accountant "moments"`},
		{[]string{"dp", "epsilon", "--noise-multiplier", "1", "--steps", "3", "--delta", "1e-5", "--sampling-rate", "0.1", "--neighbouring", "replace"}, 1, "replace-one with Poisson sampling"},
		{[]string{"dp", "calibrate", "--epsilon", "0", "--steps", "3", "--delta", "1e-5"}, 2, "--epsilon 0"},
		{[]string{"dp", "plan", "--epsilon", "1", "--delta", "1e-5", "--rounds", "3"}, 2, "missing --sites"},
		{[]string{"dp", "plan", "--epsilon", "1", "--delta", "1e-5", "--rounds", "3", "--sites", "5"}, 1, "no clipping"},
		{[]string{"dp", "plan", "--epsilon", "1", "--delta", "1e-5", "--rounds", "3", "--sites", "5", "--clip", "1", "--colluders", "4", "--threshold", "4"}, 2, "--colluders 4"},
	} {
		code, out, errOut := runCLI(tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("%v: exit %d, want %d; output lacks %q:\n%s%s", tc.args, code, tc.code, tc.want, out, errOut)
		}
		if code != 0 && tc.code != 2 && !strings.Contains(errOut, "fl-secure: error:") {
			t.Errorf("%v: no error line: %s", tc.args, errOut)
		}
	}
}

func TestDPPlan(t *testing.T) {
	code, out, errOut := runCLI("dp", "plan", "--epsilon", "20", "--delta", "1e-5", "--rounds", "10", "--sites", "2", "--threshold", "1", "--clip", "1", "--dim", "100", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var p dp.Preflight
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	all := strings.Join(p.Warnings, "\n")
	for _, w := range []string{"above 10", "≤ n/2", "fewer than 3"} {
		if !strings.Contains(all, w) {
			t.Errorf("no warning containing %q in %q", w, all)
		}
	}
	if p.AchievedEpsilon > p.Epsilon || p.EffectiveMultiple < p.NoiseMultiplier {
		t.Errorf("plan misses its target: %+v", p)
	}
	if d := p.SiteSigma*p.SiteSigma*float64(p.HonestSurvivors) - p.Sigma*p.Sigma; d > 1e-9*p.Sigma*p.Sigma || d < -1e-9*p.Sigma*p.Sigma {
		t.Errorf("honest shares do not reach σ: %+v", p)
	}
	code, out, _ = runCLI("dp", "plan", "--epsilon", "4", "--delta", "1e-6", "--rounds", "50", "--sites", "8", "--threshold", "6", "--colluders", "1", "--clip", "1")
	if code != 0 || !strings.Contains(out, "each site adds") {
		t.Errorf("table plan: exit %d\n%s", code, out)
	}
}

func writeLedger(t *testing.T, rounds int) (path, pub string) {
	t.Helper()
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	path = filepath.Join(t.TempDir(), "privacy.jsonl")
	l, err := dp.CreateLedger(path, key, dp.LedgerOptions{Accountant: dp.RDP, Delta: 1e-5, Cap: 10})
	if err != nil {
		t.Fatal(err)
	}
	for r := 1; r <= rounds; r++ {
		if _, err := l.Charge(ledgertest.Charge("r1", r, dp.ClientLevel, 3)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	return path, base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
}

func TestBudgetShowAndAudit(t *testing.T) {
	path, pub := writeLedger(t, 4)
	code, out, errOut := runCLI("budget", "show", "--ledger", path)
	if code != 0 || strings.Count(out, "discrete_gaussian") != 4 || !strings.Contains(out, "left") {
		t.Errorf("show: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI("budget", "show", "--ledger", path, "--json")
	var shown struct {
		Rounds  []shownRound `json:"rounds"`
		Epsilon float64      `json:"epsilon"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || len(shown.Rounds) != 4 || shown.Epsilon <= 0 {
		t.Errorf("show --json: exit %d\n%s", code, out)
	}
	code, out, errOut = runCLI("budget", "audit", "--ledger", path, "--key", pub)
	if code != 0 || !strings.HasPrefix(out, "ok: 5 entries") {
		t.Errorf("audit: exit %d\n%s%s", code, out, errOut)
	}
	// Tamper with entry 2's ε: the audit fails and names it.
	data, _ := os.ReadFile(path)
	lines := strings.Split(string(data), "\n")
	lines[2] = tamperMultiplier(lines[2])
	os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600)
	code, out, errOut = runCLI("budget", "audit", "--ledger", path, "--key", pub, "--json")
	var a dp.Audit
	if code != 1 || json.Unmarshal([]byte(out), &a) != nil || a.OK || a.FirstBad != 2 || !strings.Contains(errOut, "entry 2") {
		t.Errorf("tampered audit: exit %d, %+v\n%s", code, a, errOut)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"budget", "audit", "--ledger", path}, 2, "give the ledger owner's key"},
		{[]string{"budget", "audit", "--ledger", path, "--key", "xyz"}, 2, "not a 32-byte Ed25519 public key"},
		{[]string{"budget", "audit", "--ledger", "/nonexistent/l.jsonl", "--key", pub}, 1, "reading ledger"},
		{[]string{"budget", "show", "--ledger", "/nonexistent/l.jsonl"}, 1, "reading ledger"},
		{[]string{"budget", "recover", "--ledger", path}, 1, "not torn"},
		{[]string{"budget", "frob"}, 2, "unknown budget command"},
	} {
		code, out, errOut := runCLI(tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("%v: exit %d, want %d; output lacks %q:\n%s%s", tc.args, code, tc.code, tc.want, out, errOut)
		}
	}
}

func TestBudgetTornAndRecover(t *testing.T) {
	path, pub := writeLedger(t, 2)
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"seq":3,"ti`)
	f.Close()
	code, _, errOut := runCLI("budget", "audit", "--ledger", path, "--key", pub)
	if code != 1 || !strings.Contains(errOut, "incomplete line") {
		t.Errorf("torn audit: exit %d\n%s", code, errOut)
	}
	code, out, errOut := runCLI("budget", "show", "--ledger", path)
	if code != 1 || strings.Count(out, "discrete_gaussian") != 2 || !strings.Contains(errOut, "budget recover") {
		t.Errorf("torn show: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := runCLI("budget", "recover", "--ledger", path); code != 0 || !strings.Contains(out, "kept 3") {
		t.Errorf("recover: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := runCLI("budget", "audit", "--ledger", path, "--key", pub); code != 0 {
		t.Errorf("audit after recover: exit %d\n%s", code, errOut)
	}
}

// TestDPPlanClientLevelBothEpsilons checks the two ε of the dp plan example
// at client level: the hospital's (zero-out neighbours, sensitivity clip)
// and the per-patient one (sensitivity 2·clip), each against
// dp.PatientEpsilon / dp.Epsilon and against an independent computation —
// the Gaussian's RDP curve rounds·α·s²/(2z²) (Mironov 2017, Prop. 7),
// converted by Canonne–Kamath–Steinke 2020, Prop. 12, minimised over a fine
// grid of orders written out here — and that the text output shows both
// with their relations in words.
func TestDPPlanClientLevelBothEpsilons(t *testing.T) {
	args := []string{"dp", "plan", "--epsilon", "4", "--delta", "1e-6", "--rounds", "50", "--sites", "8", "--threshold", "6", "--colluders", "1", "--clip", "1"}
	code, out, errOut := runCLI(append(args, "--json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var p planJSON
	if err := json.Unmarshal([]byte(out), &p); err != nil || p.Preflight == nil {
		t.Fatalf("%v\n%s", err, out)
	}
	ev := dp.Event{Mechanism: dp.DiscreteGaussianMechanism, NoiseMultiplier: p.EffectiveMultiple, SamplingRate: 1, Count: 50}
	want, err := dp.PatientEpsilon(dp.RDP, 1e-6, ev)
	if err != nil || p.PatientEpsilon != want {
		t.Errorf("patient_epsilon %v, dp.PatientEpsilon gives %v (%v)", p.PatientEpsilon, want, err)
	}
	independent := func(sensitivity float64) float64 {
		best := math.Inf(1)
		for a := 1.01; a < 2000; a *= 1.001 {
			rdp := 50 * a * sensitivity * sensitivity / (2 * p.EffectiveMultiple * p.EffectiveMultiple)
			best = math.Min(best, rdp+math.Log((a-1)/a)-(math.Log(1e-6)+math.Log(a))/(a-1))
		}
		return best
	}
	for _, c := range []struct {
		name      string
		got, want float64
		known     string
	}{
		{"hospital", p.AchievedEpsilon, independent(1), "4.00"},
		{"patient", p.PatientEpsilon, independent(2), "8.82"},
	} {
		if math.Abs(c.got-c.want) > 0.005*c.want || fmt.Sprintf("%.2f", c.got) != c.known {
			t.Errorf("%s ε %v: independent %v, documented %s", c.name, c.got, c.want, c.known)
		}
	}
	if p.HospitalRelation != dp.ClientRelationText || p.PatientRelation != dp.PatientRelationText {
		t.Errorf("relations %q / %q", p.HospitalRelation, p.PatientRelation)
	}
	code, out, errOut = runCLI(args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		fmt.Sprintf("per hospital   ε = %.6g  — %s", p.AchievedEpsilon, dp.ClientRelationText),
		fmt.Sprintf("per patient    ε = %.6g  — %s", p.PatientEpsilon, dp.PatientRelationText),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dp plan output lacks %q:\n%s", want, out)
		}
	}
}
