package protocol

// Attacks by a lying coordinator on the sites' own guarantees. The tests
// drive real Sites (their start and step methods, exactly what a network
// session calls) from a coordinator played by the test, which may lie in
// any message; colluding sites are played by secagg clients holding those
// sites' identity keys.

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/internal/atrest"
	"github.com/fl-secure/fl-secure/protocol/wire"
	"github.com/fl-secure/fl-secure/secagg"
)

// attackBed is a provisioned federation whose honest sites run in-process
// without a network and whose other sites the attacker controls.
type attackBed struct {
	t      *testing.T
	dir    string
	roster *Roster
	keys   map[int]ed25519.PrivateKey // every site's identity key
	sites  map[int]*Site              // the honest sites
	data   []*fl.Dataset
	sid    uint64
	// ledger is the coordinator's ledger, signed with the roster's
	// coordinator ledger key: the test's coordinator witnesses it to the
	// sites as an honest one would (start, witnessCharge), so that the
	// attacks run against sites that witness; charged holds, per session,
	// its charge's sequence number.
	ledger  *dp.Ledger
	charged map[uint64]int64
}

// start shows site s the Witness of st's session, as a coordinator that
// keeps its ledger does before every RoundStart, and then st.
func (b *attackBed) start(s *Site, st *wire.RoundStart) (*siteRound, []*wire.SiteMessage, error) {
	b.t.Helper()
	var from int64
	if s.witnessed != nil {
		from = s.witnessed.Size
	}
	w := &wire.Witness{Round: st.Round, Checkpoint: b.ledger.Checkpoint(), From: from}
	proof, err := b.ledger.ProveFrom(from)
	if err != nil {
		b.t.Fatal(err)
	}
	for _, h := range proof {
		w.Proof = append(w.Proof, h[:])
	}
	if m := s.witness(w, nil).GetCosigned(); m.Refusal != "" {
		b.t.Fatalf("site %d refused the Witness: %s", s.cfg.Site, m.Refusal)
	}
	return s.start(st)
}

// witnessCharge charges r's session in the coordinator's ledger (once per
// session, with the site's own charge) and shows r's site the Witness of
// that charge, as a coordinator does before it asks for what opens a sum.
func (b *attackBed) witnessCharge(r *siteRound) {
	b.t.Helper()
	if err := b.tryWitnessCharge(r); err != nil {
		b.t.Fatal(err)
	}
}

// tryWitnessCharge is witnessCharge returning the site's refusal.
func (b *attackBed) tryWitnessCharge(r *siteRound) error {
	b.t.Helper()
	if r.charge == nil {
		return nil
	}
	seq, ok := b.charged[r.start.Round]
	if !ok {
		ch := *r.charge
		ch.Session = r.start.Round
		e, err := b.ledger.Charge(ch)
		if err != nil {
			b.t.Fatal(err)
		}
		seq = e.Seq
		b.charged[r.start.Round] = seq
	}
	w := b.chargeWitness(r, seq)
	if m := r.s.witness(w, r).GetCosigned(); m.Refusal != "" {
		return fmt.Errorf("site %d refused the Witness of the charge: %s", r.s.cfg.Site, m.Refusal)
	}
	return nil
}

// chargeWitness builds the Witness, for r's session and site, of the
// ledger's entry seq under its latest checkpoint.
func (b *attackBed) chargeWitness(r *siteRound, seq int64) *wire.Witness {
	b.t.Helper()
	ep, err := b.ledger.ProveEntry(seq)
	if err != nil {
		b.t.Fatal(err)
	}
	from := r.s.witnessed.Size
	w := &wire.Witness{Round: r.start.Round, Checkpoint: ep.Checkpoint, From: from, ChargeSeq: seq, Entry: ep.Line}
	proof, err := b.ledger.ProveFrom(from)
	if err != nil {
		b.t.Fatal(err)
	}
	for _, h := range proof {
		w.Proof = append(w.Proof, h[:])
	}
	for _, h := range ep.Proof {
		w.ChargeProof = append(w.ChargeProof, h[:])
	}
	return w
}

