package dp

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// ErrBudgetExceeded is returned (wrapped) by Ledger.Charge when the charge
// would take the cumulative ε past the ledger's cap. Nothing is written.
var ErrBudgetExceeded = errors.New("dp: privacy budget exceeded")

// ErrTornLedger is returned (wrapped) when a ledger's last line is
// incomplete: a write was interrupted. The signed entries before it are
// intact; RecoverLedger moves the fragment aside.
var ErrTornLedger = errors.New("dp: ledger ends in an incomplete line")

// ErrCorruptLedger is returned (wrapped) when a complete ledger line does
// not parse, is not in its canonical form, is out of sequence, carries a
// bad signature, or records an ε that its parameters do not give.
var ErrCorruptLedger = errors.New("dp: ledger entry fails verification")

// ledgerDomain prefixes every signed entry, so an entry signature can never
// be taken for a signature of anything else fl-secure signs (checkpoint
// notes are signed over their own text, which starts with the origin
// line, never with this string).
const ledgerDomain = "fl-secure/ledger/v2\n"

// CheckpointSuffix names the file beside a ledger that holds its latest
// signed checkpoint: <ledger>.checkpoint.
const CheckpointSuffix = ".checkpoint"

// Level says whose privacy an entry protects.
type Level string

const (
	// RecordLevel protects one patient record (local DP-SGD at a hospital).
	RecordLevel Level = "record"
	// ClientLevel protects one hospital's whole contribution to a round.
	ClientLevel Level = "client"
)

// An Entry is one line of a ledger. The first entry (Kind "open") fixes the
// owner's key, the accountant, δ, the ε cap and the neighbouring relation;
// every later entry records one release and the cumulative ε after it
// (Kind "charge"), or marks what became of an earlier charge (Kind
// "outcome", which costs nothing). Sig is the owner's Ed25519 signature
// of ledgerDomain followed by the entry's canonical JSON (the entry with
// Sig empty, fields in this order, numbers in Go's shortest round-trip
// form). A line is the entry's canonical JSON with Sig set, and nothing
// else: each line has exactly one encoding, and its bytes are the entry's
// leaf in the ledger's Merkle tree (RFC 6962 §2.1; checkpoint.go).
type Entry struct {
	Seq  int64  `json:"seq"`
	Time string `json:"time"`
	Kind string `json:"kind"`

	// Set in the open entry.
	Owner      string  `json:"owner_key,omitempty"`
	Accountant string  `json:"accountant"`
	Relation   string  `json:"neighbouring"`
	Delta      float64 `json:"delta"`
	Cap        float64 `json:"epsilon_cap"`

	// Set in charge entries.
	RunID string `json:"run_id,omitempty"`
	Round int    `json:"round,omitempty"`
	// Session identifies the attempt of the round the charge pays for (the
	// protocol's session id); a ledger holds one charge per session.
	Session uint64 `json:"session,omitempty"`
	Level   Level  `json:"level,omitempty"`
	// Protects is the neighbouring relation of Level in words
	// (RecordRelationText or ClientRelationText).
	Protects        string  `json:"protects,omitempty"`
	Mechanism       string  `json:"mechanism,omitempty"`
	NoiseMultiplier float64 `json:"noise_multiplier,omitempty"`
	SamplingRate    float64 `json:"sampling_rate,omitempty"`
	Steps           int     `json:"steps,omitempty"`
	// The noise plan (NoisePlan) the multiplier is derived from, when the
	// charge has one; Release is set exactly then. Participants is the
	// plan's Clients (n), GridStep its Gamma (γ), SiteSigma the σ of one
	// site's noise share in update units. Survivors, set by the writer when
	// known, is the number of sites whose inputs the released sum holds.
	Release      string  `json:"release,omitempty"`
	Threshold    int     `json:"threshold,omitempty"`
	Colluders    int     `json:"colluders,omitempty"`
	MinCohort    int     `json:"min_cohort,omitempty"`
	Participants int     `json:"participants,omitempty"`
	Survivors    int     `json:"survivors,omitempty"`
	GridStep     float64 `json:"grid_step,omitempty"`
	Dim          int     `json:"dim,omitempty"`
	RingBits     int     `json:"ring_bits,omitempty"`
	SiteSigma    float64 `json:"site_sigma,omitempty"`
	Clip         float64 `json:"clip,omitempty"`
	EpsilonRound float64 `json:"epsilon_round,omitempty"`
	// PatientEpsilon, in client-level charges, is the cumulative ε that
	// protects one patient (PatientEpsilon, PatientRelationText) over every
	// charge so far, beside Epsilon, which protects one hospital.
	PatientEpsilon float64 `json:"patient_epsilon,omitempty"`

	// Set in outcome entries: the sequence number of the charge marked
	// (whose RunID, Round and Release the entry repeats) and what became
	// of it.
	Of      int64   `json:"of,omitempty"`
	Outcome Outcome `json:"outcome,omitempty"`

	Epsilon float64 `json:"epsilon"`

	Sig string `json:"sig,omitempty"`
}

// event returns the accountant event a charge entry records.
func (e *Entry) event() Event {
	return Event{Mechanism(e.Mechanism), e.NoiseMultiplier, e.SamplingRate, e.Steps}
}

// signed returns what the owner signs: ledgerDomain and the canonical
// JSON of the entry without its signature.
func (e *Entry) signed() []byte {
	c := *e
	c.Sig = ""
	b, err := json.Marshal(&c)
	if err != nil {
		panic("dp: internal error: " + err.Error())
	}
	return append([]byte(ledgerDomain), b...)
}

// line returns the entry's line without its newline: its canonical JSON.
func (e *Entry) line() []byte {
	b, err := json.Marshal(e)
	if err != nil {
		panic("dp: internal error: " + err.Error())
	}
	return b
}

// A Charge describes one release to record: what was run and every
// parameter the accountant needs. A charge of distributed noise is built
// by PlanCharge, which records its whole NoisePlan and derives the
// multiplier from it; Charge refuses one whose multiplier its plan does
// not give.
type Charge struct {
	RunID string
	Round int
	// Session, if not 0, is the attempt of the round this charge pays for:
	// one charge per session (Charge refuses a second).
	Session uint64
	Level   Level
	Event   Event // mechanism, noise multiplier, sampling rate, steps
	// Plan is the distributed noise the multiplier comes from. A discrete
	// Gaussian charge must have one; a central Gaussian charge may go
	// without (its multiplier is then taken as given).
	Plan      *NoisePlan
	Survivors int // the sites whose inputs the released sum holds, if known
}

