package main

import (
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/fl-secure/fl-secure/bench"
)

func benchCmd(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("bench", `Usage: fl-secure bench [--quick] [--filter REGEXP] [--out DIR]

Runs the benchmark suite: secagg (clients, update length, dropout, complete
graph vs SecAgg+), he (threshold CKKS), dp (samplers, accountants),
end-to-end rounds over gRPC with mutual TLS on loopback per mode, and
utility vs privacy on the embedded clinical data. Every scenario runs its
plaintext baseline in the same process and reports ratios to it. A
Markdown table goes to stdout; with --out, also results.csv, results.json
and PNG plots.

Examples:
  fl-secure bench --quick
  fl-secure bench --filter '^secagg/secagg\+' --out bench-out
  fl-secure bench --out bench-out          # the full suite (tens of minutes)
`, stderr)
	quick := fs.Bool("quick", false, "a small grid (about a minute on 2 cores)")
	filter := fs.String("filter", "", "run only scenario/case names matching this regular expression")
	out := fs.String("out", "", "directory for CSV, JSON and plots")
	if help, err := parse(args); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure bench -h"`)
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
	fmt.Fprintf(stdout, "## fl-secure bench (%s, %s)\n", map[bool]string{true: "quick", false: "full"}[*quick], time.Since(start).Round(time.Second))
	bench.Markdown(stdout, rs)
	if *out != "" {
		if err := bench.WriteFiles(*out, rs); err != nil {
			return fail(stderr, err, "")
		}
		fmt.Fprintf(stderr, "fl-secure: results and plots written to %s\n", *out)
	}
	return 0
}

func repeat(c byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return b
}
