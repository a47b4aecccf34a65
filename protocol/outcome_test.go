package protocol

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/dp"
)

// outcomes returns, for each charge in the ledger at path, its outcome
// mark ("" if none).
func outcomes(t *testing.T, path string) map[int64]dp.Outcome {
	t.Helper()
	es, err := dp.ReadLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]dp.Outcome{}
	for _, e := range es {
		switch e.Kind {
		case "charge":
			out[e.Seq] = ""
		case "outcome":
			out[e.Of] = e.Outcome
		}
	}
	return out
}

// TestSiteMarksUnopened: a session a site paid for that ends before it
// revealed its unmasking shares (the coordinator never asks) is marked
// unopened in the site's ledger, once, and the mark is anchored; a session
// it unmasked is not marked.
func TestSiteMarksUnopened(t *testing.T) {
	b := newAttackBed(t, 3, []int{1, 2, 3}, func(c *SiteConfig) { c.EpsilonCap = 100 })
	d := b.begin(b.train([]int{1, 2, 3}, nil))
	d.shareAndMask()
	s := b.sites[1]
	r := d.parties[1].round
	s.leave(r)
	s.leave(r) // a second end of the same session marks nothing more
	path := filepath.Join(s.cfg.State, "site-ledger.jsonl")
	got := outcomes(t, path)
	if len(got) != 1 || got[1] != dp.Unopened {
		t.Fatalf("outcomes %v, want the charge at entry 1 unopened", got)
	}
	if s.state.LedgerEntries != 3 {
		t.Errorf("the signed state anchors %d entries, want 3 (the mark included)", s.state.LedgerEntries)
	}
	if a, err := dp.AuditLedger(path, siteLedgerPub(t, s.cfg)); err != nil || a.Charges != 1 || a.Entries != 3 {
		t.Errorf("audit: %+v, %v", a, err)
	}

	// The next session runs to the unmasking: no mark.
	b.sid += 1 << 20
	d = b.begin(b.train([]int{1, 2, 3}, nil))
	d.shareAndMask()
	sigs := d.sign([]int{1, 2, 3}, []int{1, 2, 3})
	d.unmask([]int{1, 2, 3}, []int{1, 2, 3}, sigs)
	s.leave(d.parties[1].round)
	if got := outcomes(t, path); len(got) != 2 || got[1] != dp.Unopened || got[4] != "" {
		t.Errorf("outcomes %v after an unmasked session, want only entry 1 marked", got)
	}
}

// TestCoordinatorMarksOpened: every round the coordinator charged and
// decoded is marked opened in its ledger; the ε does not move.
func TestCoordinatorMarksOpened(t *testing.T) {
	const n, rounds = 4, 2
	f := newMemFederation(t, n, CoordinatorConfig{Mode: SecAgg, Level: dp.ClientLevel, Rounds: rounds, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := 1; i <= n; i++ {
		s := f.memSite(t, i)
		stream, err := f.coord.ConnectInMemory(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.RunOn(ctx, stream)
		}()
	}
	sum, err := f.coord.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	f.coord.Shutdown(time.Second)
	got := outcomes(t, sum.Ledger)
	if len(got) != rounds+1 {
		t.Fatalf("%d charges, want %d (the statistics release and the rounds)", len(got), rounds+1)
	}
	for seq, o := range got {
		if o != dp.Opened {
			t.Errorf("the charge at entry %d is marked %q, want opened", seq, o)
		}
	}
	pub, _ := dp.ParsePublicKey(sum.LedgerKey)
	if a, err := dp.AuditLedger(sum.Ledger, pub); err != nil || a.Epsilon != sum.Epsilon {
		t.Errorf("audit: %+v, %v (summary ε %v)", a, err, sum.Epsilon)
	}
}

// TestCoordinatorMarksUnopened: a survivor that vanishes before signing
// the survivor set fails a round the coordinator had already charged; the
// coordinator marks that charge unopened and the other opened, and the
// vanished site marks its own charge unopened (it never revealed its
// unmasking shares).
func TestCoordinatorMarksUnopened(t *testing.T) {
	f := newFederation(t, 5, CoordinatorConfig{Rounds: 2, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1,
		PhaseTimeout: time.Second, JoinWait: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var cfgs []SiteConfig
	for i := 1; i <= 5; i++ {
		c := f.siteConfig(i)
		if i == 2 {
			c.dropAt = 4 // vanishes instead of signing the survivor set
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
	count := func(m map[int64]dp.Outcome) map[dp.Outcome]int {
		c := map[dp.Outcome]int{}
		for _, o := range m {
			c[o]++
		}
		return c
	}
	if got := count(outcomes(t, sum.Ledger)); got[dp.Opened] != 2 || got[dp.Unopened] != 1 || got[""] != 0 {
		t.Errorf("coordinator's marks %v, want two opened (the statistics release and a round) and one unopened", got)
	}
	site2 := cfgs[1].State
	if got := count(outcomes(t, filepath.Join(site2, "site-ledger.jsonl"))); got[dp.Unopened] != 1 || got[dp.Opened] != 0 {
		t.Errorf("site 2's marks %v, want its paid, unrevealed round unopened", got)
	}
	if _, err := dp.AuditLedger(filepath.Join(site2, "site-ledger.jsonl"), siteLedgerPub(t, cfgs[1])); err != nil {
		t.Errorf("site 2's ledger: %v", err)
	}
}
