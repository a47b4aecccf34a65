package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// coordinator without --config says what to give.
func TestCoordinatorWithoutConfig(t *testing.T) {
	code, _, errOut := runCLI("coordinator", "--feature-ranges", "wdbc")
	if code != 2 || !strings.Contains(errOut, "give --config DIR/coordinator/coordinator.conf from a provisioned kit, or --cert/--key/--ca/--roster") ||
		!strings.Contains(errOut, "--cert, --key, --ca, --roster") {
		t.Errorf("exit %d:\n%s", code, errOut)
	}
	dir := t.TempDir()
	if code, _, _ := runCLI("provision", "--sites", "3", "--out", dir); code != 0 {
		t.Fatal("provision failed")
	}
	conf := filepath.Join(dir, "coordinator", "coordinator.conf")
	for _, args := range [][]string{
		{"--keep-checkpoints", "-1"},
		{"--metrics", "nonsense"},
	} {
		code, _, errOut := runCLI(append([]string{"coordinator", "--config", conf, "--state", t.TempDir()}, args...)...)
		if code != 2 || !strings.Contains(errOut, args[0]) {
			t.Errorf("%v: exit %d:\n%s", args, code, errOut)
		}
	}
}

// --metrics on an address other than loopback warns.
func TestMetricsListenWarns(t *testing.T) {
	for _, c := range []struct {
		addr string
		warn bool
	}{{"127.0.0.1:0", false}, {"localhost:0", false}, {"[::1]:0", false}, {"0.0.0.0:0", true}} {
		var stderr bytes.Buffer
		lis, err := listenMetrics(c.addr, &stderr)
		if err != nil {
			if strings.Contains(c.addr, "::1") {
				continue // no IPv6 loopback here
			}
			t.Fatal(err)
		}
		lis.Close()
		if got := strings.Contains(stderr.String(), "not a loopback address"); got != c.warn {
			t.Errorf("%s: warning %q", c.addr, stderr.String())
		}
	}
}

// provision --json says what it wrote; --add-site and --renew change the
// federation; a failed run leaves nothing.
func TestProvisionLifecycleCLI(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "fed")
	code, stdout, errOut := runCLI("provision", "--sites", "3", "--out", out, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "written UNENCRYPTED, the CA's too ("+filepath.Join(out, "ca-key.pem")) {
		t.Errorf("no warning about the CA key:\n%s", errOut)
	}
	var got provisionJSON
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("%v:\n%s", err, stdout)
	}
	if got.Sites != 3 || got.CAKey != filepath.Join(out, "ca-key.pem") || got.Encrypted ||
		!slices.Contains(got.Files, filepath.Join(out, "site-2", "identity.pem")) || !slices.Contains(got.Files, got.CAKey) {
		t.Errorf("JSON %+v", got)
	}

	code, stdout, errOut = runCLI("provision", "--out", out, "--add-site", "st-marys", "--json")
	if code != 0 {
		t.Fatalf("add-site: exit %d: %s", code, errOut)
	}
	got = provisionJSON{}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("%v:\n%s", err, stdout)
	}
	if got.Added == nil || got.Added.ID != 4 || got.Added.Name != "st-marys" || len(got.Rosters) != 5 ||
		!slices.Contains(got.Files, filepath.Join(out, "site-4", "cert.pem")) {
		t.Errorf("add-site JSON %+v", got)
	}
	code, stdout, errOut = runCLI("provision", "--out", out, "--renew")
	if code != 0 || !strings.Contains(stdout, "files replaced") || !strings.Contains(stdout, "coordinator.pin") {
		t.Errorf("renew: exit %d:\n%s%s", code, stdout, errOut)
	}
	for _, args := range [][]string{
		{"provision", "--out", out, "--add-site", "x", "--renew"},
		{"provision", "--out", out, "--add-site", "x", "--sites", "3"},
		{"provision", "--out", out},
	} {
		if code, _, errOut := runCLI(args...); code != 2 {
			t.Errorf("%v: exit %d:\n%s", args, code, errOut)
		}
	}

	// Demo data that cannot be written fails the run, and nothing is left.
	failed := filepath.Join(parent, "failed")
	if code, _, errOut := runCLI("provision", "--sites", "3", "--out", failed, "--demo-data", "no-such-data"); code == 0 {
		t.Errorf("provision with bad demo data succeeded:\n%s", errOut)
	}
	ents, _ := os.ReadDir(parent)
	if len(ents) != 1 || ents[0].Name() != "fed" {
		t.Errorf("left behind: %v", ents)
	}
}
