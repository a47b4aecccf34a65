package protocol

// Faulty and malicious sites over real gRPC with mutual TLS: what an honest
// coordinator must do so that one bad site costs the honest sites nothing
// beyond the attempt bound, and is named.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/protocol/wire"
	"github.com/fl-secure/fl-secure/secagg"
)

// logBuffer is a slog handler target safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// watch replaces the coordinator's logger with one the test can read.
func (f *federation) watch() *logBuffer {
	lb := &logBuffer{}
	f.coord.log = slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return lb
}

// clientID returns site's secagg client id in the round st.
func clientID(st *wire.RoundStart, site int) uint32 {
	return uint32(slices.Index(st.Members, uint32(site)) + 1)
}

// spoof rewrites a secagg message to claim sender id and garbles its body.
// A Shares message stays well formed (its sealed shares garbled), so that
// only the sender check can tell it from the real one.
func spoof(m *wire.SiteMessage, id uint32) *wire.SiteMessage {
	e := m.GetEngine()
	var sh secagg.Shares
	if e.Phase == phaseShares && sh.UnmarshalBinary(e.Payload) == nil {
		for i := range sh.Shares {
			if sh.Shares[i].Peer == id {
				sh.Shares[i].Peer = sh.Sender // addressed as the victim would
			}
			sh.Shares[i].Ciphertext[0] ^= 0xa5
		}
		slices.SortFunc(sh.Shares, func(a, b secagg.SealedShare) int { return int(a.Peer) - int(b.Peer) })
		sh.Sender = id
		b, _ := sh.MarshalBinary()
		return engineMsg(e.Round, e.Phase, b)
	}
	p := bytes.Clone(e.Payload)
	binary.BigEndian.PutUint32(p[10:14], id)
	for i := 14; i < len(p); i += 5 {
		p[i] ^= 0xa5
	}
	return engineMsg(e.Round, e.Phase, p)
}

