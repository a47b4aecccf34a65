//go:build unix

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary is also fl-secure: with FL_SECURE_TEST_MAIN=1 it runs
// the command its arguments name, so that "fl-secure poc" started by a
// test can start its coordinator and clients from os.Executable.
// FL_SECURE_TEST_FAIL_SITE=N makes site N's client fail as it starts;
// FL_SECURE_TEST_HANG_SITE=N makes it hang once it has finished, and
// FL_SECURE_TEST_CLIENT_GRACE sets how long poc waits for it.
func TestMain(m *testing.M) {
	if os.Getenv("FL_SECURE_TEST_MAIN") == "1" {
		if d, err := time.ParseDuration(os.Getenv("FL_SECURE_TEST_CLIENT_GRACE")); err == nil {
			pocClientGrace = d
		}
		if testSite("FL_SECURE_TEST_FAIL_SITE") {
			fmt.Fprintln(os.Stderr, "fl-secure: error: local.csv: no such file (site failure for the test)")
			os.Exit(1)
		}
		code := run(os.Args[1:], os.Stdout, os.Stderr)
		if testSite("FL_SECURE_TEST_HANG_SITE") {
			select {}
		}
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// testSite reports whether this process is the client of the site the
// environment variable env names.
func testSite(env string) bool {
	n := os.Getenv(env)
	if n == "" || len(os.Args) < 2 || os.Args[1] != "client" {
		return false
	}
	conf := string(filepath.Separator) + filepath.Join("site-"+n, "client.conf")
	for _, a := range os.Args {
		if strings.HasSuffix(a, conf) {
			return true
		}
	}
	return false
}

// startPoc starts "fl-secure poc args…" as a process of the test binary,
// with its run directory under parent.
func startPoc(t *testing.T, parent string, env []string, args ...string) (*exec.Cmd, *bytes.Buffer, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"poc", "--dir", parent}, args...)...)
	cmd.Env = append(append(os.Environ(), "FL_SECURE_TEST_MAIN=1"), env...)
	var out bytes.Buffer
	var errOut syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out, &errOut
}

// waitPoc waits for poc to exit and returns its exit code.
func waitPoc(t *testing.T, cmd *exec.Cmd, errOut *syncBuffer) int {
	t.Helper()
	err := waitOrKill(cmd, 3*time.Minute)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("poc: %v\n%s", err, errOut.String())
	return -1
}

var pocStarted = regexp.MustCompile(`started (\S+) \(pid (\d+)\)`)

