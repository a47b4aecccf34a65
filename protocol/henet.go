package protocol

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/he"
	"github.com/fl-secure/fl-secure/internal/atrest"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

// Engine phases of threshold CKKS on the wire. The key ceremony runs
// advert (10), commit (15), reveal (11), confirm (16), finish (12).
const (
	phaseHEAdvert  = 10 // site → advert; coordinator → every advert
	phaseHESetup   = 11 // site → reveal (key share, sealed Shamir shares); coordinator → every one
	phaseHEFinish  = 12 // site → its CRS and transcript hash, once setup is confirmed
	phaseHESubmit  = 13 // site → signed ciphertexts
	phaseHEDecrypt = 14 // coordinator → request; site → decryption share
	phaseHECommit  = 15 // site → signed commitment to its reveal; coordinator → every one
	phaseHEConfirm = 16 // site → key-confirmation shares; coordinator → every one
)

// heNetPreset and heNetMaxAbs are the network federation's CKKS settings:
// n13-q120 keeps the unscaled standardization statistics precise.
var heNetPreset = he.N13

const heNetMaxAbs = 1 << 40

// maxListItems bounds a packed list (one item per site).
const maxListItems = 1000

// packList frames byte strings as a count and length-prefixed items.
func packList(items [][]byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(items)))
	for _, it := range items {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(it)))
		b = append(b, it...)
	}
	return b
}

// unpackList is packList's strict inverse.
func unpackList(b []byte) ([][]byte, error) {
	if len(b) < 4 {
		return nil, errors.New("protocol: list shorter than its count")
	}
	n := binary.LittleEndian.Uint32(b)
	if n > maxListItems {
		return nil, fmt.Errorf("protocol: list of %d items", n)
	}
	b = b[4:]
	out := make([][]byte, 0, n)
	for i := uint32(0); i < n; i++ {
		if len(b) < 4 {
			return nil, fmt.Errorf("protocol: list item %d: no length", i)
		}
		l := binary.LittleEndian.Uint32(b)
		b = b[4:]
		if uint64(l) > uint64(len(b)) {
			return nil, fmt.Errorf("protocol: list item %d: %d bytes announced, %d left", i, l, len(b))
		}
		out = append(out, b[:l])
		b = b[l:]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("protocol: %d bytes after the list", len(b))
	}
	return out, nil
}

// heParams returns the network federation's he parameters for the given
// number of sites, minimum cohort and colluding sites. The decryption
// threshold is he.MinThreshold(sites, colluders): any two decrypting sets
// then share more than the colluders (2t − N > c), so an honest site, which
// answers one decryption per round, is in every overlap, and no two sums
// of one round — with and without one site's update — are both decrypted,
// even when the colluders restore old copies of their state and answer
// twice.
func heParams(sites, minCohort, colluders int) (*he.Params, error) {
	t := he.MinThreshold(sites, colluders)
	if t > sites {
		return nil, fmt.Errorf("%d colluding sites among %d need a decryption threshold of %d, more than the sites", colluders, sites, t)
	}
	return he.NewParams(he.Config{Preset: heNetPreset, Parties: sites, Threshold: t,
		MinContributors: minCohort, MaxAbsSum: heNetMaxAbs})
}

type heState struct {
	CRS        string `json:"crs"`
	Transcript string `json:"transcript,omitempty"`
	// Threshold is the key's decryption threshold; 0 in records written
	// before it was kept, whose keys have ⌊N/2⌋+1.
	Threshold int `json:"threshold,omitempty"`
}

