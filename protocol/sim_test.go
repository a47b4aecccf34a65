package protocol

// A deterministic fault simulator for the network protocol, in the manner
// of FoundationDB's simulation and TigerBeetle's VOPR: one seed decides a
// whole federation (its size, mode, floors, budgets and rounds), the faults
// of its network and the crashes of its parties, and the run's invariants
// are checked at the end.
//
// # One run
//
// A coordinator and 3 to 6 sites run in one process, over the in-memory
// transport (Coordinator.ConnectInMemory, Site.RunOn), inside a
// testing/synctest bubble: a fake clock that moves only when every
// goroutine is blocked, so that phase timeouts, join waits and backoffs
// cost no wall time. crypto/rand is made deterministic by
// testing/cryptotest.SetGlobalRandom. Mode secagg with DP, at record
// level in three runs of four and at client level in the fourth; one run in
// simHEEvery is in mode he.
//
// Every message between a site and the coordinator passes through the
// simulator, which holds it in flight. After synctest.Wait (every party
// quiescent) the scheduler takes ONE step, chosen by the seeded generator
// from the canonically sorted set of deliverable messages (by site, session
// of the site, direction and sequence on the link): deliver the oldest
// message of one link, or, while the faults last (the run's fault window),
//   - lose it, and with it the session, as a gRPC stream loses a message
//     only with its connection (the site reconnects, as Site.Run does);
//   - duplicate it, delay it (sometimes past a phase's timeout), deliver a
//     later message of the link before it (reorder), or corrupt it (an
//     engine payload cut short, or a header byte flipped);
//   - partition a site for up to 20 s (its sessions break, it cannot
//     reconnect until the partition heals);
//   - crash the coordinator or a site between two messages.
//
// Parties also crash at their own crash points (simHooks.crash, in the
// coordinator and site code: right before and after every ledger charge,
// state write, statistics, he state and checkpoint, and before a model is
// announced): a crash-prone incarnation stops at each with odds drawn from
// its own seeded generator, more often next to a charge or a publication.
// A crashed party stops dead: its crash hook stops every later write, its
// sessions break and its messages in flight are lost. After a while it
// restarts as a new Coordinator or Site on the same state directory (the
// coordinator resumes from its ledger, checkpoints and sessions.json).
//
// Malicious parties: a run may hold one malicious site (through the
// misbehave hook it spoofs another member's sender id, withholds or cuts
// short its messages) and a lying coordinator (the scheduler alters
// RoundStart messages on their way — smaller minimum cohort, no colluders,
// fewer members, or an earlier RoundStart replayed — and replays engine
// messages of other sessions or sites; half the lying coordinators also run
// with a smaller minimum cohort or fewer colluders than every site's
// floor). The invariants then concern the honest parties.
//
// # Replay
//
// Every decision of the simulator (the federation, each scheduler step,
// the crash points of each incarnation, each misbehaviour) comes from
// generators seeded by the seed, each used by one goroutine; crypto/rand
// is seeded too (the kits' keys from a fixed seed, each run's draws from
// its own); links and messages are named by site, session number and
// sequence, not by the order in which goroutines ran; parties are started
// one after the other; and since one message is delivered per quiescent
// state, the order in which the parties act is decided by the seed. The
// trace shows a digest of every message delivered: replaying sampled seeds
// (secagg and he, with up to 56 faults) three times in separate processes
// gave identical traces, byte for byte. What the seed does not decide, so
// that the replay is exact in practice rather than by construction: the
// order of goroutines that wake at the same simulated instant (several
// parties' timers firing together, or one party's own goroutines, such as
// the coordinator's per-site readers or a parallel batch verification
// drawing from crypto/rand), which could change the interleaving or which
// goroutine draws which random bytes; and Go's randomized map iteration
// where the protocol code ranges over maps.
//
// # Invariants
//
// Checked after each run (V counts their violations):
//   - every opened secagg sum has at least the coordinator's and each honest
//     survivor's own minimum cohort of contributors, and equals exactly (mod
//     2^bits) the sum of those contributors' noised, quantized inputs, as
//     each site recorded it when it joined the session (simHooks.input,
//     simHooks.opened);
//   - each honest site's statistics open over one survivor set only;
//   - every honest survivor of an opened training round has charged that
//     round in its ledger, and no honest site has paid for a round more
//     than its MaxAttempts, nor more often than it joined the round's
//     sessions (secagg);
//   - an honest site's masked input for a training round leaves only once
//     the round's charge is in its ledger on disk (checked as the message
//     is sent), and the coordinator opens a training sum only once its
//     charge is in its own ledger on disk (checked as the sum opens);
//   - every ledger audits (dp.AuditLedger) and stays within its cap (the
//     coordinator's with every checkpoint of it a site cosigned), every
//     opened secagg sum of a DP run has its round's charge in a
//     checkpoint an honest survivor cosigned, and
//     every site's state loads, which checks its ledger against the length
//     and head anchored in its signed state; a running site's state anchors
//     its whole ledger;
//   - the coordinator charges no training round twice, nor one with fewer
//     survivors than its minimum cohort, and checkpoints only rounds that
//     opened;
//   - the coordinator checkpoints (and then announces) a model only once
//     the round's charge is in its ledger on disk (checked at the crash
//     point before the checkpoint);
//   - every crashed party restarts on its directory;
//   - nothing panics in the coordinator's run or a site's loop (recovered
//     and reported), the coordinator's run ends within 30 minutes of
//     simulated time after the faults stop, and a run without faults,
//     malice or odd sites trains every round.
//
// A deadlock that synctest reports, or a panic in another goroutine, ends
// the test binary; the seed is then the name of the running subtest
// (TestSimulation/seed=S), and the simulator prints it first when parties
// are left blocked after its shutdown.
//
// # Running it
//
//	go test ./protocol -run 'TestSimulation$' -sim.runs N -sim.seed S -v
//
// runs seeds S … S+N−1 and ends with the line "simulation: N runs, F
// faults injected, V invariant violations" (go test shows a passing
// package's output only with -v); it fails if V > 0, naming the seeds.
// A plain go test runs simDefaultRuns seeds (20 with -short), and
// TestSimulationRegressions the seeds of simRegressions.
//
//	go test ./protocol -run 'TestSimulation$' -sim.seed S -sim.runs 1 -v
//
// replays seed S with a trace of every message, fault, crash and restart.

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/cryptotest"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

var (
	simRuns = flag.Int("sim.runs", 0, "simulated federations to run in TestSimulation (0: the default count)")
	simSeed = flag.Uint64("sim.seed", 1, "first seed of TestSimulation")
)

// simDefaultRuns is how many seeds a plain go test runs.
const simDefaultRuns = 300

// simHEEvery: one run in simHEEvery is in mode he (slower: CKKS).
const simHEEvery = 25