// checkNoSurvivors checks that every process poc said it started, and
// every process in its group, is gone, and that poc left nothing in
// parent.
func checkNoSurvivors(t *testing.T, log, parent string, want int) {
	t.Helper()
	ms := pocStarted.FindAllStringSubmatch(log, -1)
	if len(ms) != want {
		t.Errorf("poc reported %d started processes, want %d:\n%s", len(ms), want, log)
	}
	for _, m := range ms {
		pid, _ := strconv.Atoi(m[2])
		if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (process group %d) survived poc: kill 0: %v", m[1], pid, err)
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
	if es, err := os.ReadDir(parent); err != nil || len(es) != 0 {
		t.Errorf("poc left %v in its parent directory (%v)", es, err)
	}
}

// TestPocEndToEnd runs a small federation of separate processes and
// checks the closing table: every ledger audited and passing, the model
// evaluated, and the directory removed.
func TestPocEndToEnd(t *testing.T) {
	parent := t.TempDir()
	cmd, out, errOut := startPoc(t, parent, nil, "--rounds", "2", "--json")
	if code := waitPoc(t, cmd, errOut); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	log := errOut.String()
	var res pocResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	if len(res.Sites) != 3 || res.Mode != "secagg" || res.Rounds != 2 || res.Dir != "" {
		t.Errorf("table: %+v", res)
	}
	rows := append([]pocSite{res.Coordinator}, res.Sites...)
	for i, r := range rows {
		if r.Audit != "ok" || r.Rounds != 2 || !(r.Epsilon > 0 && r.Epsilon <= 3+1e-9) || r.Site != i {
			t.Errorf("row %d: %+v", i, r)
		}
	}
	if res.ModelRound != 2 || res.TestRows == 0 || !(res.Test.Accuracy > 0.5) || !(res.Test.AUC > 0.5) {
		t.Errorf("model: round %d, %d rows, %+v", res.ModelRound, res.TestRows, res.Test)
	}
	for _, want := range []string{"coordinator | ", "site-1      | ", "site-3      | ", "round 1/2 done", "round 2/2 done", "took part in 2 rounds"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
	checkNoSurvivors(t, log, parent, 4)
}

// TestPocTable checks the text table of a run without DP, where the
// coordinator keeps no ledger, and that --keep keeps the directory.
func TestPocTable(t *testing.T) {
	parent := t.TempDir()
	cmd, out, errOut := startPoc(t, parent, nil, "--mode", "plain", "--rounds", "1", "--keep")
	if code := waitPoc(t, cmd, errOut); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	text := out.String()
	for _, want := range []string{"mode plain", "no DP", "site-3 ", "ok", "coordinator ", pocNoLedger, "accuracy", "kept in " + parent, "--site 3"} {
		if !strings.Contains(text, want) {
			t.Errorf("the table lacks %q:\n%s", want, text)
		}
	}
	es, err := os.ReadDir(parent)
	if err != nil || len(es) != 1 {
		t.Fatalf("--keep: %v, %v", es, err)
	}
	if _, err := os.Stat(filepath.Join(parent, es[0].Name(), "site-1", "state", "site-ledger.jsonl")); err != nil {
		t.Errorf("--keep kept no ledger: %v", err)
	}
}

// TestPocInterrupt interrupts poc after its first round: every process it
// started stops, it exits 130 and removes its directory.
func TestPocInterrupt(t *testing.T) {
	parent := t.TempDir()
	cmd, out, errOut := startPoc(t, parent, nil, "--rounds", "1000")
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(errOut.String(), "round 1/1000 done") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no first round:\n%s", errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(os.Interrupt)
	code := waitPoc(t, cmd, errOut)
	log := errOut.String()
	if code != 130 || !strings.Contains(log, "fl-secure: interrupted") || strings.Contains(log, "round 1000/1000") {
		t.Errorf("exit %d:\n%s%s", code, out.String(), log)
	}
	checkNoSurvivors(t, log, parent, 4)
}

// TestPocChildFails: a client that fails as it starts stops the run, with
// an error naming it and quoting its last lines.
func TestPocChildFails(t *testing.T) {
	parent := t.TempDir()
	cmd, out, errOut := startPoc(t, parent, []string{"FL_SECURE_TEST_FAIL_SITE=2"}, "--rounds", "2")
	code := waitPoc(t, cmd, errOut)
	log := errOut.String()
	if code != 1 || !strings.Contains(log, "poc: site-2 stopped early (exit status 1); its last lines:") ||
		!strings.Contains(log, "  site-2 | fl-secure: error: local.csv: no such file") {
		t.Errorf("exit %d:\n%s%s", code, out.String(), log)
	}
	if out.Len() != 0 {
		t.Errorf("a failed run printed a table:\n%s", out.String())
	}
	checkNoSurvivors(t, log, parent, 4)
}

// TestPocClientHangs: a client that does not exit once the coordinator
// has finished stops the run, naming it.
func TestPocClientHangs(t *testing.T) {
	parent := t.TempDir()
	cmd, out, errOut := startPoc(t, parent, []string{"FL_SECURE_TEST_HANG_SITE=3", "FL_SECURE_TEST_CLIENT_GRACE=1s"}, "--rounds", "1")
	code := waitPoc(t, cmd, errOut)
	log := errOut.String()
	// The other clients end before the coordinator, or soon after it.
	named := regexp.MustCompile(`poc: the coordinator finished, but (site-\d, )*site-3 did not exit within 1s of it`)
	if code != 1 || !named.MatchString(log) {
		t.Errorf("exit %d:\n%s%s", code, out.String(), log)
	}
	checkNoSurvivors(t, log, parent, 4)
}

// TestPocTimeout: a federation that has not finished within --timeout is
// stopped.
func TestPocTimeout(t *testing.T) {
	parent := t.TempDir()
	cmd, out, errOut := startPoc(t, parent, nil, "--timeout", "1ns")
	code := waitPoc(t, cmd, errOut)
	log := errOut.String()
	if code != 1 || !strings.Contains(log, "within --timeout 1ns") {
		t.Errorf("exit %d:\n%s%s", code, out.String(), log)
	}
	checkNoSurvivors(t, log, parent, 1)
}

func TestPocMisuse(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--sites", "2"}, "--sites 2: want 3 to 10"},
		{[]string{"--sites", "11"}, "--sites 11"},
		{[]string{"--mode", "clear"}, `--mode "clear"`},
		{[]string{"--data", "mnist"}, `--data "mnist"`},
		{[]string{"--rounds", "0"}, "--rounds 0"},
		{[]string{"--epsilon", "-1"}, "--epsilon -1"},
		{[]string{"--epsilon", "NaN"}, "--epsilon NaN"},
		{[]string{"--delta", "1"}, "--delta 1"},
		{[]string{"--level", "patient"}, `--level "patient"`},
		{[]string{"--timeout", "0s"}, "--timeout 0s"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		parent := t.TempDir()
		code, out, errOut := runCLI(append([]string{"poc", "--dir", parent}, tc.args...)...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, want 2; stderr lacks %q:\n%s%s", tc.args, code, tc.want, out, errOut)
		}
		if es, _ := os.ReadDir(parent); len(es) != 0 {
			t.Errorf("%v: misuse left %v", tc.args, es)
		}
	}
	if code, out, _ := runCLI("poc", "-h"); code != 0 || !strings.Contains(out, "Usage: fl-secure poc") {
		t.Errorf("poc -h: exit %d, help not on stdout:\n%s", code, out)
	}
}

// TestPocTrainCmd: with --train-cmd every site trains with the given
// command (here the dependency-free Go trainer), {data} and {label} standing
// for its own file and label; the run audits like any other.
func TestPocTrainCmd(t *testing.T) {
	bin := buildTrainer(t)
	parent := t.TempDir()
	cmd, out, errOut := startPoc(t, parent, nil, "--rounds", "2", "--json", "--train-cmd", shellQuote(bin)+" --data {data} --label {label}")
	if code := waitPoc(t, cmd, errOut); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	var res pocResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	for i, r := range append([]pocSite{res.Coordinator}, res.Sites...) {
		if r.Audit != "ok" || r.Rounds != 2 {
			t.Errorf("row %d: %+v", i, r)
		}
	}
	log := errOut.String()
	for site := 1; site <= 3; site++ {
		if want := fmt.Sprintf("site-%d      | trainer (round 2): ", site); !strings.Contains(log, want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
	checkNoSurvivors(t, log, parent, 4)
}

// shellQuote makes one word of any path, quotes included.
func TestShellQuote(t *testing.T) {
	for _, s := range []string{"plain", "with space", "it's", `a"b`, "$(rm -rf x)", ""} {
		out, err := exec.Command("/bin/sh", "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("%q: sh printed %q (%v)", s, out, err)
		}
	}
}