// Releases a NoisePlan may describe.
const (
	TrainingRelease   = "training"
	StatisticsRelease = "statistics"
)

// A NoisePlan is everything the noise multiplier of one round of
// distributed discrete Gaussian noise (Distribute) depends on, as the
// ledger records it.
type NoisePlan struct {
	Release   string // TrainingRelease or StatisticsRelease
	Threshold int    // k: the smallest cohort whose noise the charge counts on
	Colluders int    // c: sites assumed to collude (their noise not counted)
	MinCohort int    // the round's minimum cohort
	Clients   int    // n: the sites of the federation
	Gamma     float64
	Dim       int     // d: the length of an update
	RingBits  int     // the aggregation ring's width; 0 for none
	SiteSigma float64 // σ of ONE site's noise share, in update units
	Clip      float64 // C: the L2 clipping norm
}

// Multiplier returns the noise multiplier of the plan: the sum of the
// k − c honest shares has σ_sum = SiteSigma·√(k−c), and Distribute (KLS
// 2021, Thm. 1 and Prop. 14) gives the multiplier of that sum at grid step
// Gamma. Every writer and the audit compute it here, so they cannot
// disagree about what σ means.
func (p *NoisePlan) Multiplier() (float64, error) {
	switch {
	case p.Release != TrainingRelease && p.Release != StatisticsRelease:
		return 0, fmt.Errorf("dp: release %q is neither %s nor %s", truncate(p.Release, 20), TrainingRelease, StatisticsRelease)
	case p.Threshold < 1 || p.Colluders < 0 || p.Colluders >= p.Threshold:
		return 0, fmt.Errorf("dp: threshold %d with %d colluders leaves no honest share", p.Threshold, p.Colluders)
	case p.MinCohort < 0 || p.RingBits < 0 || p.RingBits > 64:
		return 0, fmt.Errorf("dp: minimum cohort %d or ring width %d out of range", p.MinCohort, p.RingBits)
	case !(p.SiteSigma > 0) || math.IsInf(p.SiteSigma, 0):
		return 0, fmt.Errorf("dp: site σ %v", p.SiteSigma)
	case !(p.Gamma > 0):
		return 0, fmt.Errorf("dp: grid step %v", p.Gamma)
	}
	sum := p.SiteSigma * math.Sqrt(float64(p.Threshold-p.Colluders))
	d, err := Distribute(DistributedConfig{Sigma: sum, Clip: p.Clip, Clients: p.Clients, Threshold: p.Threshold,
		Colluders: p.Colluders, Dim: p.Dim, Gamma: p.Gamma})
	if err != nil {
		return 0, err
	}
	return d.NoiseMultiplier, nil
}

// PlanCharge returns the charge of one round of distributed discrete
// Gaussian noise at level: mechanism discrete_gaussian, sampling rate 1,
// one step, the multiplier p.Multiplier(), and the plan recorded with it.
func PlanCharge(runID string, round int, level Level, p NoisePlan) (Charge, error) {
	z, err := p.Multiplier()
	if err != nil {
		return Charge{}, err
	}
	return Charge{RunID: runID, Round: round, Level: level,
		Event: Event{Mechanism: DiscreteGaussianMechanism, NoiseMultiplier: z, SamplingRate: 1, Count: 1},
		Plan:  &p}, nil
}

// plan returns the noise plan a charge entry records, or nil.
func (e *Entry) plan() *NoisePlan {
	if e.Release == "" {
		return nil
	}
	return &NoisePlan{Release: e.Release, Threshold: e.Threshold, Colluders: e.Colluders, MinCohort: e.MinCohort,
		Clients: e.Participants, Gamma: e.GridStep, Dim: e.Dim, RingBits: e.RingBits, SiteSigma: e.SiteSigma, Clip: e.Clip}
}

// checkPlan checks that a charge's multiplier is the one its plan gives
// (relative tolerance 1e-9) and that it is a single unsampled discrete
// Gaussian release.
func checkPlan(p *NoisePlan, ev Event) error {
	z, err := p.Multiplier()
	if err != nil {
		return err
	}
	if ev.Mechanism != DiscreteGaussianMechanism || ev.SamplingRate != 1 || ev.Count != 1 {
		return fmt.Errorf("dp: a planned charge is one unsampled %s release, not %d × %s at rate %v", DiscreteGaussianMechanism, ev.Count, ev.Mechanism, ev.SamplingRate)
	}
	if math.Abs(z-ev.NoiseMultiplier) > 1e-9*z {
		return fmt.Errorf("dp: the recorded noise multiplier is %s; its noise plan gives %s",
			strconv.FormatFloat(ev.NoiseMultiplier, 'g', 12, 64), strconv.FormatFloat(z, 'g', 12, 64))
	}
	return nil
}

// relationText is the neighbouring relation of level in words.
func relationText(level Level) string {
	if level == ClientLevel {
		return ClientRelationText
	}
	return RecordRelationText
}

// LedgerOptions fix a new ledger's budget.
type LedgerOptions struct {
	Accountant string // "rdp" or "pld"
	Relation   Neighbouring
	Delta      float64
	Cap        float64 // the largest cumulative ε the ledger allows
}

// A Ledger is an append-only, signed JSON Lines record of privacy
// spending, kept as a transparency log: its lines are the leaves of an
// RFC 6962 Merkle tree, and after every append its owner signs a C2SP
// checkpoint of the tree into <ledger>.checkpoint (checkpoint.go). Each
// entry is written and fsync'ed before Charge returns, so callers publish
// a result only after its cost is on disk. One process at a time may
// write a ledger. A Ledger's methods may be called from several
// goroutines.
type Ledger struct {
	path string
	key  ed25519.PrivateKey

	mu      sync.Mutex
	f       *os.File
	open    Entry
	last    Entry
	charges []Entry // every entry after the open one: charges and outcomes
	spent   float64
	tree    merkleTree
	cp      []byte // the latest signed checkpoint note, of the whole tree
	// broken is set when a write to the ledger failed: what is on disk may
	// no longer match the tree, so nothing more is appended.
	broken error
}

