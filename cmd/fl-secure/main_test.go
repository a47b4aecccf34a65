package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestUsageAndMisuse(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string // in stdout+stderr
	}{
		{nil, 2, "Usage:"},
		{[]string{"help"}, 0, "fl-secure simulate"},
		{[]string{"version"}, 0, "fl-secure"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"secagg", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"secagg", "-h"}, 0, "Usage: fl-secure secagg"},
		{[]string{"secagg", "-n", "2"}, 2, "clients = 2"},
		{[]string{"secagg", "-n", "10", "-k", "4"}, 2, "fl-secure bench"},
		{[]string{"secagg", "--complete=false"}, 2, "complete graph only"},
		{[]string{"secagg", "--dropout", "1.5"}, 2, "dropout = 1.5"},
		{[]string{"secagg", "-n", "10", "-k", "9", "-t", "4"}, 2, "--threshold 4"},
		{[]string{"secagg", "--bits", "16"}, 2, "bits = 16"},
		{[]string{"secagg", "--clip", "0"}, 2, "clip = 0"},
		{[]string{"secagg", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"secagg", "-n", "1000", "-d", "100000000"}, 2, "GiB in one process"},
	} {
		code, out, errOut := runCLI(tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("%v: exit %d, want %d; output lacks %q:\n%s%s", tc.args, code, tc.code, tc.want, out, errOut)
		}
	}
}

func TestSimulateTable(t *testing.T) {
	code, out, errOut := runCLI("secagg", "-n", "6", "-r", "2", "-d", "50", "--dropout", "0.2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "max error") {
		t.Fatalf("table:\n%s", out)
	}
	if !strings.Contains(errOut, "n=6 k=5") {
		t.Errorf("parameters not reported on stderr:\n%s", errOut)
	}
}

func TestSimulateJSON(t *testing.T) {
	code, out, errOut := runCLI("secagg", "-n", "12", "-k", "11", "-t", "7", "-r", "3", "-d", "40", "--bits", "64", "--json", "--dropout", "0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	rows := 0
	for dec.More() {
		var r struct {
			Round, Survivors int
			MaxError         float64 `json:"max_error"`
			ErrorBound       float64 `json:"error_bound"`
			Status           string
		}
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		if r.Status != "ok" || r.Survivors != 12 || r.MaxError > r.ErrorBound {
			t.Fatalf("row %+v", r)
		}
		rows++
	}
	if rows != 3 {
		t.Fatalf("%d rows", rows)
	}
}

// TestBinary builds the command and runs it as a user would.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "fl-secure")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "secagg", "-r", "1", "-d", "100")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("simulate: %v\n%s", err, e.String())
	}
	if !strings.Contains(o.String(), "ok") || strings.Contains(o.String(), "fl-secure:") {
		t.Fatalf("stdout should hold only the table:\n%s", o.String())
	}
	err := exec.Command(bin, "secagg", "--clients", "1").Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("misuse exit: %v", err)
	}

	// Ctrl-C: once secagg has said what it runs (it listens for the signal
	// by then), SIGINT ends it with "interrupted" and exit 130.
	cmd = exec.Command(bin, "secagg", "-r", "100000", "-d", "1000")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	if !sc.Scan() || !strings.Contains(sc.Text(), "SecAgg (complete graph)") {
		t.Fatalf("first line %q", sc.Text())
	}
	cmd.Process.Signal(os.Interrupt)
	var rest []string
	for sc.Scan() {
		rest = append(rest, sc.Text())
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 || strings.Join(rest, "\n") != "fl-secure: interrupted" {
		t.Errorf("after SIGINT: %v, stderr %q", err, rest)
	}

	// The same for a coordinator waiting for its sites: "interrupted", not
	// "context canceled".
	fed := filepath.Join(t.TempDir(), "fed")
	if out, err := exec.Command(bin, "provision", "--sites", "3", "--out", fed, "--demo-data", "wdbc").CombinedOutput(); err != nil {
		t.Fatalf("provision: %v\n%s", err, out)
	}
	cmd = exec.Command(bin, "coordinator", "--config", filepath.Join(fed, "coordinator", "coordinator.conf"), "--listen", "127.0.0.1:0")
	if stderr, err = cmd.StderrPipe(); err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc = bufio.NewScanner(stderr)
	for sc.Scan() && !strings.Contains(sc.Text(), "listening") {
	}
	cmd.Process.Signal(os.Interrupt)
	var last string
	for sc.Scan() {
		last = sc.Text()
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 || last != "fl-secure: interrupted" {
		t.Errorf("coordinator after SIGINT: %v, last line %q", err, last)
	}
	_ = os.Remove(bin)
}
