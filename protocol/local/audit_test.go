package local

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuditCommandCheckpoints: the audit command of the coordinator's
// ledger names every site's copy of its checkpoint; a site's names none.
func TestAuditCommandCheckpoints(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"coordinator", "site-1", "site-2", "site-3"} {
		os.Mkdir(filepath.Join(dir, d), 0o700)
	}
	for _, d := range []string{"site-1", "site-3", "coordinator"} {
		os.WriteFile(filepath.Join(dir, d, "coordinator.checkpoint"), []byte("x"), 0o600)
	}
	got := AuditCommand(filepath.Join(dir, "coordinator", "coordinator-ledger.jsonl"), "KEY")
	want := "fl-secure budget audit --ledger " + filepath.Join(dir, "coordinator", "coordinator-ledger.jsonl") + " --key KEY" +
		" --checkpoint " + filepath.Join(dir, "site-1", "coordinator.checkpoint") +
		" --checkpoint " + filepath.Join(dir, "site-3", "coordinator.checkpoint")
	if got != want {
		t.Errorf("coordinator:\n got %s\nwant %s", got, want)
	}
	if got := AuditCommand(filepath.Join(dir, "site-1", "site-ledger.jsonl"), "KEY"); strings.Contains(got, "--checkpoint") {
		t.Errorf("site: %s", got)
	}
}
