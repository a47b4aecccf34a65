package protocol

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
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

func newFederation(t *testing.T, n int, cfg CoordinatorConfig) *federation {
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
	if cfg.Model == "" {
		cfg.Model, cfg.Features = "logistic", 30
	}
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
	ok := 0
	for _, r := range sum.Rounds {
		if r.Status == "ok" {
			ok++
		}
	}
	if ok != 6 || sum.Epsilon > 3 {
		t.Fatalf("rounds %+v, ε %v", sum.Rounds, sum.Epsilon)
	}
	// The model works: standardize the test set the same way.
	st, _ := loadStats(f.coord.cfg.State)
	m, _ := fl.NewModel("logistic", fl.Binary, 30, 2, 0)
	met, _ := fl.Evaluate(m, sum.Model, (&fl.Standardizer{Mean: st.Mean, Scale: st.Scale}).Apply(f.test))
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
		k, _ := os.ReadFile(filepath.Join(s.cfg.State, "ledger.pub"))
		pub, _ := dp.ParsePublicKey(strings.TrimSpace(string(k)))
		if a, err := dp.AuditLedger(filepath.Join(s.cfg.State, "site-ledger.jsonl"), pub); err != nil || a.Entries != 7 {
			t.Errorf("site %d ledger: %+v %v", i+1, a, err)
		}
		s.Close()
	}
}
