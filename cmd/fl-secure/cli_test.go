package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol"
	"github.com/fl-secure/fl-secure/protocol/local"
)

// commands returns the commands run dispatches, read from main.go's
// switch (aliases starting with "-" left out), so that a new command is
// checked without editing this test.
func commands(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		fn, ok := n.(*ast.FuncDecl)
		if ok && fn.Name.Name != "run" {
			return false
		}
		cc, ok := n.(*ast.CaseClause)
		if !ok {
			return true
		}
		for _, e := range cc.List {
			if lit, ok := e.(*ast.BasicLit); ok {
				s, _ := strconv.Unquote(lit.Value)
				if !strings.HasPrefix(s, "-") {
					out = append(out, s)
				}
			}
		}
		return false
	})
	if len(out) < 10 {
		t.Fatalf("found only the commands %v in run", out)
	}
	return out
}

// subcommands are the commands of the dp and budget groups.
var subcommands = map[string][]string{
	"dp":     {"epsilon", "calibrate", "plan"},
	"budget": {"show", "audit", "recover", "report"},
}

// leaves returns every command line that names one command: "simulate",
// "dp plan", "budget report".
func leaves(t *testing.T) [][]string {
	var out [][]string
	for _, c := range commands(t) {
		if c == "help" {
			continue
		}
		if subs, ok := subcommands[c]; ok {
			for _, s := range subs {
				out = append(out, []string{c, s})
			}
			continue
		}
		out = append(out, []string{c})
	}
	return out
}

// TestTopLevelHelpListsEveryCommand: the top-level help names every
// command run dispatches and every subcommand of dp and budget.
func TestTopLevelHelpListsEveryCommand(t *testing.T) {
	code, out, errOut := runCLI("help")
	if code != 0 || errOut != "" {
		t.Fatalf("help: exit %d, stderr %q", code, errOut)
	}
	for _, c := range commands(t) {
		if !strings.Contains(out, "fl-secure "+c+" ") && !strings.Contains(out, "fl-secure "+c+"\n") {
			t.Errorf("the help lists no %q:\n%s", c, out)
		}
	}
	if !strings.Contains(out, "fl-secure budget report") || !strings.Contains(out, "show|audit|recover") || !strings.Contains(out, "epsilon|calibrate|plan") {
		t.Errorf("the help lacks a subcommand:\n%s", out)
	}
}

// TestHelpOnStdout: every command's -h, and "fl-secure help CMD", print
// its help on stdout with "Flags:" once and exit 0, with nothing on
// stderr; the groups' help lists their subcommands.
func TestHelpOnStdout(t *testing.T) {
	for _, l := range leaves(t) {
		name := strings.Join(l, " ")
		code, out, errOut := runCLI(append(slices.Clone(l), "-h")...)
		if code != 0 || errOut != "" || !strings.Contains(out, "Usage") {
			t.Errorf("%s -h: exit %d, stdout %d bytes, stderr %q", name, code, len(out), errOut)
			continue
		}
		if n := strings.Count(out, "Flags:"); n != 1 {
			t.Errorf("%s -h prints \"Flags:\" %d times", name, n)
		}
		code, help, errOut := runCLI(append([]string{"help"}, l...)...)
		if code != 0 || errOut != "" || help != out {
			t.Errorf("help %s: exit %d, stderr %q, same as -h: %v", name, code, errOut, help == out)
		}
		if code, out2, _ := runCLI(append(slices.Clone(l), "--help")...); code != 0 || out2 != out {
			t.Errorf("%s --help: exit %d, same as -h: %v", name, code, out2 == out)
		}
	}
	for group, subs := range subcommands {
		code, out, errOut := runCLI("help", group)
		if code != 0 || errOut != "" {
			t.Errorf("help %s: exit %d, stderr %q", group, code, errOut)
		}
		for _, s := range subs {
			if !strings.Contains(out, "fl-secure "+group+" "+s) {
				t.Errorf("help %s lacks %s:\n%s", group, s, out)
			}
		}
	}
	if code, _, errOut := runCLI("help", "frobnicate"); code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("help frobnicate: exit %d: %s", code, errOut)
	}
}

