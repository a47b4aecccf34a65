package protocol

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/protocol/wire"
)

// A lying coordinator announces hostile plans at the Welcome: NaN, ±Inf,
// negative and subnormal budgets and δs, the most rounds a uint32 holds,
// level strings that differ by case or whitespace, an empty level, a
// roster digest of the wrong length. The check must not panic, must not
// change anything the site keeps (its state, ledger, checkpoint files),
// and every plan it accepts must be one whose ε a per-round check would
// still police: it may only add refusals.
func TestAttackHostilePlanOnlyAddsRefusals(t *testing.T) {
	f := newMemFederation(t, 3, CoordinatorConfig{Rounds: 1, Clip: 1, LearningRate: 1})
	s := f.memSite(t, 1) // cap 3 at δ = 1e-5
	d := f.roster.Digest()
	state := filepath.Join(f.dir, "site-1", "state")
	before := snapshot(t, state)
	inf, nan := math.Inf(1), math.NaN()
	var plans []*wire.Plan
	for _, eps := range []float64{nan, inf, -inf, -1, math.Copysign(0, -1), 5e-324, 1e308, 3.0000000000000004} {
		for _, delta := range []float64{nan, inf, -1, 0, 1e-5, 1} {
			for _, level := range []string{"record", "Record", " record", "client", "", "record\x00"} {
				plans = append(plans, &wire.Plan{Rounds: math.MaxUint32, Epsilon: eps, Delta: delta, Level: level, Sites: 3, RosterSha256: d[:]})
			}
		}
	}
	plans = append(plans,
		&wire.Plan{Epsilon: 1, Delta: 1e-5, Level: "record", Sites: 3, RosterSha256: d[:5]},
		&wire.Plan{Epsilon: 1, Delta: 1e-5, Level: "record", Sites: math.MaxUint32, RosterSha256: d[:]},
		&wire.Plan{Epsilon: 1, Delta: 1e-5, Level: "record", Sites: 3},
	)
	var accepted []string
	for _, p := range plans {
		err := func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("panic: %v", r)
					t.Errorf("plan %v: %v", p, r)
				}
			}()
			return s.checkPlan(p)
		}()
		if err == nil {
			accepted = append(accepted, fmt.Sprintf("ε=%v δ=%v level=%q", p.Epsilon, p.Delta, p.Level))
			// An accepted plan with a budget above the cap must be one
			// where the cap comparison is meaningless (δ larger than the
			// site's, or not a number); the rounds still check.
			if p.Epsilon > 3 && p.Delta >= 1e-5 {
				t.Errorf("plan ε %v at δ %v accepted by a site with cap 3 at δ 1e-5", p.Epsilon, p.Delta)
			}
			if len(p.RosterSha256) != 32 {
				t.Errorf("plan with a %d-byte roster digest accepted", len(p.RosterSha256))
			}
		}
	}
	t.Logf("accepted %d of %d hostile plans, e.g. %v", len(accepted), len(plans), accepted[:min(len(accepted), 4)])
	after := snapshot(t, state)
	for f, b := range before {
		if after[f] != b {
			t.Errorf("checking plans changed the site's %s", f)
		}
	}
	for f := range after {
		if _, ok := before[f]; !ok {
			t.Errorf("checking plans created %s", f)
		}
	}
}