// heSetup runs the key ceremony with every site on the roster (it needs
// them all) and records the group's CRS and threshold in the state
// directory. The ceremony's start announces the coordinator's colluders,
// which fix the threshold every site uses; a site that assumes more
// colluders than that threshold tolerates refuses the ceremony.
func (c *Coordinator) heSetup(ctx context.Context) ([32]byte, error) {
	var crs [32]byte
	n := len(c.cfg.Roster.Sites)
	params, err := heParams(n, c.cfg.MinCohort, c.cfg.Colluders)
	if err != nil {
		return crs, fmt.Errorf("protocol: %w", err)
	}
	th := params.Config().Threshold
	path := filepath.Join(c.cfg.State, "he.json")
	if b, err := os.ReadFile(path); err == nil {
		var st heState
		if json.Unmarshal(b, &st) == nil {
			if h, err := hex.DecodeString(st.CRS); err == nil && len(h) == 32 {
				if st.Threshold == 0 {
					st.Threshold = n/2 + 1
				}
				if st.Threshold != th {
					return crs, fmt.Errorf("protocol: the threshold key was made with a decryption threshold of %d of %d sites; with %d colluders this run needs %d: remove %s to run the key ceremony again", st.Threshold, n, c.cfg.Colluders, th, path)
				}
				copy(crs[:], h)
				return crs, nil
			}
		}
	}
	for attempt := 1; ; attempt++ {
		if attempt > maxFailures {
			return crs, fmt.Errorf("protocol: the key ceremony failed %d times; every site must be online and agree", maxFailures)
		}
		if attempt > 1 {
			select {
			case <-ctx.Done():
				return crs, ctx.Err()
			case <-time.After(min(c.cfg.PhaseTimeout, time.Second)):
			}
		}
		var sess []*session
		for len(sess) < n {
			s, err := c.waitFor(ctx, n)
			if err != nil {
				return crs, err
			}
			sess = s
		}
		sid, err := c.sessionID(0)
		if err != nil {
			return crs, err
		}
		start := &wire.RoundStart{Round: sid, Kind: wire.RoundStart_HE_SETUP, Sites: uint32(n), MinCohort: uint32(c.cfg.MinCohort),
			Colluders: uint32(c.cfg.Colluders), HePreset: heNetPreset.Name, HeMaxAbs: heNetMaxAbs, Mode: string(HE)}
		for i, s := range sess {
			start.Members = append(start.Members, uint32(s.site))
			_ = i
		}
		for _, s := range sess {
			c.sendStart(s, start)
		}
		step := func(phase uint32) ([][]byte, bool) {
			got := c.collect(ctx, sess, engineFor(start.Round, phase))
			if len(got) != n {
				return nil, false
			}
			out := make([][]byte, n)
			ok := true
			for site, m := range got {
				e := m.GetEngine()
				if e == nil {
					if r := m.GetRefuse(); r != nil {
						c.log.Warn("key ceremony: site refused", "site", site, "reason", r.Reason)
					}
					ok = false
					continue
				}
				out[site-1] = e.Payload
			}
			return out, ok
		}
		broadcast := func(phase uint32, items [][]byte) {
			b := packList(items)
			for _, s := range sess {
				s.send(&wire.CoordinatorMessage{Body: &wire.CoordinatorMessage_Engine{Engine: &wire.Engine{Round: start.Round, Phase: phase, Payload: b}}})
			}
		}
		// Each step's messages go to every site only once every site has
		// sent its own: in particular no site sees a reveal before all
		// commitments are in (and each site checks that for itself).
		adverts, ok := step(phaseHEAdvert)
		if !ok {
			c.log.Warn("key ceremony: missing adverts; retrying")
			continue
		}
		broadcast(phaseHEAdvert, adverts)
		commits, ok := step(phaseHECommit)
		if !ok {
			c.log.Warn("key ceremony: missing commitments; retrying")
			continue
		}
		broadcast(phaseHECommit, commits)
		reveals, ok := step(phaseHESetup)
		if !ok {
			c.log.Warn("key ceremony: missing reveals; retrying")
			continue
		}
		// A site whose signed reveal does not match its signed commitment
		// has tried to choose its key share after seeing the others'.
		if err := he.CheckReveals(params, c.cfg.Roster.identities(), adverts, commits, reveals); err != nil {
			var se *he.SetupError
			if errors.As(err, &se) {
				for i, site := range se.Parties {
					c.misbehaved(site, fmt.Sprintf("key ceremony: %v", se.Errs[i]))
				}
				return crs, fmt.Errorf("protocol: the key ceremony failed because of site(s) %v: %w; remove them from the roster and run it again", se.Parties, err)
			}
			c.log.Warn("key ceremony: bad reveals; retrying", "err", err)
			continue
		}
		broadcast(phaseHESetup, reveals)
		confirms, ok := step(phaseHEConfirm)
		if !ok {
			c.log.Warn("key ceremony: not every site sent its key confirmation; retrying")
			continue
		}
		broadcast(phaseHEConfirm, confirms)
		acks, ok := step(phaseHEFinish)
		if !ok {
			c.log.Warn("key ceremony: not every site confirmed the key; retrying")
			continue
		}
		for i, a := range acks {
			if len(a) != 64 || string(a) != string(acks[0]) {
				return crs, fmt.Errorf("protocol: site %d reports another common reference string or setup transcript", i+1)
			}
		}
		copy(crs[:], acks[0])
		b, _ := json.Marshal(heState{CRS: hex.EncodeToString(crs[:]), Transcript: hex.EncodeToString(acks[0][32:]), Threshold: th})
		if err := c.cfg.hooks.crashAt("he state", 0); err != nil {
			return crs, err
		}
		if err := writeAtomic(path, b); err != nil {
			return crs, err
		}
		if err := c.cfg.hooks.crashAt("he state written", 0); err != nil {
			return crs, err
		}
		c.log.Info("key ceremony done", "sites", n, "threshold", th, "colluders", c.cfg.Colluders)
		return crs, nil
	}
}

