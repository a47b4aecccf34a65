package protocol

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

// Witnesses. The coordinator's ledger is a transparency log (package dp):
// after every append its owner signs a checkpoint, the tree size and root
// hash. Every site cosigns that checkpoint before each round it is asked
// to join and once after the last round, after checking that it is signed
// by the coordinator ledger key of the roster (from the site's kit, never
// from the coordinator) and that it extends, by a consistency proof, the
// last checkpoint the site cosigned. The site keeps the newest checkpoint
// it cosigned (witnessFile, anchored in its signed state), the coordinator
// a copy of each site's (witnessDir). A coordinator ledger cut short,
// rolled back or rewritten after a site cosigned it then fails the next
// round at that site, and an audit with the sites' copies
// (WitnessCheckpoints, fl-secure budget audit --checkpoint) catches it.
//
// A round's charge is witnessed before its sum can open: after charging a
// session the coordinator sends the sites that will be asked to open it
// a second Witness of the session, with the checkpoint after the charge
// and the charge's line and inclusion proof (witnessCharge), and a site
// releases its unmasking shares or its decryption share only after
// cosigning it (cosignCharge, siteRound.chargeWitnessed). A ledger rolled
// back over an opened round is then smaller than what those sites hold.

// WitnessFile, in a site's state directory, holds the newest coordinator
// ledger checkpoint the site cosigned, with its cosignature: what the
// site hands an auditor (fl-secure budget audit --checkpoint).
const WitnessFile = "coordinator.checkpoint"

const (
	witnessFile = WitnessFile
	// witnessDir, in the coordinator's state directory, holds each site's
	// newest cosigned checkpoint as site-<N>.checkpoint.
	witnessDir = dp.WitnessDir
	// maxProof bounds a consistency proof's hashes: 2·log2 of any tree
	// size is below it.
	maxProof = 64
	// maxWitnessNote bounds a cosigned checkpoint read from a file or the
	// network (dp refuses larger ones too).
	maxWitnessNote = 16 << 10
)

// WitnessName is the name under which site cosigns the coordinator's
// ledger checkpoints; the cosignature verifies under the site's roster
// identity key.
func WitnessName(site int) string { return "fl-secure/site/" + strconv.Itoa(site) }

// openCosigned verifies that note is a checkpoint of the ledger owned by
// owner, cosigned by site under its roster identity key.
func openCosigned(note []byte, owner ed25519.PublicKey, roster *Roster, site int) (*dp.Checkpoint, error) {
	if site < 1 || site > len(roster.Sites) {
		return nil, fmt.Errorf("protocol: site %d is not on the roster", site)
	}
	name := WitnessName(site)
	cp, err := dp.OpenCheckpoint(note, owner, map[string]ed25519.PublicKey{name: roster.identities()[site-1]})
	if err != nil {
		return nil, err
	}
	if !slices.Contains(cp.Cosigners, name) {
		return nil, fmt.Errorf("protocol: the checkpoint carries no cosignature of site %d (%s)", site, name)
	}
	return cp, nil
}

// readNote reads a checkpoint note file of at most maxWitnessNote bytes.
func readNote(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxWitnessNote+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxWitnessNote {
		return nil, fmt.Errorf("protocol: %s is over %d bytes: not a checkpoint", path, maxWitnessNote)
	}
	return b, nil
}

func rootString(h tlog.Hash) string { return base64.StdEncoding.EncodeToString(h[:]) }

// ---- the site: a witness ----

