package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol"
)

// Federation configures one federated training run among hospitals in
// this process: the coordinator's settings, and each hospital's.
type Federation struct {
	Mode  protocol.Mode // secagg (default), he, or plain (NOT PRIVATE)
	Level dp.Level      // record (full-batch DP-SGD, default) or client
	// Epsilon is the coordinator's ε cap for the whole run; 0 trains
	// without DP (the sites allow rounds without noise).
	Epsilon float64
	Delta   float64
	// SiteCap is each hospital's own ε cap (0: Epsilon).
	SiteCap float64
	// Colluders is the number of sites assumed to collude with the
	// coordinator; noise is sized for MinCohort − Colluders honest sites.
	Colluders int
	// MinCohort is k: no sum of fewer than k sites is ever opened (0: a
	// majority of the sites, at least 3).
	MinCohort int
	Rounds    int
	// PlanRounds is how many rounds the noise is calibrated for (0:
	// Rounds); with more Rounds the coordinator's ledger refuses the round
	// that would pass its cap and the run ends there.
	PlanRounds int
	Model      string
	Hidden     int
	// Clip is the L2 bound per record (record level) or per update (client
	// level).
	Clip float64
	// LearningRate is the server step on the mean clipped gradient (record
	// level) or the local SGD step (client level).
	LearningRate float64
	LocalEpochs  int // client level (default 1)
	BatchSize    int // client level (default 16)
	ProxMu       float64
	// Dropout is the chance that a site is offline in a round.
	Dropout float64
	Bits    int // secagg ring width (default 32)
	// Seed determines the simulated dropouts; keys, masks, noise and
	// rounding come from crypto/rand.
	Seed uint64
	// Dir receives the kits, the coordinator's and the sites' states
	// (ledgers, keys, checkpoints). Empty: a temporary directory, removed
	// afterwards (not allowed with DP, whose ledgers must remain).
	Dir string
	// AverageFrom makes the final model the average of the published
	// models from that round on (tail averaging, post-processing: no ε);
	// 0 means the second half of the run, −1 keeps the last model.
	AverageFrom int
	// Ranges are the public bounds of the features and, for regression,
	// the label (last), in column order: the statistics round clips every
	// value to them.
	Ranges []fl.Range
	// StatisticsShare is the statistics release's share of the budget's
	// zCDP ρ (0: dp.DefaultStatisticsShare); PublicStatistics runs no
	// statistics round (standardization from Ranges, the learning rate over
	// Rows, a public nominal count of records).
	StatisticsShare  float64
	PublicStatistics bool
	Rows             int
	// Progress, if set, is called after every round.
	Progress func(protocol.RoundResult)
	// Logger receives the coordinator's and sites' logs (nil: none).
	Logger *slog.Logger
}

// dp reports whether the run charges privacy.
func (f *Federation) dp() bool { return f.Epsilon > 0 }

