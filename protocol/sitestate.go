package protocol

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/fl-secure/fl-secure/dp"
)

// siteStateFile holds what a site remembers between rounds and restarts
// beyond its ledger: the newest session it joined, and the one survivor set
// over which it let the federation's statistics be opened.
const siteStateFile = "site-state.json"

type siteState struct {
	// LastSession is the newest session identifier this site joined. A
	// RoundStart must carry a larger one: a coordinator cannot replay a
	// session or take a site back to an earlier round.
	LastSession uint64 `json:"last_session"`
	// Statistics lists the sites (roster numbers) of the survivor set this
	// site signed in a statistics round. The site signs no other survivor
	// set in a statistics round, ever: two sums opened over different sets
	// would be two releases, their difference isolating the sites in one
	// and not the other.
	Statistics []int `json:"statistics_survivors,omitempty"`
	// HEStatistics is the session in which this site submitted its
	// encrypted statistics (mode he), once: the coordinator picks the
	// contributors of a sum after the submissions, so a second submission
	// could be decrypted in a sum over another set.
	HEStatistics uint64 `json:"he_statistics_session,omitempty"`
	// PlainStatistics is the session in which this site sent its statistics
	// in the clear (mode plain, which it allows only with AllowPlain).
	PlainStatistics uint64 `json:"plain_statistics_session,omitempty"`
	// Unopened counts the rounds this site has paid for since the last one
	// it saw open. A coordinator (or a site that withholds its signature
	// after everyone paid) could otherwise make it pay for round after
	// round that never opens; at MaxUnopened the site stops paying.
	Unopened int `json:"unopened_paid_rounds,omitempty"`
	// LedgerEntries and LedgerRoot are the tree head of this site's ledger
	// after the newest charge: its size and the base64 RFC 6962 root hash
	// of its first LedgerEntries entries (dp.TreeRoot). A ledger found
	// shorter, or whose first entries hash to another root, was
	// truncated, deleted, rolled back or rewritten (its ε would come back).
	LedgerEntries int64  `json:"ledger_entries,omitempty"`
	LedgerRoot    string `json:"ledger_root,omitempty"`
	// Witnessed and WitnessedRoot are the tree size and base64 root hash
	// of the newest checkpoint of the coordinator's ledger this site
	// cosigned, which coordinator.checkpoint holds: a file found older
	// was rolled back, and a coordinator ledger rolled back with it would
	// pass.
	Witnessed     int64  `json:"witnessed_entries,omitempty"`
	WitnessedRoot string `json:"witnessed_root,omitempty"`
}

// statisticsReleased says in which mode this site has already let its
// statistics be opened, or "" if in none. The statistics are released in
// one mode, once: a sum over one set in secagg mode and a sum over another
// in he mode would disclose their difference just as two secagg sums would.
func (st *siteState) statisticsReleased() string {
	switch {
	case st.Statistics != nil:
		return fmt.Sprintf("in secagg mode over sites %v", st.Statistics)
	case st.HEStatistics != 0:
		return fmt.Sprintf("in he mode (%s)", sessionName(st.HEStatistics))
	case st.PlainStatistics != 0:
		return fmt.Sprintf("in plain mode (%s)", sessionName(st.PlainStatistics))
	}
	return ""
}

// stateFile is the file's form: the state and the site's Ed25519
// signature over a domain string and its JSON, so that a hand-edited or
// zeroed file is refused rather than taken as a fresh site.
type stateFile struct {
	State json.RawMessage `json:"state"`
	Sig   []byte          `json:"sig"`
}

const stateDomain = "fl-secure/site-state/v1\n"