// Pruning under an adversarial state directory and arbitrary histories
// (rounds charged and lost without a checkpoint, restarts that resume
// from the newest checkpoint at or before the last charge, tail
// averaging): it never deletes a file that is not a round's checkpoint
// (the ledger, its checkpoint, witness copies, statistics, temporary
// files, look-alike names, a symlink's target), and after every prune
// the checkpoint a resume would read is still there.
func TestAttackPruneLosesNothingNeeded(t *testing.T) {
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		state := t.TempDir()
		cp := filepath.Join(state, "checkpoints")
		os.MkdirAll(filepath.Join(state, "witness"), 0o755)
		os.MkdirAll(cp, 0o755)
		others := map[string]string{
			"coordinator-ledger.jsonl":                  "ledger",
			"coordinator-ledger.jsonl.checkpoint":       "cp",
			"statistics.json":                           "{}",
			"witness/site-1.checkpoint":                 "w",
			"checkpoints/round-3.safetensors":           "short name",
			"checkpoints/round-00003.safetensors":       "long name",
			"checkpoints/.round-0003.safetensors.tmp-1": "tmp",
			"checkpoints/notes.txt":                     "n",
			"checkpoints/round-0001.safetensors.bak":    "bak",
		}
		for f, b := range others {
			os.WriteFile(filepath.Join(state, f), []byte(b), 0o644)
		}
		keep := 1 + rng.IntN(4)
		avg := 0
		if rng.IntN(3) == 0 {
			avg = 5 + rng.IntN(20)
		}
		c := &Coordinator{cfg: CoordinatorConfig{State: state, KeepCheckpoints: keep, AverageFrom: avg}, log: quietLogger()}
		lastCharge, written := 0, []int{}
		for r := 1; r <= 40; r++ {
			lastCharge = r
			if rng.IntN(5) == 0 {
				continue // charged, result lost: no checkpoint
			}
			if err := os.WriteFile(checkpointPath(state, r), []byte(fmt.Sprint(r)), 0o600); err != nil {
				t.Fatal(err)
			}
			written = append(written, r)
			c.pruneCheckpoints(r)
			// What a resume now reads: the newest checkpoint at or before
			// the last charge.
			want := written[len(written)-1]
			if _, err := os.Stat(checkpointPath(state, want)); err != nil {
				t.Fatalf("seed %d: after round %d the checkpoint a resume needs (round %d) is gone", seed, r, want)
			}
			if avg > 0 {
				for _, q := range written {
					if q >= avg {
						if _, err := os.Stat(checkpointPath(state, q)); err != nil {
							t.Fatalf("seed %d: round %d of the averaged tail was pruned", seed, q)
						}
					}
				}
			}
			_ = lastCharge
		}
		for f, b := range others {
			got, err := os.ReadFile(filepath.Join(state, f))
			if err != nil || string(got) != b {
				t.Errorf("seed %d: pruning removed or changed %s", seed, f)
			}
		}
	}
	// A checkpoint name that is a symlink to the ledger: the link may go,
	// the ledger must stay.
	state := t.TempDir()
	os.MkdirAll(filepath.Join(state, "checkpoints"), 0o755)
	ledger := filepath.Join(state, "coordinator-ledger.jsonl")
	os.WriteFile(ledger, []byte("ledger"), 0o644)
	os.Symlink(ledger, checkpointPath(state, 1))
	for r := 2; r <= 5; r++ {
		os.WriteFile(checkpointPath(state, r), nil, 0o600)
	}
	c := &Coordinator{cfg: CoordinatorConfig{State: state, KeepCheckpoints: 1}, log: quietLogger()}
	c.pruneCheckpoints(5)
	if b, err := os.ReadFile(ledger); err != nil || string(b) != "ledger" {
		t.Errorf("pruning a symlinked checkpoint removed the ledger: %v", err)
	}
}