// simRegressions are seeds on which the simulator found a bug, with the
// simulator as it was then (a later change to it may send a seed
// elsewhere; the bug's own test stays); they run in every go test.
var simRegressions = []uint64{
	// A site crashed between its ledger charge and the state write after
	// it; started again, its signed state did not anchor the charge
	// (TestSiteAnchorsChargeAfterCrash).
	63, 157, 159, 163,
	// The coordinator's wait for the statistics round's signed survivor
	// set re-armed a timer of zero length until the clock moved: on the
	// simulator's clock, which moves only when everyone waits, it spun
	// for ever (retrier.gather). Found at seed 4; with the simulator of
	// today, seed 157 above hangs without the fix.
	4,
}

// TestSimulation runs seeded federations under faults and checks the
// invariants of each (see the top of this file).
func TestSimulation(t *testing.T) {
	runs, seed := *simRuns, *simSeed
	if runs == 0 {
		runs = simDefaultRuns
		if testing.Short() {
			runs = 20
		}
	}
	kits := newSimKits(t)
	var faults, violations int
	var failed []uint64
	for i := range runs {
		f, v := kits.run(t, seed+uint64(i), runs == 1 && testing.Verbose())
		faults += f
		violations += v
		if v > 0 {
			failed = append(failed, seed+uint64(i))
		}
	}
	t.Logf("outcomes: %d runs ended without an error, %d with one; %d training sums opened (in %d runs; %d runs trained every round), %d crashes",
		kits.stats.complete, kits.stats.errored, kits.stats.trainSums, kits.stats.trainRuns, kits.stats.allRounds, kits.stats.crashes)
	fmt.Printf("simulation: %d runs, %d faults injected, %d invariant violations\n", runs, faults, violations)
	if violations > 0 {
		t.Errorf("seeds with violations: %v (replay one with -sim.seed S -sim.runs 1 -v)", failed)
	}
}

// TestSimulationRegressions replays the seeds on which the simulator found
// bugs.
func TestSimulationRegressions(t *testing.T) {
	if len(simRegressions) == 0 {
		t.Skip("no regression seeds")
	}
	kits := newSimKits(t)
	for _, seed := range simRegressions {
		if _, v := kits.run(t, seed, false); v > 0 {
			t.Errorf("seed %d: %d invariant violations", seed, v)
		}
	}
}

// simKits are provisioned federations (one per size) and their data, made
// once and copied for each run.
type simKits struct {
	// stats tally the runs' outcomes, to show what the faults let happen.
	stats struct{ complete, errored, trainSums, crashes, trainRuns, allRounds int }
	dir   string
	data  map[int][]*fl.Dataset
}

func newSimKits(t *testing.T) *simKits {
	// The kits' keys from a fixed seed: a seed replays the same keys,
	// signatures and shares in every process.
	cryptotest.SetGlobalRandom(t, 0x6b697473)
	k := &simKits{dir: t.TempDir(), data: map[int][]*fl.Dataset{}}
	d, err := fl.LoadBuiltin("wdbc")
	if err != nil {
		t.Fatal(err)
	}
	tr, _, _ := fl.StratifiedSplit(d, 0.25, 0)
	for n := 3; n <= 6; n++ {
		if err := Provision(filepath.Join(k.dir, fmt.Sprint(n)), n, nil); err != nil {
			t.Fatal(err)
		}
		if k.data[n], err = fl.PartitionIID(tr, n, 0); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// copyDir copies the regular files of src into dst.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o600)
	})
}

// run simulates the federation of seed and returns the faults injected and
// the invariant violations found.
func (k *simKits) run(t *testing.T, seed uint64, trace bool) (faults, violations int) {
	t.Helper()
	dir, err := os.MkdirTemp(k.dir, "run-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	var s *simRun
	ok := t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			cryptotest.SetGlobalRandom(t, seed)
			s = newSimRun(t, k, seed, dir, trace)
			s.simulate()
			s.check()
		})
	})
	if s == nil {
		return 0, 1
	}
	v := len(s.violations)
	if s.result == nil && s.finished {
		k.stats.complete++
	} else {
		k.stats.errored++
	}
	trained := false
	for _, o := range s.opened {
		if roundOf(o.sid) > 0 {
			k.stats.trainSums++
			trained = true
		}
	}
	if trained {
		k.stats.trainRuns++
	}
	if s.finished && s.summary != nil && okRounds(s.summary) == s.ccfg.Rounds {
		k.stats.allRounds++
	}
	k.stats.crashes += s.crashes
	if !ok && v == 0 {
		v = 1 // a panic, a deadlock synctest reported, or a failed setup
	}
	if v > 0 {
		t.Logf("simulation seed %d: %d violations: %s", seed, v, strings.Join(s.violations, "; "))
	}
	return int(s.faults.Load()), v
}

// simRun is one simulated federation.
type simRun struct {
	t     *testing.T
	seed  uint64
	rng   *rand.Rand // the scheduler's; used by its goroutine only
	trace bool
	dir   string
	n     int
	ccfg  CoordinatorConfig
	scfg  []SiteConfig
	ids   []ed25519.PrivateKey
	bad   int  // the malicious site, 0 if none
	odd   int  // the site with its own budget, floor or colluders, 0 if none
	liar  bool // the coordinator alters RoundStart messages
	// hold keeps the network's faults and the crashes back until the
	// statistics round has opened (statsOpen), so that the run reaches
	// the training rounds, where most of the invariants bite.
	hold      bool
	statsOpen atomic.Bool
	rates     simRates
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the parties' goroutines
	faults    atomic.Int64
	crashes   int // crashes so far, bounded by rates.maxCrashes
	// incarnations counts the parties started, to seed their crash points.
	incarnations uint64

	mu         sync.Mutex
	violations []string
	pending    []*simEvent
	links      []*simLink
	conns      map[int]int // sessions opened per site
	coord      *Coordinator
	cparty     *simParty
	sparty     []*simParty // per site (index site−1), the current incarnation
	restartAt  map[int]time.Time
	cut        map[int]time.Time // partitioned sites, until when
	finished   bool              // the coordinator's Run returned (not crashed)
	result     error
	summary    *Summary
	starts     []*wire.RoundStart // RoundStarts seen, for the lying coordinator's replays
	engines    []*wire.CoordinatorMessage
	inputs     map[uint64]map[int][]uint64
	opened     []simOpened
	siteDone   []bool
	maliceRand *rand.Rand // the malicious site's; used by its goroutine only
}

// simRates are one run's fault probabilities, per scheduler step.
type simRates struct {
	drop, dup, delay, corrupt, reorder float64
	partition, crash                   float64
	crashPoint                         float64 // an incarnation crashes at one of its crash points
	lie, malice                        float64
	maxCrashes                         int
	window                             time.Duration // faults are injected in this first stretch of simulated time
}

type simOpened struct {
	sid       uint64
	bits      int
	survivors []int
	raw       []uint64
}