// CreateLedger creates a new ledger at path (which must not exist), owned
// and signed by key, and its first checkpoint beside it. It refuses if a
// checkpoint signed by key and covering charges is beside path: a ledger
// was there and was removed, and a new one would give its ε back. (One
// covering only an open entry, which spent nothing, is replaced.)
func CreateLedger(path string, key ed25519.PrivateKey, opt LedgerOptions) (*Ledger, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("dp: ledger key is not an Ed25519 private key")
	}
	if _, err := NewAccountant(opt.Accountant, opt.Relation); err != nil {
		return nil, err
	}
	if err := checkDelta(opt.Delta); err != nil {
		return nil, err
	}
	if !(opt.Cap > 0) || math.IsInf(opt.Cap, 0) {
		return nil, fmt.Errorf("dp: ε cap must be positive and finite, got %v", opt.Cap)
	}
	if cp, err := ReadCheckpoint(path+CheckpointSuffix, key.Public().(ed25519.PublicKey), nil); err == nil && cp.Size > 1 {
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s is missing but its checkpoint %s covers %d entries; restore the ledger from a backup (a new one would give its ε back)", ErrLedgerTruncated, path, path+CheckpointSuffix, cp.Size)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("dp: creating ledger: %w", err)
	}
	if err := lockLedger(f, path); err != nil {
		f.Close()
		return nil, err
	}
	l := &Ledger{path: path, f: f, key: key}
	l.open = Entry{
		Seq: 0, Time: now(), Kind: "open",
		Owner:      base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)),
		Accountant: opt.Accountant, Relation: opt.Relation.String(), Delta: opt.Delta, Cap: opt.Cap,
	}
	if err := l.append(&l.open); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	// Make the new directory entry durable too.
	if err := syncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, err
	}
	l.last = l.open
	if err := l.writeCheckpoint(); err != nil {
		// The ledger holds only its open entry, which OpenLedger accepts
		// without a checkpoint and checkpoints then.
		f.Close()
		return nil, err
	}
	return l, nil
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// append signs e, writes it as one line, fsyncs, and adds the line to the
// tree. It does not write the checkpoint.
func (l *Ledger) append(e *Entry) error {
	if l.broken != nil {
		return fmt.Errorf("dp: ledger %s had a failed write (%v); reopen it", l.path, l.broken)
	}
	err := l.appendLine(e)
	if err != nil {
		l.broken = err
	}
	return err
}

func (l *Ledger) appendLine(e *Entry) error {
	e.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(l.key, e.signed()))
	line := e.line()
	if _, err := l.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("dp: writing ledger %s: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("dp: syncing ledger %s: %w", l.path, err)
	}
	return l.tree.add(line)
}

// writeCheckpoint signs a checkpoint of the whole tree and writes it to
// <ledger>.checkpoint durably: a temporary file, fsync, rename, fsync of
// the directory, so a crash leaves the old checkpoint or the new one.
func (l *Ledger) writeCheckpoint() error {
	root, err := l.tree.root(l.tree.n)
	if err != nil {
		return err
	}
	note, err := SignCheckpoint(l.key, l.tree.n, root)
	if err != nil {
		return err
	}
	if err := writeDurable(l.path+CheckpointSuffix, note); err != nil {
		return fmt.Errorf("dp: writing the checkpoint of ledger %s: %w", l.path, err)
	}
	l.cp = note
	return nil
}

// OpenLedger opens an existing ledger for appending. Every entry is
// verified first (ReadLedger's checks plus the signatures against key's
// public half); a torn or corrupt ledger is refused. The ledger is then
// checked against its checkpoint: a checkpoint covering more entries than
// the ledger holds (ErrLedgerTruncated) or another history
// (ErrLedgerForked) is refused, so a ledger cut short never resumes from
// a lower ε. A checkpoint behind a ledger that extends it (a crash
// between an append and its checkpoint) is replaced by a new one; so is a
// missing checkpoint beside a ledger that holds only its open entry (a
// crash inside CreateLedger). A missing checkpoint beside any longer
// ledger is refused.
func OpenLedger(path string, key ed25519.PrivateKey) (*Ledger, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("dp: ledger key is not an Ed25519 private key")
	}
	// Lock first, then read: what is read is what this writer appends to.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("dp: opening ledger: %w", err)
	}
	if err := lockLedger(f, path); err != nil {
		f.Close()
		return nil, err
	}
	l, err := openLocked(path, key, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

func openLocked(path string, key ed25519.PrivateKey, f *os.File) (*Ledger, error) {
	pub := key.Public().(ed25519.PublicKey)
	entries, lines, err := readLedger(path)
	if err != nil {
		return nil, err
	}
	if _, err := verifyEntries(entries, pub); err != nil {
		return nil, err
	}
	l := &Ledger{path: path, f: f, key: key, open: entries[0], last: entries[len(entries)-1], charges: entries[1:]}
	l.spent = l.last.Epsilon
	for _, line := range lines {
		if err := l.tree.add(line); err != nil {
			return nil, err
		}
	}
	cp, err := ReadCheckpoint(path+CheckpointSuffix, pub, nil)
	switch {
	case errors.Is(err, fs.ErrNotExist) && l.tree.n == 1:
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s holds %d entries and its checkpoint %s is missing; restore the checkpoint from a backup (without it the ledger could have been cut short unnoticed)", ErrCheckpoint, path, l.tree.n, path+CheckpointSuffix)
	case err != nil:
		return nil, fmt.Errorf("%w; restore the checkpoint from a backup or a witness's copy", err)
	default:
		if err := l.tree.checkAgainst(cp); err != nil {
			return nil, fmt.Errorf("%w (ledger %s, checkpoint %s)", err, path, path+CheckpointSuffix)
		}
		if cp.Size == l.tree.n {
			l.cp = cp.Note
			return l, nil
		}
	}
	// The ledger extends its checkpoint (a crash after an append, before
	// its checkpoint was written): every entry verified, so sign it now.
	if err := l.writeCheckpoint(); err != nil {
		return nil, err
	}
	return l, nil
}

// Checkpoint returns the latest signed checkpoint note of the ledger: the
// one in <ledger>.checkpoint, covering every entry.
func (l *Ledger) Checkpoint() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.cp)
}

