package report

import (
	"bytes"
	"crypto/ed25519"
	"encoding/xml"
	"errors"
	"io"
	"os"
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
	out, err := Load("Coordinator", path, key.Public().(ed25519.PublicKey), Options{})
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

// TestCheckpointsAndOutcomes: outcome marks are not rounds and fill the
// Outcome column; the checkpoints the audit checked are listed with their
// cosigners (escaped), the witness sentence counts the witnesses whose
// cosignature covers the last round, the warning that truncation cannot be
// detected appears exactly when no checkpoint kept elsewhere was given, and
// a failing checkpoint is listed as failing with no sentence.
func TestCheckpointsAndOutcomes(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	pub := key.Public().(ed25519.PublicKey)
	l := ledger(t, 3)
	dl, err := dp.OpenLedger(l.Path, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dl.Mark(2, dp.Unopened); err != nil {
		t.Fatal(err)
	}
	dl.Close()
	w1 := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, 32))
	w2 := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, 32))
	note, err := os.ReadFile(l.Path + dp.CheckpointSuffix)
	if err != nil {
		t.Fatal(err)
	}
	cosigned, err := dp.Cosign(note, pub, "<w1>", w1)
	if err != nil {
		t.Fatal(err)
	}
	kept := filepath.Join(t.TempDir(), "kept.checkpoint")
	os.WriteFile(kept, cosigned, 0o600)
	ws := []Witness{{Name: "<w1>", Key: w1.Public().(ed25519.PublicKey)}, {Name: "w2", Key: w2.Public().(ed25519.PublicKey)}}

	l, err = Load("Coordinator", l.Path, pub, Options{Witnesses: ws})
	if err != nil || !l.OK() {
		t.Fatalf("%v %v", err, l.Err)
	}
	page := write(t, Report{Main: l, Time: time.Unix(0, 0)})
	for _, want := range []string{"Checkpoints and witnesses", "cosigned by 0 of 2 witnesses at round 3", `id="checkpoint-limit"`, "cannot be detected",
		"<th>Outcome</th>", `<td data-field="outcome">not recorded</td>`, `class="bad"><strong>NOT OPENED</strong>`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if n := strings.Count(page, "<tr data-seq="); n != 3 {
		t.Errorf("%d round rows for 3 charges and a mark", n)
	}

	l, err = Load("Coordinator", l.Path, pub, Options{Witnesses: ws, CheckpointFiles: []string{kept}})
	if err != nil || !l.OK() || l.External != 1 || l.Limit != "" || len(l.Checkpoints) != 2 || l.Checkpoints[1].Source != kept || l.Checkpoints[1].Round != 3 {
		t.Fatalf("%v %v %+v", err, l.Err, l)
	}
	page = write(t, Report{Main: l, Time: time.Unix(0, 0)})
	for _, want := range []string{"cosigned by 1 of 2 witnesses at round 3", "&lt;w1&gt;", "elsewhere (given)"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, `id="checkpoint-limit"`) {
		t.Error("the no-external-checkpoint warning is shown though one was given")
	}

	// A checkpoint that does not match: listed as failing, the ledger
	// fails, no sentence and no figures.
	other := filepath.Join(t.TempDir(), "other.checkpoint")
	bad, err := dp.SignCheckpoint(key, 9, [32]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(other, bad, 0o600)
	l, err = Load("Coordinator", l.Path, pub, Options{Witnesses: ws, CheckpointFiles: []string{other}})
	if err != nil || l.OK() || !errors.Is(l.TreeErr, dp.ErrLedgerTruncated) || l.Checkpoints[1].OK {
		t.Fatalf("%v %v %+v", err, l.TreeErr, l.Checkpoints)
	}
	page = write(t, Report{Main: l, Time: time.Unix(0, 0)})
	if strings.Contains(page, `id="cosigned"`) || strings.Contains(page, "<svg") || !strings.Contains(page, `data-problem="truncated"`) || !strings.Contains(page, "FAILS: ") {
		t.Error("a failing checkpoint is not shown as such")
	}
	// Duplicate witness names are refused.
	if _, err := Load("Coordinator", l.Path, pub, Options{Witnesses: append(ws, ws[0])}); err == nil {
		t.Error("a witness named twice accepted")
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
