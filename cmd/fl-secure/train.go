package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol"
	"github.com/fl-secure/fl-secure/protocol/local"
)

const simulateUsage = `Usage: fl-secure simulate [flags]

Federated training among in-process hospitals on embedded clinical data (or
your own CSV), with secure aggregation and distributed differential privacy
in every round. The coordinator and every hospital's client are the ones
"fl-secure coordinator" and "fl-secure client" run, joined in one process by
in-memory sessions instead of gRPC; each hospital keeps its own ledger and
budget (--site-cap), and a hospital offline in a round (--dropout) does not
join it. Kits, states, ledgers and checkpoints go under --dir. By default: the breast cancer data (wdbc) over 5 hospitals
with Dirichlet(0.5) label skew, a 25% stratified test set, logistic
regression, secagg, and record-level DP at ε = 3, δ = 1e-5 for the whole run.

The closing table compares centralized training (no privacy), each hospital
alone, federated training without DP, and federated training with DP; it
ends with the ledgers' paths and keys for "fl-secure budget audit".

Everything released is inside ε: before training, the hospitals' record
count and each feature's sum and sum of squares, every value clipped to
public bounds (--feature-ranges; built in for wdbc and diabetes), are
released once with the same distributed noise as a training round, taking
--statistics-share of the budget (of its zCDP ρ; 0: no release, public
standardization from the ranges file and the learning rate over --rows).

Record level trains by full-batch DP-SGD: every round is one step over the
union of the hospitals' data (each sends the sum of its records' clipped
gradients; only the sum, noised by all, is opened). Client level runs local
SGD and clips each hospital's whole update. Mode plain is NOT PRIVATE.

Examples:
  fl-secure simulate
  fl-secure simulate --data diabetes --epsilon 1
  fl-secure simulate --mode he --sites 7 --dropout 0.1
  fl-secure simulate --data my.csv --label outcome --feature-ranges ranges.csv --model mlp
  fl-secure simulate --statistics-share 0 --rows 427
`

