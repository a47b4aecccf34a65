package protocol

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/protocol/wire"
	"github.com/fl-secure/fl-secure/secagg"
)

// trainingCharges counts the training charges (round > 0) in a ledger.
func trainingCharges(t *testing.T, path string) int {
	t.Helper()
	es, err := dp.ReadLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		if e.Kind == "charge" && e.Round > 0 {
			n++
		}
	}
	return n
}

// A lying coordinator runs round 2 until its sum has opened, stops
// before the final Witness, and restores its ledger and checkpoint to the
// size every site cosigned before the round, to run it again with the
// opening erased from its ledger. Each site cosigned, before it released
// its unmasking shares (secagg) or its decryption share (he), a
// checkpoint holding round 2's charge: every site refuses the rolled-back
// ledger, keeps that checkpoint, and the audit of the rolled-back ledger
// with any site's checkpoint fails.
func TestAttackWitnessRollbackToLastCosigned(t *testing.T) {
	attackRollbackToLastCosigned(t, SecAgg)
}

func TestAttackWitnessRollbackToLastCosignedHE(t *testing.T) {
	attackRollbackToLastCosigned(t, HE)
}

func attackRollbackToLastCosigned(t *testing.T, mode Mode) {
	b := newWitnessBed(t, 3, mode)
	if _, err := b.run(1, nil); err != nil {
		t.Fatal(err)
	}
	old := b.backup() // the size every site has cosigned (after round 1)
	cosigned := b.held(1).Size
	// Round 2 runs: the sites cosign `cosigned`, pay, the sum opens (the
	// coordinator reaches "publish", after aggregating and marking it
	// opened), and the coordinator stops before the final Witness.
	_, err := b.run(2, func(c *CoordinatorConfig) {
		c.hooks = &simHooks{crash: func(point string, round int) bool { return point == "publish" && round == 2 }}
	})
	if !errors.Is(err, errCrashed) {
		t.Fatalf("the run with round 2 opened did not stop at publication: %v", err)
	}
	es, err := dp.ReadLedger(b.ledger())
	if err != nil {
		t.Fatal(err)
	}
	var charge int64 // round 2's charge
	for _, e := range es {
		if e.Kind == "charge" && e.Round == 2 {
			charge = e.Seq
		}
	}
	if charge == 0 {
		t.Fatal("round 2 was not charged")
	}
	// Every site holds a checkpoint covering round 2's charge, cosigned
	// before the sum opened.
	for i := 1; i <= b.n; i++ {
		if got := b.held(i).Size; got <= charge || got <= cosigned {
			t.Errorf("site %d holds a checkpoint of %d entries; round 2's charge is entry %d (it cosigned %d before the round)", i, got, charge, cosigned)
		}
	}
	witnessedCharge := b.held(1).Size
	b.restore(old) // the rollback, to exactly the size the sites cosigned before round 2
	// The coordinator starts again: every site refuses, naming the
	// rollback, and keeps the checkpoint holding round 2's charge.
	sum, err := b.run(2, nil)
	b.refused(sum, err, "rolled back", witnessedCharge)
	if paid, recorded := trainingCharges(t, filepath.Join(b.f.siteConfig(1).State, "site-ledger.jsonl")), trainingCharges(t, b.ledger()); paid != 2 || recorded != 1 {
		t.Errorf("site 1 paid for %d training releases, the rolled-back ledger records %d; want 2 and 1 (round 2 was not run again)", paid, recorded)
	}
	// The audit of the rolled-back ledger with each hospital's cosigned
	// checkpoint fails.
	pub := coordLedgerPub(t, b.cfg)
	for i := 1; i <= b.n; i++ {
		_, err := dp.AuditLedger(b.ledger(), pub, dp.AuditOptions{CheckpointFiles: []string{filepath.Join(b.f.siteConfig(i).State, witnessFile)},
			Witnesses: map[string]ed25519.PublicKey{WitnessName(i): b.f.roster.identities()[i-1]}})
		if !errors.Is(err, dp.ErrLedgerTruncated) {
			t.Errorf("the rolled-back ledger audits with site %d's checkpoint: %v", i, err)
		}
	}
}

