package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/fl-secure/fl-secure/dp"
)

const budgetUsage = `Usage:
  fl-secure budget show    --ledger FILE [--json]     ε per round, cumulative ε, budget left
  fl-secure budget audit   --ledger FILE --key PUBKEY [--json]
                           verify the hash chain and every signature, recompute
                           every ε; exit 0 if all holds, 1 naming the first bad entry
  fl-secure budget recover --ledger FILE              move an incomplete last line
                           (a crash mid-write) to FILE.torn
  fl-secure budget report  --ledger FILE --key PUBKEY --out report.html
                           [--site-ledger FILE --site-key PUBKEY]...
                           a self-contained HTML report for a privacy officer;
                           exit 1 (and a red banner) if any ledger fails

PUBKEY is the ledger owner's Ed25519 public key, base64 or hex.

Examples:
  fl-secure budget show --ledger privacy.jsonl
  fl-secure budget audit --ledger privacy.jsonl --key MCowBQYDK2VwAyEA…
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
	Level        string  `json:"level"`
	Mechanism    string  `json:"mechanism"`
	Noise        float64 `json:"noise_multiplier"`
	SamplingRate float64 `json:"sampling_rate"`
	Steps        int     `json:"steps"`
	Survivors    int     `json:"survivors"`
	EpsilonRound float64 `json:"epsilon_round"`
	Epsilon      float64 `json:"epsilon"`
	Remaining    float64 `json:"remaining"`
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
	var rows []shownRound
	for _, e := range entries[1:] {
		rows = append(rows, shownRound{e.Seq, e.Time, e.RunID, e.Round, string(e.Level), e.Mechanism, e.NoiseMultiplier,
			e.SamplingRate, e.Steps, e.Survivors, e.EpsilonRound, e.Epsilon, open.Cap - e.Epsilon})
	}
	spent := 0.0
	if len(rows) > 0 {
		spent = rows[len(rows)-1].Epsilon
	}
	if *asJSON {
		if rows == nil {
			rows = []shownRound{}
		}
		code := printJSON(stdout, stderr, map[string]any{
			"accountant": open.Accountant, "neighbouring": open.Relation, "delta": open.Delta,
			"epsilon_cap": open.Cap, "epsilon": spent, "remaining": open.Cap - spent, "rounds": rows,
		})
		if err != nil {
			return fail(stderr, err, "")
		}
		return code
	}
	fmt.Fprintf(stdout, "accountant %s, %s neighbours, δ = %g, ε cap %g\n", open.Accountant, open.Relation, open.Delta, open.Cap)
	const row = "%5v  %-12v %6v  %-6v %-17v %9v %9v %6v %11v %11v %11v\n"
	fmt.Fprintf(stdout, row, "seq", "run", "round", "level", "mechanism", "noise", "rate", "steps", "ε round", "ε total", "ε left")
	for _, r := range rows {
		fmt.Fprintf(stdout, row, r.Seq, r.RunID, r.Round, r.Level, r.Mechanism, fmt.Sprintf("%.4g", r.Noise),
			fmt.Sprintf("%.4g", r.SamplingRate), r.Steps, fmt.Sprintf("%.5g", r.EpsilonRound), fmt.Sprintf("%.5g", r.Epsilon), fmt.Sprintf("%.5g", r.Remaining))
	}
	fmt.Fprintf(stdout, "spent ε = %.6g of %g; %.6g left\n", spent, open.Cap, open.Cap-spent)
	if err != nil {
		return fail(stderr, err, "")
	}
	return 0
}

func budgetAudit(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("budget audit", "Usage: fl-secure budget audit --ledger FILE --key PUBKEY [--json]\n\nVerifies a privacy ledger: the hash chain, every Ed25519 signature under the owner's key, and every cumulative ε recomputed from the recorded parameters with the recorded accountant.\n", stderr)
	path := fs.String("ledger", "", "ledger file")
	keyText := fs.String("key", "", "the owner's Ed25519 public key (base64 or hex)")
	asJSON := fs.Bool("json", false, "print JSON")
	if help, err := parse(args, "ledger", "key"); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure budget audit -h"`)
		}
		return 0
	}
	pub, err := dp.ParsePublicKey(*keyText)
	if err != nil {
		return fail(stderr, usagef("--key: %v", err), "")
	}
	a, err := dp.AuditLedger(*path, pub)
	if *asJSON {
		if code := printJSON(stdout, stderr, a); code != 0 {
			return code
		}
	} else if err == nil {
		fmt.Fprintf(stdout, "ok: %d entries, hash chain and signatures verify, every ε recomputes; spent ε = %.6g of %g at δ = %g\n", a.Entries, a.Epsilon, a.Cap, a.Delta)
	}
	if err != nil {
		if errors.Is(err, dp.ErrCorruptLedger) || errors.Is(err, dp.ErrTornLedger) {
			fmt.Fprintf(stderr, "fl-secure: error: audit failed at entry %d: %v\n", a.FirstBad, err)
			return 1
		}
		return fail(stderr, err, "")
	}
	return 0
}

func budgetRecover(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("budget recover", "Usage: fl-secure budget recover --ledger FILE\n\nMoves an incomplete last line, left by a crash mid-write, to FILE.torn. Complete lines are never touched.\n", stderr)
	path := fs.String("ledger", "", "ledger file")
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
	fmt.Fprintf(stdout, "kept %d complete entries; the incomplete line is in %s.torn\n", n, *path)
	return 0
}
