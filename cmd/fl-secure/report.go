package main

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/dp/report"
	"github.com/fl-secure/fl-secure/protocol"
)

const reportHelp = `Usage: fl-secure budget report --ledger FILE|DIR --key PUBKEY --out report.html
         [--roster FILE] [--checkpoint FILE]... [--witness NAME=PUBKEY]...
         [--name NAME] [--site-ledger FILE --site-key PUBKEY [--site-name NAME]]...

Writes one self-contained HTML page (no external assets) for a privacy
officer: whether the ledgers verify, what they protect in plain language
(at client level the hospital's ε and the larger per-patient ε, each with
its neighbouring relation), ε per round against the cap and whether each
round's sum was opened, per-hospital budgets, the checkpoints checked and
who cosigned them, and how the safeguards relate to HIPAA and GDPR.

The ledger is audited as budget audit does it: against the checkpoint
beside it, the copies in its witness directory and each --checkpoint (a
copy kept elsewhere, such as a hospital's coordinator.checkpoint); each
file is read once and what the page shows is what was verified. Without a
--checkpoint the page warns that truncation or rollback cannot be
detected. --witness names a witness whose cosignatures are verified;
--roster makes every hospital of the federation's roster one (cosigning as
fl-secure/site/N under its identity key) and gives the coordinator's
ledger key when --key is omitted. --ledger may name the coordinator's
state directory.

Exits 1 if any ledger fails verification. The page then names the failing
entry and shows only the entries before it, labelled as verified; a ledger
that does not match a checkpoint (cut short, rolled back or rewritten)
gets a red banner naming the problem and no figures at all.

Hospitals are named by --site-name, given once for every --site-ledger in
the same order, or else by the site number in the client.conf of the kit
the ledger lives in (KIT/client.conf with state = the ledger's directory).
The runs of fl-secure simulate keep a site's ledger outside its kit: name
those hospitals with --site-name.

Examples:
  fl-secure budget report --ledger fed/coordinator/state/coordinator-ledger.jsonl \
    --key "$(cat fed/coordinator/state/ledger.pub)" --out report.html \
    --site-ledger fed/site-1/state/site-ledger.jsonl --site-key "$(cat fed/site-1/state/ledger.pub)"
  fl-secure budget report --ledger fed/coordinator/state --roster fed/coordinator/roster.json \
    --checkpoint fed/site-1/state/coordinator.checkpoint --out report.html
`

func budgetReport(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("budget report", reportHelp, stderr)
	path := fs.String("ledger", "", "ledger file, or the coordinator's state directory")
	keyText := fs.String("key", "", "the ledger owner's Ed25519 public key (default: the roster's coordinator ledger key)")
	out := fs.String("out", "", "HTML file to write")
	name := fs.String("name", "", "the ledger's name in the report (default: Coordinator, or the site of its kit)")
	rosterPath := fs.String("roster", "", "the federation's roster: its hospitals are the witnesses")
	var checkpoints, witnesses multi
	fs.Var(&checkpoints, "checkpoint", "a signed checkpoint of the ledger kept elsewhere (repeatable)")
	fs.Var(&witnesses, "witness", "NAME=PUBKEY of a witness whose cosignatures to verify (repeatable)")
	var siteLedgers, siteKeys, siteNames multi
	fs.Var(&siteLedgers, "site-ledger", "a hospital's ledger (repeatable, paired with --site-key)")
	fs.Var(&siteKeys, "site-key", "that hospital's ledger key")
	fs.Var(&siteNames, "site-name", "that hospital's name (given for every --site-ledger or for none)")
	if help, err := parse(args, "ledger", "out"); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure budget report -h"`)
		}
		return 0
	}
	if fi, err := os.Stat(*path); err == nil && fi.IsDir() {
		*path = filepath.Join(*path, coordinatorLedger)
	}
	opt := report.Options{CheckpointFiles: checkpoints}
	given, err := parseWitnesses(witnesses)
	if err != nil {
		return fail(stderr, err, "")
	}
	for _, n := range slices.Sorted(maps.Keys(given)) {
		opt.Witnesses = append(opt.Witnesses, report.Witness{Name: n, Key: given[n]})
	}
	if *rosterPath != "" {
		ws, key, err := rosterWitnesses(*rosterPath, filepath.Dir(*path))
		if err != nil {
			return fail(stderr, err, "")
		}
		switch {
		case *keyText == "":
			*keyText = key
		case *keyText != key:
			if k, err := dp.ParsePublicKey(*keyText); err == nil && base64.StdEncoding.EncodeToString(k) != key {
				return fail(stderr, usagef("--key is not the coordinator ledger key the roster %s names (%s)", *rosterPath, key), "")
			}
		}
		for _, w := range ws {
			if _, dup := given[w.Name]; dup {
				return fail(stderr, usagef("--witness %s is a hospital of the roster already", w.Name), "")
			}
			opt.Witnesses = append(opt.Witnesses, w)
		}
	}
	if *keyText == "" {
		return fail(stderr, usagef("--key is required (or a --roster that names the coordinator's ledger key)"), `run "fl-secure budget report -h"`)
	}
	if len(siteLedgers) != len(siteKeys) {
		return fail(stderr, usagef("%d --site-ledger and %d --site-key: give them in pairs", len(siteLedgers), len(siteKeys)), "")
	}
	if len(siteNames) != 0 && len(siteNames) != len(siteLedgers) {
		return fail(stderr, usagef("%d --site-name for %d --site-ledger: name every hospital or none", len(siteNames), len(siteLedgers)), "")
	}
	load := func(name, path, key string, opt report.Options) (report.Ledger, error) {
		pub, err := dp.ParsePublicKey(key)
		if err != nil {
			return report.Ledger{}, usagef("key of %s: %v", path, err)
		}
		return report.Load(name, path, pub, opt)
	}
	mainName := *name
	if mainName == "" {
		mainName = ledgerName(*path, "Ledger")
	}
	main, err := load(mainName, *path, *keyText, opt)
	if err != nil {
		return fail(stderr, err, "")
	}
	var sites []report.Ledger
	for i := range siteLedgers {
		n := ledgerName(siteLedgers[i], "")
		if len(siteNames) > 0 {
			n = siteNames[i]
		}
		if n == "" {
			n = fmt.Sprintf("unnamed hospital: --site-ledger number %d (give --site-name)", i+1)
			fmt.Fprintf(stderr, "fl-secure: warning: %s is in no site kit; the report calls it %q\n", siteLedgers[i], n)
		}
		l, err := load(n, siteLedgers[i], siteKeys[i], report.Options{})
		if err != nil {
			return fail(stderr, err, "")
		}
		sites = append(sites, l)
	}
	f, err := os.Create(*out)
	if err != nil {
		return fail(stderr, err, "")
	}
	if err := report.Write(f, report.Report{Main: main, Sites: sites, Time: time.Now()}); err != nil {
		f.Close()
		return fail(stderr, err, "")
	}
	if err := f.Close(); err != nil {
		return fail(stderr, err, "")
	}
	code := 0
	for _, l := range append([]report.Ledger{main}, sites...) {
		if !l.OK() {
			err := l.Err
			if err == nil {
				err = l.TreeErr
			}
			fmt.Fprintf(stderr, "fl-secure: error: %s (%s): %v\n", l.Name, l.Path, err)
			code = 1
		}
	}
	if main.Limit != "" {
		fmt.Fprintf(stderr, "fl-secure: warning: %s: %s\n", main.Name, main.Limit)
	}
	if code != 0 {
		fmt.Fprintf(stderr, "fl-secure: hint: the report %s names the failing entries and shows only what verified\n", *out)
		return code
	}
	fmt.Fprintf(stdout, "report written to %s\n", *out)
	return 0
}

