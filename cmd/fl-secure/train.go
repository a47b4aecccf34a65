package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol"
)

const simulateUsage = `Usage: fl-secure simulate [flags]

Federated training among in-process hospitals on embedded clinical data (or
your own CSV), with secure aggregation and distributed differential privacy
in every round. By default: the breast cancer data (wdbc) over 5 hospitals
with Dirichlet(0.5) label skew, a 25% stratified test set, logistic
regression, secagg, and record-level DP at ε = 3, δ = 1e-5 for the whole run.

The closing table compares centralized training (no privacy), each hospital
alone, federated training without DP, and federated training with DP; it
ends with the ledgers' paths and keys for "fl-secure budget audit".

Record level trains by full-batch DP-SGD: every round is one step over the
union of the hospitals' data (each sends the sum of its records' clipped
gradients; only the sum, noised by all, is opened). Client level runs local
SGD and clips each hospital's whole update. Mode plain is NOT PRIVATE.

Examples:
  fl-secure simulate
  fl-secure simulate --data diabetes --epsilon 1
  fl-secure simulate --mode he --sites 7 --dropout 0.1
  fl-secure simulate --data my.csv --label outcome --model mlp --level client

Flags:
`

type simFlags struct {
	data, label, model, mode, level, dir  string
	sites, rounds, hidden, colluders      int
	minCohort, epochs, batch              int
	alpha, testFrac, eps, delta, clip, lr float64
	dropout, prox                         float64
	average                               int
	seed                                  uint64
	asJSON, noCompare                     bool
}

type row struct {
	Setting string     `json:"setting"`
	Test    fl.Metrics `json:"test"`
	Epsilon *float64   `json:"epsilon"` // null: no privacy guarantee
	Private bool       `json:"private"`
}

type simSummary struct {
	Data      string            `json:"data"`
	Rows      int               `json:"rows"`
	Test      int               `json:"test_rows"`
	SiteRows  []int             `json:"site_rows"`
	Table     []row             `json:"table"`
	Federated *protocol.Summary `json:"federated"`
	Audit     []string          `json:"audit_commands,omitempty"`
}

func simulateFL(args []string, stdout, stderr io.Writer) int {
	var f simFlags
	fs, parse := newFlags("simulate", simulateUsage, stderr)
	fs.StringVar(&f.data, "data", "wdbc", "data set: wdbc, diabetes, or a CSV file path")
	fs.StringVar(&f.label, "label", "", "label column of a CSV file")
	fs.StringVar(&f.model, "model", "", "logistic, softmax, linear or mlp (default: by task)")
	fs.IntVar(&f.hidden, "hidden", 16, "hidden units of the mlp")
	fs.IntVar(&f.sites, "sites", 5, "number of hospitals")
	fs.Float64Var(&f.alpha, "alpha", 0.5, "Dirichlet label-skew parameter α (0: IID)")
	fs.Float64Var(&f.testFrac, "test", 0.25, "stratified test fraction")
	fs.IntVar(&f.rounds, "rounds", 30, "rounds")
	fs.StringVar(&f.mode, "mode", "secagg", "secagg, he, or plain (NOT PRIVATE)")
	fs.Float64Var(&f.eps, "epsilon", 3, "ε for the whole run (0: no DP)")
	fs.Float64Var(&f.delta, "delta", 1e-5, "δ")
	fs.StringVar(&f.level, "level", "record", "record (full-batch DP-SGD) or client (clipped local updates)")
	fs.Float64Var(&f.clip, "clip", 1, "L2 clipping norm: per record (record level) or per update (client level)")
	fs.Float64Var(&f.lr, "lr", 0, "learning rate (default 1 at record level, 0.1 at client level)")
	fs.IntVar(&f.epochs, "local-epochs", 1, "local epochs per round (client level)")
	fs.IntVar(&f.batch, "batch", 16, "local batch size (client level)")
	fs.Float64Var(&f.prox, "prox", 0, "FedProx μ (client level)")
	fs.Float64Var(&f.dropout, "dropout", 0, "chance that a hospital is offline in a round")
	fs.IntVar(&f.colluders, "colluders", 0, "hospitals assumed to collude with the coordinator")
	fs.IntVar(&f.minCohort, "min-cohort", 0, "never open a sum of fewer sites (default: a majority, at least 3)")
	fs.Uint64Var(&f.seed, "seed", 0, "seed of the data split and simulated dropouts (keys, masks and noise always use crypto/rand)")
	fs.StringVar(&f.dir, "dir", "", "directory for ledgers, keys and checkpoints (default: fl-secure-runs/<time>)")
	fs.IntVar(&f.average, "average-from", 0, "final model: average of the models from this round on (0: second half; -1: last model)")
	fs.BoolVar(&f.asJSON, "json", false, "print the whole summary as JSON")
	fs.BoolVar(&f.noCompare, "no-compare", false, "skip the comparison rows")
	if help, err := parse(args); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure simulate -h"`)
		}
		return 0
	}
	sum, err := runSimulation(f, stderr)
	if err != nil {
		return fail(stderr, err, "")
	}
	if f.asJSON {
		return printJSON(stdout, stderr, sum)
	}
	printSimulation(stdout, sum)
	return 0
}

