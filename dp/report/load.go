package report

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/fl-secure/fl-secure/dp"
)

// Ledger is one ledger to report on, as Load reads and audits it.
type Ledger struct {
	Name string // "Coordinator", "Site 2", a hospital's own name
	Path string // the file it was read from

	// Entries are every entry read, verified or not. Only the first
	// Verified of them passed the audit (signatures, sequence, every ε and
	// noise plan recomputed); the report shows nothing from the others.
	Entries  []dp.Entry
	Verified int
	// Err says why entry Verified failed; nil if every entry verified.
	Err error
	// TreeErr, set only when every entry verified, says why the ledger
	// does not match a checkpoint its owner signed: cut short or rolled
	// back (dp.ErrLedgerTruncated), rewritten (dp.ErrLedgerForked), or a
	// checkpoint that is missing or does not verify (dp.ErrCheckpoint).
	// Entries may then be missing or rewritten, and the report shows no
	// figure from the ledger.
	TreeErr error

	// Checkpoints lists every checkpoint the audit checked, the one beside
	// the ledger first, then the witness copies beside it, then those the
	// auditor gave.
	Checkpoints []Checkpoint
	// External counts the checkpoints the auditor gave that verified and
	// match; Limit is the audit's statement of what it cannot detect when
	// External is 0 (dp.NoExternalCheckpoint).
	External int
	Limit    string
	// Witnesses are the witnesses whose cosignatures the audit verified
	// (Options.Witnesses), in name order.
	Witnesses []Witness
}

// A Checkpoint is one signed checkpoint of a ledger and what the audit
// found.
type Checkpoint struct {
	// Source says where it came from: "beside the ledger (FILE)", a file of
	// the witness directory, or a file the auditor gave.
	Source string
	// External is true for a checkpoint the auditor gave (kept elsewhere);
	// false for one found with the ledger, which whoever can rewrite the
	// ledger can rewrite or delete too.
	External bool
	// Entries is the number of ledger entries it commits to (0 if it could
	// not be read); Round is the round of the last charge among them, or 0
	// if it covers none or they did not all verify.
	Entries int64
	Round   int
	// Cosigners are the names of the witnesses whose cosignatures verified.
	Cosigners []string
	OK        bool
	Problem   string
}

// A Witness is one party whose cosignatures of checkpoints are verified.
type Witness struct {
	Name string            // the name it cosigns under ("fl-secure/site/3")
	Key  ed25519.PublicKey // its Ed25519 public key
	// Label, if set, is who it is in words ("Site 3"). When every witness
	// has one they are taken to be the federation's hospitals.
	Label string
}

// Options are what an audit takes besides the ledger and its owner's key.
type Options struct {
	// CheckpointFiles are checkpoints of the ledger kept elsewhere: a
	// witness's or a site's copy. Only these can show that the ledger was
	// not cut short together with the checkpoint beside it, or restored
	// with it from an earlier copy.
	CheckpointFiles []string
	// Witnesses are the witnesses whose cosignatures to verify. Names must
	// be distinct.
	Witnesses []Witness
	// Heads are tree heads of the ledger verified another way (a site's
	// signed state), checked like checkpoints kept with the ledger.
	Heads []dp.TreeHead
}

// OK reports whether the whole ledger verified, against every checkpoint.
func (l Ledger) OK() bool {
	return l.Err == nil && l.TreeErr == nil && len(l.Entries) > 0 && l.Verified == len(l.Entries)
}

// verified returns the entries that passed the audit, or none if the
// ledger does not match a checkpoint.
func (l Ledger) verified() []dp.Entry {
	if l.TreeErr != nil {
		return nil
	}
	return l.Entries[:min(l.Verified, len(l.Entries))]
}

// maxCheckpointFile bounds a checkpoint read for the audit; dp refuses
// anything over 16 KiB, so one byte more is enough to be refused.
const maxCheckpointFile = 16<<10 + 1

// ledgerCopy is the name of the ledger's copy in Load's directory.
const ledgerCopy = "ledger.jsonl"

