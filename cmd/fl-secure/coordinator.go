package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol"
	"github.com/fl-secure/fl-secure/protocol/local"
)

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

// listenMetrics listens on addr for the monitoring endpoints, warning
// when addr is not a loopback address: they have no authentication.
func listenMetrics(addr string, stderr io.Writer) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, usagef("--metrics %q: want host:port, e.g. 127.0.0.1:9464", addr)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		fmt.Fprintf(stderr, "fl-secure: warning: --metrics %s is not a loopback address: anyone who reaches it reads the metrics (no authentication)\n", addr)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics: %w", err)
	}
	return lis, nil
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

Every site is told the federation's plan (rounds, ε, δ, level) and the
roster's digest when it connects: a site whose own ε cap cannot cover the
plan, or whose roster.json is older than the coordinator's, refuses at
once, and the coordinator logs why.

Monitoring:
  --metrics ADDR     serves /metrics (Prometheus text format: rounds by
                     status, phase durations, sites connected, bytes in
                     and out per site, ε spent and left) and /healthz (200
                     and the round and phase while running) on ADDR, e.g.
                     127.0.0.1:9464; without authentication, so keep it on
                     loopback or a monitoring network
  --events FILE      appends one JSON object per event (sites joining,
                     leaving and refusing; rounds started, opened, failed
                     and skipped, with ε; phase timeouts; checkpoints
                     written and pruned) to FILE, fsynced; the fields are
                     in docs/EVENTS.md

Checkpoints (STATE/checkpoints/round-NNNN.safetensors): after each round
the newest --keep-checkpoints K (default 5) are kept, and every 10th
round's; 0 keeps them all. The newest, from which a restart resumes, is
never removed.
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
	classes := fs.Int("classes", 2, "number of classes of a softmax or mlp model (labels 0…classes−1)")
	hidden := fs.Int("hidden", 16, "hidden width of an mlp model")
	minCohort := fs.Int("min-cohort", 0, "never open a sum of fewer sites (default: a majority, at least 3)")
	colluders := fs.Int("colluders", 0, "sites assumed to collude")
	phase := fs.Duration("phase-timeout", 30*time.Second, "a site silent this long in a phase is a dropout")
	train := fs.Duration("train-timeout", 0, "how long sites may take to compute their update in the first phase of a training round: local training or a hospital's own trainer (--train-cmd); default --phase-timeout")
	attempts := fs.Int("round-attempts", 2, "stop, naming the sites responsible, after this many failed attempts of one round that the sites paid for")
	join := fs.Duration("join-wait", 10*time.Second, "wait this long for every site before starting a round with fewer")
	state := fs.String("state", "state", "state directory (ledger, checkpoints, the sites' cosigned checkpoints)")
	ledgerKey := fs.String("ledger-key", "", "the ledger's signing key, kept out of --state (default: ledger-key.pem beside --key)")
	ranges := fs.String("feature-ranges", "", "public bounds of every feature (and a regression label, last) in the data's column order: a CSV file of name,lo,hi[,mean,scale] lines, or wdbc or diabetes for a built-in data set's")
	share := fs.Float64("statistics-share", dp.DefaultStatisticsShare, "share of the budget (of its zCDP ρ) for the statistics release; 0: no statistics round (public standardization, --rows)")
	rows := fs.Int("rows", 0, "public nominal count of records, the learning rate's denominator with --statistics-share 0 (record level)")
	asJSON := fs.Bool("json", false, "JSON logs and summary")
	metricsAddr := fs.String("metrics", "", "serve /metrics and /healthz on this address (host:port; off by default)")
	events := fs.String("events", "", "append JSON-lines events to this file (docs/EVENTS.md)")
	keep := fs.Int("keep-checkpoints", 5, "keep the newest K checkpoints and every 10th round's (0: keep all)")
	passFile := passphraseFlag(fs)
	if help, err := parse(args); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure coordinator -h"`)
		}
		return 0
	}
	if *config != "" {
		if err := readConfig(fs, *config, map[string]bool{"cert": true, "key": true, "ca": true, "roster": true, "state": true, "ledger-key": true, "passphrase-file": true, "feature-ranges": true, "events": true}); err != nil {
			return fail(stderr, err, "")
		}
	}
	if *cert == "" || *key == "" || *ca == "" || *roster == "" {
		var miss []string
		for _, f := range []struct{ name, v string }{{"--cert", *cert}, {"--key", *key}, {"--ca", *ca}, {"--roster", *roster}} {
			if f.v == "" {
				miss = append(miss, f.name)
			}
		}
		return fail(stderr, usagef("no %s", strings.Join(miss, ", ")),
			"give --config DIR/coordinator/coordinator.conf from a provisioned kit, or --cert/--key/--ca/--roster")
	}
	if *keep < 0 {
		return fail(stderr, usagef("--keep-checkpoints %d: want 0 (keep all) or a positive count", *keep), "")
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
	var evlog *protocol.EventLog
	if *events != "" {
		if evlog, err = protocol.OpenEventLog(*events); err != nil {
			return fail(stderr, err, "")
		}
		defer evlog.Close()
	}
	c, err := protocol.NewCoordinator(protocol.CoordinatorConfig{
		Cert: *cert, Key: *key, CA: *ca, Roster: r, Mode: protocol.Mode(*mode), Level: dp.Level(*level), Rounds: *rounds,
		Epsilon: *eps, Delta: *delta, Clip: *clip, LearningRate: *lr, Model: *model, Features: *features, Classes: *classes, Hidden: *hidden,
		MinCohort: *minCohort, Colluders: *colluders, PhaseTimeout: *phase, TrainTimeout: *train, RoundAttempts: *attempts, JoinWait: *join, State: *state, LedgerKey: *ledgerKey, Logger: log,
		Ranges: featureRanges, StatisticsShare: *share, PublicStatistics: *share == 0, Rows: *rows,
		Progress: func(res protocol.RoundResult) {
			if tty {
				fmt.Fprintf(stderr, "round %d/%d: %s, %d sites, ε %.4f\n", res.Round, *rounds, res.Status, res.Participants, res.Epsilon)
			}
		},
		Passphrase: pass, Events: evlog, KeepCheckpoints: *keep, AnnouncePlan: true,
	})
	if err != nil {
		return fail(stderr, err, "")
	}
	if *metricsAddr != "" {
		mlis, err := listenMetrics(*metricsAddr, stderr)
		if err != nil {
			return fail(stderr, err, "")
		}
		msrv := &http.Server{Handler: c.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second}
		go msrv.Serve(mlis)
		defer msrv.Close()
		log.Info("metrics", "addr", "http://"+mlis.Addr().String()+"/metrics")
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fail(stderr, err, "")
	}
	go c.Serve(lis)
	defer c.Shutdown(10 * time.Second)
	ctx, stop := signalContext()
	defer stop()
	log.Info("listening", "addr", lis.Addr().String(), "mode", *mode, "sites", len(r.Sites))
	sum, err := c.Run(ctx)
	if err != nil {
		return fail(stderr, interrupted(ctx, err), "restarting on the same --state resumes after the last charged round")
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