// A simParty is one incarnation of the coordinator or a site.
type simParty struct {
	name string
	site int // 0: the coordinator
	dead atomic.Bool
	// crashRand, if set, decides at each of the incarnation's crash
	// points whether it stops there; it is seeded from the run's seed and
	// used by the party's own goroutine.
	crashRand *rand.Rand
	armed     atomic.Bool // started: crash points count from now on
	cancel    context.CancelFunc
}

// A simLink is one session between a site incarnation and a coordinator
// incarnation.
type simLink struct {
	// A link is named by its site and its number among the site's
	// sessions, and its messages by their sequence in each direction, so
	// that names do not depend on the order in which goroutines ran.
	id       int
	seqs     [2]uint64
	site     int
	sitep    *simParty
	coordp   *simParty
	real     SiteStream
	upq      chan *wire.SiteMessage
	in       chan *wire.CoordinatorMessage
	closed   chan struct{}
	isClosed bool
	err      error // why the site's end closed
}

// next numbers the link's next message in one direction.
func (l *simLink) next(up bool) uint64 {
	i := 0
	if up {
		i = 1
	}
	l.seqs[i]++
	return l.seqs[i]
}

// A simEvent is a message in flight, or the end of the coordinator's side
// of a session.
type simEvent struct {
	link      *simLink
	up        bool
	seq       uint64
	upMsg     *wire.SiteMessage
	down      *wire.CoordinatorMessage
	end       error // the coordinator's side ended with this
	notBefore time.Time
}

func newSimRun(t *testing.T, k *simKits, seed uint64, dir string, trace bool) *simRun {
	s := &simRun{t: t, seed: seed, trace: trace, dir: dir, rng: rand.New(rand.NewPCG(seed, 0x5eed)),
		restartAt: map[int]time.Time{}, conns: map[int]int{}, cut: map[int]time.Time{}, inputs: map[uint64]map[int][]uint64{}}
	r := s.rng
	s.n = 3 + r.IntN(4)
	if err := copyDir(filepath.Join(k.dir, fmt.Sprint(s.n)), dir); err != nil {
		t.Fatal(err)
	}
	roster, err := LoadRoster(filepath.Join(dir, "coordinator", "roster.json"))
	if err != nil {
		t.Fatal(err)
	}
	cohort := 3 + r.IntN(s.n-2)
	eps := 2 + 4*r.Float64()
	s.ccfg = CoordinatorConfig{InMemory: true, Roster: roster, Mode: SecAgg, Level: dp.RecordLevel, Rounds: 1 + r.IntN(3),
		Epsilon: eps, Delta: 1e-5, Clip: 1, LearningRate: 1, Model: "logistic", Features: 30,
		MinCohort: cohort, Colluders: r.IntN(cohort - 1), PhaseTimeout: 2 * time.Second, JoinWait: time.Second,
		State: filepath.Join(dir, "coordinator", "state"), LedgerKey: filepath.Join(dir, "coordinator", "ledger-key.pem"), Logger: quietLogger()}
	odd := 0 // a site with its own budget, floor or colluders
	if r.IntN(3) == 0 {
		odd = 1 + r.IntN(s.n)
	}
	s.odd = odd
	for i := 1; i <= s.n; i++ {
		sd := filepath.Join(dir, fmt.Sprintf("site-%d", i))
		c := SiteConfig{Site: i, Identity: filepath.Join(sd, "identity.pem"), Roster: roster, EpsilonCap: eps, Delta: 1e-5,
			MinCohort: 3, Data: k.data[s.n][i-1], State: filepath.Join(sd, "state"), Logger: quietLogger()}
		if i == odd {
			switch r.IntN(3) {
			case 0:
				c.EpsilonCap = eps * (0.5 + 0.5*r.Float64()) // a smaller budget: it sits rounds out
			case 1:
				c.MinCohort = 3 + r.IntN(s.n-2) // a private floor, maybe stricter
			case 2:
				c.Colluders = r.IntN(max(c.MinCohort, cohort) - 1)
			}
		}
		s.scfg = append(s.scfg, c)
		id, err := readKey(c.Identity, c.Passphrase)
		if err != nil {
			t.Fatal(err)
		}
		s.ids = append(s.ids, id)
	}
	// A third of the runs are calm, a third moderate, a third stormy: the
	// protocol leaves a site that failed an attempt out of the round's
	// retries, so storms mostly end runs early, in the statistics round.
	scale := []float64{0.1, 0.4, 1}[r.IntN(3)]
	f := func(max float64) float64 { return scale * max * r.Float64() * r.Float64() }
	s.rates = simRates{drop: f(0.08), dup: f(0.05), delay: f(0.08), corrupt: f(0.04), reorder: f(0.05),
		partition: f(0.01), crash: f(0.01), crashPoint: f(0.5), maxCrashes: r.IntN(6), window: time.Duration(20+r.IntN(100)) * time.Second}
	if r.IntN(3) == 0 {
		// A crash-heavy run: parties crash often, at crash points and
		// between messages, whatever the network does.
		s.rates.crash, s.rates.crashPoint, s.rates.maxCrashes = 0.01+0.04*r.Float64(), 0.5+0.5*r.Float64(), 2+r.IntN(8)
	}
	if r.IntN(5) == 0 {
		s.bad = 1 + r.IntN(s.n)
		s.rates.malice = 0.1 + 0.4*r.Float64()
		s.maliceRand = rand.New(rand.NewPCG(seed, 0xbad))
	}
	if r.IntN(7) == 0 {
		s.liar = true
		s.rates.lie = 0.1 + 0.5*r.Float64()
		// Half the lying coordinators also run with weaker floors than
		// every site's: a smaller minimum cohort, or fewer colluders. (A
		// generator of its own, so that the seeds of the other runs keep
		// their traces.)
		r2 := rand.New(rand.NewPCG(seed, 0x11a5))
		switch r2.IntN(4) {
		case 0:
			if cohort < s.n {
				for i := range s.scfg {
					s.scfg[i].MinCohort = max(s.scfg[i].MinCohort, cohort+1)
				}
			}
		case 1:
			if s.ccfg.Colluders > 0 {
				for i := range s.scfg {
					s.scfg[i].Colluders = max(s.scfg[i].Colluders, s.ccfg.Colluders)
				}
				s.ccfg.Colluders = 0
			}
		}
	}
	// Some runs are in mode he (a generator of its own, so that the
	// other seeds keep their traces); its sums are not recorded, so only
	// the ledger, publication, restart and liveness invariants apply.
	if rand.New(rand.NewPCG(seed, 0x4e)).IntN(simHEEvery) == 0 {
		s.ccfg.Mode = HE
	}
	// A quarter of the runs protect each hospital's whole contribution
	// (client level: local SGD, clipped as a whole) rather than a record.
	if rand.New(rand.NewPCG(seed, 0xc1)).IntN(4) == 0 {
		s.ccfg.Level = dp.ClientLevel
	}
	// A third of the runs hold their faults until the statistics round
	// has opened: a site that fails an attempt of that round is left out
	// of its retries, so faults there mostly end a run before training.
	// (secagg only: the simulator records secagg's sums, which tell it
	// when the statistics opened).
	s.hold = s.ccfg.Mode == SecAgg && rand.New(rand.NewPCG(seed, 0x57a7)).IntN(3) == 0
	s.sparty = make([]*simParty, s.n)
	s.siteDone = make([]bool, s.n)
	s.logf("federation: mode %s, %s level, %d sites, min cohort %d, colluders %d, %d rounds, ε %.3g; malicious site %d, lying coordinator %v; faults held until the statistics open %v; rates %+v",
		s.ccfg.Mode, s.ccfg.Level, s.n, cohort, s.ccfg.Colluders, s.ccfg.Rounds, eps, s.bad, s.liar, s.hold, s.rates)
	return s
}