// siteCharges returns, per training round, the charges in a site's ledger.
func siteCharges(t *testing.T, s *Site) map[int]int {
	t.Helper()
	es, err := dp.ReadLedger(filepath.Join(s.cfg.State, "site-ledger.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int{}
	for _, e := range es {
		if e.Kind == "charge" && e.Round != statisticsRound {
			out[e.Round]++
		}
	}
	return out
}

func auditSite(t *testing.T, s *Site) {
	t.Helper()
	if _, err := dp.AuditLedger(filepath.Join(s.cfg.State, "site-ledger.jsonl"), siteLedgerPub(t, s.cfg)); err != nil {
		t.Errorf("site %d ledger: %v", s.cfg.Site, err)
	}
}

// TestAttackImpersonation: a rostered site sends garbage Shares in site
// 2's name. The coordinator used to accept the first Shares message
// claiming site 2's client, refuse site 2's real one as a duplicate, and forward
// garbage; the honest sites charged their ledgers and abandoned every
// round (0 rounds completed, sites at ε 3 of 3). Messages now count only
// in the name of the site whose certificate carried them: the forgery is
// dropped, its sender is named, and every round opens with the honest
// sites, each charged once per opened round.
func TestAttackImpersonation(t *testing.T) {
	f := newFederation(t, 5, CoordinatorConfig{Rounds: 3, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1,
		PhaseTimeout: 2 * time.Second, JoinWait: time.Second})
	logs := f.watch()
	sites, sum := f.run(t, 5, func(i int, c *SiteConfig) {
		if i == 1 {
			// Site 1's messages are handled first in each phase.
			c.misbehave = func(st *wire.RoundStart, m *wire.SiteMessage) *wire.SiteMessage {
				if e := m.GetEngine(); e != nil && e.Phase == phaseShares {
					return spoof(m, clientID(st, 2))
				}
				return m
			}
		}
	})
	if okRounds(sum) != 3 {
		t.Fatalf("rounds %+v", sum.Rounds)
	}
	if got := f.coord.Misbehaviour()[1]; len(got) == 0 {
		t.Errorf("site 1 not named as misbehaving: %v", f.coord.Misbehaviour())
	}
	if !strings.Contains(logs.String(), "site=1") {
		t.Error("the coordinator's log does not name site 1")
	}
	for _, s := range sites[1:] {
		for r, n := range siteCharges(t, s) {
			if n != 1 {
				t.Errorf("site %d paid %d times for round %d", s.cfg.Site, n, r)
			}
		}
		if s.Rounds() != 3 {
			t.Errorf("site %d took part in %d rounds", s.cfg.Site, s.Rounds())
		}
		auditSite(t, s)
	}
}

// TestAttackMisconfiguredSite: a site whose update has the wrong length
// used to join, abandon every round at masking, and make every retry
// charge the other sites again (ε 1.63 → 2.39 → 3.00 of 3 at site 1 while
// the coordinator's ledger said 0), while the coordinator never named it.
// It now refuses at Join with its reason, which the coordinator logs with
// its name; when the round cannot reach the minimum cohort without it, the
// coordinator stops with an error naming it, and no honest site paid.
func TestAttackMisconfiguredSite(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sites     int
		minCohort int
	}{{"cohort reachable", 5, 3}, {"cohort not reachable", 4, 4}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFederation(t, tc.sites, CoordinatorConfig{Rounds: 2, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1,
				Level: dp.ClientLevel, MinCohort: tc.minCohort, PhaseTimeout: 2 * time.Second, JoinWait: time.Second})
			logs := f.watch()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var cfgs []SiteConfig
			for i := 1; i <= tc.sites; i++ {
				c := f.siteConfig(i)
				c.MinCohort = tc.minCohort
				if i == tc.sites {
					c.Update = make([]float64, 7) // the model has 31 parameters
				}
				cfgs = append(cfgs, c)
			}
			sites, wait := runSites(t, ctx, cfgs)
			sum, err := f.coord.Run(ctx)
			if err != nil {
				cancel() // no goodbye after a failed run
			}
			wait()
			bad := tc.sites
			if !strings.Contains(logs.String(), "the update has 7 values") {
				t.Errorf("the coordinator did not log the site's reason:\n%s", logs.String())
			}
			if tc.sites == 4 {
				if err == nil || !strings.Contains(err.Error(), "site 4 (refused: the update has 7 values") {
					t.Fatalf("run error %v, want one naming site 4", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if okRounds(sum) != 2 {
					t.Fatalf("rounds %+v", sum.Rounds)
				}
			}
			for _, s := range sites {
				if s.cfg.Site == bad {
					continue
				}
				charges := siteCharges(t, s)
				total := 0
				for _, n := range charges {
					total += n
				}
				if total != s.Rounds() {
					t.Errorf("site %d paid %d charges for %d opened rounds", s.cfg.Site, total, s.Rounds())
				}
				auditSite(t, s)
			}
		})
	}
}

// TestNetworkMaliciousSite: one malicious site among five honest ones
// spoofs senders (round 1), sends a masked input of the wrong length
// (round 2) and withholds its consistency signature after everyone has
// paid (round 3). Rounds 1, 2 and 4 open; no honest site pays for any
// round more than its attempt bound; the malicious site is named.
func TestNetworkMaliciousSite(t *testing.T) {
	f := newFederation(t, 6, CoordinatorConfig{Rounds: 4, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1,
		PhaseTimeout: 2 * time.Second, JoinWait: time.Second})
	logs := f.watch()
	sites, sum := f.run(t, 6, func(i int, c *SiteConfig) {
		c.EpsilonCap = 6 // room for a retried round
		if i == 6 {
			c.misbehave = func(st *wire.RoundStart, m *wire.SiteMessage) *wire.SiteMessage {
				e := m.GetEngine()
				if e == nil {
					return m
				}
				switch roundOf(st.Round) {
				case 1:
					return spoof(m, clientID(st, 2))
				case 2:
					if e.Phase == phaseMasked {
						return engineMsg(e.Round, e.Phase, e.Payload[:len(e.Payload)-4])
					}
				case 3:
					if e.Phase == phaseConsistency {
						return nil
					}
				}
				return m
			}
		}
	})
	// Round 3 fails after every site (and the coordinator) paid for it:
	// the coordinator charged it before asking to unmask, so it is spent,
	// not retried, and site 6 is left out of the rest of the run. Every
	// other round opens.
	var status []string
	for _, r := range sum.Rounds {
		status = append(status, fmt.Sprintf("%d:%s", r.Round, r.Status))
	}
	if got := strings.Join(status, " "); got != "1:ok 2:ok 3:failed 4:ok" {
		t.Fatalf("rounds %s", got)
	}
	if len(f.coord.Misbehaviour()[6]) == 0 {
		t.Errorf("site 6 not named as misbehaving: %v", f.coord.Misbehaviour())
	}
	if !strings.Contains(logs.String(), "site=6") {
		t.Error("the coordinator's log does not name site 6")
	}
	for _, s := range sites[:5] {
		charges := siteCharges(t, s)
		for r, n := range charges {
			if n > 2 {
				t.Errorf("site %d paid %d times for round %d", s.cfg.Site, n, r)
			}
		}
		auditSite(t, s)
		t.Logf("site %d: charges per round %v, ε %.3f", s.cfg.Site, charges, s.Spent())
	}
}

// TestStatisticsRetryOverTheSignedSet: a site withholds its signature in
// the first statistics attempt, after every site signed the survivor set.
// Each site lets the statistics be opened over that one set only, so the
// coordinator's retry gathers exactly that set (the site included) instead
// of leaving the failed site out, and the run goes on.
func TestStatisticsRetryOverTheSignedSet(t *testing.T) {
	f := newFederation(t, 4, CoordinatorConfig{Rounds: 1, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1,
		PhaseTimeout: 2 * time.Second, JoinWait: time.Second})
	var withheld sync.Once
	sites, sum := f.run(t, 4, func(i int, c *SiteConfig) {
		if i == 2 {
			c.misbehave = func(st *wire.RoundStart, m *wire.SiteMessage) *wire.SiteMessage {
				if e := m.GetEngine(); e != nil && st.Kind == wire.RoundStart_STATISTICS && e.Phase == phaseConsistency {
					drop := false
					withheld.Do(func() { drop = true })
					if drop {
						return nil
					}
				}
				return m
			}
		}
	})
	if okRounds(sum) != 1 {
		t.Fatalf("rounds %+v", sum.Rounds)
	}
	for _, s := range sites {
		if !slices.Equal(s.state.Statistics, []int{1, 2, 3, 4}) {
			t.Errorf("site %d signed statistics over %v", s.cfg.Site, s.state.Statistics)
		}
	}
}

// TestAttackPersistentWithholder: a site sends its masked input and then
// withholds its consistency signature in every round. Each such round
// fails after every site paid for it, and the coordinator charged it
// before asking for signatures, so it is spent, not retried: this used to
// fail all 10 rounds, spending every honest site's whole budget with no
// model, and never name the site. The coordinator now leaves a site that
// made a paid round fail out of the rest of the run, and names it.
func TestAttackPersistentWithholder(t *testing.T) {
	f := newFederation(t, 6, CoordinatorConfig{Rounds: 10, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1,
		PhaseTimeout: 2 * time.Second, JoinWait: time.Second})
	sites, sum := f.run(t, 6, func(i int, c *SiteConfig) {
		if i == 6 {
			c.misbehave = func(st *wire.RoundStart, m *wire.SiteMessage) *wire.SiteMessage {
				if e := m.GetEngine(); e != nil && st.Kind == wire.RoundStart_TRAIN && e.Phase == phaseConsistency {
					return nil
				}
				return m
			}
		}
	})
	if okRounds(sum) != 9 || sum.Rounds[0].Status != "failed" {
		t.Fatalf("rounds %+v", sum.Rounds)
	}
	if len(f.coord.Misbehaviour()[6]) == 0 {
		t.Errorf("site 6 not named: %v", f.coord.Misbehaviour())
	}
	for _, s := range sites[:5] {
		total := 0
		for _, n := range siteCharges(t, s) {
			total += n
		}
		if total != 10 || s.Rounds() != 9 {
			t.Errorf("site %d: %d charges, %d rounds opened", s.cfg.Site, total, s.Rounds())
		}
	}
}

// TestAttackBlameShift: site 5 seals shares that sites 1 and 2 cannot
// open, under its own identity, so sender binding passes. Sites 1 and 2
// used to abandon the round silently and be blamed for it, while sites 3
// and 4 paid for a round that could not open — every round. Sites now
// refuse naming the site whose share they could not open; accused by more
// sites than the colluders assumed, site 5 is left out of the rest of the
// run, and the federation goes on.
func TestAttackBlameShift(t *testing.T) {
	f := newFederation(t, 5, CoordinatorConfig{Rounds: 4, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1,
		PhaseTimeout: 2 * time.Second, JoinWait: time.Second})
	sites, sum := f.run(t, 5, func(i int, c *SiteConfig) {
		c.EpsilonCap = 6
		if i == 5 {
			c.misbehave = func(st *wire.RoundStart, m *wire.SiteMessage) *wire.SiteMessage {
				e := m.GetEngine()
				var sh secagg.Shares
				if e == nil || e.Phase != phaseShares || sh.UnmarshalBinary(e.Payload) != nil {
					return m
				}
				for i := range sh.Shares {
					if p := sh.Shares[i].Peer; p == clientID(st, 1) || p == clientID(st, 2) {
						sh.Shares[i].Ciphertext[3] ^= 1
					}
				}
				b, _ := sh.MarshalBinary()
				return engineMsg(e.Round, e.Phase, b)
			}
		}
	})
	if okRounds(sum) < 3 {
		t.Fatalf("rounds %+v", sum.Rounds)
	}
	if len(f.coord.Misbehaviour()[5]) == 0 {
		t.Errorf("site 5 not named: %v", f.coord.Misbehaviour())
	}
	for _, s := range sites[:4] {
		if _, bad := f.coord.Misbehaviour()[s.cfg.Site]; bad {
			t.Errorf("honest site %d named as misbehaving", s.cfg.Site)
		}
		charges := siteCharges(t, s)
		total := 0
		for _, n := range charges {
			total += n
		}
		if total > s.Rounds()+1 {
			t.Errorf("site %d paid %d charges for %d opened rounds", s.cfg.Site, total, s.Rounds())
		}
		t.Logf("site %d: charges %v, %d rounds opened", s.cfg.Site, charges, s.Rounds())
	}
}

// TestAttackFramingByAccusation: a malicious site refuses in every round,
// claiming it could not open the share an honest site sealed for it. One
// accuser cannot get a site left out of the run (it takes more accusers
// than the colluders assumed, and at least two), and an unconfirmed
// accusation leaves the accuser out of the retry too: no honest site is
// named, and the rounds open.
func TestAttackFramingByAccusation(t *testing.T) {
	f := newFederation(t, 5, CoordinatorConfig{Rounds: 4, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1,
		PhaseTimeout: 2 * time.Second, JoinWait: time.Second})
	sites, sum := f.run(t, 5, func(i int, c *SiteConfig) {
		if i == 5 {
			c.misbehave = func(st *wire.RoundStart, m *wire.SiteMessage) *wire.SiteMessage {
				if e := m.GetEngine(); e != nil && e.Phase == phaseMasked {
					victim := 1 + roundOf(st.Round)%4
					return &wire.SiteMessage{Body: &wire.SiteMessage_Refuse{Refuse: &wire.Refuse{Round: e.Round,
						Reason: fmt.Sprintf("%s%d: secagg: protocol violation: sealed share failed authentication", accusePrefix, victim)}}}
				}
				return m
			}
		}
	})
	if okRounds(sum) != 4 {
		t.Fatalf("rounds %+v", sum.Rounds)
	}
	for _, s := range sites[:4] {
		if why, bad := f.coord.Misbehaviour()[s.cfg.Site]; bad {
			t.Errorf("honest site %d named: %v", s.cfg.Site, why)
		}
	}
}

// TestAttackPlausibleRefusal: a site sends its masked input and then, in
// some rounds, refuses the survivor set with a plausible reason instead of
// its signature, so that the round fails after everyone paid; alternating
// with rounds that open, it used to drain the honest sites' budgets without
// ever being named. A site that refuses after the sites paid is left out
// of the rest of the run, and named.
func TestAttackPlausibleRefusal(t *testing.T) {
	f := newFederation(t, 6, CoordinatorConfig{Rounds: 6, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1,
		PhaseTimeout: 2 * time.Second, JoinWait: time.Second})
	sites, sum := f.run(t, 6, func(i int, c *SiteConfig) {
		if i == 6 {
			c.misbehave = func(st *wire.RoundStart, m *wire.SiteMessage) *wire.SiteMessage {
				if e := m.GetEngine(); e != nil && e.Phase == phaseConsistency && st.Kind == wire.RoundStart_TRAIN && roundOf(st.Round)%3 != 0 {
					return &wire.SiteMessage{Body: &wire.SiteMessage_Refuse{Refuse: &wire.Refuse{Round: e.Round,
						Reason: "secagg: too few clients remain: the survivor set is not connected"}}}
				}
				return m
			}
		}
	})
	if okRounds(sum) != 5 {
		t.Fatalf("rounds %+v", sum.Rounds)
	}
	if len(f.coord.Misbehaviour()[6]) == 0 {
		t.Errorf("site 6 not named: %v", f.coord.Misbehaviour())
	}
	for _, s := range sites[:5] {
		if s.Rounds() != 5 {
			t.Errorf("site %d: %d rounds opened", s.cfg.Site, s.Rounds())
		}
	}
}

// run starts sites 1..n, each configured by change (nil: as siteConfig
// makes it), runs the coordinator to the end, waits for the sites to
// leave on its goodbye, and returns them with the coordinator's summary.
func (f *federation) run(t *testing.T, n int, change func(i int, c *SiteConfig)) ([]*Site, *Summary) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var cfgs []SiteConfig
	for i := 1; i <= n; i++ {
		c := f.siteConfig(i)
		if change != nil {
			change(i, &c)
		}
		cfgs = append(cfgs, c)
	}
	sites, wait := runSites(t, ctx, cfgs)
	sum, err := f.coord.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wait()
	return sites, sum
}

