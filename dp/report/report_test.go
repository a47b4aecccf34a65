package report

import (
	"bytes"
	"crypto/ed25519"
	"encoding/xml"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/dp"
)

func ledger(t *testing.T, rounds int) Ledger {
	t.Helper()
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	path := filepath.Join(t.TempDir(), "coordinator-ledger.jsonl")
	l, err := dp.CreateLedger(path, key, dp.LedgerOptions{Accountant: dp.RDP, Delta: 1e-5, Cap: 10})
	if err != nil {
		t.Fatal(err)
	}
	for r := 1; r <= rounds; r++ {
		c, err := dp.PlanCharge("r", r, dp.ClientLevel, dp.NoisePlan{Release: dp.TrainingRelease, Threshold: 5, Colluders: 1,
			MinCohort: 5, Clients: 5, Gamma: 1.0 / (1 << 16), Dim: 100, RingBits: 32, SiteSigma: 2, Clip: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Charge(c); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	out, err := Load("Coordinator", path, key.Public().(ed25519.PublicKey))
	if err != nil || !out.OK() {
		t.Fatalf("%v %v", err, out.Err)
	}
	return out
}

func write(t *testing.T, r Report) string {
	t.Helper()
	var b strings.Builder
	if err := Write(&b, r); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(strings.NewReader(b.String()))
	dec.Strict, dec.Entity = true, xml.HTMLEntity
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("not well formed: %v", err)
		}
	}
	return b.String()
}

// TestCheckpointsAndOutcomes: the places kept for checkpoints with their
// witnesses and for per-entry outcomes appear only when filled.
func TestCheckpointsAndOutcomes(t *testing.T) {
	l := ledger(t, 3)
	page := write(t, Report{Main: l, Time: time.Unix(0, 0)})
	if strings.Contains(page, "Checkpoints and witnesses") || strings.Contains(page, "<th>Outcome</th>") {
		t.Error("empty checkpoints or outcomes shown")
	}
	l.Checkpoints = []Checkpoint{{Round: 3, Entries: 4, Cosigners: []string{"Site 1", "Site 2", "<Site 3>"}, Witnesses: 3}}
	l.Outcomes = map[int64]string{1: "opened", 2: "charged, never opened", 3: "opened"}
	page = write(t, Report{Main: l, Time: time.Unix(0, 0)})
	for _, want := range []string{"Checkpoints and witnesses", "cosigned by 3 of 3 witnesses", "&lt;Site 3&gt;", "<th>Outcome</th>", `<td data-field="outcome">charged, never opened</td>`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// A ledger that fails shows no checkpoint.
	l.Err, l.Verified = dp.ErrCorruptLedger, 2
	if page = write(t, Report{Main: l, Time: time.Unix(0, 0)}); strings.Contains(page, "Checkpoints and witnesses") {
		t.Error("checkpoints shown for a ledger that fails")
	}
}

func TestRemaining(t *testing.T) {
	for _, tc := range []struct{ cap, spent, want float64 }{
		{4, 3.9999999955207537, 0}, {3, 3 - 3.4e-9, 0}, {3, 3 + 1e-12, 0}, {10, 3.5, 6.5}, {0.5, 0.25, 0.25},
	} {
		if got := remaining(tc.cap, tc.spent); got != tc.want {
			t.Errorf("remaining(%v, %v) = %v, want %v", tc.cap, tc.spent, got, tc.want)
		}
	}
	if num(remaining(3, 3-3.4e-9)) != "0" {
		t.Error("a spent budget is not shown as 0")
	}
}

func TestEscape(t *testing.T) {
	if got := esc("<a href=\"x\">&'\x00\x1f\xff\uFFFE"); got != "&lt;a href=&#34;x&#34;&gt;&amp;&#39;\uFFFD\uFFFD\uFFFD\uFFFD" {
		t.Errorf("esc = %q", got)
	}
}