// logf traces the run when replaying one seed.
func (s *simRun) logf(format string, args ...any) {
	if s.trace {
		s.t.Logf("%8.3fs "+format, append([]any{time.Since(simEpoch).Seconds()}, args...)...)
	}
}

// simEpoch is the bubble's starting time (synctest starts every bubble at
// midnight UTC, 2000-01-01).
var simEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func (s *simRun) violate(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.violations = append(s.violations, msg)
	s.mu.Unlock()
	s.logf("VIOLATION: %s", msg)
}

func (s *simRun) fault(format string, args ...any) {
	s.faults.Add(1)
	s.logf("fault: "+format, args...)
}

// simulate runs the federation until the coordinator's Run ends and the
// sites have heard, or the simulated time bound passes.
func (s *simRun) simulate() {
	s.ctx, s.cancel = context.WithCancel(context.Background())
	start := time.Now()
	faultsEnd := start.Add(s.rates.window)
	deadline := faultsEnd.Add(30 * time.Minute)
	s.mu.Lock()
	s.startCoordinator()
	s.mu.Unlock()
	// The coordinator draws its ledger key from crypto/rand, and each new
	// site its keys: one after the other, so that each draws the same bytes
	// in a replay.
	synctest.Wait()
	s.mu.Lock()
	for i := 1; i <= s.n; i++ {
		s.startSite(i)
	}
	s.mu.Unlock()
	var drainUntil time.Time
	for {
		synctest.Wait()
		now := time.Now()
		s.mu.Lock()
		if s.finished && drainUntil.IsZero() {
			drainUntil = now.Add(time.Minute)
		}
		if !drainUntil.IsZero() && (now.After(drainUntil) || (len(s.pending) == 0 && !slices.Contains(s.siteDone, false))) {
			s.mu.Unlock()
			break
		}
		if now.After(deadline) {
			s.mu.Unlock()
			s.violate("the coordinator's run did not end within %v of simulated time after the faults stopped", deadline.Sub(faultsEnd))
			if s.trace {
				buf := make([]byte, 1<<20)
				s.logf("goroutines:\n%s", buf[:runtime.Stack(buf, true)])
			}
			break
		}
		if s.hold && !s.statsOpen.Load() && now.Before(start.Add(30*time.Minute)) {
			// The faults' window starts once the statistics have opened.
			faultsEnd = now.Add(s.rates.window)
			deadline = faultsEnd.Add(30 * time.Minute)
		}
		faulty := now.Before(faultsEnd) && drainUntil.IsZero() && (!s.hold || s.statsOpen.Load())
		if s.step(now, faulty) {
			s.mu.Unlock()
			continue
		}
		// Nothing to deliver: let time pass.
		wake := now.Add(250 * time.Millisecond)
		for _, e := range s.pending {
			if e.notBefore.Before(wake) {
				wake = e.notBefore
			}
		}
		for _, at := range s.restartAt {
			if at.Before(wake) {
				wake = at
			}
		}
		for _, at := range s.cut {
			if at.Before(wake) {
				wake = at
			}
		}
		s.mu.Unlock()
		time.Sleep(max(wake.Sub(now), time.Millisecond))
	}
	// Shut everything down and wait for the parties' goroutines.
	s.mu.Lock()
	s.logf("shutting down: coordinator result %v", s.result)
	if s.coord != nil {
		s.coord.Stop()
	}
	for _, l := range s.links {
		s.closeLink(l, status.Error(codes.Canceled, "simulation over"))
	}
	s.mu.Unlock()
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Hour):
		s.violate("parties still running an hour of simulated time after the shutdown")
		// synctest fails the run with a deadlock when the bubble ends with
		// blocked goroutines; say which seed it is first.
		fmt.Fprintf(os.Stderr, "simulation: seed %d: parties still blocked after the shutdown; violations: %s\n",
			s.seed, strings.Join(s.violations, "; "))
	}
}

