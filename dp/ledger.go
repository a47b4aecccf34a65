package dp

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrBudgetExceeded is returned (wrapped) by Ledger.Charge when the charge
// would take the cumulative ε past the ledger's cap. Nothing is written.
var ErrBudgetExceeded = errors.New("dp: privacy budget exceeded")

// ErrTornLedger is returned (wrapped) when a ledger's last line is
// incomplete: a write was interrupted. The signed entries before it are
// intact; RecoverLedger moves the fragment aside.
var ErrTornLedger = errors.New("dp: ledger ends in an incomplete line")

// ErrCorruptLedger is returned (wrapped) when a complete ledger line does
// not parse, is out of sequence, breaks the hash chain, carries a bad
// signature, or records an ε that its parameters do not give.
var ErrCorruptLedger = errors.New("dp: ledger entry fails verification")

// ledgerDomain prefixes every hashed entry, so a ledger hash can never be
// confused with a hash of anything else fl-secure signs.
const ledgerDomain = "fl-secure/ledger/v1\n"

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
// every later entry (Kind "charge") records one release and the cumulative
// ε after it. Hash is SHA-256 over ledgerDomain and the entry's canonical
// JSON (the entry with Hash and Sig empty, fields in this order, numbers in
// Go's shortest round-trip form); Sig is the owner's Ed25519 signature of
// Hash.
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
	RunID           string  `json:"run_id,omitempty"`
	Round           int     `json:"round,omitempty"`
	Level           Level   `json:"level,omitempty"`
	Mechanism       string  `json:"mechanism,omitempty"`
	NoiseMultiplier float64 `json:"noise_multiplier,omitempty"`
	Sigma           float64 `json:"sigma,omitempty"`
	Clip            float64 `json:"clip,omitempty"`
	SamplingRate    float64 `json:"sampling_rate,omitempty"`
	Steps           int     `json:"steps,omitempty"`
	Participants    int     `json:"participants,omitempty"`
	Survivors       int     `json:"survivors,omitempty"`
	Colluders       int     `json:"colluders,omitempty"`
	EpsilonRound    float64 `json:"epsilon_round,omitempty"`
	Epsilon         float64 `json:"epsilon"`

	Prev string `json:"prev"`
	Hash string `json:"hash,omitempty"`
	Sig  string `json:"sig,omitempty"`
}

// event returns the accountant event a charge entry records.
func (e *Entry) event() Event {
	return Event{Mechanism(e.Mechanism), e.NoiseMultiplier, e.SamplingRate, e.Steps}
}

func (e *Entry) canonical() []byte {
	c := *e
	c.Hash, c.Sig = "", ""
	b, err := json.Marshal(&c)
	if err != nil {
		panic("dp: internal error: " + err.Error())
	}
	return b
}

func (e *Entry) digest() []byte {
	h := sha256.New()
	h.Write([]byte(ledgerDomain))
	h.Write(e.canonical())
	return h.Sum(nil)
}

// A Charge describes one release to record: what was run and every
// parameter the accountant needs.
type Charge struct {
	RunID        string
	Round        int
	Level        Level
	Event        Event   // mechanism, noise multiplier, sampling rate, steps
	Sigma        float64 // noise standard deviation in update units
	Clip         float64 // L2 clipping norm
	Participants int
	Survivors    int
	Colluders    int
}

// LedgerOptions fix a new ledger's budget.
type LedgerOptions struct {
	Accountant string // "rdp" or "pld"
	Relation   Neighbouring
	Delta      float64
	Cap        float64 // the largest cumulative ε the ledger allows
}

// A Ledger is an append-only, hash-chained, signed JSON Lines record of
// privacy spending. Each entry is written and fsync'ed before Charge
// returns, so callers publish a result only after its cost is on disk.
// One process at a time may write a ledger.
type Ledger struct {
	path    string
	f       *os.File
	key     ed25519.PrivateKey
	open    Entry
	last    Entry
	charges []Entry
	spent   float64
}

