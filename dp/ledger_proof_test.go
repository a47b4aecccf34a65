package dp

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// ProveEntry's proof verifies with CheckEntry under the ledger's latest
// checkpoint, for every entry; a line altered, another sequence number, a
// proof cut short or too long, a line over MaxEntryLine, or an entry
// outside the checkpoint is refused with an error, never a panic.
func TestProveEntry(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	l, err := CreateLedger(filepath.Join(t.TempDir(), "ledger.jsonl"), key, LedgerOptions{Accountant: RDP, Relation: AddRemove, Delta: 1e-5, Cap: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for r := 1; r <= 5; r++ {
		c := clientCharge(r, 50)
		c.RunID, c.Level = "federation", RecordLevel
		if _, err := l.Charge(c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Mark(5, Opened); err != nil {
		t.Fatal(err)
	}
	cp, err := OpenCheckpoint(l.Checkpoint(), pub, nil)
	if err != nil {
		t.Fatal(err)
	}
	for seq := int64(0); seq < cp.Size; seq++ {
		ep, err := l.ProveEntry(seq)
		if err != nil {
			t.Fatal(err)
		}
		e, err := CheckEntry(cp, seq, ep.Line, ep.Proof)
		if err != nil {
			t.Fatalf("entry %d: %v", seq, err)
		}
		if e.Seq != seq || (seq >= 1 && seq <= 5 && (e.Kind != "charge" || e.Round != int(seq))) {
			t.Errorf("entry %d: %+v", seq, e)
		}
	}
	ep, err := l.ProveEntry(3)
	if err != nil {
		t.Fatal(err)
	}
	altered := []byte(strings.Replace(string(ep.Line), `"round":3`, `"round":4`, 1))
	for name, tc := range map[string]struct {
		seq   int64
		line  []byte
		proof tlog.RecordProof
		want  error
	}{
		"altered line":    {3, altered, ep.Proof, ErrLedgerForked},
		"other seq":       {2, ep.Line, ep.Proof, ErrLedgerForked},
		"proof cut short": {3, ep.Line, ep.Proof[:len(ep.Proof)-1], ErrLedgerForked},
		"proof too long":  {3, ep.Line, make(tlog.RecordProof, 64), ErrCheckpoint},
		"huge line":       {3, make([]byte, MaxEntryLine+1), ep.Proof, ErrCheckpoint},
		"empty line":      {3, nil, ep.Proof, ErrCheckpoint},
		"negative seq":    {-1, ep.Line, ep.Proof, ErrCheckpoint},
		"outside":         {cp.Size, ep.Line, ep.Proof, ErrCheckpoint},
	} {
		if _, err := CheckEntry(cp, tc.seq, tc.line, tc.proof); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if _, err := l.ProveEntry(cp.Size); err == nil {
		t.Error("an entry past the checkpoint was proved")
	}
}