// coordinatorLedger is the coordinator's ledger file in its state
// directory.
const coordinatorLedger = "coordinator-ledger.jsonl"

// rosterWitnesses returns the hospitals of the roster at path as the
// witnesses of the coordinator's ledger (protocol.WitnessCheckpoints over
// the coordinator's state directory state: each cosigns under its
// protocol.WitnessName with its roster identity key), and the coordinator
// ledger key the roster names. Only names and keys are taken from it: the
// checkpoints themselves are read once by report.Load, with the ledger.
func rosterWitnesses(path, state string) ([]report.Witness, string, error) {
	roster, err := protocol.LoadRoster(path)
	if err != nil {
		return nil, "", err
	}
	sws, err := protocol.WitnessCheckpoints(state, roster)
	if err != nil {
		return nil, "", err
	}
	var out []report.Witness
	for _, sw := range sws {
		k, err := dp.ParsePublicKey(sw.Key)
		if err != nil {
			return nil, "", fmt.Errorf("roster %s: site %d: %v", path, sw.Site, err)
		}
		out = append(out, report.Witness{Name: sw.Name, Key: k, Label: fmt.Sprintf("Site %d", sw.Site)})
	}
	return out, roster.Coordinator.LedgerKey, nil
}

// ledgerName names a ledger from where it lives: the coordinator's ledger
// file, or a site kit's ledger (KIT/client.conf whose state directory
// holds it) by its site number. Otherwise it returns def.
func ledgerName(path, def string) string {
	if filepath.Base(path) == coordinatorLedger {
		return "Coordinator"
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return def
	}
	conf := filepath.Join(filepath.Dir(dir), "client.conf")
	site, state, ok := readSiteConf(conf)
	if !ok {
		return def
	}
	if !filepath.IsAbs(state) {
		state = filepath.Join(filepath.Dir(conf), state)
	}
	if filepath.Clean(state) != dir {
		return def
	}
	return fmt.Sprintf("Site %d", site)
}

// readSiteConf reads the site number and state directory (default
// "state") from a client.conf; ok is false if it has no valid site number.
func readSiteConf(path string) (site int, state string, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", false
	}
	defer f.Close()
	state = "state"
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		t, _, _ := strings.Cut(sc.Text(), "#")
		k, v, found := strings.Cut(t, "=")
		if !found {
			continue
		}
		switch strings.TrimSpace(k) {
		case "site":
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 1 {
				return 0, "", false
			}
			site, ok = n, true
		case "state":
			state = strings.TrimSpace(v)
		}
	}
	return site, state, ok && sc.Err() == nil
}