// defaults fills in f's defaults for n sites and checks it.
func (f *Federation) defaults(n int) error {
	if f.Mode == "" {
		f.Mode = protocol.SecAgg
	}
	switch f.Mode {
	case protocol.SecAgg, protocol.HE, protocol.Plain:
	default:
		return fmt.Errorf("local: unknown mode %q (secagg, he, plain)", f.Mode)
	}
	if f.Level == "" {
		f.Level = dp.RecordLevel
	}
	if f.Level != dp.RecordLevel && f.Level != dp.ClientLevel {
		return fmt.Errorf("local: level %q is neither record nor client", f.Level)
	}
	if n < 3 {
		return fmt.Errorf("local: %d sites: a federation needs at least 3 (secure aggregation of two reveals each to the other)", n)
	}
	if f.MinCohort == 0 {
		f.MinCohort = DefaultMinCohort(n)
	}
	if f.MinCohort < 3 || f.MinCohort > n {
		return fmt.Errorf("local: minimum cohort %d for %d sites: want 3 to %d", f.MinCohort, n, n)
	}
	if f.Colluders < 0 || f.Colluders >= f.MinCohort {
		return fmt.Errorf("local: %d colluders leave no honest site in a cohort of %d", f.Colluders, f.MinCohort)
	}
	if f.Rounds < 1 || f.Rounds > 100000 {
		return fmt.Errorf("local: %d rounds: want 1 to 100000", f.Rounds)
	}
	if !(f.Clip > 0) || math.IsInf(f.Clip, 0) || !(f.LearningRate > 0) || math.IsInf(f.LearningRate, 0) {
		return fmt.Errorf("local: clip %v and learning rate %v must be positive", f.Clip, f.LearningRate)
	}
	if !(f.Dropout >= 0 && f.Dropout < 1) {
		return usagef("local: dropout %v outside [0, 1)", f.Dropout)
	}
	if m := MaxDropout(n, f.MinCohort); f.Dropout > m {
		return usagef("local: dropout %v with %d sites and a minimum cohort of %d: most rounds would find fewer than %d sites online; want at most %.2f", f.Dropout, n, f.MinCohort, f.MinCohort, m)
	}
	if f.LocalEpochs == 0 {
		f.LocalEpochs = 1
	}
	if f.BatchSize == 0 {
		f.BatchSize = 16
	}
	if f.LocalEpochs < 1 || f.BatchSize < 1 || f.ProxMu < 0 || math.IsNaN(f.ProxMu) {
		return fmt.Errorf("local: local epochs %d, batch size %d, proximal μ %v", f.LocalEpochs, f.BatchSize, f.ProxMu)
	}
	if f.Hidden == 0 {
		f.Hidden = 16
	}
	if f.Epsilon < 0 || math.IsNaN(f.Epsilon) || math.IsInf(f.Epsilon, 0) {
		return fmt.Errorf("local: ε %v: want ≥ 0 (0 for no DP)", f.Epsilon)
	}
	if f.dp() {
		if f.Mode == protocol.Plain {
			return errors.New("local: DP needs secagg or he: in plain mode the coordinator sees every update before noise")
		}
		if !(f.Delta > 0 && f.Delta < 1) {
			return fmt.Errorf("local: δ %v: want a probability in (0, 1)", f.Delta)
		}
		if f.SiteCap == 0 {
			f.SiteCap = f.Epsilon
		}
		if !(f.SiteCap > 0) || math.IsInf(f.SiteCap, 0) {
			return fmt.Errorf("local: site ε cap %v", f.SiteCap)
		}
		if f.Dir == "" {
			return errors.New("local: a run with DP needs a directory for its ledgers")
		}
	}
	if f.Bits == 0 {
		f.Bits = 32
	}
	if f.PlanRounds == 0 {
		f.PlanRounds = f.Rounds
	}
	if f.PlanRounds < 1 {
		return fmt.Errorf("local: noise planned for %d rounds", f.PlanRounds)
	}
	switch {
	case f.AverageFrom == 0:
		f.AverageFrom = f.Rounds/2 + 1
	case f.AverageFrom < 0:
		f.AverageFrom = 0
	}
	return nil
}

