package protocol

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

// readEvents reads an event log.
func readEvents(t *testing.T, path string) []Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("event line %q: %v", sc.Text(), err)
		}
		if e.Time.IsZero() || e.Event == "" {
			t.Fatalf("event line %q lacks time or event", sc.Text())
		}
		out = append(out, e)
	}
	return out
}

// firstEvent returns the index of the first event of kind that match
// accepts, or -1.
func firstEvent(es []Event, kind string, match func(Event) bool) int {
	for i, e := range es {
		if e.Event == kind && (match == nil || match(e)) {
			return i
		}
	}
	return -1
}

func roundIs(r int) func(Event) bool {
	return func(e Event) bool { return e.Round != nil && *e.Round == r }
}

// runMem runs f's coordinator with in-memory sites 1..n (cfg edits each
// site's configuration) and returns the summary and each site's error.
// The sites are closed when it returns.
func runMem(t *testing.T, f *federation, n int, cfg func(*SiteConfig)) (*Summary, error, []error) {
	t.Helper()
	sum, sites, err, errs := runMemFull(t, f, n, cfg)
	for _, s := range sites {
		s.Close()
	}
	return sum, err, errs
}

// runMemFull is runMem returning the sites as well, open until the test
// ends, so that their ledgers and state can be inspected.
func runMemFull(t *testing.T, f *federation, n int, cfg func(*SiteConfig)) (*Summary, []*Site, error, []error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a guard against a hang, not a timing assertion
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, n)
	sites := make([]*Site, n)
	for i := 1; i <= n; i++ {
		c := f.siteConfig(i)
		c.Coordinator, c.Cert, c.Key, c.CA, c.Pin = "", "", "", "", ""
		if cfg != nil {
			cfg(&c)
		}
		s, err := NewSite(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		sites[i-1] = s
		stream, err := f.coord.ConnectInMemory(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i-1] = s.RunOn(ctx, stream)
		}()
	}
	sum, err := f.coord.Run(ctx)
	if err != nil {
		cancel()
	}
	f.coord.Shutdown(time.Second)
	wg.Wait()
	return sum, sites, err, errs
}

// metricValue returns the value of the sample named name (with its
// labels, as in the exposition: `fl_secure_rounds_total{status="opened"}`)
// in a Prometheus text exposition.
func metricValue(t *testing.T, text, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return x
		}
	}
	t.Fatalf("no sample %s in the exposition:\n%s", name, text)
	return 0
}

