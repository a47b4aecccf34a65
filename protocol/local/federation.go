package local

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fl-secure/fl-secure/protocol"
)

// A federation is a coordinator and its sites in this process, joined by
// in-memory sessions that it opens and closes to simulate sites going
// offline.
type federation struct {
	dir   string
	coord *protocol.Coordinator
	sites []*protocol.Site
	// wrap, if set, wraps a site's end of each new session.
	wrap func(site int, s protocol.SiteStream) protocol.SiteStream

	// before runs before each training round's cohort is gathered.
	before func(round int)

	ctx  context.Context
	mu   sync.Mutex
	open map[int]*conn
}

// A conn is one session of a site: done receives what RunOn returned.
type conn struct {
	stream protocol.SiteStream
	done   chan error
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newFederation provisions kits for n sites under dir/kits and builds the
// in-memory coordinator (state in dir/coordinator) and the sites (state in
// dir/site-i) from cc and site(i).
func newFederation(dir string, n int, cc protocol.CoordinatorConfig, site func(i int) protocol.SiteConfig) (*federation, error) {
	kits := filepath.Join(dir, "kits")
	if err := protocol.Provision(kits, n, nil); err != nil {
		return nil, err
	}
	roster, err := protocol.LoadRoster(filepath.Join(kits, "coordinator", "roster.json"))
	if err != nil {
		return nil, err
	}
	// The states live as long as the simulation: no fsync for them (the
	// ledgers are fsync'ed regardless).
	cc.InMemory, cc.Roster, cc.State, cc.NoSync = true, roster, filepath.Join(dir, "coordinator"), true
	cc.LedgerKey = filepath.Join(kits, "coordinator", "ledger-key.pem")
	if cc.Logger == nil {
		cc.Logger = discard()
	}
	f := &federation{dir: dir, open: map[int]*conn{}}
	cc.BeforeRound = func(r int) {
		if f.before != nil {
			f.before(r)
		}
	}
	if f.coord, err = protocol.NewCoordinator(cc); err != nil {
		return nil, err
	}
	for i := 1; i <= n; i++ {
		sc := site(i)
		sc.Site, sc.Roster = i, roster
		sc.Identity = filepath.Join(kits, fmt.Sprintf("site-%d", i), "identity.pem")
		sc.State, sc.NoSync = f.siteState(i), true
		if sc.Logger == nil {
			sc.Logger = discard()
		}
		s, err := protocol.NewSite(sc)
		if err != nil {
			f.close()
			return nil, err
		}
		f.sites = append(f.sites, s)
	}
	return f, nil
}

func (f *federation) siteState(i int) string { return filepath.Join(f.dir, fmt.Sprintf("site-%d", i)) }

// close closes the sites' ledgers and stops the coordinator.
func (f *federation) close() {
	f.coord.Stop()
	for _, s := range f.sites {
		s.Close()
	}
}

// connected returns the sites whose session is still running.
func (f *federation) connected() []int {
	var out []int
	for site, c := range f.open {
		if d, ok := c.stream.(interface{ Dropped() bool }); ok && d.Dropped() {
			<-c.done // a simulated drop: its session is over
			delete(f.open, site)
			continue
		}
		select {
		case <-c.done:
			delete(f.open, site) // it ended by itself (a simulated drop)
			continue
		default:
		}
		out = append(out, site)
	}
	slices.Sort(out)
	return out
}

// setOnline leaves exactly the sites of online with a session: it closes
// the others' sessions, opens the missing ones, and waits until the
// coordinator sees exactly these sites.
func (f *federation) setOnline(online []int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	have := f.connected()
	for _, site := range have {
		if !slices.Contains(online, site) {
			c := f.open[site]
			c.stream.Close()
			<-c.done
			delete(f.open, site)
		}
	}
	for _, site := range online {
		if slices.Contains(have, site) {
			continue
		}
		stream, err := f.coord.ConnectInMemory(f.ctx, site)
		if err != nil {
			return err
		}
		if f.wrap != nil {
			stream = f.wrap(site, stream)
		}
		c := &conn{stream: stream, done: make(chan error, 1)}
		s := f.sites[site-1]
		go func() { c.done <- s.RunOn(f.ctx, stream) }()
		f.open[site] = c
	}
	// The coordinator registers and drops sessions on its own goroutines:
	// wait until it sees exactly the online sites.
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(f.coord.Connected(), online) {
		if time.Now().After(deadline) {
			return fmt.Errorf("local: the coordinator sees sites %v online, want %v", f.coord.Connected(), online)
		}
		if f.ctx.Err() != nil {
			return f.ctx.Err()
		}
		time.Sleep(100 * time.Microsecond)
	}
	return nil
}

// run connects every site and runs the coordinator. schedule, if set,
// gives the sites online in each training round. It returns when the
// coordinator's run has ended and every session is closed.
func (f *federation) run(ctx context.Context, schedule func(round int) []int) (*protocol.Summary, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f.ctx = ctx
	all := make([]int, len(f.sites))
	for i := range all {
		all[i] = i + 1
	}
	var hookErr error
	if schedule != nil {
		f.before = func(r int) {
			if err := f.setOnline(schedule(r)); err != nil && hookErr == nil {
				hookErr = err
				cancel()
			}
		}
	}
	if err := f.setOnline(all); err != nil {
		return nil, err
	}
	sum, err := f.coord.Run(ctx)
	if hookErr != nil {
		err = hookErr
	}
	// The coordinator said goodbye to the connected sites: let them read
	// it, then end every session.
	f.coord.Shutdown(time.Second)
	cancel()
	f.mu.Lock()
	for _, c := range f.open {
		<-c.done
	}
	f.open = map[int]*conn{}
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return sum, nil
}

// rosterFile is the roster of the kits newFederation provisions: it names
// every ledger's public key.
func (f *federation) rosterFile() string {
	return filepath.Join(f.dir, "kits", "coordinator", "roster.json")
}

// ledgers fills in sum the sites' ledgers and the public keys they are
// signed with, the roster that names those keys, and the checkpoints of
// the coordinator's ledger that the sites cosigned.
func (f *federation) ledgers(sum *protocol.Summary) error {
	sum.Roster = f.rosterFile()
	for i, s := range f.sites {
		k := s.LedgerKey()
		if k == nil {
			return fmt.Errorf("local: site %d has no ledger", i+1)
		}
		sum.SiteLedgers = append(sum.SiteLedgers, filepath.Join(f.siteState(i+1), "site-ledger.jsonl"))
		sum.SiteKeys = append(sum.SiteKeys, base64.StdEncoding.EncodeToString(k))
	}
	if len(sum.Witnesses) == 0 {
		return nil
	}
	// The checkpoints the sites hold themselves: an audit takes them from
	// the hospitals, not from the coordinator whose ledger they check.
	for i := range f.sites {
		p := filepath.Join(f.siteState(i+1), protocol.WitnessFile)
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("local: site %d holds no cosigned checkpoint of the coordinator's ledger: %w", i+1, err)
		}
		sum.SiteCheckpoints = append(sum.SiteCheckpoints, p)
	}
	return nil
}
