package dp

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32))
}

// clientCharge is a client-level training charge whose plan gives a
// multiplier within 1e-5 of z (as dp/ledgertest's, which this package's
// own tests cannot import).
func clientCharge(round int, z float64) Charge {
	c, err := PlanCharge("run-1", round, ClientLevel, NoisePlan{Release: TrainingRelease, Threshold: 3, MinCohort: 3, Clients: 3,
		Gamma: 1.0 / (1 << 24), Dim: 10, RingBits: 62, SiteSigma: z / math.Sqrt(3), Clip: 1})
	if err != nil {
		panic(err)
	}
	c.Survivors = 9
	return c
}

// newTestLedger writes a ledger with n charges and returns its path.
func newTestLedger(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	l, err := CreateLedger(path, testKey(1), LedgerOptions{Accountant: RDP, Delta: 1e-5, Cap: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for r := 1; r <= n; r++ {
		if _, err := l.Charge(clientCharge(r, 4)); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func TestLedgerRoundTrip(t *testing.T) {
	path := newTestLedger(t, 5)
	a, err := AuditLedger(path, testKey(1).Public().(ed25519.PublicKey))
	if err != nil || !a.OK || a.Entries != 6 {
		t.Fatalf("audit %+v, %v", a, err)
	}
	z4 := clientCharge(1, 4).Event.NoiseMultiplier // as planned: 4 to within 1e-5
	want, _ := Epsilon(RDP, AddRemove, 1e-5, Event{DiscreteGaussianMechanism, z4, 1, 5})
	if a.Epsilon != want {
		t.Errorf("audited ε %v, want %v", a.Epsilon, want)
	}
	// Reopen and keep charging: the chain continues.
	l, err := OpenLedger(path, testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	if l.Spent() != want {
		t.Errorf("reopened ledger spent %v, want %v", l.Spent(), want)
	}
	e, err := l.Charge(clientCharge(6, 4))
	if err != nil || e.Seq != 6 {
		t.Fatalf("charge after reopen: %+v, %v", e, err)
	}
	l.Close()
	if a, err := AuditLedger(path, testKey(1).Public().(ed25519.PublicKey)); err != nil || a.Entries != 7 {
		t.Errorf("audit after reopen: %+v, %v", a, err)
	}
	if _, err := OpenLedger(path, testKey(2)); !errors.Is(err, ErrCorruptLedger) {
		t.Errorf("opened with another key: %v", err)
	}
}

func TestLedgerBudgetExceeded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.jsonl")
	l, err := CreateLedger(path, testKey(1), LedgerOptions{Accountant: RDP, Delta: 1e-5, Cap: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var charged int
	for r := 1; r <= 100; r++ {
		before, _ := os.ReadFile(path)
		_, err := l.Charge(clientCharge(r, 4))
		if errors.Is(err, ErrBudgetExceeded) {
			after, _ := os.ReadFile(path)
			if !bytes.Equal(before, after) {
				t.Fatal("a refused charge changed the ledger")
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		charged++
	}
	if charged == 0 || charged == 100 {
		t.Fatalf("%d charges before the cap", charged)
	}
	if l.Spent() > 3 {
		t.Errorf("spent %v above the cap", l.Spent())
	}
	// Invalid charges are refused too.
	bad := clientCharge(1, 4)
	bad.Level = "patient"
	if _, err := l.Charge(bad); err == nil {
		t.Error("bad level accepted")
	}
	bad = clientCharge(1, 4)
	bad.Event.NoiseMultiplier = -1
	if _, err := l.Charge(bad); err == nil {
		t.Error("negative multiplier accepted")
	}
}

func TestLedgerTamperingDetected(t *testing.T) {
	pub := testKey(1).Public().(ed25519.PublicKey)
	for _, c := range []struct {
		name    string
		edit    func([]string) []string
		wantBad int
	}{
		{"epsilon lowered", func(l []string) []string {
			l[3] = strings.Replace(l[3], `"epsilon":`, `"epsilon":0.0`, 1)
			return l
		}, 3},
		{"noise raised", func(l []string) []string {
			l[2] = strings.Replace(l[2], `"noise_multiplier":3.9`, `"noise_multiplier":39`, 1)
			return l
		}, 2},
		{"entry removed", func(l []string) []string { return append(l[:2], l[3:]...) }, 2},
		{"entries swapped", func(l []string) []string { l[1], l[2] = l[2], l[1]; return l }, 1},
		{"signature from another entry", func(l []string) []string {
			s1 := l[1][strings.Index(l[1], `"sig":`):]
			s2 := l[2][strings.Index(l[2], `"sig":`):]
			l[2] = strings.Replace(l[2], s2, s1, 1)
			return l
		}, 2},
		{"unknown field", func(l []string) []string {
			l[4] = strings.Replace(l[4], `{"seq"`, `{"note":"x","seq"`, 1)
			return l
		}, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := newTestLedger(t, 5)
			data, _ := os.ReadFile(path)
			lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
			lines = c.edit(lines)
			os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
			a, err := AuditLedger(path, pub)
			if !errors.Is(err, ErrCorruptLedger) || a.OK {
				t.Fatalf("audit of a tampered ledger: %+v, %v", a, err)
			}
			if a.FirstBad != c.wantBad {
				t.Errorf("first bad entry %d, want %d (%v)", a.FirstBad, c.wantBad, err)
			}
		})
	}
	// Another owner's key.
	path := newTestLedger(t, 2)
	if _, err := AuditLedger(path, testKey(9).Public().(ed25519.PublicKey)); !errors.Is(err, ErrCorruptLedger) {
		t.Errorf("audit with another key: %v", err)
	}
}

func TestLedgerTornLine(t *testing.T) {
	path := newTestLedger(t, 3)
	data, _ := os.ReadFile(path)
	// A crash mid-write leaves a prefix of the next line.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"seq":4,"time":"2026-`)
	f.Close()
	pub := testKey(1).Public().(ed25519.PublicKey)
	if _, err := AuditLedger(path, pub); !errors.Is(err, ErrTornLedger) {
		t.Fatalf("audit of a torn ledger: %v", err)
	}
	if _, err := OpenLedger(path, testKey(1)); !errors.Is(err, ErrTornLedger) {
		t.Fatalf("open of a torn ledger: %v", err)
	}
	n, err := RecoverLedger(path)
	if err != nil || n != 4 {
		t.Fatalf("recover: %d entries, %v", n, err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(after, data) {
		t.Error("recovery changed the complete lines")
	}
	frag, _ := os.ReadFile(path + ".torn")
	if string(frag) != `{"seq":4,"time":"2026-` {
		t.Errorf("fragment %q", frag)
	}
	if _, err := AuditLedger(path, pub); err != nil {
		t.Errorf("audit after recovery: %v", err)
	}
	if _, err := RecoverLedger(path); err == nil {
		t.Error("recovered an intact ledger")
	}
}

func TestLedgerBadFiles(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"empty":    "",
		"garbage":  "not json\n",
		"no-open":  `{"seq":0,"time":"","kind":"charge","accountant":"rdp","neighbouring":"add-remove","delta":1e-5,"epsilon_cap":1,"epsilon":0,"prev":""}` + "\n",
		"trailing": `{"seq":0} {"seq":1}` + "\n",
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		if _, err := AuditLedger(p, testKey(1).Public().(ed25519.PublicKey)); !errors.Is(err, ErrCorruptLedger) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := AuditLedger(filepath.Join(dir, "missing"), testKey(1).Public().(ed25519.PublicKey)); err == nil {
		t.Error("missing file audited")
	}
	if _, err := CreateLedger(filepath.Join(dir, "x"), testKey(1), LedgerOptions{Accountant: "moments", Delta: 1e-5, Cap: 1}); err == nil {
		t.Error("unknown accountant accepted")
	}
	p := newTestLedger(t, 0)
	if _, err := CreateLedger(p, testKey(1), LedgerOptions{Accountant: RDP, Delta: 1e-5, Cap: 1}); err == nil {
		t.Error("CreateLedger overwrote an existing ledger")
	}
	for _, s := range []string{"", "abc", strings.Repeat("a", 44)} {
		if _, err := ParsePublicKey(s); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted", s)
		}
	}
}

// FuzzReadLedger: arbitrary bytes must give entries or an error, never a
// panic, and verification of whatever parses must not panic either.
func FuzzReadLedger(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "ledger", "*.jsonl"))
	if len(seeds) == 0 {
		f.Fatal("no seed ledgers in testdata/ledger")
	}
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	pub := testKey(1).Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := parseLedger(data)
		if err == nil && len(entries) == 0 {
			t.Fatal("no entries and no error")
		}
		if err == nil {
			verifyEntries(entries, pub)
		}
	})
}

// TestLedgerSpentPatient: a client-level ledger reports the per-patient ε
// of everything it recorded, the ε of dp.PatientEpsilon over its charges.
func TestLedgerSpentPatient(t *testing.T) {
	path := newTestLedger(t, 3)
	l, err := OpenLedger(path, testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ev := clientCharge(1, 4).Event
	ev.Count = 3
	want, _ := PatientEpsilon(RDP, 1e-5, ev)
	if got := l.SpentPatient(); got != want || !(got > l.Spent()) {
		t.Errorf("per-patient ε %v (hospital %v), want %v", got, l.Spent(), want)
	}
}