// Federate runs one federation over sites (one data set per hospital),
// whose columns f.Ranges bounds (default: the built-in data set's bounds,
// if the sites' data is one),
// with a coordinator that holds test, through the real Coordinator and
// Sites over in-memory sessions: a statistics round for the federated
// standardization (and mode he's key ceremony), then the training rounds.
// The summary names the coordinator's and the sites' ledgers and keys.
func Federate(ctx context.Context, f Federation, sites []*fl.Dataset, test *fl.Dataset) (*protocol.Summary, error) {
	if err := f.defaults(len(sites)); err != nil {
		return nil, err
	}
	if test == nil {
		return nil, errors.New("local: no test set")
	}
	dim, task, classes := sites[0].Dim(), sites[0].Task, max(test.Classes, 2)
	for i, s := range sites {
		if s.Dim() != dim || s.Task != task {
			return nil, fmt.Errorf("local: site %d holds %d features for a %s task, site 1 %d for a %s task", i+1, s.Dim(), s.Task, dim, task)
		}
		classes = max(classes, s.Classes)
	}
	if f.Model == "" {
		f.Model = DefaultModel(task)
	}
	if (f.Model == "linear") != (task == fl.Regression) {
		return nil, fmt.Errorf("local: a %s model for a %s task", f.Model, task)
	}
	if f.Ranges == nil {
		var err error
		if f.Ranges, err = loadRanges(sites[0].Name, "", sites[0]); err != nil {
			return nil, err
		}
	}
	dir := f.Dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "fl-secure-federation-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cc := protocol.CoordinatorConfig{Mode: f.Mode, Level: f.Level, Rounds: f.Rounds, PlanRounds: f.PlanRounds,
		Delta: f.Delta, Clip: f.Clip, LearningRate: f.LearningRate, Model: f.Model, Features: dim, Classes: classes,
		Hidden: f.Hidden, MinCohort: f.MinCohort, Colluders: f.Colluders, Bits: f.Bits, PhaseTimeout: 10 * time.Second,
		Test: test, AverageFrom: f.AverageFrom, Progress: f.Progress, Logger: f.Logger,
		Ranges: f.Ranges, StatisticsShare: f.StatisticsShare, PublicStatistics: f.PublicStatistics, Rows: f.Rows}
	if f.dp() {
		cc.Epsilon = f.Epsilon
	}
	fed, err := newFederation(dir, len(sites), cc, func(i int) protocol.SiteConfig {
		sc := protocol.SiteConfig{Delta: f.Delta, AllowNoDP: !f.dp(), AllowPlain: f.Mode == protocol.Plain,
			Level: f.Level, MinCohort: f.MinCohort, Colluders: f.Colluders, Data: sites[i-1], Hidden: f.Hidden, Logger: f.Logger,
			LocalTraining: fl.TrainConfig{Epochs: f.LocalEpochs, BatchSize: f.BatchSize, ProxMu: f.ProxMu}}
		if f.Level == dp.ClientLevel {
			sc.LocalTraining.LearningRate = f.LearningRate
		}
		if f.dp() {
			sc.EpsilonCap = f.SiteCap
		}
		return sc
	})
	if err != nil {
		return nil, err
	}
	defer fed.close()
	sched, err := dropouts(len(sites), f.Rounds, f.MinCohort, f.Dropout, f.Seed)
	if err != nil {
		return nil, err
	}
	var schedule func(int) []int
	if f.Dropout > 0 {
		schedule = func(r int) []int { return sched[r-1] }
	}
	sum, err := fed.run(ctx, schedule)
	if err != nil {
		return nil, err
	}
	if f.dp() {
		if err := fed.ledgers(sum); err != nil {
			return nil, err
		}
	}
	return sum, nil
}

// DefaultMinCohort is the minimum cohort of a federation of n sites: a
// majority, at least 3.
func DefaultMinCohort(n int) int { return max(3, n/2+1) }

// MaxDropout is the largest chance p that a site is offline in a round
// (to two decimals) for which a round of n sites still finds at least k
// online with probability at least 1/2, so that the simulated rounds are
// mostly the draws the dropout describes and not redraws (dropouts);
// 0 when even p = 0 cannot (k > n).
func MaxDropout(n, k int) float64 {
	best := 0.0
	for c := 0; c < 100; c++ {
		p := float64(c) / 100
		if atLeast(n, k, 1-p) >= 0.5-1e-9 {
			best = p
		}
	}
	return best
}

// atLeast is P(X ≥ k) for X ~ Binomial(n, q).
func atLeast(n, k int, q float64) float64 {
	switch {
	case k > n:
		return 0
	case q >= 1 || k <= 0:
		return 1
	case q <= 0:
		return 0
	}
	total := 0.0
	for i := k; i <= n; i++ {
		lg, _ := math.Lgamma(float64(n + 1))
		li, _ := math.Lgamma(float64(i + 1))
		lr, _ := math.Lgamma(float64(n - i + 1))
		total += math.Exp(lg - li - lr + float64(i)*math.Log(q) + float64(n-i)*math.Log1p(-q))
	}
	return total
}

