package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
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

Flags:
`

func simulateFL(args []string, stdout, stderr io.Writer) int {
	var cfg local.Config
	d, f := &cfg.Data, &cfg.Federation
	var mode, level, dir string
	var asJSON, noCompare bool
	var share float64
	fs, parse := newFlags("simulate", simulateUsage, stderr)
	fs.StringVar(&d.Name, "data", "wdbc", "data set: wdbc, diabetes, or a CSV file path")
	fs.StringVar(&d.Label, "label", "", "label column of a CSV file")
	fs.StringVar(&f.Model, "model", "", "logistic, softmax, linear or mlp (default: by task)")
	fs.IntVar(&f.Hidden, "hidden", 16, "hidden units of the mlp")
	fs.IntVar(&d.Sites, "sites", 5, "number of hospitals")
	fs.Float64Var(&d.Alpha, "alpha", 0.5, "Dirichlet label-skew parameter α (0: IID)")
	fs.Float64Var(&d.TestFraction, "test", 0.25, "stratified test fraction")
	fs.IntVar(&f.Rounds, "rounds", 0, "training rounds (default: 60 for classification at record level, 30 otherwise)")
	fs.StringVar(&mode, "mode", "secagg", "secagg, he, or plain (NOT PRIVATE)")
	fs.Float64Var(&f.Epsilon, "epsilon", 3, "ε for the whole run (0: no DP)")
	fs.Float64Var(&f.Delta, "delta", 1e-5, "δ")
	fs.Float64Var(&f.SiteCap, "site-cap", 0, "each hospital's own ε cap (0: --epsilon)")
	fs.StringVar(&level, "level", "record", "record (full-batch DP-SGD) or client (clipped local updates)")
	fs.Float64Var(&f.Clip, "clip", 0, "L2 clipping norm: per record (record level) or per update (client level) (default: 0.5 for classification at record level, 1 otherwise)")
	fs.Float64Var(&f.LearningRate, "lr", 0, "learning rate (default: at record level 6 for classification, 1 for regression; 0.1 at client level)")
	fs.IntVar(&f.LocalEpochs, "local-epochs", 1, "local epochs per round (client level)")
	fs.IntVar(&f.BatchSize, "batch", 16, "local batch size (client level)")
	fs.Float64Var(&f.ProxMu, "prox", 0, "FedProx μ (client level)")
	fs.Float64Var(&f.Dropout, "dropout", 0, "chance that a hospital is offline in a round")
	fs.IntVar(&f.Colluders, "colluders", 0, "hospitals assumed to collude with the coordinator")
	fs.IntVar(&f.MinCohort, "min-cohort", 0, "never open a sum of fewer sites (default: a majority, at least 3)")
	fs.Uint64Var(&d.Seed, "seed", 0, "seed of the data split and simulated dropouts (keys, masks and noise always use crypto/rand)")
	fs.StringVar(&dir, "dir", "", "directory for kits, ledgers, keys and checkpoints (default: fl-secure-runs/<time>)")
	fs.IntVar(&f.AverageFrom, "average-from", 0, "final model: average of the models from this round on (0: second half; -1: last model)")
	fs.StringVar(&cfg.RangesFile, "feature-ranges", "", "CSV of public bounds name,lo,hi[,mean,scale] per feature and regression label (default: the built-in data set's)")
	fs.Float64Var(&share, "statistics-share", dp.DefaultStatisticsShare, "share of the budget (of its zCDP ρ) for the statistics release; 0: no statistics round (public standardization, --rows)")
	fs.IntVar(&f.Rows, "rows", 0, "public nominal count of records, the learning rate's denominator with --statistics-share 0 (record level)")
	fs.BoolVar(&asJSON, "json", false, "print the whole summary as JSON")
	fs.BoolVar(&noCompare, "no-compare", false, "skip the comparison rows")
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
	if _, ok := fl.Builtin[d.Name]; !ok && d.Label == "" {
		return fail(stderr, usagef("--data %q is a file: name its label column with --label", d.Name), "")
	}
	if d.Sites < 1 || d.Sites > 1000 {
		return fail(stderr, usagef("--sites %d: want 1 to 1000", d.Sites), "")
	}
	if f.Epsilon < 0 || math.IsNaN(f.Epsilon) {
		return fail(stderr, usagef("--epsilon %v: want ≥ 0 (0 for no DP)", f.Epsilon), "")
	}
	switch {
	case !(share >= 0 && share < 1):
		return fail(stderr, usagef("--statistics-share %v: want a fraction in [0, 1)", share), "")
	case share == 0 && f.Rows < 1 && level != string(dp.ClientLevel):
		return fail(stderr, usagef("--statistics-share 0 runs no statistics round: give the public nominal count of records with --rows N"), "")
	case f.Rows < 0:
		return fail(stderr, usagef("--rows %d: want a count of records", f.Rows), "")
	}
	f.StatisticsShare, f.PublicStatistics = share, share == 0
	if dir == "" {
		var err error
		if dir, err = local.NewRunDir("fl-secure-runs", time.Now()); err != nil {
			return fail(stderr, err, "")
		}
	}
	f.Dir = dir
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
	res, err := local.Simulate(context.Background(), cfg)
	if tty {
		fmt.Fprintln(stderr)
	}
	if err != nil {
		if errors.Is(err, local.ErrUsage) {
			err = usageError(err.Error())
		}
		return fail(stderr, err, "")
	}
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
	fmt.Fprintf(w, "data %s: %d rows, %d held out for testing; hospitals hold %v rows\n", s.Data, s.Rows, s.TestRows, s.SiteRows)
	regression := s.Task == fl.Regression
	if regression {
		fmt.Fprintf(w, "%-42s %9s %7s %10s\n", "setting", "RMSE", "R²", "ε")
	} else {
		fmt.Fprintf(w, "%-42s %9s %7s %10s\n", "setting", "accuracy", "AUC", "ε")
	}
	for _, r := range s.Table {
		e := "∞"
		if r.Epsilon != nil {
			e = fmt.Sprintf("%.3f", *r.Epsilon)
		}
		if regression {
			fmt.Fprintf(w, "%-42s %9.2f %7.3f %10s\n", r.Setting, r.Test.RMSE, r.Test.R2, e)
		} else {
			fmt.Fprintf(w, "%-42s %9.3f %7.3f %10s\n", r.Setting, r.Test.Accuracy, r.Test.AUC, e)
		}
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
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// heWarning states what mode he does not yet protect (SECURITY.md, "Threshold
// CKKS").
const heWarning = "fl-secure: warning: mode he protects updates against a malicious coordinator that colludes with no hospital, and the decryption key against malicious hospitals while the coordinator is honest, but not one hospital's update from another hospital that decrypts, nor anything from a coordinator colluding with a hospital; wherever a hospital may be malicious, use secagg (SECURITY.md, \"Threshold CKKS\")"