// CreateLedger creates a new ledger at path (which must not exist), owned
// and signed by key.
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
		Prev: hex.EncodeToString(make([]byte, 32)),
	}
	if err := l.append(&l.open); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	// Make the new directory entry durable too.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	l.last = l.open
	return l, nil
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// append signs e, writes it as one line and fsyncs.
func (l *Ledger) append(e *Entry) error {
	e.Hash = hex.EncodeToString(e.digest())
	h, _ := hex.DecodeString(e.Hash)
	e.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(l.key, h))
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("dp: internal error: %w", err)
	}
	line = append(line, '\n')
	if _, err := l.f.Write(line); err != nil {
		return fmt.Errorf("dp: writing ledger %s: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("dp: syncing ledger %s: %w", l.path, err)
	}
	return nil
}

// OpenLedger opens an existing ledger for appending. Every entry is
// verified first (ReadLedger's checks plus the signatures against key's
// public half); a torn or corrupt ledger is refused.
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
	entries, err := ReadLedger(path)
	if err == nil {
		_, err = verifyEntries(entries, key.Public().(ed25519.PublicKey))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	l := &Ledger{path: path, f: f, key: key, open: entries[0], last: entries[len(entries)-1], charges: entries[1:]}
	l.spent = l.last.Epsilon
	return l, nil
}

// Close closes the ledger file, which releases its lock.
func (l *Ledger) Close() error { return l.f.Close() }

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
func (l *Ledger) Spent() float64 { return l.spent }

// Cap returns the ledger's ε cap.
func (l *Ledger) Cap() float64 { return l.open.Cap }

// Delta returns the ledger's δ.
func (l *Ledger) Delta() float64 { return l.open.Delta }

// Preview returns the cumulative ε the ledger would hold after c, without
// writing anything; it wraps ErrBudgetExceeded if that passes the cap.
func (l *Ledger) Preview(c Charge) (float64, error) {
	if err := checkCharge(c); err != nil {
		return 0, err
	}
	events := make([]Event, 0, len(l.charges)+1)
	for i := range l.charges {
		events = append(events, l.charges[i].event())
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
// appends a signed entry and fsyncs before returning it.
func (l *Ledger) Charge(c Charge) (Entry, error) {
	eps, err := l.Preview(c)
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
		RunID: c.RunID, Round: c.Round, Level: c.Level,
		Mechanism: string(c.Event.Mechanism), NoiseMultiplier: c.Event.NoiseMultiplier,
		Sigma: c.Sigma, Clip: c.Clip, SamplingRate: c.Event.SamplingRate, Steps: c.Event.Count,
		Participants: c.Participants, Survivors: c.Survivors, Colluders: c.Colluders,
		EpsilonRound: alone, Epsilon: eps,
		Prev: l.last.Hash,
	}
	if err := l.append(&e); err != nil {
		return Entry{}, err
	}
	l.charges = append(l.charges, e)
	l.last, l.spent = e, eps
	return e, nil
}

func checkCharge(c Charge) error {
	if err := c.Event.Validate(); err != nil {
		return err
	}
	if c.Level != RecordLevel && c.Level != ClientLevel {
		return fmt.Errorf("dp: charge level %q is neither record nor client", c.Level)
	}
	if c.Round < 0 || c.Participants < 0 || c.Survivors < 0 || c.Colluders < 0 {
		return errors.New("dp: negative round or client count in charge")
	}
	if c.Sigma < 0 || c.Clip < 0 || math.IsNaN(c.Sigma) || math.IsNaN(c.Clip) {
		return errors.New("dp: negative or NaN σ or clip in charge")
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
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dp: reading ledger: %w", err)
	}
	return parseLedger(data)
}

func parseLedger(data []byte) ([]Entry, error) {
	var entries []Entry
	off := 0
	for lineNo := 1; off < len(data); lineNo++ {
		end := bytes.IndexByte(data[off:], '\n')
		if end < 0 {
			return entries, fmt.Errorf("%w: line %d (byte %d, %d bytes) has no newline; the %d entries before it are intact; run `fl-secure budget recover` to move it aside", ErrTornLedger, lineNo, off, len(data)-off, len(entries))
		}
		line := data[off : off+end]
		if len(line) > maxLedgerLine {
			return entries, fmt.Errorf("%w: line %d is %d bytes, over the %d-byte limit", ErrCorruptLedger, lineNo, len(line), maxLedgerLine)
		}
		var e Entry
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return entries, fmt.Errorf("%w: line %d does not parse: %v", ErrCorruptLedger, lineNo, err)
		}
		if dec.More() {
			return entries, fmt.Errorf("%w: line %d has data after its entry", ErrCorruptLedger, lineNo)
		}
		entries = append(entries, e)
		off += end + 1
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("%w: the ledger is empty", ErrCorruptLedger)
	}
	if entries[0].Kind != "open" {
		return entries, fmt.Errorf("%w: line 1 is a %q entry, want the open entry", ErrCorruptLedger, entries[0].Kind)
	}
	return entries, nil
}

