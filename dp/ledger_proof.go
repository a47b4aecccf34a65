package dp

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// MaxEntryLine bounds one ledger line received from another party (a
// charge entry shown to a witness): a real one is under 1 KiB.
const MaxEntryLine = 4 << 10

// maxRecordProof bounds a record proof's hashes: one per level of a tree
// of at most 2^63 entries.
const maxRecordProof = 63

// An EntryProof shows that one entry is in a ledger: the entry's line and
// an RFC 6962 inclusion proof (§2.1.1, tlog.RecordProof) of it under the
// root of the ledger's latest checkpoint, whose note it carries.
type EntryProof struct {
	Checkpoint []byte // the signed checkpoint note the proof is under
	Size       int64  // the checkpoint's tree size
	Seq        int64
	Line       []byte // the entry's line, without its newline: its leaf
	Proof      tlog.RecordProof
}

// ProveEntry returns the line of entry seq and a proof of its inclusion in
// the tree of the ledger's latest checkpoint (Checkpoint), for CheckEntry.
func (l *Ledger) ProveEntry(seq int64) (*EntryProof, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cp, err := OpenCheckpoint(l.cp, l.key.Public().(ed25519.PublicKey), nil)
	if err != nil {
		return nil, fmt.Errorf("dp: the ledger's latest checkpoint: %w", err)
	}
	if seq < 0 || seq >= cp.Size || cp.Size > l.tree.n {
		return nil, fmt.Errorf("dp: entry %d is not covered by the latest checkpoint of %s (%d entries)", seq, l.path, cp.Size)
	}
	var e Entry
	switch {
	case seq == 0:
		e = l.open
	case seq-1 < int64(len(l.charges)):
		e = l.charges[seq-1]
	default:
		return nil, fmt.Errorf("dp: internal error: entry %d of %d", seq, len(l.charges)+1)
	}
	line := e.line()
	proof, err := tlog.ProveRecord(cp.Size, seq, l.tree.reader())
	if err != nil {
		return nil, fmt.Errorf("dp: proving entry %d: %w", seq, err)
	}
	// The line is the leaf the tree hashed: check before it leaves.
	if err := tlog.CheckRecord(proof, cp.Size, cp.Root, seq, tlog.RecordHash(line)); err != nil {
		return nil, fmt.Errorf("dp: internal error: entry %d does not verify under the ledger's checkpoint: %w", seq, err)
	}
	return &EntryProof{Checkpoint: bytes.Clone(l.cp), Size: cp.Size, Seq: seq, Line: line, Proof: proof}, nil
}

// CheckEntry verifies that line is entry seq of the ledger whose verified
// checkpoint is cp, by the inclusion proof under cp's root, and returns
// the entry it parses to. Every length is checked before use: a line over
// MaxEntryLine, a proof of more than 63 hashes or a sequence number
// outside the checkpoint is refused. The line must be an entry in its
// canonical form (as ReadLedger reads it) with sequence number seq. Its
// signature is not checked: the owner's checkpoint signs the tree that
// holds it.
func CheckEntry(cp *Checkpoint, seq int64, line []byte, proof tlog.RecordProof) (*Entry, error) {
	switch {
	case len(line) == 0 || len(line) > MaxEntryLine:
		return nil, fmt.Errorf("%w: an entry line of %d bytes (at most %d)", ErrCheckpoint, len(line), MaxEntryLine)
	case len(proof) > maxRecordProof:
		return nil, fmt.Errorf("%w: an inclusion proof of %d hashes", ErrCheckpoint, len(proof))
	case seq < 0 || seq >= cp.Size:
		return nil, fmt.Errorf("%w: entry %d is outside the checkpoint's %d entries", ErrCheckpoint, seq, cp.Size)
	}
	if err := tlog.CheckRecord(proof, cp.Size, cp.Root, seq, tlog.RecordHash(line)); err != nil {
		return nil, fmt.Errorf("%w: the line is not entry %d of the checkpoint's tree of %d entries: %v", ErrLedgerForked, seq, cp.Size, err)
	}
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("%w: entry %d does not parse: %v", ErrCorruptLedger, seq, err)
	}
	if dec.More() || !bytes.Equal(line, e.line()) {
		return nil, fmt.Errorf("%w: entry %d is not in canonical form", ErrCorruptLedger, seq)
	}
	if e.Seq != seq {
		return nil, fmt.Errorf("%w: the entry at %d carries sequence number %d", ErrCorruptLedger, seq, e.Seq)
	}
	return &e, nil
}
