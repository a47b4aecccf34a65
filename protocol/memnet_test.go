package protocol

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

// newMemFederation is newFederation with an in-memory coordinator: no
// gRPC server, no TLS files.
func newMemFederation(t *testing.T, n int, cfg CoordinatorConfig) *federation {
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
	cfg.InMemory, cfg.Roster = true, roster
	cfg.LedgerKey = filepath.Join(dir, "coordinator", "ledger-key.pem")
	cfg.State = filepath.Join(dir, "coordinator", "state")
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
	withTestRanges(t, &cfg)
	c, err := NewCoordinator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return &federation{dir: dir, roster: roster, coord: c, sites: sites, test: te}
}

// memSite makes site i of f with the kit's identity; it needs no TLS.
func (f *federation) memSite(t *testing.T, i int) *Site {
	t.Helper()
	c := f.siteConfig(i)
	c.Coordinator, c.Cert, c.Key, c.CA, c.Pin = "", "", "", "", ""
	s, err := NewSite(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestInMemoryFederation runs a coordinator and 5 hospitals in one process
// over the in-memory transport, through the same round code as
// TestNetworkRounds, and checks the same invariants.
func TestInMemoryFederation(t *testing.T) {
	const n, rounds = 5, 3
	f := newMemFederation(t, n, CoordinatorConfig{Mode: SecAgg, Level: dp.RecordLevel, Rounds: rounds, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1})
	if err := f.coord.Serve(nil); err == nil {
		t.Error("an in-memory coordinator serves a network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	sites := make([]*Site, n)
	for i := 1; i <= n; i++ {
		s := f.memSite(t, i)
		sites[i-1] = s
		stream, err := f.coord.ConnectInMemory(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.RunOn(ctx, stream); err != nil {
				t.Errorf("site %d: %v", s.cfg.Site, err)
			}
		}()
	}
	sum, err := f.coord.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	f.coord.Shutdown(time.Second)
	if okRounds(sum) != rounds || sum.Epsilon > 3 || sum.Epsilon <= 0 {
		t.Fatalf("rounds %+v, ε %v", sum.Rounds, sum.Epsilon)
	}
	met := f.evaluate(t)
	if met.Accuracy < 0.9 {
		t.Errorf("accuracy %.3f after %d in-memory rounds", met.Accuracy, rounds)
	}
	t.Logf("%d sites, %d rounds in memory: accuracy %.3f, ε %.3f", n, rounds, met.Accuracy, sum.Epsilon)
	pub, _ := dp.ParsePublicKey(sum.LedgerKey)
	// The statistics release (round 0) and the rounds.
	if a, err := dp.AuditLedger(sum.Ledger, pub); err != nil || a.Charges != rounds+1 {
		t.Errorf("coordinator ledger: %+v %v", a, err)
	}
	for i, s := range sites {
		if s.Rounds() != rounds {
			t.Errorf("site %d completed %d rounds", i+1, s.Rounds())
		}
		if s.BytesSent() == 0 {
			t.Errorf("site %d sent nothing", i+1)
		}
		if a, err := dp.AuditLedger(filepath.Join(s.cfg.State, "site-ledger.jsonl"), siteLedgerPub(t, s.cfg)); err != nil || a.Entries != rounds+2 {
			t.Errorf("site %d ledger: %+v %v", i+1, a, err)
		}
	}
	if m := f.coord.Misbehaviour(); len(m) != 0 {
		t.Errorf("misbehaviour %v", m)
	}
	if len(f.coord.connected()) != 0 {
		t.Error("sessions outlive the run")
	}
}

// The checks of Session after the certificate hold for in-memory sessions:
// a Hello that names another site is refused (and read by the site as a
// refusal of its identity), a second Hello renames nothing, and a site
// that floods the coordinator loses its session.
func TestInMemorySessionChecks(t *testing.T) {
	f := newMemFederation(t, 4, CoordinatorConfig{Rounds: 1, Clip: 1, LearningRate: 1, MaxBuffered: 4096})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := f.coord.ConnectInMemory(ctx, 9); status.Code(err) != codes.PermissionDenied {
		t.Errorf("site 9, not on the roster: %v", err)
	}

	// Site 4's code on site 3's session.
	stream, err := f.coord.ConnectInMemory(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	err = f.memSite(t, 4).RunOn(ctx, stream)
	if !errors.Is(err, errRefused) || !strings.Contains(err.Error(), "PermissionDenied") || !strings.Contains(err.Error(), "the Hello claims site 4") {
		t.Errorf("a Hello naming another site: %v", err)
	}
	if r := f.coord.Misbehaviour()[3]; len(r) != 1 || !strings.Contains(r[0], "claims site 4") {
		t.Errorf("misbehaviour of site 3: %q", r)
	}

	// A raw session of site 1: a second Hello, then a flood.
	stream, err = f.coord.ConnectInMemory(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	hello := func(site int) *wire.SiteMessage {
		return &wire.SiteMessage{Body: &wire.SiteMessage_Hello{Hello: &wire.Hello{Site: uint32(site), Version: wireVersion}}}
	}
	if err := stream.Send(hello(1)); err != nil {
		t.Fatal(err)
	}
	if m, err := stream.Recv(); err != nil || m.GetWelcome().GetSite() != 1 {
		t.Fatalf("welcome %v, %v", m, err)
	}
	if err := stream.Send(hello(2)); err != nil {
		t.Fatal(err)
	}
	if s := f.coord.sessionOf(1); s == nil || s.site != 1 || f.coord.sessionOf(2) != nil {
		t.Error("a second Hello moved the session")
	}
	for i := 0; i < 4; i++ {
		m := &wire.SiteMessage{Body: &wire.SiteMessage_Plain{Plain: &wire.PlainVector{Round: 1, Vector: make([]float64, 200)}}}
		if err := stream.Send(m); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
	}
	if _, err := stream.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a flooding site's session ends with %v", err)
	}
	r := f.coord.Misbehaviour()[1]
	if len(r) != 2 || !strings.Contains(r[0], "second Hello") || !strings.Contains(r[1], "flooding") {
		t.Errorf("misbehaviour of site 1: %q", r)
	}
}

// Closing a site's end or stopping the coordinator ends in-memory sessions
// at both ends, as a cancelled gRPC call does; a stopped coordinator
// accepts none.
func TestInMemoryClose(t *testing.T) {
	f := newMemFederation(t, 3, CoordinatorConfig{Rounds: 1, Clip: 1, LearningRate: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	open := func(site int) SiteStream {
		t.Helper()
		stream, err := f.coord.ConnectInMemory(ctx, site)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&wire.SiteMessage{Body: &wire.SiteMessage_Hello{Hello: &wire.Hello{Site: uint32(site), Version: wireVersion}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		return stream
	}
	gone := func(site int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); f.coord.sessionOf(site) != nil; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("site %d's session outlives its stream", site)
			}
		}
	}
	s1, s2 := open(1), open(2)
	s1.Close()
	gone(1)
	if _, err := s1.Recv(); status.Code(err) != codes.Canceled {
		t.Errorf("Recv after Close: %v", err)
	}
	if err := s1.Send(&wire.SiteMessage{}); !errors.Is(err, io.EOF) {
		t.Errorf("Send after Close: %v", err)
	}
	// A message over MaxMessage is refused, as gRPC refuses it.
	defer func(old int) { MaxMessage = old }(MaxMessage)
	MaxMessage = 1 << 10
	big := &wire.SiteMessage{Body: &wire.SiteMessage_Plain{Plain: &wire.PlainVector{Vector: make([]float64, 1<<10)}}}
	if err := s2.Send(big); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("an oversized message: %v", err)
	}
	f.coord.Stop()
	gone(2)
	if _, err := s2.Recv(); status.Code(err) != codes.Canceled {
		t.Errorf("Recv after Stop: %v", err)
	}
	if _, err := f.coord.ConnectInMemory(ctx, 3); status.Code(err) != codes.Unavailable {
		t.Errorf("a session after Stop: %v", err)
	}
}

// A coordinator with a gRPC server takes in-memory sessions beside
// network ones, in one federation.
func TestInMemoryBesideNetwork(t *testing.T) {
	const n = 4
	f := newFederation(t, n, CoordinatorConfig{Rounds: 2, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 1; i <= n; i++ {
		s, err := NewSite(f.siteConfig(i))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				errs[i-1] = s.Run(ctx)
				return
			}
			stream, err := f.coord.ConnectInMemory(ctx, i)
			if err != nil {
				errs[i-1] = err
				return
			}
			errs[i-1] = s.RunOn(ctx, stream)
		}()
	}
	sum, err := f.coord.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if okRounds(sum) != 2 {
		t.Errorf("rounds %+v", sum.Rounds)
	}
	if i := slices.IndexFunc(errs, func(e error) bool { return e != nil }); i >= 0 {
		t.Errorf("site %d: %v", i+1, errs[i])
	}
}
