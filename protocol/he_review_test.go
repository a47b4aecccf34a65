package protocol

// Attacks on he mode over the network: a coordinator that shows sites
// different terms in one round, a colluding site that answers a decryption
// twice, and a decryptor that lies about its share. The bed tests drive
// real Sites (their start and step methods, what a network session calls)
// from a coordinator played by the test; the network tests run a real
// coordinator with one malicious site.

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/he"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

// heCeremony runs the key ceremony among the bed's sites, relaying every
// step as an honest coordinator would, with an HE_SETUP start announcing
// the given colluder count. It returns the sites that refused, with why.
func (b *attackBed) heCeremony(announced int) map[int]error {
	b.t.Helper()
	n := len(b.roster.Sites)
	b.sid++
	st := &wire.RoundStart{Round: b.sid, Kind: wire.RoundStart_HE_SETUP, Sites: uint32(n), MinCohort: 3,
		Colluders: uint32(announced), HePreset: heNetPreset.Name, HeMaxAbs: heNetMaxAbs, Mode: string(HE)}
	for i := 1; i <= n; i++ {
		st.Members = append(st.Members, uint32(i))
	}
	refused := map[int]error{}
	rounds := map[int]*siteRound{}
	msgs := make([][]byte, n)
	for i := 1; i <= n; i++ {
		r, out, err := b.start(b.sites[i], st)
		if err != nil {
			refused[i] = err
			continue
		}
		rounds[i], msgs[i-1] = r, out[1].GetEngine().Payload
	}
	for _, phase := range []uint32{phaseHEAdvert, phaseHECommit, phaseHESetup, phaseHEConfirm} {
		if len(refused) > 0 {
			return refused
		}
		list := packList(msgs)
		for i := 1; i <= n; i++ {
			m, err := rounds[i].step(&wire.Engine{Round: st.Round, Phase: phase, Payload: list})
			if err != nil {
				refused[i] = err
				continue
			}
			msgs[i-1] = m.GetEngine().Payload
		}
	}
	return refused
}

// heJoin shows each site its start and returns the rounds and submissions
// of the sites that joined.
func (b *attackBed) heJoin(starts map[int]*wire.RoundStart) (map[int]*siteRound, map[int][]byte) {
	b.t.Helper()
	rounds, subs := map[int]*siteRound{}, map[int][]byte{}
	for site, st := range starts {
		r, out, err := b.start(b.sites[site], st)
		if err != nil {
			b.t.Fatalf("site %d refused the round: %v", site, err)
		}
		rounds[site], subs[site] = r, out[1].GetEngine().Payload
	}
	return rounds, subs
}

// heDecrypt shows a site the Witness of its round's charge and asks its
// round for its decryption share: the share, or the site's refusal.
func (b *attackBed) heDecrypt(r *siteRound, req []byte) ([]byte, error) {
	if err := b.tryWitnessCharge(r); err != nil {
		return nil, err
	}
	m, err := r.step(&wire.Engine{Round: r.start.Round, Phase: phaseHEDecrypt, Payload: req})
	if err != nil {
		return nil, err
	}
	if rf := m.GetRefuse(); rf != nil {
		return nil, errors.New(rf.Reason)
	}
	return m.GetEngine().Payload, nil
}

// heRequest encodes a decryption request as a coordinator that skips the
// Aggregator's checks would (package he's request encoding, rebuilt here).
func heRequest(round uint64, decryptors []int, subs [][]byte) []byte {
	b := append([]byte("FLHE"), 2, 4, heNetPreset.ID, 0)
	b = binary.LittleEndian.AppendUint64(b, round)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(decryptors)))
	for _, d := range decryptors {
		b = binary.LittleEndian.AppendUint32(b, uint32(d))
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(subs)))
	for _, s := range subs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

// heTrainStart is an he training round over members, record level.
func (b *attackBed) heTrainStart(members []int, clip, sigma float64) *wire.RoundStart {
	b.sid++
	st := &wire.RoundStart{Round: b.sid, Kind: wire.RoundStart_TRAIN, Length: 31, Model: make([]float64, 31),
		Clip: clip, Gamma: math.Exp2(-20), SiteSigma: sigma, MinCohort: 3, ModelName: "logistic",
		Mean: make([]float64, 30), Scale: ones(30), Sites: uint32(len(b.roster.Sites)), Delta: 1e-5, Mode: string(HE),
		Level: string(dp.RecordLevel), HePreset: heNetPreset.Name, HeMaxAbs: heNetMaxAbs}
	for _, m := range members {
		st.Members = append(st.Members, uint32(m))
	}
	return st
}