// heSum runs one threshold-CKKS aggregation: submissions, the charge, a
// decryption request to the contributors, and the combination of the t
// shares. A sum refused as out of range gives an error wrapping
// he.ErrOutOfRange.
func (c *Coordinator) heSum(ctx context.Context, sess []*session, start *wire.RoundStart, charge func(int) (int64, error)) ([]float64, int, *attempt, error) {
	bl := newAttempt()
	n := len(c.cfg.Roster.Sites)
	params, err := heParams(n, c.cfg.MinCohort, c.cfg.Colluders)
	if err != nil {
		return nil, 0, bl, fmt.Errorf("protocol: %w", err)
	}
	for _, s := range sess {
		start.Members = append(start.Members, uint32(s.site))
	}
	start.HePreset, start.HeMaxAbs, start.Mode = heNetPreset.Name, heNetMaxAbs, string(HE)
	start.Sites, start.MinCohort = uint32(n), uint32(c.cfg.MinCohort)
	// start is final: every submission must carry the digest of these
	// terms, as every decryptor checks against the terms it was shown.
	roundTerms := terms(start)
	for _, s := range sess {
		c.sendStart(s, start)
	}
	tr := roundOf(start.Round)
	agg, err := he.NewAggregator(params, c.cfg.Roster.identities(), c.crs, start.Round, roundTerms)
	if err != nil {
		return nil, 0, bl, err
	}
	// A site pays for an he round when it submits, right after the start.
	bl.masked = true
	c.trainingPhase(start)
	defer c.phaseWait.Store(0)
	got := c.collect(ctx, sess, engineFor(start.Round, phaseHESubmit))
	var contributors []int
	for _, s := range sess {
		m, ok := got[s.site]
		switch {
		case !ok:
			bl.add(s.site, "%s", c.silence(s.site, "no submission"))
			continue
		case m.GetRefuse() != nil:
			bl.add(s.site, "refused: %s", m.GetRefuse().Reason)
			c.log.Info("site refused", "site", s.site, "round", tr, "reason", m.GetRefuse().Reason)
			continue
		}
		before := len(agg.Contributors())
		if err := agg.Add(m.GetEngine().Payload); err != nil {
			bl.add(s.site, "bad submission")
			c.log.Warn("bad submission", "site", s.site, "round", tr, "err", err)
			continue
		}
		// Submissions are signed with the party's identity key, and a
		// party's number is its site's: a site cannot submit in another's
		// name without that site's key.
		if now := agg.Contributors(); len(now) != before+1 || !slices.Contains(now, s.site) {
			bl.add(s.site, "submitted in another's name")
			c.misbehaved(s.site, fmt.Sprintf("round %d: submission signed by another party", tr))
			return nil, 0, bl, fmt.Errorf("protocol: site %d submitted another party's ciphertext", s.site)
		}
		contributors = append(contributors, s.site)
	}
	sort.Ints(contributors)
	if len(contributors) < c.cfg.MinCohort {
		return nil, len(contributors), bl, fmt.Errorf("%w: %d submissions", ErrCohort, len(contributors))
	}
	rng, err := heRange(start, len(contributors))
	if err != nil {
		return nil, len(contributors), bl, err
	}
	if err := agg.SetRange(rng); err != nil {
		return nil, len(contributors), bl, fmt.Errorf("protocol: round %d: %w", tr, err)
	}
	req, err := agg.Request(contributors)
	if err != nil {
		return nil, len(contributors), bl, err
	}
	// The request names the first t contributors; only they are asked.
	named := contributors[:params.Config().Threshold]
	var ask []*session
	for _, s := range sess {
		if slices.Contains(named, s.site) {
			ask = append(ask, s)
		}
	}
	// Charge before anything is decrypted, and have the contributors
	// witness the charge before the decryptors among them are asked for
	// their shares (the Witness goes before the request, on the same
	// stream).
	if charge != nil {
		seq, err := charge(len(contributors))
		if err != nil {
			return nil, len(contributors), bl, err
		}
		var to []*session
		for _, s := range sess {
			if slices.Contains(contributors, s.site) {
				to = append(to, s)
			}
		}
		if err := c.witnessCharge(to, start.Round, seq); err != nil {
			return nil, len(contributors), bl, err
		}
	}
	for _, s := range ask {
		s.send(&wire.CoordinatorMessage{Body: &wire.CoordinatorMessage_Engine{Engine: &wire.Engine{Round: start.Round, Phase: phaseHEDecrypt, Payload: req}}})
	}
	replies := c.collect(ctx, ask, engineFor(start.Round, phaseHEDecrypt))
	var shares [][]byte
	for _, s := range ask {
		m, ok := replies[s.site]
		switch {
		case !ok:
			bl.add(s.site, "no decryption share")
		case m.GetRefuse() != nil:
			bl.note(s.site, "refused to decrypt: %s", m.GetRefuse().Reason)
		default:
			// A share must be its sender's, for this session, and well
			// formed: one sent in another site's name would crowd out that
			// site's share and make the round fail with no one to blame.
			b := m.GetEngine().Payload
			var why string
			switch round, party, err := he.ShareParty(b); {
			case err != nil:
				why = fmt.Sprintf("malformed decryption share: %v", err)
			case party != s.site:
				why = fmt.Sprintf("decryption share in party %d's name", party)
			case round != start.Round:
				why = fmt.Sprintf("decryption share for %s, not %s", sessionName(round), sessionName(start.Round))
			default:
				if _, err := agg.CheckShare(b); err != nil {
					why = fmt.Sprintf("malformed decryption share: %v", err)
				}
			}
			if why != "" {
				bl.add(s.site, "%s", why)
				c.misbehaved(s.site, fmt.Sprintf("round %d: %s", tr, why))
				continue
			}
			shares = append(shares, b)
		}
	}
	sum, err := agg.Combine(shares)
	if errors.Is(err, he.ErrOutOfRange) {
		// A site submitted a malformed ciphertext, or a decryptor sent a
		// share not computed from its key (nothing proves a share, and the
		// two cannot be told apart): what was decrypted may hold the
		// collective key, and it is published to no one.
		c.log.Error("decrypted sum refused: outside the range honest sites' updates can produce; the result is withheld and not published. A site submitted a malformed ciphertext or a decryptor a wrong decryption share; the threshold key may be under attack",
			"round", tr, "contributors", fmt.Sprint(contributors), "decryptors", fmt.Sprint(named))
		return nil, len(contributors), bl, fmt.Errorf("protocol: round %d: %w", tr, err)
	}
	if err != nil {
		return nil, len(contributors), bl, err
	}
	bl.survivors = contributors
	return sum, len(contributors), bl, nil
}

