package main

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
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
// started may live on, since nothing would ever stop them (Linux: they
// die with poc), and the unencrypted private keys it leaves behind are
// removed by the next poc run under the same parent.
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
	// The run's directory, beside it the pid file that marks it as the
	// run's.
	es, _ := os.ReadDir(parent)
	if len(es) != 2 || !es[0].IsDir() || es[1].Name() != es[0].Name()+pocPidSuffix {
		cmd.Process.Kill()
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
	// A process killed outright cannot remove its directory, with the
	// kits' unencrypted keys in it: the next poc run under the same
	// parent does, and says so.
	if _, err := os.Stat(run); err != nil {
		t.Fatalf("the killed run's directory: %v", err)
	}
	next, _, nextErr := startPoc(t, parent, nil, "--rounds", "1")
	if code := waitPoc(t, next, nextErr); code != 0 {
		t.Fatalf("the next poc run: exit %d\n%s", code, nextErr.String())
	}
	if !strings.Contains(nextErr.String(), "removed "+run+", left behind by a poc run (pid "+strconv.Itoa(cmd.Process.Pid)+")") {
		t.Errorf("the next poc run did not say it removed %s:\n%s", run, nextErr.String())
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
		t.Errorf("after poc was killed and run again, %d unencrypted private keys remain in %s: %s", len(keys), run, strings.Join(keys, ", "))
	}
	if es, _ := os.ReadDir(parent); len(es) != 0 {
		t.Errorf("after the next run, the parent directory holds %v", es)
	}
}

// TestPocStaleKeepsLiveAndKept: the next run removes only a killed run's
// directory (and its kits in the making, if it was killed while
// provisioning): not one whose poc still runs, not one kept with --keep (no
// pid file), not one of another name, not a symbolic link to one.
func TestPocStaleKeepsLiveAndKept(t *testing.T) {
	parent := t.TempDir()
	mk := func(name, pid string) string {
		d := filepath.Join(parent, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if pid != "" {
			os.WriteFile(d+pocPidSuffix, []byte(pid+"\n"), 0o600)
		}
		return d
	}
	// A process that has exited and been reaped: its pid names no process
	// (unless the system reuses it at once, which only keeps the directory).
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	deadPid := strconv.Itoa(gone.Process.Pid)
	stale := mk(pocDirPrefix+"stale", deadPid)
	partial := mk("."+pocDirPrefix+"stale.provision-123", "")
	live := mk(pocDirPrefix+"live", strconv.Itoa(os.Getppid()))
	kept := mk(pocDirPrefix+"kept", "")
	other := mk("other", deadPid)
	garbled := mk(pocDirPrefix+"garbled", "not a pid")
	target := mk("target", deadPid)
	link := filepath.Join(parent, pocDirPrefix+"link")
	os.Symlink(target, link)
	os.WriteFile(link+pocPidSuffix, []byte(deadPid+"\n"), 0o600)
	var log strings.Builder
	removeStalePoc(parent, &log)
	if _, err := os.Lstat(stale + pocPidSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stale directory's pid file is still there (%v)", err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		if syscall.Kill(gone.Process.Pid, 0) == nil {
			t.Skip("the system reused the pid at once")
		}
		t.Errorf("the stale directory is still there (%v)", err)
	}
	if _, err := os.Stat(partial); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stale run's kits in the making are still there (%v)", err)
	}
	for _, d := range []string{live, kept, other, garbled, target, link} {
		if _, err := os.Lstat(d); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}
	if want := "removed " + stale + ", left behind by a poc run (pid " + deadPid + ")"; !strings.Contains(log.String(), want) || strings.Count(log.String(), "removed") != 1 {
		t.Errorf("log:\n%s\nwant one line with %q", log.String(), want)
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