// step takes one scheduler step at now, with s.mu held: a restart, a
// crash, a partition, or one message delivered (or faulted). It reports
// whether it did anything.
func (s *simRun) step(now time.Time, faulty bool) bool {
	// Restarts and healed partitions that are due, in party order.
	for _, p := range mapsKeys(s.restartAt) {
		if !s.restartAt[p].After(now) {
			delete(s.restartAt, p)
			if p == 0 {
				s.startCoordinator()
			} else {
				s.startSite(p)
			}
			return true
		}
	}
	for _, p := range mapsKeys(s.cut) {
		if !s.cut[p].After(now) {
			delete(s.cut, p)
			s.logf("site %d: partition healed", p)
		}
	}
	r := s.rng
	if faulty {
		if s.crashes < s.rates.maxCrashes && r.Float64() < s.rates.crash {
			p := r.IntN(s.n + 1) // 0: the coordinator
			party := s.cparty
			if p > 0 {
				party = s.sparty[p-1]
			}
			if party != nil && !party.dead.Load() && !(p > 0 && s.siteDone[p-1]) {
				s.kill(party, "between messages")
				return true
			}
		}
		if r.Float64() < s.rates.partition {
			p := 1 + r.IntN(s.n)
			if _, ok := s.cut[p]; !ok {
				d := time.Duration(1+r.IntN(20)) * time.Second
				s.cut[p] = now.Add(d)
				s.fault("site %d: partitioned for %v", p, d)
				for _, l := range s.links {
					if l.site == p {
						s.closeLink(l, status.Error(codes.Unavailable, "simulated partition"))
					}
				}
				return true
			}
		}
	}
	// Deliverable messages, by link, direction and sequence.
	var ready []*simEvent
	for _, e := range s.pending {
		if !e.notBefore.After(now) {
			ready = append(ready, e)
		}
	}
	if len(ready) == 0 {
		return false
	}
	slices.SortFunc(ready, func(a, b *simEvent) int {
		if a.link.site != b.link.site {
			return a.link.site - b.link.site
		}
		if a.link.id != b.link.id {
			return a.link.id - b.link.id
		}
		if a.up != b.up {
			if a.up {
				return -1
			}
			return 1
		}
		return int(a.seq) - int(b.seq)
	})
	// The streams: (link, direction) pairs with something to deliver.
	var heads []int
	for i, e := range ready {
		if i == 0 || e.link != ready[i-1].link || e.up != ready[i-1].up {
			heads = append(heads, i)
		}
	}
	h := r.IntN(len(heads))
	i := heads[h]
	end := len(ready)
	if h+1 < len(heads) {
		end = heads[h+1]
	}
	if faulty && end-i > 1 && r.Float64() < s.rates.reorder {
		j := i + 1 + r.IntN(end-i-1)
		s.fault("reorder: %s before %d earlier", s.describe(ready[j]), j-i)
		i = j
	}
	e := ready[i]
	s.pending = slices.DeleteFunc(s.pending, func(x *simEvent) bool { return x == e })
	if faulty && e.end == nil {
		switch x := r.Float64(); {
		case x < s.rates.drop:
			// A stream loses no message and stays up (TCP under gRPC):
			// a lost message is a lost connection.
			s.fault("drop, and the session breaks: %s", s.describe(e))
			s.closeLink(e.link, status.Error(codes.Unavailable, "simulated connection loss"))
			return true
		case x < s.rates.drop+s.rates.dup:
			s.fault("duplicate: %s", s.describe(e))
			c := *e
			c.seq = e.link.next(e.up)
			s.pending = append(s.pending, &c)
		case x < s.rates.drop+s.rates.dup+s.rates.delay:
			d := time.Duration(r.IntN(500)+1) * time.Millisecond
			if r.IntN(4) == 0 {
				d *= 6 // sometimes past a phase's timeout
			}
			s.fault("delay %v: %s", d, s.describe(e))
			e.notBefore = now.Add(d)
			s.pending = append(s.pending, e)
			return true
		case x < s.rates.drop+s.rates.dup+s.rates.delay+s.rates.corrupt:
			s.corrupt(e)
		}
		if s.liar && e.down.GetStart() != nil && r.Float64() < s.rates.lie {
			s.lie(e)
		}
		if s.liar && e.down.GetEngine() != nil && len(s.engines) > 0 && r.Float64() < s.rates.lie/4 {
			// Replays an engine message of an earlier session, or another
			// site's, in its place.
			e.down = s.engines[r.IntN(len(s.engines))]
			s.fault("lying coordinator: replays an engine message: %s", s.describe(e))
		}
	}
	s.deliver(e)
	return true
}