// loadWitnessed reads the newest checkpoint this site cosigned and checks
// it against the signed state's anchor: a file missing, older, or not
// cosigned by this site was deleted, rolled back or altered, and a
// coordinator ledger rolled back to match it would go unnoticed. A file
// newer than the anchor (the site stopped between writing it and the
// state) is anchored now.
func (s *Site) loadWitnessed() error {
	path := filepath.Join(s.cfg.State, witnessFile)
	note, err := readNote(path)
	if errors.Is(err, fs.ErrNotExist) {
		if s.state.Witnessed > 0 {
			return fmt.Errorf("protocol: %s is missing, though this site cosigned the coordinator's ledger checkpoint at %d entries: restore it from a backup (without it a rolled-back coordinator ledger would go unnoticed)", path, s.state.Witnessed)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("protocol: reading %s: %w", path, err)
	}
	owner := s.cfg.Roster.ledgerKey()
	if owner == nil {
		return fmt.Errorf("protocol: %s holds a coordinator ledger checkpoint but the roster names no coordinator ledger key to verify it with: use the roster of this site's kit", path)
	}
	cp, err := openCosigned(note, owner, s.cfg.Roster, s.cfg.Site)
	if err != nil {
		return fmt.Errorf("protocol: %s is not a coordinator ledger checkpoint cosigned by this site (%v): it was altered; restore it from a backup", path, err)
	}
	switch {
	case cp.Size < s.state.Witnessed || (cp.Size == s.state.Witnessed && rootString(cp.Root) != s.state.WitnessedRoot):
		return fmt.Errorf("protocol: %s covers %d entries, not the checkpoint of %d entries this site last cosigned (its signed state says so): it was rolled back; restore it", path, cp.Size, s.state.Witnessed)
	case cp.Size > s.state.Witnessed:
		s.state.Witnessed, s.state.WitnessedRoot = cp.Size, rootString(cp.Root)
		if err := s.saveState(); err != nil {
			return err
		}
	}
	s.witnessed = cp
	return nil
}

// witnessedNote is the Hello's Witnessed: the newest checkpoint this site
// cosigned, or nil.
func (s *Site) witnessedNote() []byte {
	if s.witnessed == nil {
		return nil
	}
	return slices.Clone(s.witnessed.Note)
}

// witness answers a Witness: the checkpoint cosigned, or why not. What it
// decided about the Witness before a session's RoundStart is kept for
// that RoundStart (checkWitness); what it decided about the Witness of a
// session's charge is kept in r, the session open then (chargeWitnessed).
func (s *Site) witness(w *wire.Witness, r *siteRound) *wire.SiteMessage {
	var note []byte
	var err error
	if isChargeWitness(w) {
		note, err = s.cosignCharge(w, r)
		if r != nil && r.start.Round == w.Round {
			r.chargeCosigned, r.chargeErr = err == nil, err
		}
	} else {
		note, err = s.cosign(w, nil)
		s.witnessRound, s.witnessErr = w.Round, err
	}
	reply := &wire.Cosigned{Round: w.Round, Checkpoint: note}
	if err != nil {
		reply.Refusal = err.Error()
		s.log.Warn("coordinator ledger checkpoint refused", "round", roundOf(w.Round), "reason", reply.Refusal)
	}
	return &wire.SiteMessage{Body: &wire.SiteMessage_Cosigned{Cosigned: reply}}
}

// isChargeWitness reports whether w is the Witness of a session's charge.
func isChargeWitness(w *wire.Witness) bool {
	return len(w.Entry) > 0 || len(w.ChargeProof) > 0 || w.ChargeSeq != 0
}

// cosign checks a Witness and, if its checkpoint is signed by the roster's
// coordinator ledger key, extends the last one this site cosigned and
// passes check (if set), cosigns it, records it (file, then signed state)
// and returns it.
func (s *Site) cosign(w *wire.Witness, check func(*dp.Checkpoint) error) ([]byte, error) {
	owner := s.cfg.Roster.ledgerKey()
	if owner == nil {
		return nil, errors.New("the roster names no coordinator ledger key, so this site cannot witness the coordinator's ledger")
	}
	// Sizes first, before any signature is checked: a note or proof of
	// the wrong shape is refused as such.
	if len(w.Checkpoint) == 0 || len(w.Checkpoint) > maxWitnessNote {
		return nil, fmt.Errorf("the coordinator's ledger checkpoint is %d bytes", len(w.Checkpoint))
	}
	if len(w.Proof) > maxProof || w.From < 0 {
		return nil, fmt.Errorf("a consistency proof of %d hashes from %d entries", len(w.Proof), w.From)
	}
	proof, err := hashes(w.Proof, "consistency proof")
	if err != nil {
		return nil, err
	}
	cp, err := dp.OpenCheckpoint(w.Checkpoint, owner, nil)
	if err != nil {
		return nil, fmt.Errorf("the coordinator's ledger checkpoint does not verify under the roster's coordinator ledger key (signed by another key, or malformed): %w", err)
	}
	if prev := s.witnessed; prev != nil {
		switch {
		case cp.Size < prev.Size:
			return nil, fmt.Errorf("the coordinator's ledger was rolled back or truncated: its checkpoint covers %d entries, and this site cosigned one of %d: %w", cp.Size, prev.Size, dp.ErrLedgerTruncated)
		case w.From != prev.Size:
			return nil, fmt.Errorf("the consistency proof starts from %d entries; this site last cosigned the coordinator's ledger at %d", w.From, prev.Size)
		}
		if err := dp.CheckExtends(prev, cp, tlog.TreeProof(proof)); err != nil {
			return nil, fmt.Errorf("the coordinator's ledger was forked or rewritten: its checkpoint of %d entries does not extend the one of %d this site cosigned: %w", cp.Size, prev.Size, err)
		}
	}
	if check != nil {
		if err := check(cp); err != nil {
			return nil, err
		}
	}
	note, err := dp.Cosign(w.Checkpoint, owner, WitnessName(s.cfg.Site), s.identity)
	if err != nil {
		return nil, err
	}
	mine, err := openCosigned(note, owner, s.cfg.Roster, s.cfg.Site)
	if err != nil {
		return nil, fmt.Errorf("protocol: internal error: %v", err)
	}
	r := roundOf(w.Round)
	if err := s.cfg.hooks.crashAt("site witness", r); err != nil {
		return nil, err
	}
	if err := writeState(filepath.Join(s.cfg.State, witnessFile), note, !s.cfg.NoSync); err != nil {
		return nil, err
	}
	if err := s.cfg.hooks.crashAt("site witness written", r); err != nil {
		return nil, err
	}
	prevSize, prevRoot := s.state.Witnessed, s.state.WitnessedRoot
	s.state.Witnessed, s.state.WitnessedRoot = mine.Size, rootString(mine.Root)
	if err := s.saveState(); err != nil {
		s.state.Witnessed, s.state.WitnessedRoot = prevSize, prevRoot
		return nil, err
	}
	s.witnessed = mine
	return note, nil
}

// hashes converts a proof's hashes from the wire, each checked to be
// tlog.HashSize bytes; the caller bounds their number.
func hashes(raw [][]byte, what string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(raw))
	for i, h := range raw {
		if len(h) != tlog.HashSize {
			return nil, fmt.Errorf("hash %d of the %s is %d bytes, want %d", i, what, len(h), tlog.HashSize)
		}
		copy(out[i][:], h)
	}
	return out, nil
}