// TestAttackHESplitTerms: in one he round the coordinator shows site 1
// a large noise share (σ = 2, clip 1), for which site 1 charges as if
// every site added one, and shows sites 2 and 3 a hundredth of the clip
// and of the noise. The decrypted sum would carry about one share of noise
// where site 1 paid for three. A submission carries the digest of the
// terms its site saw, signed; a decryptor refuses a sum whose submissions
// were not all made under the terms it holds itself, and the coordinator's
// Aggregator refuses to mix them.
func TestAttackHESplitTerms(t *testing.T) {
	b := newAttackBed(t, 3, []int{1, 2, 3}, func(c *SiteConfig) { c.EpsilonCap = 100 })
	if refused := b.heCeremony(0); len(refused) > 0 {
		t.Fatalf("key ceremony: %v", refused)
	}
	base := b.heTrainStart([]int{1, 2, 3}, 1, 2)
	small := b.heTrainStart([]int{1, 2, 3}, 0.01, 0.02)
	small.Round = base.Round
	rounds, subs := b.heJoin(map[int]*wire.RoundStart{1: base, 2: small, 3: small})
	params := b.sites[1].he.Params()
	all := [][]byte{subs[1], subs[2], subs[3]}

	agg, err := he.NewAggregator(params, b.roster.identities(), b.sites[1].he.CRS(), base.Round, terms(base))
	if err != nil {
		t.Fatal(err)
	}
	mixed := 0
	for site := 1; site <= 3; site++ {
		if err := agg.Add(subs[site]); err != nil {
			t.Logf("coordinator's Aggregator: site %d: %v", site, err)
			mixed++
		}
	}
	if mixed == 0 {
		t.Errorf("the Aggregator added submissions made under different terms")
	}
	// A coordinator that skips the Aggregator asks the decryptors itself.
	th := params.Config().Threshold
	for _, set := range [][]int{{1, 2}, {2, 3}} {
		req := heRequest(base.Round, set[:th], all)
		var shares [][]byte
		for _, d := range set[:th] {
			sh, err := b.heDecrypt(rounds[d], req)
			if err != nil {
				t.Logf("decryptor %d refused: %v", d, err)
				continue
			}
			shares = append(shares, sh)
		}
		if len(shares) == th {
			t.Errorf("decryptors %v decrypted a sum whose submissions were made under different terms (site 1: σ %v, clip %v; sites 2, 3: σ %v, clip %v)",
				set[:th], base.SiteSigma, base.Clip, small.SiteSigma, small.Clip)
		}
	}
	for site := 1; site <= 3; site++ {
		t.Logf("site %d paid ε = %.3f", site, b.sites[site].ledger.Spent())
	}
}