func simulateFL(args []string, stdout, stderr io.Writer) int {
	var cfg local.Config
	d, f := &cfg.Data, &cfg.Federation
	var mode, level, dir string
	var asJSON, noCompare bool
	var share float64
	flags, parse := newFlags("simulate", simulateUsage, stderr)
	flags.StringVar(&d.Name, "data", "wdbc", "data set: wdbc, diabetes, or a CSV file path")
	flags.StringVar(&d.Label, "label", "", "label column of a CSV file")
	flags.StringVar(&f.Model, "model", "", "logistic, softmax, linear or mlp (default: by task)")
	flags.IntVar(&f.Hidden, "hidden", 16, "hidden units of the mlp")
	flags.IntVar(&d.Sites, "sites", 5, "number of hospitals, 3 to 1000; the file's rows less the test set are dealt among them, at least 10 each")
	flags.Float64Var(&d.Alpha, "alpha", 0.5, "Dirichlet label-skew parameter α (0: IID)")
	flags.Float64Var(&d.TestFraction, "test", 0.25, "stratified test fraction")
	flags.IntVar(&f.Rounds, "rounds", 0, "training rounds (default: 60 for classification at record level, 30 otherwise)")
	flags.StringVar(&mode, "mode", "secagg", "secagg, he, or plain (NOT PRIVATE)")
	flags.Float64Var(&f.Epsilon, "epsilon", 3, "ε for the whole run, 0.01 to 100 (0: no DP)")
	flags.Float64Var(&f.Delta, "delta", 1e-5, "δ, a probability in (0, 1); keep it below 1/records")
	flags.Float64Var(&f.SiteCap, "site-cap", 0, "each hospital's own ε cap (0: --epsilon)")
	flags.StringVar(&level, "level", "record", "record (full-batch DP-SGD) or client (clipped local updates)")
	flags.Float64Var(&f.Clip, "clip", 0, "L2 clipping norm: per record (record level) or per update (client level) (default: 0.5 for classification at record level, 1 otherwise)")
	flags.Float64Var(&f.LearningRate, "lr", 0, "learning rate (default: at record level 6 for classification, 1 for regression; 0.1 at client level)")
	flags.IntVar(&f.LocalEpochs, "local-epochs", 1, "local epochs per round (client level)")
	flags.IntVar(&f.BatchSize, "batch", 16, "local batch size (client level)")
	flags.Float64Var(&f.ProxMu, "prox", 0, "FedProx μ (client level)")
	flags.Float64Var(&f.Dropout, "dropout", 0, "chance that a hospital is offline in a round, in [0, 1); refused when most rounds would find fewer than the minimum cohort online (with 5 hospitals and a cohort of 3: at most 0.5)")
	flags.IntVar(&f.Colluders, "colluders", 0, "hospitals assumed to collude with the coordinator")
	flags.IntVar(&f.MinCohort, "min-cohort", 0, "never open a sum of fewer sites (default: a majority, at least 3)")
	flags.Uint64Var(&d.Seed, "seed", 0, "seed of the data split and simulated dropouts (keys, masks and noise always use crypto/rand)")
	flags.StringVar(&dir, "dir", "", "directory for kits, ledgers, keys and checkpoints (default: fl-secure-runs/<time>)")
	flags.IntVar(&f.AverageFrom, "average-from", 0, "final model: average of the models from this round on (0: second half; -1: last model)")
	flags.StringVar(&cfg.RangesFile, "feature-ranges", "", "CSV of public bounds name,lo,hi[,mean,scale] per feature and regression label (default: the built-in data set's)")
	flags.Float64Var(&share, "statistics-share", dp.DefaultStatisticsShare, "share of the budget (of its zCDP ρ) for the statistics release; 0: no statistics round (public standardization, --rows)")
	flags.IntVar(&f.Rows, "rows", 0, "public nominal count of records, the learning rate's denominator with --statistics-share 0 (record level)")
	flags.BoolVar(&asJSON, "json", false, "print the whole summary as JSON")
	flags.BoolVar(&noCompare, "no-compare", false, "skip the comparison rows")
	if help, err := parse(args); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure simulate -h"`)
		}
		return 0
	}
	f.Mode, f.Level, cfg.Compare, f.Seed = protocol.Mode(mode), dp.Level(level), !noCompare, d.Seed
	switch f.Model {
	case "linear":
		d.Task = fl.Regression
	case "softmax":
		d.Task = fl.Multiclass
	}
	if err := checkSimulate(&cfg, mode, level, share); err != nil {
		return fail(stderr, err, "")
	}
	f.StatisticsShare, f.PublicStatistics = share, share == 0
	if dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "kits")); err == nil {
			return fail(stderr, usagef("--dir %s holds a run already: a run writes its kits, keys and ledgers into a directory of its own and never over another's", dir),
				"give a new directory, or leave --dir out for a fresh one under fl-secure-runs/")
		}
	}
	made := false
	if dir == "" {
		var err error
		if dir, err = local.NewRunDir("fl-secure-runs", time.Now()); err != nil {
			return fail(stderr, err, "")
		}
		made = true
	}
	res := &local.Result{}
	f.Dir = dir
	if made {
		// A run that fails before writing anything leaves no empty
		// directory behind; one that wrote kits or ledgers keeps them.
		defer func() {
			if len(res.Table) == 0 {
				os.Remove(dir)
			}
		}()
	}
	if mode == "he" {
		fmt.Fprintln(stderr, heWarning)
	}
	tty := isTerminal(stderr)
	rounds := f.Rounds
	cfg.Started = func(fc local.Federation) { rounds = fc.Rounds }
	f.Progress = func(r protocol.RoundResult) {
		if !tty {
			return
		}
		done := min(r.Round*30/max(rounds, 1), 30)
		fmt.Fprintf(stderr, "\rround %3d/%d [%s%s] %s ε %.3f", r.Round, rounds, strings.Repeat("#", done), strings.Repeat(" ", 30-done), metricText(r.Test, r.Test.RMSE > 0), r.Epsilon)
	}
	ctx, stop := signalContext()
	defer stop()
	r, err := local.Simulate(ctx, cfg)
	if tty {
		fmt.Fprintln(stderr)
	}
	if err != nil {
		if errors.Is(err, local.ErrUsage) {
			err = usageError(err.Error())
		}
		return fail(stderr, interrupted(ctx, err), dataHint(cfg, err))
	}
	res = r
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "fl-secure: warning: %s\n", w)
	}
	if asJSON {
		return printJSON(stdout, stderr, res)
	}
	printSimulation(stdout, res)
	return 0
}

func metricText(m fl.Metrics, regression bool) string {
	if regression {
		return fmt.Sprintf("RMSE %.2f R² %.3f", m.RMSE, m.R2)
	}
	return fmt.Sprintf("acc %.3f AUC %.3f", m.Accuracy, m.AUC)
}

