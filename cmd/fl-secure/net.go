package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/internal/atrest"
	"github.com/fl-secure/fl-secure/protocol"
	"github.com/fl-secure/fl-secure/protocol/local"
)

// readConfig parses a "key = value" file (# starts a comment) into flag
// values: every key is a flag name (underscores for hyphens), a flag given
// on the command line wins, and paths are taken relative to the file.
func readConfig(fs *flag.FlagSet, path string, pathKeys map[string]bool) error {
	f, err := os.Open(path)
	if err != nil {
		return usagef("--config: %v", err)
	}
	defer f.Close()
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	dir := filepath.Dir(path)
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if i := strings.Index(t, "#"); i >= 0 {
			t = strings.TrimSpace(t[:i])
		}
		if t == "" {
			continue
		}
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			return usagef("%s:%d: want key = value, got %q", path, line, t)
		}
		k = strings.ReplaceAll(strings.TrimSpace(k), "_", "-")
		v = strings.TrimSpace(v)
		if fs.Lookup(k) == nil {
			return usagef("%s:%d: unknown key %q", path, line, k)
		}
		if set[k] {
			continue
		}
		if pathKeys[k] && v != "" && !filepath.IsAbs(v) {
			v = filepath.Join(dir, v)
		}
		if err := fs.Set(k, v); err != nil {
			return usagef("%s:%d: %s: %v", path, line, k, err)
		}
	}
	return sc.Err()
}

// passphraseFlag registers --passphrase-file.
func passphraseFlag(fs *flag.FlagSet) *string {
	return fs.String("passphrase-file", "", "encrypt private keys and state at rest with the passphrase on this file's first line (mode 0600; default: $"+atrest.EnvPassphrase+")")
}

// passphrase returns the operator's passphrase for private files at rest:
// the first line of file if one is named, else FL_SECURE_PASSPHRASE, else
// none.
func passphrase(file string) (atrest.Passphrase, error) {
	if file != "" {
		return atrest.PassphraseFromFile(file)
	}
	return atrest.PassphraseFromEnv()
}

func provisionCmd(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("provision", `Usage: fl-secure provision --sites N --out DIR [--host NAME]... [--passphrase-file FILE]

Creates a federation: a CA, the coordinator's certificate and key, and one
kit per site (certificate, key, Ed25519 identity key, roster, the
coordinator's pin, config template). Private keys are written 0600; an
existing kit is never overwritten. Hand each site-N directory to its
hospital over a trusted channel.

With a passphrase (the first line of --passphrase-file FILE, a file only
its owner may read, or else the FL_SECURE_PASSPHRASE environment
variable) every private key is encrypted (age, scrypt); the coordinator
and the clients then need the same passphrase, and each hospital should
get it by another channel than its kit. Without one the keys are written
unencrypted, with a warning.

Example:
  FL_SECURE_PASSPHRASE="$(cat /secure/passphrase)" fl-secure provision --sites 3 --out fed
`, stderr)
	sites := fs.Int("sites", 0, "number of sites (3 to 1000)")
	out := fs.String("out", "", "output directory")
	var hosts multi
	fs.Var(&hosts, "host", "the coordinator's DNS name or IP for its certificate (repeatable; default localhost and 127.0.0.1)")
	demo := fs.String("demo-data", "", "for a walkthrough: split an embedded data set (wdbc) over the kits as site-N/local.csv, with coordinator/test.csv")
	passFile := passphraseFlag(fs)
	if help, err := parse(args, "sites", "out"); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure provision -h"`)
		}
		return 0
	}
	pass, err := passphrase(*passFile)
	if err != nil {
		return fail(stderr, err, "")
	}
	if !pass.IsSet() {
		fmt.Fprintln(stderr, "fl-secure: warning: no passphrase: the kits' private keys are written UNENCRYPTED; give FL_SECURE_PASSPHRASE or --passphrase-file")
	}
	if err := protocol.Provision(*out, *sites, &protocol.ProvisionOptions{Hosts: hosts, Passphrase: pass}); err != nil {
		return fail(stderr, err, "")
	}
	if *demo != "" {
		if err := writeDemoData(*out, *demo, *sites); err != nil {
			return fail(stderr, err, "")
		}
	}
	fmt.Fprintf(stdout, "federation of %d sites written to %s: coordinator/ and site-1 … site-%d/\n", *sites, *out, *sites)
	return 0
}