// TestAttackHETwoSumsOneColluder: N = 5 sites, one of which (site 5)
// colludes with the coordinator. With t = ⌊N/2⌋+1 = 3 the decrypting sets
// {1,2,5} and {3,4,5} share only site 5, which restores a copy of its own
// party state and answers twice: the coordinator decrypts the sum of all
// five submissions and the sum without site 1, whose difference is site
// 1's statistics. The threshold now satisfies 2t − N > c for the colluders
// c the coordinator announces at the key ceremony (t = 4 for c = 1), so any
// two decrypting sets share an honest site, which refuses the second.
func TestAttackHETwoSumsOneColluder(t *testing.T) {
	b := newAttackBed(t, 5, []int{1, 2, 3, 4, 5}, func(c *SiteConfig) { c.Colluders = 1 })
	if refused := b.heCeremony(1); len(refused) > 0 {
		t.Fatalf("key ceremony: %v", refused)
	}
	b.sid++
	st := &wire.RoundStart{Round: b.sid, Kind: wire.RoundStart_STATISTICS, Length: uint32(1 + 2*30), Bits: 64,
		Gamma: math.Exp2(-16), Mode: string(HE), Sites: 5, MinCohort: 3, Colluders: 1,
		Members: []uint32{1, 2, 3, 4, 5}, HePreset: heNetPreset.Name, HeMaxAbs: heNetMaxAbs}
	noisedStatistics(t, st)
	starts := map[int]*wire.RoundStart{}
	for i := 1; i <= 5; i++ {
		starts[i] = st
	}
	rounds, subs := b.heJoin(starts)
	params := b.sites[1].he.Params()
	th := params.Config().Threshold
	t.Logf("decryption threshold t = %d of 5", th)
	// The colluder keeps a copy of its party state from before it answers.
	colluder := b.sites[5]
	statePath := filepath.Join(colluder.cfg.State, "he-party.bin")
	saved, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	setA := append(slices.Clone([]int{1, 2, 3, 4}[:th-1]), 5)
	setB := append(slices.Clone([]int{1, 2, 3, 4}[4-(th-1):]), 5)
	t.Logf("decrypting sets %v (all five submissions) and %v (without site 1)", setA, setB)

	decrypt := func(set, contributors []int) ([]float64, error) {
		agg, err := he.NewAggregator(params, b.roster.identities(), b.sites[1].he.CRS(), st.Round, terms(st))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range contributors {
			if err := agg.Add(subs[c]); err != nil {
				t.Fatal(err)
			}
		}
		req, err := agg.Request(set)
		if err != nil {
			t.Fatal(err)
		}
		var shares [][]byte
		var refusals []string
		for _, d := range set {
			sh, err := b.heDecrypt(rounds[d], req)
			if err != nil {
				refusals = append(refusals, err.Error())
				continue
			}
			shares = append(shares, sh)
		}
		if len(refusals) > 0 {
			return nil, errors.New(strings.Join(refusals, "; "))
		}
		return agg.Combine(shares)
	}
	sumA, err := decrypt(setA, []int{1, 2, 3, 4, 5})
	if err != nil {
		t.Fatalf("first decryption: %v", err)
	}
	// The colluder rolls its state back and answers again.
	if err := os.WriteFile(statePath, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	colluder.he = nil
	if _, _, err := colluder.heParty(st); err != nil {
		t.Fatal(err)
	}
	sumB, err := decrypt(setB, []int{2, 3, 4, 5})
	if err != nil {
		t.Logf("second decryption refused: %v", err)
		return
	}
	own, _ := rounds[1].vector()
	diff := make([]float64, len(sumA))
	for i := range diff {
		diff[i] = sumA[i] - sumB[i]
	}
	t.Errorf("two sums of one round decrypted with one colluder: their difference %v... is site 1's statistics %v...", diff[:3], own[:3])
}

// corruptShare rewrites a named decryptor's share in training rounds.
func corruptShare(f func(payload []byte) []byte) func(st *wire.RoundStart, m *wire.SiteMessage) *wire.SiteMessage {
	return func(st *wire.RoundStart, m *wire.SiteMessage) *wire.SiteMessage {
		if e := m.GetEngine(); e != nil && e.Phase == phaseHEDecrypt && st.Kind == wire.RoundStart_TRAIN {
			return engineMsg(e.Round, e.Phase, f(slices.Clone(e.Payload)))
		}
		return m
	}
}

// TestAttackHEDecryptionShareRelabelled: site 2, a named decryptor, sends
// its share under site 1's party number. The coordinator used to add
// whatever each decryptor sent, so the combination failed with a second
// share "from party 1" after every site had paid, and no one was named.
// Now a share must carry its sender's party number and the session's
// round; site 2's is dropped and site 2 named.
func TestAttackHEDecryptionShareRelabelled(t *testing.T) {
	const n = 5
	f, logs := newLoggedFederation(t, n, CoordinatorConfig{Mode: HE, Level: dp.ClientLevel, Rounds: 2, Epsilon: 3, Delta: 1e-5,
		Clip: 1, LearningRate: 1, PhaseTimeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cfgs []SiteConfig
	for i := 1; i <= n; i++ {
		c := f.siteConfig(i)
		if i == 2 {
			c.misbehave = corruptShare(func(p []byte) []byte {
				binary.LittleEndian.PutUint32(p[16:], 1) // after the 8-byte header and the round
				return p
			})
		}
		cfgs = append(cfgs, c)
	}
	_, wait := runSites(t, ctx, cfgs)
	sum, err := f.coord.Run(ctx)
	cancel()
	wait()
	t.Logf("run: %v", err)
	if sum != nil {
		for _, r := range sum.Rounds {
			t.Logf("round %d: %s", r.Round, r.Status)
		}
	}
	named := logs.lines(`msg="site misbehaved"`, "site=2")
	if len(named) == 0 {
		t.Errorf("site 2 relabelled its decryption share and was not named; coordinator log:\n%s", strings.Join(logs.lines("round"), "\n"))
	} else {
		t.Logf("coordinator: %s", named[0])
	}
	if len(logs.lines(`msg="site misbehaved"`, "site=1")) > 0 {
		t.Errorf("site 1 was named for site 2's share")
	}
}

// TestAttackHEZeroDecryptionShare: site 2, a named decryptor, sends a
// well-formed share that is all zero. Nothing checks a share against its
// party's key (that needs a proof), but the sum it yields is the sum less
// c1·λ₂·s₂, far outside the range honest updates produce: the round is
// refused, not published, and the coordinator's error wraps
// he.ErrOutOfRange.
func TestAttackHEZeroDecryptionShare(t *testing.T) {
	const n = 5
	f, logs := newLoggedFederation(t, n, CoordinatorConfig{Mode: HE, Level: dp.ClientLevel, Rounds: 2, Epsilon: 3, Delta: 1e-5,
		Clip: 1, LearningRate: 1, PhaseTimeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cfgs []SiteConfig
	zeroed := 0
	for i := 1; i <= n; i++ {
		c := f.siteConfig(i)
		c.ModelOut = filepath.Join(t.TempDir(), "model.npy")
		if i == 2 {
			c.misbehave = corruptShare(func(p []byte) []byte {
				zeroed++
				clear(p[24:]) // header, round, party and count stay
				return p
			})
		}
		cfgs = append(cfgs, c)
	}
	sites, wait := runSites(t, ctx, cfgs)
	sum, err := f.coord.Run(ctx)
	cancel()
	wait()
	if zeroed == 0 {
		t.Fatal("site 2 never sent a decryption share")
	}
	t.Logf("run: %v", err)
	if sum != nil && okRounds(sum) > 0 {
		t.Fatalf("a round with a zero decryption share was published: %+v", sum.Rounds)
	}
	if !errors.Is(err, he.ErrOutOfRange) {
		t.Errorf("run error %v does not wrap he.ErrOutOfRange", err)
	}
	for i, s := range sites {
		if _, err := os.Stat(s.cfg.ModelOut); err == nil {
			t.Errorf("site %d received a model", i+1)
		}
	}
	if refused := logs.lines(`msg="decrypted sum refused`); len(refused) > 0 {
		t.Logf("coordinator: %s", refused[0])
	}
}

// The threshold follows the colluders the coordinator announces at the key
// ceremony, so every site uses the same one; a site that assumes more
// colluders than that threshold tolerates refuses the ceremony, and a site
// whose operator later raises its colluders refuses to use the key.
func TestHEThresholdFollowsColluders(t *testing.T) {
	b := newAttackBed(t, 5, []int{1, 2, 3, 4, 5}, func(c *SiteConfig) {
		if c.Site == 3 {
			c.Colluders = 1
		}
	})
	refused := b.heCeremony(0)
	if err := refused[3]; err == nil || !strings.Contains(err.Error(), "needs a decryption threshold of at least 4 of 5") {
		t.Fatalf("site 3 (1 colluder) joined a ceremony announcing none: %v", refused)
	} else {
		t.Logf("site 3: %v", err)
	}
	if refused := b.heCeremony(1); len(refused) > 0 {
		t.Fatalf("key ceremony with 1 colluder announced: %v", refused)
	}
	for i, s := range b.sites {
		if th := s.he.Params().Config().Threshold; th != 4 {
			t.Errorf("site %d: threshold %d, want 4", i, th)
		}
	}
	s := b.sites[3]
	s.cfg.Colluders, s.he = 3, nil // needs t = 5
	st := &wire.RoundStart{HePreset: heNetPreset.Name, HeMaxAbs: heNetMaxAbs, Sites: 5}
	if _, _, err := s.heParty(st); err == nil || !strings.Contains(err.Error(), "threshold 4 of 5") {
		t.Errorf("a key of t = 4 used by a site assuming 3 colluders: %v", err)
	} else {
		t.Logf("site 3, now assuming 3 colluders: %v", err)
	}
}

// A coordinator whose colluders changed since the key ceremony stops
// rather than ask for decryptions with another threshold than the key's.
func TestHECoordinatorKeepsThreshold(t *testing.T) {
	f := newFederation(t, 5, CoordinatorConfig{Mode: HE, Rounds: 1, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1, Colluders: 1})
	path := filepath.Join(f.coord.cfg.State, "he.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	// A record from before the threshold was kept: its key has t = 3.
	if err := os.WriteFile(path, []byte(`{"crs":"`+strings.Repeat("ab", 32)+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := f.coord.heSetup(context.Background())
	if err == nil || !strings.Contains(err.Error(), "threshold of 3 of 5 sites; with 1 colluders this run needs 4") {
		t.Fatalf("heSetup: %v", err)
	}
	t.Logf("coordinator: %v", err)
	if err := os.WriteFile(path, []byte(`{"crs":"`+strings.Repeat("ab", 32)+`","threshold":4}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.coord.heSetup(context.Background()); err != nil {
		t.Errorf("heSetup with the key's threshold recorded: %v", err)
	}
}
