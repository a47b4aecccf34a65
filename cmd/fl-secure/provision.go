package main

import (
	"fmt"
	"io"
	"io/fs"
	"path/filepath"

	"github.com/fl-secure/fl-secure/protocol"
)

func provisionCmd(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("provision", `Usage: fl-secure provision --sites N --out DIR [--host NAME]... [--passphrase-file FILE]
       fl-secure provision --out DIR --add-site NAME
       fl-secure provision --out DIR --renew

Creates a federation: a CA, the coordinator's certificate and key, and one
kit per site (certificate, key, Ed25519 identity key, roster, the
coordinator's pin, config template). Private keys are written 0600. The
federation is built beside DIR and renamed to DIR when complete, so a run
that fails leaves nothing behind; DIR must not exist or be empty. Hand
each site-N directory to its hospital over a trusted channel.

The CA's private key is kept as DIR/ca-key.pem, so that sites can be added
and certificates renewed later. Whoever holds it (and the passphrase) can
issue certificates for this federation: keep DIR off the coordinator's
machine, or move ca-key.pem offline between uses.

With a passphrase (the first line of --passphrase-file FILE, a file only
its owner may read, or else the FL_SECURE_PASSPHRASE environment
variable) every private key is encrypted (age, scrypt), the CA's
included; the coordinator and the clients then need the same passphrase,
and each hospital should get it by another channel than its kit. Without
one the keys, the CA's too, are written UNENCRYPTED, with a warning.

--add-site NAME adds a site to the federation in DIR: a new kit
DIR/site-N (N the next roster id, NAME recorded in the roster) with a
certificate from the kept CA, and a roster that lists it, written to
DIR/coordinator/roster.json and every DIR/site-K/roster.json. The roster
is every party's trust anchor: restart the coordinator with the new
roster and give every existing site its new roster.json. Until then the
coordinator refuses the new site's certificate, and a site with the old
roster refuses to join, saying which file to replace.

--renew issues new certificates from the kept CA for the keys the
coordinator and the sites already have, and replaces every cert.pem,
coordinator.pin and roster.json in DIR (every site's kit must be there).
Stop the coordinator, renew, give each site its three new files, restart.

Certificate lifetimes: the CA is valid for 5 years; the coordinator's and
the sites' certificates for 2 years, never past the CA's end. Renew
before they expire (the coordinator logs an expired site certificate as
"client certificate expired on DATE"); once the CA expires, provision a
new federation.

Example:
  FL_SECURE_PASSPHRASE="$(cat /secure/passphrase)" fl-secure provision --sites 3 --out fed
  FL_SECURE_PASSPHRASE="$(cat /secure/passphrase)" fl-secure provision --out fed --add-site st-marys
`, stderr)
	sites := fs.Int("sites", 0, "number of sites (3 to 1000)")
	out := fs.String("out", "", "the federation's directory")
	var hosts multi
	fs.Var(&hosts, "host", "the coordinator's DNS name or IP for its certificate (repeatable; default localhost and 127.0.0.1; with --add-site and --renew, those of its current certificate)")
	demo := fs.String("demo-data", "", "for a walkthrough: split an embedded data set (wdbc) over the kits as site-N/local.csv, with coordinator/test.csv")
	addSite := fs.String("add-site", "", "add one site, named NAME, to the federation in --out")
	renew := fs.Bool("renew", false, "renew the certificates of the federation in --out")
	asJSON := fs.Bool("json", false, "print what was written as JSON")
	passFile := passphraseFlag(fs)
	if help, err := parse(args, "out"); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure provision -h"`)
		}
		return 0
	}
	if *addSite == "" && !*renew && *sites == 0 {
		return fail(stderr, usagef("missing --sites"), `run "fl-secure provision -h"`)
	}
	switch {
	case *addSite != "" && *renew:
		return fail(stderr, usagef("--add-site and --renew: give one"), "")
	case (*addSite != "" || *renew) && (*sites != 0 || *demo != ""):
		return fail(stderr, usagef("--sites and --demo-data create a federation; --add-site and --renew change the one in --out"), "")
	}
	pass, err := passphrase(*passFile)
	if err != nil {
		return fail(stderr, err, "")
	}
	// Ctrl-C stops between keys and leaves nothing behind; a provisioning
	// killed outright can leave its building directory, with keys in it.
	ctx, stop := signalContext()
	defer stop()
	opts := &protocol.ProvisionOptions{Hosts: hosts, Passphrase: pass, Context: ctx}
	for _, d := range protocol.StaleProvisions(*out) {
		fmt.Fprintf(stderr, "fl-secure: warning: %s was left by a provisioning that was killed: it may hold private keys (the CA's among them); remove it\n", d)
	}
	if !pass.IsSet() && *addSite != "" {
		fmt.Fprintln(stderr, "fl-secure: warning: no passphrase: the kits' private keys are written UNENCRYPTED; give FL_SECURE_PASSPHRASE or --passphrase-file")
	}
	switch {
	case *addSite != "":
		id, err := protocol.AddSite(*out, *addSite, opts)
		if err != nil {
			return fail(stderr, interrupted(ctx, err), "")
		}
		kit := filepath.Join(*out, fmt.Sprintf("site-%d", id))
		if *asJSON {
			files, err := listFiles(kit)
			if err != nil {
				return fail(stderr, err, "")
			}
			return printJSON(stdout, stderr, provisionJSON{Out: *out, Added: &addedSite{ID: id, Name: *addSite, Kit: kit}, Files: files,
				Rosters: rosterFiles(*out), Encrypted: pass.IsSet()})
		}
		fmt.Fprintf(stdout, "site %d (%s) written to %s\n", id, *addSite, kit)
		fmt.Fprintf(stdout, "the roster changed: restart the coordinator with %s and give every site its new roster.json\n",
			filepath.Join(*out, "coordinator", "roster.json"))
		return 0
	case *renew:
		files, err := protocol.Renew(*out, opts)
		if err != nil {
			return fail(stderr, interrupted(ctx, err), "")
		}
		if *asJSON {
			return printJSON(stdout, stderr, provisionJSON{Out: *out, Renewed: true, Files: files})
		}
		fmt.Fprintf(stdout, "%d files replaced in %s: new certificates valid for 2 years\n", len(files), *out)
		fmt.Fprintln(stdout, "give every site its new cert.pem, coordinator.pin and roster.json, and restart the coordinator")
		return 0
	}
	if !pass.IsSet() {
		fmt.Fprintf(stderr, "fl-secure: warning: no passphrase: the kits' private keys are written UNENCRYPTED, the CA's too (%s: whoever reads it can issue certificates for this federation); give FL_SECURE_PASSPHRASE or --passphrase-file\n",
			filepath.Join(*out, protocol.CAKeyFile))
	}
	if *demo != "" {
		opts.Populate = func(dir string) error { return writeDemoData(dir, *demo, *sites) }
	}
	if err := protocol.Provision(*out, *sites, opts); err != nil {
		return fail(stderr, interrupted(ctx, err), "")
	}
	if *asJSON {
		files, err := listFiles(*out)
		if err != nil {
			return fail(stderr, err, "")
		}
		return printJSON(stdout, stderr, provisionJSON{Out: *out, Sites: *sites, CAKey: filepath.Join(*out, protocol.CAKeyFile),
			Files: files, Encrypted: pass.IsSet()})
	}
	fmt.Fprintf(stdout, "federation of %d sites written to %s: coordinator/ and site-1 … site-%d/\n", *sites, *out, *sites)
	fmt.Fprintf(stdout, "CA key: %s (needed for --add-site and --renew; keep it offline)\n", filepath.Join(*out, protocol.CAKeyFile))
	return 0
}

// provisionJSON is what provision --json prints.
type provisionJSON struct {
	Out     string     `json:"out"`
	Sites   int        `json:"sites,omitempty"`
	CAKey   string     `json:"ca_key,omitempty"`
	Added   *addedSite `json:"added_site,omitempty"`
	Renewed bool       `json:"renewed,omitempty"`
	// Files are the files written (created or replaced); Rosters the
	// rosters replaced by --add-site.
	Files     []string `json:"files"`
	Rosters   []string `json:"rosters,omitempty"`
	Encrypted bool     `json:"keys_encrypted"`
}

type addedSite struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
	Kit  string `json:"kit"`
}

// listFiles returns the regular files under dir.
func listFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	return files, err
}

// rosterFiles returns the roster files under out.
func rosterFiles(out string) []string {
	files, _ := filepath.Glob(filepath.Join(out, "site-*", "roster.json"))
	return append(files, filepath.Join(out, "coordinator", "roster.json"))
}
