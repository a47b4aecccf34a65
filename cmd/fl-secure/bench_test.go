package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/bench"
)

// bench --json prints the results as a JSON array on stdout and no
// Markdown.
func TestBenchJSON(t *testing.T) {
	code, stdout, stderr := runCLI("bench", "--json", "--filter", "^dp/accountants")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rs []bench.Result
	if err := json.Unmarshal([]byte(stdout), &rs); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	var metrics []string
	for _, r := range rs {
		metrics = append(metrics, r.Metric)
		if r.Scenario != "dp" || r.Value <= 0 {
			t.Errorf("result %+v", r)
		}
	}
	if !slices.Contains(metrics, "RDP ε") || !slices.Contains(metrics, "PLD ε") {
		t.Errorf("metrics %q", metrics)
	}
	if strings.Contains(stdout, "##") || !strings.Contains(stderr, "took") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
}

// bench --from prints and plots an earlier run's results without running
// anything, and writes only the plots.
func TestBenchFrom(t *testing.T) {
	results := filepath.Join("..", "..", "docs", "bench", "results.json")
	dir := t.TempDir()
	code, stdout, stderr := runCLI("bench", "--from", results, "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "| secagg+/n=1000/d=10000/dropout=0.1 | server time |") || !strings.Contains(stdout, "∝ n^") {
		t.Errorf("stdout:\n%s", stdout)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{"bytes-per-client.png", "secagg-server-vs-n.png", "secagg-time-vs-d.png", "utility-diabetes.png", "utility-wdbc.png"}
	if !slices.Equal(names, want) {
		t.Errorf("wrote %q, want %q", names, want)
	}
	code, stdout, stderr = runCLI("bench", "--from", results, "--json")
	var rs []bench.Result
	if err := json.Unmarshal([]byte(stdout), &rs); code != 0 || err != nil || len(rs) == 0 {
		t.Errorf("--from --json: exit %d, %v, stderr %s", code, err, stderr)
	}
}

func TestBenchMisuse(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.json")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bench", "--from", "x.json", "--quick"}, 2, "--quick and --filter"},
		{[]string{"bench", "--from", "x.json", "--filter", "he"}, 2, "--quick and --filter"},
		{[]string{"bench", "--from", missing}, 1, "nope.json"},
		{[]string{"bench", "--filter", "("}, 2, "--filter"},
		{[]string{"bench", "--filter", "^nothing$", "--json"}, 2, "matches no scenario"},
	} {
		code, _, stderr := runCLI(tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

// bench -h states the run times BENCHMARKS.md states.
func TestBenchHelpRunTimes(t *testing.T) {
	code, stdout, _ := runCLI("bench", "-h")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"--quick takes " + bench.QuickTime, "full suite " + bench.FullTime, "--json", "--from"} {
		if !strings.Contains(strings.Join(strings.Fields(stdout), " "), want) {
			t.Errorf("bench -h (on stdout) does not say %q:\n%s", want, stdout)
		}
	}
}
