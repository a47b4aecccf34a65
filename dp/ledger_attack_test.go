package dp

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// cutLastLines removes the last n lines of the ledger at path.
func cutLastLines(t *testing.T, path string, n int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	lines = lines[:len(lines)-1] // the empty string after the final newline
	if err := os.WriteFile(path, []byte(strings.Join(lines[:len(lines)-n], "")), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestAttackLedgerTruncated: cutting the last charges off a ledger must
// not pass the audit, and OpenLedger must not resume from the lower ε.
func TestAttackLedgerTruncated(t *testing.T) {
	path := newTestLedger(t, 4)
	pub := testKey(1).Public().(ed25519.PublicKey)
	full, err := AuditLedger(path, pub)
	if err != nil {
		t.Fatal(err)
	}
	cutLastLines(t, path, 2)
	if a, err := AuditLedger(path, pub); !errors.Is(err, ErrLedgerTruncated) || a.OK {
		t.Errorf("audit of a ledger cut by two entries: ok=%v, %v", a.OK, err)
	}
	l, err := OpenLedger(path, testKey(1))
	if !errors.Is(err, ErrLedgerTruncated) {
		if err == nil {
			t.Errorf("OpenLedger resumed a cut ledger at ε = %v (it had spent %v)", l.Spent(), full.Epsilon)
			l.Close()
		} else {
			t.Errorf("OpenLedger of a cut ledger: %v, want ErrLedgerTruncated", err)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestAttackLedgerCutAndCheckpointKept: every cut, down to the open entry,
// is refused by OpenLedger while the checkpoint beside the ledger stays:
// the budget never comes back.
func TestAttackLedgerCutAndCheckpointKept(t *testing.T) {
	for cut := 1; cut <= 3; cut++ {
		path := newTestLedger(t, 3)
		cutLastLines(t, path, cut)
		if l, err := OpenLedger(path, testKey(1)); !errors.Is(err, ErrLedgerTruncated) {
			t.Errorf("cut by %d: OpenLedger gave %v", cut, err)
			if err == nil {
				l.Close()
			}
		}
	}
	// Deleting the checkpoint too is refused while charges remain.
	path := newTestLedger(t, 3)
	cutLastLines(t, path, 1)
	os.Remove(path + CheckpointSuffix)
	if _, err := OpenLedger(path, testKey(1)); !errors.Is(err, ErrCheckpoint) {
		t.Errorf("cut with the checkpoint deleted: %v", err)
	}
	// A ledger deleted beside its checkpoint is not created afresh.
	path = newTestLedger(t, 3)
	os.Remove(path)
	if _, err := CreateLedger(path, testKey(1), LedgerOptions{Accountant: RDP, Delta: 1e-5, Cap: 8}); !errors.Is(err, ErrLedgerTruncated) {
		t.Errorf("CreateLedger over a deleted ledger's checkpoint: %v", err)
	}
}

// TestAttackLedgerForkedEntry: an entry rewritten and re-signed by the
// owner's key verifies on its own; the checkpoint beside it catches it.
func TestAttackLedgerForkedEntry(t *testing.T) {
	path := newTestLedger(t, 3)
	rewriteEntry(t, path, 2, func(e *Entry) { e.Survivors = 10 })
	pub := testKey(1).Public().(ed25519.PublicKey)
	if a, err := AuditLedger(path, pub); !errors.Is(err, ErrLedgerForked) || a.OK {
		t.Errorf("audit of a rewritten entry: %v", err)
	}
	if _, err := OpenLedger(path, testKey(1)); !errors.Is(err, ErrLedgerForked) {
		t.Errorf("open of a rewritten entry: %v", err)
	}
}

// rewriteEntry edits entry i of the ledger and re-signs it with the
// owner's key (testKey(1)), as an owner rewriting history would.
func rewriteEntry(t *testing.T, path string, i int, edit func(*Entry)) {
	t.Helper()
	es, err := ReadLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	edit(&es[i])
	es[i].Sig = ""
	es[i].Sig = base64Sig(testKey(1), es[i].signed())
	var out []byte
	for j := range es {
		out = append(append(out, es[j].line()...), '\n')
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

func base64Sig(key ed25519.PrivateKey, msg []byte) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(key, msg))
}

// TestLedgerCrashBeforeCheckpoint: a crash after an append is on disk and
// before its checkpoint is written leaves the checkpoint one entry behind;
// OpenLedger verifies the entries and signs the checkpoint anew, keeping
// the charge.
func TestLedgerCrashBeforeCheckpoint(t *testing.T) {
	path := newTestLedger(t, 2)
	copyFile(t, path+CheckpointSuffix, path+".old")
	l, err := OpenLedger(path, testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Charge(clientCharge(3, 4)); err != nil {
		t.Fatal(err)
	}
	spent := l.Spent()
	l.Close()
	copyFile(t, path+".old", path+CheckpointSuffix) // the checkpoint write never happened
	l, err = OpenLedger(path, testKey(1))
	if err != nil {
		t.Fatalf("open after a crash before the checkpoint: %v", err)
	}
	defer l.Close()
	if l.Spent() != spent || l.Size() != 4 {
		t.Errorf("recovered ledger: ε %v (want %v), %d entries", l.Spent(), spent, l.Size())
	}
	pub := testKey(1).Public().(ed25519.PublicKey)
	cp, err := ReadCheckpoint(path+CheckpointSuffix, pub, nil)
	if err != nil || cp.Size != 4 || !bytes.Equal(cp.Note, l.Checkpoint()) {
		t.Fatalf("re-signed checkpoint: %+v, %v", cp, err)
	}
	if _, err := AuditLedger(path, pub); err != nil {
		t.Errorf("audit after recovery: %v", err)
	}
	// A crash inside CreateLedger (the open entry written, no checkpoint).
	p2 := filepath.Join(t.TempDir(), "new.jsonl")
	l2, err := CreateLedger(p2, testKey(1), LedgerOptions{Accountant: RDP, Delta: 1e-5, Cap: 8})
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
	os.Remove(p2 + CheckpointSuffix)
	if l2, err = OpenLedger(p2, testKey(1)); err != nil {
		t.Fatalf("open of a new ledger without its checkpoint: %v", err)
	}
	l2.Close()
	if _, err := ReadCheckpoint(p2+CheckpointSuffix, pub, nil); err != nil {
		t.Errorf("no checkpoint written on open: %v", err)
	}
}

// TestLedgerCheckpointAPI: every append leaves a checkpoint of the whole
// ledger beside it, and ProveFrom proves each earlier one extended.
func TestLedgerCheckpointAPI(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.jsonl")
	l, err := CreateLedger(path, testKey(1), LedgerOptions{Accountant: RDP, Delta: 1e-5, Cap: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pub := testKey(1).Public().(ed25519.PublicKey)
	var seen []*Checkpoint
	for r := 1; r <= 5; r++ {
		cp, err := OpenCheckpoint(l.Checkpoint(), pub, nil)
		if err != nil || cp.Size != l.Size() || cp.Size != int64(r) {
			t.Fatalf("checkpoint after %d entries: %+v, %v", r, cp, err)
		}
		onDisk, err := ReadCheckpoint(path+CheckpointSuffix, pub, nil)
		if err != nil || !bytes.Equal(onDisk.Note, cp.Note) {
			t.Fatalf("checkpoint on disk differs: %v", err)
		}
		seen = append(seen, cp)
		if _, err := l.Charge(clientCharge(r, 4)); err != nil {
			t.Fatal(err)
		}
	}
	now, _ := OpenCheckpoint(l.Checkpoint(), pub, nil)
	for _, old := range seen {
		proof, err := l.ProveFrom(old.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckExtends(old, now, proof); err != nil {
			t.Errorf("from %d entries: %v", old.Size, err)
		}
	}
	if _, err := l.ProveFrom(l.Size() + 1); err == nil {
		t.Error("a proof from beyond the ledger")
	}
	if _, err := l.ProveFrom(-1); err == nil {
		t.Error("a proof from a negative size")
	}
	// Bad checkpoint files give errors naming the problem.
	dir := t.TempDir()
	for name, content := range map[string][]byte{
		"empty":   nil,
		"garbage": []byte("not a note\n"),
		"huge":    bytes.Repeat([]byte("a"), maxCheckpoint+10),
		"other":   mustSign(t, testKey(2), 3),
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, content, 0o600)
		if _, err := ReadCheckpoint(p, pub, nil); !errors.Is(err, ErrCheckpoint) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := ReadCheckpoint(filepath.Join(dir, "missing"), pub, nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	if _, err := ReadCheckpoint(dir, pub, nil); !errors.Is(err, ErrCheckpoint) {
		t.Errorf("a directory: %v", err)
	}
}

func mustSign(t *testing.T, key ed25519.PrivateKey, n int64) []byte {
	t.Helper()
	b, err := SignCheckpoint(key, n, tlog.Hash{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// resignBeside signs a checkpoint of the ledger at path as it now stands,
// with the owner's key, as an owner covering a rewrite would.
func resignBeside(t *testing.T, path string) {
	t.Helper()
	es, err := ReadLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	root, err := TreeRoot(es)
	if err != nil {
		t.Fatal(err)
	}
	note, err := SignCheckpoint(testKey(1), int64(len(es)), root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+CheckpointSuffix, note, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestAttackLedgerRolledBack: a ledger restored together with its
// checkpoint from an earlier copy is consistent in itself; only a
// checkpoint kept elsewhere catches it, and the audit says so when none
// is given.
func TestAttackLedgerRolledBack(t *testing.T) {
	path := newTestLedger(t, 2)
	pub := testKey(1).Public().(ed25519.PublicKey)
	copyFile(t, path, path+".bak")
	copyFile(t, path+CheckpointSuffix, path+".cp.bak")
	l, err := OpenLedger(path, testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	for r := 3; r <= 4; r++ {
		if _, err := l.Charge(clientCharge(r, 4)); err != nil {
			t.Fatal(err)
		}
	}
	witnessed := l.Checkpoint() // a copy kept by someone else
	l.Close()
	copyFile(t, path+".bak", path)
	copyFile(t, path+".cp.bak", path+CheckpointSuffix)

	a, err := AuditLedger(path, pub)
	if err != nil || a.External != 0 || a.Limit != NoExternalCheckpoint {
		t.Errorf("without an external checkpoint: %v, external %d, limit %q", err, a.External, a.Limit)
	}
	a, err = AuditLedger(path, pub, AuditOptions{Checkpoints: [][]byte{witnessed}})
	if !errors.Is(err, ErrLedgerTruncated) || a.OK || !strings.Contains(err.Error(), "given #1") {
		t.Fatalf("audit of a rolled-back ledger with a later checkpoint: %v", err)
	}
	last := a.Checkpoints[len(a.Checkpoints)-1]
	if last.OK || !last.External || last.Size != 5 || last.Problem == "" {
		t.Errorf("the external checkpoint's line: %+v", last)
	}
	// The same checkpoint from a file.
	f := filepath.Join(t.TempDir(), "kept.checkpoint")
	os.WriteFile(f, witnessed, 0o600)
	if _, err := AuditLedger(path, pub, AuditOptions{CheckpointFiles: []string{f}}); !errors.Is(err, ErrLedgerTruncated) {
		t.Errorf("with the checkpoint in a file: %v", err)
	}
	// The genuine ledger passes with it, and counts it.
	path2 := newTestLedger(t, 2)
	l2, _ := OpenLedger(path2, testKey(1))
	kept := l2.Checkpoint()
	l2.Charge(clientCharge(3, 4))
	l2.Close()
	a, err = AuditLedger(path2, pub, AuditOptions{Checkpoints: [][]byte{kept}})
	if err != nil || a.External != 1 || a.Limit != "" || len(a.Checkpoints) != 2 {
		t.Errorf("genuine ledger with an older external checkpoint: %+v, %v", a, err)
	}
}

// TestAttackLedgerForkedAndResigned: an owner rewrites an entry, re-signs
// it and the checkpoint beside the ledger; a checkpoint a witness kept
// catches the fork.
func TestAttackLedgerForkedAndResigned(t *testing.T) {
	path := newTestLedger(t, 3)
	pub := testKey(1).Public().(ed25519.PublicKey)
	witnessed, _ := os.ReadFile(path + CheckpointSuffix)
	rewriteEntry(t, path, 1, func(e *Entry) { e.RunID = "run-0" })
	resignBeside(t, path)
	if _, err := AuditLedger(path, pub); err != nil {
		t.Fatalf("a consistent rewrite fails the audit without a witness: %v", err)
	}
	if _, err := AuditLedger(path, pub, AuditOptions{Checkpoints: [][]byte{witnessed}}); !errors.Is(err, ErrLedgerForked) {
		t.Errorf("audit of a forked ledger with a witnessed checkpoint: %v", err)
	}
}

// TestAuditWitnessDirectory: checkpoints in <dir>/witness are checked,
// their cosigners listed, and a bad one fails the audit naming its file.
func TestAuditWitnessDirectory(t *testing.T) {
	path := newTestLedger(t, 2)
	pub := testKey(1).Public().(ed25519.PublicKey)
	wdir := filepath.Join(filepath.Dir(path), WitnessDir)
	os.Mkdir(wdir, 0o700)
	note, _ := os.ReadFile(path + CheckpointSuffix)
	wkey := testKey(7)
	cosigned, err := Cosign(note, pub, "site-1", wkey)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(wdir, "site-1"+CheckpointSuffix), cosigned, 0o600)
	w := map[string]ed25519.PublicKey{"site-1": wkey.Public().(ed25519.PublicKey)}
	a, err := AuditLedger(path, pub, AuditOptions{Witnesses: w})
	if err != nil || len(a.Checkpoints) != 2 || a.External != 0 {
		t.Fatalf("audit with a witness copy: %+v, %v", a, err)
	}
	if c := a.Checkpoints[1]; !c.OK || len(c.Cosigners) != 1 || c.Cosigners[0] != "site-1" {
		t.Errorf("witness copy: %+v", c)
	}
	os.WriteFile(filepath.Join(wdir, "bad"+CheckpointSuffix), []byte("garbage\n"), 0o600)
	if _, err := AuditLedger(path, pub); !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "bad"+CheckpointSuffix) {
		t.Errorf("a bad witness copy: %v", err)
	}
}

// testPlan is a small training round of distributed noise.
func testPlan(siteSigma float64) NoisePlan {
	return NoisePlan{Release: TrainingRelease, Threshold: 4, Colluders: 1, MinCohort: 4, Clients: 6,
		Gamma: 0x1p-16, Dim: 100, RingBits: 32, SiteSigma: siteSigma, Clip: 1}
}

// appendUnchecked appends e to l as its owner would, bypassing Charge's
// checks: what a writer with its own idea of σ could put in a ledger.
func appendUnchecked(t *testing.T, l *Ledger, e Entry) {
	t.Helper()
	e.Seq, e.Time, e.Kind = l.last.Seq+1, now(), "charge"
	e.Accountant, e.Relation, e.Delta, e.Cap = l.open.Accountant, l.open.Relation, l.open.Delta, l.open.Cap
	events := []Event{e.event()}
	for i := range l.charges {
		events = append(events, l.charges[i].event())
	}
	rel, _ := ParseNeighbouring(l.open.Relation)
	eps, err := Epsilon(l.open.Accountant, rel, l.open.Delta, mergeEvents(events)...)
	if err != nil {
		t.Fatal(err)
	}
	e.EpsilonRound, _ = Epsilon(l.open.Accountant, rel, l.open.Delta, e.event())
	e.Epsilon = eps
	if err := l.append(&e); err != nil {
		t.Fatal(err)
	}
	l.charges = append(l.charges, e)
	l.last, l.spent = e, eps
	if err := l.writeCheckpoint(); err != nil {
		t.Fatal(err)
	}
}

// TestAttackPlanContradictsMultiplier: a charge that records a larger
// multiplier than its noise plan gives (σ read as σ·√m where the plan
// says one site's σ) is consistent in its ε, signed and checkpointed;
// the audit re-derives the multiplier and names the entry and both
// values. Charge refuses to write such a charge.
func TestAttackPlanContradictsMultiplier(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.jsonl")
	l, err := CreateLedger(path, testKey(1), LedgerOptions{Accountant: RDP, Delta: 1e-5, Cap: 50})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := testPlan(2)
	ch, err := PlanCharge("run", 1, ClientLevel, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Charge(ch); err != nil {
		t.Fatal(err)
	}
	z := ch.Event.NoiseMultiplier
	bad := ch
	bad.Event.NoiseMultiplier = z * math.Sqrt(3)
	if _, err := l.Charge(bad); err == nil || !strings.Contains(err.Error(), "its noise plan gives") {
		t.Errorf("Charge wrote a multiplier its plan does not give: %v", err)
	}
	e := Entry{RunID: "run", Round: 2, Level: ClientLevel, Protects: ClientRelationText,
		Mechanism: string(DiscreteGaussianMechanism), NoiseMultiplier: z * math.Sqrt(3), SamplingRate: 1, Steps: 1,
		Release: p.Release, Threshold: p.Threshold, Colluders: p.Colluders, MinCohort: p.MinCohort, Participants: p.Clients,
		GridStep: p.Gamma, Dim: p.Dim, RingBits: p.RingBits, SiteSigma: p.SiteSigma, Clip: p.Clip}
	appendUnchecked(t, l, e)
	pub := testKey(1).Public().(ed25519.PublicKey)
	a, err := AuditLedger(path, pub)
	if !errors.Is(err, ErrCorruptLedger) || a.FirstBad != 2 {
		t.Fatalf("audit of a charge its plan contradicts: first bad %d, %v", a.FirstBad, err)
	}
	for _, want := range []string{"entry 2", strconv.FormatFloat(z*math.Sqrt(3), 'g', 12, 64), strconv.FormatFloat(z, 'g', 12, 64)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q: %v", want, err)
		}
	}
}

// TestPlanChargeRecordsThePlan: the entry records every field of the
// plan, the relation in words, and re-derives its multiplier.
func TestPlanChargeRecordsThePlan(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.jsonl")
	l, err := CreateLedger(path, testKey(1), LedgerOptions{Accountant: RDP, Delta: 1e-5, Cap: 50})
	if err != nil {
		t.Fatal(err)
	}
	p := testPlan(3)
	ch, err := PlanCharge("run", 1, RecordLevel, p)
	if err != nil {
		t.Fatal(err)
	}
	ch.Survivors = 5
	e, err := l.Charge(ch)
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got := e.plan(); got == nil || *got != p || e.Survivors != 5 || e.Protects != RecordRelationText {
		t.Errorf("entry %+v does not record plan %+v", e, p)
	}
	d, _ := Distribute(DistributedConfig{Sigma: 3 * math.Sqrt(3), Clip: 1, Clients: 6, Threshold: 4, Colluders: 1, Dim: 100, Gamma: 0x1p-16})
	if e.NoiseMultiplier != d.NoiseMultiplier {
		t.Errorf("multiplier %v, Distribute gives %v", e.NoiseMultiplier, d.NoiseMultiplier)
	}
	a, err := AuditLedger(path, testKey(1).Public().(ed25519.PublicKey))
	if err != nil || a.Unplanned != 0 {
		t.Errorf("audit: %+v, %v", a, err)
	}
	for _, bad := range []NoisePlan{
		{},
		func() NoisePlan { q := p; q.Release = "training2"; return q }(),
		func() NoisePlan { q := p; q.Colluders = 4; return q }(),
		func() NoisePlan { q := p; q.SiteSigma = math.NaN(); return q }(),
		func() NoisePlan { q := p; q.Gamma = 0.3; return q }(),
		func() NoisePlan { q := p; q.RingBits = 65; return q }(),
	} {
		if _, err := PlanCharge("run", 1, RecordLevel, bad); err == nil {
			t.Errorf("PlanCharge accepted %+v", bad)
		}
	}
}

// TestLedgerOutcomeMarks: a charge is marked opened or unopened once, at
// no cost; marks that name no charge, another round, or move ε fail the
// audit.
func TestLedgerOutcomeMarks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.jsonl")
	l, err := CreateLedger(path, testKey(1), LedgerOptions{Accountant: RDP, Delta: 1e-5, Cap: 50})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for r := 1; r <= 2; r++ {
		ch, _ := PlanCharge("run", r, ClientLevel, testPlan(2))
		if _, err := l.Charge(ch); err != nil {
			t.Fatal(err)
		}
	}
	spent := l.Spent()
	e, err := l.Mark(2, Unopened)
	if err != nil || e.Of != 2 || e.Round != 2 || e.Release != TrainingRelease || e.Epsilon != spent || l.Spent() != spent {
		t.Fatalf("mark: %+v, %v", e, err)
	}
	if _, err := l.Mark(1, Opened); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		seq int64
		o   Outcome
	}{{2, Opened}, {3, Unopened}, {0, Opened}, {9, Opened}, {1, "maybe"}} {
		if _, err := l.Mark(bad.seq, bad.o); err == nil {
			t.Errorf("Mark(%d, %q) accepted", bad.seq, bad.o)
		}
	}
	// A charge after marks still composes every charge, and only charges.
	ch, _ := PlanCharge("run", 3, ClientLevel, testPlan(2))
	if _, err := l.Charge(ch); err != nil {
		t.Fatal(err)
	}
	pub := testKey(1).Public().(ed25519.PublicKey)
	a, err := AuditLedger(path, pub)
	if err != nil || a.Charges != 3 || a.Entries != 6 || a.Epsilon != l.Spent() {
		t.Fatalf("audit: %+v, %v", a, err)
	}
	want, _ := Epsilon(RDP, AddRemove, 1e-5, Event{DiscreteGaussianMechanism, ch.Event.NoiseMultiplier, 1, 3})
	if math.Abs(l.Spent()-want) > 1e-12 {
		t.Errorf("spent %v after 3 charges and 2 marks, want %v", l.Spent(), want)
	}
	// Forged marks, signed by the owner: each fails the audit.
	for name, edit := range map[string]func(*Entry){
		"names an outcome":   func(e *Entry) { e.Of = 3 },
		"names no entry":     func(e *Entry) { e.Of = 40 },
		"another round":      func(e *Entry) { e.Round = 7 },
		"lowers ε":           func(e *Entry) { e.Epsilon /= 2 },
		"marks twice":        func(e *Entry) { e.Of, e.Round = 2, 2 },
		"carries a cost":     func(e *Entry) { e.NoiseMultiplier = 1 },
		"unknown outcome":    func(e *Entry) { e.Outcome = "half" },
		"charge with a mark": func(e *Entry) { e.Kind = "charge" },
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "l.jsonl")
			copyFile(t, path, p)
			copyFile(t, path+CheckpointSuffix, p+CheckpointSuffix)
			rewriteEntry(t, p, 4, edit) // entry 4 marks the charge at entry 1
			if _, err := AuditLedger(p, pub); !errors.Is(err, ErrCorruptLedger) || !strings.Contains(err.Error(), "entry 4") {
				t.Errorf("audit: %v", err)
			}
		})
	}
}

// TestAttackPatientEpsilonLowered: client-level charges record the
// cumulative per-patient ε, which the audit recomputes; one lowered and
// re-signed by the owner fails, naming the entry.
func TestAttackPatientEpsilonLowered(t *testing.T) {
	path := newTestLedger(t, 3)
	pub := testKey(1).Public().(ed25519.PublicKey)
	es, _ := ReadLedger(path)
	want, _ := PatientEpsilon(RDP, 1e-5, Event{DiscreteGaussianMechanism, clientCharge(1, 4).Event.NoiseMultiplier, 1, 3})
	if es[3].PatientEpsilon != want || es[3].PatientEpsilon <= es[3].Epsilon {
		t.Fatalf("per-patient ε %v (hospital ε %v), want %v", es[3].PatientEpsilon, es[3].Epsilon, want)
	}
	a, err := AuditLedger(path, pub)
	if err != nil || a.PatientEpsilon != want || a.Unplanned != 0 {
		t.Fatalf("audit: %+v, %v", a, err)
	}
	rewriteEntry(t, path, 2, func(e *Entry) { e.PatientEpsilon = e.Epsilon })
	resignBeside(t, path)
	if _, err := AuditLedger(path, pub); !errors.Is(err, ErrCorruptLedger) || !strings.Contains(err.Error(), "entry 2") || !strings.Contains(err.Error(), "per-patient") {
		t.Errorf("audit of a lowered per-patient ε: %v", err)
	}
	// Record-level charges carry none.
	p2 := filepath.Join(t.TempDir(), "r.jsonl")
	l, _ := CreateLedger(p2, testKey(1), LedgerOptions{Accountant: RDP, Delta: 1e-5, Cap: 50})
	ch, _ := PlanCharge("run", 1, RecordLevel, testPlan(2))
	e, err := l.Charge(ch)
	l.Close()
	if err != nil || e.PatientEpsilon != 0 {
		t.Errorf("record-level charge: per-patient ε %v, %v", e.PatientEpsilon, err)
	}
}