// heRange is what the sum of an he round can be when every site follows
// the protocol (see he.Range): the sites' values lie on the round's grid
// (each site rounds its vector to it, with or without DP noise); in a
// client-level training round each site's update is clipped to L2 norm
// Clip, so no coordinate of the sum of c updates exceeds c·Clip before
// noise. Statistics and record-level sums have no bound tighter than the
// preset's (a record-level sum grows with the records), so there only the
// grid and the unused coefficients are checked.
func heRange(st *wire.RoundStart, contributors int) (he.Range, error) {
	e, err := heGrid(st)
	if err != nil {
		return he.Range{}, err
	}
	r := he.Range{Grid: math.Ldexp(1, e)}
	if st.Kind == wire.RoundStart_TRAIN || st.Kind == wire.RoundStart_STATISTICS {
		r.Sigma = st.SiteSigma
		if st.Level == string(dp.ClientLevel) && st.Clip > 0 {
			r.MaxAbs = float64(contributors) * st.Clip
		}
	}
	return r, nil
}

// heGrid returns the exponent of the round's grid 2^e: the power of two
// nearest the round's γ.
func heGrid(st *wire.RoundStart) (int, error) {
	if !(st.Gamma > 0) || math.IsInf(st.Gamma, 0) {
		return 0, fmt.Errorf("grid step %v is not positive", st.Gamma)
	}
	e := int(math.Round(math.Log2(st.Gamma)))
	if e < -60 || e > 0 {
		return 0, fmt.Errorf("grid step 2^%d outside [2^-60, 1]", e)
	}
	return e, nil
}