// A small federation's metrics, health and events: the counts of rounds,
// the bytes per site, the ledger's ε, and an event for each step.
func TestMetricsAndEvents(t *testing.T) {
	dir := t.TempDir()
	evlog, err := OpenEventLog(filepath.Join(dir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	f := newMemFederation(t, 3, CoordinatorConfig{Rounds: 2, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1, Events: evlog})
	srv := httptest.NewServer(f.coord.MetricsHandler())
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, `"starting"`) {
		t.Errorf("health before Run: %d %s", code, body)
	}
	// /healthz reports 200 while the run is going: ask it from a round's
	// progress callback.
	var during []string
	f.coord.cfg.Progress = func(RoundResult) {
		code, body := get("/healthz")
		during = append(during, fmt.Sprintf("%d %s", code, body))
	}
	sum, err, _ := runMem(t, f, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	evlog.Close()
	if okRounds(sum) != 2 {
		t.Fatalf("rounds %+v", sum.Rounds)
	}
	if len(during) < 2 || !strings.Contains(during[len(during)-1], `"round":2`) {
		t.Errorf("health during the run: %q", during)
	}
	for _, h := range during {
		if !strings.HasPrefix(h, "200 ") || !strings.Contains(h, `"status":"serving"`) {
			t.Errorf("health during the run: %q", h)
		}
	}
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, `"finished"`) {
		t.Errorf("health after Run: %d %s", code, body)
	}
	code, text := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for name, want := range map[string]float64{
		`fl_secure_rounds_total{status="started"}`: 2,
		`fl_secure_rounds_total{status="opened"}`:  2,
		`fl_secure_rounds_total{status="failed"}`:  0,
		`fl_secure_rounds_total{status="skipped"}`: 0,
		`fl_secure_sites_connected`:                0,
		`fl_secure_round`:                          2,
	} {
		if got := metricValue(t, text, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := metricValue(t, text, `fl_secure_ledger_epsilon_spent{ledger="coordinator"}`); got != sum.Epsilon || got <= 0 {
		t.Errorf("ε spent %v, the run's %v", got, sum.Epsilon)
	}
	if got := metricValue(t, text, `fl_secure_ledger_epsilon_left{ledger="coordinator"}`); got != 3-sum.Epsilon {
		t.Errorf("ε left %v, want %v", got, 3-sum.Epsilon)
	}
	for i := 1; i <= 3; i++ {
		in := metricValue(t, text, fmt.Sprintf(`fl_secure_site_received_bytes_total{site="site-%d"}`, i))
		out := metricValue(t, text, fmt.Sprintf(`fl_secure_site_sent_bytes_total{site="site-%d"}`, i))
		if in < 1000 || out < 1000 {
			t.Errorf("site %d: %v bytes in, %v out", i, in, out)
		}
	}
	if got := metricValue(t, text, `fl_secure_phase_duration_seconds_count{phase="masked input"}`); got < 2 {
		t.Errorf("masked input phases observed: %v", got)
	}

	es := readEvents(t, filepath.Join(dir, "events.jsonl"))
	for _, want := range []struct {
		kind  string
		match func(Event) bool
	}{
		{"run_started", nil},
		{"site_joined", func(e Event) bool { return e.Site == 3 }},
		{"round_started", func(e Event) bool { return roundIs(1)(e) && len(e.Sites) == 3 && e.Attempt == 1 }},
		{"round_opened", func(e Event) bool {
			return roundIs(2)(e) && e.Participants == 3 && e.Epsilon != nil && *e.Epsilon == sum.Epsilon
		}},
		{"checkpoint_written", func(e Event) bool { return roundIs(2)(e) && strings.HasSuffix(e.File, "round-0002.safetensors") }},
		{"run_finished", func(e Event) bool { return e.Status == "ok" && e.Rounds == 2 }},
		{"site_left", nil},
	} {
		if firstEvent(es, want.kind, want.match) < 0 {
			t.Errorf("no %s event to match in %+v", want.kind, es)
		}
	}
	if i, j := firstEvent(es, "round_started", roundIs(1)), firstEvent(es, "round_opened", roundIs(1)); i > j {
		t.Errorf("round 1 opened (event %d) before it started (event %d)", j, i)
	}
}

// The periodic line says how many sites are in and which are missing.
func TestWaitingText(t *testing.T) {
	f := newMemFederation(t, 3, CoordinatorConfig{Rounds: 1, Clip: 1, LearningRate: 1})
	c := f.coord
	sess := []*session{{site: 1}, {site: 2}}
	if got, want := c.waitingText(sess, 2), "waiting for sites: 2 of 3 (missing site-3)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	c.refusedPlan[3] = "its cap is 1"
	if got, want := c.waitingText(sess[:1], 3), "waiting for sites: 1 of 3 (missing site-2, site-3 (refused the plan: its cap is 1)); a round needs 3"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// A site whose stream breaks mid-phase is dropped at once: with a phase
// timeout far longer than the test, the round goes on without it as soon
// as its connection ends, and no phase times out.
func TestBrokenStreamDroppedAtOnce(t *testing.T) {
	dir := t.TempDir()
	evlog, err := OpenEventLog(filepath.Join(dir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFederation(t, 5, CoordinatorConfig{Rounds: 2, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1,
		PhaseTimeout: time.Hour, JoinWait: 300 * time.Millisecond, Events: evlog})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a guard against a hang only
	defer cancel()
	var cfgs []SiteConfig
	for i := 1; i <= 5; i++ {
		c := f.siteConfig(i)
		if i == 2 {
			c.dropAt = phaseMasked + 1 // closes its connection instead of sending its masked input
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
	evlog.Close()
	if okRounds(sum) != 2 || !slices.Equal(sum.Rounds[0].Survivors, []int{1, 3, 4, 5}) {
		t.Fatalf("rounds %+v", sum.Rounds)
	}
	es := readEvents(t, filepath.Join(dir, "events.jsonl"))
	left := firstEvent(es, "site_left", func(e Event) bool { return e.Site == 2 })
	opened := firstEvent(es, "round_opened", roundIs(1))
	if left < 0 || opened < 0 || left > opened {
		t.Errorf("site 2 left at event %d, round 1 opened at event %d: %+v", left, opened, es)
	}
	if i := firstEvent(es, "phase_timeout", nil); i >= 0 {
		t.Errorf("a phase timed out: %+v", es[i])
	}
}

// A site whose cap cannot cover the announced plan refuses at join, says
// why, and pays for nothing; the coordinator logs it and runs with the
// others. A site with an older roster refuses too, naming the file.
func TestJoinRefusesUncoveredPlan(t *testing.T) {
	dir := t.TempDir()
	evlog, err := OpenEventLog(filepath.Join(dir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	f := newMemFederation(t, 5, CoordinatorConfig{Rounds: 2, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1, MinCohort: 3,
		AnnouncePlan: true, Events: evlog, JoinWait: 300 * time.Millisecond})
	old := *f.roster
	old.Sites = slices.Clone(old.Sites)
	old.Sites[0].Name = "renamed" // another roster than the coordinator's
	sum, err, errs := runMem(t, f, 5, func(c *SiteConfig) {
		switch c.Site {
		case 4:
			c.EpsilonCap = 1
		case 5:
			c.Roster = &old
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	evlog.Close()
	if okRounds(sum) != 2 || len(sum.Rounds[0].Survivors) != 3 {
		t.Fatalf("rounds %+v", sum.Rounds)
	}
	if errs[3] == nil || !strings.Contains(errs[3].Error(), "cannot cover the federation's plan") || !strings.Contains(errs[3].Error(), "ε = 3") {
		t.Errorf("site 4: %v", errs[3])
	}
	if errs[4] == nil || !strings.Contains(errs[4].Error(), "install the roster.json") {
		t.Errorf("site 5: %v", errs[4])
	}
	es := readEvents(t, filepath.Join(dir, "events.jsonl"))
	for _, site := range []int{4, 5} {
		if firstEvent(es, "site_refused", func(e Event) bool { return e.Site == site && roundIs(0)(e) && e.Reason != "" }) < 0 {
			t.Errorf("no site_refused event for site %d: %+v", site, es)
		}
	}
	// Site 4 charged nothing: its ledger holds its header only.
	es4, err := dp.ReadLedger(filepath.Join(f.dir, "site-4", "state", "site-ledger.jsonl"))
	if err == nil {
		for _, e := range es4 {
			if e.Kind == "charge" {
				t.Errorf("site 4 paid for round %d", e.Round)
			}
		}
	}
}

// The check at join only adds refusals: a plan a site can cover, a plan
// at a larger δ (where ε alone proves nothing), or no plan, refuses
// nothing; no DP refuses a site that does not allow it.
func TestCheckPlan(t *testing.T) {
	f := newMemFederation(t, 3, CoordinatorConfig{Rounds: 1, Clip: 1, LearningRate: 1})
	s := f.memSite(t, 1) // cap 3 at δ = 1e-5
	d := f.roster.Digest()
	plan := func(eps, delta float64) *wire.Plan {
		return &wire.Plan{Rounds: 30, Epsilon: eps, Delta: delta, Level: "record", Sites: 3, RosterSha256: d[:]}
	}
	for _, c := range []struct {
		p    *wire.Plan
		want string
	}{
		{nil, ""},
		{plan(3, 1e-5), ""},
		{plan(2, 1e-5), ""},
		{plan(3.5, 1e-5), "cannot cover"},
		{plan(3.5, 1e-4), "cannot cover"},
		{plan(3.5, 1e-6), ""},
		{plan(0, 0), "no DP noise"},
		{&wire.Plan{Epsilon: 1, Delta: 1e-5, Level: "record", Sites: 4, RosterSha256: d[:]}, "roster"},
		{&wire.Plan{Epsilon: 1, Delta: 1e-5, Level: "patient", Sites: 3, RosterSha256: d[:]}, "neither record nor client"},
	} {
		err := s.checkPlan(c.p)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("plan %v: %v, want %q", c.p, err, c.want)
		}
	}
}

// Retention keeps the newest K, every 10th and the averaged tail, and
// never the one a resume needs; a resumed run after pruning goes on from
// the newest checkpoint.
func TestCheckpointRetention(t *testing.T) {
	rounds := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	var kept []int
	for _, q := range rounds {
		if keepCheckpoint(q, 12, 2, 0, rounds) {
			kept = append(kept, q)
		}
	}
	if !slices.Equal(kept, []int{10, 11, 12}) {
		t.Errorf("kept %v", kept)
	}
	if !keepCheckpoint(5, 12, 2, 4, rounds) || keepCheckpoint(3, 12, 2, 4, rounds) {
		t.Error("the averaged tail is not kept")
	}
	if !keepCheckpoint(1, 1, 1, 0, []int{1}) {
		t.Error("the newest checkpoint was pruned")
	}

	f := newMemFederation(t, 3, CoordinatorConfig{Rounds: 12, PlanRounds: 14, Epsilon: 30, Delta: 1e-5, Clip: 1, LearningRate: 1, KeepCheckpoints: 2})
	sum, err, _ := runMem(t, f, 3, func(c *SiteConfig) { c.EpsilonCap = 60 })
	if err != nil || okRounds(sum) != 12 {
		t.Fatalf("first run: %v %+v", err, sum)
	}
	state := f.coord.cfg.State
	checkpoints := func() []string {
		names, _ := filepath.Glob(filepath.Join(state, "checkpoints", "*.safetensors"))
		var left []string
		for _, n := range names {
			left = append(left, filepath.Base(n))
		}
		return left
	}
	if got, want := checkpoints(), []string{"round-0010.safetensors", "round-0011.safetensors", "round-0012.safetensors"}; !slices.Equal(got, want) {
		t.Fatalf("checkpoints left %v, want %v", got, want)
	}
	w12, err := readCheckpoint(state, 12)
	if err != nil {
		t.Fatal(err)
	}

	// Restart on the same state with the two rounds left of the plan: it
	// resumes after round 12, from round 12's checkpoint.
	cfg := f.coord.cfg
	cfg.Rounds = 14
	var resumed []RoundResult
	cfg.Progress = func(r RoundResult) { resumed = append(resumed, r) }
	c2, err := NewCoordinator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c2.Stop)
	f.coord = c2
	if _, err, _ := runMem(t, f, 3, func(c *SiteConfig) { c.EpsilonCap = 60 }); err != nil {
		t.Fatal(err)
	}
	if len(resumed) != 2 || resumed[0].Round != 13 || resumed[0].Status != "ok" {
		t.Fatalf("the resumed run's rounds: %+v", resumed)
	}
	st, err := loadStats(state)
	if err != nil {
		t.Fatal(err)
	}
	w13, err := readCheckpoint(state, 13)
	if err != nil {
		t.Fatal(err)
	}
	for k := range w13 {
		if want := w12[k] - cfg.LearningRate/st.Rows*resumed[0].Sum[k]; math.Abs(w13[k]-want) > 1e-9 {
			t.Fatalf("round 13 did not start from round 12's model: parameter %d is %v, want %v", k, w13[k], want)
		}
	}
	if got, want := checkpoints(), []string{"round-0010.safetensors", "round-0013.safetensors", "round-0014.safetensors"}; !slices.Equal(got, want) {
		t.Errorf("checkpoints left %v, want %v", got, want)
	}
}

// The event log appends: reopening keeps what was there, and every line
// is one JSON object.
func TestEventLogAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	for i := range 2 {
		l, err := OpenEventLog(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.emit(Event{Event: "site_joined", Site: i + 1}); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	es := readEvents(t, path)
	if len(es) != 2 || es[0].Site != 1 || es[1].Site != 2 {
		t.Errorf("events %+v", es)
	}
	if _, err := OpenEventLog(filepath.Join(t.TempDir(), "no", "such", "dir", "e.jsonl")); err == nil || !strings.Contains(err.Error(), "event log") {
		t.Errorf("an event log in a missing directory: %v", err)
	}
	if got := truncate(strings.Repeat("é", 10), 5); got != "éé…" {
		t.Errorf("truncate: %q", got)
	}
}

// A site that refuses a round (here: its cap is spent) is an event too,
// with the round, the phase and its reason.
func TestRoundRefusalEvent(t *testing.T) {
	dir := t.TempDir()
	evlog, err := OpenEventLog(filepath.Join(dir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	f := newMemFederation(t, 4, CoordinatorConfig{Rounds: 2, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1, MinCohort: 3,
		Events: evlog, JoinWait: 300 * time.Millisecond})
	sum, err, _ := runMem(t, f, 4, func(c *SiteConfig) {
		if c.Site == 4 {
			c.EpsilonCap = 0.01
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	evlog.Close()
	if okRounds(sum) != 2 {
		t.Fatalf("rounds %+v", sum.Rounds)
	}
	es := readEvents(t, filepath.Join(dir, "events.jsonl"))
	if firstEvent(es, "site_refused", func(e Event) bool {
		return e.Site == 4 && e.Round != nil && e.Phase != "" && strings.Contains(e.Reason, "budget")
	}) < 0 {
		t.Errorf("no site_refused event for site 4's round: %+v", es)
	}
}

// A site that refuses the plan as a round begins (it was connected when
// the round started) leaves the round with its reason, not as a site that
// merely gave no answer.
func TestPlanRefusalNamedInRoundFailure(t *testing.T) {
	f := newMemFederation(t, 3, CoordinatorConfig{Rounds: 1, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1, MinCohort: 3,
		PhaseTimeout: 200 * time.Millisecond})
	c := f.coord
	c.refusedPlan[3] = "this site's ε cap 1 cannot cover the federation's plan"
	start := silentTrainStart()
	_, _, bl, err := c.secureSum(context.Background(), []*session{silentSession(1), silentSession(2), silentSession(3)}, start, nil)
	if err == nil {
		t.Fatal("a round with three silent sites opened")
	}
	if got := bl.sites[3]; !strings.Contains(got, "refused the federation's plan: this site's ε cap 1") {
		t.Errorf("site 3 left the round for %q", got)
	}
	if got := bl.sites[1]; !strings.HasPrefix(got, "no answer") {
		t.Errorf("site 1 left the round for %q", got)
	}
}
