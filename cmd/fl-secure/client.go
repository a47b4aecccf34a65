package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/internal/atrest"
	"github.com/fl-secure/fl-secure/protocol"
)

func clientCmd(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("client", `Usage: fl-secure client --config FILE (--data local.csv | --train-cmd COMMAND | --update FILE) [flags]

Runs a hospital's client: it dials out to the coordinator (no inbound
connection is ever needed), checks the coordinator's certificate against
the kit's pin, and takes part in rounds — refusing any round that would
pass this hospital's own privacy budget, whatever the coordinator says,
and charging its own ledger before its data leaves. Reconnects with
backoff after network failures.

The kit's TLS and identity keys, this hospital's ledger signing key and
its threshold-decryption state are encrypted at rest with the passphrase
on the first line of --passphrase-file FILE (a file only its owner may
read), or else in the FL_SECURE_PASSPHRASE environment variable: the one
the kit was provisioned with. A key still in plaintext is encrypted in
place. Without a passphrase they are stored unencrypted, with a warning.

The update comes from one source: --data (fl-secure trains on the CSV
file), --train-cmd (the hospital's own trainer, run every round; with
--data too, the CSV file also feeds the statistics release and the record
count), or --update (one update trained elsewhere, sent every round). A
source given on the command line replaces the configuration's: its data,
train_cmd and update keys are then ignored. The trainer's contract is in
docs/TRAINER.md.
`, stderr)
	config := fs.String("config", "", "configuration file (see client.conf in a site kit)")
	site := fs.Int("site", 0, "this site's id")
	coord := fs.String("coordinator", "", "coordinator host:port")
	serverName := fs.String("server-name", "", "TLS name of the coordinator (default: its host)")
	cert := fs.String("cert", "", "site certificate")
	key := fs.String("key", "", "site key")
	identity := fs.String("identity", "", "Ed25519 identity key")
	ca := fs.String("ca", "", "federation CA")
	roster := fs.String("roster", "", "roster file")
	pinFile := fs.String("pin-file", "", "file holding the coordinator's pin")
	cap := fs.Float64("epsilon-cap", 3, "this hospital's own ε cap")
	delta := fs.Float64("delta", 1e-5, "δ")
	minCohort := fs.Int("min-cohort", 3, "this hospital's floor: refuse rounds, and sign no survivor set, of fewer sites; charge for min-cohort − colluders honest sites")
	colluders := fs.Int("colluders", 0, "sites this hospital assumes may collude with the coordinator (raises its quorum and its charge)")
	maxAttempts := fs.Int("max-attempts", 2, "pay for at most this many attempts of one training round, then sit it out")
	maxUnopened := fs.Int("max-unopened", 3, "pay for at most this many rounds in a row that do not open, then stop paying")
	data := fs.String("data", "", "local CSV data")
	label := fs.String("label", "", "label column of --data")
	model := fs.String("model", "", "the model --data is loaded for: logistic (binary labels), softmax (class labels 0…c−1), linear (real labels) or mlp (default: logistic); a round whose model needs other labels is refused")
	hidden := fs.Int("hidden", 16, "hidden width of an mlp model (the coordinator's)")
	update := fs.String("update", "", "an update trained elsewhere (.npy, or .safetensors with the layout's named tensors), sent every client-level round instead of training")
	trainCmd := fs.String("train-cmd", "", "run this shell command every round to train (docs/TRAINER.md): it gets the global model and its layout and writes the update")
	trainTimeout := fs.Duration("train-timeout", time.Hour, "kill a --train-cmd running longer than this and sit the round out")
	records := fs.Int("records", 0, "record level with --train-cmd and no --data: the number of records the trainer holds and must sum over")
	modelOut := fs.String("model-out", "", "write the global model here after every round (.npy or .safetensors)")
	state := fs.String("state", "state", "state directory (this hospital's ledger, the coordinator checkpoint it cosigned)")
	ledgerKey := fs.String("ledger-key", "", "this hospital's ledger signing key, kept out of --state (default: ledger-key.pem beside --identity)")
	allowNoDP := fs.Bool("allow-no-dp", false, "take part in secure-aggregation rounds without DP noise")
	allowPlain := fs.Bool("allow-plain", false, "take part in plain-mode rounds, where the coordinator sees this site's update (NOT PRIVATE)")
	level := fs.String("level", "", "the only privacy level this hospital is charged at (record or client; default: its ledger's first)")
	asJSON := fs.Bool("json", false, "JSON logs and summary")
	passFile := passphraseFlag(fs)
	if help, err := parse(args); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure client -h"`)
		}
		return 0
	}
	if *config != "" {
		// A source of the update on the command line replaces the
		// configuration's choice of source rather than clashing with it.
		sources := []string{"data", "update", "train-cmd"}
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		paths := map[string]bool{"cert": true, "key": true, "identity": true, "ca": true, "roster": true, "pin-file": true,
			"state": true, "ledger-key": true, "data": true, "update": true, "model-out": true, "passphrase-file": true}
		if err := readConfig(fs, *config, paths); err != nil {
			return fail(stderr, err, "")
		}
		if slices.ContainsFunc(sources, func(k string) bool { return given[k] }) {
			for _, k := range sources {
				if !given[k] {
					fs.Set(k, "")
				}
			}
		}
	}
	pass, err := clientPassphrase(*passFile, *trainCmd, stderr)
	if err != nil {
		return fail(stderr, err, "")
	}
	switch {
	case *trainCmd != "" && *update != "":
		return fail(stderr, usagef("--train-cmd and --update are two sources of the update; give one"), "")
	case *trainCmd == "" && (*data == "") == (*update == ""):
		return fail(stderr, usagef("give one source of the update: --data, --train-cmd or --update"), "")
	case *trainTimeout <= 0:
		return fail(stderr, usagef("--train-timeout %v: want a positive duration", *trainTimeout), "")
	case *records < 0 || *records > 0 && *trainCmd == "":
		return fail(stderr, usagef("--records %d: want a positive count, with --train-cmd", *records), "")
	case *update != "":
		if _, err := os.Stat(*update); err != nil {
			return fail(stderr, fmt.Errorf("--update: %w", err), "")
		}
	}
	r, err := protocol.LoadRoster(*roster)
	if err != nil {
		return fail(stderr, err, "")
	}
	pin, err := os.ReadFile(*pinFile)
	if err != nil {
		return fail(stderr, fmt.Errorf("reading the coordinator pin: %w", err), "")
	}
	cfg := protocol.SiteConfig{Site: *site, Coordinator: *coord, ServerName: *serverName, Cert: *cert, Key: *key,
		Identity: *identity, CA: *ca, Pin: strings.TrimSpace(string(pin)), Roster: r, EpsilonCap: *cap, Delta: *delta,
		AllowNoDP: *allowNoDP, AllowPlain: *allowPlain, Level: dp.Level(*level), MinCohort: *minCohort, Colluders: *colluders, MaxAttempts: *maxAttempts, MaxUnopened: *maxUnopened, ModelOut: *modelOut, State: *state, LedgerKey: *ledgerKey,
		Hidden: *hidden, Records: *records, Logger: logger(stderr, *asJSON)}
	if *data != "" {
		if *label == "" {
			return fail(stderr, usagef("--data needs --label"), "")
		}
		if cfg.Data, err = loadData(*data, *label, *model); err != nil {
			return fail(stderr, err, "")
		}
	}
	ctx, stop := signalContext()
	defer stop()
	switch {
	case *trainCmd != "":
		cfg.Trainer = (&commandTrainer{ctx: ctx, command: *trainCmd, timeout: *trainTimeout, out: stderr}).train
	case *update != "":
		cfg.Trainer = fileTrainer(*update)
	}
	cfg.Passphrase = pass
	s, err := protocol.NewSite(cfg)
	if err != nil {
		return fail(stderr, err, "")
	}
	defer s.Close()
	if err := s.Run(ctx); err != nil {
		return fail(stderr, interrupted(ctx, err), "")
	}
	if *asJSON {
		out := map[string]any{"site": *site, "rounds": s.Rounds(), "epsilon": s.Spent()}
		if p := s.SpentPatient(); p > 0 {
			out["patient_epsilon"], out["relation"], out["patient_relation"] = p, dp.ClientRelationText, dp.PatientRelationText
		}
		return printJSON(stdout, stderr, out)
	}
	fmt.Fprintf(stdout, "site %d: took part in %d rounds; this hospital's ε spent %.4g of %g\n", *site, s.Rounds(), s.Spent(), *cap)
	if p := s.SpentPatient(); p > 0 {
		fmt.Fprintf(stdout, "  at client level: ε %.4g for %s; per patient ε %.4g (%s)\n", s.Spent(), dp.ClientRelationText, p, dp.PatientRelationText)
	}
	return 0
}