// errChargeNotCosigned is why a site withholds what opens a sum it paid
// for: it has not cosigned, in this session, a checkpoint of the
// coordinator's ledger holding the session's charge.
var errChargeNotCosigned = errors.New("the coordinator's ledger checkpoint covering this round's charge was not cosigned")

// cosignCharge checks the Witness of a session's charge and cosigns its
// checkpoint: besides cosign's checks, the Witness is for the session r
// this site is in, its entry is included at its sequence number under the
// checkpoint's root (dp.CheckEntry), is a charge of the session's round and
// release, and comes after the checkpoint this site cosigned for the
// session's start, so that no earlier charge is shown for this session's.
func (s *Site) cosignCharge(w *wire.Witness, r *siteRound) ([]byte, error) {
	if r == nil || r.start.Round != w.Round {
		return nil, fmt.Errorf("a charge to witness for %s, a session this site is not in", sessionName(w.Round))
	}
	// Sizes first: the entry line and the inclusion proof.
	if len(w.Entry) == 0 || len(w.Entry) > dp.MaxEntryLine {
		return nil, fmt.Errorf("the charge entry is %d bytes (at most %d)", len(w.Entry), dp.MaxEntryLine)
	}
	if len(w.ChargeProof) > maxProof || w.ChargeSeq < 1 {
		return nil, fmt.Errorf("an inclusion proof of %d hashes for entry %d", len(w.ChargeProof), w.ChargeSeq)
	}
	proof, err := hashes(w.ChargeProof, "inclusion proof")
	if err != nil {
		return nil, err
	}
	if r.base < 0 {
		return nil, errors.New("this session started without a cosigned checkpoint of the coordinator's ledger")
	}
	release, round := dp.TrainingRelease, roundOf(w.Round)
	if r.start.Kind == wire.RoundStart_STATISTICS {
		release, round = dp.StatisticsRelease, statisticsRound
	}
	note, err := s.cosign(w, func(cp *dp.Checkpoint) error {
		e, err := dp.CheckEntry(cp, w.ChargeSeq, w.Entry, tlog.RecordProof(proof))
		if err != nil {
			return fmt.Errorf("the charge entry is not in the coordinator's ledger checkpoint: %w", err)
		}
		switch {
		case e.Kind != "charge":
			return fmt.Errorf("entry %d of the coordinator's ledger is a %q entry, not a charge", e.Seq, e.Kind)
		case e.Round != round || e.Release != release:
			return fmt.Errorf("entry %d of the coordinator's ledger charges round %d (%s release), not this session's round %d (%s release)", e.Seq, e.Round, e.Release, round, release)
		case e.Seq < r.base:
			return fmt.Errorf("entry %d of the coordinator's ledger was charged before this session began (this site cosigned %d entries at its start): an earlier charge is not this session's", e.Seq, r.base)
		case e.Session != r.start.Round:
			// The base is the checkpoint the coordinator chose to show at
			// the session's start; only the session id ties a charge to
			// this session (the ledger holds one charge per session).
			return fmt.Errorf("entry %d of the coordinator's ledger charges %s, not this one (%s)", e.Seq, sessionName(e.Session), sessionName(r.start.Round))
		}
		return chargeMatches(e, r)
	})
	if err != nil {
		return nil, err
	}
	if err := s.cfg.hooks.crashAt("site charge cosigned", roundOf(w.Round)); err != nil {
		return nil, err
	}
	return note, nil
}

