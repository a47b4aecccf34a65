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

// Engine phases of threshold CKKS on the wire.
const (
	phaseHEAdvert  = 10 // site → advert; coordinator → every advert
	phaseHESetup   = 11 // site → setup message; coordinator → every one
	phaseHEFinish  = 12 // site → its CRS, once setup is finished
	phaseHESubmit  = 13 // site → signed ciphertexts
	phaseHEDecrypt = 14 // coordinator → request; site → decryption share
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

func heParams(sites, minCohort int) (*he.Params, error) {
	return he.NewParams(he.Config{Preset: heNetPreset, Parties: sites, Threshold: sites/2 + 1,
		MinContributors: minCohort, MaxAbsSum: heNetMaxAbs})
}

type heState struct {
	CRS string `json:"crs"`
}

// heSetup runs the key ceremony with every site on the roster (it needs
// them all) and records the group's CRS in the state directory.
func (c *Coordinator) heSetup(ctx context.Context) ([32]byte, error) {
	var crs [32]byte
	path := filepath.Join(c.cfg.State, "he.json")
	if b, err := os.ReadFile(path); err == nil {
		var st heState
		if json.Unmarshal(b, &st) == nil {
			if h, err := hex.DecodeString(st.CRS); err == nil && len(h) == 32 {
				copy(crs[:], h)
				return crs, nil
			}
		}
	}
	n := len(c.cfg.Roster.Sites)
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
		start := &wire.RoundStart{Round: sid, Kind: wire.RoundStart_HE_SETUP, Sites: uint32(n),
			MinCohort: uint32(c.cfg.MinCohort), HePreset: heNetPreset.Name, HeMaxAbs: heNetMaxAbs, Mode: string(HE)}
		for i, s := range sess {
			start.Members = append(start.Members, uint32(s.site))
			_ = i
		}
		for _, s := range sess {
			s.send(&wire.CoordinatorMessage{Body: &wire.CoordinatorMessage_Start{Start: start}})
		}
		step := func(phase uint32) ([][]byte, bool) {
			got := c.collect(ctx, sess, engineFor(start.Round, phase))
			if len(got) != n {
				return nil, false
			}
			out := make([][]byte, n)
			for site, m := range got {
				e := m.GetEngine()
				if e == nil {
					return nil, false
				}
				out[site-1] = e.Payload
			}
			return out, true
		}
		broadcast := func(phase uint32, items [][]byte) {
			b := packList(items)
			for _, s := range sess {
				s.send(&wire.CoordinatorMessage{Body: &wire.CoordinatorMessage_Engine{Engine: &wire.Engine{Round: start.Round, Phase: phase, Payload: b}}})
			}
		}
		adverts, ok := step(phaseHEAdvert)
		if !ok {
			c.log.Warn("key ceremony: missing adverts; retrying")
			continue
		}
		broadcast(phaseHEAdvert, adverts)
		setup, ok := step(phaseHESetup)
		if !ok {
			c.log.Warn("key ceremony: missing setup messages; retrying")
			continue
		}
		broadcast(phaseHESetup, setup)
		acks, ok := step(phaseHEFinish)
		if !ok {
			c.log.Warn("key ceremony: not every site finished; retrying")
			continue
		}
		for i, a := range acks {
			if len(a) != 32 || string(a) != string(acks[0]) {
				return crs, fmt.Errorf("protocol: site %d reports another common reference string", i+1)
			}
		}
		copy(crs[:], acks[0])
		b, _ := json.Marshal(heState{CRS: hex.EncodeToString(crs[:])})
		if err := writeAtomic(path, b); err != nil {
			return crs, err
		}
		c.log.Info("key ceremony done", "sites", n)
		return crs, nil
	}
}