func printSimulation(w io.Writer, s *local.Result) {
	fed := s.Federated
	train := 0
	for _, n := range s.SiteRows {
		train += n
	}
	fmt.Fprintf(w, "data %s: %d rows, %d held out for testing, %d dealt among %d hospitals: %v\n", s.Data, s.Rows, s.TestRows, train, len(s.SiteRows), s.SiteRows)
	regression := s.Task == fl.Regression
	const row = "%-42s %9s %7s %10s\n"
	if regression {
		fmt.Fprintf(w, row, "setting", "RMSE", "R²", "ε")
	} else {
		fmt.Fprintf(w, row, "setting", "accuracy", "AUC", "ε")
	}
	noAUC := ""
	for _, r := range s.Table {
		e := "∞"
		if r.Epsilon != nil {
			e = fmt.Sprintf("%.3f", *r.Epsilon)
		}
		if regression {
			fmt.Fprintf(w, row, r.Setting, fmt.Sprintf("%.2f", r.Test.RMSE), fmt.Sprintf("%.3f", r.Test.R2), e)
			continue
		}
		auc := fmt.Sprintf("%.3f", r.Test.AUC)
		if r.Test.NoAUC != "" {
			auc, noAUC = "n/a", r.Test.NoAUC
		}
		fmt.Fprintf(w, row, r.Setting, fmt.Sprintf("%.3f", r.Test.Accuracy), auc, e)
	}
	notSpent := false
	for _, k := range s.Skipped {
		what := map[string]string{"below-cohort": "below the minimum cohort", "failed": "failed", "budget-refused": "refused by the budget"}[k.Status]
		if what == "" {
			what = k.Status
		}
		e := "-"
		switch {
		case k.Charged:
			e = fmt.Sprintf("%.3f", k.EpsilonRound)
			what += ", charged"
		case k.EpsilonRound > 0:
			e, notSpent = fmt.Sprintf("(%.3f)", k.EpsilonRound), true
		}
		fmt.Fprintf(w, row, fmt.Sprintf("  round %d not opened: %s", k.Round, what), "-", "-", e)
	}
	if notSpent {
		fmt.Fprintln(w, "(ε) in parentheses: the ε of a round that opened nothing and was not charged, so not spent")
	}
	if noAUC != "" {
		fmt.Fprintf(w, "AUC n/a: %s\n", noAUC)
	}
	if fed.DP {
		relation := dp.RecordRelationText
		if fed.Level == dp.ClientLevel {
			relation = dp.ClientRelationText
		}
		fmt.Fprintf(w, "privacy: (ε = %.4g, δ = %g) at %s level for everything released (%s), RDP accountant\n", fed.Epsilon, fed.Delta, fed.Level, relation)
		if fed.StatisticsShare > 0 {
			fmt.Fprintf(w, "  statistics release: ε = %.4g (%.3g%% of the budget's zCDP ρ)\n", fed.StatisticsEpsilon, 100*fed.StatisticsShare)
		} else {
			fmt.Fprintf(w, "  statistics release: none (public feature ranges and count)\n")
		}
		fmt.Fprintf(w, "  training: ε = %.4g; effective noise multiplier %.3f per round, each hospital's share σ = %.4g\n",
			fed.TrainingEpsilon, fed.NoiseMultiplier, fed.SiteSigma)
		fmt.Fprintf(w, "  total: ε = %.4g\n", fed.Epsilon)
		if fed.Level == dp.ClientLevel {
			fmt.Fprintf(w, "  per patient: ε = %.4g (%s)\n", fed.PatientEpsilon, dp.PatientRelationText)
		}
		fmt.Fprintf(w, "statistics: %s\n", fed.Statistics)
		fmt.Fprintf(w, "coordinator ledger: %s\ncoordinator key:    %s\n", fed.Ledger, fed.LedgerKey)
		for i, l := range fed.SiteLedgers {
			fmt.Fprintf(w, "hospital %d ledger: %s (key %s)\n", i+1, l, fed.SiteKeys[i])
		}
		if fed.Roster != "" {
			fmt.Fprintf(w, "roster: %s (it names every ledger's key: audit with --roster and --coordinator or --site N)\n", fed.Roster)
		}
		fmt.Fprintf(w, "audit: %s\n", s.Audit[0])
		if line := fed.WitnessLine(); line != "" {
			fmt.Fprintf(w, "witnesses: the coordinator's ledger checkpoint %s\n", line)
		}
	} else if fed.Mode == protocol.Plain {
		fmt.Fprintln(w, "privacy: NONE (plain mode: the coordinator saw every hospital's update)")
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := unwrap(w).(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// heWarning states what mode he does not yet protect (SECURITY.md, "Threshold
// CKKS").
const heWarning = "fl-secure: warning: mode he protects updates against a malicious coordinator that colludes with no hospital, and the decryption key against malicious hospitals while the coordinator is honest, but not one hospital's update from another hospital that decrypts, nor anything from a coordinator colluding with a hospital; wherever a hospital may be malicious, use secagg (SECURITY.md, \"Threshold CKKS\")"

// minEpsilon and maxEpsilon bound the ε simulate accepts. Far below the
// top the noise already protects little (dp plan warns above 10); above it
// the noise multiplier the accountant would need falls below the range
// where any accountant here is meaningful. Below the bottom each
// hospital's noise share exceeds what the discrete Gaussian sampler draws
// (variance 2^60) and the noise would swamp any model.
const (
	minEpsilon = 0.01
	maxEpsilon = 100
)

// checkSimulate checks simulate's flags, each against the range its help
// states, before anything is written; its errors name the flag.
func checkSimulate(cfg *local.Config, mode, level string, share float64) error {
	d, f := &cfg.Data, &cfg.Federation
	if _, ok := fl.Builtin[d.Name]; !ok {
		st, err := os.Stat(d.Name)
		switch {
		case err != nil && errors.Is(err, fs.ErrNotExist):
			msg := fmt.Sprintf("--data %q: no such file, and no built-in data set of that name (wdbc, diabetes)", d.Name)
			if near := nearestBuiltin(d.Name); near != "" {
				msg += fmt.Sprintf(`: did you mean %q?`, near)
			}
			return usageError(msg)
		case err != nil:
			return usagef("--data %q: %v", d.Name, err)
		case st.IsDir():
			return usagef("--data %q is a directory: want a CSV file or a built-in data set (wdbc, diabetes)", d.Name)
		case d.Label == "":
			return usagef("--data %q is a CSV file: name its label column with --label", d.Name)
		}
	}
	switch protocol.Mode(mode) {
	case protocol.SecAgg, protocol.HE, protocol.Plain:
	default:
		return usagef("--mode %q: want secagg, he or plain", mode)
	}
	switch dp.Level(level) {
	case dp.RecordLevel, dp.ClientLevel:
	default:
		return usagef("--level %q: want record or client", level)
	}
	switch {
	case d.Sites < 3 || d.Sites > 1000:
		return usagef("--sites %d: want 3 to 1000 hospitals (secure aggregation of two reveals each to the other)", d.Sites)
	case !(d.TestFraction > 0 && d.TestFraction < 1):
		return usagef("--test %v: want a fraction in (0, 1)", d.TestFraction)
	case !(d.Alpha >= 0) || math.IsInf(d.Alpha, 0):
		return usagef("--alpha %v: want ≥ 0 (0 for an IID split)", d.Alpha)
	case math.IsNaN(f.Epsilon) || f.Epsilon < 0:
		return usagef("--epsilon %v: want ≥ 0 (0 for no DP)", f.Epsilon)
	case f.Epsilon > 0 && f.Epsilon < minEpsilon:
		return usagef("--epsilon %g: want at least %g: below it the noise swamps any model; for training without DP give --epsilon 0", f.Epsilon, minEpsilon)
	case f.Epsilon > maxEpsilon:
		return usagef("--epsilon %g: want at most %d: at a larger ε the noise protects nothing and no accountant here is meaningful; for training without DP give --epsilon 0", f.Epsilon, maxEpsilon)
	case f.Epsilon > 0 && !(f.Delta > 0 && f.Delta < 1):
		return usagef("--delta %v: want a probability in (0, 1), below 1/records (default 1e-5)", f.Delta)
	case math.IsNaN(f.SiteCap) || f.SiteCap < 0 || f.SiteCap > maxEpsilon:
		return usagef("--site-cap %v: want 0 (the --epsilon) to %d", f.SiteCap, maxEpsilon)
	case !(share >= 0 && share < 1):
		return usagef("--statistics-share %v: want a fraction in [0, 1)", share)
	case share == 0 && f.Rows < 1 && level != string(dp.ClientLevel):
		return usagef("--statistics-share 0 runs no statistics round: give the public nominal count of records with --rows N")
	case f.Rows < 0:
		return usagef("--rows %d: want a count of records", f.Rows)
	case !(f.Dropout >= 0 && f.Dropout < 1):
		return usagef("--dropout %v: want a probability in [0, 1)", f.Dropout)
	}
	k := f.MinCohort
	if k == 0 {
		k = local.DefaultMinCohort(d.Sites)
	}
	if k < 3 || k > d.Sites {
		return usagef("--min-cohort %d: want 3 to --sites (%d)", k, d.Sites)
	}
	if m := local.MaxDropout(d.Sites, k); f.Dropout > m {
		return usagef("--dropout %g: with %d hospitals and a minimum cohort of %d, most rounds would find too few hospitals online to open a sum; want at most %.2f here, or more --sites, or a smaller --min-cohort", f.Dropout, d.Sites, k, m)
	}
	return nil
}

// nearestBuiltin returns the built-in data set whose name is within two
// edits of name, or "".
func nearestBuiltin(name string) string {
	for b := range fl.Builtin {
		if editDistance(strings.ToLower(name), b) <= 2 {
			return b
		}
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// dataHint says what to change when the data did not fit the task.
func dataHint(cfg local.Config, err error) string {
	switch {
	case errors.Is(err, fl.ErrNotBinary):
		return "the label has more than two classes: use --model softmax (or --model linear for a numeric label)"
	case errors.Is(err, fl.ErrNotClass) && cfg.Federation.Model != "linear":
		return "the label is not a class index: for a numeric label use --model linear"
	}
	return ""
}