// Size returns the number of entries in the ledger (the tree size).
func (l *Ledger) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tree.n
}

// ProveFrom returns a consistency proof (RFC 6962 §2.1.2, in tlog's form)
// from the tree of the ledger's first n entries to the whole ledger, for
// CheckExtends. n must be between 0 and Size.
func (l *Ledger) ProveFrom(n int64) (tlog.TreeProof, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tree.prove(n)
}

// ReadCheckpoint reads and verifies the checkpoint note in the file at
// path (see OpenCheckpoint). An error wrapping fs.ErrNotExist means there
// is no such file.
func ReadCheckpoint(path string, owner ed25519.PublicKey, witnesses map[string]ed25519.PublicKey) (*Checkpoint, error) {
	// Not a FIFO or a device, which could block the reader or never end.
	if fi, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("dp: reading checkpoint: %w", err)
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrCheckpoint, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dp: reading checkpoint: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCheckpoint+1))
	if err != nil {
		return nil, fmt.Errorf("dp: reading checkpoint %s: %w", path, err)
	}
	cp, err := OpenCheckpoint(b, owner, witnesses)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return cp, nil
}

// Close closes the ledger file, which releases its lock.
func (l *Ledger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// ErrLedgerInUse is returned when another writer holds a ledger open.
var ErrLedgerInUse = errors.New("dp: the ledger is open in another writer")

var errLocked = errors.New("locked")

// lockLedger locks the ledger open as f for this writer alone, and notes
// who holds it in path.lock (process, host, time) for the message a second
// writer gets. Two writers appending to one ledger would each check the
// cap against what it had read and together pass it. The lock is
// advisory (flock(2)) and released with the file, so a crash leaves none.
func lockLedger(f *os.File, path string) error {
	err := lockFile(f)
	if errors.Is(err, errLocked) {
		holder := "another process or another writer in this one"
		if b, rerr := os.ReadFile(path + ".lock"); rerr == nil && len(b) > 0 && len(b) < 512 {
			holder = strings.TrimSpace(string(b))
		}
		return fmt.Errorf("%w: %s is held by %s; stop that writer first", ErrLedgerInUse, path, holder)
	}
	if err != nil {
		return fmt.Errorf("dp: locking ledger %s: %w", path, err)
	}
	host, _ := os.Hostname()
	note := fmt.Sprintf("process %d on %s since %s\n", os.Getpid(), host, now())
	// The note only names the holder in that message; failing to write it
	// leaves the lock in place.
	_ = os.WriteFile(path+".lock", []byte(note), 0o600)
	return nil
}

// Spent returns the cumulative ε recorded so far.
func (l *Ledger) Spent() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.spent
}

// SpentPatient returns, for a ledger of client-level charges, the
// cumulative per-patient ε (PatientEpsilon) recorded so far; 0 when it
// holds no client-level charge.
func (l *Ledger) SpentPatient() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.charges) - 1; i >= 0; i-- {
		if l.charges[i].Kind == "charge" {
			return l.charges[i].PatientEpsilon
		}
	}
	return 0
}

// Cap returns the ledger's ε cap.
func (l *Ledger) Cap() float64 { return l.open.Cap }

// Delta returns the ledger's δ.
func (l *Ledger) Delta() float64 { return l.open.Delta }

// Preview returns the cumulative ε the ledger would hold after c, without
// writing anything; it wraps ErrBudgetExceeded if that passes the cap.
func (l *Ledger) Preview(c Charge) (float64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.preview(c)
}

func (l *Ledger) preview(c Charge) (float64, error) {
	if err := checkCharge(c); err != nil {
		return 0, err
	}
	events := make([]Event, 0, len(l.charges)+1)
	for i := range l.charges {
		if l.charges[i].Kind == "charge" {
			if c.Session != 0 && l.charges[i].Session == c.Session {
				return 0, fmt.Errorf("dp: round %d: session %d is charged already (entry %d): one charge per session", c.Round, c.Session, l.charges[i].Seq)
			}
			if lv := l.charges[i].Level; lv != c.Level {
				// ε at one level says nothing at the other: one ledger, one level.
				return 0, fmt.Errorf("dp: round %d: a %s-level charge in a ledger of %s-level charges", c.Round, c.Level, lv)
			}
			events = append(events, l.charges[i].event())
		}
	}
	rel, _ := ParseNeighbouring(l.open.Relation)
	eps, err := Epsilon(l.open.Accountant, rel, l.open.Delta, mergeEvents(append(events, c.Event))...)
	if err != nil {
		return 0, err
	}
	if eps > l.open.Cap {
		return eps, fmt.Errorf("%w: round %d would bring ε to %.6g, above the cap %.6g (spent %.6g)", ErrBudgetExceeded, c.Round, eps, l.open.Cap, l.spent)
	}
	return eps, nil
}

// Charge records c: it computes the cumulative ε with c, refuses with
// ErrBudgetExceeded (writing nothing) if that passes the cap, and otherwise
// appends a signed entry and fsyncs before returning it, then writes the
// new checkpoint. If only the checkpoint fails, the charge stands (it is
// on disk and counted) and the error says so; the next append or
// OpenLedger writes the checkpoint.
func (l *Ledger) Charge(c Charge) (Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	eps, err := l.preview(c)
	if err != nil {
		return Entry{}, err
	}
	rel, _ := ParseNeighbouring(l.open.Relation)
	alone, err := Epsilon(l.open.Accountant, rel, l.open.Delta, c.Event)
	if err != nil {
		return Entry{}, err
	}
	e := Entry{
		Seq: l.last.Seq + 1, Time: now(), Kind: "charge",
		Accountant: l.open.Accountant, Relation: l.open.Relation, Delta: l.open.Delta, Cap: l.open.Cap,
		RunID: c.RunID, Round: c.Round, Session: c.Session, Level: c.Level, Protects: relationText(c.Level),
		Mechanism: string(c.Event.Mechanism), NoiseMultiplier: c.Event.NoiseMultiplier,
		SamplingRate: c.Event.SamplingRate, Steps: c.Event.Count, Survivors: c.Survivors,
		EpsilonRound: alone, Epsilon: eps,
	}
	if c.Level == ClientLevel {
		if e.PatientEpsilon, err = l.patientEpsilon(c.Event); err != nil {
			return Entry{}, err
		}
	}
	if p := c.Plan; p != nil {
		e.Release, e.Threshold, e.Colluders, e.MinCohort, e.Participants = p.Release, p.Threshold, p.Colluders, p.MinCohort, p.Clients
		e.GridStep, e.Dim, e.RingBits, e.SiteSigma, e.Clip = p.Gamma, p.Dim, p.RingBits, p.SiteSigma, p.Clip
	}
	// JSON holds no infinity or NaN; such an ε is no guarantee anyway.
	for _, v := range []float64{alone, eps, e.PatientEpsilon} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return Entry{}, fmt.Errorf("dp: round %d: an ε of this charge is not finite", c.Round)
		}
	}
	if err := l.append(&e); err != nil {
		return Entry{}, err
	}
	l.charges = append(l.charges, e)
	l.last, l.spent = e, eps
	if err := l.writeCheckpoint(); err != nil {
		return e, fmt.Errorf("dp: round %d is charged (ε = %.6g) but its checkpoint was not written: %w", c.Round, eps, err)
	}
	return e, nil
}