// TestBadFlagOneLine: an unknown flag, or a value that does not parse,
// prints one line naming the command and a hint pointing at its help, on
// stderr, and exits 2; the help itself is not printed.
func TestBadFlagOneLine(t *testing.T) {
	for _, l := range leaves(t) {
		name := strings.Join(l, " ")
		code, out, errOut := runCLI(append(slices.Clone(l), "--no-such-flag")...)
		want := fmt.Sprintf("fl-secure %s: flag provided but not defined: -no-such-flag\nfl-secure: hint: run \"fl-secure %s -h\" for the flags\n", name, name)
		if code != 2 || out != "" || errOut != want {
			t.Errorf("%s --no-such-flag: exit %d, stdout %q, stderr:\n%s", name, code, out, errOut)
		}
	}
	code, out, errOut := runCLI("simulate", "--sites", "many")
	if code != 2 || out != "" || strings.Count(errOut, "\n") != 2 || !strings.Contains(errOut, `fl-secure simulate: invalid value "many" for flag -sites`) {
		t.Errorf("--sites many: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
}

// shellFields splits an example command line as a POSIX shell would for
// the quoting the examples use (single quotes), dropping a # comment.
func shellFields(line string) []string {
	var out []string
	var cur strings.Builder
	in, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\'':
			quoted = false
		case quoted:
			cur.WriteByte(c)
		case c == '\'':
			quoted, in = true, true
		case c == '#' && !in:
			return out
		case c == ' ' || c == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// examples returns the example command lines of a help text: the lines
// under "Examples:", continuation lines joined.
func examples(help string) []string {
	_, ex, ok := strings.Cut(help, "\nExamples:\n")
	if !ok {
		return nil
	}
	var out []string
	var cur string
	for _, line := range strings.Split(ex, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case cur != "":
			cur += " " + strings.TrimSuffix(line, "\\")
		case strings.HasPrefix(line, "fl-secure "):
			cur = strings.TrimSuffix(line, "\\")
		default:
			continue
		}
		if !strings.HasSuffix(line, "\\") {
			out = append(out, strings.Join(strings.Fields(cur), " "))
			cur = ""
		}
	}
	return out
}

// TestHelpExamplesRun runs every example of every help text as printed,
// in a directory holding the files the examples name where the test can
// make them (privacy.jsonl signed by the example's key, my.csv and
// ranges.csv). Examples of simulate and secagg run with fewer rounds
// appended; examples that need a provisioned federation or its ledgers
// (fed/, run/), and the network and benchmark commands, are checked to
// parse by appending -h.
func TestHelpExamplesRun(t *testing.T) {
	cmds := leaves(t)
	t.Chdir(t.TempDir())
	path, pub := writeLedger(t, 2)
	copyTo(t, path, "privacy.jsonl")
	copyTo(t, path+dp.CheckpointSuffix, "privacy.jsonl"+dp.CheckpointSuffix)
	var csv strings.Builder
	csv.WriteString("age,bmi,outcome\n")
	for i := range 120 {
		fmt.Fprintf(&csv, "%d,%d,%d\n", 30+i%40, 18+i%15, i%2)
	}
	os.WriteFile("my.csv", []byte(csv.String()), 0o600)
	os.WriteFile("ranges.csv", []byte("age,0,120\nbmi,10,60\n"), 0o600)

	helps := []string{usage}
	for _, l := range cmds {
		_, out, _ := runCLI(append(slices.Clone(l), "-h")...)
		helps = append(helps, out)
	}
	for g := range subcommands {
		_, out, _ := runCLI(g, "help")
		helps = append(helps, out)
	}
	seen := map[string]bool{}
	for _, h := range helps {
		for _, ex := range examples(h) {
			if seen[ex] {
				continue
			}
			seen[ex] = true
			args := shellFields(ex)[1:]
			if i := slices.Index(args, ">"); i >= 0 {
				args = args[:i] // the shell's redirection, not the command's
			}
			switch {
			case strings.Contains(ex, "fed/") || strings.Contains(ex, "run/") || strings.Contains(ex, "--train-cmd") || slices.Contains([]string{"bench", "coordinator", "client", "provision", "evaluate"}, args[0]):
				// A trainer command needs python3 with numpy and the
				// repository's root as the working directory
				// (TestPocTrainCmd runs poc with a trainer).
				args = append(args, "-h")
			case args[0] == "simulate":
				args = append(args, "--rounds", "2", "--no-compare", "--dir", t.TempDir())
			case args[0] == "secagg":
				args = append(args, "-r", "1")
			case args[0] == "poc":
				// poc starts this test binary as fl-secure (TestMain).
				t.Setenv("FL_SECURE_TEST_MAIN", "1")
				args = append(args, "--rounds", "2", "--dir", t.TempDir())
			}
			began := time.Now()
			code, _, errOut := runCLI(args...)
			t.Logf("%s: %v", ex, time.Since(began))
			if code != 0 {
				t.Errorf("%s: exit %d:\n%s", ex, code, errOut)
			}
		}
	}
	if !seen["fl-secure budget audit --ledger privacy.jsonl --key "+pub] {
		t.Errorf("no budget audit example under the key of privacy.jsonl (%s) among %d examples", pub, len(seen))
	}
	if len(seen) < 15 {
		t.Errorf("only %d examples", len(seen))
	}
}

// TestVersion: version prints the build's module version, and its
// revision, time and modification when the build recorded them.
func TestVersion(t *testing.T) {
	code, out, errOut := runCLI("version")
	if code != 0 || errOut != "" || !strings.HasPrefix(out, "fl-secure ") {
		t.Errorf("version: exit %d: %q %q", code, out, errOut)
	}
	code, out, _ = runCLI("version", "--json")
	var b buildInfo
	if err := json.Unmarshal([]byte(out), &b); code != 0 || err != nil || b.Version == "" {
		t.Errorf("version --json: exit %d, %v: %s", code, err, out)
	}
	b = buildInfo{Version: "v1.2.3", Revision: "0123abcd", Time: "2026-12-02T13:00:00Z", Modified: true}
	if got, want := b.String(), "v1.2.3 (revision 0123abcd, 2026-12-02T13:00:00Z, modified)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// TestInterrupted: a command whose context a signal cancelled fails with
// "fl-secure: interrupted" and exit 130, whether the context came from
// signalContext or signal.NotifyContext; an ordinary cancellation is an
// ordinary failure.
func TestInterrupted(t *testing.T) {
	for _, notify := range []func() (context.Context, context.CancelFunc){
		signalContext,
		func() (context.Context, context.CancelFunc) {
			return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		},
	} {
		ctx, stop := notify()
		self, _ := os.FindProcess(os.Getpid())
		if err := self.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		<-ctx.Done()
		stop()
		var e bytes.Buffer
		if code := fail(&e, interrupted(ctx, context.Canceled), ""); code != 130 || e.String() != "fl-secure: interrupted\n" {
			t.Errorf("exit %d: %q", code, e.String())
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var e bytes.Buffer
	if code := fail(&e, interrupted(ctx, context.Canceled), ""); code != 1 || !strings.Contains(e.String(), "context canceled") {
		t.Errorf("plain cancellation: exit %d: %q", code, e.String())
	}
	if err := interrupted(context.Background(), nil); err != nil {
		t.Errorf("no error became %v", err)
	}
}

// TestSimulateMessages: what simulate says for data and flags it cannot
// use, each naming the problem and what to do, and that none of these
// runs leaves a run directory behind.
func TestSimulateMessages(t *testing.T) {
	t.Chdir(t.TempDir())
	write := func(name, text string) string {
		os.WriteFile(name, []byte(text), 0o600)
		return name
	}
	var three, one strings.Builder
	three.WriteString("a,b,y\n")
	one.WriteString("a,b,y\n")
	for i := range 60 {
		fmt.Fprintf(&three, "%d,%d,%d\n", i, i%7, i%3)
		fmt.Fprintf(&one, "%d,%d,0\n", i, i%7)
	}
	write("three.csv", three.String())
	write("one.csv", one.String())
	write("huge.csv", "a,b,y\n1,2,0\n3,1e308,1\n")
	write("overflow.csv", "a,b,y\n1,2,0\n3,4,1\n5,1e999,0\n")
	write("badlabel.csv", "a,b,y\n1,2,0\n\"3\",4,0.5\n")
	write("empty.csv", "")
	write("header.csv", "a,b,y\n")
	for _, tc := range []struct {
		args []string
		code int
		want []string // each in stderr
	}{
		{[]string{"--data", "diabets"}, 2, []string{`--data "diabets": no such file`, `did you mean "diabetes"?`}},
		{[]string{"--data", "three.csv", "--label", "y"}, 1, []string{`column "y" holds labels up to 2 (3 classes)`, "hint: the label has more than two classes: use --model softmax"}},
		{[]string{"--data", "one.csv", "--label", "y"}, 1, []string{`column "y" holds one class only (every label is 0)`}},
		{[]string{"--data", "huge.csv", "--label", "y"}, 1, []string{`line 3, column "b": "1e308" is out of range`}},
		{[]string{"--data", "overflow.csv", "--label", "y"}, 1, []string{`line 4, column "b": "1e999" is out of range`}},
		{[]string{"--data", "badlabel.csv", "--label", "y"}, 1, []string{`line 3, column "y": label 0.5 is not a class index`, "--model linear"}},
		{[]string{"--data", "empty.csv", "--label", "y"}, 1, []string{"empty.csv: fl: the file is empty: want a header line"}},
		{[]string{"--data", "header.csv", "--label", "y"}, 1, []string{"0 data rows after the header"}},
		{[]string{"--epsilon", "1e9"}, 2, []string{"--epsilon 1e+09: want at most 100", "--epsilon 0"}},
		{[]string{"--epsilon", "0.0001"}, 2, []string{"--epsilon 0.0001: want at least 0.01"}},
		{[]string{"--delta", "2"}, 2, []string{"--delta 2: want a probability in (0, 1)"}},
		{[]string{"--dropout", "0.99"}, 2, []string{"--dropout 0.99: with 5 hospitals and a minimum cohort of 3", "at most 0.50"}},
		{[]string{"--dropout", "0.3", "--min-cohort", "9"}, 2, []string{"--min-cohort 9: want 3 to --sites (5)"}},
		{[]string{"--sites", "1000"}, 2, []string{"1000 sites (--sites)", "the 569 rows of wdbc leave 427", "142 (25%) are held out for testing: at most 42 sites"}},
		{[]string{"--level", "site"}, 2, []string{`--level "site": want record or client`}},
	} {
		code, out, errOut := runCLI(append([]string{"simulate"}, tc.args...)...)
		if code != tc.code || out != "" {
			t.Errorf("%v: exit %d, want %d; stdout %q; stderr:\n%s", tc.args, code, tc.code, out, errOut)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%v: stderr lacks %q:\n%s", tc.args, w, errOut)
			}
		}
		if strings.Contains(errOut, "row ") || strings.Contains(errOut, "NaN") {
			t.Errorf("%v: stderr says \"row N\" or NaN:\n%s", tc.args, errOut)
		}
	}
	if _, err := os.Stat("fl-secure-runs"); err == nil {
		entries, _ := os.ReadDir("fl-secure-runs")
		if len(entries) > 0 {
			t.Errorf("failed runs left %d run directories", len(entries))
		}
	}
}

// TestSimulateSoftmaxAUC: a three-class label under --model softmax gets
// a one-vs-rest macro AUC, not 0.
func TestSimulateSoftmaxAUC(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("a,b,y\n")
	for i := range 240 {
		y := i % 3
		fmt.Fprintf(&b, "%g,%g,%d\n", float64(y)*2+float64(i%5)/5, float64(-y)+float64(i%7)/7, y)
	}
	data := filepath.Join(dir, "three.csv")
	os.WriteFile(data, []byte(b.String()), 0o600)
	ranges := filepath.Join(dir, "ranges.csv")
	os.WriteFile(ranges, []byte("a,-1,6\nb,-3,2\n"), 0o600)
	code, out, errOut := runCLI("simulate", "--data", data, "--label", "y", "--model", "softmax", "--feature-ranges", ranges,
		"--rounds", "3", "--dir", filepath.Join(dir, "run"), "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var s local.Result
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	for _, r := range s.Table {
		if !(r.Test.AUC > 0 && r.Test.AUC <= 1) || r.Test.NoAUC != "" {
			t.Errorf("%s: AUC %v %q", r.Setting, r.Test.AUC, r.Test.NoAUC)
		}
	}
	if c := s.Table[0]; !strings.HasPrefix(c.Setting, "centralized") || c.Test.AUC < 0.8 {
		t.Errorf("%s: AUC %v", c.Setting, c.Test.AUC)
	}
}

// TestSimulateTableNotes: the table prints an undefined AUC as n/a with a
// note, says which rows the hospitals hold of the file's, and lists the
// training rounds that opened nothing with the ε they did or did not
// spend.
func TestSimulateTableNotes(t *testing.T) {
	eps := 1.5
	res := &local.Result{Data: "my.csv", Rows: 100, TestRows: 25, SiteRows: []int{30, 25, 20},
		Table: []local.Row{{Setting: "federated, secagg + DP (record level)", Test: fl.Metrics{Accuracy: 1, NoAUC: "the evaluation set holds one class only"}, Epsilon: &eps, Private: true}},
		Skipped: []local.Skipped{
			{Round: 3, Status: "below-cohort", Participants: 2, EpsilonRound: 0.0441},
			{Round: 5, Status: "failed", Participants: 3, Charged: true, EpsilonRound: 0.0441},
		},
		Federated: &protocol.Summary{Mode: protocol.SecAgg},
	}
	var b bytes.Buffer
	printSimulation(&b, res)
	out := b.String()
	for _, want := range []string{
		"data my.csv: 100 rows, 25 held out for testing, 75 dealt among 3 hospitals: [30 25 20]",
		"n/a", "AUC n/a: the evaluation set holds one class only",
		"round 3 not opened: below the minimum cohort", "(0.044)", "not spent",
		"round 5 not opened: failed, charged",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "NaN") {
		t.Errorf("table prints NaN:\n%s", out)
	}
}

// TestSimulateRunDirs: two runs started back to back without --dir get
// directories of their own, under fl-secure-runs/.
func TestSimulateRunDirs(t *testing.T) {
	t.Chdir(t.TempDir())
	var dirs []string
	for range 2 {
		code, out, errOut := runCLI("simulate", "--rounds", "1", "--no-compare", "--json")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var s local.Result
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, filepath.Dir(filepath.Dir(s.Federated.Ledger)))
	}
	if dirs[0] == dirs[1] || !strings.HasPrefix(dirs[0], "fl-secure-runs"+string(filepath.Separator)) {
		t.Errorf("run directories %v", dirs)
	}
	// A --dir that holds a run already is refused before anything is
	// written, and what it holds is untouched.
	before, _ := os.ReadDir(dirs[0])
	code, out, errOut := runCLI("simulate", "--rounds", "1", "--no-compare", "--dir", dirs[0])
	after, _ := os.ReadDir(dirs[0])
	if code != 2 || out != "" || !strings.Contains(errOut, "--dir "+dirs[0]+" holds a run already") || len(after) != len(before) {
		t.Errorf("--dir of a run: exit %d, %d entries then %d:\n%s", code, len(before), len(after), errOut)
	}
}

// TestJSONOnEveryResult: every command that prints a result prints JSON
// with --json: version, the dp commands, budget show, audit, recover and
// report.
func TestJSONOnEveryResult(t *testing.T) {
	dir := t.TempDir()
	path, pub := writeLedger(t, 2)
	torn := filepath.Join(dir, "torn.jsonl")
	copyTo(t, path, torn)
	f, _ := os.OpenFile(torn, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"seq":3,"ti`)
	f.Close()
	for _, args := range [][]string{
		{"version", "--json"},
		{"dp", "epsilon", "--noise-multiplier", "1.1", "--steps", "10", "--delta", "1e-5", "--json"},
		{"dp", "calibrate", "--epsilon", "3", "--steps", "10", "--delta", "1e-5", "--json"},
		{"dp", "plan", "--epsilon", "4", "--delta", "1e-6", "--rounds", "5", "--sites", "8", "--clip", "1", "--json"},
		{"budget", "show", "--ledger", path, "--json"},
		{"budget", "audit", "--ledger", path, "--key", pub, "--json"},
		{"budget", "recover", "--ledger", torn, "--json"},
		{"budget", "report", "--ledger", path, "--key", pub, "--out", filepath.Join(dir, "r.html"), "--json"},
	} {
		code, out, errOut := runCLI(args...)
		var v map[string]any
		if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil {
			t.Errorf("%v: exit %d, %v:\n%s%s", args, code, err, out, errOut)
		}
	}
	code, out, _ := runCLI("budget", "report", "--ledger", path, "--key", pub, "--out", filepath.Join(dir, "r.html"), "--json")
	var r struct {
		Report  string
		OK      bool
		Ledgers []reportLedgerJSON
	}
	if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil || !r.OK || len(r.Ledgers) != 1 || r.Ledgers[0].Entries != 3 {
		t.Errorf("budget report --json: exit %d, %v: %+v", code, err, r)
	}
}

// TestGitignore: the walkthrough's kits (fed/) and simulate's run
// directories are ignored by git.
func TestGitignore(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, ".git")); err != nil {
		t.Skip("not a git checkout")
	}
	for _, p := range []string{"fed/site-1/client.conf", "fl-secure-runs/20261202-150405/coordinator/coordinator-ledger.jsonl", "cmd/fl-secure/fl-secure-runs/x", "fl-secure"} {
		if err := exec.Command("git", "-C", root, "check-ignore", "-q", p).Run(); err != nil {
			t.Errorf("%s is not ignored: %v", p, err)
		}
	}
}

// TestSimulateWarnings: a δ not below 1/records, and a dropout the
// cohort's redraws cannot honour, are warned about on stderr.
func TestSimulateWarnings(t *testing.T) {
	code, out, errOut := runCLI("simulate", "--delta", "0.01", "--dropout", "0.5", "--rounds", "4", "--no-compare", "--dir", t.TempDir())
	if code != 0 || !strings.Contains(out, "federated") {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"fl-secure: warning: δ = 0.01 is not below 1/records (427 training records)",
		"fl-secure: warning: dropout 0.5: a round waits until at least 3 of 5 sites are online",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}