func mapsKeys[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// describe names an event for the trace.
func (s *simRun) describe(e *simEvent) string {
	dir := "coordinator→site"
	if e.up {
		dir = "site→coordinator"
	}
	var what string
	switch {
	case e.end != nil:
		what = fmt.Sprintf("end of session (%v)", e.end)
	case e.up:
		switch b := e.upMsg.Body.(type) {
		case *wire.SiteMessage_Hello:
			what = "Hello"
		case *wire.SiteMessage_Join:
			what = "Join " + sessionName(b.Join.Round)
		case *wire.SiteMessage_Refuse:
			what = fmt.Sprintf("Refuse %s: %s", sessionName(b.Refuse.Round), b.Refuse.Reason)
		case *wire.SiteMessage_Engine:
			what = fmt.Sprintf("Engine %s phase %s, %d bytes", sessionName(b.Engine.Round), phaseLabel[b.Engine.Phase], len(b.Engine.Payload))
		default:
			what = fmt.Sprintf("%T", b)
		}
	default:
		switch b := e.down.Body.(type) {
		case *wire.CoordinatorMessage_Welcome:
			what = "Welcome"
		case *wire.CoordinatorMessage_Start:
			what = fmt.Sprintf("Start %s kind %v members %v cohort %d colluders %d", sessionName(b.Start.Round), b.Start.Kind, b.Start.Members, b.Start.MinCohort, b.Start.Colluders)
		case *wire.CoordinatorMessage_Engine:
			what = fmt.Sprintf("Engine %s phase %s, %d bytes", sessionName(b.Engine.Round), phaseLabel[b.Engine.Phase], len(b.Engine.Payload))
		case *wire.CoordinatorMessage_End:
			what = fmt.Sprintf("End %s %s", sessionName(b.End.Round), b.End.Status)
		case *wire.CoordinatorMessage_Bye:
			what = "Bye"
		default:
			what = fmt.Sprintf("%T", b)
		}
	}
	return fmt.Sprintf("site %d link %d %s #%d %s", e.link.site, e.link.id, dir, e.seq, what)
}

// corrupt spoils an engine message as a transport without integrity
// would: its payload cut short, or a byte of its header flipped. (gRPC's
// TLS turns any corruption into a broken session; these corruptions are
// ones the engine's parsing must catch on its own.)
func (s *simRun) corrupt(e *simEvent) {
	var eng *wire.Engine
	if e.up {
		eng = e.upMsg.GetEngine()
	} else {
		eng = e.down.GetEngine()
	}
	if eng == nil || len(eng.Payload) == 0 {
		return
	}
	p := slices.Clone(eng.Payload)
	if s.rng.IntN(2) == 0 {
		p = p[:s.rng.IntN(len(p))]
	} else {
		p[s.rng.IntN(min(len(p), 14))] ^= byte(1 + s.rng.IntN(255))
	}
	m := engineMsg(eng.Round, eng.Phase, p)
	if e.up {
		e.upMsg = m
	} else {
		e.down = &wire.CoordinatorMessage{Body: &wire.CoordinatorMessage_Engine{Engine: m.GetEngine()}}
	}
	s.fault("corrupt: %s", s.describe(e))
}

// lie alters a RoundStart on its way, as a lying coordinator would.
func (s *simRun) lie(e *simEvent) {
	st := proto.Clone(e.down.GetStart()).(*wire.RoundStart)
	var what string
	switch s.rng.IntN(4) {
	case 0:
		st.MinCohort = uint32(s.rng.IntN(int(st.MinCohort) + 1))
		what = fmt.Sprintf("minimum cohort %d", st.MinCohort)
	case 1:
		st.Colluders = 0
		what = "no colluders"
	case 2:
		if len(st.Members) > 1 {
			st.Members = st.Members[:len(st.Members)-1]
		}
		what = fmt.Sprintf("members %v", st.Members)
	case 3:
		if len(s.starts) == 0 {
			return
		}
		st = proto.Clone(s.starts[s.rng.IntN(len(s.starts))]).(*wire.RoundStart)
		what = "replays " + sessionName(st.Round)
	}
	e.down = &wire.CoordinatorMessage{Body: &wire.CoordinatorMessage_Start{Start: st}}
	s.fault("lying coordinator: %s: %s", what, s.describe(e))
}

// deliver hands e to its receiver, with s.mu held.
func (s *simRun) deliver(e *simEvent) {
	l := e.link
	if l.isClosed {
		return // the session is gone
	}
	if s.trace {
		// The digest of the bytes shows that a replay carries the same
		// keys, shares and masked inputs, not only the same message kinds.
		var m proto.Message = e.down
		if e.up {
			m = e.upMsg
		}
		h := fnv.New64a()
		if e.end == nil {
			b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
			h.Write(b)
		}
		s.logf("deliver: %s [%016x]", s.describe(e), h.Sum64())
	}
	switch {
	case e.end != nil:
		s.closeLink(l, e.end)
	case e.up:
		select {
		case l.upq <- e.upMsg:
		default:
			s.fault("overflow: %s", s.describe(e))
		}
	default:
		if st := e.down.GetStart(); st != nil {
			s.starts = append(s.starts, st)
		}
		if e.down.GetEngine() != nil && s.liar {
			s.engines = append(s.engines, e.down)
		}
		select {
		case l.in <- e.down:
		default:
			s.fault("overflow: %s", s.describe(e))
		}
	}
}

// enqueue puts a message in flight.
func (s *simRun) enqueue(l *simLink, e *simEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l.isClosed {
		return
	}
	e.link, e.seq = l, l.next(e.up)
	s.pending = append(s.pending, e)
}

// closeLink ends a session at both ends, with s.mu held: the site's end
// reads what was delivered, then err.
func (s *simRun) closeLink(l *simLink, err error) {
	if l.isClosed {
		return
	}
	l.isClosed, l.err = true, err
	close(l.closed)
	l.real.Close()
	s.pending = slices.DeleteFunc(s.pending, func(e *simEvent) bool { return e.link == l })
}

// simStream is a site's end of a simulated session.
type simStream struct {
	s *simRun
	l *simLink
}

func (x simStream) Send(m *wire.SiteMessage) error {
	select {
	case <-x.l.closed:
		return io.EOF
	default:
	}
	x.s.checkInputCharged(x.l.site, m)
	x.s.enqueue(x.l, &simEvent{up: true, upMsg: proto.Clone(m).(*wire.SiteMessage)})
	return nil
}

// checkInputCharged: an honest site's masked input for a training round
// or the statistics round leaves only once the round's charge is in its
// ledger on disk (a crash
// right after the send must not lose the charge).
func (s *simRun) checkInputCharged(site int, m *wire.SiteMessage) {
	e := m.GetEngine()
	if e == nil || e.Phase != phaseMasked || site == s.bad || s.ccfg.Mode != SecAgg || s.ccfg.Epsilon <= 0 {
		return
	}
	cfg := s.scfg[site-1]
	if cfg.EpsilonCap <= 0 {
		return
	}
	if !ledgerHasOnDisk(filepath.Join(cfg.State, "site-ledger.jsonl"), roundOf(e.Round)) {
		s.violate("site %d sent its masked input for %s without its charge in the ledger on disk", site, sessionName(e.Round))
	}
}

func (x simStream) Recv() (*wire.CoordinatorMessage, error) {
	select {
	case m := <-x.l.in:
		return m, nil
	case <-x.l.closed:
		select {
		case m := <-x.l.in:
			return m, nil
		default:
		}
		if x.l.err == nil {
			return nil, io.EOF
		}
		return nil, x.l.err
	}
}

func (x simStream) Close() {
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	x.s.closeLink(x.l, status.Error(codes.Canceled, "closed by the site"))
}

// connect opens a session of site i's incarnation p with the current
// coordinator, unless the site is partitioned or no coordinator runs.
func (s *simRun) connect(i int, p *simParty) (SiteStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, cut := s.cut[i]; cut {
		return nil, status.Error(codes.Unavailable, "simulated partition")
	}
	if s.coord == nil || s.cparty.dead.Load() || p.dead.Load() {
		return nil, status.Error(codes.Unavailable, "no coordinator")
	}
	real, err := s.coord.ConnectInMemory(s.ctx, i)
	if err != nil {
		return nil, err
	}
	s.conns[i]++
	l := &simLink{id: s.conns[i], site: i, sitep: p, coordp: s.cparty, real: real,
		upq: make(chan *wire.SiteMessage, 1024), in: make(chan *wire.CoordinatorMessage, 1024), closed: make(chan struct{})}
	s.links = append(s.links, l)
	s.wg.Add(2)
	go func() { // the coordinator's messages into flight
		defer s.wg.Done()
		for {
			m, err := real.Recv()
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				s.enqueue(l, &simEvent{end: orEOF(err)})
				return
			}
			s.enqueue(l, &simEvent{down: m})
		}
	}()
	go func() { // delivered site messages to the coordinator, in order
		defer s.wg.Done()
		for {
			select {
			case m := <-l.upq:
				if err := real.Send(m); err != nil {
					return
				}
			case <-l.closed:
				return
			}
		}
	}()
	return simStream{s, l}, nil
}

// errSessionEOF marks a session the coordinator ended without a status.
var errSessionEOF = errors.New("EOF")

func orEOF(err error) error {
	if err == nil {
		return errSessionEOF
	}
	return err
}

// newParty makes an incarnation, choosing its crash point from the seed.
func (s *simRun) newParty(site int) *simParty {
	p := &simParty{site: site, name: "coordinator"}
	if site > 0 {
		p.name = fmt.Sprintf("site %d", site)
	}
	s.incarnations++
	if s.crashes < s.rates.maxCrashes && s.rng.Float64() < s.rates.crashPoint {
		p.crashRand = rand.New(rand.NewPCG(s.seed, 0xc0ffee+uint64(s.incarnations)))
	}
	return p
}

// crashHook is p's simHooks.crash.
func (s *simRun) crashHook(p *simParty) func(point string, round int) bool {
	return func(point string, round int) bool {
		if p.dead.Load() {
			return true
		}
		if !p.armed.Load() {
			return false // starting, with s.mu held
		}
		if p.site == 0 && point == "checkpoint" && s.ccfg.Epsilon > 0 {
			// Publication: the round's charge must be on disk already.
			if !ledgerHasOnDisk(filepath.Join(s.ccfg.State, "coordinator-ledger.jsonl"), round) {
				s.violate("the coordinator publishes round %d without its charge in the ledger on disk", round)
			}
		}
		if p.crashRand == nil || (s.hold && !s.statsOpen.Load()) {
			return false
		}
		// Crash points next to a charge or a publication are the ones that
		// matter most: stop there more often than at a state write.
		odds := 0.05
		if strings.Contains(point, "charge") || point == "checkpoint" || point == "publish" || strings.HasPrefix(point, "statistics") {
			odds = 0.3
		}
		if p.crashRand.Float64() < odds {
			s.mu.Lock()
			s.kill(p, "at crash point "+point)
			s.mu.Unlock()
			return true
		}
		return false
	}
}