// chargeWitnessed returns nil if this site may release what opens r's sum
// (its unmasking shares, or its decryption share): r costs it nothing, its
// roster names no coordinator ledger key, or it has cosigned, in this
// session, a checkpoint of the coordinator's ledger holding the session's
// charge.
func (r *siteRound) chargeWitnessed() error {
	if r.charge == nil || r.s.cfg.Roster.ledgerKey() == nil || r.chargeCosigned {
		return nil
	}
	if r.chargeErr != nil {
		return fmt.Errorf("%w: %v", errChargeNotCosigned, r.chargeErr)
	}
	return errChargeNotCosigned
}

// checkWitness refuses a RoundStart whose session's Witness this site
// refused; or that came with none, after this site has cosigned, or when
// its roster names a coordinator ledger key and the round costs this site
// budget (noise, statistics or training) or is a key ceremony (unless the
// site takes part in runs without DP): the coordinator's ledger was lost,
// rolled back or is being withheld.
func (s *Site) checkWitness(st *wire.RoundStart) error {
	if s.witnessRound == st.Round {
		if s.witnessErr != nil {
			return fmt.Errorf("this site refuses the round: %w", s.witnessErr)
		}
		return nil
	}
	if s.witnessed != nil {
		return fmt.Errorf("the round comes with no checkpoint of the coordinator's ledger, and this site has cosigned one of %d entries: the coordinator's ledger is missing, rolled back or withheld", s.witnessed.Size)
	}
	if s.cfg.Roster.ledgerKey() == nil {
		return nil
	}
	costs := (st.Kind == wire.RoundStart_TRAIN || st.Kind == wire.RoundStart_STATISTICS) && st.SiteSigma > 0
	if costs || (st.Kind == wire.RoundStart_HE_SETUP && !s.cfg.AllowNoDP) {
		return errors.New("the round comes with no checkpoint of the coordinator's ledger, and this site's roster names the coordinator ledger key: it witnesses the ledger before every round that costs it budget and every key ceremony")
	}
	return nil
}

// ---- the coordinator: collecting cosignatures ----

// witnessing reports whether the coordinator asks its sites to witness its
// ledger: it keeps one (a DP run) and the roster names its key.
func (c *Coordinator) witnessing() bool {
	return c.ledger != nil && c.cfg.Roster.ledgerKey() != nil
}