// Site side.

func (s *Site) heParty(st *wire.RoundStart) (*he.Party, *he.Params, error) {
	if st.HePreset != heNetPreset.Name || st.HeMaxAbs != heNetMaxAbs {
		return nil, nil, fmt.Errorf("he preset %q with bound %v is not this build's (%s, %v)", st.HePreset, st.HeMaxAbs, heNetPreset.Name, float64(heNetMaxAbs))
	}
	if s.he != nil {
		return s.he, s.he.Params(), nil
	}
	// The fewest contributors a sum this site helps decrypt must hold and
	// the decryption threshold were fixed at the key ceremony and are kept
	// in the saved state, which RestoreParty uses: nothing a RoundStart
	// says can lower them. The threshold must still suit this site's own
	// colluders (RestoreParty refuses one below heParams' threshold).
	params, err := heParams(len(s.cfg.Roster.Sites), 0, s.cfg.Colluders)
	if err != nil {
		return nil, nil, err
	}
	b, err := atrest.ReadFile(filepath.Join(s.cfg.State, "he-party.bin"), s.cfg.Passphrase)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, errors.New("no threshold key yet: the key ceremony has not run")
	}
	if err != nil {
		return nil, nil, err
	}
	defer clear(b)
	p, err := he.RestoreParty(params, s.identity, s.cfg.Roster.identities(), b)
	if err != nil {
		return nil, nil, fmt.Errorf("this site's threshold key (it assumes %d colluders): %w", s.cfg.Colluders, err)
	}
	s.he = p
	return p, p.Params(), nil
}