func runSimulation(f simFlags, stderr io.Writer) (*simSummary, error) {
	var d *fl.Dataset
	var err error
	if _, ok := fl.Builtin[f.data]; ok {
		d, err = fl.LoadBuiltin(f.data)
	} else {
		if f.label == "" {
			return nil, usagef("--data %q is a file: name its label column with --label", f.data)
		}
		task := fl.Binary
		if f.model == "linear" {
			task = fl.Regression
		} else if f.model == "softmax" {
			task = fl.Multiclass
		}
		d, err = fl.LoadCSV(f.data, f.label, task)
	}
	if err != nil {
		return nil, err
	}
	if f.model == "" {
		f.model = map[fl.Task]string{fl.Binary: "logistic", fl.Multiclass: "softmax", fl.Regression: "linear"}[d.Task]
	}
	if f.lr == 0 {
		f.lr = 1
		if f.level == "client" {
			f.lr = 0.1
		}
	}
	if f.sites < 1 || f.sites > 1000 {
		return nil, usagef("--sites %d: want 1 to 1000", f.sites)
	}
	if f.alpha < 0 || math.IsNaN(f.alpha) {
		return nil, usagef("--alpha %v: want ≥ 0", f.alpha)
	}
	if f.eps < 0 || math.IsNaN(f.eps) {
		return nil, usagef("--epsilon %v: want ≥ 0 (0 for no DP)", f.eps)
	}
	train, test, err := fl.StratifiedSplit(d, f.testFrac, f.seed)
	if err != nil {
		return nil, err
	}
	var sites []*fl.Dataset
	if f.alpha == 0 {
		sites, err = fl.PartitionIID(train, f.sites, f.seed)
	} else {
		sites, err = fl.PartitionDirichlet(train, f.sites, f.alpha, 10, f.seed)
	}
	if err != nil {
		return nil, err
	}
	out := &simSummary{Data: d.Name, Rows: d.Rows(), Test: test.Rows()}
	for _, s := range sites {
		out.SiteRows = append(out.SiteRows, s.Rows())
	}
	dir := f.dir
	if dir == "" {
		dir = filepath.Join("fl-secure-runs", time.Now().UTC().Format("20060102-150405"))
	}
	cfg := protocol.Config{
		Mode: protocol.Mode(f.mode), Level: dp.Level(f.level), DP: f.eps > 0, Epsilon: f.eps, Delta: f.delta,
		Colluders: f.colluders, MinCohort: f.minCohort, Rounds: f.rounds, Model: f.model, Hidden: f.hidden,
		Clip: f.clip, LearningRate: f.lr, LocalEpochs: f.epochs, BatchSize: f.batch, ProxMu: f.prox,
		Dropout: f.dropout, Seed: f.seed, Dir: dir, AverageFrom: f.average,
	}
	if cfg.Mode == protocol.Plain && cfg.DP {
		fmt.Fprintln(stderr, "fl-secure: warning: --mode plain is NOT PRIVATE: the coordinator sees every update; training without DP")
		cfg.DP = false
	}
	if f.mode == "he" {
		fmt.Fprintln(stderr, heWarning)
	}
	tty := isTerminal(stderr)
	cfg.Progress = func(r protocol.RoundResult) {
		if !tty {
			return
		}
		done := r.Round * 30 / f.rounds
		fmt.Fprintf(stderr, "\rround %3d/%d [%s%s] %s ε %.3f", r.Round, f.rounds, strings.Repeat("#", done), strings.Repeat(" ", 30-done), metricText(r.Test, d.Task), r.Epsilon)
	}
	fed, err := protocol.Train(cfg, sites, test)
	if tty {
		fmt.Fprintln(stderr)
	}
	if err != nil {
		return nil, err
	}
	out.Federated = fed
	if !f.noCompare {
		c, err := protocol.Baseline(f.model, f.hidden, train, test, f.seed)
		if err != nil {
			return nil, err
		}
		out.Table = append(out.Table, row{Setting: "centralized (no privacy)", Test: c})
		for i, s := range sites {
			m, err := protocol.Baseline(f.model, f.hidden, s, test, f.seed)
			if err != nil {
				return nil, err
			}
			out.Table = append(out.Table, row{Setting: fmt.Sprintf("hospital %d alone (%d rows)", i+1, s.Rows()), Test: m})
		}
		if cfg.DP {
			nd := cfg
			nd.DP, nd.Dir, nd.Progress = false, "", nil
			if nd.Mode == protocol.HE {
				nd.Mode = protocol.SecAgg // the no-DP reference needs no second key ceremony
			}
			s, err := protocol.Train(nd, sites, test)
			if err != nil {
				return nil, err
			}
			out.Table = append(out.Table, row{Setting: fmt.Sprintf("federated, %s, no DP", nd.Mode), Test: s.Test})
		}
	}
	name := fmt.Sprintf("federated, %s", f.mode)
	if cfg.DP {
		name += fmt.Sprintf(" + DP (%s level)", f.level)
	} else if cfg.Mode == protocol.Plain {
		name += " (NOT PRIVATE)"
	} else {
		name += ", no DP"
	}
	var eps *float64
	if cfg.DP {
		eps = &fed.Epsilon
		out.Audit = append(out.Audit, fmt.Sprintf("fl-secure budget audit --ledger %s --key %s", fed.Ledger, fed.LedgerKey))
		for i, l := range fed.SiteLedgers {
			out.Audit = append(out.Audit, fmt.Sprintf("fl-secure budget audit --ledger %s --key %s", l, fed.SiteKeys[i]))
		}
	}
	out.Table = append(out.Table, row{Setting: name, Test: fed.Test, Epsilon: eps, Private: cfg.DP})
	return out, nil
}