// loadSiteState reads and verifies the state file. A missing file is a
// fresh site only if nothing else of a site is in dir: with a ledger, its
// checkpoint, or a threshold key present (or a ledger.pub an earlier
// version wrote) it means the file was lost or deleted, and
// forgetting it would let a coordinator replay sessions or open the
// statistics twice. The state must also be at least as new as the ledger.
func loadSiteState(dir string, identity ed25519.PrivateKey) (siteState, error) {
	var st siteState
	path := filepath.Join(dir, siteStateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		for _, other := range []string{"site-ledger.jsonl", "site-ledger.jsonl" + dp.CheckpointSuffix, "ledger-key.pem", staleLedgerPub, "he-party.bin", witnessFile} {
			if _, err := os.Stat(filepath.Join(dir, other)); err == nil {
				return st, fmt.Errorf("protocol: %s is missing while %s exists; restore it from a backup (a site that forgot it could be made to replay sessions or release its statistics twice)", path, other)
			}
		}
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("protocol: reading the site state: %w", err)
	}
	var f stateFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil || len(f.State) == 0 {
		return st, fmt.Errorf("protocol: %s is corrupt; restore it from a backup, never delete it", path)
	}
	pub := identity.Public().(ed25519.PublicKey)
	if !ed25519.Verify(pub, append([]byte(stateDomain), f.State...), f.Sig) {
		return st, fmt.Errorf("protocol: %s is not signed by this site's identity key: it was altered; restore it from a backup", path)
	}
	dec = json.NewDecoder(bytes.NewReader(f.State))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return st, fmt.Errorf("protocol: %s is corrupt (%v); restore it from a backup, never delete it", path, err)
	}
	// Sessions are joined before anything is charged in them.
	ledger := filepath.Join(dir, "site-ledger.jsonl")
	es, err := dp.ReadLedger(ledger)
	if err == nil {
		for _, e := range es {
			if e.Kind == "charge" && e.Round > roundOf(st.LastSession) {
				return st, fmt.Errorf("protocol: %s is older than the ledger (it last joined round %d, the ledger charges round %d): restore the matching state", path, roundOf(st.LastSession), e.Round)
			}
		}
	}
	if st.LedgerEntries > 0 {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return st, fmt.Errorf("protocol: %s is missing, though this site has charged it %d entries: restore it from a backup (a new ledger would give back the ε spent)", ledger, st.LedgerEntries)
		case err != nil && !errors.Is(err, dp.ErrTornLedger):
			return st, err
		case int64(len(es)) < st.LedgerEntries || treeRoot(es[:st.LedgerEntries]) != st.LedgerRoot:
			return st, fmt.Errorf("protocol: %s holds %d entries and not the %d this site last wrote (tree root %.12s…): it was truncated or rolled back; restore it (its ε would come back)", ledger, len(es), st.LedgerEntries, st.LedgerRoot)
		}
	}
	return st, nil
}

func (s *Site) saveState() error {
	b, err := json.Marshal(&s.state)
	if err != nil {
		return err
	}
	f := stateFile{State: b, Sig: ed25519.Sign(s.identity, append([]byte(stateDomain), b...))}
	out, err := json.Marshal(&f)
	if err != nil {
		return err
	}
	if err := s.cfg.hooks.crashAt("site state", roundOf(s.state.LastSession)); err != nil {
		return err
	}
	if err := writeState(filepath.Join(s.cfg.State, siteStateFile), out, !s.cfg.NoSync); err != nil {
		return err
	}
	return s.cfg.hooks.crashAt("site state written", roundOf(s.state.LastSession))
}

// joinSession records sid as the newest session this site joined, on disk,
// before the site sends anything in it.
func (s *Site) joinSession(sid uint64) error {
	if sid <= s.state.LastSession {
		return fmt.Errorf("%s is not newer than the last this site joined (%s): a replayed or rolled-back round",
			sessionName(sid), sessionName(s.state.LastSession))
	}
	prev := s.state.LastSession
	s.state.LastSession = sid
	if err := s.saveState(); err != nil {
		s.state.LastSession = prev
		return err
	}
	return nil
}