// witnessedSize returns the size of the newest checkpoint site cosigned,
// as the coordinator knows it (from the site's Hello and Cosigned, or its
// witness copy), or 0.
func (c *Coordinator) witnessedSize(site int) int64 {
	c.witnessMu.Lock()
	defer c.witnessMu.Unlock()
	if cp, ok := c.witnessed[site]; ok {
		return cp.Size
	}
	cp, err := c.readWitnessCopy(site)
	if err != nil {
		return 0
	}
	c.witnessed[site] = cp
	return cp.Size
}

func (c *Coordinator) readWitnessCopy(site int) (*dp.Checkpoint, error) {
	owner := c.cfg.Roster.ledgerKey()
	if owner == nil {
		return nil, errors.New("protocol: the roster names no coordinator ledger key")
	}
	note, err := readNote(filepath.Join(c.cfg.State, witnessDir, fmt.Sprintf("site-%d.checkpoint", site)))
	if err != nil {
		return nil, err
	}
	return openCosigned(note, owner, c.cfg.Roster, site)
}

// noteWitnessed records a checkpoint site cosigned (its Hello's, or a
// Cosigned), verified: the next proof for the site starts from its size,
// the one the site checks against, and it becomes the site's witness copy
// if it is the newest. A site that reports an older checkpoint than its
// copy lost its state (a documented limit of the sites' own protection).
func (c *Coordinator) noteWitnessed(site int, note []byte) {
	owner := c.cfg.Roster.ledgerKey()
	if len(note) == 0 || owner == nil {
		return
	}
	cp, err := openCosigned(note, owner, c.cfg.Roster, site)
	if err != nil {
		c.log.Warn("a cosigned ledger checkpoint that does not verify ignored", "site", site, "err", err)
		return
	}
	c.witnessMu.Lock()
	defer c.witnessMu.Unlock()
	c.witnessed[site] = cp
	if old, err := c.readWitnessCopy(site); err == nil && old.Size >= cp.Size {
		if old.Size > cp.Size {
			c.log.Warn("a site holds an older cosigned checkpoint than it cosigned before: its state directory was rolled back", "site", site, "holds", cp.Size, "cosigned", old.Size)
		}
		return
	}
	dir := filepath.Join(c.cfg.State, witnessDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		c.log.Error("saving a witness copy", "site", site, "err", err)
		return
	}
	if err := writeState(filepath.Join(dir, fmt.Sprintf("site-%d.checkpoint", site)), cp.Note, !c.cfg.NoSync); err != nil {
		c.log.Error("saving a witness copy", "site", site, "err", err)
	}
}

// cosigned handles a site's answer to a Witness.
func (c *Coordinator) cosigned(site int, m *wire.Cosigned) {
	if m.Refusal != "" {
		c.log.Warn("site refused to cosign the ledger checkpoint", "site", site, "round", roundOf(m.Round), "reason", m.Refusal)
		return
	}
	c.noteWitnessed(site, m.Checkpoint)
}

// witnessRequest builds the Witness for site in session sid: the ledger's
// latest checkpoint and a consistency proof from the size of the newest
// checkpoint the site cosigned.
func (c *Coordinator) witnessRequest(site int, sid uint64) *wire.Witness {
	from := c.witnessedSize(site)
	w := &wire.Witness{Round: sid, Checkpoint: c.ledger.Checkpoint(), From: from}
	proof, err := c.ledger.ProveFrom(from)
	if err != nil {
		// The site cosigned a larger tree than this ledger holds: it was
		// rolled back. The site will refuse, and says so.
		c.log.Error("a site cosigned a larger checkpoint of this ledger than it holds: the ledger was rolled back or cut short", "site", site, "cosigned", from, "entries", c.ledger.Size())
		return w
	}
	for _, h := range proof {
		w.Proof = append(w.Proof, h[:])
	}
	return w
}

