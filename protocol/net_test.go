package protocol

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

type federation struct {
	dir    string
	roster *Roster
	coord  *Coordinator
	addr   string
	sites  []*fl.Dataset
	test   *fl.Dataset
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newFederation(t testing.TB, n int, cfg CoordinatorConfig) *federation {
	t.Helper()
	dir := t.TempDir()
	if err := Provision(dir, n, &ProvisionOptions{Passphrase: cfg.Passphrase}); err != nil {
		t.Fatal(err)
	}
	roster, err := LoadRoster(filepath.Join(dir, "coordinator", "roster.json"))
	if err != nil {
		t.Fatal(err)
	}
	d, _ := fl.LoadBuiltin("wdbc")
	tr, te, _ := fl.StratifiedSplit(d, 0.25, 0)
	sites, err := fl.PartitionIID(tr, n, 0)
	if err != nil {
		t.Fatal(err)
	}
	cd := filepath.Join(dir, "coordinator")
	cfg.Cert, cfg.Key, cfg.CA, cfg.Roster = filepath.Join(cd, "cert.pem"), filepath.Join(cd, "key.pem"), filepath.Join(dir, "ca.pem"), roster
	if cfg.State == "" {
		cfg.State = filepath.Join(cd, "state")
	}
	cfg.Logger = quietLogger()
	if os.Getenv("FLSECURE_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.Model == "" {
		cfg.Model, cfg.Features = "logistic", 30
	}
	withTestRanges(t, &cfg)
	if cfg.PhaseTimeout == 0 {
		cfg.PhaseTimeout = 5 * time.Second
	}
	if cfg.JoinWait == 0 {
		cfg.JoinWait = 3 * time.Second
	}
	c, err := NewCoordinator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go c.Serve(lis)
	t.Cleanup(c.Stop)
	return &federation{dir: dir, roster: roster, coord: c, addr: lis.Addr().String(), sites: sites, test: te}
}

// evaluate scores the coordinator's newest checkpoint on the test set.
func (f *federation) evaluate(t *testing.T) fl.Metrics {
	t.Helper()
	m, _, err := EvaluateState(f.coord.cfg.State, "logistic", 0, f.test)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (f *federation) siteConfig(i int) SiteConfig {
	sd := filepath.Join(f.dir, fmt.Sprintf("site-%d", i))
	pin, _ := os.ReadFile(filepath.Join(sd, "coordinator.pin"))
	return SiteConfig{Site: i, Coordinator: f.addr, ServerName: "localhost",
		Cert: filepath.Join(sd, "cert.pem"), Key: filepath.Join(sd, "key.pem"), Identity: filepath.Join(sd, "identity.pem"),
		CA: filepath.Join(sd, "ca.pem"), Pin: strings.TrimSpace(string(pin)), Roster: f.roster,
		EpsilonCap: 3, Delta: 1e-5, MinCohort: 3, Data: f.sites[i-1], State: filepath.Join(sd, "state"), Logger: quietLogger()}
}

// TestNetworkRounds runs 10 hospitals in goroutines against a coordinator
// over gRPC with mutual TLS on loopback.
func TestNetworkRounds(t *testing.T) {
	const n = 10
	f := newFederation(t, n, CoordinatorConfig{Rounds: 6, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	sites := make([]*Site, n)
	for i := 1; i <= n; i++ {
		s, err := NewSite(f.siteConfig(i))
		if err != nil {
			t.Fatal(err)
		}
		sites[i-1] = s
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Run(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("site %d: %v", s.cfg.Site, err)
			}
		}()
	}
	sum, err := f.coord.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if okRounds(sum) != 6 || sum.Epsilon > 3 {
		t.Fatalf("rounds %+v, ε %v", sum.Rounds, sum.Epsilon)
	}
	// The model works on the held-out set, standardized the same way.
	met := f.evaluate(t)
	if met.Accuracy < 0.9 {
		t.Errorf("accuracy %.3f after 6 network rounds", met.Accuracy)
	}
	t.Logf("10 sites, 6 rounds: accuracy %.3f, ε %.3f", met.Accuracy, sum.Epsilon)
	// Every ledger audits.
	pub, _ := dp.ParsePublicKey(sum.LedgerKey)
	if _, err := dp.AuditLedger(sum.Ledger, pub); err != nil {
		t.Errorf("coordinator ledger: %v", err)
	}
	for i, s := range sites {
		if s.Rounds() != 6 {
			t.Errorf("site %d completed %d rounds", i+1, s.Rounds())
		}
		pub := siteLedgerPub(t, s.cfg)
		// The opening entry, the statistics release and 6 rounds.
		if a, err := dp.AuditLedger(filepath.Join(s.cfg.State, "site-ledger.jsonl"), pub); err != nil || a.Entries != 8 {
			t.Errorf("site %d ledger: %+v %v", i+1, a, err)
		}
		s.Close()
	}
}

// runSites starts sites in goroutines and returns a wait function.
func runSites(t *testing.T, ctx context.Context, cfgs []SiteConfig) ([]*Site, func()) {
	var wg sync.WaitGroup
	var sites []*Site
	for _, c := range cfgs {
		s, err := NewSite(c)
		if err != nil {
			t.Fatal(err)
		}
		sites = append(sites, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Run(ctx)
		}()
	}
	return sites, func() {
		wg.Wait()
		for _, s := range sites {
			s.Close()
		}
	}
}

func okRounds(s *Summary) int {
	n := 0
	for _, r := range s.Rounds {
		if r.Status == "ok" {
			n++
		}
	}
	return n
}

// A site that vanishes in any phase but the consistency check is a
// dropout: the round completes with the survivors, and the vanished site's
// budget was charged only if it sent its masked input.
func TestNetworkDropoutInEachPhase(t *testing.T) {
	for phase := 1; phase <= 5; phase++ {
		t.Run(fmt.Sprintf("phase=%d", phase-1), func(t *testing.T) {
			f := newFederation(t, 5, CoordinatorConfig{Rounds: 2, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1,
				PhaseTimeout: time.Second, JoinWait: 300 * time.Millisecond})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var cfgs []SiteConfig
			for i := 1; i <= 5; i++ {
				c := f.siteConfig(i)
				if i == 2 {
					c.dropAt = phase
				}
				cfgs = append(cfgs, c)
			}
			_, wait := runSites(t, ctx, cfgs)
			sum, err := f.coord.Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			cancel()
			wait()
			// A survivor that vanishes before signing the survivor set fails
			// the round: its input is opened only over a set it signed
			// itself. The coordinator had charged it (before asking to
			// unmask), so the round is spent, not run again.
			want := 2
			if phase == 4 {
				want = 1
			}
			if okRounds(sum) != want {
				t.Errorf("rounds %+v", sum.Rounds)
			}
			pub, _ := dp.ParsePublicKey(sum.LedgerKey)
			// The statistics release and two charged rounds.
			if a, err := dp.AuditLedger(sum.Ledger, pub); err != nil || a.Charges != 3 {
				t.Errorf("coordinator ledger: %+v %v", a, err)
			}
		})
	}
}

// A site whose own budget is spent refuses and sends nothing; the others
// go on; its ledger never passes its cap.
func TestNetworkSiteBudget(t *testing.T) {
	f := newFederation(t, 5, CoordinatorConfig{Rounds: 4, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var cfgs []SiteConfig
	for i := 1; i <= 5; i++ {
		c := f.siteConfig(i)
		if i == 4 {
			c.EpsilonCap = 2
		}
		cfgs = append(cfgs, c)
	}
	sites, wait := runSites(t, ctx, cfgs)
	sum, err := f.coord.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	wait()
	if okRounds(sum) != 4 {
		t.Errorf("rounds %+v", sum.Rounds)
	}
	if sites[3].Spent() > 2 || sites[3].Rounds() == 4 {
		t.Errorf("capped site spent %v over %d rounds", sites[3].Spent(), sites[3].Rounds())
	}
}

// A site whose every engine message is corrupted: the coordinator names
// the problem in its log, treats it as a dropout, and finishes.
func TestNetworkMalformedMessages(t *testing.T) {
	f := newFederation(t, 5, CoordinatorConfig{Rounds: 2, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1, PhaseTimeout: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var cfgs []SiteConfig
	for i := 1; i <= 5; i++ {
		c := f.siteConfig(i)
		c.corrupt = i == 5
		cfgs = append(cfgs, c)
	}
	_, wait := runSites(t, ctx, cfgs)
	sum, err := f.coord.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	wait()
	if okRounds(sum) != 2 {
		t.Errorf("rounds %+v", sum.Rounds)
	}
}

// A certificate that is not on the roster is refused before any message;
// a coordinator whose certificate does not match a kit's pin is refused by
// the site.
func TestNetworkIdentityChecks(t *testing.T) {
	f := newFederation(t, 4, CoordinatorConfig{Rounds: 1, Clip: 1, LearningRate: 1})
	other := t.TempDir()
	if err := Provision(other, 3, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Site 1 of another federation, same roster id.
	c := f.siteConfig(1)
	od := filepath.Join(other, "site-1")
	c.Cert, c.Key, c.CA = filepath.Join(od, "cert.pem"), filepath.Join(od, "key.pem"), filepath.Join(od, "ca.pem")
	s, _ := NewSite(c)
	tc, err := clientTLS(c.Cert, c.Key, c.CA, c.Pin, "localhost", c.Passphrase)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.session(ctx, tc); err == nil {
		t.Error("a foreign certificate got a session")
	}
	if len(f.coord.connected()) != 0 {
		t.Error("a foreign site is connected")
	}
	// A kit pinned to another coordinator.
	c = f.siteConfig(2)
	c.Pin = strings.Repeat("ab", 32)
	s, _ = NewSite(c)
	tc, _ = clientTLS(c.Cert, c.Key, c.CA, c.Pin, "localhost", c.Passphrase)
	if err := s.session(ctx, tc); err == nil || !strings.Contains(err.Error(), "pin") {
		t.Errorf("pin mismatch: %v", err)
	}
	// A site claiming another site's id in its Hello is refused.
	c = f.siteConfig(3)
	c.Site = 3
	s, _ = NewSite(c)
	s.cfg.Site = 4
	tc, _ = clientTLS(c.Cert, c.Key, c.CA, c.Pin, "localhost", c.Passphrase)
	if err := s.session(ctx, tc); err == nil {
		t.Error("a site spoofing another id got a session")
	}
	// Provisioning refuses to overwrite a kit.
	if err := Provision(other, 3, nil); err == nil {
		t.Error("a kit was overwritten")
	}
	if fi, err := os.Stat(filepath.Join(other, "site-1", "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("site key mode %v, %v", fi.Mode().Perm(), err)
	}
}

// The coordinator is stopped mid-run and restarted on the same state and
// address: the sites reconnect, training resumes after the last charged
// round, and the ledger holds every round exactly once.
func TestNetworkCoordinatorRestart(t *testing.T) {
	f := newFederation(t, 5, CoordinatorConfig{Rounds: 5, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var cfgs []SiteConfig
	for i := 1; i <= 5; i++ {
		cfgs = append(cfgs, f.siteConfig(i))
	}
	_, wait := runSites(t, ctx, cfgs)
	cctx, stop := context.WithCancel(ctx)
	cfg := f.coord.cfg
	cfg.Progress = func(r RoundResult) {
		if r.Round == 2 {
			stop() // "kill" after round 2 is charged and checkpointed
		}
	}
	f.coord.cfg.Progress = cfg.Progress
	if _, err := f.coord.Run(cctx); err == nil {
		t.Fatal("the first coordinator finished")
	}
	f.coord.Stop()
	cfg.Progress = nil
	c2, err := NewCoordinator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var lis net.Listener
	for i := 0; i < 50; i++ {
		if lis, err = net.Listen("tcp", f.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	go c2.Serve(lis)
	defer c2.Stop()
	sum, err := c2.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	wait()
	pub, _ := dp.ParsePublicKey(sum.LedgerKey)
	a, err := dp.AuditLedger(sum.Ledger, pub)
	if err != nil {
		t.Fatal(err)
	}
	es, _ := dp.ReadLedger(sum.Ledger)
	seen := map[int]bool{}
	for _, e := range es[1:] {
		if e.Kind != "charge" {
			continue
		}
		if seen[e.Round] {
			t.Errorf("round %d charged twice", e.Round)
		}
		seen[e.Round] = true
	}
	for r := 1; r <= 5; r++ {
		if !seen[r] {
			t.Errorf("round %d never charged", r)
		}
	}
	if a.Epsilon > 3 {
		t.Errorf("ε %v", a.Epsilon)
	}
	if sum.Rounds[0].Round != 3 {
		t.Errorf("resumed at round %d, want 3", sum.Rounds[0].Round)
	}
}

// Mode he over the network: the key ceremony with every site, then
// statistics and training rounds decrypted by a majority; ledgers audit,
// and the decryptors' state survives on disk.
func TestNetworkHE(t *testing.T) {
	const n = 5
	f := newFederation(t, n, CoordinatorConfig{Mode: HE, Rounds: 4, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cfgs []SiteConfig
	for i := 1; i <= n; i++ {
		cfgs = append(cfgs, f.siteConfig(i))
	}
	sites, wait := runSites(t, ctx, cfgs)
	sum, err := f.coord.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	wait()
	if okRounds(sum) != 4 || sum.Epsilon > 3 {
		t.Fatalf("rounds %+v ε %v", sum.Rounds, sum.Epsilon)
	}
	met := f.evaluate(t)
	if met.Accuracy < 0.9 {
		t.Errorf("accuracy %.3f", met.Accuracy)
	}
	t.Logf("he over the network, 5 sites, 4 rounds: accuracy %.3f, ε %.3f", met.Accuracy, sum.Epsilon)
	pub, _ := dp.ParsePublicKey(sum.LedgerKey)
	if _, err := dp.AuditLedger(sum.Ledger, pub); err != nil {
		t.Error(err)
	}
	for i, s := range sites {
		if _, err := os.Stat(filepath.Join(s.cfg.State, "he-party.bin")); err != nil {
			t.Errorf("site %d: no saved threshold key: %v", i+1, err)
		}
	}
	// Every site confirmed the key over the transcript the coordinator
	// recorded (adverts, commitments before reveals, key confirmation).
	rec, err := os.ReadFile(filepath.Join(f.coord.cfg.State, "he.json"))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range sites {
		if tr := s.he.Transcript(); !strings.Contains(string(rec), fmt.Sprintf(`"transcript":"%x"`, tr)) {
			t.Errorf("site %d: transcript %x is not the coordinator's: %s", i+1, tr, rec)
		}
	}
}

// An oversized message is refused by gRPC's limit before the round code
// sees it: that site's session ends (a dropout) and the round goes on.
func TestNetworkOversizedMessage(t *testing.T) {
	old := MaxMessage
	MaxMessage = 64 << 10
	defer func() { MaxMessage = old }()
	f := newFederation(t, 4, CoordinatorConfig{Mode: Plain, Level: dp.ClientLevel, Rounds: 1, Clip: 1, LearningRate: 1,
		Model: "linear", Features: 999, PhaseTimeout: 2 * time.Second, JoinWait: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var cfgs []SiteConfig
	for i := 1; i <= 4; i++ {
		c := f.siteConfig(i)
		c.Data, c.EpsilonCap, c.AllowNoDP, c.AllowPlain = nil, 0, true, true
		c.Update = make([]float64, 1000)
		c.oversize = i == 4 // 512 KB as doubles: over the 64 KB limit
		cfgs = append(cfgs, c)
	}
	_, wait := runSites(t, ctx, cfgs)
	sum, err := f.coord.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	wait()
	if okRounds(sum) != 1 || sum.Rounds[len(sum.Rounds)-1].Participants != 3 {
		t.Errorf("rounds %+v", sum.Rounds)
	}
}

// Hospitals that train elsewhere send updates (client level, with DP) and
// receive the global model as .npy; it equals the mean of the clipped
// updates up to the DP noise.
func TestNetworkUpdates(t *testing.T) {
	f := newFederation(t, 3, CoordinatorConfig{Level: dp.ClientLevel, Rounds: 1, Epsilon: 50, Delta: 1e-5, Clip: 10, LearningRate: 1,
		Model: "linear", Features: 99, JoinWait: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var cfgs []SiteConfig
	out := filepath.Join(t.TempDir(), "global.npy")
	for i := 1; i <= 3; i++ {
		c := f.siteConfig(i)
		c.Data, c.EpsilonCap = nil, 50
		c.Update = make([]float64, 100)
		for k := range c.Update {
			c.Update[k] = float64(i) * 0.1
		}
		if i == 1 {
			c.ModelOut = out
		}
		cfgs = append(cfgs, c)
	}
	_, wait := runSites(t, ctx, cfgs)
	sum, err := f.coord.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wait() // the sites leave on the coordinator's goodbye, after the last model
	cancel()
	fh, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	v, _, err := fl.ReadNPY(fh)
	if err != nil || len(v) != 100 {
		t.Fatalf("global model: %d values, %v", len(v), err)
	}
	var mean float64
	for k := range v {
		if v[k] != sum.Model[k] {
			t.Fatalf("site's model file differs from the coordinator's at %d", k)
		}
		mean += v[k] / 100
	}
	if math.Abs(mean-0.2) > 0.2 {
		t.Errorf("mean coordinate %v, want ≈ 0.2 (mean of 0.1, 0.2, 0.3)", mean)
	}
}

func TestCheckStart(t *testing.T) {
	good := &wire.RoundStart{Length: 31, Members: []uint32{1, 2, 3}, Sites: 3, Bits: 32, Model: make([]float64, 31), Mode: string(SecAgg)}
	if err := checkStart(good, 3); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(*wire.RoundStart){
		"huge length":      func(s *wire.RoundStart) { s.Length = 1 << 31; s.Model = nil },
		"zero length":      func(s *wire.RoundStart) { s.Length = 0; s.Model = nil },
		"repeat member":    func(s *wire.RoundStart) { s.Members = []uint32{1, 1, 2} },
		"outsider":         func(s *wire.RoundStart) { s.Members = []uint32{1, 2, 9} },
		"site count":       func(s *wire.RoundStart) { s.Sites = 7 },
		"model length":     func(s *wire.RoundStart) { s.Model = make([]float64, 5) },
		"nan model":        func(s *wire.RoundStart) { s.Model[3] = math.NaN() },
		"bits":             func(s *wire.RoundStart) { s.Bits = 17 },
		"negative sigma":   func(s *wire.RoundStart) { s.SiteSigma = -1 },
		"unknown mode":     func(s *wire.RoundStart) { s.Mode = "x" },
		"unknown kind":     func(s *wire.RoundStart) { s.Kind = 9 },
		"setup outside he": func(s *wire.RoundStart) { s.Kind = wire.RoundStart_HE_SETUP },
	} {
		st := proto.Clone(good).(*wire.RoundStart)
		f(st)
		if err := checkStart(st, 3); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}