// patientEpsilon returns the cumulative per-patient ε of every charge so
// far and ev.
func (l *Ledger) patientEpsilon(ev Event) (float64, error) {
	var events []Event
	for i := range l.charges {
		if l.charges[i].Kind == "charge" {
			events = append(events, l.charges[i].event())
		}
	}
	return PatientEpsilon(l.open.Accountant, l.open.Delta, append(events, ev)...)
}

// An Outcome says what became of a charged release.
type Outcome string

const (
	// Opened: the released sum was decoded.
	Opened Outcome = "opened"
	// Unopened: the round failed, or the session ended, after the charge
	// and before its sum could be opened. The ε stays spent.
	Unopened Outcome = "unopened"
)

// Mark records the outcome of the charge at entry seq: an "outcome" entry
// naming that charge (its sequence number, run, round and release). It
// costs nothing: the cumulative ε is unchanged. A charge is marked once.
func (l *Ledger) Mark(seq int64, o Outcome) (Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if o != Opened && o != Unopened {
		return Entry{}, fmt.Errorf("dp: outcome %q is neither opened nor unopened", o)
	}
	if seq < 1 || seq > int64(len(l.charges)) || l.charges[seq-1].Kind != "charge" {
		return Entry{}, fmt.Errorf("dp: entry %d is not a charge of this ledger", seq)
	}
	ch := l.charges[seq-1]
	for _, e := range l.charges[seq:] {
		if e.Kind == "outcome" && e.Of == seq {
			return Entry{}, fmt.Errorf("dp: the charge at entry %d (round %d) is already marked %s", seq, ch.Round, e.Outcome)
		}
	}
	e := Entry{
		Seq: l.last.Seq + 1, Time: now(), Kind: "outcome",
		Accountant: l.open.Accountant, Relation: l.open.Relation, Delta: l.open.Delta, Cap: l.open.Cap,
		RunID: ch.RunID, Round: ch.Round, Release: ch.Release, Of: seq, Outcome: o,
		Epsilon: l.spent,
	}
	if err := l.append(&e); err != nil {
		return Entry{}, err
	}
	l.charges = append(l.charges, e)
	l.last = e
	if err := l.writeCheckpoint(); err != nil {
		return e, fmt.Errorf("dp: the outcome of round %d is recorded but its checkpoint was not written: %w", ch.Round, err)
	}
	return e, nil
}

func checkCharge(c Charge) error {
	if err := c.Event.Validate(); err != nil {
		return err
	}
	if c.Level != RecordLevel && c.Level != ClientLevel {
		return fmt.Errorf("dp: charge level %q is neither record nor client", c.Level)
	}
	if c.Round < 0 || c.Survivors < 0 {
		return errors.New("dp: negative round or survivor count in charge")
	}
	if c.Plan != nil {
		if err := checkPlan(c.Plan, c.Event); err != nil {
			return fmt.Errorf("dp: round %d: %w", c.Round, err)
		}
	} else if c.Event.Mechanism == DiscreteGaussianMechanism {
		// Distributed noise is only ever planned (PlanCharge): a multiplier
		// without its plan could not be re-derived by an audit.
		return fmt.Errorf("dp: round %d: a distributed discrete Gaussian charge must record its noise plan (PlanCharge)", c.Round)
	}
	return nil
}

// mergeEvents sums the counts of identical events, so an accountant
// composes each distinct mechanism once.
func mergeEvents(events []Event) []Event {
	type key struct {
		m    Mechanism
		z, q float64
	}
	var out []Event
	idx := map[key]int{}
	for _, e := range events {
		k := key{e.Mechanism, e.NoiseMultiplier, e.SamplingRate}
		if i, ok := idx[k]; ok {
			out[i].Count += e.Count
			continue
		}
		idx[k] = len(out)
		out = append(out, e)
	}
	return out
}

// maxLedgerLine bounds one ledger line; real entries are under 1 KiB.
const maxLedgerLine = 64 << 10

// ReadLedger parses a ledger without checking signatures or ε: each line
// must be complete, parse strictly, and the first must be the open entry.
// A final line without its newline gives ErrTornLedger; any other bad line
// gives ErrCorruptLedger naming it.
func ReadLedger(path string) ([]Entry, error) {
	entries, _, err := readLedger(path)
	return entries, err
}

// readLedger is ReadLedger, also returning each line without its newline.
func readLedger(path string) ([]Entry, [][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("dp: reading ledger: %w", err)
	}
	return parseLines(data)
}

func parseLedger(data []byte) ([]Entry, error) {
	entries, _, err := parseLines(data)
	return entries, err
}

