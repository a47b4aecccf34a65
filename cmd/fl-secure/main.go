// Command fl-secure runs privacy-preserving federated learning: secure
// aggregation of hospitals' model updates with a tracked privacy budget.
//
// Usage:
//
//	fl-secure simulate [flags]     federated training with secure aggregation and DP
//	fl-secure secagg [flags]       secure-aggregation rounds among in-process clients
//	fl-secure dp …                 privacy accounting and planning
//	fl-secure budget …             show, audit, recover and report privacy ledgers
//	fl-secure provision|coordinator|client|evaluate …
//	                               a federation over the network
//	fl-secure bench [flags]        the benchmark suite
//	fl-secure version [--json]     the module version and source revision
//	fl-secure help [COMMAND]       the list of commands, or a command's help
//
// Help goes to standard output and errors to standard error; every command
// that prints a result prints it as JSON with --json. Exit status: 0
// success, 1 failure, 2 a command line in error, 130 interrupted (SIGINT
// or SIGTERM).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/debug"
	"strings"

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
  fl-secure budget report --ledger FILE --roster FILE --out report.html
                               an HTML report of the ledgers for a privacy
                               officer
  fl-secure provision --sites N --out DIR
                               a CA, the coordinator's kit and one kit per site
  fl-secure coordinator --config FILE
                               run a federation's coordinator (gRPC, mutual TLS)
  fl-secure client --config FILE [--data F | --train-cmd CMD | --update F]
                               run a hospital's client
  fl-secure evaluate --state DIR --data F --label L
                               evaluate a coordinator's newest checkpoint
  fl-secure poc [flags]        a whole federation as processes on this machine
  fl-secure bench [--quick] [--out DIR]
                               the benchmark suite, with plaintext baselines
  fl-secure version [--json]   print the version and the source revision
  fl-secure help [COMMAND]     print this help, or a command's

Every command that prints a result prints it as JSON with --json. Help goes
to standard output, errors to standard error. Exit status: 0 success, 1
failure, 2 a command line in error, 130 interrupted.

Examples:
  fl-secure simulate
  fl-secure simulate --data diabetes --mode he --epsilon 1
  fl-secure secagg -n 20 -d 100000 --dropout 0.1
  fl-secure dp epsilon --noise-multiplier 1.1 --sampling-rate 0.01 --steps 1000 --delta 1e-5
  fl-secure dp plan --epsilon 4 --delta 1e-6 --rounds 50 --sites 8 --clip 1
  fl-secure help budget audit

Run "fl-secure help COMMAND" or "fl-secure COMMAND -h" for a command's flags.
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run runs the command line args. Help goes to stdout, errors and
// progress to stderr. Exit codes: 0 success, 1 failure, 2 misuse, 130
// interrupted (fail).
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitMisuse
	}
	if _, ok := stderr.(*streams); !ok {
		stderr = &streams{Writer: stderr, stdout: stdout}
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
		return versionCmd(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		return helpCmd(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "fl-secure: error: unknown command %q\n", args[0])
	fmt.Fprintln(stderr, "fl-secure: hint: run \"fl-secure help\" for the list of commands")
	return exitMisuse
}

// helpCmd prints the help of the command args names ("help budget
// report"), or without args the list of commands, on stdout.
func helpCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	// "help dp" and "help budget" print the group's list of subcommands;
	// "help dp plan" the subcommand's help.
	cmd := append([]string(nil), args...)
	if (args[0] == "dp" || args[0] == "budget") && len(args) == 1 {
		cmd = append(cmd, "help")
	} else {
		cmd = append(cmd, "-h")
	}
	return run(cmd, stdout, stderr)
}

// buildInfo is what version prints: the module version and the version
// control revision the binary was built from, as the Go toolchain recorded
// them (runtime/debug.ReadBuildInfo).
type buildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"`
	Time      string `json:"time,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"go_version,omitempty"`
}

func readBuildInfo() buildInfo {
	out := buildInfo{Version: "(devel)"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return out
	}
	if bi.Main.Version != "" {
		out.Version = bi.Main.Version
	}
	out.GoVersion = bi.GoVersion
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			out.Revision = s.Value
		case "vcs.time":
			out.Time = s.Value
		case "vcs.modified":
			out.Modified = s.Value == "true"
		}
	}
	return out
}

// String is the version line: "v1.2.3 (revision 0123abcd…, 2026-12-02T13:00:00Z, modified)".
func (b buildInfo) String() string {
	var extra []string
	if b.Revision != "" {
		extra = append(extra, "revision "+b.Revision)
	}
	if b.Time != "" {
		extra = append(extra, b.Time)
	}
	if b.Modified {
		extra = append(extra, "modified")
	}
	if b.GoVersion != "" {
		extra = append(extra, b.GoVersion)
	}
	if len(extra) == 0 {
		return b.Version
	}
	return b.Version + " (" + strings.Join(extra, ", ") + ")"
}

func version() string { return readBuildInfo().String() }

func versionCmd(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("version", `Usage: fl-secure version [--json]

Prints the module version fl-secure was built as and the version control
revision, its time and whether the tree was modified, as the Go toolchain
recorded them in the binary ("(devel)" for a build outside a module
version, such as go run or go build in a clone).
`, stderr)
	asJSON := fs.Bool("json", false, "print a JSON object")
	if help, err := parse(args); help || err != nil {
		if err != nil {
			return fail(stderr, err, "")
		}
		return exitOK
	}
	if *asJSON {
		return printJSON(stdout, stderr, readBuildInfo())
	}
	fmt.Fprintln(stdout, "fl-secure", version())
	return exitOK
}

// intVar and friends register a flag under a short and a long name.
func intVar(fs *flag.FlagSet, p *int, short, long string, v int, help string) {
	fs.IntVar(p, long, v, help)
	if short != "" {
		fs.IntVar(p, short, v, "short for --"+long)
	}
}

const secaggUsage = `Usage: fl-secure secagg [flags]

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
`

// simulate runs the secagg command.
func simulate(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("secagg", secaggUsage, stderr)
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
	if help, err := parse(args); help || err != nil {
		if err != nil {
			return fail(stderr, err, "")
		}
		return exitOK
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
	ctx, stop := signalContext()
	defer stop()
	p := pl.Config
	fmt.Fprintf(stderr, "fl-secure: SecAgg (complete graph): n=%d k=%d t=%d corrupt≤%d, ring Z_2^%d, clip %g, weights ≤ %d, grid 2^%g, minimum cohort %d\n",
		p.Clients, pl.Degree, pl.Threshold, pl.Corrupt, p.Bits, p.Clip, p.MaxWeight, log2(pl.Gamma), pl.MinCohort)

	const row = "%5v %7v %7v %9v %9v %9v %9v  %s\n"
	if !*asJSON {
		fmt.Fprintf(stdout, row, "round", "clients", "dropped", "survivors", "d", "round ms", "max error", "status")
	}
	enc := json.NewEncoder(stdout)
	failed := 0
	err = pl.Run(ctx, func(r local.SecAggRow) {
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
		return fail(stderr, interrupted(ctx, err), "")
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