func ledgerHasOnDisk(path string, round int) bool {
	es, err := dp.ReadLedger(path)
	if err != nil {
		return false
	}
	for _, e := range es {
		if e.Kind == "charge" && e.Round == round {
			return true
		}
	}
	return false
}

// kill crashes p, with s.mu held: it writes nothing more (its crash hook
// says so at every write), its sessions break, and it restarts later.
func (s *simRun) kill(p *simParty, where string) {
	if p.dead.Swap(true) {
		return
	}
	s.crashes++
	s.fault("crash of the %s %s", p.name, where)
	p.cancel()
	for _, l := range s.links {
		if l.sitep == p || l.coordp == p {
			s.closeLink(l, status.Error(codes.Unavailable, "simulated crash"))
		}
	}
	if p.site == 0 {
		s.coord.Stop()
	}
	s.restartAt[p.site] = time.Now().Add(time.Duration(100+s.rng.IntN(5000)) * time.Millisecond)
}

// startCoordinator starts a coordinator incarnation, with s.mu held.
func (s *simRun) startCoordinator() {
	p := s.newParty(0)
	cfg := s.ccfg
	cfg.hooks = &simHooks{crash: s.crashHook(p), opened: func(sid uint64, bits int, survivors []int, raw []uint64) {
		// A sum (training, or the statistics as round 0) opens only once its charge is in the
		// coordinator's ledger on disk: a crash right after the open
		// would otherwise leave a round the federation saw without its ε.
		if r := roundOf(sid); s.ccfg.Epsilon > 0 && !ledgerHasOnDisk(filepath.Join(s.ccfg.State, "coordinator-ledger.jsonl"), r) {
			s.violate("the coordinator opened %s without its charge in the ledger on disk", sessionName(sid))
		}
		if roundOf(sid) == 0 {
			s.statsOpen.Store(true)
		}
		s.mu.Lock()
		s.opened = append(s.opened, simOpened{sid, bits, survivors, raw})
		s.mu.Unlock()
		s.logf("opened: %s over sites %v", sessionName(sid), survivors)
	}}
	withTestRanges(s.t, &cfg)
	c, err := NewCoordinator(cfg)
	if err != nil {
		s.violations = append(s.violations, fmt.Sprintf("the coordinator cannot start on its state: %v", err))
		s.finished = true
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	p.cancel = cancel
	s.coord, s.cparty = c, p
	p.armed.Store(true)
	s.logf("coordinator starts (crash-prone %v)", p.crashRand != nil)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			if v := recover(); v != nil {
				s.violate("the coordinator panicked: %v", v)
				s.mu.Lock()
				s.finished = true
				s.mu.Unlock()
			}
		}()
		sum, err := c.Run(ctx)
		s.mu.Lock()
		defer s.mu.Unlock()
		if p.dead.Load() {
			return
		}
		s.finished, s.result, s.summary = true, err, sum
		s.logf("the coordinator's run ended: %v", err)
	}()
}