func parseLines(data []byte) ([]Entry, [][]byte, error) {
	var entries []Entry
	var lines [][]byte
	off := 0
	for lineNo := 1; off < len(data); lineNo++ {
		end := bytes.IndexByte(data[off:], '\n')
		if end < 0 {
			return entries, lines, fmt.Errorf("%w: line %d (byte %d, %d bytes) has no newline; the %d entries before it are intact; run `fl-secure budget recover` to move it aside", ErrTornLedger, lineNo, off, len(data)-off, len(entries))
		}
		line := data[off : off+end]
		if len(line) > maxLedgerLine {
			return entries, lines, fmt.Errorf("%w: line %d is %d bytes, over the %d-byte limit", ErrCorruptLedger, lineNo, len(line), maxLedgerLine)
		}
		var e Entry
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return entries, lines, fmt.Errorf("%w: line %d does not parse: %v", ErrCorruptLedger, lineNo, err)
		}
		if dec.More() {
			return entries, lines, fmt.Errorf("%w: line %d has data after its entry", ErrCorruptLedger, lineNo)
		}
		// One encoding per entry: the line is the leaf the tree hashes, and
		// the signature covers the canonical form.
		if !bytes.Equal(line, e.line()) {
			return entries, lines, fmt.Errorf("%w: line %d is not in canonical form (re-encoded after signing?)", ErrCorruptLedger, lineNo)
		}
		entries = append(entries, e)
		lines = append(lines, line)
		off += end + 1
	}
	if len(entries) == 0 {
		return nil, nil, fmt.Errorf("%w: the ledger is empty", ErrCorruptLedger)
	}
	if entries[0].Kind != "open" {
		return entries, lines, fmt.Errorf("%w: line 1 is a %q entry, want the open entry", ErrCorruptLedger, entries[0].Kind)
	}
	return entries, lines, nil
}

// verifyEntries checks sequence numbers, every signature against pub, that the budget terms never change, and that every
// cumulative ε is what the recorded parameters give with the recorded
// accountant. It returns the recomputed cumulative ε per entry.
func verifyEntries(entries []Entry, pub ed25519.PublicKey) ([]float64, error) {
	bad := func(i int, format string, a ...any) error {
		return &entryError{i, fmt.Sprintf(format, a...)}
	}
	open := entries[0]
	if owner := base64.StdEncoding.EncodeToString(pub); open.Owner != owner {
		return nil, bad(0, "owner key %s is not the key given (%s)", open.Owner, owner)
	}
	rel, err := ParseNeighbouring(open.Relation)
	if err != nil {
		return nil, bad(0, "%v", err)
	}
	if _, err := NewAccountant(open.Accountant, rel); err != nil {
		return nil, bad(0, "%v", err)
	}
	if checkDelta(open.Delta) != nil || !(open.Cap > 0) {
		return nil, bad(0, "δ %v or ε cap %v out of range", open.Delta, open.Cap)
	}
	eps := make([]float64, len(entries))
	var events []Event
	var level Level // of the first charge; every charge has it
	sessions := map[uint64]int{}
	marked := map[int64]bool{}
	for i := range entries {
		e := &entries[i]
		if e.Seq != int64(i) {
			return nil, bad(i, "sequence number %d, want %d", e.Seq, i)
		}
		sig, err := base64.StdEncoding.DecodeString(e.Sig)
		if err != nil || len(sig) != ed25519.SignatureSize || !ed25519.Verify(pub, e.signed(), sig) {
			return nil, bad(i, "signature does not verify under the owner key")
		}
		if i > 0 {
			if e.Accountant != open.Accountant || e.Relation != open.Relation || e.Delta != open.Delta || e.Cap != open.Cap {
				return nil, bad(i, "budget terms differ from the open entry")
			}
			if e.Kind == "outcome" {
				if err := checkOutcome(entries[:i], e, marked); err != nil {
					return nil, bad(i, "%v", err)
				}
				if e.Epsilon != eps[i-1] {
					return nil, bad(i, "an outcome mark changes the cumulative ε from %s to %s; it costs nothing",
						strconv.FormatFloat(eps[i-1], 'g', 10, 64), strconv.FormatFloat(e.Epsilon, 'g', 10, 64))
				}
				marked[e.Of] = true
				eps[i] = eps[i-1]
				continue
			}
			if e.Kind != "charge" {
				return nil, bad(i, "kind %q, want charge or outcome", truncate(e.Kind, 20))
			}
			if e.Of != 0 || e.Outcome != "" {
				return nil, bad(i, "a charge carries an outcome")
			}
			ev := e.event()
			if err := ev.Validate(); err != nil {
				return nil, bad(i, "%v", err)
			}
			if e.Level != RecordLevel && e.Level != ClientLevel {
				return nil, bad(i, "level %q is neither record nor client", truncate(string(e.Level), 20))
			}
			if e.Session != 0 {
				if j, dup := sessions[e.Session]; dup {
					return nil, bad(i, "charges session %d again (entry %d charged it): one charge per session", e.Session, j)
				}
				sessions[e.Session] = i
			}
			if level == "" {
				level = e.Level
			} else if e.Level != level {
				return nil, bad(i, "a %s-level charge in a ledger of %s-level charges: ε at one level says nothing at the other", e.Level, level)
			}
			if e.Protects != relationText(e.Level) {
				return nil, bad(i, "says it protects %q; %s-level ε protects %q", truncate(e.Protects, 60), e.Level, relationText(e.Level))
			}
			if p := e.plan(); p != nil {
				if err := checkPlan(p, ev); err != nil {
					return nil, bad(i, "round %d: %v", e.Round, strings.TrimPrefix(err.Error(), "dp: "))
				}
			} else if ev.Mechanism == DiscreteGaussianMechanism {
				return nil, bad(i, "round %d: a distributed discrete Gaussian charge without its noise plan: its multiplier cannot be re-derived", e.Round)
			} else if e.Threshold != 0 || e.Colluders != 0 || e.MinCohort != 0 || e.Participants != 0 || e.GridStep != 0 || e.Dim != 0 || e.RingBits != 0 || e.SiteSigma != 0 || e.Clip != 0 {
				return nil, bad(i, "records noise-plan fields without a release")
			}
			events = append(events, ev)
			got, err := Epsilon(open.Accountant, rel, open.Delta, mergeEvents(events)...)
			if err != nil {
				return nil, bad(i, "%v", err)
			}
			if math.Abs(got-e.Epsilon) > 1e-9*math.Max(got, 1e-9) {
				return nil, bad(i, "records cumulative ε %s; its parameters give %s", strconv.FormatFloat(e.Epsilon, 'g', 10, 64), strconv.FormatFloat(got, 'g', 10, 64))
			}
			var patient float64
			if e.Level == ClientLevel {
				if patient, err = PatientEpsilon(open.Accountant, open.Delta, events...); err != nil {
					return nil, bad(i, "%v", err)
				}
			}
			if math.Abs(patient-e.PatientEpsilon) > 1e-9*math.Max(patient, 1e-9) {
				return nil, bad(i, "records cumulative per-patient ε %s; its parameters give %s", strconv.FormatFloat(e.PatientEpsilon, 'g', 10, 64), strconv.FormatFloat(patient, 'g', 10, 64))
			}
			if got > open.Cap*(1+1e-12) {
				return nil, bad(i, "cumulative ε %.6g is above the cap %.6g", got, open.Cap)
			}
			eps[i] = got
		}
	}
	return eps, nil
}