// TestAttackAccusedEvadesLeaveOut: a site garbles only the share it seals
// for site 1, so that site 1 accuses it (one accuser: unconfirmed), and then
// refuses the survivor set after everyone paid. The unconfirmed accusation
// used to stand as its reason, which exempted it from being left out: in 2
// rounds of every 3, honest sites paid for rounds that never opened (8
// charges for 2 opened rounds). The fault it commits after the sites paid
// is recorded as such, and it is left out after the first.
func TestAttackAccusedEvadesLeaveOut(t *testing.T) {
	f := newFederation(t, 6, CoordinatorConfig{Rounds: 6, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1,
		PhaseTimeout: 2 * time.Second, JoinWait: time.Second})
	sites, sum := f.run(t, 6, func(i int, c *SiteConfig) {
		if i != 6 {
			return
		}
		c.misbehave = func(st *wire.RoundStart, m *wire.SiteMessage) *wire.SiteMessage {
			e := m.GetEngine()
			if e == nil || st.Kind != wire.RoundStart_TRAIN || roundOf(st.Round)%3 == 0 {
				return m
			}
			var sh secagg.Shares
			switch {
			case e.Phase == phaseShares && sh.UnmarshalBinary(e.Payload) == nil:
				for i := range sh.Shares {
					if sh.Shares[i].Peer == clientID(st, 1) {
						sh.Shares[i].Ciphertext[3] ^= 1
					}
				}
				b, _ := sh.MarshalBinary()
				return engineMsg(e.Round, e.Phase, b)
			case e.Phase == phaseConsistency:
				return &wire.SiteMessage{Body: &wire.SiteMessage_Refuse{Refuse: &wire.Refuse{Round: e.Round, Reason: "secagg: too few clients remain"}}}
			}
			return m
		}
	})
	if okRounds(sum) < 5 {
		t.Fatalf("rounds %+v", sum.Rounds)
	}
	if len(f.coord.Misbehaviour()[6]) == 0 {
		t.Errorf("site 6 not named: %v", f.coord.Misbehaviour())
	}
	for _, s := range sites[1:5] {
		total := 0
		for _, n := range siteCharges(t, s) {
			total += n
		}
		if total > s.Rounds()+1 {
			t.Errorf("site %d paid %d charges for %d opened rounds", s.cfg.Site, total, s.Rounds())
		}
	}
}
