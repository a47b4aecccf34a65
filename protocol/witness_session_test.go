package protocol

import (
	"testing"

	"github.com/fl-secure/fl-secure/protocol/wire"
)

// beginWith is begin with every member (all honest) shown the given
// pre-round Witness instead of the ledger's latest checkpoint.
func (b *attackBed) beginWith(st *wire.RoundStart, pre func(s *Site) *wire.Witness) *drive {
	b.t.Helper()
	d := &drive{b: b, st: st, parties: map[int]*party{}, refused: map[int]error{}}
	for i, m := range st.Members {
		site := int(m)
		s := b.sites[site]
		if msg := s.witness(pre(s), nil).GetCosigned(); msg.Refusal != "" {
			d.refused[site] = errString(msg.Refusal)
			continue
		}
		r, _, err := s.start(st)
		if err != nil {
			d.refused[site] = err
			continue
		}
		d.parties[site] = &party{site: site, id: uint32(i + 1), round: r}
	}
	return d
}

type errString string

func (e errString) Error() string { return string(e) }

// TestAttackWitnessChargeOfAnotherSession: reuse of an earlier session's
// charge of the same round. The coordinator
// runs session A of round 1 with sites {1,2,3} and charges it (entry 1).
// It then runs session B of round 1 with sites {4,5,6}, which never
// cosigned anything, showing them at the session's start the OLD
// checkpoint (1 entry, before session A's charge) — a checkpoint the
// coordinator signed and may present at will — so that session A's charge
// looks appended after it, and shows them session A's charge as session
// B's. Every charge names its session: the sites refuse, and nothing of
// session B opens.
func TestAttackWitnessChargeOfAnotherSession(t *testing.T) {
	b := newAttackBed(t, 6, []int{1, 2, 3, 4, 5, 6}, nil)
	old := b.ledger.Checkpoint() // 1 entry: the open entry
	setA := []int{1, 2, 3}
	d := b.begin(b.train(setA, nil))
	d.shareAndMask()
	if got := d.unmask(setA, setA, d.sign(setA, setA)); len(got) == 0 || len(d.refused) > 0 {
		t.Fatalf("session A did not unmask: %v", d.refused)
	}
	seqA := b.charged[d.st.Round]
	sizeBefore := b.ledger.Size()

	setB := []int{4, 5, 6}
	st := b.train(setB, nil)
	if roundOf(st.Round) != roundOf(d.st.Round) {
		t.Fatalf("not the same round")
	}
	dB := b.beginWith(st, func(s *Site) *wire.Witness {
		return &wire.Witness{Round: st.Round, Checkpoint: old, From: 0}
	})
	if len(dB.refused) > 0 {
		t.Logf("refused at start (good if this is the defence): %v", dB.refused)
		return
	}
	// The coordinator does NOT charge session B: it shows session A's charge.
	b.charged[st.Round] = seqA
	dB.shareAndMask()
	got := dB.unmask(setB, setB, dB.sign(setB, setB))
	if b.ledger.Size() != sizeBefore {
		t.Fatalf("the test's coordinator charged again")
	}
	if len(dB.refused) != len(setB) {
		t.Errorf("refused: %v, want every site of session B", dB.refused)
	}
	if len(got) > 0 {
		t.Errorf("sites %v revealed %d unmasking shares for session B (round 1, attempt 2) on the strength of session A's charge (entry %d); the coordinator's ledger holds one charge of round 1 for two opened sums (refused: %v)", setB, len(got), seqA, dB.refused)
	}
}

// TestAttackWitnessChargeOfAnotherSessionStatistics: the same with the
// statistics release (round 0): session B over {4,5,6}, shown the
// pre-charge checkpoint at its start and session A's statistics charge as
// its own, is refused.
func TestAttackWitnessChargeOfAnotherSessionStatistics(t *testing.T) {
	b := newAttackBed(t, 6, []int{1, 2, 3, 4, 5, 6}, nil)
	old := b.ledger.Checkpoint()
	setA := []int{1, 2, 3}
	d := b.begin(b.statistics(setA, 0))
	if len(d.refused) > 0 {
		t.Fatalf("refused at start: %v", d.refused)
	}
	d.shareAndMask()
	if got := d.unmask(setA, setA, d.sign(setA, setA)); len(got) == 0 || len(d.refused) > 0 {
		t.Fatalf("session A did not unmask: %v", d.refused)
	}
	seqA := b.charged[d.st.Round]
	size := b.ledger.Size()
	setB := []int{4, 5, 6}
	st := b.statistics(setB, 0)
	dB := b.beginWith(st, func(s *Site) *wire.Witness {
		return &wire.Witness{Round: st.Round, Checkpoint: old, From: 0}
	})
	if len(dB.refused) > 0 {
		t.Logf("refused at start: %v", dB.refused)
		return
	}
	b.charged[st.Round] = seqA
	dB.shareAndMask()
	got := dB.unmask(setB, setB, dB.sign(setB, setB))
	if b.ledger.Size() != size {
		t.Fatal("the test's coordinator charged again")
	}
	if len(got) > 0 {
		t.Errorf("sites %v unmasked statistics session B on session A's charge (entry %d): one statistics charge, two statistics sums opened (refused: %v)", setB, seqA, dB.refused)
	}
}