// dropouts draws, for each of rounds rounds, the sites online (each
// offline with probability p); a draw that leaves fewer than k online is
// drawn again, as a round waits for a cohort over the network.
func dropouts(n, rounds, k int, p float64, seed uint64) ([][]int, error) {
	rng := mrand.New(mrand.NewPCG(seed, 0xd20))
	out := make([][]int, rounds)
	for r := range out {
		for try := 0; ; try++ {
			if try == 1000 {
				return nil, fmt.Errorf("local: with dropout %v, 1000 draws in a row left fewer than %d of %d sites online", p, k, n)
			}
			var on []int
			for i := 1; i <= n; i++ {
				if rng.Float64() >= p {
					on = append(on, i)
				}
			}
			if len(on) >= k {
				out[r] = on
				break
			}
		}
	}
	return out, nil
}

// Config is a simulation: a data set split among hospitals, the
// federation they run, and whether to add the comparison rows.
type Config struct {
	Data
	Federation
	// Compare adds the comparison rows: centralized training, each
	// hospital alone, and (with DP) the same federation without DP.
	Compare bool
	// RangesFile is a feature-ranges file (fl.ReadRanges); empty: the
	// embedded bounds of a built-in data set. Federation.Ranges, if set,
	// takes precedence.
	RangesFile string
	// Started, if set, is called with the federation's settings, their
	// defaults filled in, before it starts.
	Started func(Federation)
}

// Row is one line of the closing table.
type Row struct {
	Setting string     `json:"setting"`
	Test    fl.Metrics `json:"test"`
	Epsilon *float64   `json:"epsilon"` // nil: no privacy guarantee
	Private bool       `json:"private"`
}

// Result is a simulation's outcome.
type Result struct {
	Data     string  `json:"data"`
	Task     fl.Task `json:"-"`
	Rows     int     `json:"rows"`
	TestRows int     `json:"test_rows"`
	SiteRows []int   `json:"site_rows"`
	Table    []Row   `json:"table"`
	// Federated is the federation's summary: its rounds, ledgers and keys.
	Federated *protocol.Summary `json:"federated"`
	// Audit holds the fl-secure budget audit commands for every ledger.
	Audit []string `json:"audit_commands,omitempty"`
	// Skipped lists the attempts at training rounds that opened nothing.
	Skipped []Skipped `json:"skipped_rounds,omitempty"`
	// Warnings says what was changed in the configuration as given.
	Warnings []string `json:"warnings,omitempty"`
}

// Skipped is an attempt at a training round that opened no sum: below the
// minimum cohort, failed, or refused by the budget. Only an attempt whose
// charge was already on the ledgers spent ε (conservatively, as if
// opened); the others spent none.
type Skipped struct {
	Round        int    `json:"round"`
	Status       string `json:"status"`
	Participants int    `json:"participants"`
	// Charged: the attempt's charge stands in the coordinator's ledger,
	// marked not opened, and its ε counts.
	Charged bool `json:"charged"`
	// EpsilonRound is the ε of one training round alone (the ledger's
	// epsilon_round): spent if Charged, not spent otherwise; 0 if the
	// ledger records no training round.
	EpsilonRound float64 `json:"epsilon_round"`
}

// skipped lists the attempts of sum's training rounds that opened
// nothing, with what the coordinator's ledger (if any) says they cost.
func skipped(sum *protocol.Summary) []Skipped {
	var out []Skipped
	for _, r := range sum.Rounds {
		if r.Status != "ok" {
			out = append(out, Skipped{Round: r.Round, Status: r.Status, Participants: r.Participants})
		}
	}
	if len(out) == 0 || sum.Ledger == "" {
		return out
	}
	entries, _ := dp.ReadLedger(sum.Ledger)
	unopened := map[int]int{} // round → charges marked not opened
	round := map[int64]int{}  // charge seq → round
	perRound := 0.0
	for _, e := range entries {
		switch {
		case e.Kind == "charge" && e.Round >= 1:
			round[e.Seq] = e.Round
			perRound = e.EpsilonRound
		case e.Kind == "outcome" && e.Outcome == dp.Unopened:
			if r, ok := round[e.Of]; ok {
				unopened[r]++
			}
		}
	}
	for i := range out {
		out[i].EpsilonRound = perRound
		if unopened[out[i].Round] > 0 {
			unopened[out[i].Round]--
			out[i].Charged = true
		}
	}
	return out
}