// clientPassphrase returns the client's passphrase (see passphrase). One
// taken from FL_SECURE_PASSPHRASE is removed from this process's
// environment, which the processes it starts would otherwise inherit.
// That cannot remove it from the environment the process was started
// with, which the system keeps showing (on Linux, /proc/PID/environ) to
// every process of the same user: with trainCmd, a command that runs as
// this user and could read it there, it warns.
func clientPassphrase(file, trainCmd string, stderr io.Writer) (atrest.Passphrase, error) {
	pass, err := passphrase(file)
	if err != nil || file != "" || !pass.IsSet() {
		return pass, err
	}
	os.Unsetenv(atrest.EnvPassphrase)
	if trainCmd != "" {
		fmt.Fprintf(stderr, "fl-secure client: warning: the passphrase is in $%s and --train-cmd runs a command as this user, which can read this process's environment as it was started (/proc/%d/environ): give the passphrase in --passphrase-file instead and run the command as another user (docs/TRAINER.md)\n", atrest.EnvPassphrase, os.Getpid())
	}
	return pass, nil
}

// loadData reads a hospital's CSV file for the named model: logistic
// (the default) and mlp want class labels, a logistic model two of them;
// softmax class labels 0…c−1; linear real-valued labels.
func loadData(path, label, model string) (*fl.Dataset, error) {
	switch model {
	case "linear":
		return fl.LoadCSV(path, label, fl.Regression)
	case "", "logistic", "softmax", "mlp":
	default:
		return nil, usagef("--model %q: want logistic, softmax, linear or mlp", model)
	}
	d, err := fl.LoadCSV(path, label, fl.Multiclass)
	if err != nil {
		if model == "" || model == "logistic" || model == "mlp" {
			return nil, fmt.Errorf("%w (for a real-valued label, use --model linear)", err)
		}
		return nil, err
	}
	switch {
	case d.Classes > 2 && (model == "" || model == "logistic"):
		return nil, fmt.Errorf("%s: label %q has %d classes and a logistic model takes 2: use --model softmax here and --model softmax --classes %d on the coordinator", path, label, d.Classes, d.Classes)
	case d.Classes <= 2 && model != "softmax":
		d.Task = fl.Binary
	}
	return d, nil
}