// witnessCharge sends each of sess the Witness of the charge at entry seq
// of the ledger, made in session sid: the ledger's checkpoint after the
// charge, a consistency proof from the size the site last cosigned, and
// the charge's line with its inclusion proof. A site releases what opens
// the session's sum only after cosigning it (siteRound.chargeWitnessed).
// Its Cosigned is read with the next phase's messages (collect).
func (c *Coordinator) witnessCharge(sess []*session, sid uint64, seq int64) error {
	if !c.witnessing() {
		return nil
	}
	ep, err := c.ledger.ProveEntry(seq)
	if err != nil {
		return fmt.Errorf("protocol: proving the charge of %s to the sites: %w", sessionName(sid), err)
	}
	if err := c.cfg.hooks.crashAt("charge witness", roundOf(sid)); err != nil {
		return err
	}
	for _, s := range sess {
		w := c.witnessRequest(s.site, sid)
		if !bytes.Equal(w.Checkpoint, ep.Checkpoint) {
			return fmt.Errorf("protocol: internal error: the ledger's checkpoint changed while the charge of %s was proved", sessionName(sid))
		}
		w.ChargeSeq, w.Entry = seq, ep.Line
		for _, h := range ep.Proof {
			w.ChargeProof = append(w.ChargeProof, h[:])
		}
		s.send(&wire.CoordinatorMessage{Body: &wire.CoordinatorMessage_Witness{Witness: w}})
	}
	return nil
}

// sendStart sends s a round's RoundStart, preceded, when the coordinator
// keeps a ledger, by a Witness of the same session. Messages still in the
// site's inbox belong to earlier rounds (a site sends nothing of this
// round before it receives the start): they are dropped, but a Cosigned
// among them is recorded first, so that the proof starts where the site
// last cosigned.
func (c *Coordinator) sendStart(s *session, start *wire.RoundStart) {
	if c.witnessing() {
		c.drainCosigned(s)
		s.send(&wire.CoordinatorMessage{Body: &wire.CoordinatorMessage_Witness{Witness: c.witnessRequest(s.site, start.Round)}})
	}
	s.send(&wire.CoordinatorMessage{Body: &wire.CoordinatorMessage_Start{Start: start}})
}

// drainCosigned empties s's inbox, recording the cosignatures in it.
func (c *Coordinator) drainCosigned(s *session) {
	for {
		select {
		case m := <-s.inbox:
			s.take(m)
			if cs := m.GetCosigned(); cs != nil {
				c.cosigned(s.site, cs)
			}
		default:
			return
		}
	}
}

// witnessEnd asks every connected site to cosign the ledger's final
// checkpoint, so that the last round's charge is witnessed too, and waits
// (at most a phase) for their answers.
func (c *Coordinator) witnessEnd(ctx context.Context) {
	if !c.witnessing() {
		return
	}
	sess := c.connected()
	if len(sess) == 0 {
		return
	}
	sid := c.lastSession
	for _, s := range sess {
		c.drainCosigned(s)
		s.send(&wire.CoordinatorMessage{Body: &wire.CoordinatorMessage_Witness{Witness: c.witnessRequest(s.site, sid)}})
	}
	got := c.collect(ctx, sess, func(m *wire.SiteMessage) bool {
		cs := m.GetCosigned()
		return cs != nil && cs.Round == sid
	})
	for _, s := range sess {
		if _, ok := got[s.site]; !ok {
			c.log.Warn("site did not cosign the final ledger checkpoint", "site", s.site)
		}
	}
}

// ---- audit ----

// A SiteWitness is the newest coordinator ledger checkpoint one site
// cosigned, as the coordinator keeps it.
type SiteWitness struct {
	Site int `json:"site"`
	// Name is the site's cosigner name (WitnessName) and Key its roster
	// identity key (base64), under which the cosignature verifies: the
	// --witness NAME=KEY of fl-secure budget audit.
	Name string `json:"name"`
	Key  string `json:"key"`
	// File is the checkpoint note (--checkpoint FILE).
	File string `json:"file,omitempty"`
	// Size is the number of ledger entries the checkpoint covers, and
	// Round the last training round charged among them (0: none).
	Size  int64 `json:"entries,omitempty"`
	Round int   `json:"round,omitempty"`
	// Problem says why the site's copy is missing or does not verify; the
	// fields above other than Site, Name and Key are then empty.
	Problem string `json:"problem,omitempty"`
}

// Arg is the site's --witness argument of fl-secure budget audit.
func (w SiteWitness) Arg() string { return w.Name + "=" + w.Key }

// CosignedBy says how many sites cosigned a checkpoint covering round (for
// example the last round charged): "cosigned by 5 of 5 hospitals at round
// 30".
func CosignedBy(ws []SiteWitness, round int) string {
	k := 0
	for _, w := range ws {
		if w.Problem == "" && w.Round >= round {
			k++
		}
	}
	return fmt.Sprintf("cosigned by %d of %d hospitals at round %d", k, len(ws), round)
}