// heSum runs one threshold-CKKS aggregation: submissions, the charge, a
// decryption request to the contributors, and the combination of the t
// shares.
func (c *Coordinator) heSum(ctx context.Context, sess []*session, start *wire.RoundStart, charge func(int) error) ([]float64, int, *attempt, error) {
	bl := newAttempt()
	n := len(c.cfg.Roster.Sites)
	params, err := heParams(n, c.cfg.MinCohort)
	if err != nil {
		return nil, 0, bl, err
	}
	for _, s := range sess {
		start.Members = append(start.Members, uint32(s.site))
	}
	start.HePreset, start.HeMaxAbs, start.Mode = heNetPreset.Name, heNetMaxAbs, string(HE)
	start.Sites, start.MinCohort = uint32(n), uint32(c.cfg.MinCohort)
	for _, s := range sess {
		s.send(&wire.CoordinatorMessage{Body: &wire.CoordinatorMessage_Start{Start: start}})
	}
	tr := roundOf(start.Round)
	agg, err := he.NewAggregator(params, c.cfg.Roster.identities(), c.crs, start.Round)
	if err != nil {
		return nil, 0, bl, err
	}
	// A site pays for an he round when it submits, right after the start.
	bl.masked = true
	got := c.collect(ctx, sess, engineFor(start.Round, phaseHESubmit))
	var contributors []int
	for _, s := range sess {
		m, ok := got[s.site]
		switch {
		case !ok:
			bl.add(s.site, "no submission")
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
	req, err := agg.Request(contributors)
	if err != nil {
		return nil, len(contributors), bl, err
	}
	if charge != nil {
		if err := charge(len(contributors)); err != nil {
			return nil, len(contributors), bl, err
		}
	}
	// The request names the first t contributors; only they are asked.
	named := contributors[:params.Config().Threshold]
	var ask []*session
	for _, s := range sess {
		if slices.Contains(named, s.site) {
			ask = append(ask, s)
			s.send(&wire.CoordinatorMessage{Body: &wire.CoordinatorMessage_Engine{Engine: &wire.Engine{Round: start.Round, Phase: phaseHEDecrypt, Payload: req}}})
		}
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
			shares = append(shares, m.GetEngine().Payload)
		}
	}
	sum, err := agg.Combine(shares)
	if err != nil {
		return nil, len(contributors), bl, err
	}
	return sum, len(contributors), bl, nil
}

// Site side.

func (s *Site) heParty(st *wire.RoundStart) (*he.Party, *he.Params, error) {
	if st.HePreset != heNetPreset.Name || st.HeMaxAbs != heNetMaxAbs {
		return nil, nil, fmt.Errorf("he preset %q with bound %v is not this build's (%s, %v)", st.HePreset, st.HeMaxAbs, heNetPreset.Name, float64(heNetMaxAbs))
	}
	// The fewest contributors a sum this site helps decrypt must hold: the
	// site's own minimum cohort, or the coordinator's if that is larger.
	params, err := heParams(int(st.Sites), max(s.cfg.MinCohort, int(st.MinCohort)))
	if err != nil {
		return nil, nil, err
	}
	if s.he != nil {
		return s.he, params, nil
	}
	b, err := atrest.ReadFile(filepath.Join(s.cfg.State, "he-party.bin"), s.cfg.Passphrase)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, params, errors.New("no threshold key yet: the key ceremony has not run")
	}
	if err != nil {
		return nil, params, err
	}
	defer clear(b)
	p, err := he.RestoreParty(params, s.identity, s.cfg.Roster.identities(), b)
	if err != nil {
		return nil, params, err
	}
	s.he = p
	return p, params, nil
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
	return atrest.WriteFile(filepath.Join(s.cfg.State, "he-party.bin"), b, 0o600, s.cfg.Passphrase)
}

// heStart handles a RoundStart in mode he.
func (s *Site) heStart(r *siteRound) ([]*wire.SiteMessage, error) {
	st := r.start
	if st.Kind == wire.RoundStart_HE_SETUP {
		params, err := heParams(int(st.Sites), max(s.cfg.MinCohort, int(st.MinCohort)))
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
	v, err := r.vector()
	if err != nil {
		return nil, err
	}
	var noise he.Noise = he.NoNoise
	if st.Kind == wire.RoundStart_TRAIN && st.SiteSigma > 0 {
		e := int(math.Round(math.Log2(st.Gamma)))
		g, err := dp.NewGridGaussian(st.SiteSigma, e)
		if err != nil {
			return nil, err
		}
		noise = he.DPNoise(g, s.sampler)
	}
	if r.charge != nil {
		if err := s.charge(*r.charge); err != nil {
			return nil, err
		}
	}
	sub, err := p.Encrypt(st.Round, v, noise)
	if err != nil {
		return nil, err
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
	case phaseHEAdvert:
		list, err := unpackList(e.Payload)
		if err != nil {
			return nil, err
		}
		if s.heSetup == nil {
			return nil, errors.New("no key ceremony in progress")
		}
		m, err := s.heSetup.Setup(list)
		if err != nil {
			return nil, err
		}
		return engineMsg(e.Round, phaseHESetup, m), nil
	case phaseHESetup:
		list, err := unpackList(e.Payload)
		if err != nil {
			return nil, err
		}
		if s.heSetup == nil {
			return nil, errors.New("no key ceremony in progress")
		}
		if err := s.heSetup.Finish(list); err != nil {
			return nil, err
		}
		s.he, s.heSetup = s.heSetup, nil
		if err := s.saveHE(); err != nil {
			return nil, err
		}
		crs := s.he.CRS()
		return engineMsg(e.Round, phaseHEFinish, crs[:]), nil
	case phaseHEDecrypt:
		if s.he == nil {
			return nil, errors.New("no threshold key")
		}
		sh, err := s.he.DecryptShare(e.Payload)
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
