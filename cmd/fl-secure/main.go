// Command fl-secure runs privacy-preserving federated learning: secure
// aggregation of hospitals' model updates with a tracked privacy budget.
//
// Usage:
//
//	fl-secure simulate [flags]   federated training with secure aggregation and DP
//	fl-secure secagg [flags]     secure-aggregation rounds among in-process clients
//	fl-secure dp …               privacy accounting and planning
//	fl-secure budget …           show, audit and recover privacy ledgers
//	fl-secure version            print the version
//
// Run "fl-secure help" or "fl-secure simulate -h" for the flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/debug"

	"github.com/fl-secure/fl-secure/protocol/local"
)

const usage = `fl-secure: privacy-preserving federated learning for hospitals

Usage:
  fl-secure simulate [flags]   federated training of hospitals on embedded
                               clinical data, with secure aggregation and DP
  fl-secure secagg [flags]     secure-aggregation rounds among in-process
                               clients, checking every unmasked sum
  fl-secure dp epsilon|calibrate|plan
                               privacy accounting: ε of a run, the noise for
                               a target ε, a preflight of privacy settings
  fl-secure budget show|audit|recover
                               read, verify and repair a privacy ledger
  fl-secure provision --sites N --out DIR
                               a CA, the coordinator's kit and one kit per site
  fl-secure coordinator --config FILE
                               run a federation's coordinator (gRPC, mutual TLS)
  fl-secure client --config FILE (--data F | --update F)
                               run a hospital's client
  fl-secure evaluate --state DIR --data F --label L
                               evaluate a coordinator's newest checkpoint
  fl-secure poc [flags]        a whole federation as processes on this machine
  fl-secure bench [--quick] [--out DIR]
                               the benchmark suite, with plaintext baselines
  fl-secure version            print the version
  fl-secure help               print this help

Examples:
  fl-secure simulate
  fl-secure simulate --data diabetes --mode he --epsilon 1
  fl-secure secagg -n 20 -d 100000 --dropout 0.1
  fl-secure dp epsilon --noise-multiplier 1.1 --sampling-rate 0.01 --steps 1000 --delta 1e-5
  fl-secure dp plan --epsilon 4 --delta 1e-6 --rounds 50 --sites 8 --clip 1
  fl-secure budget audit --ledger privacy.jsonl --key KEY

Run "fl-secure simulate -h" (or any command with -h) for its flags.
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// Exit codes: 0 success, 1 failure, 2 misuse.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "simulate":
		return simulateFL(args[1:], stdout, stderr)
	case "secagg":
		return simulate(args[1:], stdout, stderr)
	case "dp":
		return dpCmd(args[1:], stdout, stderr)
	case "budget":
		return budgetCmd(args[1:], stdout, stderr)
	case "provision":
		return provisionCmd(args[1:], stdout, stderr)
	case "coordinator":
		return coordinatorCmd(args[1:], stdout, stderr)
	case "client":
		return clientCmd(args[1:], stdout, stderr)
	case "evaluate":
		return evaluateCmd(args[1:], stdout, stderr)
	case "poc":
		return pocCmd(args[1:], stdout, stderr)
	case "bench":
		return benchCmd(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "fl-secure", version())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "fl-secure: error: unknown command %q\n", args[0])
	fmt.Fprintln(stderr, "fl-secure: hint: run \"fl-secure help\" for the list of commands")
	return 2
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// intVar and friends register a flag under a short and a long name.
func intVar(fs *flag.FlagSet, p *int, short, long string, v int, help string) {
	fs.IntVar(p, long, v, help)
	if short != "" {
		fs.IntVar(p, short, v, "short for --"+long)
	}
}

func simulate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("secagg", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := local.SecAggConfig{Bits: 32, Clip: 1}
	var degree, threshold int
	var corruption float64
	intVar(fs, &c.Clients, "n", "clients", 10, "number of clients `n`")
	intVar(fs, &c.Rounds, "r", "rounds", 5, "number of rounds")
	intVar(fs, &c.Dim, "d", "dim", 10_000, "update length `d` (model coordinates; the last carries the weight)")
	intVar(fs, &degree, "k", "degree", 0, "neighbours per client: sessions speak the complete graph only, n−1 (SecAgg+ graphs: fl-secure bench)")
	intVar(fs, &threshold, "t", "threshold", 0, "Shamir threshold: sessions use ⌊n/2⌋+1 (at least colluders+1) for a round of n")
	intVar(fs, &c.Bits, "b", "bits", 32, "ring size: inputs live in Z_2^b, b = 32 or 64")
	fs.Float64Var(&c.Dropout, "dropout", 0.1, "probability that a client drops out of a round, at a random phase")
	fs.Float64Var(&corruption, "corruption", 0, "fraction of clients assumed to collude with the coordinator")
	complete := fs.Bool("complete", true, "use the complete graph (classic SecAgg), the only graph sessions speak")
	fs.Float64Var(&c.Clip, "clip", 1, "bound every coordinate of an unweighted update to [-clip, clip]")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the simulated updates and dropouts (keys and masks always use crypto/rand)")
	asJSON := fs.Bool("json", false, "print one JSON object per round instead of a table")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: fl-secure secagg [flags]

Runs rounds of secure aggregation among in-process sites holding random
weighted updates, through the real coordinator and sites (the code of
"fl-secure coordinator" and "fl-secure client") over in-memory sessions.
Sites drop out at random phases (a dropped site closes its session and
reconnects for the next round), and every opened sum is checked against the
exact sum of the survivors' updates. Sessions speak SecAgg over the complete
graph; for SecAgg+'s sparse graphs, see the engine-level costs of
"fl-secure bench".

Prints one row per round: clients; dropped (closed their session during the
round); survivors (clients whose update is in the sum: those that sent their
masked input); d; the round's wall time (ms); the largest difference between
the opened sum and the exact one (quantization only, below survivors × 2^-16);
and the status ("ok", or "below-cohort"/"failed": nothing opened; the
coordinator retries the round without the sites that failed it). A client
that drops after its masked input but before signing the survivor set fails
the attempt: against a malicious coordinator, clients reveal shares only
once every survivor has signed; a client that left an attempt after the
masked inputs is left out of the rest of the run.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		return fail(stderr, usagef("unexpected argument %q", fs.Arg(0)), "")
	}
	if !(corruption >= 0 && corruption < 1) {
		return fail(stderr, usagef("corruption = %v, want 0 ≤ fraction < 1", corruption), `run "fl-secure secagg -h" for the flags and their ranges`)
	}
	c.Colluders = int(math.Floor(corruption * float64(c.Clients)))
	pl, err := local.PlanSecAgg(c)
	if err != nil {
		return fail(stderr, usageError(err.Error()), `run "fl-secure secagg -h" for the flags and their ranges`)
	}
	const engine = `for SecAgg+ sparse graphs and other thresholds, "fl-secure bench" measures the engine alone`
	switch {
	case !*complete:
		return fail(stderr, usagef("--complete=false: sessions speak SecAgg over the complete graph only"), engine)
	case degree != 0 && degree != pl.Degree:
		return fail(stderr, usagef("--degree %d: sessions speak SecAgg over the complete graph only (degree n−1 = %d)", degree, pl.Degree), engine)
	case threshold != 0 && threshold != pl.Threshold:
		return fail(stderr, usagef("--threshold %d: sessions use t = %d for a round of %d (⌊n/2⌋+1, at least colluders+1)", threshold, pl.Threshold, c.Clients), engine)
	}
	p := pl.Config
	fmt.Fprintf(stderr, "fl-secure: SecAgg (complete graph): n=%d k=%d t=%d corrupt≤%d, ring Z_2^%d, clip %g, weights ≤ %d, grid 2^%g, minimum cohort %d\n",
		p.Clients, pl.Degree, pl.Threshold, pl.Corrupt, p.Bits, p.Clip, p.MaxWeight, log2(pl.Gamma), pl.MinCohort)

	const row = "%5v %7v %7v %9v %9v %9v %9v  %s\n"
	if !*asJSON {
		fmt.Fprintf(stdout, row, "round", "clients", "dropped", "survivors", "d", "round ms", "max error", "status")
	}
	enc := json.NewEncoder(stdout)
	failed := 0
	err = pl.Run(context.Background(), func(r local.SecAggRow) {
		if r.Status != "ok" {
			failed++
		}
		if *asJSON {
			enc.Encode(r)
			return
		}
		fmt.Fprintf(stdout, row, r.Round, r.Clients, r.Dropped, r.Survivors, r.Dim,
			fmt.Sprintf("%.2f", r.Millis), fmt.Sprintf("%.2g", r.MaxError), r.Status)
	})
	if err != nil {
		return fail(stderr, err, "")
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "fl-secure: %d attempts fell below the minimum cohort and opened nothing; every opened sum was exact\n", failed)
	} else {
		fmt.Fprintf(stderr, "fl-secure: all %d sums exact\n", c.Rounds)
	}
	return 0
}

func log2(x float64) float64 {
	e := 0.0
	for x >= 2 {
		x /= 2
		e++
	}
	for x < 1 {
		x *= 2
		e--
	}
	return e
}