// checkOutcome checks an outcome entry e against the entries before it:
// it marks an existing charge, once, repeating its run, round and release,
// and records nothing that costs.
func checkOutcome(before []Entry, e *Entry, marked map[int64]bool) error {
	if e.Outcome != Opened && e.Outcome != Unopened {
		return fmt.Errorf("outcome %q is neither opened nor unopened", truncate(string(e.Outcome), 20))
	}
	if e.Of < 1 || e.Of >= int64(len(before)) || before[e.Of].Kind != "charge" {
		return fmt.Errorf("marks entry %d, which is not an earlier charge", e.Of)
	}
	ch := &before[e.Of]
	if e.RunID != ch.RunID || e.Round != ch.Round || e.Release != ch.Release {
		return fmt.Errorf("marks run %q round %d (%s) but entry %d is run %q round %d (%s)",
			truncate(e.RunID, 20), e.Round, e.Release, e.Of, ch.RunID, ch.Round, ch.Release)
	}
	if marked[e.Of] {
		return fmt.Errorf("marks the charge at entry %d a second time", e.Of)
	}
	z := Entry{Seq: e.Seq, Time: e.Time, Kind: e.Kind, Accountant: e.Accountant, Relation: e.Relation, Delta: e.Delta, Cap: e.Cap,
		RunID: e.RunID, Round: e.Round, Release: e.Release, Of: e.Of, Outcome: e.Outcome, Epsilon: e.Epsilon, Sig: e.Sig}
	if *e != z {
		return errors.New("an outcome mark records charge parameters")
	}
	return nil
}

// entryError names the first entry that fails verification.
type entryError struct {
	index int
	msg   string
}

func (e *entryError) Error() string {
	return fmt.Sprintf("%v: entry %d (line %d): %s", ErrCorruptLedger, e.index, e.index+1, e.msg)
}

func (e *entryError) Unwrap() error { return ErrCorruptLedger }

// An Audit is the result of AuditLedger.
type Audit struct {
	OK      bool    `json:"ok"`
	Entries int     `json:"entries"`
	Charges int     `json:"charges"` // charge entries, of Entries
	Epsilon float64 `json:"epsilon"`
	// PatientEpsilon is the per-patient ε of the last client-level charge,
	// verified (0 if there is none).
	PatientEpsilon float64 `json:"patient_epsilon,omitempty"`
	Cap            float64 `json:"epsilon_cap"`
	Delta          float64 `json:"delta"`
	Problem        string  `json:"problem,omitempty"`
	FirstBad       int     `json:"first_bad_entry,omitempty"`
	// Checkpoints lists every checkpoint checked, the one beside the
	// ledger first.
	Checkpoints []CheckpointCheck `json:"checkpoints"`
	// External counts the checkpoints the auditor gave (AuditOptions) that
	// verified and match: only those can show that the ledger was not cut
	// together with its own checkpoint, or restored from an earlier copy.
	External int `json:"external_checkpoints"`
	// Limit says, when External is 0, what the audit cannot detect.
	Limit string `json:"limit,omitempty"`
	// Unplanned counts the charges that record no noise plan: their
	// multipliers are taken as recorded, not re-derived.
	Unplanned int `json:"unplanned_charges,omitempty"`
}

// NoExternalCheckpoint is Audit.Limit when the auditor gave no checkpoint.
const NoExternalCheckpoint = "no external checkpoint was given: a ledger cut short together with the checkpoint beside it, or restored with it from an earlier copy (a rollback), cannot be detected; give a checkpoint kept elsewhere (a witness's or a site's copy)"

// A CheckpointCheck is the outcome of one checkpoint in an audit.
type CheckpointCheck struct {
	// Source says where the checkpoint came from: "beside the ledger", a
	// file name, or "given #i".
	Source string `json:"source"`
	// External is true for a checkpoint the auditor gave; false for one
	// found with the ledger (beside it or in its witness directory), which
	// whoever can rewrite the ledger can rewrite too.
	External bool  `json:"external"`
	Size     int64 `json:"size,omitempty"`
	// Cosigners lists the witnesses (of AuditOptions.Witnesses) whose
	// cosignatures verified.
	Cosigners []string `json:"cosigners,omitempty"`
	OK        bool     `json:"ok"`
	Problem   string   `json:"problem,omitempty"`
}

// AuditOptions gives an audit the checkpoints held outside the ledger's
// directory and the witnesses whose cosignatures to verify.
type AuditOptions struct {
	// Checkpoints are checkpoint notes, CheckpointFiles files holding one.
	Checkpoints     [][]byte
	CheckpointFiles []string
	// Witnesses maps a witness's name to its Ed25519 public key.
	Witnesses map[string]ed25519.PublicKey
	// Heads are tree heads of the ledger that the caller has verified
	// another way (a site's signed state anchors its ledger's). They are
	// checked like checkpoints; kept beside the ledger, they do not count
	// as external.
	Heads []TreeHead
}

// A TreeHead is the size and root of a ledger's tree at some point, and
// where it was found.
type TreeHead struct {
	Source string
	Size   int64
	Root   tlog.Hash
}

// WitnessDir is the directory, beside a ledger, where copies of its
// checkpoints cosigned by witnesses are kept (<dir>/witness/*.checkpoint);
// AuditLedger checks every one found there.
const WitnessDir = "witness"