// writeDemoData splits an embedded data set over the kits (Dirichlet(0.5)
// label skew, seed 0) and holds out a stratified 25 % test set.
func writeDemoData(out, name string, sites int) error {
	d, err := fl.LoadBuiltin(name)
	if err != nil {
		return err
	}
	tr, te, err := fl.StratifiedSplit(d, 0.25, 0)
	if err != nil {
		return err
	}
	parts, err := fl.PartitionDirichlet(tr, sites, 0.5, 10, 0)
	if err != nil {
		return err
	}
	write := func(path string, d *fl.Dataset) error {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if err := fl.WriteCSV(f, d); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	for i, p := range parts {
		if err := write(filepath.Join(out, fmt.Sprintf("site-%d", i+1), "local.csv"), p); err != nil {
			return err
		}
	}
	return write(filepath.Join(out, "coordinator", "test.csv"), te)
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func logger(stderr io.Writer, asJSON bool) *slog.Logger {
	if asJSON {
		return slog.New(slog.NewJSONHandler(stderr, nil))
	}
	return slog.New(slog.NewTextHandler(stderr, nil))
}

// coordinatorRanges reads the coordinator's --feature-ranges: the
// embedded bounds of a built-in data set named by arg (unless a file of
// that name exists), or a feature-ranges file, whose lines are taken in
// order as the data's columns.
func coordinatorRanges(arg string) ([]fl.Range, error) {
	var rs *fl.Ranges
	var err error
	if _, builtin := fl.Builtin[filepath.Base(arg)]; builtin {
		if _, statErr := os.Stat(arg); statErr != nil {
			rs, err = fl.BuiltinRanges(filepath.Base(arg))
		}
	}
	if rs == nil && err == nil {
		rs, err = fl.LoadRanges(arg)
	}
	if err != nil {
		return nil, err
	}
	return rs.For(rs.Names())
}

func coordinatorCmd(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("coordinator", `Usage: fl-secure coordinator --config FILE [flags]

Runs the federation's coordinator: sites connect to it over TLS 1.3 with
mutual authentication, and it drives the rounds (statistics, then
training), charging its privacy ledger before anything is unmasked and
checkpointing the model after every round. Restarted on the same state
directory, it resumes after the last charged round.

Its TLS key and its ledger's signing key are encrypted at rest with the
passphrase on the first line of --passphrase-file FILE (a file only its
owner may read), or else in the FL_SECURE_PASSPHRASE environment
variable: the one the kit was provisioned with. A key still in plaintext
is encrypted in place. Without a passphrase they are stored unencrypted,
with a warning. Ledger, statistics and checkpoints are not encrypted.
`, stderr)
	config := fs.String("config", "", "configuration file (see coordinator.conf in a provisioned kit)")
	listen := fs.String("listen", "0.0.0.0:7443", "address to listen on")
	cert := fs.String("cert", "", "coordinator certificate")
	key := fs.String("key", "", "coordinator key")
	ca := fs.String("ca", "", "federation CA")
	roster := fs.String("roster", "", "roster file")
	mode := fs.String("mode", "secagg", "secagg, he, or plain (NOT PRIVATE)")
	level := fs.String("level", "record", "record or client")
	rounds := fs.Int("rounds", 30, "training rounds")
	eps := fs.Float64("epsilon", 3, "whole-run ε (0: no DP)")
	delta := fs.Float64("delta", 1e-5, "δ")
	clip := fs.Float64("clip", 1, "clipping norm")
	lr := fs.Float64("learning-rate", 1, "learning rate (record level)")
	model := fs.String("model", "logistic", "model")
	features := fs.Int("features", 30, "number of features")
	minCohort := fs.Int("min-cohort", 0, "never open a sum of fewer sites (default: a majority, at least 3)")
	colluders := fs.Int("colluders", 0, "sites assumed to collude")
	phase := fs.Duration("phase-timeout", 30*time.Second, "a site silent this long in a phase is a dropout")
	attempts := fs.Int("round-attempts", 2, "stop, naming the sites responsible, after this many failed attempts of one round that the sites paid for")
	join := fs.Duration("join-wait", 10*time.Second, "wait this long for every site before starting a round with fewer")
	state := fs.String("state", "state", "state directory (ledger, checkpoints, the sites' cosigned checkpoints)")
	ledgerKey := fs.String("ledger-key", "", "the ledger's signing key, kept out of --state (default: ledger-key.pem beside --key)")
	ranges := fs.String("feature-ranges", "", "public bounds of every feature (and a regression label, last) in the data's column order: a CSV file of name,lo,hi[,mean,scale] lines, or wdbc or diabetes for a built-in data set's")
	share := fs.Float64("statistics-share", dp.DefaultStatisticsShare, "share of the budget (of its zCDP ρ) for the statistics release; 0: no statistics round (public standardization, --rows)")
	rows := fs.Int("rows", 0, "public nominal count of records, the learning rate's denominator with --statistics-share 0 (record level)")
	asJSON := fs.Bool("json", false, "JSON logs and summary")
	passFile := passphraseFlag(fs)
	if help, err := parse(args); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure coordinator -h"`)
		}
		return 0
	}
	if *config != "" {
		if err := readConfig(fs, *config, map[string]bool{"cert": true, "key": true, "ca": true, "roster": true, "state": true, "ledger-key": true, "passphrase-file": true, "feature-ranges": true}); err != nil {
			return fail(stderr, err, "")
		}
	}
	if !(*share >= 0 && *share < 1) {
		return fail(stderr, usagef("--statistics-share %v: want a fraction in [0, 1)", *share), "")
	}
	if *ranges == "" {
		return fail(stderr, usagef("--feature-ranges is required: the statistics round clips every value to public bounds"), `give a CSV file of name,lo,hi lines, one per feature in the data's column order, or "wdbc" for the built-in data set's`)
	}
	featureRanges, err := coordinatorRanges(*ranges)
	if err != nil {
		return fail(stderr, err, "")
	}
	pass, err := passphrase(*passFile)
	if err != nil {
		return fail(stderr, err, "")
	}
	r, err := protocol.LoadRoster(*roster)
	if err != nil {
		return fail(stderr, err, "")
	}
	if *mode == "plain" {
		fmt.Fprintln(stderr, "fl-secure: warning: mode plain is NOT PRIVATE: the coordinator sees every site's update")
		*eps = 0
	}
	if *mode == "he" {
		fmt.Fprintln(stderr, heWarning)
	}
	log := logger(stderr, *asJSON)
	tty := isTerminal(stderr)
	c, err := protocol.NewCoordinator(protocol.CoordinatorConfig{
		Cert: *cert, Key: *key, CA: *ca, Roster: r, Mode: protocol.Mode(*mode), Level: dp.Level(*level), Rounds: *rounds,
		Epsilon: *eps, Delta: *delta, Clip: *clip, LearningRate: *lr, Model: *model, Features: *features,
		MinCohort: *minCohort, Colluders: *colluders, PhaseTimeout: *phase, RoundAttempts: *attempts, JoinWait: *join, State: *state, LedgerKey: *ledgerKey, Logger: log,
		Ranges: featureRanges, StatisticsShare: *share, PublicStatistics: *share == 0, Rows: *rows,
		Progress: func(res protocol.RoundResult) {
			if tty {
				fmt.Fprintf(stderr, "round %d/%d: %s, %d sites, ε %.4f\n", res.Round, *rounds, res.Status, res.Participants, res.Epsilon)
			}
		},
		Passphrase: pass,
	})
	if err != nil {
		return fail(stderr, err, "")
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fail(stderr, err, "")
	}
	go c.Serve(lis)
	defer c.Shutdown(10 * time.Second)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("listening", "addr", lis.Addr().String(), "mode", *mode, "sites", len(r.Sites))
	sum, err := c.Run(ctx)
	if err != nil {
		return fail(stderr, err, "restarting on the same --state resumes after the last charged round")
	}
	if *asJSON {
		return printJSON(stdout, stderr, sum)
	}
	ok := 0
	for _, r := range sum.Rounds {
		if r.Status == "ok" {
			ok++
		}
	}
	fmt.Fprintf(stdout, "%d rounds completed; ε spent %.4g (δ = %g, %s level)\n", ok, sum.Epsilon, *delta, *level)
	if sum.DP {
		fmt.Fprintf(stdout, "ε of the statistics release %.4g, of training %.4g\n", sum.StatisticsEpsilon, sum.TrainingEpsilon)
		if sum.PatientEpsilon > 0 {
			fmt.Fprintf(stdout, "at client level: ε %.4g for %s; per patient ε %.4g (%s)\n", sum.Epsilon, dp.ClientRelationText, sum.PatientEpsilon, dp.PatientRelationText)
		}
	}
	fmt.Fprintf(stdout, "statistics: %s\n", sum.Statistics)
	if sum.Ledger != "" {
		// The coordinator's copies of the sites' cosigned checkpoints; each
		// hospital holds its own (coordinator.checkpoint in its state
		// directory), which an auditor should take from the hospital.
		var files, witnesses []string
		for _, w := range sum.Witnesses {
			if w.Problem == "" {
				files, witnesses = append(files, w.File), append(witnesses, w.Arg())
			}
		}
		// The key to audit with is the roster's, which the hospitals hold
		// too; a roster from before it named the key leaves the key itself.
		key := local.AuditKey{Key: sum.LedgerKey}
		if r.CoordinatorLedgerKey() != nil {
			key.Roster = *roster
		}
		fmt.Fprintf(stdout, "ledger: %s\naudit:  %s\n", sum.Ledger, local.AuditCommand(sum.Ledger, key, files, witnesses))
		if line := sum.WitnessLine(); line != "" {
			fmt.Fprintf(stdout, "witnesses: %s (each hospital holds its own copy: %s in its state directory)\n", line, protocol.WitnessFile)
		}
	}
	fmt.Fprintf(stdout, "model:  %s\n", filepath.Join(*state, "checkpoints"))
	return 0
}

