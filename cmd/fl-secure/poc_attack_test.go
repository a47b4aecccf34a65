package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAttackPocKilled: poc is killed outright (SIGKILL, the OOM killer, a
// crash) in the middle of a run. Its run directory is private (0700, no
// file readable by others) while it runs; after the kill no process it
// started may live on, since nothing would ever stop them, and no
// unencrypted private key may be left behind.
func TestAttackPocKilled(t *testing.T) {
	parent := t.TempDir()
	cmd, _, errOut := startPoc(t, parent, nil, "--rounds", "1000")
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(errOut.String(), "round 1/1000 done") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no first round:\n%s", errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	es, _ := os.ReadDir(parent)
	if len(es) != 1 {
		t.Fatalf("run directory: %v", es)
	}
	run := filepath.Join(parent, es[0].Name())
	if fi, err := os.Stat(run); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("run directory %s: %v, %v", run, fi.Mode(), err)
	}
	filepath.WalkDir(run, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".pem") {
			if fi, _ := d.Info(); fi != nil && fi.Mode().Perm()&0o077 != 0 && strings.Contains(filepath.Base(p), "key") {
				t.Errorf("%s is mode %v", p, fi.Mode().Perm())
			}
		}
		return nil
	})

	cmd.Process.Kill() // poc only, as a crash would
	cmd.Wait()
	time.Sleep(3 * time.Second)
	log := errOut.String()
	var survivors []string
	for _, m := range pocStarted.FindAllStringSubmatch(log, -1) {
		pid, _ := strconv.Atoi(m[2])
		if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
			survivors = append(survivors, m[1]+" (pid "+m[2]+")")
			defer syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
	if len(survivors) > 0 {
		t.Errorf("after poc was killed, %d of the processes it started still run 3 s later: %s", len(survivors), strings.Join(survivors, ", "))
	}
	var keys []string
	filepath.WalkDir(run, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), "BEGIN PRIVATE KEY") {
				keys = append(keys, strings.TrimPrefix(p, run+"/"))
			}
		}
		return nil
	})
	if len(keys) > 0 {
		t.Errorf("after poc was killed, %d unencrypted private keys remain in %s: %s", len(keys), run, strings.Join(keys, ", "))
	}
}

// TestAttackPocHangup: the terminal poc runs in goes away (SIGHUP, an ssh
// session dropped): poc stops its processes and removes its directory,
// as it does for SIGINT and SIGTERM.
func TestAttackPocHangup(t *testing.T) {
	parent := t.TempDir()
	cmd, _, errOut := startPoc(t, parent, nil, "--rounds", "1000")
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(errOut.String(), "round 1/1000 done") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no first round:\n%s", errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	cmd.Wait()
	time.Sleep(3 * time.Second)
	for _, m := range pocStarted.FindAllStringSubmatch(errOut.String(), -1) {
		pid, _ := strconv.Atoi(m[2])
		if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
			defer syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
	if es, _ := os.ReadDir(parent); len(es) != 0 {
		t.Errorf("after SIGHUP poc left its run directory %s (kits with unencrypted keys) behind", es[0].Name())
	}
}
