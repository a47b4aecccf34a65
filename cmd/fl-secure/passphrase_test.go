package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const ageHeader = "age-encryption.org/v1\n"

// unsetPassphrase clears FL_SECURE_PASSPHRASE for the test.
func unsetPassphrase(t *testing.T) {
	t.Setenv("FL_SECURE_PASSPHRASE", "")
	os.Unsetenv("FL_SECURE_PASSPHRASE")
}

// The passphrase reaches provision, coordinator and client through
// FL_SECURE_PASSPHRASE or --passphrase-file; without one each warns once;
// a missing, wrong or badly protected one stops the command with a message
// that says what to do.
func TestPassphraseCommands(t *testing.T) {
	unsetPassphrase(t)
	dir := t.TempDir()
	passFile := filepath.Join(dir, "passphrase")
	os.WriteFile(passFile, []byte("cli passphrase\n"), 0o600)
	loose := filepath.Join(dir, "loose")
	os.WriteFile(loose, []byte("cli passphrase\n"), 0o644)
	wrong := filepath.Join(dir, "wrong")
	os.WriteFile(wrong, []byte("not it\n"), 0o600)

	// Without a passphrase: one loud warning, plaintext keys.
	plain := filepath.Join(dir, "plain")
	code, _, errOut := runCLI("provision", "--sites", "3", "--out", plain)
	if code != 0 || strings.Count(errOut, "UNENCRYPTED") != 1 {
		t.Fatalf("provision without a passphrase: exit %d:\n%s", code, errOut)
	}
	if b, _ := os.ReadFile(filepath.Join(plain, "site-1", "identity.pem")); !bytes.HasPrefix(b, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Error("without a passphrase the keys should be PEM")
	}

	// A passphrase file others may read is refused before anything is written.
	code, _, errOut = runCLI("provision", "--sites", "3", "--out", filepath.Join(dir, "refused"), "--passphrase-file", loose)
	if code != 1 || !strings.Contains(errOut, "chmod 600 "+loose) || strings.Contains(errOut, "cli passphrase") {
		t.Errorf("loose passphrase file: exit %d:\n%s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "refused")); err == nil {
		t.Error("a kit was written with a refused passphrase file")
	}

	// With --passphrase-file: no warning, encrypted keys.
	kit := filepath.Join(dir, "kit")
	code, _, errOut = runCLI("provision", "--sites", "3", "--out", kit, "--demo-data", "wdbc", "--passphrase-file", passFile)
	if code != 0 || strings.Contains(errOut, "UNENCRYPTED") {
		t.Fatalf("provision with a passphrase: exit %d:\n%s", code, errOut)
	}
	for _, f := range []string{"coordinator/key.pem", "site-1/key.pem", "site-1/identity.pem"} {
		if b, _ := os.ReadFile(filepath.Join(kit, f)); !bytes.HasPrefix(b, []byte(ageHeader)) {
			t.Errorf("%s is not encrypted", f)
		}
	}

	// The encrypted kit without the passphrase: the warning, then an error
	// naming the key file and both ways to give the passphrase.
	code, _, errOut = runCLI("coordinator", "--config", filepath.Join(kit, "coordinator", "coordinator.conf"))
	if code != 1 || strings.Count(errOut, "UNENCRYPTED") != 1 ||
		!strings.Contains(errOut, filepath.Join(kit, "coordinator", "key.pem")+": encrypted with a passphrase, and none was given: set FL_SECURE_PASSPHRASE or pass --passphrase-file FILE") {
		t.Errorf("coordinator without the passphrase: exit %d:\n%s", code, errOut)
	}
	// A wrong one, through the environment.
	t.Setenv("FL_SECURE_PASSPHRASE", "not it")
	code, _, errOut = runCLI("client", "--config", filepath.Join(kit, "site-1", "client.conf"))
	if code != 1 || !strings.Contains(errOut, filepath.Join(kit, "site-1", "identity.pem")+": wrong passphrase") ||
		strings.Contains(errOut, "UNENCRYPTED") || strings.Contains(errOut, "not it") {
		t.Errorf("client with a wrong passphrase: exit %d:\n%s", code, errOut)
	}
	// --passphrase-file wins over the environment; a wrong file is wrong.
	code, _, errOut = runCLI("client", "--config", filepath.Join(kit, "site-1", "client.conf"), "--passphrase-file", wrong)
	if code != 1 || !strings.Contains(errOut, ": wrong passphrase") {
		t.Errorf("client with a wrong passphrase file: exit %d:\n%s", code, errOut)
	}
	// An empty FL_SECURE_PASSPHRASE is a mistake, not "no passphrase".
	t.Setenv("FL_SECURE_PASSPHRASE", "")
	code, _, errOut = runCLI("client", "--config", filepath.Join(kit, "site-1", "client.conf"))
	if code != 1 || !strings.Contains(errOut, "FL_SECURE_PASSPHRASE is set but empty") {
		t.Errorf("empty FL_SECURE_PASSPHRASE: exit %d:\n%s", code, errOut)
	}
	unsetPassphrase(t)

	for _, cmd := range []string{"provision", "coordinator", "client"} {
		_, help, _ := runCLI(cmd, "-h")
		if !strings.Contains(help, "--passphrase-file") || !strings.Contains(help, "FL_SECURE_PASSPHRASE") {
			t.Errorf("%s -h does not document the passphrase:\n%s", cmd, help)
		}
	}
}

// The built binary, on a kit provisioned with FL_SECURE_PASSPHRASE: the
// coordinator reads its passphrase file from its configuration, a client
// the environment, and the client's TLS session (an encrypted key on
// each side) reaches the coordinator.
func TestPassphraseProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	unsetPassphrase(t)
	bin := filepath.Join(t.TempDir(), "fl-secure")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	env := append(os.Environ(), "FL_SECURE_PASSPHRASE=process passphrase")
	prov := exec.Command(bin, "provision", "--sites", "3", "--out", dir, "--demo-data", "wdbc")
	prov.Env = env
	if out, err := prov.CombinedOutput(); err != nil {
		t.Fatalf("provision: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(dir, "coordinator", "passphrase"), []byte("process passphrase\n"), 0o600)
	conf := filepath.Join(dir, "coordinator", "coordinator.conf")
	c, _ := os.ReadFile(conf)
	os.WriteFile(conf, append(c, "passphrase_file = passphrase\n"...), 0o644)

	addr := freePort(t)
	_, port, _ := strings.Cut(addr, ":")
	coord := exec.Command(bin, "coordinator", "--config", conf, "--listen", addr, "--join-wait", "1m")
	var cerr syncBuffer
	coord.Stderr = &cerr
	if err := coord.Start(); err != nil {
		t.Fatal(err)
	}
	defer coord.Process.Kill()
	client := exec.Command(bin, "client", "--config", filepath.Join(dir, "site-1", "client.conf"), "--coordinator", "localhost:"+port)
	client.Env = env
	out, _ := client.StderrPipe()
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	defer client.Process.Kill()
	connected := make(chan bool, 1)
	var clientLog syncBuffer
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			clientLog.Write([]byte(sc.Text() + "\n"))
			if strings.Contains(sc.Text(), "msg=connected") {
				connected <- true
			}
		}
	}()
	select {
	case <-connected:
	case <-time.After(90 * time.Second):
		t.Fatalf("the client did not connect:\n%s\ncoordinator:\n%s", clientLog.String(), cerr.String())
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(cerr.String(), "site connected") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(cerr.String(), "site connected") {
		t.Errorf("the coordinator did not see the site:\n%s", cerr.String())
	}
	if strings.Contains(cerr.String()+clientLog.String(), "UNENCRYPTED") {
		t.Errorf("a passphrase was given, yet a warning:\n%s\n%s", cerr.String(), clientLog.String())
	}
	coord.Process.Signal(syscall.SIGINT)
	client.Process.Signal(syscall.SIGINT)
	waitOrKill(coord, 20*time.Second)
	waitOrKill(client, 20*time.Second)
}
