package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/protocol"
)

const budgetUsage = `Usage:
  fl-secure budget show    --ledger FILE [--json]     ε per round, cumulative ε, budget left
  fl-secure budget audit   --ledger FILE (--roster FILE (--coordinator | --site N) | --key PUBKEY)
                           [--checkpoint FILE]... [--witness NAME=PUBKEY]... [--json]
                           verify every signature, recompute every ε, check the
                           ledger's tree against its checkpoints; exit 0 if all
                           holds, 1 naming the first problem
  fl-secure budget recover --ledger FILE [--json]     move an incomplete last line
                           (a crash mid-write) to FILE.torn
  fl-secure budget report  --ledger FILE (--roster FILE | --key PUBKEY) --out report.html
                           [--json] [--checkpoint FILE]... [--witness NAME=PUBKEY]...
                           [--site-ledger FILE [--site N] [--site-key PUBKEY]]...
                           a self-contained HTML report for a privacy officer;
                           exit 1 (and a red banner) if any ledger fails

PUBKEY is the ledger owner's Ed25519 public key, base64 or hex. The roster
from provisioning names the coordinator's ledger key and every hospital's:
take the key from there (--roster), or from another copy kept apart from
the ledger, never from the directory the ledger is in.

Examples:
  fl-secure budget show --ledger privacy.jsonl
  fl-secure budget audit --ledger fed/site-1/state/site-ledger.jsonl --roster fed/site-1/roster.json --site 1
  fl-secure budget audit --ledger privacy.jsonl --key 6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw=
  fl-secure help budget report
`

func budgetCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, budgetUsage)
		return 2
	}
	switch args[0] {
	case "show":
		return budgetShow(args[1:], stdout, stderr)
	case "audit":
		return budgetAudit(args[1:], stdout, stderr)
	case "recover":
		return budgetRecover(args[1:], stdout, stderr)
	case "report":
		return budgetReport(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, budgetUsage)
		return 0
	}
	return fail(stderr, usagef("unknown budget command %q", args[0]), `run "fl-secure budget help"`)
}

type shownRound struct {
	Seq          int64   `json:"seq"`
	Time         string  `json:"time"`
	RunID        string  `json:"run_id"`
	Round        int     `json:"round"`
	Release      string  `json:"release,omitempty"`
	Level        string  `json:"level"`
	Mechanism    string  `json:"mechanism"`
	Noise        float64 `json:"noise_multiplier"`
	SamplingRate float64 `json:"sampling_rate"`
	Steps        int     `json:"steps"`
	Survivors    int     `json:"survivors"`
	EpsilonRound float64 `json:"epsilon_round"`
	Epsilon      float64 `json:"epsilon"`
	// PatientEpsilon is the cumulative per-patient ε of a client-level
	// charge; Protects is the level's relation in words.
	PatientEpsilon float64 `json:"patient_epsilon,omitempty"`
	Protects       string  `json:"protects,omitempty"`
	Remaining      float64 `json:"remaining"`
	// Outcome is "opened", "NOT OPENED" or "not recorded".
	Outcome string `json:"outcome"`
}

// outcomeText is what budget show says became of the charge at entry seq.
func outcomeText(marks map[int64]dp.Outcome, seq int64) string {
	switch marks[seq] {
	case dp.Opened:
		return "opened"
	case dp.Unopened:
		return "NOT OPENED"
	}
	return "not recorded"
}

