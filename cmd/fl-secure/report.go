package main

import (
	"bufio"
	"crypto/ed25519"
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

const reportHelp = `Usage: fl-secure budget report --ledger FILE|DIR (--roster FILE | --key PUBKEY) --out report.html
         [--json] [--checkpoint FILE]... [--witness NAME=PUBKEY]... [--name NAME]
         [--site-ledger FILE [--site N] [--site-key PUBKEY] [--site-name NAME]]...

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
detected. --witness names a witness whose cosignatures are verified.
--ledger may name the coordinator's state directory.

Every ledger is verified under its owner's key from the federation's
roster (--roster, a kit's roster.json from provisioning), which names the
coordinator's ledger key and every hospital's: the hospital of each
--site-ledger is its --site N, or the site number in the client.conf of the
kit the ledger lives in. --roster also makes every hospital of the roster a
witness (cosigning as fl-secure/site/N under its identity key). --key and
--site-key give keys without a roster (or where an older roster names
none); one that contradicts the roster is refused. Never take a key from
the directory a ledger is in: whoever can replace the ledger there can
replace a key there too.

Exits 1 if any ledger fails verification. The page then names the failing
entry and shows only the entries before it, labelled as verified; a ledger
that does not match a checkpoint (cut short, rolled back or rewritten)
gets a red banner naming the problem and no figures at all.

Hospitals are named by --site-name, given once for every --site-ledger in
the same order, or else "Site N" by their --site N or the site number in
the client.conf of the kit the ledger lives in (KIT/client.conf with
state = the ledger's directory). The runs of fl-secure simulate keep a
site's ledger outside its kit: give those hospitals' --site.

Examples:
  fl-secure budget report --ledger fed/coordinator/state --roster fed/coordinator/roster.json \
    --checkpoint fed/site-1/state/coordinator.checkpoint --out report.html \
    --site-ledger fed/site-1/state/site-ledger.jsonl --site-ledger fed/site-2/state/site-ledger.jsonl
  fl-secure budget report --ledger run/coordinator/coordinator-ledger.jsonl --roster run/kits/coordinator/roster.json \
    --site-ledger run/site-1/site-ledger.jsonl --site 1 --out report.html
`

func budgetReport(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("budget report", reportHelp, stderr)
	path := fs.String("ledger", "", "ledger file, or the coordinator's state directory")
	keyText := fs.String("key", "", "the ledger owner's Ed25519 public key (default: the roster's coordinator ledger key)")
	out := fs.String("out", "", "HTML file to write")
	name := fs.String("name", "", "the ledger's name in the report (default: Coordinator, or the site of its kit)")
	rosterPath := fs.String("roster", "", "the federation's roster: it names every ledger's key, and its hospitals are the witnesses")
	var checkpoints, witnesses multi
	fs.Var(&checkpoints, "checkpoint", "a signed checkpoint of the ledger kept elsewhere (repeatable)")
	fs.Var(&witnesses, "witness", "NAME=PUBKEY of a witness whose cosignatures to verify (repeatable)")
	asJSON := fs.Bool("json", false, "print what was written and whether each ledger verified as JSON")
	var siteLedgers, siteIDs, siteKeys, siteNames multi
	fs.Var(&siteLedgers, "site-ledger", "a hospital's ledger (repeatable)")
	fs.Var(&siteIDs, "site", "that hospital's site number in the roster (given for every --site-ledger or for none; default: from its kit's client.conf)")
	fs.Var(&siteKeys, "site-key", "that hospital's ledger key (given for every --site-ledger or for none; default: the roster's)")
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
	var roster *protocol.Roster
	if *rosterPath != "" {
		if roster, err = protocol.LoadRoster(*rosterPath); err != nil {
			return fail(stderr, err, "")
		}
		ws, err := rosterWitnesses(roster, *rosterPath, filepath.Dir(*path))
		if err != nil {
			return fail(stderr, err, "")
		}
		for _, w := range ws {
			if _, dup := given[w.Name]; dup {
				return fail(stderr, usagef("--witness %s is a hospital of the roster already", w.Name), "")
			}
			opt.Witnesses = append(opt.Witnesses, w)
		}
	}
	for _, n := range []struct {
		flag string
		m    multi
	}{{"--site", siteIDs}, {"--site-key", siteKeys}, {"--site-name", siteNames}} {
		if len(n.m) != 0 && len(n.m) != len(siteLedgers) {
			return fail(stderr, usagef("%d %s for %d --site-ledger: give it for every hospital or for none", len(n.m), n.flag, len(siteLedgers)), "")
		}
	}
	var mainPub ed25519.PublicKey
	if roster != nil {
		mainPub, err = rosterKey(roster, *rosterPath, 0, *keyText, "--key")
	} else if *keyText == "" {
		err = usagef("--key is required (or a --roster that names the coordinator's ledger key)")
	} else if mainPub, err = dp.ParsePublicKey(*keyText); err != nil {
		err = usagef("--key: %v", err)
	}
	if err != nil {
		return fail(stderr, err, `run "fl-secure budget report -h"`)
	}
	mainName := *name
	if mainName == "" {
		mainName = ledgerName(*path, "Ledger")
	}
	main, err := report.Load(mainName, *path, mainPub, opt)
	if err != nil {
		return fail(stderr, err, "")
	}
	var sites []report.Ledger
	for i, path := range siteLedgers {
		site, inKit := siteOfLedger(path)
		if len(siteIDs) > 0 {
			n, err := strconv.Atoi(siteIDs[i])
			if err != nil || n < 1 {
				return fail(stderr, usagef("--site %q: want a site number", siteIDs[i]), "")
			}
			if inKit && n != site {
				return fail(stderr, usagef("--site %d for %s, which is in the kit of site %d", n, path, site), "")
			}
			site, inKit = n, true
		}
		keyText := ""
		if len(siteKeys) > 0 {
			keyText = siteKeys[i]
		}
		var pub ed25519.PublicKey
		switch {
		case roster != nil && inKit:
			pub, err = rosterKey(roster, *rosterPath, site, keyText, "--site-key")
		case roster != nil && keyText == "":
			err = usagef("which hospital's is %s? give --site N for every --site-ledger (its key is the roster's)", path)
		case keyText == "":
			err = usagef("no key for %s: give --roster (with --site N) or --site-key", path)
		default:
			if pub, err = dp.ParsePublicKey(keyText); err != nil {
				err = usagef("--site-key of %s: %v", path, err)
			} else if roster != nil && roster.SiteLedgerKey(1) != nil {
				// No site number: the key must still be one the roster
				// names, and that says whose ledger it is.
				if site = rosterSiteOfKey(roster, pub); site == 0 {
					err = usagef("--site-key of %s is no hospital's ledger key in the roster %s", path, *rosterPath)
				}
				inKit = site != 0
			}
		}
		if err != nil {
			return fail(stderr, err, `run "fl-secure budget report -h"`)
		}
		n := ""
		switch {
		case len(siteNames) > 0:
			n = siteNames[i]
		case inKit:
			n = fmt.Sprintf("Site %d", site)
		}
		if n == "" {
			n = fmt.Sprintf("unnamed hospital: --site-ledger number %d (give --site or --site-name)", i+1)
			fmt.Fprintf(stderr, "fl-secure: warning: %s is in no site kit; the report calls it %q\n", path, n)
		}
		// A hospital's ledger is witnessed by no other party; its signed
		// state anchors its tree head, which catches a ledger cut short or
		// put back from an earlier copy without the state.
		var sopt report.Options
		if roster != nil && site > 0 {
			head, ok, err := protocol.SiteLedgerHead(filepath.Dir(path), roster, site)
			if err != nil {
				return fail(stderr, err, "")
			}
			if ok {
				sopt.Heads = []dp.TreeHead{head}
			}
		}
		l, err := report.Load(n, path, pub, sopt)
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
	var results []reportLedgerJSON
	for _, l := range append([]report.Ledger{main}, sites...) {
		r := reportLedgerJSON{Name: l.Name, Path: l.Path, OK: l.OK(), Verified: l.Verified, Entries: len(l.Entries), Limit: l.Limit}
		if !l.OK() {
			err := l.Err
			if err == nil {
				err = l.TreeErr
			}
			r.Error = fmt.Sprint(err)
			fmt.Fprintf(stderr, "fl-secure: error: %s (%s): %v\n", l.Name, l.Path, err)
			code = 1
		}
		results = append(results, r)
	}
	for _, l := range append([]report.Ledger{main}, sites...) {
		if l.Limit != "" {
			fmt.Fprintf(stderr, "fl-secure: warning: %s: %s\n", l.Name, l.Limit)
		}
	}
	if *asJSON {
		if c := printJSON(stdout, stderr, map[string]any{"report": *out, "ok": code == 0, "ledgers": results}); c != 0 {
			return c
		}
	}
	if code != 0 {
		fmt.Fprintf(stderr, "fl-secure: hint: the report %s names the failing entries and shows only what verified\n", *out)
		return code
	}
	if !*asJSON {
		fmt.Fprintf(stdout, "report written to %s\n", *out)
	}
	return 0
}

// reportLedgerJSON is one ledger in budget report's JSON.
type reportLedgerJSON struct {
	Name     string `json:"name"`
	Path     string `json:"path"`
	OK       bool   `json:"ok"`
	Verified int    `json:"verified_entries"`
	Entries  int    `json:"entries"`
	Error    string `json:"error,omitempty"`
	Limit    string `json:"limit,omitempty"`
}

// rosterSiteOfKey returns the site whose ledger key in roster is pub, or 0.
func rosterSiteOfKey(roster *protocol.Roster, pub ed25519.PublicKey) int {
	for i := range roster.Sites {
		if roster.SiteLedgerKey(i + 1).Equal(pub) {
			return i + 1
		}
	}
	return 0
}

// coordinatorLedger is the coordinator's ledger file in its state
// directory.
const coordinatorLedger = "coordinator-ledger.jsonl"

// rosterWitnesses returns the hospitals of roster (read from path) as the
// witnesses of the coordinator's ledger (protocol.WitnessCheckpoints over
// the coordinator's state directory state: each cosigns under its
// protocol.WitnessName with its roster identity key). Only names and keys
// are taken from it: the checkpoints themselves are read once by
// report.Load, with the ledger.
func rosterWitnesses(roster *protocol.Roster, path, state string) ([]report.Witness, error) {
	sws, err := protocol.WitnessCheckpoints(state, roster)
	if err != nil {
		return nil, err
	}
	var out []report.Witness
	for _, sw := range sws {
		k, err := dp.ParsePublicKey(sw.Key)
		if err != nil {
			return nil, fmt.Errorf("roster %s: site %d: %v", path, sw.Site, err)
		}
		out = append(out, report.Witness{Name: sw.Name, Key: k, Label: fmt.Sprintf("Site %d", sw.Site)})
	}
	return out, nil
}

// ledgerName names a ledger from where it lives: the coordinator's ledger
// file, or a site kit's ledger (siteOfLedger) by its site number.
// Otherwise it returns def.
func ledgerName(path, def string) string {
	if filepath.Base(path) == coordinatorLedger {
		return "Coordinator"
	}
	if site, ok := siteOfLedger(path); ok {
		return fmt.Sprintf("Site %d", site)
	}
	return def
}

// siteOfLedger returns the site number of the kit a ledger lives in:
// KIT/client.conf whose state directory holds it. The kit, not the state
// directory, says which site it is.
func siteOfLedger(path string) (int, bool) {
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return 0, false
	}
	conf := filepath.Join(filepath.Dir(dir), "client.conf")
	site, state, ok := readSiteConf(conf)
	if !ok {
		return 0, false
	}
	if !filepath.IsAbs(state) {
		state = filepath.Join(filepath.Dir(conf), state)
	}
	if filepath.Clean(state) != dir {
		return 0, false
	}
	return site, true
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