func metricText(m fl.Metrics, task fl.Task) string {
	if task == fl.Regression {
		return fmt.Sprintf("RMSE %.2f R² %.3f", m.RMSE, m.R2)
	}
	return fmt.Sprintf("acc %.3f AUC %.3f", m.Accuracy, m.AUC)
}

func printSimulation(w io.Writer, s *simSummary) {
	fed := s.Federated
	fmt.Fprintf(w, "data %s: %d rows, %d held out for testing; hospitals hold %v rows\n", s.Data, s.Rows, s.Test, s.SiteRows)
	regression := s.Table[len(s.Table)-1].Test.RMSE > 0
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
		fmt.Fprintf(w, "privacy: (ε = %.4g, δ = %g) at %s level, add-remove neighbours, RDP accountant; effective noise multiplier %.3f per round, each hospital's share σ = %.4g\n",
			fed.Epsilon, fed.Delta, fed.Level, fed.NoiseMultiplier, fed.SiteSigma)
		fmt.Fprintf(w, "not covered by ε: %s\n", fed.Disclosed)
		fmt.Fprintf(w, "coordinator ledger: %s\ncoordinator key:    %s\n", fed.Ledger, fed.LedgerKey)
		for i, l := range fed.SiteLedgers {
			fmt.Fprintf(w, "hospital %d ledger: %s (key %s)\n", i+1, l, fed.SiteKeys[i])
		}
		fmt.Fprintf(w, "audit: %s\n", s.Audit[0])
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
