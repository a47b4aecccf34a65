package protocol

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/dp/ledgertest"
	"github.com/fl-secure/fl-secure/internal/atrest"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

// witnessBed is an in-memory federation whose coordinator is started
// afresh for each run on the same state (as a restarted, or lying,
// coordinator would be), with its log kept for the test to read.
type witnessBed struct {
	t    *testing.T
	f    *federation
	n    int
	cfg  CoordinatorConfig
	logs *captureLog
}

func newWitnessBed(t *testing.T, n int, mode Mode) *witnessBed {
	t.Helper()
	f := newMemFederation(t, n, CoordinatorConfig{Mode: mode, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1, Rounds: 1, PlanRounds: 4})
	f.coord.Stop()
	return &witnessBed{t: t, f: f, n: n, cfg: f.coord.cfg, logs: &captureLog{}}
}

// run runs a coordinator with cfg (after change, if any, has edited it)
// until round rounds, with every site connected in memory, and closes the
// sites afterwards.
func (b *witnessBed) run(rounds int, change func(*CoordinatorConfig)) (*Summary, error) {
	t := b.t
	t.Helper()
	cfg := b.cfg
	cfg.Rounds, cfg.Logger = rounds, b.logs.logger()
	if cfg.Mode != HE {
		cfg.PhaseTimeout = 2 * time.Second
	}
	if change != nil {
		change(&cfg)
	}
	c, err := NewCoordinator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var sites []*Site
	for i := 1; i <= b.n; i++ {
		sc := b.f.siteConfig(i)
		sc.Coordinator, sc.Cert, sc.Key, sc.CA, sc.Pin = "", "", "", "", ""
		s, err := NewSite(sc)
		if err != nil {
			t.Fatal(err)
		}
		sites = append(sites, s)
		stream, err := c.ConnectInMemory(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.RunOn(ctx, stream)
		}()
	}
	sum, err := c.Run(ctx)
	c.Shutdown(time.Second)
	cancel()
	wg.Wait()
	for _, s := range sites {
		s.Close()
	}
	return sum, err
}

func (b *witnessBed) ledger() string {
	return filepath.Join(b.cfg.State, "coordinator-ledger.jsonl")
}

// held returns the checkpoint site i holds, verified as the site would.
func (b *witnessBed) held(i int) *dp.Checkpoint {
	b.t.Helper()
	note, err := os.ReadFile(filepath.Join(b.f.siteConfig(i).State, witnessFile))
	if err != nil {
		b.t.Fatalf("site %d: %v", i, err)
	}
	cp, err := openCosigned(note, b.f.roster.ledgerKey(), b.f.roster, i)
	if err != nil {
		b.t.Fatalf("site %d's checkpoint: %v", i, err)
	}
	return cp
}

// backup copies the coordinator's ledger and the checkpoint beside it.
func (b *witnessBed) backup() map[string][]byte {
	b.t.Helper()
	out := map[string][]byte{}
	for _, p := range []string{b.ledger(), b.ledger() + dp.CheckpointSuffix} {
		data, err := os.ReadFile(p)
		if err != nil {
			b.t.Fatal(err)
		}
		out[p] = data
	}
	return out
}

func (b *witnessBed) restore(files map[string][]byte) {
	b.t.Helper()
	for p, data := range files {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			b.t.Fatal(err)
		}
	}
}