// startSite starts an incarnation of site i, with s.mu held: it connects
// and reconnects as Site.Run does, until the coordinator says goodbye.
func (s *simRun) startSite(i int) {
	p := s.newParty(i)
	cfg := s.scfg[i-1]
	cfg.hooks = &simHooks{crash: s.crashHook(p), input: func(sid uint64, site int, input []uint64) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.inputs[sid] == nil {
			s.inputs[sid] = map[int][]uint64{}
		}
		if _, ok := s.inputs[sid][site]; ok {
			s.violations = append(s.violations, fmt.Sprintf("site %d made two inputs for %s", site, sessionName(sid)))
		}
		s.inputs[sid][site] = input
	}}
	if i == s.bad {
		cfg.misbehave = s.misbehave
	}
	site, err := NewSite(cfg)
	if err != nil {
		s.violations = append(s.violations, fmt.Sprintf("site %d cannot start on its state: %v", i, err))
		s.siteDone[i-1] = true
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	p.cancel = cancel
	s.sparty[i-1] = p
	p.armed.Store(true)
	s.logf("site %d starts (crash-prone %v)", i, p.crashRand != nil)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer site.Close()
		defer func() {
			if v := recover(); v != nil {
				s.violate("site %d panicked: %v", i, v)
			}
		}()
		backoff := 200 * time.Millisecond
		for ctx.Err() == nil && !p.dead.Load() {
			stream, err := s.connect(i, p)
			if err == nil {
				err = site.RunOn(ctx, stream)
				if err == nil {
					s.mu.Lock()
					s.siteDone[i-1] = true
					s.mu.Unlock()
					s.logf("site %d: goodbye", i)
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}()
}

// misbehave is the malicious site's hook: it spoofs another member's
// sender id, withholds, or cuts short its engine messages.
func (s *simRun) misbehave(st *wire.RoundStart, m *wire.SiteMessage) *wire.SiteMessage {
	r := s.maliceRand
	e := m.GetEngine()
	if e == nil || len(e.Payload) < 14 || r.Float64() >= s.rates.malice {
		return m
	}
	switch r.IntN(3) {
	case 0:
		if len(st.Members) > 1 {
			other := st.Members[r.IntN(len(st.Members))]
			if int(other) != s.bad {
				return spoof(m, clientID(st, int(other)))
			}
		}
		return m
	case 1:
		return nil
	default:
		return engineMsg(e.Round, e.Phase, e.Payload[:r.IntN(len(e.Payload))])
	}
}

// check verifies the invariants on what the run recorded and left on
// disk.
func (s *simRun) check() {
	honest := func(site int) bool { return site != s.bad }
	// Opened sums.
	for _, o := range s.opened {
		floor := s.ccfg.MinCohort
		for _, site := range o.survivors {
			if honest(site) {
				floor = max(floor, s.scfg[site-1].MinCohort)
			}
		}
		if len(o.survivors) < floor {
			s.violate("%s opened over %d sites %v, below the minimum cohort %d", sessionName(o.sid), len(o.survivors), o.survivors, floor)
		}
		mask := ^uint64(0)
		if o.bits < 64 {
			mask = 1<<o.bits - 1
		}
		want := make([]uint64, len(o.raw))
		complete := true
		for _, site := range o.survivors {
			in, ok := s.inputs[o.sid][site]
			if !ok || len(in) != len(want) {
				s.violate("%s opened with site %d, which made no input of that length", sessionName(o.sid), site)
				complete = false
				continue
			}
			for k := range want {
				want[k] += in[k]
			}
		}
		if complete {
			for k := range want {
				if want[k]&mask != o.raw[k]&mask {
					s.violate("%s opened to a sum that is not its survivors' inputs (element %d: %d, want %d)", sessionName(o.sid), k, o.raw[k]&mask, want[k]&mask)
					break
				}
			}
		}
	}
	// A run without faults, malice or odd sites trains every round.
	if s.faults.Load() == 0 && s.bad == 0 && !s.liar && s.odd == 0 && (!s.finished || s.result != nil || okRounds(s.summary) != s.ccfg.Rounds) {
		s.violate("a run without faults did not train every round: %v", s.result)
	}
	// The statistics (not noised) open over one survivor set per honest
	// site, ever: two sums over different sets would disclose their
	// difference.
	statsSet := map[int][]int{}
	for _, o := range s.opened {
		if roundOf(o.sid) != 0 {
			continue
		}
		for _, site := range o.survivors {
			if !honest(site) {
				continue
			}
			if prev, ok := statsSet[site]; ok && !slices.Equal(prev, o.survivors) {
				s.violate("site %d's statistics opened over sites %v and over sites %v", site, prev, o.survivors)
			}
			statsSet[site] = o.survivors
		}
	}
	// The coordinator's ledger.
	cl := filepath.Join(s.ccfg.State, "coordinator-ledger.jsonl")
	if _, err := os.Stat(cl); err == nil {
		pub := coordLedgerPub(s.t, s.ccfg)
		// With the checkpoints the sites cosigned: the coordinator's
		// ledger extends every one (its own copies are checked too).
		var held []string
		for i := 1; i <= s.n; i++ {
			if p := filepath.Join(s.scfg[i-1].State, witnessFile); fileExists(p) {
				held = append(held, p)
			}
		}
		a, err := dp.AuditLedger(cl, pub, dp.AuditOptions{CheckpointFiles: held})
		if err != nil {
			s.violate("the coordinator's ledger does not audit with the sites' cosigned checkpoints: %v", err)
		} else if a.Epsilon > a.Cap {
			s.violate("the coordinator's ledger holds ε %v over its cap %v", a.Epsilon, a.Cap)
		}
		es, _ := dp.ReadLedger(cl)
		// Every opened sum's charge is in a checkpoint that an honest
		// survivor cosigned: a site unmasks only after cosigning one that
		// holds its session's charge, and the threshold leaves at least
		// one honest site among those that unmasked.
		heldSize := map[int]int64{}
		for i := 1; i <= s.n; i++ {
			if cp, err := dp.ReadCheckpoint(filepath.Join(s.scfg[i-1].State, witnessFile), s.ccfg.Roster.ledgerKey(), nil); err == nil {
				heldSize[i] = cp.Size
			}
		}
		for _, o := range s.opened {
			if s.ccfg.Epsilon <= 0 {
				break
			}
			covered := false
			for _, site := range o.survivors {
				for _, e := range es {
					if honest(site) && e.Kind == "charge" && e.Round == roundOf(o.sid) && e.Seq < heldSize[site] {
						covered = true
					}
				}
			}
			if !covered {
				s.violate("%s opened, and no honest survivor holds a cosigned checkpoint covering a charge of its round", sessionName(o.sid))
			}
		}
		seen := map[int]int{}
		for _, e := range es {
			if e.Kind != "charge" {
				continue
			}
			// A training round is charged once; the statistics release
			// (round 0) once per paid attempt over its signed set.
			if seen[e.Round] > 0 && e.Round != 0 {
				s.violate("the coordinator charged round %d twice", e.Round)
			}
			if seen[e.Round]++; e.Round == 0 && seen[0] > max(s.ccfg.RoundAttempts, 2) {
				s.violate("the coordinator charged the statistics release %d times", seen[0])
			}
			if e.Survivors < s.ccfg.MinCohort {
				s.violate("the coordinator charged round %d for %d survivors, below its minimum cohort %d", e.Round, e.Survivors, s.ccfg.MinCohort)
			}
		}
	}
	// A checkpoint holds a round that opened.
	names, _ := filepath.Glob(filepath.Join(s.ccfg.State, "checkpoints", "round-*.safetensors"))
	for _, name := range names {
		var r int
		fmt.Sscanf(filepath.Base(name), "round-%d.safetensors", &r)
		if !slices.ContainsFunc(s.opened, func(o simOpened) bool { return roundOf(o.sid) == r }) && s.ccfg.Mode == SecAgg {
			s.violate("a checkpoint of round %d, which never opened", r)
		}
	}
	// The sites' ledgers and states.
	charges := make([]map[int]int, s.n)
	for i := 1; i <= s.n; i++ {
		cfg := s.scfg[i-1]
		charges[i-1] = map[int]int{}
		st, err := loadSiteState(cfg.State, s.ids[i-1])
		if err != nil {
			s.violate("site %d: its state does not load: %v", i, err)
		}
		path := filepath.Join(cfg.State, "site-ledger.jsonl")
		if _, err := os.Stat(path); err != nil {
			continue
		}
		// A running site's signed state anchors its whole ledger: an entry
		// past the anchor could be cut off unnoticed, giving its ε back.
		if es, _ := dp.ReadLedger(path); err == nil && len(es) > 1 && int64(len(es)) != st.LedgerEntries &&
			s.sparty[i-1] != nil && !s.sparty[i-1].dead.Load() {
			s.violate("site %d: its signed state anchors %d of its ledger's %d entries", i, st.LedgerEntries, len(es))
		}
		a, err := dp.AuditLedger(path, siteLedgerPub(s.t, cfg))
		if err != nil {
			s.violate("site %d: its ledger does not audit: %v", i, err)
		} else if a.Epsilon > cfg.EpsilonCap || a.Epsilon > a.Cap {
			s.violate("site %d: its ledger holds ε %v over its cap %v", i, a.Epsilon, cfg.EpsilonCap)
		}
		es, _ := dp.ReadLedger(path)
		for _, e := range es {
			if e.Kind == "charge" {
				charges[i-1][e.Round]++
			}
		}
		if honest(i) {
			max := cfg.MaxAttempts
			if max == 0 {
				max = 2
			}
			for r, n := range charges[i-1] {
				if n > max {
					s.violate("site %d paid for round %d %d times, over its limit %d", i, r, n, max)
				}
				// One charge per session of the round the site joined (it
				// records its input on joining, before it charges).
				joined := 0
				for sid, in := range s.inputs {
					if _, ok := in[i]; ok && roundOf(sid) == r {
						joined++
					}
				}
				if s.ccfg.Mode == SecAgg && n > joined {
					s.violate("site %d charged round %d %d times for %d sessions it joined", i, r, n, joined)
				}
			}
		}
	}
	for _, o := range s.opened {
		r := roundOf(o.sid)
		if r == 0 && s.ccfg.Epsilon <= 0 {
			continue
		}
		for _, site := range o.survivors {
			if honest(site) && charges[site-1][r] == 0 {
				s.violate("site %d took part in opened %s without a charge for it", site, sessionName(o.sid))
			}
		}
	}
	s.logf("run over: %d faults, %d sums opened, coordinator result %v, violations %v", s.faults.Load(), len(s.opened), s.result, s.violations)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
