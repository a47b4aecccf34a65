package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol"
)

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
