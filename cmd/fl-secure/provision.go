package main

import (
	"fmt"
	"io"

	"github.com/fl-secure/fl-secure/protocol"
)

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