func clientCmd(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("client", `Usage: fl-secure client --config FILE (--data local.csv | --update update.npy) [flags]

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
	update := fs.String("update", "", "an update trained elsewhere (.npy or .safetensors), sent instead of training")
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
		paths := map[string]bool{"cert": true, "key": true, "identity": true, "ca": true, "roster": true, "pin-file": true,
			"state": true, "ledger-key": true, "data": true, "update": true, "model-out": true, "passphrase-file": true}
		if err := readConfig(fs, *config, paths); err != nil {
			return fail(stderr, err, "")
		}
	}
	pass, err := passphrase(*passFile)
	if err != nil {
		return fail(stderr, err, "")
	}
	if (*data == "") == (*update == "") {
		return fail(stderr, usagef("give exactly one of --data and --update"), "")
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
		Logger: logger(stderr, *asJSON)}
	if *data != "" {
		if *label == "" {
			return fail(stderr, usagef("--data needs --label"), "")
		}
		if cfg.Data, err = fl.LoadCSV(*data, *label, fl.Binary); err != nil {
			return fail(stderr, err, "")
		}
	} else {
		if cfg.Update, err = readVector(*update); err != nil {
			return fail(stderr, err, "")
		}
	}
	cfg.Passphrase = pass
	s, err := protocol.NewSite(cfg)
	if err != nil {
		return fail(stderr, err, "")
	}
	defer s.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := s.Run(ctx); err != nil {
		return fail(stderr, err, "")
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

func readVector(path string) ([]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if strings.HasSuffix(path, ".npy") {
		v, _, err := fl.ReadNPY(f)
		return v, err
	}
	ts, _, err := fl.ReadSafetensors(f)
	if err != nil {
		return nil, err
	}
	if len(ts) != 1 {
		return nil, fmt.Errorf("%s holds %d tensors; want one", path, len(ts))
	}
	for _, t := range ts {
		return t.Data, nil
	}
	return nil, nil
}

func evaluateCmd(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("evaluate", `Usage: fl-secure evaluate --state DIR --data test.csv --label L [--model logistic]

Evaluates the newest checkpoint of a coordinator's state directory on a
labelled CSV file, standardized with the federation's statistics.
`, stderr)
	state := fs.String("state", "", "the coordinator's state directory")
	data := fs.String("data", "", "labelled CSV")
	label := fs.String("label", "", "label column")
	model := fs.String("model", "logistic", "model")
	asJSON := fs.Bool("json", false, "print JSON")
	if help, err := parse(args, "state", "data", "label"); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure evaluate -h"`)
		}
		return 0
	}
	d, err := fl.LoadCSV(*data, *label, fl.Binary)
	if err != nil {
		return fail(stderr, err, "")
	}
	m, round, err := protocol.EvaluateState(*state, *model, 16, d)
	if err != nil {
		return fail(stderr, err, "")
	}
	if *asJSON {
		return printJSON(stdout, stderr, map[string]any{"round": round, "test": m})
	}
	fmt.Fprintf(stdout, "round %d model on %d rows: accuracy %.3f, AUC %.3f, log loss %.3f\n", round, d.Rows(), m.Accuracy, m.AUC, m.LogLoss)
	return 0
}