// signStatistics checks that survivors (roster numbers) is the one
// statistics survivor set this site may sign, recording it on first use.
func (s *Site) signStatistics(survivors []int) error {
	if s.state.Statistics != nil {
		if !slices.Equal(s.state.Statistics, survivors) {
			return fmt.Errorf("this site has signed the statistics survivor set %v and signs no other (asked for %v)", s.state.Statistics, survivors)
		}
		return nil
	}
	s.state.Statistics = slices.Clone(survivors)
	if err := s.saveState(); err != nil {
		s.state.Statistics = nil
		return err
	}
	return nil
}

// submitHEStatistics records, before the submission leaves, that this site
// submitted its statistics in session sid; it refuses a second time.
func (s *Site) submitHEStatistics(sid uint64) error {
	if done := s.state.statisticsReleased(); done != "" {
		return fmt.Errorf("this site has already released its statistics %s; it releases them once", done)
	}
	s.state.HEStatistics = sid
	if err := s.saveState(); err != nil {
		s.state.HEStatistics = 0
		return err
	}
	return nil
}

// sendPlainStatistics records, before they leave, that this site sent its
// statistics in the clear in session sid; it refuses a second time.
func (s *Site) sendPlainStatistics(sid uint64) error {
	if done := s.state.statisticsReleased(); done != "" {
		return fmt.Errorf("this site has already released its statistics %s; it releases them once", done)
	}
	s.state.PlainStatistics = sid
	if err := s.saveState(); err != nil {
		s.state.PlainStatistics = 0
		return err
	}
	return nil
}

// charge records a charge in the ledger and counts it as unopened until the
// round's result arrives.
func (s *Site) charge(c dp.Charge) error {
	if err := s.cfg.hooks.crashAt("site charge", c.Round); err != nil {
		return err
	}
	e, err := s.ledger.Charge(c)
	if err != nil {
		return err
	}
	if err := s.cfg.hooks.crashAt("site charged", c.Round); err != nil {
		return err
	}
	s.state.Unopened++
	n, root := s.ledger.Head()
	if n != e.Seq+1 {
		return fmt.Errorf("protocol: internal error: the ledger holds %d entries after charging entry %d", n, e.Seq)
	}
	s.state.LedgerEntries, s.state.LedgerRoot = n, base64.StdEncoding.EncodeToString(root[:])
	return s.saveState()
}

// anchorLedger brings the signed state up to the ledger's end. A site that
// stopped between a charge and the state write after it (a crash) left a
// charge past the state's anchor, where cutting it off would go unnoticed
// and give its ε back: it is anchored now, and counted as a paid round not
// seen open (the site stopped before its masked input left, so that round
// did not open with it).
func (s *Site) anchorLedger() error {
	es, err := dp.ReadLedger(filepath.Join(s.cfg.State, "site-ledger.jsonl"))
	if err != nil {
		return err
	}
	n := int64(len(es))
	if n <= s.state.LedgerEntries || n < 2 {
		return nil
	}
	for _, e := range es[s.state.LedgerEntries:] {
		if e.Kind == "charge" {
			s.state.Unopened++
		}
	}
	s.state.LedgerEntries, s.state.LedgerRoot = n, treeRoot(es)
	s.log.Warn("the ledger holds charges the site state did not record (it stopped between a charge and the state write); recorded now", "entries", n)
	return s.saveState()
}

// leave ends this site's part in session r. A session it paid for that
// ends before this site saw its sum open (its unmasking shares revealed;
// in he, the coordinator's word) is marked unopened in the ledger, as far
// as this site can tell, and the mark is anchored in the signed state.
// The ε stays spent either way.
func (s *Site) leave(r *siteRound) {
	if r == nil || r.charge == nil || r.settled || s.ledger == nil || (!r.charged && r.start.Mode != string(HE)) {
		return
	}
	r.settled = true
	seq, err := unmarkedCharge(filepath.Join(s.cfg.State, "site-ledger.jsonl"), r.charge)
	if err != nil || seq == 0 {
		if err != nil {
			s.log.Error("reading the ledger to mark a round unopened", "round", r.charge.Round, "err", err)
		}
		return
	}
	if err := s.cfg.hooks.crashAt("site mark", r.charge.Round); err != nil {
		return
	}
	if _, err := s.ledger.Mark(seq, dp.Unopened); err != nil {
		s.log.Error("marking a paid round unopened in the ledger", "round", r.charge.Round, "err", err)
		return
	}
	n, root := s.ledger.Head()
	s.state.LedgerEntries, s.state.LedgerRoot = n, base64.StdEncoding.EncodeToString(root[:])
	if err := s.saveState(); err != nil {
		s.log.Error("saving the site state", "err", err)
	}
}