// DefaultRounds is simulate's number of training rounds: 60 for
// classification at record level, 30 otherwise. Each round's noise grows
// with the square root of the rounds the budget is split over, so more
// rounds pay off only while the gradient still carries signal: the
// logistic loss on nearly separable data keeps learning past 30 rounds,
// and averaging the last 30 of 60 models (AverageFrom; Polyak and
// Juditsky 1992) averages the extra noise out (wdbc at ε = 3: mean
// accuracy over seeds 0–4 0.966 at 30 rounds, 0.9675 at 60), while the
// squared loss of a linear model has converged by 30 and more rounds only
// add noise (diabetes: RMSE about 0.4 worse at 60).
func DefaultRounds(level dp.Level, task fl.Task) int {
	if level == dp.RecordLevel && task != fl.Regression {
		return 60
	}
	return 30
}

// DefaultClip is simulate's clipping norm: 0.5 per record for
// classification at record level, 1 otherwise (per record for regression,
// per update at client level). The clipped gradients and the noise both
// scale with the clip, so while every record is clipped only the step
// lr·clip matters; once the model fits most records, a smaller clip
// still clips those it fits worst and weighs the rest more. The gain is
// slight (wdbc at ε = 3, 60 rounds, a step of 3: mean accuracy over seeds
// 0–4 0.9664 at clip 1, 0.9676 at 0.5, over 600 runs of the same training
// with Gaussian noise).
func DefaultClip(level dp.Level, task fl.Task) float64 {
	if level == dp.RecordLevel && task != fl.Regression {
		return 0.5
	}
	return 1
}

// DefaultLearningRate is simulate's learning rate: 0.1 for local SGD at
// client level; at record level the server step on the mean clipped
// gradient, 1 for regression and 6 for classification (a step lr·clip of
// 3 at DefaultClip). The noised statistics standardize a feature whose
// variance the noise cannot resolve with a floor, that is to a spread
// below 1 (fl.EstimateStats): the logistic loss, whose curvature is at
// most ‖x‖²/4, then takes a larger step safely and needs it to learn
// (wdbc, 30 rounds at clip 1: mean accuracy over 5 seeds 0.957 at a step
// of 1, 0.967 at 5), while the squared loss of a linear model, whose
// curvature is ‖x‖², does not (diabetes: RMSE within 1 of centralized
// training at 1, up to 14 worse at 5).
func DefaultLearningRate(level dp.Level, task fl.Task) float64 {
	switch {
	case level == dp.ClientLevel:
		return 0.1
	case task == fl.Regression:
		return 1
	}
	return 6
}