// The monitoring claim: /metrics and the event log show nothing that
// depends on a site's data. Two runs of the same federation differ only
// in site 1's records (the same count, other values): the bytes counted
// for site 1 in each direction must be the same, and neither the
// exposition nor the events may carry a key (PEM, the roster's keys) or
// the data's values.
func TestAttackMetricsBytesDependOnData(t *testing.T) {
	type result struct {
		in, out [4]float64
		text    string
		events  string
	}
	run := func(alter bool) result {
		dir := t.TempDir()
		evlog, err := OpenEventLog(filepath.Join(dir, "events.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		f := newMemFederation(t, 3, CoordinatorConfig{Rounds: 2, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1, Events: evlog, AnnouncePlan: true})
		if alter {
			// Site 1's records replaced by other records of the data set
			// (site 2's), the same count.
			d := *f.sites[0]
			src := f.sites[1]
			d.X = make([][]float64, len(f.sites[0].X))
			d.Y = slices.Clone(f.sites[0].Y)
			for i := range d.X {
				d.X[i] = slices.Clone(src.X[i%len(src.X)])
				d.Y[i] = src.Y[i%len(src.Y)]
			}
			f.sites[0] = &d
		}
		srv := httptest.NewServer(f.coord.MetricsHandler())
		defer srv.Close()
		if _, err, _ := runMem(t, f, 3, nil); err != nil {
			t.Fatal(err)
		}
		evlog.Close()
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var res result
		res.text = string(b)
		for i := 1; i <= 3; i++ {
			res.in[i] = metricValue(t, res.text, fmt.Sprintf(`fl_secure_site_received_bytes_total{site="site-%d"}`, i))
			res.out[i] = metricValue(t, res.text, fmt.Sprintf(`fl_secure_site_sent_bytes_total{site="site-%d"}`, i))
		}
		ev, _ := os.ReadFile(filepath.Join(dir, "events.jsonl"))
		res.events = string(ev)
		for _, s := range f.roster.Sites {
			for _, k := range []string{s.Identity, s.LedgerKey} {
				if strings.Contains(res.text, k) || strings.Contains(res.events, k) {
					t.Errorf("a roster key of site %d in the monitoring output", s.ID)
				}
			}
		}
		for _, out := range []string{res.text, res.events} {
			if strings.Contains(out, "PRIVATE KEY") || strings.Contains(out, "age-encryption") {
				t.Error("key material in the monitoring output")
			}
		}
		return res
	}
	a, b := run(false), run(true)
	if os.Getenv("REVIEW_SAME") != "" {
		b = run(false)
	}
	for i := 1; i <= 3; i++ {
		// What a site sends (its masked vectors, signatures, cosignatures)
		// must not change size with its data.
		if a.in[i] != b.in[i] {
			t.Errorf("site %d: bytes received from it %v vs %v: they vary with site 1's data", i, a.in[i], b.in[i])
		}
		// What the coordinator sends varies by a few bytes from run to run
		// with the same data too (REVIEW_SAME=1): the ledger lines in its
		// Witness messages carry RFC 3339 times with trailing zeros cut and
		// varint session ids. Bound it: no more than a few bytes a round.
		if d := math.Abs(a.out[i] - b.out[i]); d > 32 {
			t.Errorf("site %d: bytes sent to it %v vs %v", i, a.out[i], b.out[i])
		}
	}
}

// The newest checkpoint, the only one retention left (keep 1), is
// damaged on disk (a torn write by a failing disk, a bad restore). The
// promise: "the newest, from which a restart resumes, is never removed"
// and a resume never loses the checkpoint it needs. The attack restarts
// the coordinator: it must either stop, naming the checkpoint it cannot
// read, or resume from that round's model — not train on from the
// initial weights while counting rounds as if it had resumed.
func TestAttackResumeFromDamagedCheckpoint(t *testing.T) {
	f := newMemFederation(t, 3, CoordinatorConfig{Rounds: 4, PlanRounds: 6, Epsilon: 30, Delta: 1e-5, Clip: 1, LearningRate: 1, KeepCheckpoints: 1})
	sum, err, _ := runMem(t, f, 3, func(c *SiteConfig) { c.EpsilonCap = 60 })
	if err != nil || okRounds(sum) != 4 {
		t.Fatalf("first run: %v %+v", err, sum)
	}
	state := f.coord.cfg.State
	w4, err := readCheckpoint(state, 4)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(state, "checkpoints", "*"))
	t.Logf("checkpoints left: %v", names)
	b, _ := os.ReadFile(checkpointPath(state, 4))
	if err := os.WriteFile(checkpointPath(state, 4), b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := f.coord.cfg
	cfg.Rounds = 5
	var resumed []RoundResult
	cfg.Progress = func(r RoundResult) { resumed = append(resumed, r) }
	c2, err := NewCoordinator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c2.Stop)
	f.coord = c2
	_, err, _ = runMem(t, f, 3, func(c *SiteConfig) { c.EpsilonCap = 60 })
	if err != nil {
		t.Logf("the restart stopped: %v", err)
		if !strings.Contains(err.Error(), "round-0004") && !strings.Contains(err.Error(), "checkpoint") {
			t.Errorf("the restart stopped without naming the damaged checkpoint: %v", err)
		}
		return
	}
	if len(resumed) != 1 || resumed[0].Round != 5 || resumed[0].Status != "ok" {
		t.Fatalf("the resumed run's rounds: %+v", resumed)
	}
	st, _ := loadStats(state)
	w5, err := readCheckpoint(state, 5)
	if err != nil {
		t.Fatal(err)
	}
	for k := range w5 {
		if want := w4[k] - cfg.LearningRate/st.Rows*resumed[0].Sum[k]; math.Abs(w5[k]-want) > 1e-9 {
			t.Fatalf("the coordinator resumed as round 5 without round 4's model and said nothing: parameter %d is %v, want %v (4 charged rounds of training lost)", k, w5[k], want)
		}
	}
}
