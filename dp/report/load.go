package report

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fl-secure/fl-secure/dp"
)

// Ledger is one ledger to report on, as Load reads and audits it.
type Ledger struct {
	Name string // "Coordinator", "Site 2", a hospital's own name
	Path string // the file it was read from

	// Entries are every entry read, verified or not. Only the first
	// Verified of them passed the audit (hash chain, signatures, every ε
	// recomputed); the report shows nothing from the others.
	Entries  []dp.Entry
	Verified int
	// Err says why entry Verified failed; nil if the whole ledger verified.
	Err error

	// Outcomes, if set, give a charge entry's outcome by its sequence
	// number ("opened", "charged, never opened"); the round table then has
	// an Outcome column.
	Outcomes map[int64]string
	// Checkpoints, if set, are the ledger's signed checkpoints with their
	// witnesses' cosignatures, shown under "Checkpoints and witnesses".
	Checkpoints []Checkpoint
}

// A Checkpoint is a signed statement of a ledger's size and head, and the
// witnesses that cosigned it.
type Checkpoint struct {
	Round     int      // the last round it covers
	Entries   int      // the number of ledger entries it commits to
	Cosigners []string // names of the witnesses whose cosignatures verify
	Witnesses int      // how many witnesses were asked to cosign
}

// OK reports whether the whole ledger verified.
func (l Ledger) OK() bool { return l.Err == nil && len(l.Entries) > 0 && l.Verified == len(l.Entries) }

// verified returns the entries that passed the audit.
func (l Ledger) verified() []dp.Entry { return l.Entries[:min(l.Verified, len(l.Entries))] }

// Load reads the ledger at path and audits it under its owner's key pub.
// It reads the file once and audits that copy, so the entries shown are
// the entries verified even while the ledger's owner appends to it. When
// the file cannot be read whole (an incomplete or unparsable line), the
// complete entries before the bad line are audited on their own.
func Load(name, path string, pub ed25519.PublicKey) (Ledger, error) {
	l := Ledger{Name: name, Path: path}
	data, err := os.ReadFile(path)
	if err != nil {
		// A missing or unreadable ledger is a finding, not a reason to
		// write no report.
		l.Err = fmt.Errorf("report: reading ledger: %w", err)
		return l, nil
	}
	dir, err := os.MkdirTemp("", "fl-secure-report-")
	if err != nil {
		return l, fmt.Errorf("report: %w", err)
	}
	defer os.RemoveAll(dir)
	all, err := auditCopy(dir, data, pub)
	if err != nil {
		return l, err
	}
	l.Entries, l.Err = all.entries, all.err
	switch {
	case all.err == nil:
		l.Verified = len(all.entries)
	case all.readErr == nil:
		// Every line parsed: the audit names the first entry that fails.
		l.Verified = all.audit.FirstBad
	case len(all.entries) > 0:
		// The audit stopped at reading and verified nothing. Audit the
		// complete lines before the bad one on their own; an earlier
		// failure among them is the one to report.
		pre, err := auditCopy(dir, firstLines(data, len(all.entries)), pub)
		switch {
		case err != nil:
			return l, err
		case pre.readErr != nil:
			l.Verified, l.Err = 0, pre.readErr
		case pre.err != nil:
			l.Verified, l.Err = pre.audit.FirstBad, pre.err
		default:
			l.Verified = len(all.entries)
		}
	}
	return l, nil
}

type audited struct {
	entries []dp.Entry
	readErr error // dp.ReadLedger's
	audit   dp.Audit
	err     error // dp.AuditLedger's
}

// auditCopy writes data to a file in dir and reads and audits it there.
func auditCopy(dir string, data []byte, pub ed25519.PublicKey) (audited, error) {
	p := filepath.Join(dir, "ledger.jsonl")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return audited{}, fmt.Errorf("report: %w", err)
	}
	var r audited
	r.entries, r.readErr = dp.ReadLedger(p)
	r.audit, r.err = dp.AuditLedger(p, pub)
	return r, nil
}

// firstLines returns the first n lines of data, newlines included.
func firstLines(data []byte, n int) []byte {
	off := 0
	for range n {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			return data
		}
		off += i + 1
	}
	return data[:off]
}
