package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// An operator presses Ctrl-C while `fl-secure provision` is writing the
// kits (with a passphrase each key costs a scrypt, so this takes
// seconds). The promise: "the federation is built beside DIR and renamed
// to DIR when complete, so a run that fails leaves nothing behind". The
// attack looks beside DIR afterwards for the half-built federation — a
// hidden directory holding the CA's key and kits' keys that the operator
// does not know about, and that "move ca-key.pem offline" does not cover.
func TestAttackProvisionInterruptedLeavesKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "fl-secure")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	parent := t.TempDir()
	out := filepath.Join(parent, "fed")
	cmd := exec.Command(bin, "provision", "--sites", "12", "--out", out)
	cmd.Env = append(os.Environ(), "FL_SECURE_PASSPHRASE=correct horse battery staple")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the half-built federation exists, then interrupt.
	deadline := time.Now().Add(20 * time.Second)
	var tmp string
	for time.Now().Before(deadline) && tmp == "" {
		ents, _ := os.ReadDir(parent)
		for _, e := range ents {
			if strings.Contains(e.Name(), ".provision-") {
				if _, err := os.Stat(filepath.Join(parent, e.Name(), "ca-key.pem")); err == nil {
					tmp = e.Name()
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if tmp == "" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Skip("the run finished before it could be interrupted")
	}
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	t.Logf("provision interrupted: %v", err)
	ents, _ := os.ReadDir(parent)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".provision-") {
			var keys []string
			filepath.WalkDir(filepath.Join(parent, e.Name()), func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() && strings.HasSuffix(p, ".pem") && !strings.HasSuffix(p, "cert.pem") && !strings.HasSuffix(p, "ca.pem") {
					rel, _ := filepath.Rel(parent, p)
					keys = append(keys, rel)
				}
				return nil
			})
			t.Errorf("an interrupted provision left %s beside --out, holding %d private key files, e.g. %v", e.Name(), len(keys), keys[:min(len(keys), 3)])
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Logf("the federation was completed: %s exists", out)
	}
}

// The same for --add-site: the new kit is built in a hidden directory
// inside DIR; Ctrl-C while its keys are written leaves that directory,
// with the keys, inside the federation's directory.
func TestAttackAddSiteInterruptedLeavesKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "fl-secure")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out := filepath.Join(t.TempDir(), "fed")
	if b, err := exec.Command(bin, "provision", "--sites", "3", "--out", out).CombinedOutput(); err != nil {
		t.Fatalf("provision: %v\n%s", err, b)
	}
	cmd := exec.Command(bin, "provision", "--out", out, "--add-site", "st-marys")
	cmd.Env = append(os.Environ(), "FL_SECURE_PASSPHRASE=correct horse battery staple")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var tmp string
	for time.Now().Before(deadline) && tmp == "" {
		ents, _ := os.ReadDir(out)
		for _, e := range ents {
			if strings.Contains(e.Name(), ".provision-") {
				if ks, _ := filepath.Glob(filepath.Join(out, e.Name(), "kit", "*.pem")); len(ks) > 2 {
					tmp = e.Name()
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if tmp == "" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Skip("the run finished before it could be interrupted")
	}
	cmd.Process.Signal(syscall.SIGINT)
	t.Logf("add-site interrupted: %v", cmd.Wait())
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".provision-") {
			ks, _ := filepath.Glob(filepath.Join(out, e.Name(), "kit", "*.pem"))
			t.Errorf("an interrupted --add-site left %s inside --out, holding %v", e.Name(), ks)
		}
	}
}