// saveHE writes the party's state (threshold share and decrypted rounds),
// encrypted with the site's passphrase, before anything depending on it
// is sent.
func (s *Site) saveHE() error {
	b, err := s.he.MarshalState()
	if err != nil {
		return err
	}
	defer clear(b)
	if err := s.cfg.hooks.crashAt("site he state", 0); err != nil {
		return err
	}
	if err := atrest.WriteFile(filepath.Join(s.cfg.State, "he-party.bin"), b, 0o600, s.cfg.Passphrase); err != nil {
		return err
	}
	return s.cfg.hooks.crashAt("site he state written", 0)
}

// heStart handles a RoundStart in mode he.
func (s *Site) heStart(r *siteRound) ([]*wire.SiteMessage, error) {
	st := r.start
	if st.Kind == wire.RoundStart_HE_SETUP {
		// The only time the coordinator's minimum cohort counts: at setup,
		// the larger of it and the site's own goes into the site's advert,
		// and the group's is the largest advert's, fixed for the key's life.
		// The threshold follows the coordinator's colluders, so that every
		// site uses the same one (the advert signatures bind it), unless
		// this site assumes more colluders than that threshold tolerates.
		n := int(st.Sites)
		own, announced := he.MinThreshold(n, s.cfg.Colluders), he.MinThreshold(n, int(st.Colluders))
		if own > announced {
			return nil, fmt.Errorf("this site assumes %d colluding sites, which needs a decryption threshold of at least %d of %d; the coordinator announces %d colluders, which give %d, so two decryptions of one round could overlap in colluders only: the coordinator must assume at least %d colluders",
				s.cfg.Colluders, own, n, st.Colluders, announced, s.cfg.Colluders)
		}
		params, err := heParams(n, max(s.cfg.MinCohort, int(st.MinCohort)), int(st.Colluders))
		if err != nil {
			return nil, err
		}
		p, err := he.NewParty(params, s.cfg.Site, s.identity, s.cfg.Roster.identities())
		if err != nil {
			return nil, err
		}
		s.heSetup = p
		return []*wire.SiteMessage{{Body: &wire.SiteMessage_Join{Join: &wire.Join{Round: st.Round}}}, engineMsg(st.Round, phaseHEAdvert, p.Advert())}, nil
	}
	p, _, err := s.heParty(st)
	if err != nil {
		return nil, err
	}
	// Every vector goes on the round's grid, noised or not: the coordinator
	// returns the decrypted sum rounded to that grid, so nothing below it
	// (where a malformed ciphertext could hide key bits) is ever released.
	// The grid and the noise are checked before the site computes its
	// vector: a refusal on them comes at once, whatever the data.
	e, err := heGrid(st)
	if err != nil {
		return nil, err
	}
	var noise he.Noise = gridRound{s.sampler, math.Ldexp(1, e)}
	if st.Kind != wire.RoundStart_HE_SETUP && st.SiteSigma > 0 {
		g, err := dp.NewGridGaussian(st.SiteSigma, e)
		if err != nil {
			return nil, err
		}
		noise = he.DPNoise(g, s.sampler)
	}
	v, err := r.vector()
	if err != nil {
		return nil, err
	}
	// Encryption refuses a value beyond the group's MaxAbsSum after the
	// noise is added. Whether this site's vector reaches it depends on its
	// data and only its own noise share, so it must never show in a
	// refusal: every coordinate is clamped first to a bound that public
	// parameters alone give, with room for the noise share (40σ: beyond it
	// with probability below e^-800) and one grid step. Clamping each
	// coordinate is 1-Lipschitz, so the vector's L2 sensitivity is
	// unchanged (Dwork and Roth 2014, Prop. 2.1: post-processing of each
	// record's clipped contribution's sum).
	limit := p.Params().Config().MaxAbsSum - 40*st.SiteSigma - math.Ldexp(1, e)
	if !(limit > 0) {
		return nil, fmt.Errorf("the round's noise share σ = %v leaves no room under the encryption's bound %v", st.SiteSigma, p.Params().Config().MaxAbsSum)
	}
	// And to ±2^61 grid steps, which the grid holds in an int64 whatever
	// the round's γ (as quantize does in secagg).
	limit = min(limit, math.Ldexp(1, e+61))
	for i, x := range v {
		v[i] = max(-limit, min(limit, x))
	}
	if r.charge != nil {
		if err := s.charge(*r.charge); err != nil {
			return nil, err
		}
	}
	// The submission carries the digest of the terms this site was shown,
	// signed: a decryptor shown other terms refuses the sum.
	sub, err := p.Encrypt(st.Round, terms(st), v, noise)
	if err != nil {
		// Past the charge, the reason stays here: which value failed is a
		// function of this site's data and one noise share.
		s.log.Error("encrypting the noised update", "round", roundOf(st.Round), "err", err)
		return nil, errors.New("this site could not encrypt its noised update (see the site's log)")
	}
	if st.Kind == wire.RoundStart_STATISTICS {
		if err := s.submitHEStatistics(st.Round); err != nil {
			return nil, err
		}
	}
	return []*wire.SiteMessage{{Body: &wire.SiteMessage_Join{Join: &wire.Join{Round: st.Round}}}, engineMsg(st.Round, phaseHESubmit, sub)}, nil
}