// A coordinator that shows its own roster without the ledger key (so it
// sends no Witness) runs a DP run with sites whose kit roster names the
// coordinator ledger key and which have never cosigned: every site
// refuses the statistics and training rounds, which cost it budget,
// naming the missing checkpoint, and pays nothing.
func TestAttackWitnessNeverCosignedSkipsWitness(t *testing.T) {
	b := newWitnessBed(t, 3, SecAgg)
	lying := *b.f.roster
	lying.Coordinator = nil
	sum, err := b.run(1, func(c *CoordinatorConfig) { c.Roster = &lying })
	if err == nil && okRounds(sum) > 0 {
		t.Fatalf("a DP run went through %d rounds without a single Witness", okRounds(sum))
	}
	for i := 1; i <= b.n; i++ {
		if len(b.logs.lines("site="+itoa(i), "no checkpoint of the coordinator's ledger")) == 0 {
			t.Errorf("site %d did not refuse naming the missing checkpoint; log:\n%s", i, b.logs)
		}
		if _, err := os.Stat(filepath.Join(b.f.siteConfig(i).State, witnessFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("site %d holds a cosigned checkpoint: %v", i, err)
		}
		if es, err := dp.ReadLedger(filepath.Join(b.f.siteConfig(i).State, "site-ledger.jsonl")); err == nil {
			for _, e := range es {
				if e.Kind == "charge" {
					t.Errorf("site %d paid for round %d (%s release)", i, e.Round, e.Release)
				}
			}
		}
	}
}

// Lying about From: a Witness whose proof starts elsewhere than the size
// the site last cosigned, or a smaller checkpoint replayed from earlier,
// is refused, and the round after it too.
func TestAttackWitnessLyingFromAndReplay(t *testing.T) {
	b := newWitnessBed(t, 3, SecAgg)
	if _, err := b.run(1, nil); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(filepath.Join(b.f.siteConfig(2).State, witnessFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.run(2, nil); err != nil {
		t.Fatal(err)
	}
	s, err := NewSite(b.f.siteConfig(1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cur, _ := os.ReadFile(b.ledger() + dp.CheckpointSuffix)
	held := s.witnessed.Size
	for name, w := range map[string]*wire.Witness{
		"from one less": {Round: 7 << 20, Checkpoint: cur, From: held - 1},
		"from zero":     {Round: 7 << 20, Checkpoint: cur, From: 0},
		"old replayed (another site's cosigned copy)": {Round: 7 << 20, Checkpoint: first, From: held},
	} {
		m := s.witness(w, nil).GetCosigned()
		if m.Refusal == "" {
			t.Errorf("%s: cosigned", name)
		}
		if err := s.checkWitness(&wire.RoundStart{Round: 7 << 20}); err == nil {
			t.Errorf("%s: round accepted", name)
		}
	}
}

// A coordinator that charged a secagg session asks a site for its
// unmasking shares without showing it a checkpoint holding the charge, or
// shows it one holding another entry: an earlier charge of the same round
// and release (charged before the session began), a charge of another
// round, an outcome mark, or the charge's line altered. The site refuses
// each such Witness, naming why, and refuses to unmask; once it has
// cosigned the session's own charge, it unmasks.
func TestAttackWitnessChargeNotCosigned(t *testing.T) {
	b := newAttackBed(t, 3, []int{1, 2, 3}, nil)
	set := []int{1, 2, 3}
	// An earlier session of round 1, run to the end: its charge is entry 1.
	d := b.begin(b.train(set, nil))
	d.shareAndMask()
	if got := d.unmask(set, set, d.sign(set, set)); len(got) == 0 || len(d.refused) > 0 {
		t.Fatalf("the first session did not unmask: %v", d.refused)
	}
	earlier := b.charged[d.st.Round]
	// The session under attack, another of round 1.
	d = b.begin(b.train(set, nil))
	d.shareAndMask()
	sigs := d.sign(set, set)
	req, _ := (&secagg.UnmaskRequest{Round: d.st.Round, Survivors: d.ids(set), Signatures: sigs}).MarshalBinary()
	r := d.parties[1].round
	unmask := func() error {
		_, err := r.step(&wire.Engine{Round: d.st.Round, Phase: phaseConsistency, Payload: req})
		return err
	}
	if err := unmask(); err == nil || !strings.Contains(err.Error(), "covering this round's charge was not cosigned") {
		t.Fatalf("unmasked with no Witness of the charge: %v", err)
	}
	// The session's charge, and two entries that are not it.
	ownCh := *r.charge
	ownCh.Session = r.start.Round
	own, err := b.ledger.Charge(ownCh)
	if err != nil {
		t.Fatal(err)
	}
	// Another session's charge of the same round, appended after this
	// session began (a coordinator that showed this site a stale
	// checkpoint at its start could pass it off as this one's).
	another := *r.charge
	another.Session = r.start.Round + 1
	anotherE, err := b.ledger.Charge(another)
	if err != nil {
		t.Fatal(err)
	}
	other := *r.charge
	other.Round = 7
	seven, err := b.ledger.Charge(other)
	if err != nil {
		t.Fatal(err)
	}
	mark, err := b.ledger.Mark(earlier, dp.Opened)
	if err != nil {
		t.Fatal(err)
	}
	altered := b.chargeWitness(r, own.Seq)
	altered.Entry = []byte(strings.Replace(string(altered.Entry), `"round":1,`, `"round":2,`, 1))
	huge := b.chargeWitness(r, own.Seq)
	huge.Entry = make([]byte, dp.MaxEntryLine+1)
	short := b.chargeWitness(r, own.Seq)
	short.ChargeProof[0] = short.ChargeProof[0][:31]
	long := b.chargeWitness(r, own.Seq)
	long.ChargeProof = make([][]byte, maxProof+1)
	held := r.s.witnessed.Size
	for _, tc := range []struct {
		name string
		w    *wire.Witness
		want string
	}{
		{"an earlier charge of the round", b.chargeWitness(r, earlier), "before this session began"},
		{"a charge of another round", b.chargeWitness(r, seven.Seq), "charges round 7"},
		{"another session's charge of the round", b.chargeWitness(r, anotherE.Seq), "not this one"},
		{"an outcome mark", b.chargeWitness(r, mark.Seq), "not a charge"},
		{"the charge altered", altered, "not in the coordinator's ledger checkpoint"},
		{"a huge entry", huge, "bytes (at most"},
		{"a short proof hash", short, "31 bytes"},
		{"a long proof", long, "inclusion proof of"},
	} {
		m := r.s.witness(tc.w, r).GetCosigned()
		if m.Refusal == "" || !strings.Contains(m.Refusal, tc.want) {
			t.Errorf("%s: cosigned or refused for another reason: %q, want %q", tc.name, m.Refusal, tc.want)
		}
		if got := r.s.witnessed.Size; got != held {
			t.Errorf("%s: the site now holds %d entries, want %d", tc.name, got, held)
		}
		if err := unmask(); err == nil || !strings.Contains(err.Error(), "covering this round's charge was not cosigned") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: unmask: %v", tc.name, err)
		}
	}
	// A Witness of the charge for a session the site is not in.
	if m := r.s.witness(b.chargeWitness(r, own.Seq), nil).GetCosigned(); !strings.Contains(m.Refusal, "not in") {
		t.Errorf("a charge Witness outside a session: %q", m.Refusal)
	}
	// The session's own charge: cosigned, and the site unmasks.
	if m := r.s.witness(b.chargeWitness(r, own.Seq), r).GetCosigned(); m.Refusal != "" {
		t.Fatalf("the session's own charge refused: %s", m.Refusal)
	}
	if got := b.held1(r.s); got <= own.Seq {
		t.Errorf("the site holds %d entries, not the session's charge (entry %d)", got, own.Seq)
	}
	if err := unmask(); err != nil {
		t.Errorf("unmask after the charge was cosigned: %v", err)
	}
}

// held1 returns the size of the checkpoint s holds on disk.
func (b *attackBed) held1(s *Site) int64 {
	b.t.Helper()
	note, err := os.ReadFile(filepath.Join(s.cfg.State, witnessFile))
	if err != nil {
		b.t.Fatal(err)
	}
	cp, err := openCosigned(note, b.roster.ledgerKey(), b.roster, s.cfg.Site)
	if err != nil {
		b.t.Fatal(err)
	}
	return cp.Size
}