func budgetShow(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("budget show", "Usage: fl-secure budget show --ledger FILE [--json]\n\nShows each recorded round of a privacy ledger. It does not verify signatures: use audit for that.\n", stderr)
	path := fs.String("ledger", "", "ledger file")
	asJSON := fs.Bool("json", false, "print JSON")
	if help, err := parse(args, "ledger"); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure budget show -h"`)
		}
		return 0
	}
	entries, err := dp.ReadLedger(*path)
	if len(entries) == 0 {
		return fail(stderr, err, "")
	}
	open := entries[0]
	cpSize, cpText := besideCheckpoint(*path, open)
	marks := map[int64]dp.Outcome{}
	for _, e := range entries {
		if e.Kind == "outcome" {
			marks[e.Of] = e.Outcome
		}
	}
	var rows []shownRound
	for _, e := range entries[1:] {
		if e.Kind != "charge" {
			continue
		}
		rows = append(rows, shownRound{e.Seq, e.Time, e.RunID, e.Round, e.Release, string(e.Level), e.Mechanism, e.NoiseMultiplier,
			e.SamplingRate, e.Steps, e.Survivors, e.EpsilonRound, e.Epsilon, e.PatientEpsilon, e.Protects, open.Cap - e.Epsilon,
			outcomeText(marks, e.Seq)})
	}
	spent, patient, client := 0.0, 0.0, false
	if len(rows) > 0 {
		spent = rows[len(rows)-1].Epsilon
	}
	for _, r := range rows {
		if r.Level == string(dp.ClientLevel) {
			patient, client = r.PatientEpsilon, true
		}
	}
	if *asJSON {
		if rows == nil {
			rows = []shownRound{}
		}
		code := printJSON(stdout, stderr, map[string]any{
			"accountant": open.Accountant, "neighbouring": open.Relation, "delta": open.Delta,
			"epsilon_cap": open.Cap, "epsilon": spent, "remaining": open.Cap - spent, "rounds": rows,
			"entries": len(entries), "checkpoint_size": cpSize, "checkpoint": cpText,
			"patient_epsilon": patient,
		})
		if err != nil {
			return fail(stderr, err, "")
		}
		return code
	}
	fmt.Fprintf(stdout, "accountant %s, %s neighbours, δ = %g, ε cap %g\n", open.Accountant, open.Relation, open.Delta, open.Cap)
	const row = "%5v  %-12v %6v  %-10v %-6v %-17v %9v %9v %6v %11v %11v %11v %11v  %v\n"
	fmt.Fprintf(stdout, row, "seq", "run", "round", "release", "level", "mechanism", "noise", "rate", "steps", "ε round", "ε total", "ε patient", "ε left", "outcome")
	for _, r := range rows {
		release, pe := r.Release, "-"
		if release == "" {
			release = "-"
		}
		if r.Level == string(dp.ClientLevel) {
			pe = fmt.Sprintf("%.5g", r.PatientEpsilon)
		}
		fmt.Fprintf(stdout, row, r.Seq, r.RunID, r.Round, release, r.Level, r.Mechanism, fmt.Sprintf("%.4g", r.Noise),
			fmt.Sprintf("%.4g", r.SamplingRate), r.Steps, fmt.Sprintf("%.5g", r.EpsilonRound), fmt.Sprintf("%.5g", r.Epsilon), pe,
			fmt.Sprintf("%.5g", r.Remaining), r.Outcome)
	}
	fmt.Fprintf(stdout, "spent ε = %.6g of %g; %.6g left\n", spent, open.Cap, open.Cap-spent)
	if client {
		fmt.Fprintf(stdout, "  client level: ε = %.6g protects %s\n", spent, dp.ClientRelationText)
		fmt.Fprintf(stdout, "  per patient:  ε = %.6g protects %s\n", patient, dp.PatientRelationText)
	}
	fmt.Fprintf(stdout, "%d entries; checkpoint beside the ledger: %s\n", len(entries), cpText)
	if err != nil {
		return fail(stderr, err, "")
	}
	return 0
}

// besideCheckpoint reads the checkpoint beside the ledger at path under
// the key its open entry names (show verifies nothing else: audit does)
// and returns its size, or -1, and a line saying what was found.
func besideCheckpoint(path string, open dp.Entry) (int64, string) {
	cpPath := path + dp.CheckpointSuffix
	pub, err := dp.ParsePublicKey(open.Owner)
	if err != nil {
		return -1, fmt.Sprintf("not read (the open entry's owner key: %v)", err)
	}
	cp, err := dp.ReadCheckpoint(cpPath, pub, nil)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return -1, "MISSING (" + cpPath + ")"
	case err != nil:
		return -1, fmt.Sprintf("BAD: %v", err)
	}
	return cp.Size, fmt.Sprintf("%d entries (%s; run budget audit to check the ledger against it)", cp.Size, cpPath)
}

