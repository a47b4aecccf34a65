package main

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"github.com/fl-secure/fl-secure/bench"
)

func benchCmd(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("bench", `Usage: fl-secure bench [--quick] [--filter REGEXP] [--json] [--out DIR]
       fl-secure bench --from RESULTS.json [--json] [--out DIR]

Runs the benchmark suite: secagg (clients, update length, dropout, complete
graph vs SecAgg+), he (threshold CKKS), dp (samplers, accountants),
end-to-end rounds over gRPC with mutual TLS on loopback per mode, and
utility vs privacy on the embedded clinical data. Every scenario runs its
plaintext baseline in the same process and reports ratios to it. A
Markdown table goes to stdout (with --json, the results as JSON instead);
with --out, also results.csv, results.json and PNG plots.

With --from, nothing runs: the results of an earlier run are read from its
results.json, printed, and with --out plotted again (only the PNG files
are written, so an earlier run's results in DIR are left as they are).

On 2 vCPUs --quick takes `+bench.QuickTime+` and the full suite `+bench.FullTime+`,
the longer times when other work shares the cores (BENCHMARKS.md).

Examples:
  fl-secure bench --quick
  fl-secure bench --quick --json > results.json
  fl-secure bench --filter '^secagg/secagg\+' --out bench-out
  fl-secure bench --out bench-out          # the full suite
  fl-secure bench --from docs/bench/results.json --out plots
`, stderr)
	quick := fs.Bool("quick", false, "a small grid ("+bench.QuickTime+" on 2 vCPUs; the full suite takes "+bench.FullTime+")")
	filter := fs.String("filter", "", "run only scenario/case names matching this regular expression")
	out := fs.String("out", "", "directory for CSV, JSON and plots")
	jsonOut := fs.Bool("json", false, "print the results as JSON on stdout instead of the Markdown table")
	from := fs.String("from", "", "read the results from this results.json instead of running the suite")
	if help, err := parse(args); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure bench -h"`)
		}
		return 0
	}
	if *from != "" {
		if *quick || *filter != "" {
			return fail(stderr, usagef("--from reads results already measured: --quick and --filter choose what a run measures"), "")
		}
		rs, err := bench.ReadJSON(*from)
		if err != nil {
			return fail(stderr, err, "")
		}
		if code := printResults(stdout, stderr, rs, *jsonOut, "## fl-secure bench (results from "+*from+")\n"); code != 0 {
			return code
		}
		if *out != "" {
			if err := os.MkdirAll(*out, 0o755); err != nil {
				return fail(stderr, err, "")
			}
			if err := bench.Plots(*out, rs); err != nil {
				return fail(stderr, err, "")
			}
			fmt.Fprintf(stderr, "fl-secure: plots written to %s\n", *out)
		}
		return 0
	}
	opt := bench.Options{Quick: *quick}
	if *filter != "" {
		re, err := regexp.Compile(*filter)
		if err != nil {
			return fail(stderr, usagef("--filter: %v", err), "")
		}
		opt.Filter = re
	}
	tty := isTerminal(stderr)
	start := time.Now()
	opt.Progress = func(done, total int, what string) {
		if tty && total > 0 {
			bar := done * 30 / total
			fmt.Fprintf(stderr, "\r[%-30s] %d/%d %-50.50s", string(repeat('#', bar)), done, total, what)
			if done == total {
				fmt.Fprintln(stderr)
			}
		}
	}
	rs, err := bench.Run(opt)
	if err != nil {
		return fail(stderr, err, "")
	}
	if len(rs) == 0 {
		return fail(stderr, usagef("--filter %q matches no scenario", *filter), "")
	}
	rs = bench.Finish(rs)
	took := time.Since(start).Round(time.Second)
	grid := map[bool]string{true: "quick", false: "full"}[*quick]
	if *filter != "" {
		grid += ", --filter " + *filter
	}
	if *jsonOut {
		fmt.Fprintf(stderr, "fl-secure: bench (%s) took %s\n", grid, took)
	}
	if code := printResults(stdout, stderr, rs, *jsonOut, fmt.Sprintf("## fl-secure bench (%s, %s)\n", grid, took)); code != 0 {
		return code
	}
	if *out != "" {
		if err := bench.WriteFiles(*out, rs); err != nil {
			return fail(stderr, err, "")
		}
		fmt.Fprintf(stderr, "fl-secure: results and plots written to %s\n", *out)
	}
	return 0
}

// printResults writes rs to stdout as JSON, or as Markdown tables under
// heading.
func printResults(stdout, stderr io.Writer, rs []bench.Result, asJSON bool, heading string) int {
	if asJSON {
		if err := bench.WriteJSON(stdout, rs); err != nil {
			return fail(stderr, err, "")
		}
		return 0
	}
	fmt.Fprint(stdout, heading)
	bench.Markdown(stdout, rs)
	return 0
}

func repeat(c byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return b
}