// Load reads the ledger at path with the checkpoint beside it
// (path+dp.CheckpointSuffix) and the copies in its witness directory
// (dp.WitnessDir), and the checkpoints of opt, once each, and audits
// those copies under the owner's key pub with opt's witnesses: what the
// report shows is what was verified, even while the ledger's owner
// appends to it. When the ledger cannot be read whole (an incomplete or
// unparsable line), the complete entries before the bad line are audited
// on their own. A ledger or checkpoint that cannot be read is a finding
// in the returned Ledger; the error is for Load's own failures.
func Load(name, path string, pub ed25519.PublicKey, opt Options) (Ledger, error) {
	l := Ledger{Name: name, Path: path, Limit: dp.NoExternalCheckpoint}
	witnesses := map[string]ed25519.PublicKey{}
	for _, w := range opt.Witnesses {
		if _, dup := witnesses[w.Name]; dup {
			return l, fmt.Errorf("report: witness %q given twice", w.Name)
		}
		if len(w.Key) != ed25519.PublicKeySize {
			return l, fmt.Errorf("report: witness %q: key is %d bytes, want %d", w.Name, len(w.Key), ed25519.PublicKeySize)
		}
		witnesses[w.Name] = w.Key
	}
	l.Witnesses = append([]Witness(nil), opt.Witnesses...)
	sort.Slice(l.Witnesses, func(i, j int) bool { return l.Witnesses[i].Name < l.Witnesses[j].Name })

	data, err := readFile(path, -1)
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
	copyPath := filepath.Join(dir, ledgerCopy)
	ren := []string{filepath.Join(dir, dp.WitnessDir), filepath.Join(filepath.Dir(path), dp.WitnessDir), copyPath, path}

	// The files found with the ledger, copied beside the copy. One that
	// cannot be read becomes a failed check of its own.
	var unread []Checkpoint
	if err := copyIfPresent(path+dp.CheckpointSuffix, copyPath+dp.CheckpointSuffix); err != nil {
		unread = append(unread, Checkpoint{Source: "beside the ledger (" + path + dp.CheckpointSuffix + ")", Problem: err.Error()})
	}
	wdir := filepath.Join(filepath.Dir(path), dp.WitnessDir)
	var found []fs.DirEntry
	if fi, err := os.Stat(wdir); err == nil && fi.IsDir() {
		if found, err = os.ReadDir(wdir); err != nil {
			unread = append(unread, Checkpoint{Source: wdir, Problem: "the witness directory cannot be read: " + err.Error()})
		}
	}
	for _, f := range found {
		if !strings.HasSuffix(f.Name(), dp.CheckpointSuffix) {
			continue
		}
		if err := os.MkdirAll(filepath.Join(dir, dp.WitnessDir), 0o700); err != nil {
			return l, fmt.Errorf("report: %w", err)
		}
		src := filepath.Join(wdir, f.Name())
		if err := copyIfPresent(src, filepath.Join(dir, dp.WitnessDir, f.Name())); err != nil {
			unread = append(unread, Checkpoint{Source: src, Problem: err.Error()})
		}
	}
	// The checkpoints kept elsewhere, read once and given as notes.
	aopt := dp.AuditOptions{Witnesses: witnesses, Heads: opt.Heads}
	given := map[int]string{} // "given #i" → file
	var givenUnread []Checkpoint
	for _, f := range opt.CheckpointFiles {
		b, err := readFile(f, maxCheckpointFile)
		if err != nil {
			givenUnread = append(givenUnread, Checkpoint{Source: f, External: true, Problem: "cannot be read: " + err.Error()})
			continue
		}
		aopt.Checkpoints = append(aopt.Checkpoints, b)
		given[len(aopt.Checkpoints)] = f
	}
	for i := len(aopt.Checkpoints); i >= 1; i-- {
		ren = append(ren, fmt.Sprintf("checkpoint given #%d", i), "checkpoint "+given[i])
	}
	fix := strings.NewReplacer(ren...)

	all, err := auditCopy(copyPath, data, pub, aopt)
	if err != nil {
		return l, err
	}
	l.Entries = all.entries
	switch {
	case all.err == nil:
		l.Verified = len(all.entries)
	case entryFailure(all.err) && all.readErr == nil:
		// Every line parsed: the audit names the first entry that fails.
		l.Verified, l.Err = all.audit.FirstBad, all.err
	case entryFailure(all.err) && len(all.entries) > 0:
		// The audit stopped at reading and verified no entry. Audit the
		// complete lines before the bad one on their own; an earlier
		// failure among them is the one to report. Their checkpoints were
		// checked above, against the lines that parsed.
		pre, err := auditCopy(filepath.Join(dir, "prefix.jsonl"), firstLines(data, len(all.entries)), pub, dp.AuditOptions{})
		switch {
		case err != nil:
			return l, err
		case pre.readErr != nil:
			l.Verified, l.Err = 0, pre.readErr
		case pre.err != nil && entryFailure(pre.err):
			l.Verified, l.Err = pre.audit.FirstBad, pre.err
		default:
			l.Verified, l.Err = len(all.entries), all.readErr
		}
	case entryFailure(all.err):
		l.Err = all.err
	default:
		l.Verified, l.TreeErr = len(all.entries), all.err
	}
	if l.Err != nil {
		l.Err = &fixedError{fix.Replace(l.Err.Error()), l.Err}
	}
	if l.TreeErr != nil {
		l.TreeErr = &fixedError{fix.Replace(l.TreeErr.Error()), l.TreeErr}
	}

	for _, c := range all.audit.Checkpoints {
		cp := Checkpoint{Source: fix.Replace(c.Source), External: c.External, Entries: c.Size,
			Cosigners: c.Cosigners, OK: c.OK, Problem: fix.Replace(c.Problem)}
		if n, ok := strings.CutPrefix(c.Source, "given #"); ok {
			if i, err := strconv.Atoi(n); err == nil {
				cp.Source = given[i]
			}
		}
		if c.OK && c.Size <= int64(l.Verified) && l.TreeErr == nil {
			for _, e := range l.Entries[:c.Size] {
				if e.Kind == "charge" {
					cp.Round = e.Round
				}
			}
		}
		l.Checkpoints = append(l.Checkpoints, cp)
	}
	l.External, l.Limit = all.audit.External, all.audit.Limit
	if len(opt.CheckpointFiles) > 0 {
		// A checkpoint kept elsewhere was given: whether it verified is in
		// its check, and a failure is named; that none was given is not.
		l.Limit = ""
	}
	// A checkpoint that could not be read is the problem to name, before
	// what the audit made of its absence.
	for i, c := range append(unread, givenUnread...) {
		l.Checkpoints = append(l.Checkpoints, c)
		if i == 0 && l.Err == nil {
			l.Verified = len(l.Entries)
			l.TreeErr = fmt.Errorf("%w: %s %s", dp.ErrCheckpoint, c.Source, c.Problem)
		}
	}
	return l, nil
}