// WitnessCheckpoints returns, for a coordinator's state directory, each
// roster site's newest cosigned checkpoint of the coordinator's ledger
// (state/witness/site-N.checkpoint), verified against the roster: the
// coordinator ledger key for the checkpoint and the site's identity key
// for its cosignature. Round is read from the ledger in state: the
// round of the last charge among the entries the checkpoint covers.
func WitnessCheckpoints(state string, roster *Roster) ([]SiteWitness, error) {
	owner := roster.ledgerKey()
	if owner == nil {
		return nil, errors.New("protocol: the roster names no coordinator ledger key: its sites witness nothing")
	}
	entries, _ := dp.ReadLedger(filepath.Join(state, "coordinator-ledger.jsonl"))
	ids := roster.identities()
	var out []SiteWitness
	for i := range roster.Sites {
		site := i + 1
		w := SiteWitness{Site: site, Name: WitnessName(site), Key: base64.StdEncoding.EncodeToString(ids[i])}
		path := filepath.Join(state, witnessDir, fmt.Sprintf("site-%d.checkpoint", site))
		note, err := readNote(path)
		if err == nil {
			var cp *dp.Checkpoint
			if cp, err = openCosigned(note, owner, roster, site); err == nil {
				w.File, w.Size = path, cp.Size
				for _, e := range entries {
					if e.Seq < cp.Size && e.Kind == "charge" {
						w.Round = max(w.Round, e.Round)
					}
				}
			}
		}
		if err != nil {
			w.Problem = err.Error()
		}
		out = append(out, w)
	}
	return out, nil
}

// WitnessLine says who cosigned the coordinator ledger's checkpoint
// covering the run's last charge, for a report: "cosigned by 5 of 5
// hospitals at round 30"; "" without witnesses.
func (s *Summary) WitnessLine() string {
	if len(s.Witnesses) == 0 {
		return ""
	}
	last := 0
	es, _ := dp.ReadLedger(s.Ledger)
	for _, e := range es {
		if e.Kind == "charge" {
			last = max(last, e.Round)
		}
	}
	return CosignedBy(s.Witnesses, last)
}

// chargeMatches checks that the coordinator's charge entry e is for the
// noise this session announced, as this site's own charge records it
// (the noise share σ, grid, dimension, sensitivity, clients, level, the
// mechanism of one unsampled release), counting no more honest shares
// than the session announced: its minimum cohort no larger, its colluders
// no fewer. The audit checks that the multiplier is the one this plan
// gives, so the coordinator's ledger then records at least what the
// session's announced terms cost.
func chargeMatches(e *dp.Entry, r *siteRound) error {
	own, st := r.charge.Plan, r.start
	if own == nil {
		return errors.New("this site's charge records no noise plan")
	}
	switch {
	case e.Level != r.charge.Level:
		return fmt.Errorf("entry %d charges %s level, this session is %s level", e.Seq, e.Level, r.charge.Level)
	case e.Mechanism != string(dp.DiscreteGaussianMechanism) || e.SamplingRate != 1 || e.Steps != 1:
		return fmt.Errorf("entry %d is not one unsampled discrete Gaussian release", e.Seq)
	case e.SiteSigma != own.SiteSigma || e.GridStep != own.Gamma || e.Dim != own.Dim || e.Clip != own.Clip || e.Participants != own.Clients:
		return fmt.Errorf("entry %d records noise (σ %v, grid %v, dimension %d, clip %v, %d clients) other than this session's (σ %v, grid %v, dimension %d, clip %v, %d clients)",
			e.Seq, e.SiteSigma, e.GridStep, e.Dim, e.Clip, e.Participants, own.SiteSigma, own.Gamma, own.Dim, own.Clip, own.Clients)
	case e.Threshold > max(int(st.MinCohort), 1) || e.Colluders < int(st.Colluders):
		return fmt.Errorf("entry %d counts on a cohort of %d with %d colluders; this session announced a minimum cohort of %d and %d colluders", e.Seq, e.Threshold, e.Colluders, st.MinCohort, st.Colluders)
	}
	return nil
}