// verifyEntries checks sequence numbers, the hash chain, every signature
// against pub, that the budget terms never change, and that every
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
	prev := hex.EncodeToString(make([]byte, 32))
	for i := range entries {
		e := &entries[i]
		if e.Seq != int64(i) {
			return nil, bad(i, "sequence number %d, want %d", e.Seq, i)
		}
		if e.Prev != prev {
			return nil, bad(i, "previous hash %.16s… does not match entry %d's %.16s…", e.Prev, i-1, prev)
		}
		d := e.digest()
		if e.Hash != hex.EncodeToString(d) {
			return nil, bad(i, "hash does not match its contents (altered after signing)")
		}
		sig, err := base64.StdEncoding.DecodeString(e.Sig)
		if err != nil || len(sig) != ed25519.SignatureSize || !ed25519.Verify(pub, d, sig) {
			return nil, bad(i, "signature does not verify under the owner key")
		}
		if i > 0 {
			if e.Kind != "charge" {
				return nil, bad(i, "kind %q, want charge", e.Kind)
			}
			if e.Accountant != open.Accountant || e.Relation != open.Relation || e.Delta != open.Delta || e.Cap != open.Cap {
				return nil, bad(i, "budget terms differ from the open entry")
			}
			ev := e.event()
			if err := ev.Validate(); err != nil {
				return nil, bad(i, "%v", err)
			}
			events = append(events, ev)
			got, err := Epsilon(open.Accountant, rel, open.Delta, mergeEvents(events)...)
			if err != nil {
				return nil, bad(i, "%v", err)
			}
			if math.Abs(got-e.Epsilon) > 1e-9*math.Max(got, 1e-9) {
				return nil, bad(i, "records cumulative ε %s; its parameters give %s", strconv.FormatFloat(e.Epsilon, 'g', 10, 64), strconv.FormatFloat(got, 'g', 10, 64))
			}
			if got > open.Cap*(1+1e-12) {
				return nil, bad(i, "cumulative ε %.6g is above the cap %.6g", got, open.Cap)
			}
			eps[i] = got
		}
		prev = e.Hash
	}
	return eps, nil
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
	OK       bool    `json:"ok"`
	Entries  int     `json:"entries"`
	Epsilon  float64 `json:"epsilon"`
	Cap      float64 `json:"epsilon_cap"`
	Delta    float64 `json:"delta"`
	Problem  string  `json:"problem,omitempty"`
	FirstBad int     `json:"first_bad_entry,omitempty"`
}

// AuditLedger verifies a whole ledger against the owner's public key: the
// hash chain, every signature, and every ε recomputed from its recorded
// parameters. The error, if any, names the first bad entry.
func AuditLedger(path string, pub ed25519.PublicKey) (Audit, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Audit{}, fmt.Errorf("dp: public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	entries, err := ReadLedger(path)
	a := Audit{Entries: len(entries)}
	if len(entries) > 0 {
		a.Cap, a.Delta = entries[0].Cap, entries[0].Delta
	}
	if err != nil {
		a.Problem, a.FirstBad = err.Error(), len(entries)
		return a, err
	}
	eps, err := verifyEntries(entries, pub)
	if err != nil {
		var ee *entryError
		errors.As(err, &ee)
		a.Problem, a.FirstBad = err.Error(), ee.index
		return a, err
	}
	a.OK, a.Epsilon = true, eps[len(eps)-1]
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