// entryFailure reports whether an audit error is about the entries (read
// or verified) rather than a checkpoint.
func entryFailure(err error) bool {
	return errors.Is(err, dp.ErrCorruptLedger) || errors.Is(err, dp.ErrTornLedger)
}

// fixedError is an audit error whose message names the files read, not
// their copies.
type fixedError struct {
	msg string
	err error
}

func (e *fixedError) Error() string { return e.msg }
func (e *fixedError) Unwrap() error { return e.err }

type audited struct {
	entries []dp.Entry
	readErr error // dp.ReadLedger's
	audit   dp.Audit
	err     error // dp.AuditLedger's
}

// auditCopy writes data to the file p and reads and audits it there.
func auditCopy(p string, data []byte, pub ed25519.PublicKey, opt dp.AuditOptions) (audited, error) {
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return audited{}, fmt.Errorf("report: %w", err)
	}
	var r audited
	r.entries, r.readErr = dp.ReadLedger(p)
	r.audit, r.err = dp.AuditLedger(p, pub, opt)
	return r, nil
}

// readFile reads a regular file (never a FIFO or a device, which could
// block or never end), at most limit bytes if limit ≥ 0.
func readFile(path string, limit int64) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if limit >= 0 {
		r = io.LimitReader(f, limit)
	}
	return io.ReadAll(r)
}

// copyIfPresent copies the checkpoint file src to dst; a missing src is
// not an error (the audit says what its absence means).
func copyIfPresent(src, dst string) error {
	b, err := readFile(src, maxCheckpointFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot be read: %w", err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		return fmt.Errorf("cannot be copied: %w", err)
	}
	return nil
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