func budgetAudit(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("budget audit", `Usage: fl-secure budget audit --ledger FILE (--roster FILE (--coordinator | --site N) | --key PUBKEY)
         [--checkpoint FILE]... [--witness NAME=PUBKEY]... [--json]

Verifies a privacy ledger: every Ed25519 signature under the owner's key,
every cumulative ε recomputed from the recorded parameters with the
recorded accountant, and the ledger's Merkle tree (RFC 6962) against every
signed checkpoint: the one beside it (FILE.checkpoint), those in the
witness directory beside it, and each --checkpoint. Only a checkpoint kept
elsewhere (a witness's or a site's copy, given with --checkpoint) shows
that the ledger was not cut short together with its own checkpoint or
restored from an earlier copy. --witness names a witness whose
cosignatures are verified and listed.

The owner's key comes from the federation's roster (a kit's roster.json:
--coordinator for the coordinator's ledger, --site N for hospital N's) or
from --key; a --key that is not the roster's is refused. Take it from the
roster or another copy kept apart from the ledger, never from the
directory the ledger is in: whoever can replace the ledger there can
replace a key there too. A roster provisioned before it named the
hospitals' ledger keys needs --key for a hospital's ledger.

Exit 0 if everything holds; 1 naming the first problem.

Examples:
  fl-secure budget audit --ledger fed/coordinator/state/coordinator-ledger.jsonl \
      --roster fed/coordinator/roster.json --coordinator \
      --checkpoint fed/site-1/state/coordinator.checkpoint --witness fl-secure/site/1=E5j2LG0aRXxRumpLXz29L2n8qTIWIY3ImX5Ba9F9k8o=
  fl-secure budget audit --ledger fed/site-1/state/site-ledger.jsonl --roster fed/site-1/roster.json --site 1
`, stderr)
	path := fs.String("ledger", "", "ledger file")
	keyText := fs.String("key", "", "the owner's Ed25519 public key (base64 or hex; default: the roster's)")
	rosterPath := fs.String("roster", "", "the federation's roster, which names the ledger's key (with --coordinator or --site)")
	coordinator := fs.Bool("coordinator", false, "the ledger is the coordinator's: take its key from the roster")
	site := fs.Int("site", 0, "the ledger is hospital N's: take its key from the roster")
	var checkpoints, witnesses multi
	fs.Var(&checkpoints, "checkpoint", "a signed checkpoint of the ledger kept elsewhere (repeatable)")
	fs.Var(&witnesses, "witness", "NAME=PUBKEY of a witness whose cosignatures to verify (repeatable)")
	asJSON := fs.Bool("json", false, "print JSON")
	if help, err := parse(args, "ledger"); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure budget audit -h"`)
		}
		return 0
	}
	pub, err := auditKey(*keyText, *rosterPath, *coordinator, *site)
	if err != nil {
		return fail(stderr, err, `run "fl-secure budget audit -h"`)
	}
	opt := dp.AuditOptions{CheckpointFiles: checkpoints}
	if opt.Witnesses, err = parseWitnesses(witnesses); err != nil {
		return fail(stderr, err, "")
	}
	if *rosterPath != "" && *site > 0 {
		// A hospital's signed state anchors its ledger's tree head.
		r, err := protocol.LoadRoster(*rosterPath)
		if err != nil {
			return fail(stderr, err, "")
		}
		head, ok, err := protocol.SiteLedgerHead(filepath.Dir(*path), r, *site)
		if err != nil {
			return fail(stderr, err, "")
		}
		if ok {
			opt.Heads = []dp.TreeHead{head}
		}
	}
	a, err := dp.AuditLedger(*path, pub, opt)
	if *asJSON {
		if code := printJSON(stdout, stderr, a); code != 0 {
			return code
		}
	} else {
		if err == nil {
			fmt.Fprintf(stdout, "ok: %d entries, every signature verifies, every ε recomputes, the tree matches %d checkpoint(s) (%d external); spent ε = %.6g of %g at δ = %g\n",
				a.Entries, len(a.Checkpoints), a.External, a.Epsilon, a.Cap, a.Delta)
			if a.PatientEpsilon > 0 {
				fmt.Fprintf(stdout, "client level: ε = %.6g protects %s\nper patient:  ε = %.6g protects %s\n",
					a.Epsilon, dp.ClientRelationText, a.PatientEpsilon, dp.PatientRelationText)
			}
			if a.Unplanned > 0 {
				fmt.Fprintf(stdout, "note: %d charge(s) record no noise plan; their noise multipliers are taken as recorded\n", a.Unplanned)
			}
		}
		for _, c := range a.Checkpoints {
			kind := "found with the ledger"
			if c.External {
				kind = "given"
			}
			status := "ok"
			if !c.OK {
				status = "FAILS: " + c.Problem
			}
			what := "not read"
			if c.Size > 0 {
				what = fmt.Sprintf("%d entries, no cosigner verified", c.Size)
				if len(c.Cosigners) > 0 {
					what = fmt.Sprintf("%d entries, cosigned by %s", c.Size, strings.Join(c.Cosigners, ", "))
				}
			}
			fmt.Fprintf(stdout, "checkpoint %s (%s): %s: %s\n", c.Source, kind, what, status)
		}
		if a.Limit != "" {
			fmt.Fprintf(stdout, "warning: %s\n", a.Limit)
		}
	}
	if err != nil {
		switch {
		case errors.Is(err, dp.ErrCorruptLedger) || errors.Is(err, dp.ErrTornLedger):
			fmt.Fprintf(stderr, "fl-secure: error: audit failed at entry %d: %v\n", a.FirstBad, err)
			return 1
		case errors.Is(err, dp.ErrLedgerTruncated) || errors.Is(err, dp.ErrLedgerForked) || errors.Is(err, dp.ErrCheckpoint):
			fmt.Fprintf(stderr, "fl-secure: error: audit failed: %v\n", err)
			return 1
		}
		return fail(stderr, err, "")
	}
	return 0
}