// Simulate loads and splits cfg.Data, runs the federation through the
// real coordinator and sites over in-memory sessions (kits and states
// under cfg.Dir) and, with cfg.Compare, the comparison rows. Defaults: the
// model by task, DefaultRounds, DefaultClip, DefaultLearningRate.
func Simulate(ctx context.Context, cfg Config) (*Result, error) {
	split, err := Load(cfg.Data)
	if err != nil {
		return nil, err
	}
	task := split.All.Task
	fc := cfg.Federation
	if fc.Ranges == nil {
		if fc.Ranges, err = loadRanges(cfg.Data.Name, cfg.RangesFile, split.All); err != nil {
			return nil, err
		}
	}
	if fc.Model == "" {
		fc.Model = DefaultModel(task)
	}
	level := fc.Level
	if level == "" {
		level = dp.RecordLevel
	}
	if fc.Rounds == 0 {
		fc.Rounds = DefaultRounds(level, task)
	}
	if fc.Clip == 0 {
		fc.Clip = DefaultClip(level, task)
	}
	if fc.LearningRate == 0 {
		fc.LearningRate = DefaultLearningRate(level, task)
	}
	if cfg.Started != nil {
		cfg.Started(fc)
	}
	out := &Result{Data: split.All.Name, Task: task, Rows: split.All.Rows(), TestRows: split.Test.Rows()}
	for _, s := range split.Sites {
		out.SiteRows = append(out.SiteRows, s.Rows())
	}
	if w := dropoutWarning(fc, len(split.Sites)); w != "" {
		out.Warnings = append(out.Warnings, w)
	}
	if fc.Epsilon > 0 && fc.Delta*float64(split.Train.Rows()) >= 1 {
		out.Warnings = append(out.Warnings, fmt.Sprintf("δ = %g is not below 1/records (%d training records): a mechanism that publishes one record outright meets it; use a δ below %.1g", fc.Delta, split.Train.Rows(), 1/float64(split.Train.Rows())))
	}
	if fc.Mode == protocol.Plain && fc.Epsilon > 0 {
		out.Warnings = append(out.Warnings, "mode plain is NOT PRIVATE: the coordinator sees every update; training without DP")
		fc.Epsilon = 0
	}
	// The comparison rows are computed beside the federation: the
	// reference federation without DP mostly waits on its own files and
	// sessions.
	var (
		wg     sync.WaitGroup
		rows   []Row
		cmpErr error
	)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Compare {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows, cmpErr = compare(cctx, fc, split, cfg.Data.Seed)
		}()
	}
	fed, err := Federate(ctx, fc, split.Sites, split.Test)
	if err != nil {
		cancel()
	}
	wg.Wait()
	if err != nil {
		return nil, err
	}
	if cmpErr != nil {
		return nil, cmpErr
	}
	out.Federated, out.Table, out.Skipped = fed, rows, skipped(fed)
	name := fmt.Sprintf("federated, %s", fed.Mode)
	switch {
	case fed.DP:
		name += fmt.Sprintf(" + DP (%s level)", fed.Level)
	case fed.Mode == protocol.Plain:
		name += " (NOT PRIVATE)"
	default:
		name += ", no DP"
	}
	var eps *float64
	if fed.DP {
		eps = &fed.Epsilon
		var witnesses []string
		for _, w := range fed.Witnesses {
			witnesses = append(witnesses, w.Arg())
		}
		out.Audit = append(out.Audit, AuditCommand(fed.Ledger, AuditKey{Roster: fed.Roster, Key: fed.LedgerKey}, fed.SiteCheckpoints, witnesses))
		for i, l := range fed.SiteLedgers {
			out.Audit = append(out.Audit, AuditCommand(l, AuditKey{Roster: fed.Roster, Site: i + 1, Key: fed.SiteKeys[i]}, nil, nil))
		}
	}
	out.Table = append(out.Table, Row{Setting: name, Test: fed.Test, Epsilon: eps, Private: fed.DP})
	return out, nil
}

// dropoutWarning says how far the simulated dropouts of fc over n sites
// are from fc.Dropout: a round waits for its minimum cohort, so a draw
// that leaves too few sites online is drawn again, and the sites are
// offline less often than asked.
func dropoutWarning(fc Federation, n int) string {
	if fc.Dropout == 0 || fc.Rounds < 1 {
		return ""
	}
	k := fc.MinCohort
	if k == 0 {
		k = DefaultMinCohort(n)
	}
	sched, err := dropouts(n, fc.Rounds, k, fc.Dropout, fc.Seed)
	if err != nil {
		return ""
	}
	online := 0
	for _, on := range sched {
		online += len(on)
	}
	rate := 1 - float64(online)/float64(n*fc.Rounds)
	if fc.Dropout-rate <= 0.05 {
		return ""
	}
	return fmt.Sprintf("dropout %g: a round waits until at least %d of %d sites are online, so the sites were offline in %.0f%% of their rounds, not %.0f%%", fc.Dropout, k, n, 100*rate, 100*fc.Dropout)
}