// AuditLedger verifies a whole ledger against the owner's public key:
// every signature, every ε recomputed from its recorded parameters, and
// the Merkle tree of its lines against every checkpoint: the one beside
// it, those in <dir>/witness/*.checkpoint, and those given in opt (at
// most one AuditOptions). A checkpoint covering more entries than the
// ledger holds fails with ErrLedgerTruncated (the ledger was cut short or
// rolled back); one whose root the ledger's first entries do not give
// fails with ErrLedgerForked. The error names the first problem; the
// Audit lists every checkpoint and its outcome.
func AuditLedger(path string, pub ed25519.PublicKey, opt ...AuditOptions) (Audit, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Audit{}, fmt.Errorf("dp: public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	if len(opt) > 1 {
		return Audit{}, errors.New("dp: AuditLedger takes at most one AuditOptions")
	}
	var o AuditOptions
	if len(opt) == 1 {
		o = opt[0]
	}
	entries, lines, err := readLedger(path)
	a := Audit{Entries: len(entries), Checkpoints: []CheckpointCheck{}}
	if len(entries) > 0 {
		a.Cap, a.Delta = entries[0].Cap, entries[0].Delta
	}
	var first error
	fail := func(err error, bad int) {
		if first == nil {
			first, a.Problem, a.FirstBad = err, err.Error(), bad
		}
	}
	if err != nil {
		fail(err, len(entries))
	} else if eps, err := verifyEntries(entries, pub); err != nil {
		var ee *entryError
		errors.As(err, &ee)
		fail(err, ee.index)
	} else {
		a.Epsilon = eps[len(eps)-1]
		for i := range entries {
			if entries[i].Kind == "charge" && entries[i].Level == ClientLevel {
				a.PatientEpsilon = entries[i].PatientEpsilon
			}
		}
	}
	for i := range entries {
		if entries[i].Kind == "charge" {
			a.Charges++
			if entries[i].Release == "" {
				a.Unplanned++
			}
		}
	}
	// The tree of the lines that parsed: checkpoints are checked even when
	// an entry fails, so the report shows them all.
	var tree merkleTree
	for _, line := range lines {
		if err := tree.add(line); err != nil {
			fail(err, len(entries))
			break
		}
	}
	check := func(src string, external bool, cp *Checkpoint, err error) {
		c := CheckpointCheck{Source: src, External: external}
		if err == nil {
			c.Size, c.Cosigners = cp.Size, cp.Cosigners
			err = tree.checkAgainst(cp)
		}
		if err != nil {
			c.Problem = err.Error()
			fail(fmt.Errorf("%w (checkpoint %s)", err, src), len(entries))
		} else {
			c.OK = true
			if external {
				a.External++
			}
		}
		a.Checkpoints = append(a.Checkpoints, c)
	}
	beside := path + CheckpointSuffix
	cp, err := ReadCheckpoint(beside, pub, o.Witnesses)
	if errors.Is(err, fs.ErrNotExist) {
		if len(lines) > 1 {
			check("beside the ledger ("+beside+")", false, nil, fmt.Errorf("%w: it is missing while the ledger holds %d entries", ErrCheckpoint, len(lines)))
		}
	} else {
		check("beside the ledger ("+beside+")", false, cp, err)
	}
	found, _ := filepath.Glob(filepath.Join(filepath.Dir(path), WitnessDir, "*"+CheckpointSuffix))
	for _, f := range found {
		cp, err := ReadCheckpoint(f, pub, o.Witnesses)
		check(f, false, cp, err)
	}
	for _, f := range o.CheckpointFiles {
		cp, err := ReadCheckpoint(f, pub, o.Witnesses)
		check(f, true, cp, err)
	}
	for i, msg := range o.Checkpoints {
		cp, err := OpenCheckpoint(msg, pub, o.Witnesses)
		check(fmt.Sprintf("given #%d", i+1), true, cp, err)
	}
	for _, h := range o.Heads {
		var err error
		if h.Size < 0 {
			err = fmt.Errorf("%w: a tree head of %d entries", ErrCheckpoint, h.Size)
		}
		check(h.Source, false, &Checkpoint{Size: h.Size, Root: h.Root}, err)
	}
	if a.External == 0 {
		a.Limit = NoExternalCheckpoint
	}
	if first != nil {
		return a, first
	}
	a.OK = true
	return a, nil
}

// RecoverLedger moves an incomplete last line (left by a crash mid-write)
// to path + ".torn" and truncates the ledger after its last complete line,
// syncing both. It refuses unless the ledger is torn and every complete
// line parses; it never touches a complete line.
func RecoverLedger(path string) (int, error) {
	entries, err := ReadLedger(path)
	if !errors.Is(err, ErrTornLedger) {
		if err == nil {
			return 0, errors.New("dp: ledger is not torn; nothing to recover")
		}
		return 0, err
	}
	data, rerr := os.ReadFile(path)
	if rerr != nil {
		return 0, rerr
	}
	good := bytes.LastIndexByte(data, '\n') + 1
	if err := writeSynced(path+".torn", data[good:]); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := f.Truncate(int64(good)); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	return len(entries), nil
}

// writeDurable replaces the file at path with b so that a crash leaves the
// old contents or the new, never a mix: a temporary file in the same
// directory, fsync, rename over path, fsync of the directory.
func writeDurable(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("dp: saving torn fragment: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ParsePublicKey reads an Ed25519 public key given as base64 or hex.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == ed25519.PublicKeySize {
		return b, nil
	}
	if b, err := hex.DecodeString(s); err == nil && len(b) == ed25519.PublicKeySize {
		return b, nil
	}
	return nil, fmt.Errorf("dp: %q is not a 32-byte Ed25519 public key in base64 or hex", truncate(s, 20))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Head returns the ledger's tree head: its size and root hash (RFC 6962
// §2.1), as its latest checkpoint states them.
func (l *Ledger) Head() (int64, tlog.Hash) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, err := l.tree.root(l.tree.n)
	if err != nil {
		panic(err) // unreachable: the size is the tree's own
	}
	return l.tree.n, r
}

// TreeRoot returns the root hash (RFC 6962 §2.1) of the tree whose leaves
// are the lines of entries, as ReadLedger returned them: the root a
// checkpoint of those entries states.
func TreeRoot(entries []Entry) (tlog.Hash, error) {
	var t merkleTree
	for i := range entries {
		if err := t.add(entries[i].line()); err != nil {
			return tlog.Hash{}, err
		}
	}
	return t.root(t.n)
}

// PublicKey returns the public key of the key that signs the ledger.
func (l *Ledger) PublicKey() ed25519.PublicKey { return l.key.Public().(ed25519.PublicKey) }