// refused checks that the run failed and that every site refused with a
// reason holding want, and still holds the checkpoint of size cosigned.
func (b *witnessBed) refused(sum *Summary, err error, want string, cosigned int64) {
	t := b.t
	t.Helper()
	if err == nil && okRounds(sum) > 0 {
		t.Fatalf("the lying coordinator's round went through: %+v", sum.Rounds)
	}
	for i := 1; i <= b.n; i++ {
		site := "site=" + itoa(i)
		if len(b.logs.lines(site, want)) == 0 {
			t.Errorf("site %d did not refuse naming %q; log:\n%s", i, want, b.logs)
		}
		if got := b.held(i).Size; got != cosigned {
			t.Errorf("site %d holds a checkpoint of %d entries, want %d (it never cosigns a smaller one)", i, got, cosigned)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// After a normal run every site holds a checkpoint it cosigned that covers
// every charge of the coordinator's ledger (the last round's too), the
// coordinator's witness directory holds one per site, and
// WitnessCheckpoints reports them, verified against the roster.
func TestWitnessEveryChargeCosigned(t *testing.T) {
	for _, mode := range []Mode{SecAgg, HE} {
		t.Run(string(mode), func(t *testing.T) {
			b := newWitnessBed(t, 3, mode)
			const rounds = 2
			sum, err := b.run(rounds, nil)
			if err != nil {
				t.Fatal(err)
			}
			if okRounds(sum) != rounds {
				t.Fatalf("rounds %+v", sum.Rounds)
			}
			pub, _ := dp.ParsePublicKey(sum.LedgerKey)
			a, err := dp.AuditLedger(sum.Ledger, pub)
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= b.n; i++ {
				if cp := b.held(i); cp.Size != int64(a.Entries) {
					t.Errorf("site %d cosigned %d entries, the ledger holds %d", i, cp.Size, a.Entries)
				}
			}
			ws, err := WitnessCheckpoints(b.cfg.State, b.f.roster)
			if err != nil {
				t.Fatal(err)
			}
			if len(ws) != b.n {
				t.Fatalf("%d witnesses, want %d", len(ws), b.n)
			}
			for _, w := range ws {
				if w.Problem != "" || w.Size != int64(a.Entries) || w.Round != rounds || w.Name != WitnessName(w.Site) {
					t.Errorf("site %d's witness copy: %+v", w.Site, w)
				}
				// Each copy verifies with the audit's inputs: the roster's
				// coordinator key and the site's name and identity key.
				key, _ := base64.StdEncoding.DecodeString(w.Key)
				if _, err := dp.ReadCheckpoint(w.File, b.f.roster.ledgerKey(), map[string]ed25519.PublicKey{w.Name: key}); err != nil {
					t.Errorf("site %d's witness copy: %v", w.Site, err)
				}
			}
			if got, want := CosignedBy(sum.Witnesses, rounds), "cosigned by 3 of 3 hospitals at round 2"; got != want {
				t.Errorf("summary: %q, want %q", got, want)
			}
		})
	}
}

// The coordinator's ledger, with the checkpoint beside it, is restored
// from a copy taken before the sites cosigned a later round: every site
// refuses the next round, naming the rollback, and keeps the larger
// checkpoint.
func TestAttackWitnessLedgerRolledBack(t *testing.T) {
	b := newWitnessBed(t, 3, SecAgg)
	if _, err := b.run(1, nil); err != nil {
		t.Fatal(err)
	}
	old := b.backup()
	if _, err := b.run(2, nil); err != nil {
		t.Fatal(err)
	}
	cosigned := b.held(1).Size
	b.restore(old) // the lying coordinator's rollback
	sum, err := b.run(3, nil)
	b.refused(sum, err, "rolled back", cosigned)
}

// The coordinator deletes its ledger and starts a new one with the same
// key: refused as a rollback.
func TestAttackWitnessLedgerReplaced(t *testing.T) {
	b := newWitnessBed(t, 3, SecAgg)
	if _, err := b.run(1, nil); err != nil {
		t.Fatal(err)
	}
	cosigned := b.held(1).Size
	os.Remove(b.ledger())
	os.Remove(b.ledger() + dp.CheckpointSuffix)
	sum, err := b.run(2, nil)
	b.refused(sum, err, "rolled back", cosigned)
}

// A forked ledger: the coordinator restores an earlier copy and appends a
// different charge in place of the one the sites cosigned, signed with its
// own key, so that the tree is as large as the one cosigned but another
// tree. Every site refuses, naming the fork.
func TestAttackWitnessLedgerForked(t *testing.T) {
	b := newWitnessBed(t, 3, SecAgg)
	if _, err := b.run(1, nil); err != nil {
		t.Fatal(err)
	}
	old := b.backup()
	if _, err := b.run(2, nil); err != nil {
		t.Fatal(err)
	}
	cosigned := b.held(1).Size
	b.restore(old)
	key, err := readKey(b.cfg.LedgerKey, atrest.Passphrase{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := dp.OpenLedger(b.ledger(), key)
	if err != nil {
		t.Fatal(err)
	}
	for l.Size() < cosigned {
		if _, err := l.Charge(ledgertest.Charge("federation", 2, dp.RecordLevel, 50)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	sum, err := b.run(3, nil)
	b.refused(sum, err, "forked", cosigned)
}

// A coordinator whose ledger is signed by a key other than the roster's
// (it shows its own roster, naming that key): every site refuses, and
// cosigns nothing.
func TestAttackWitnessCheckpointOtherKey(t *testing.T) {
	b := newWitnessBed(t, 3, SecAgg)
	other := filepath.Join(t.TempDir(), "other-ledger-key.pem")
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	if err := writeKey(other, key, atrest.Passphrase{}); err != nil {
		t.Fatal(err)
	}
	lying := *b.f.roster
	lying.Coordinator = &RosterCoordinator{LedgerKey: base64.StdEncoding.EncodeToString(pub)}
	sum, err := b.run(1, func(c *CoordinatorConfig) { c.Roster, c.LedgerKey = &lying, other })
	if err == nil && okRounds(sum) > 0 {
		t.Fatalf("rounds %+v", sum.Rounds)
	}
	for i := 1; i <= b.n; i++ {
		if len(b.logs.lines("site="+itoa(i), "roster's coordinator ledger key")) == 0 {
			t.Errorf("site %d did not refuse naming the key; log:\n%s", i, b.logs)
		}
		if _, err := os.Stat(filepath.Join(b.f.siteConfig(i).State, witnessFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("site %d cosigned a checkpoint signed by another key", i)
		}
	}
}

// After the sites cosigned, the coordinator runs without its ledger (a run
// without DP on the same state): no checkpoint travels, and the sites
// refuse.
func TestAttackWitnessNoCheckpoint(t *testing.T) {
	b := newWitnessBed(t, 3, SecAgg)
	if _, err := b.run(1, nil); err != nil {
		t.Fatal(err)
	}
	cosigned := b.held(1).Size
	sum, err := b.run(2, func(c *CoordinatorConfig) { c.Epsilon = 0 })
	b.refused(sum, err, "no checkpoint of the coordinator's ledger", cosigned)
}

// A site's cosigned checkpoint rolled back on disk (an older copy put
// back) is caught by its signed state when it starts; deleted, too.
func TestAttackWitnessFileRolledBack(t *testing.T) {
	b := newWitnessBed(t, 3, SecAgg)
	if _, err := b.run(1, nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(b.f.siteConfig(1).State, witnessFile)
	old, _ := os.ReadFile(path)
	if _, err := b.run(2, nil); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, old, 0o600)
	if _, err := NewSite(b.f.siteConfig(1)); err == nil || !strings.Contains(err.Error(), "rolled back") {
		t.Errorf("a site whose cosigned checkpoint was rolled back started: %v", err)
	}
	os.Remove(path)
	if _, err := NewSite(b.f.siteConfig(1)); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a site whose cosigned checkpoint was deleted started: %v", err)
	}
}

// A site checks a Witness's shape before any signature: bad proof hash
// lengths, too many hashes, a negative size or an empty note are refused
// with a reason, never a panic; and a RoundStart after a refused Witness
// is refused.
func TestWitnessBadMessages(t *testing.T) {
	b := newWitnessBed(t, 3, SecAgg)
	if _, err := b.run(1, nil); err != nil {
		t.Fatal(err)
	}
	s, err := NewSite(b.f.siteConfig(1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	good, _ := os.ReadFile(b.ledger() + dp.CheckpointSuffix)
	for name, w := range map[string]*wire.Witness{
		"empty note":   {Round: 5 << 20},
		"huge note":    {Round: 5 << 20, Checkpoint: make([]byte, maxWitnessNote+1)},
		"short hash":   {Round: 5 << 20, Checkpoint: good, From: 2, Proof: [][]byte{make([]byte, 31)}},
		"long proof":   {Round: 5 << 20, Checkpoint: good, From: 2, Proof: make([][]byte, maxProof+1)},
		"negative":     {Round: 5 << 20, Checkpoint: good, From: -1},
		"garbage note": {Round: 5 << 20, Checkpoint: []byte("fl-secure\n\n")},
	} {
		m := s.witness(w, nil).GetCosigned()
		if m == nil || m.Refusal == "" || len(m.Checkpoint) != 0 {
			t.Errorf("%s: %+v, want a refusal", name, m)
		}
		if err := s.checkWitness(&wire.RoundStart{Round: 5 << 20}); err == nil {
			t.Errorf("%s: the round after a refused Witness is not refused", name)
		}
	}
}

// FuzzSiteWitness feeds a site that has cosigned before Witness messages
// built from arbitrary bytes: it never panics, answers every one with a
// Cosigned for the same session, and whenever it cosigns, the note it
// returns verifies under the roster's coordinator key with its own
// cosignature and does not shrink what it holds.
func FuzzSiteWitness(f *testing.F) {
	dir := f.TempDir()
	if err := Provision(dir, 3, nil); err != nil {
		f.Fatal(err)
	}
	roster, err := LoadRoster(filepath.Join(dir, "coordinator", "roster.json"))
	if err != nil {
		f.Fatal(err)
	}
	key, err := readKey(filepath.Join(dir, "coordinator", ledgerKeyFile), atrest.Passphrase{})
	if err != nil {
		f.Fatal(err)
	}
	l, err := dp.CreateLedger(filepath.Join(dir, "ledger.jsonl"), key, dp.LedgerOptions{Accountant: dp.RDP, Relation: dp.AddRemove, Delta: 1e-5, Cap: 100})
	if err != nil {
		f.Fatal(err)
	}
	defer l.Close()
	charge := func() {
		if _, err := l.Charge(ledgertest.Charge("federation", int(l.Size()), dp.RecordLevel, 50)); err != nil {
			f.Fatal(err)
		}
	}
	charge()
	first := l.Checkpoint()
	charge()
	charge()
	proof, err := l.ProveFrom(2)
	if err != nil {
		f.Fatal(err)
	}
	var flat []byte
	for _, h := range proof {
		flat = append(flat, h[:]...)
	}
	s, err := NewSite(SiteConfig{Site: 1, Roster: roster, Identity: filepath.Join(dir, "site-1", "identity.pem"),
		State: filepath.Join(dir, "site-1", "state"), NoSync: true, Logger: quietLogger()})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	if m := s.witness(&wire.Witness{Round: 1 << 20, Checkpoint: first}, nil).GetCosigned(); m.Refusal != "" {
		f.Fatalf("the first checkpoint: %s", m.Refusal)
	}
	f.Add(l.Checkpoint(), int64(2), flat)
	f.Add(first, int64(2), []byte(nil))
	f.Add([]byte("garbage"), int64(-1), make([]byte, 31))
	sid := uint64(2 << 20)
	f.Fuzz(func(t *testing.T, note []byte, from int64, flat []byte) {
		var proof [][]byte
		for len(flat) > 0 {
			n := min(len(flat), 32)
			if flat[0] == 0xff { // a short hash now and then
				n = min(len(flat), 31)
			}
			proof = append(proof, flat[:n])
			flat = flat[n:]
		}
		held := s.witnessed.Size
		sid++
		m := s.witness(&wire.Witness{Round: sid, Checkpoint: note, From: from, Proof: proof}, nil).GetCosigned()
		if m == nil || m.Round != sid {
			t.Fatalf("answer %+v", m)
		}
		if m.Refusal != "" {
			if len(m.Checkpoint) != 0 {
				t.Fatal("a refusal with a checkpoint")
			}
			return
		}
		cp, err := openCosigned(m.Checkpoint, roster.ledgerKey(), roster, 1)
		if err != nil || cp.Size < held {
			t.Fatalf("cosigned %v, %v (held %d)", cp, err, held)
		}
	})
}
