package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/dp/report"
)

func budgetReport(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("budget report", "Usage: fl-secure budget report --ledger FILE --key PUBKEY --out report.html [--site-ledger FILE --site-key PUBKEY]...\n\nWrites one self-contained HTML page (no external assets) for a privacy officer: whether the ledger verifies, what it protects in plain language, ε per round against the cap, per-site budgets, and how the safeguards relate to HIPAA and GDPR. Exits 1 if any ledger fails verification; the page then says so at the top.\n", stderr)
	path := fs.String("ledger", "", "ledger file")
	keyText := fs.String("key", "", "the ledger owner's Ed25519 public key")
	out := fs.String("out", "", "HTML file to write")
	var siteLedgers, siteKeys multi
	fs.Var(&siteLedgers, "site-ledger", "a hospital's ledger (repeatable, paired with --site-key)")
	fs.Var(&siteKeys, "site-key", "that hospital's ledger key")
	if help, err := parse(args, "ledger", "key", "out"); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure budget report -h"`)
		}
		return 0
	}
	if len(siteLedgers) != len(siteKeys) {
		return fail(stderr, usagef("%d --site-ledger and %d --site-key: give them in pairs", len(siteLedgers), len(siteKeys)), "")
	}
	load := func(name, path, key string) (report.Ledger, error) {
		pub, err := dp.ParsePublicKey(key)
		if err != nil {
			return report.Ledger{}, usageError(err.Error())
		}
		l := report.Ledger{Name: name, Path: path}
		l.Entries, _ = dp.ReadLedger(path)
		l.Audit, l.Err = dp.AuditLedger(path, pub)
		return l, nil
	}
	main, err := load("Ledger", *path, *keyText)
	if err != nil {
		return fail(stderr, err, "")
	}
	var sites []report.Ledger
	for i := range siteLedgers {
		l, err := load(fmt.Sprintf("Hospital ledger %s", filepath.Base(filepath.Dir(siteLedgers[i]))), siteLedgers[i], siteKeys[i])
		if err != nil {
			return fail(stderr, err, "")
		}
		sites = append(sites, l)
	}
	f, err := os.Create(*out)
	if err != nil {
		return fail(stderr, err, "")
	}
	if err := report.Write(f, main, sites, time.Now()); err != nil {
		f.Close()
		return fail(stderr, err, "")
	}
	if err := f.Close(); err != nil {
		return fail(stderr, err, "")
	}
	for _, l := range append([]report.Ledger{main}, sites...) {
		if !l.OK() {
			fmt.Fprintf(stderr, "fl-secure: error: %s: %v\n", l.Path, l.Err)
			fmt.Fprintf(stderr, "fl-secure: hint: the report %s says so at the top\n", *out)
			return 1
		}
	}
	fmt.Fprintf(stdout, "report written to %s\n", *out)
	return 0
}
