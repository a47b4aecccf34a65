package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/dp/report"
)

const reportHelp = `Usage: fl-secure budget report --ledger FILE --key PUBKEY --out report.html
         [--name NAME] [--site-ledger FILE --site-key PUBKEY [--site-name NAME]]...

Writes one self-contained HTML page (no external assets) for a privacy
officer: whether the ledgers verify, what they protect in plain language
(at client level the hospital's ε and the larger per-patient ε, each with
its neighbouring relation), ε per round against the cap, per-hospital
budgets, and how the safeguards relate to HIPAA and GDPR. Exits 1 if any
ledger fails verification; the page then names the failing entry and shows
only the entries before it, labelled as verified.

Hospitals are named by --site-name, given once for every --site-ledger in
the same order, or else by the site number in the client.conf of the kit
the ledger lives in (KIT/client.conf with state = the ledger's directory).
The runs of fl-secure simulate keep a site's ledger outside its kit: name
those hospitals with --site-name.

Example:
  fl-secure budget report --ledger fed/coordinator/state/coordinator-ledger.jsonl \
    --key "$(cat fed/coordinator/state/ledger.pub)" --out report.html \
    --site-ledger fed/site-1/state/site-ledger.jsonl --site-key "$(cat fed/site-1/state/ledger.pub)"
`

func budgetReport(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("budget report", reportHelp, stderr)
	path := fs.String("ledger", "", "ledger file")
	keyText := fs.String("key", "", "the ledger owner's Ed25519 public key")
	out := fs.String("out", "", "HTML file to write")
	name := fs.String("name", "", "the ledger's name in the report (default: Coordinator, or the site of its kit)")
	var siteLedgers, siteKeys, siteNames multi
	fs.Var(&siteLedgers, "site-ledger", "a hospital's ledger (repeatable, paired with --site-key)")
	fs.Var(&siteKeys, "site-key", "that hospital's ledger key")
	fs.Var(&siteNames, "site-name", "that hospital's name (given for every --site-ledger or for none)")
	if help, err := parse(args, "ledger", "key", "out"); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure budget report -h"`)
		}
		return 0
	}
	if len(siteLedgers) != len(siteKeys) {
		return fail(stderr, usagef("%d --site-ledger and %d --site-key: give them in pairs", len(siteLedgers), len(siteKeys)), "")
	}
	if len(siteNames) != 0 && len(siteNames) != len(siteLedgers) {
		return fail(stderr, usagef("%d --site-name for %d --site-ledger: name every hospital or none", len(siteNames), len(siteLedgers)), "")
	}
	load := func(name, path, key string) (report.Ledger, error) {
		pub, err := dp.ParsePublicKey(key)
		if err != nil {
			return report.Ledger{}, usagef("key of %s: %v", path, err)
		}
		return report.Load(name, path, pub)
	}
	mainName := *name
	if mainName == "" {
		mainName = ledgerName(*path, "Ledger")
	}
	main, err := load(mainName, *path, *keyText)
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
		l, err := load(n, siteLedgers[i], siteKeys[i])
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
			fmt.Fprintf(stderr, "fl-secure: error: %s (%s): %v\n", l.Name, l.Path, l.Err)
			code = 1
		}
	}
	if code != 0 {
		fmt.Fprintf(stderr, "fl-secure: hint: the report %s names the failing entries and shows only what verified\n", *out)
		return code
	}
	fmt.Fprintf(stdout, "report written to %s\n", *out)
	return 0
}

// ledgerName names a ledger from where it lives: the coordinator's ledger
// file, or a site kit's ledger (KIT/client.conf whose state directory
// holds it) by its site number. Otherwise it returns def.
func ledgerName(path, def string) string {
	if filepath.Base(path) == "coordinator-ledger.jsonl" {
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