// auditKey returns the key to audit a ledger with: the one the roster at
// rosterPath names for the coordinator (coordinator) or for site, which a
// keyText given too must equal, or, without a roster, keyText.
func auditKey(keyText, rosterPath string, coordinator bool, site int) (ed25519.PublicKey, error) {
	if rosterPath == "" {
		if coordinator || site != 0 {
			return nil, usagef("--coordinator and --site say whose key to take from the roster: give --roster too")
		}
		if keyText == "" {
			return nil, usagef("give the ledger owner's key: --roster FILE with --coordinator or --site N, or --key")
		}
		k, err := dp.ParsePublicKey(keyText)
		if err != nil {
			return nil, usagef("--key: %v", err)
		}
		return k, nil
	}
	if coordinator == (site != 0) {
		return nil, usagef("with --roster, give --coordinator (the coordinator's ledger) or --site N (hospital N's), one of them")
	}
	roster, err := protocol.LoadRoster(rosterPath)
	if err != nil {
		return nil, err
	}
	return rosterKey(roster, rosterPath, site, keyText, "--key")
}

// rosterKey returns the ledger key roster (read from path) names for site,
// or for the coordinator when site is 0. keyText, if set, must be that key
// (flag names it in the error); with a roster that names none, keyText is
// the key.
func rosterKey(roster *protocol.Roster, path string, site int, keyText, flag string) (ed25519.PublicKey, error) {
	who := "the coordinator"
	var want ed25519.PublicKey
	if site == 0 {
		want = roster.CoordinatorLedgerKey()
	} else {
		if site < 0 || site > len(roster.Sites) {
			return nil, usagef("site %d: the roster %s lists sites 1 to %d", site, path, len(roster.Sites))
		}
		who = fmt.Sprintf("site %d", site)
		want = roster.SiteLedgerKey(site)
	}
	if keyText == "" {
		if want == nil {
			return nil, usagef("the roster %s names no ledger key for %s (a roster provisioned before it did): give %s, from a copy of the key kept apart from the ledger", path, who, flag)
		}
		return want, nil
	}
	k, err := dp.ParsePublicKey(keyText)
	if err != nil {
		return nil, usagef("%s: %v", flag, err)
	}
	if want != nil && !want.Equal(k) {
		return nil, usagef("%s is not the ledger key the roster %s names for %s (%s)", flag, path, who, base64.StdEncoding.EncodeToString(want))
	}
	return k, nil
}

// parseWitnesses reads --witness NAME=PUBKEY arguments; nil if none.
func parseWitnesses(args []string) (map[string]ed25519.PublicKey, error) {
	var out map[string]ed25519.PublicKey
	for _, w := range args {
		name, key, ok := strings.Cut(w, "=")
		if !ok || name == "" {
			return nil, usagef("--witness %q: want NAME=PUBKEY", w)
		}
		k, err := dp.ParsePublicKey(key)
		if err != nil {
			return nil, usagef("--witness %s: %v", name, err)
		}
		if out == nil {
			out = map[string]ed25519.PublicKey{}
		}
		if _, dup := out[name]; dup {
			return nil, usagef("--witness %s given twice", name)
		}
		out[name] = k
	}
	return out, nil
}

func budgetRecover(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("budget recover", "Usage: fl-secure budget recover --ledger FILE [--json]\n\nMoves an incomplete last line, left by a crash mid-write, to FILE.torn. Complete lines are never touched.\n", stderr)
	path := fs.String("ledger", "", "ledger file")
	asJSON := fs.Bool("json", false, "print JSON")
	if help, err := parse(args, "ledger"); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure budget recover -h"`)
		}
		return 0
	}
	n, err := dp.RecoverLedger(*path)
	if err != nil {
		return fail(stderr, err, "")
	}
	if *asJSON {
		return printJSON(stdout, stderr, map[string]any{"ledger": *path, "entries": n, "torn": *path + ".torn"})
	}
	fmt.Fprintf(stdout, "kept %d complete entries; the incomplete line is in %s.torn\n", n, *path)
	return 0
}