// loadRanges returns the public ranges of data's columns: from file, or
// the embedded ones of a built-in data set.
func loadRanges(name, file string, data *fl.Dataset) ([]fl.Range, error) {
	var rs *fl.Ranges
	var err error
	switch _, builtin := fl.Builtin[name]; {
	case file != "":
		rs, err = fl.LoadRanges(file)
	case builtin:
		rs, err = fl.BuiltinRanges(name)
	default:
		return nil, usagef("local: %s is not a built-in data set: give the public range of every feature (and of a regression label) in a feature-ranges file", name)
	}
	if err != nil {
		return nil, err
	}
	return rs.RangesFor(data)
}

// compare computes the comparison rows of federation fc over split:
// centralized training, each hospital alone, and, with DP, the same
// federation without DP.
func compare(ctx context.Context, fc Federation, split *Split, seed uint64) ([]Row, error) {
	var rows []Row
	c, err := Baseline(fc.Model, fc.Hidden, split.Train, split.Test, seed)
	if err != nil {
		return nil, err
	}
	rows = append(rows, Row{Setting: "centralized (no privacy)", Test: c})
	for i, s := range split.Sites {
		m, err := Baseline(fc.Model, fc.Hidden, s, split.Test, seed)
		if err != nil {
			return nil, err
		}
		rows = append(rows, Row{Setting: fmt.Sprintf("hospital %d alone (%d rows)", i+1, s.Rows()), Test: m})
	}
	if fc.Epsilon > 0 {
		nd := fc
		nd.Epsilon, nd.Dir, nd.Progress = 0, "", nil
		if nd.Mode == protocol.HE {
			nd.Mode = protocol.SecAgg // the no-DP reference needs no second key ceremony
		}
		s, err := Federate(ctx, nd, split.Sites, split.Test)
		if err != nil {
			return nil, fmt.Errorf("local: the federation without DP: %w", err)
		}
		rows = append(rows, Row{Setting: fmt.Sprintf("federated, %s, no DP", nd.Mode), Test: s.Test})
	}
	return rows, nil
}

// An AuditKey says where an audit takes a ledger's public key from: the
// roster file Roster, which names the coordinator's ledger key (Site 0)
// and every site's (Site N), or, without a roster, Key itself. The roster
// comes from provisioning; nothing beside the ledger says which key is
// its owner's.
type AuditKey struct {
	Roster string
	Site   int
	Key    string
}

// AuditCommand is the fl-secure command that verifies a ledger under the
// key of key: with checkpoints (files its witnesses hold) and witnesses
// (their NAME=KEY), also that the ledger extends every checkpoint and who
// cosigned it.
func AuditCommand(ledger string, key AuditKey, checkpoints, witnesses []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "fl-secure budget audit --ledger %s", ledger)
	switch {
	case key.Roster != "" && key.Site > 0:
		fmt.Fprintf(&b, " --roster %s --site %d", key.Roster, key.Site)
	case key.Roster != "":
		fmt.Fprintf(&b, " --roster %s --coordinator", key.Roster)
	default:
		fmt.Fprintf(&b, " --key %s", key.Key)
	}
	for _, c := range checkpoints {
		fmt.Fprintf(&b, " --checkpoint %s", c)
	}
	for _, w := range witnesses {
		fmt.Fprintf(&b, " --witness %s", w)
	}
	return b.String()
}

// NewRunDir creates and returns a fresh directory for one run under
// parent, named by t (UTC, to the second) and, when runs start within the
// same second, a counter: fl-secure-runs/20261202-150405, then
// fl-secure-runs/20261202-150405-2. A run never writes into another's.
func NewRunDir(parent string, t time.Time) (string, error) {
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", err
	}
	base := filepath.Join(parent, t.UTC().Format("20060102-150405"))
	for k := 1; k <= 1000; k++ {
		dir := base
		if k > 1 {
			dir = fmt.Sprintf("%s-%d", base, k)
		}
		err := os.Mkdir(dir, 0o700)
		if err == nil {
			return dir, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("local: %s: a thousand runs started in the same second", base)
}