// unmarkedCharge returns the sequence number of the latest charge in the
// ledger at path for ch's round and release if no outcome marks it yet,
// or 0. Sessions of a round follow one another and each charges once, so
// the latest is the session's own.
func unmarkedCharge(path string, ch *dp.Charge) (int64, error) {
	es, err := dp.ReadLedger(path)
	if err != nil {
		return 0, err
	}
	release := ""
	if ch.Plan != nil {
		release = ch.Plan.Release
	}
	var seq int64
	for _, e := range es {
		switch {
		case e.Kind == "charge" && e.Round == ch.Round && e.Release == release:
			seq = e.Seq
		case e.Kind == "outcome" && e.Of == seq:
			seq = 0
		}
	}
	return seq, nil
}

// opened notes that a round this site paid for opened.
func (s *Site) opened() {
	if s.state.Unopened == 0 {
		return
	}
	s.state.Unopened = 0
	if err := s.saveState(); err != nil {
		s.log.Error("saving the site state", "err", err)
	}
}

// treeRoot is the base64 tree root of entries (dp.TreeRoot), or "" if it
// cannot be computed, which matches no anchor.
func treeRoot(es []dp.Entry) string {
	r, err := dp.TreeRoot(es)
	if err != nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(r[:])
}

// sessionName names a session for people: its training round and the
// attempt within it (round 0 is the statistics round and the key ceremony).
func sessionName(sid uint64) string {
	return fmt.Sprintf("round %d, attempt %d", roundOf(sid), sid&(1<<20-1))
}

// SiteLedgerHead returns the tree head of site's ledger that the signed
// state in stateDir anchors, verified under the site's identity key from
// roster; ok is false when stateDir holds no site state or it anchors no
// ledger. An auditor checks the ledger against it (dp.AuditOptions.Heads):
// a ledger cut short, or restored from an earlier copy, without the state
// file fails. Kept beside the ledger, it does not catch a whole state
// directory restored from an earlier copy.
func SiteLedgerHead(stateDir string, roster *Roster, site int) (head dp.TreeHead, ok bool, err error) {
	if roster == nil || site < 1 || site > len(roster.Sites) {
		return head, false, fmt.Errorf("protocol: site %d is not in the roster", site)
	}
	path := filepath.Join(stateDir, siteStateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return head, false, nil
	}
	if err != nil {
		return head, false, err
	}
	if len(b) > 1<<20 {
		return head, false, fmt.Errorf("protocol: %s is %d bytes, not a site state", path, len(b))
	}
	var f stateFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil || len(f.State) == 0 {
		return head, false, fmt.Errorf("protocol: %s is corrupt", path)
	}
	pub := roster.identities()[site-1]
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, append([]byte(stateDomain), f.State...), f.Sig) {
		return head, false, fmt.Errorf("protocol: %s is not signed by site %d's identity key in the roster", path, site)
	}
	var st siteState
	dec = json.NewDecoder(bytes.NewReader(f.State))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return head, false, fmt.Errorf("protocol: %s is corrupt (%v)", path, err)
	}
	if st.LedgerEntries == 0 {
		return head, false, nil
	}
	root, err := base64.StdEncoding.DecodeString(st.LedgerRoot)
	if err != nil || len(root) != len(head.Root) {
		return head, false, fmt.Errorf("protocol: %s anchors a malformed ledger root", path)
	}
	head.Source = fmt.Sprintf("site %d's signed state (%s)", site, path)
	head.Size = st.LedgerEntries
	copy(head.Root[:], root)
	return head, true, nil
}