func newAttackBed(t *testing.T, n int, honest []int, cfg func(*SiteConfig)) *attackBed {
	t.Helper()
	dir := t.TempDir()
	if err := Provision(dir, n, nil); err != nil {
		t.Fatal(err)
	}
	roster, err := LoadRoster(filepath.Join(dir, "coordinator", "roster.json"))
	if err != nil {
		t.Fatal(err)
	}
	d, _ := fl.LoadBuiltin("wdbc")
	parts, err := fl.PartitionIID(d, n, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := &attackBed{t: t, dir: dir, roster: roster, keys: map[int]ed25519.PrivateKey{}, sites: map[int]*Site{}, data: parts, sid: 1 << 20,
		charged: map[uint64]int64{}}
	lk, err := readKey(filepath.Join(dir, "coordinator", ledgerKeyFile), atrest.Passphrase{})
	if err != nil {
		t.Fatal(err)
	}
	if b.ledger, err = dp.CreateLedger(filepath.Join(dir, "coordinator-ledger.jsonl"), lk, dp.LedgerOptions{Accountant: dp.RDP, Relation: dp.AddRemove, Delta: 1e-5, Cap: 1e9}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.ledger.Close() })
	for i := 1; i <= n; i++ {
		k, err := readKey(filepath.Join(dir, fmt.Sprintf("site-%d", i), "identity.pem"), atrest.Passphrase{})
		if err != nil {
			t.Fatal(err)
		}
		b.keys[i] = k
	}
	for _, i := range honest {
		c := b.siteConfig(i)
		if cfg != nil {
			cfg(&c)
		}
		s, err := NewSite(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		b.sites[i] = s
	}
	return b
}

func (b *attackBed) siteConfig(i int) SiteConfig {
	return SiteConfig{Site: i, Identity: filepath.Join(b.dir, fmt.Sprintf("site-%d", i), "identity.pem"), Roster: b.roster,
		EpsilonCap: 3, Delta: 1e-5, MinCohort: 3, Data: b.data[i-1],
		State: filepath.Join(b.dir, fmt.Sprintf("site-%d", i), "state"), Logger: quietLogger()}
}

// statistics returns a statistics RoundStart over members with a fresh
// session identifier, announcing the given colluder count.
func (b *attackBed) statistics(members []int, colluders int) *wire.RoundStart {
	b.sid++
	st := &wire.RoundStart{Round: b.sid, Kind: wire.RoundStart_STATISTICS, Length: uint32(1 + 2*30), Bits: 64,
		Gamma: math.Exp2(-16), Mode: string(SecAgg), Sites: uint32(len(b.roster.Sites)), MinCohort: 3,
		Colluders: uint32(colluders), Threshold: uint32(len(members)/2 + 1)}
	noisedStatistics(b.t, st)
	for _, m := range members {
		st.Members = append(st.Members, uint32(m))
	}
	return st
}

// train returns a record-level secagg training RoundStart over members
// with a fresh session identifier (σ 3 per site, clip 1, logistic model on
// 30 features), after change, if any, has edited it.
func (b *attackBed) train(members []int, change func(*wire.RoundStart)) *wire.RoundStart {
	b.sid++
	st := &wire.RoundStart{Round: b.sid, Kind: wire.RoundStart_TRAIN, Length: 31, Model: make([]float64, 31), Bits: 32,
		Clip: 1, Gamma: math.Exp2(-20), SiteSigma: 3, MinCohort: 3, ModelName: "logistic",
		Mean: make([]float64, 30), Scale: ones(30), Sites: uint32(len(b.roster.Sites)), Delta: 1e-5,
		Mode: string(SecAgg), Level: string(dp.RecordLevel), Threshold: uint32(len(members)/2 + 1)}
	for _, m := range members {
		st.Members = append(st.Members, uint32(m))
	}
	if change != nil {
		change(st)
	}
	return st
}

// party is one member of a session: an honest site's round, or a colluder's
// secagg client.
type party struct {
	site   int
	id     uint32 // secagg client id: position in Members, from 1
	round  *siteRound
	client *secagg.Client
}

// drive runs one secagg session phase by phase; the attacker decides what
// each party is shown.
type drive struct {
	b       *attackBed
	st      *wire.RoundStart
	parties map[int]*party // by site
	refused map[int]error  // honest sites that refused, by site
	fwd     map[int][]byte // the forwarded shares each site was sent
}

// begin sends st to every member. Honest sites answer with their advert or
// refuse; colluders advertise through secagg clients built with their
// identity keys and the parameters the attacker chose.
func (b *attackBed) begin(st *wire.RoundStart) *drive {
	b.t.Helper()
	d := &drive{b: b, st: st, parties: map[int]*party{}, refused: map[int]error{}}
	ids := b.roster.identities()
	var pubs []ed25519.PublicKey
	for _, m := range st.Members {
		pubs = append(pubs, ids[m-1])
	}
	roster, err := secagg.NewRoster(pubs)
	if err != nil {
		b.t.Fatal(err)
	}
	for i, m := range st.Members {
		site := int(m)
		p := &party{site: site, id: uint32(i + 1)}
		if s, ok := b.sites[site]; ok {
			r, _, err := b.start(s, st)
			if err != nil {
				d.refused[site] = err
				continue
			}
			p.round = r
		} else {
			params := secagg.Params{Round: st.Round, Clients: len(st.Members), Threshold: int(st.Threshold), Degree: len(st.Members) - 1,
				Corrupt: int(st.Colluders), Length: int(st.Length), Bits: int(st.Bits), Context: terms(st)}
			if p.client, err = secagg.NewClient(params, p.id, b.keys[site], roster, nil); err != nil {
				b.t.Fatal(err)
			}
		}
		d.parties[site] = p
	}
	return d
}

// exchange runs a phase: each party in sites gets the payload that in(p)
// chooses (nil: it is skipped) and answers; honest sites through step.
func (d *drive) exchange(sites []int, phase uint32, in func(p *party) []byte, colluder func(p *party, b []byte) ([]byte, error)) map[int][]byte {
	out := map[int][]byte{}
	for _, site := range sites {
		p, ok := d.parties[site]
		if !ok {
			continue
		}
		b := in(p)
		if b == nil {
			continue
		}
		if p.round != nil {
			if phase == phaseConsistency {
				if err := d.b.tryWitnessCharge(p.round); err != nil {
					d.refused[site] = err
					delete(d.parties, site)
					continue
				}
			}
			m, err := p.round.step(&wire.Engine{Round: d.st.Round, Phase: phase, Payload: b})
			if err != nil {
				d.refused[site] = err
				delete(d.parties, site)
				continue
			}
			out[site] = m.GetEngine().Payload
			continue
		}
		r, err := colluder(p, b)
		if err != nil {
			d.b.t.Fatalf("colluder %d, phase %d: %v", site, phase, err)
		}
		out[site] = r
	}
	return out
}

// adverts collects every party's advert and returns the list.
func (d *drive) adverts() []byte {
	var list secagg.AdvertList
	list.Round = d.st.Round
	for _, m := range d.st.Members {
		p, ok := d.parties[int(m)]
		if !ok {
			continue
		}
		var a *secagg.Advert
		if p.round != nil {
			a2, err := p.round.client.AdvertiseKeys() // a retry returns the advert sent
			if err != nil {
				d.b.t.Fatal(err)
			}
			a = a2
		} else {
			a2, err := p.client.AdvertiseKeys()
			if err != nil {
				d.b.t.Fatal(err)
			}
			a = a2
		}
		list.Adverts = append(list.Adverts, *a)
	}
	lb, _ := list.MarshalBinary()
	return lb
}

// shareAndMask runs ShareKeys and MaskInput for every party, forwarding
// every share honestly, and returns the masked inputs by site.
func (d *drive) shareAndMask() map[int][]byte {
	lb := d.adverts()
	all := d.sorted()
	shares := d.exchange(all, phaseAdvert, func(*party) []byte { return lb }, func(p *party, b []byte) ([]byte, error) {
		var l secagg.AdvertList
		if err := l.UnmarshalBinary(b); err != nil {
			return nil, err
		}
		s, err := p.client.ShareKeys(&l)
		if err != nil {
			return nil, err
		}
		return s.MarshalBinary()
	})
	fwd := map[uint32]*secagg.ForwardedShares{}
	for _, site := range d.sorted() {
		p := d.parties[site]
		fwd[p.id] = &secagg.ForwardedShares{Round: d.st.Round, Recipient: p.id}
	}
	for _, site := range d.sorted() {
		var s secagg.Shares
		if err := s.UnmarshalBinary(shares[site]); err != nil {
			d.b.t.Fatal(err)
		}
		for _, sh := range s.Shares {
			if f, ok := fwd[sh.Peer]; ok {
				f.Shares = append(f.Shares, secagg.SealedShare{Peer: s.Sender, Ciphertext: sh.Ciphertext})
			}
		}
	}
	d.fwd = map[int][]byte{}
	for _, site := range d.sorted() {
		d.fwd[site], _ = fwd[d.parties[site].id].MarshalBinary()
	}
	return d.exchange(d.sorted(), phaseShares, func(p *party) []byte {
		return d.fwd[p.site]
	}, func(p *party, b []byte) ([]byte, error) {
		var f secagg.ForwardedShares
		if err := f.UnmarshalBinary(b); err != nil {
			return nil, err
		}
		m, err := p.client.MaskInput(&f, make([]uint64, d.st.Length))
		if err != nil {
			return nil, err
		}
		return m.MarshalBinary()
	})
}

func (d *drive) sorted() []int {
	var s []int
	for site := range d.parties {
		s = append(s, site)
	}
	slices.Sort(s)
	return s
}

// ids maps sites to their secagg client ids in this session.
func (d *drive) ids(sites []int) []uint32 {
	var out []uint32
	for i, m := range d.st.Members {
		if slices.Contains(sites, int(m)) {
			out = append(out, uint32(i+1))
		}
	}
	return out
}

// sign shows each site in sites the survivor set u3 (sites) and returns
// the signatures given.
func (d *drive) sign(sites []int, u3 []int) []secagg.Signature {
	req, _ := (&secagg.ConsistencyRequest{Round: d.st.Round, Survivors: d.ids(u3)}).MarshalBinary()
	got := d.exchange(sites, phaseMasked, func(*party) []byte { return req }, func(p *party, b []byte) ([]byte, error) {
		var r secagg.ConsistencyRequest
		if err := r.UnmarshalBinary(b); err != nil {
			return nil, err
		}
		s, err := p.client.CheckConsistency(&r)
		if err != nil {
			return nil, err
		}
		return s.MarshalBinary()
	})
	var sigs []secagg.Signature
	for _, site := range sites {
		b, ok := got[site]
		if !ok {
			continue
		}
		var s secagg.ConsistencySignature
		if err := s.UnmarshalBinary(b); err != nil {
			d.b.t.Fatal(err)
		}
		sigs = append(sigs, secagg.Signature{Signer: s.Sender, Sig: s.Sig})
	}
	slices.SortFunc(sigs, func(a, b secagg.Signature) int { return int(a.Signer) - int(b.Signer) })
	return sigs
}

// unmask asks the honest sites in sites to unmask u3 with sigs and returns
// the shares they revealed.
func (d *drive) unmask(sites []int, u3 []int, sigs []secagg.Signature) []secagg.RevealedShare {
	req, _ := (&secagg.UnmaskRequest{Round: d.st.Round, Survivors: d.ids(u3), Signatures: sigs}).MarshalBinary()
	got := d.exchange(sites, phaseConsistency, func(p *party) []byte {
		if p.round == nil {
			return nil
		}
		return req
	}, nil)
	var out []secagg.RevealedShare
	for _, site := range sites {
		b, ok := got[site]
		if !ok {
			continue
		}
		var r secagg.UnmaskResponse
		if err := r.UnmarshalBinary(b); err != nil {
			d.b.t.Fatal(err)
		}
		out = append(out, r.Shares...)
	}
	return out
}

// TestAttackSplitViewUnderstatedColluders: sites 5, 6 and 7 collude with
// the coordinator, which announces 0 colluders (n = 7, t = 4, consistency
// quorum 4). It shows sites 1 and 2 the survivor set {1,2,5,6,7}, with the
// victim (site 1), and sites 3 and 4 the set {3,4,5,6,7}, without it. Each
// set reaches the understated quorum and keeps t share holders for every
// honest signer, and every survivor signs it; then site 2 reveals its share
// of the victim's self-mask seed and sites 3 and 4 their shares of the
// victim's mask key, and with the colluders' three shares each secret
// reaches t = 4: the victim's input is unmasked on its own. The sites take
// the number of colluders from their own configuration (3): the quorum is
// max(4, ⌊(7+3)/2⌋+1) = 6, and neither set is signed.
func TestAttackSplitViewUnderstatedColluders(t *testing.T) {
	b := newAttackBed(t, 7, []int{1, 2, 3, 4}, func(c *SiteConfig) { c.MinCohort, c.Colluders = 4, 3 })
	d := b.begin(b.statistics([]int{1, 2, 3, 4, 5, 6, 7}, 0))
	if len(d.refused) != 0 {
		t.Fatalf("refused at start: %v", d.refused)
	}
	d.shareAndMask()
	withVictim := []int{1, 2, 5, 6, 7}
	without := []int{3, 4, 5, 6, 7}
	if sigs := d.sign([]int{1, 2}, withVictim); len(sigs) != 0 {
		t.Fatalf("%d honest sites signed the set with the victim under an understated colluder count", len(sigs))
	}
	if sigs := d.sign([]int{3, 4}, without); len(sigs) != 0 {
		t.Fatalf("%d honest sites signed the set without the victim under an understated colluder count", len(sigs))
	}
	for _, s := range []int{1, 2, 3, 4} {
		if err := d.refused[s]; err == nil || !strings.Contains(err.Error(), "quorum is 6") {
			t.Errorf("site %d: %v, want a refusal naming the quorum of 6", s, err)
		}
	}
}

// TestAttackStatisticsSubCohortAndRepeat: statistics carry no noise, so a
// coordinator that opens them over {1,2,3}, {1,2,4}, {1,3,4} and {2,3,4}
// solves for site 1's record count and per-feature sums. Each site lets
// the statistics be opened over one survivor set, ever, and only over at
// least its minimum cohort: after the first set, every other subset is
// refused, and so is a set below a site's minimum cohort.
func TestAttackStatisticsSubCohortAndRepeat(t *testing.T) {
	b := newAttackBed(t, 4, []int{1, 2, 3, 4}, nil)
	opened := 0
	for _, set := range [][]int{{1, 2, 3}, {1, 2, 4}, {1, 3, 4}, {2, 3, 4}} {
		d := b.begin(b.statistics(set, 0))
		if len(d.refused) > 0 {
			continue
		}
		d.shareAndMask()
		sigs := d.sign(set, set)
		if len(sigs) < len(set) {
			continue
		}
		revealed := d.unmask(set, set, sigs)
		if len(revealed) > 0 {
			opened++
		}
	}
	if opened != 1 {
		t.Fatalf("statistics opened over %d different sets, want 1", opened)
	}

	// A site whose minimum cohort is 4 refuses a 3-site statistics round.
	b = newAttackBed(t, 4, []int{1, 2, 3}, func(c *SiteConfig) { c.MinCohort = 4 })
	d := b.begin(b.statistics([]int{1, 2, 3}, 0))
	for _, s := range []int{1, 2, 3} {
		if err := d.refused[s]; err == nil || !strings.Contains(err.Error(), "minimum cohort is 4") {
			t.Errorf("site %d: %v", s, err)
		}
	}
	// The survivor set is checked too: a 4-member round whose survivors
	// are 3 is refused at the consistency check.
	d = b.begin(b.statistics([]int{1, 2, 3, 4}, 0))
	d.shareAndMask()
	if sigs := d.sign([]int{1, 2, 3}, []int{1, 2, 3}); len(sigs) != 0 {
		t.Fatalf("%d sites signed 3 survivors below their minimum cohort of 4", len(sigs))
	}
}

// TestAttackUnderCharging: a site with minimum cohort 6 and 1 colluder is
// offered a 3-member round. It used to accept and charge as if 5 honest
// sites added noise (ε 0.902) while the opened sum could carry the noise
// of 2 (ε 1.487). It refuses, and its charge for a 6-member round is
// computed from its own floors even when the coordinator announces less.
func TestAttackUnderCharging(t *testing.T) {
	b := newAttackBed(t, 8, []int{1}, func(c *SiteConfig) { c.MinCohort, c.Colluders = 6, 1 })
	s := b.sites[1]
	train := func(members []int, minCohort, colluders uint32) *wire.RoundStart {
		return b.train(members, func(st *wire.RoundStart) { st.MinCohort, st.Colluders = minCohort, colluders })
	}
	if _, _, err := b.start(s, train([]int{1, 2, 3}, 3, 0)); err == nil || !strings.Contains(err.Error(), "minimum cohort is 6") {
		t.Fatalf("3-member round: %v", err)
	}
	// The coordinator announces cohort 3 and no colluders; the site counts
	// 6 − 1 = 5 honest noise shares, as an independent computation does.
	st := train([]int{1, 2, 3, 4, 5, 6}, 3, 0)
	r, _, err := b.start(s, st)
	if err != nil {
		t.Fatal(err)
	}
	sigma := 3 * math.Sqrt(5)
	plan, err := dp.Distribute(dp.DistributedConfig{Sigma: sigma, Clip: 1, Clients: 8, Threshold: 6, Colluders: 1, Dim: 31, Gamma: math.Exp2(-20)})
	if err != nil {
		t.Fatal(err)
	}
	if r.charge == nil || r.charge.Plan.Colluders != 1 || math.Abs(sumSigma(r.charge)-sigma) > 1e-12 ||
		r.charge.Event.NoiseMultiplier != plan.NoiseMultiplier {
		t.Fatalf("charge %+v, want σ %v, z %v, 1 colluder", r.charge, sigma, plan.NoiseMultiplier)
	}
	if r.floor != 6 {
		t.Fatalf("survivor floor %d, want 6", r.floor)
	}
}

// TestAttackReplayedSession: a coordinator cannot replay a session or take
// a site back to an earlier round, across the site's restarts.
func TestAttackReplayedSession(t *testing.T) {
	b := newAttackBed(t, 4, []int{1, 2, 3, 4}, nil)
	st := b.statistics([]int{1, 2, 3, 4}, 0)
	if d := b.begin(st); len(d.refused) != 0 {
		t.Fatal(d.refused)
	}
	if _, _, err := b.start(b.sites[1], st); err == nil || !strings.Contains(err.Error(), "not newer") {
		t.Fatalf("replayed session: %v", err)
	}
	// After a restart the site still remembers.
	b.sites[1].Close()
	s, err := NewSite(b.siteConfig(1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := b.start(s, st); err == nil || !strings.Contains(err.Error(), "not newer") {
		t.Fatalf("replayed session after restart: %v", err)
	}
	old := b.statistics([]int{1, 2, 3, 4}, 0)
	old.Round = st.Round - 1
	if _, _, err := b.start(s, old); err == nil {
		t.Fatal("an older session was accepted")
	}
}

// TestAttackSplitNoiseView: the coordinator shows the victim (site 1) a
// round with a large noise share, for which it charges as if three honest
// sites each added one, and shows sites 2 and 3 the same session with a
// hundredth of the clip and of the noise (their own noise multiplier, and
// so their charge, unchanged). The opened sum would carry about one share
// of noise where the victim paid for three. The round's terms are bound
// into every advert (secagg Params.Context), so each site refuses the
// others' adverts before anything is masked or charged.
func TestAttackSplitNoiseView(t *testing.T) {
	b := newAttackBed(t, 3, []int{1, 2, 3}, func(c *SiteConfig) { c.EpsilonCap = 100 })
	b.sid++
	base := &wire.RoundStart{Round: b.sid, Kind: wire.RoundStart_TRAIN, Length: 31, Model: make([]float64, 31), Bits: 32,
		Clip: 1, Gamma: math.Exp2(-20), SiteSigma: 2, MinCohort: 3, ModelName: "logistic",
		Mean: make([]float64, 30), Scale: ones(30), Sites: 3, Delta: 1e-5, Mode: string(SecAgg), Level: string(dp.RecordLevel),
		Members: []uint32{1, 2, 3}, Threshold: 2}
	small := proto.Clone(base).(*wire.RoundStart)
	small.Clip, small.SiteSigma = 0.01, 0.02
	rounds := map[int]*siteRound{}
	list := &secagg.AdvertList{Round: base.Round}
	for site, st := range map[int]*wire.RoundStart{1: base, 2: small, 3: small} {
		r, _, err := b.start(b.sites[site], st)
		if err != nil {
			t.Fatalf("site %d: %v", site, err)
		}
		rounds[site] = r
	}
	for site := 1; site <= 3; site++ {
		a, err := rounds[site].client.AdvertiseKeys()
		if err != nil {
			t.Fatal(err)
		}
		list.Adverts = append(list.Adverts, *a)
	}
	lb, _ := list.MarshalBinary()
	for site := 1; site <= 3; site++ {
		if _, err := rounds[site].step(&wire.Engine{Round: base.Round, Phase: phaseAdvert, Payload: lb}); err == nil ||
			!strings.Contains(err.Error(), "invalid signature") {
			t.Errorf("site %d shared keys with sites shown other terms: %v", site, err)
		}
		if n, _ := b.sites[site].attempts(roundOf(base.Round)); n != 0 {
			t.Errorf("site %d paid %d times", site, n)
		}
	}
}

// TestAttackStatisticsAcrossModes: once a site has let its statistics be
// opened in one mode, a statistics round in another mode is refused: an he
// sum over another set, or the statistics in the clear, would disclose the
// difference as a second secagg sum would.
func TestAttackStatisticsAcrossModes(t *testing.T) {
	b := newAttackBed(t, 4, []int{1, 2, 3, 4}, func(c *SiteConfig) { c.AllowPlain = true })
	set := []int{1, 2, 3, 4}
	d := b.begin(b.statistics(set, 0))
	d.shareAndMask()
	if sigs := d.sign(set, set); len(sigs) != 4 {
		t.Fatalf("%d signatures", len(sigs))
	}
	for _, mode := range []Mode{HE, Plain} {
		st := b.statistics(set, 0)
		st.Mode = string(mode)
		if mode == HE {
			st.HePreset, st.HeMaxAbs = heNetPreset.Name, heNetMaxAbs
		}
		for _, s := range b.sites {
			if _, _, err := b.start(s, st); err == nil || !strings.Contains(err.Error(), "already released its statistics in secagg mode") {
				t.Errorf("mode %s, site %d: %v", mode, s.cfg.Site, err)
			}
		}
	}
	// A site that sent its statistics in plain mode releases them nowhere
	// else either, and plain mode needs AllowPlain, not AllowNoDP.
	b = newAttackBed(t, 4, []int{1}, func(c *SiteConfig) { c.AllowNoDP = true })
	st := b.statistics(set, 0)
	st.Mode = string(Plain)
	if _, _, err := b.start(b.sites[1], st); err == nil || !strings.Contains(err.Error(), "NOT PRIVATE") {
		t.Fatalf("plain mode with AllowNoDP only: %v", err)
	}
	b.sites[1].cfg.AllowPlain = true
	if _, _, err := b.start(b.sites[1], b.statistics(set, 0)); err != nil {
		t.Fatal(err)
	}
	st = b.statistics(set, 0)
	st.Mode, st.SiteSigma = string(Plain), 0 // plain mode carries no noise
	if _, _, err := b.start(b.sites[1], st); err != nil {
		t.Fatalf("first plain statistics: %v", err)
	}
	if _, _, err := b.start(b.sites[1], b.statistics(set, 0)); err == nil || !strings.Contains(err.Error(), "in plain mode") {
		t.Fatalf("secagg statistics after plain ones: %v", err)
	}
}

// TestAttackLevelSwitch: a coordinator that charges one round at client
// level and the next at record level would add up ε of two different
// meanings against one cap. A site's ledger holds one level: its
// configured one, or that of its first charge.
func TestAttackLevelSwitch(t *testing.T) {
	b := newAttackBed(t, 3, []int{1}, nil)
	s := b.sites[1]
	train := func(level dp.Level) *wire.RoundStart {
		return b.train([]int{1, 2, 3}, func(st *wire.RoundStart) { st.Level = string(level) })
	}
	r, _, err := b.start(s, train(dp.ClientLevel))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ledger.Charge(*r.charge); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.start(s, train(dp.RecordLevel)); err == nil || !strings.Contains(err.Error(), "client-level ε only") {
		t.Fatalf("record-level round after a client-level charge: %v", err)
	}
	if _, _, err := b.start(s, train(dp.ClientLevel)); err != nil {
		t.Fatal(err)
	}
	// A configured level refuses the other from the start.
	b = newAttackBed(t, 3, []int{1}, func(c *SiteConfig) { c.Level = dp.RecordLevel })
	if _, _, err := b.start(b.sites[1], train(dp.ClientLevel)); err == nil || !strings.Contains(err.Error(), "record-level ε only") {
		t.Fatalf("client-level round at a record-level site: %v", err)
	}
}

// TestAttackUnopenedRounds: a coordinator that makes round after round
// fail after the sites paid (or renumbers each attempt as a new round, so
// that the per-round attempt bound never applies) costs a site at most
// MaxUnopened charges in a row; then the site pays for nothing more until
// a round it paid for opens or its operator raises the bound.
func TestAttackUnopenedRounds(t *testing.T) {
	if paid := payUnopened(t, nil); paid != 3 {
		t.Fatalf("the site paid for %d rounds that never opened, want 3", paid)
	}
}

// payUnopened offers a site 10 rounds, each numbered as a new round, in
// which it pays and which never open; after each, after (if set) plays the
// coordinator's end of the round. It returns how many the site paid for.
func payUnopened(t *testing.T, after func(s *Site, r *siteRound)) int {
	t.Helper()
	b := newAttackBed(t, 3, []int{1}, func(c *SiteConfig) { c.EpsilonCap = 100 })
	s := b.sites[1]
	paid := 0
	for r := 1; r <= 10; r++ {
		b.sid = uint64(r)<<20 - 1 // each attempt numbered as a new round
		rd, _, err := b.start(s, b.train([]int{1, 2, 3}, nil))
		if err != nil {
			if !strings.Contains(err.Error(), "did not open") {
				t.Fatal(err)
			}
			continue
		}
		if err := s.charge(*rd.charge); err != nil { // the site pays; the round never opens
			t.Fatal(err)
		}
		paid++
		if after != nil {
			after(s, rd)
		}
	}
	return paid
}

// TestAttackSiteStateReset: whoever can write a site's state directory
// deletes site-state.json, replaces it with "{}" or "null", or edits it,
// so that the site forgets the sessions it joined and the statistics it
// released. The file is signed with the site's identity key and its
// absence is noticed when the site has a ledger: each is refused at start,
// naming the file.
func TestAttackSiteStateReset(t *testing.T) {
	b := newAttackBed(t, 4, []int{1, 2, 3, 4}, nil)
	set := []int{1, 2, 3, 4}
	d := b.begin(b.statistics(set, 0))
	d.shareAndMask()
	d.sign(set, set)
	s := b.sites[1]
	path := filepath.Join(s.cfg.State, siteStateFile)
	signed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := bytes.Replace(signed, []byte(`statistics_survivors`), []byte(`statistics_survivorz`), 1)
	ledgerPath := filepath.Join(s.cfg.State, "site-ledger.jsonl")
	ledger, err := os.ReadFile(ledgerPath)
	if err != nil {
		t.Fatal(err)
	}
	for name, tamper := range map[string]func() error{
		"deleted": func() error { return os.Remove(path) },
		"{}":      func() error { return os.WriteFile(path, []byte("{}"), 0o600) },
		"null":    func() error { return os.WriteFile(path, []byte("null"), 0o600) },
		"edited":  func() error { return os.WriteFile(path, edited, 0o600) },
		"deleted with the ledger": func() error {
			os.Remove(filepath.Join(s.cfg.State, "site-ledger.jsonl"))
			return os.Remove(path)
		},
	} {
		t.Run(name, func(t *testing.T) {
			s.Close()
			if err := tamper(); err != nil {
				t.Fatal(err)
			}
			if _, err := NewSite(b.siteConfig(1)); err == nil || !strings.Contains(err.Error(), siteStateFile) {
				t.Fatalf("site started with a %s state file: %v", name, err)
			}
			if err := os.WriteFile(path, signed, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(ledgerPath, ledger, 0o600); err != nil {
				t.Fatal(err)
			}
		})
	}
	if s2, err := NewSite(b.siteConfig(1)); err != nil {
		t.Fatalf("the untouched state: %v", err)
	} else {
		s2.Close()
	}
}

// TestSiteNeverPrintsItsKeys: printing a Site, however, shows no key.
func TestSiteNeverPrintsItsKeys(t *testing.T) {
	b := newAttackBed(t, 3, []int{1}, nil)
	s := b.sites[1]
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("site", "s", s)
	out := fmt.Sprintf("%v %+v %#v %s", s, s, s, s) + logged.String()
	for _, secret := range [][]byte{s.identity, s.identity.Seed()} {
		for _, enc := range []string{string(secret), fmt.Sprint(secret), fmt.Sprintf("%x", secret), base64.StdEncoding.EncodeToString(secret)} {
			if strings.Contains(out, enc) {
				t.Fatalf("a Site prints its identity key: %s", out)
			}
		}
	}
}

// TestAttackUnknownKind: a coordinator sends a secagg round of a kind the
// site's rules do not cover (a key ceremony outside he mode, or a kind
// number no version defines), without noise, over two member sets; the
// difference of the sums would be a site's exact update, charged nothing.
// A site refuses every kind and mode it does not know, and key ceremonies
// outside he mode.
func TestAttackUnknownKind(t *testing.T) {
	b := newAttackBed(t, 4, []int{1}, nil)
	for _, kind := range []wire.RoundStart_Kind{wire.RoundStart_HE_SETUP, 5, 7} {
		b.sid++
		st := &wire.RoundStart{Round: b.sid, Kind: kind, Length: 31, Model: make([]float64, 31), Bits: 32,
			Clip: 1, Gamma: math.Exp2(-20), MinCohort: 3, ModelName: "logistic", Mean: make([]float64, 30), Scale: ones(30),
			Sites: 4, Delta: 1e-5, Mode: string(SecAgg), Level: string(dp.ClientLevel), Members: []uint32{1, 2, 3, 4}, Threshold: 3}
		if _, _, err := b.start(b.sites[1], st); err == nil {
			t.Errorf("kind %d in secagg mode accepted", kind)
		}
	}
	b.sid++
	st := b.statistics([]int{1, 2, 3, 4}, 0)
	st.Mode = "secagg2"
	if _, _, err := b.start(b.sites[1], st); err == nil || !strings.Contains(err.Error(), "unknown mode") {
		t.Errorf("unknown mode: %v", err)
	}
}

// TestAttackFakeEndResetsUnopened: a coordinator runs each round up to the
// masked inputs, never unmasks, and says "ok" at the end, to reset the
// count of unopened rounds a site paid for. In secagg mode only the site's
// own unmasking counts a round as opened.
func TestAttackFakeEndResetsUnopened(t *testing.T) {
	paid := payUnopened(t, func(s *Site, r *siteRound) {
		s.end(r, &wire.RoundEnd{Round: r.start.Round, Status: "ok"})
	})
	if paid != 3 {
		t.Fatalf("the site paid for %d rounds it never unmasked, want 3", paid)
	}
}

// TestAttackReplayedForwardedShares: a coordinator sends a site the same
// forwarded shares again and again in one session; the site answers with
// the masked input it already sent, and used to charge its ledger each
// time (10 charges for one round, past both the attempt and the unopened
// bounds). It charges once per session.
func TestAttackReplayedForwardedShares(t *testing.T) {
	b := newAttackBed(t, 3, []int{1, 2, 3}, func(c *SiteConfig) { c.EpsilonCap = 100 })
	d := b.begin(b.train([]int{1, 2, 3}, nil))
	d.shareAndMask()
	r := d.parties[1].round
	for range 10 {
		if _, err := r.step(&wire.Engine{Round: d.st.Round, Phase: phaseShares, Payload: d.fwd[1]}); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := b.sites[1].attempts(roundOf(d.st.Round)); n != 1 {
		t.Fatalf("the site paid %d times for one session", n)
	}
}

// TestAttackPlainTrainClaimsNoise: a plain-mode round sends a site's vector
// as it is. A coordinator that announces a noise share in a plain training
// round would get an exact, uncharged update from a site that allows plain
// mode but not rounds without noise. The site refuses plain training rounds
// unless it allows rounds without noise, and any that claims noise.
func TestAttackPlainTrainClaimsNoise(t *testing.T) {
	b := newAttackBed(t, 3, []int{1}, func(c *SiteConfig) { c.AllowPlain = true })
	plain := func(sigma float64) *wire.RoundStart {
		return b.train([]int{1, 2, 3}, func(st *wire.RoundStart) { st.Mode, st.SiteSigma = string(Plain), sigma })
	}
	if _, _, err := b.start(b.sites[1], plain(3)); err == nil {
		t.Fatal("a plain training round claiming noise was joined")
	}
	if _, _, err := b.start(b.sites[1], plain(0)); err == nil {
		t.Fatal("a plain training round was joined without AllowNoDP")
	}
	b.sites[1].cfg.AllowNoDP = true
	if _, _, err := b.start(b.sites[1], plain(3)); err == nil {
		t.Fatal("a plain training round claiming noise was joined with AllowNoDP")
	}
	if _, _, err := b.start(b.sites[1], plain(0)); err != nil {
		t.Fatalf("a plain round without noise, allowed: %v", err)
	}
}

// TestAttackSiteLedgerCutShort: whoever can write a site's state directory
// deletes its ledger, or cuts its last charges off, so that the ε it spent
// comes back (a new ledger starts at 0; a truncated one passes its own
// audit). The signed site state records the ledger's tree head (size and root)
// at every charge, and the site refuses to start on a shorter ledger.
func TestAttackSiteLedgerCutShort(t *testing.T) {
	b := newAttackBed(t, 3, []int{1}, func(c *SiteConfig) { c.EpsilonCap = 100 })
	s := b.sites[1]
	for r := 1; r <= 3; r++ {
		b.sid = uint64(r)<<20 - 1
		rd, _, err := b.start(s, b.train([]int{1, 2, 3}, nil))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.charge(*rd.charge); err != nil {
			t.Fatal(err)
		}
		s.opened()
	}
	s.Close()
	path := filepath.Join(s.cfg.State, "site-ledger.jsonl")
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(full, []byte("\n"))
	for name, cut := range map[string][]byte{
		"deleted":         nil,
		"last charge cut": bytes.Join(lines[:len(lines)-2], nil),
		"two charges cut": bytes.Join(lines[:len(lines)-3], nil),
	} {
		t.Run(name, func(t *testing.T) {
			if cut == nil {
				os.Remove(path)
			} else if err := os.WriteFile(path, cut, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := NewSite(b.siteConfig(1)); err == nil || !strings.Contains(err.Error(), "site-ledger.jsonl") {
				t.Fatalf("the site started on a %s ledger: %v", name, err)
			}
			if err := os.WriteFile(path, full, 0o600); err != nil {
				t.Fatal(err)
			}
		})
	}
	s2, err := NewSite(b.siteConfig(1))
	if err != nil {
		t.Fatalf("the whole ledger: %v", err)
	}
	s2.Close()
}