// heStep handles an engine message in mode he.
func (s *Site) heStep(r *siteRound, e *wire.Engine) (*wire.SiteMessage, error) {
	switch e.Phase {
	case phaseHEAdvert, phaseHECommit, phaseHESetup, phaseHEConfirm:
		list, err := unpackList(e.Payload)
		if err != nil {
			return nil, err
		}
		p := s.heSetup
		if p == nil {
			return nil, errors.New("no key ceremony in progress")
		}
		switch e.Phase {
		case phaseHEAdvert:
			m, err := p.Commit(list)
			if err != nil {
				return nil, err
			}
			return engineMsg(e.Round, phaseHECommit, m), nil
		case phaseHECommit:
			// Reveal checks that all N commitments are in and signed.
			m, err := p.Reveal(list)
			if err != nil {
				return nil, err
			}
			return engineMsg(e.Round, phaseHESetup, m), nil
		case phaseHESetup:
			m, err := p.Finish(list)
			if err != nil {
				return nil, err
			}
			return engineMsg(e.Round, phaseHEConfirm, m), nil
		}
		if err := p.Confirm(list); err != nil {
			return nil, err
		}
		s.he, s.heSetup = p, nil
		if err := s.saveHE(); err != nil {
			return nil, err
		}
		crs, t := p.CRS(), p.Transcript()
		return engineMsg(e.Round, phaseHEFinish, append(crs[:], t[:]...)), nil
	case phaseHEDecrypt:
		if s.he == nil {
			return nil, errors.New("no threshold key")
		}
		// The share opens a sum this site paid for: only once it has
		// cosigned a checkpoint of the coordinator's ledger that holds the
		// session's charge.
		if err := r.chargeWitnessed(); err != nil {
			return nil, err
		}
		// Only a sum whose submissions were all made under the terms this
		// site was shown for the round, whether or not it contributed.
		sh, err := s.he.DecryptShare(e.Payload, terms(r.start))
		if err != nil {
			return &wire.SiteMessage{Body: &wire.SiteMessage_Refuse{Refuse: &wire.Refuse{Round: e.Round, Reason: err.Error()}}}, nil
		}
		// The record of this decryption is on disk before the share leaves.
		if err := s.saveHE(); err != nil {
			return nil, err
		}
		return engineMsg(e.Round, phaseHEDecrypt, sh), nil
	}
	return nil, fmt.Errorf("unknown he phase %d", e.Phase)
}

// gridRound rounds a vector to the grid γZ without noise (for rounds that
// carry none), so that rounds with and without noise release grid values.
type gridRound struct {
	s     *dp.Sampler
	gamma float64
}

func (g gridRound) AddNoise(v []float64) error {
	r, err := dp.Round(g.s, v, g.gamma, math.Inf(1))
	if err != nil {
		return err
	}
	for i := range v {
		v[i] = float64(r[i]) * g.gamma
	}
	return nil
}
